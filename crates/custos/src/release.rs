//! `custos prompts` and `custos datasets`: the versioned components a composite release pins
//! by digest, besides models. Additions go through the control plane, each with its ledger
//! event.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use custos_govern::models::manifest::{self, Options};
use custos_govern::models::registry::Reference;
use custos_govern::release::{DatasetFacts, PiiStatus, MAX_PROMPT};
use custos_store::{Dataset, Prompt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum PromptsCmd {
    /// Add a prompt version (the system prompt and templates, as text): SemVer, newer than the
    /// prompt's latest version.
    #[command(
        after_help = "Example:\n  custos prompts add support-bot 2.3.0 prompts/support.md --model gpt-4o --why \"tone fix\""
    )]
    Add {
        name: String,
        /// A semantic version (MAJOR.MINOR.PATCH).
        version: String,
        /// The prompt file (UTF-8 text, at most 1 MiB).
        file: PathBuf,
        /// The model the prompt was written for.
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List prompt versions.
    List { name: Option<String> },
    /// Print one prompt version (its text; --json for its record).
    Show {
        #[arg(value_name = "NAME@VERSION")]
        prompt: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum DatasetsCmd {
    /// Add a dataset tag pinned by digest: a folder (its manifest digest, as for models), a
    /// file or a DVC-style manifest (its SHA-256), or a URI with --sha256.
    #[command(
        after_help = "Examples:\n  custos datasets add reviews golden_2025_09 ./data/reviews --datasheet data/DATASHEET.md --pii-report pii.json\n  custos datasets add reviews v4 s3://bucket/reviews/v4 --sha256 9f86d0…"
    )]
    Add {
        name: String,
        tag: String,
        /// A path, or a URI (then --sha256 is required).
        location: String,
        /// The digest, for data custos cannot read here.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// The dataset's datasheet (custos models datasheet init writes one).
        #[arg(long, value_name = "FILE")]
        datasheet: Option<PathBuf>,
        /// A `custos pii dataset --report` of this data: its PII status is recorded.
        #[arg(long, value_name = "FILE")]
        pii_report: Option<PathBuf>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List dataset tags.
    List { name: Option<String> },
    /// Show one dataset tag.
    Show {
        #[arg(value_name = "NAME@TAG")]
        dataset: String,
    },
}

fn split_ref<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    s.rsplit_once('@')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow!("{s:?} is not {what}"))
}

fn prompt_json(p: &Prompt, body: bool) -> Value {
    let mut v = json!({"name": p.name, "version": p.version, "digest": format!("sha256:{}", p.digest),
                       "model": p.model, "created_by": p.created_by,
                       "created_at": custos_core::time::format_rfc3339(p.created_at)});
    if body {
        v["body"] = json!(p.body);
    }
    v
}

fn dataset_json(d: &Dataset) -> Value {
    json!({"name": d.name, "tag": d.tag, "digest": format!("sha256:{}", d.digest),
           "facts": serde_json::from_str::<Value>(&d.facts).unwrap_or(Value::Null),
           "created_by": d.created_by, "created_at": custos_core::time::format_rfc3339(d.created_at)})
}

async fn control(
    ctx: &Ctx,
    change: &ChangeArgs,
) -> Result<(custos_control::Control, custos_control::Actor)> {
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), change).await?;
    Ok((control, actor))
}

fn read_text(path: &Path, max: u64, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    if meta.len() > max {
        bail!(
            "{what} {} is {} bytes; at most {max} are kept",
            path.display(),
            meta.len()
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{what} {} is not UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

fn file_sha256(path: &Path) -> Result<(String, u64)> {
    let m = manifest::hash(
        path,
        &Options {
            ignore_git: false,
            ..Options::default()
        },
        None,
    )
    .map_err(|e| anyhow!("{e}"))?;
    Ok((
        m.resources
            .first()
            .map(|r| r.digest.clone())
            .unwrap_or_default(),
        m.bytes,
    ))
}

pub async fn prompts(ctx: &Ctx, cmd: PromptsCmd) -> Result<ExitCode> {
    match cmd {
        PromptsCmd::Add {
            name,
            version,
            file,
            model,
            change,
        } => {
            let body = read_text(&file, MAX_PROMPT, "the prompt")?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .add_prompt(
                    &actor,
                    custos_control::NewPrompt {
                        name,
                        version,
                        body,
                        model,
                    },
                    &change.reason()?,
                )
                .await?;
            if ctx.json {
                output::json(&prompt_json(&r.value, false));
            } else {
                eprintln!(
                    "added prompt {}@{} (sha256:{}); ledger entry {}",
                    r.value.name,
                    r.value.version,
                    r.value.digest,
                    r.ledger.end.saturating_sub(1)
                );
            }
        }
        PromptsCmd::List { name } => {
            let store = crate::identity::open(ctx).await?;
            let all = store.prompts(name.as_deref()).await?;
            if ctx.json {
                output::json(&Value::Array(
                    all.iter().map(|p| prompt_json(p, false)).collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.version.clone(),
                            format!("sha256:{}", &p.digest[..12]),
                            output::opt(p.model.as_deref()),
                            p.created_by.clone(),
                            output::time(Some(p.created_at)),
                        ]
                    })
                    .collect();
                output::table(
                    &["NAME", "VERSION", "DIGEST", "MODEL", "BY", "ADDED"],
                    &rows,
                );
            }
        }
        PromptsCmd::Show { prompt } => {
            let (name, version) = split_ref(&prompt, "NAME@VERSION")?;
            let p = crate::identity::open(ctx)
                .await?
                .prompt(name, version)
                .await?;
            if ctx.json {
                output::json(&prompt_json(&p, true));
            } else {
                print!("{}", p.body);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn datasets(ctx: &Ctx, cmd: DatasetsCmd) -> Result<ExitCode> {
    match cmd {
        DatasetsCmd::Add {
            name,
            tag,
            location,
            sha256,
            datasheet,
            pii_report,
            change,
        } => {
            let is_uri = location.contains("://");
            let path = Path::new(&location);
            let mut facts = DatasetFacts {
                location: location.clone(),
                ..DatasetFacts::default()
            };
            let digest = match (sha256, is_uri) {
                (Some(h), _) => {
                    let h = h.trim_start_matches("sha256:").to_ascii_lowercase();
                    if hex::decode(&h).map(|b| b.len()) != Ok(32) {
                        bail!("--sha256: expected 64 hex digits");
                    }
                    if !is_uri && path.exists() {
                        eprintln!("note: {location} is here but --sha256 was given: the given digest is recorded, not checked");
                    }
                    facts.digest_of = "given".into();
                    h
                }
                (None, true) => bail!("{location} is a URI custos cannot read: give its --sha256"),
                (None, false) if path.is_dir() => {
                    let m = manifest::hash(path, &Options::default(), None)
                        .map_err(|e| anyhow!("{e}"))?;
                    facts.digest_of = "files".into();
                    facts.files = Some(m.resources.len() as u64);
                    facts.bytes = Some(m.bytes);
                    m.digest()
                }
                (None, false) => {
                    let (h, bytes) = file_sha256(path)?;
                    let manifest = path.extension().is_some_and(|e| e == "dvc")
                        || path
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().contains("manifest"));
                    facts.digest_of = if manifest { "manifest" } else { "file" }.into();
                    facts.bytes = Some(bytes);
                    h
                }
            };
            if let Some(ds) = &datasheet {
                facts.datasheet = Some(Reference {
                    name: ds.display().to_string(),
                    sha256: file_sha256(ds)?.0,
                });
            }
            if let Some(r) = &pii_report {
                let text = read_text(r, 64 << 20, "the PII report")?;
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| anyhow!("{}: not JSON: {e}", r.display()))?;
                let (sha, _) = file_sha256(r)?;
                facts.pii = Some(
                    PiiStatus::from_report(&v, &sha)
                        .map_err(|e| anyhow!("{}: {e}", r.display()))?,
                );
            }
            let (control, actor) = control(ctx, &change).await?;
            let rec = control
                .add_dataset(
                    &actor,
                    custos_control::NewDataset {
                        name,
                        tag,
                        digest,
                        facts,
                    },
                    &change.reason()?,
                )
                .await?;
            if ctx.json {
                output::json(&dataset_json(&rec.value));
            } else {
                eprintln!(
                    "added dataset {}@{} (sha256:{}); ledger entry {}",
                    rec.value.name,
                    rec.value.tag,
                    rec.value.digest,
                    rec.ledger.end.saturating_sub(1)
                );
            }
        }
        DatasetsCmd::List { name } => {
            let store = crate::identity::open(ctx).await?;
            let all = store.datasets(name.as_deref()).await?;
            if ctx.json {
                output::json(&Value::Array(all.iter().map(dataset_json).collect()));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|d| {
                        let f: DatasetFacts = serde_json::from_str(&d.facts).unwrap_or_default();
                        vec![
                            d.name.clone(),
                            d.tag.clone(),
                            format!("sha256:{}", &d.digest[..12]),
                            f.pii.map_or("-".into(), |p| p.status),
                            if f.datasheet.is_some() {
                                "yes".into()
                            } else {
                                "-".into()
                            },
                            output::time(Some(d.created_at)),
                        ]
                    })
                    .collect();
                output::table(
                    &["NAME", "TAG", "DIGEST", "PII", "DATASHEET", "ADDED"],
                    &rows,
                );
            }
        }
        DatasetsCmd::Show { dataset } => {
            let (name, tag) = split_ref(&dataset, "NAME@TAG")?;
            let d = crate::identity::open(ctx).await?.dataset(name, tag).await?;
            output::json(&dataset_json(&d));
        }
    }
    Ok(ExitCode::SUCCESS)
}
