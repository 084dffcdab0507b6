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
        /// Prompt name.
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
    List {
        /// Only this prompt's versions.
        name: Option<String>,
    },
    /// Print one prompt version (its text; --json for its record).
    Show {
        /// The prompt version to show.
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
        /// Dataset name.
        name: String,
        /// Version tag of this dataset (v1, 2026-11-30, …).
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
    List {
        /// Only this dataset's tags.
        name: Option<String>,
    },
    /// Show one dataset tag.
    Show {
        /// The dataset version to show.
        #[arg(value_name = "NAME@TAG")]
        dataset: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCmd {
    /// Create a composite release of an app: each component pinned by its registered digest;
    /// the risk tier derived from what changes (raise it with --tier, never lower it).
    #[command(
        after_help = "Example:\n  custos release create ml/support-bot --model llama-3-8b@2026-12 --prompt support-bot@2.3.0 \\\n      --data reviews@golden_2025_09 --adr docs/adr/0007.md --evidence tests=ci/junit.xml --why \"new fine-tune\"\n\nTiers: a model swap, a new PII flow or a schema change is high; a prompt minor bump or a\ndataset change medium; a prompt patch or nothing but evidence low. [release.tiers.*] in\ncustos.toml sets each tier's approver roles and evidence (defaults: low owner+on-call;\nmedium owner+platform+security with adr, tests, eval, slo; high adds cab, risk-assessment,\ndry-run, rollback-plan; emergency incident-commander+security)."
    )]
    Create {
        /// The app, as TEAM/APP.
        app: String,
        /// Tenant the release belongs to.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        /// A registered model version (NAME@VERSION).
        #[arg(long, value_name = "NAME@VERSION")]
        model: Option<String>,
        /// A prompt version (NAME@VERSION).
        #[arg(long, value_name = "NAME@VERSION")]
        prompt: Option<String>,
        /// A dataset tag (NAME@TAG); repeatable.
        #[arg(long, value_name = "NAME@TAG")]
        data: Vec<String>,
        /// Raise the tier (low, medium, high) or take the emergency path.
        #[arg(long)]
        tier: Option<String>,
        /// The architecture decision record (attached as evidence `adr`).
        #[arg(long, value_name = "FILE")]
        adr: Option<PathBuf>,
        /// Evidence KIND=FILE (tests, eval, slo, risk-assessment, dry-run, rollback-plan, …).
        #[arg(long, value_name = "KIND=FILE")]
        evidence: Vec<String>,
        /// Personal data reaches a model or store it did not before.
        #[arg(long)]
        new_pii_flow: bool,
        /// A request, response or data schema changes.
        #[arg(long)]
        schema_change: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Attach evidence to a draft release (KIND=FILE, repeatable).
    Evidence {
        /// The release's id (rel_…).
        id: String,
        /// Evidence files by kind (sbom=bom.cdx.json, vulns=scan.json, eval=report.json, …).
        #[arg(required = true, value_name = "KIND=FILE")]
        items: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Approve a release in one of the roles its tier requires (one you hold).
    Approve {
        /// The release's id (rel_…).
        id: String,
        /// The role you decide as (owner, on-call, platform, security, cab, incident-commander).
        #[arg(long = "as", value_name = "ROLE")]
        role: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Deny a release in a role its tier requires; --why is required.
    Deny {
        /// The release's id (rel_…).
        id: String,
        /// The approver role you deny in (one you hold).
        #[arg(long = "as", value_name = "ROLE")]
        role: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Activate an approved release: its model must be servable under [[registry.trust]]
    /// (a high tier also needs the model's signed card); the app's alias then serves it on
    /// every gateway within the refresh interval, and the previous release is superseded.
    #[command(
        after_help = "Example:\n  custos release promote rel_0193… --why \"CHG-311 approved\"\n  curl … -d '{\"model\": \"support-bot\", \"messages\": […]}'   # the alias: the app's name"
    )]
    Promote {
        /// The release's id (rel_…).
        id: String,
        /// Watch this long after activation ([release.post_check] window, default 5m).
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        post_check: Option<std::time::Duration>,
        /// Activate and return without watching.
        #[arg(long, conflicts_with_all = ["post_check", "auto_rollback"])]
        no_post_check: bool,
        /// Roll back to the previous release when the post-check breaches.
        #[arg(long)]
        auto_rollback: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Post-check the app's active release now: its calls since promotion against the
    /// previous release's over as long before (error rate, p99 latency, cost per call,
    /// guardrail refusals); recorded in the ledger.
    #[command(
        after_help = "Example:\n  custos release check rel_0193… --auto-rollback --why \"hourly post-check\""
    )]
    Check {
        /// The release's id (rel_…).
        id: String,
        /// Roll back when it breaches.
        #[arg(long)]
        auto_rollback: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Write the proof artifact of a release's latest promotion or rollback: the audit record
    /// (who, when, what with checksums, why, ticket, decision, rollback_to), approvers, the
    /// post-check telemetry, and each ledger event with its inclusion proof under a signed
    /// checkpoint. Verifies offline with `custos release verify-proof`.
    #[command(
        after_help = "Example:\n  custos release proof rel_0193… -o proof.json --key-file .custos/ledger.key\n  custos release verify-proof proof.json --public-key .custos/ledger.pub"
    )]
    Proof {
        /// The release's id (rel_…).
        id: String,
        /// Where to write it (never overwritten; `-` for standard output).
        #[arg(short = 'o', long, value_name = "FILE")]
        out: PathBuf,
        /// The ledger key: signs a checkpoint when the latest one predates the events.
        #[arg(long, env = "CUSTOS_LEDGER_KEY_FILE", value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Check a release proof artifact offline with the ledger's public key.
    #[command(name = "verify-proof")]
    VerifyProof {
        /// The proof `custos release proof` wrote.
        file: PathBuf,
        /// The ledger's public key the proof's checkpoint must be signed with.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
    /// Rehearse a failed release end to end: copy the app's active release, promote the copy,
    /// send calls through a private gateway on 127.0.0.1 whose providers are the built-in mock
    /// failing at --failure-rate, post-check, roll back automatically, and write the proof.
    #[command(
        after_help = "Example:\n  custos audit keygen --name custos.example/ledger\n  custos release drill ml/support-bot -o drill-proof.json --key-file .custos/ledger.key\n  custos release verify-proof drill-proof.json --public-key .custos/ledger.pub\n\nThe drill's release pins the active release's own components, so every gateway serves the\nsame model and prompt throughout; only the drill's private gateway fails calls. Its ledger\nevents say `drill`."
    )]
    Drill {
        /// The app, as TEAM/APP, with an active release.
        app: String,
        /// Tenant of the app whose release is drilled.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        /// Calls before and after the promotion.
        #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        calls: u32,
        /// The fraction of calls the mock providers fail after the promotion.
        #[arg(long, default_value_t = 0.5)]
        failure_rate: f64,
        /// Where to write the drill's proof (never overwritten).
        #[arg(short = 'o', long, value_name = "FILE")]
        out: PathBuf,
        /// The ledger's private key, to sign a checkpoint covering the drill.
        #[arg(long, env = "CUSTOS_LEDGER_KEY_FILE", value_name = "FILE")]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// SLO error budgets now ([[release.slo]]): a spent one freezes promotion. Also the
    /// burn rates over 5m, 1h and 6h and the burn-rate alerts that hold (page: 14.4x over 1h
    /// and 5m; ticket: 6x over 6h and 30m), the numbers the gateway exports and alerts on.
    /// Exits 1 while a budget is spent.
    Slo {
        /// Tenant whose SLOs are shown.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        /// Only the SLOs covering this TEAM/APP.
        #[arg(long)]
        app: Option<String>,
    },
    /// The change calendar: freeze windows and CAB meetings ([release] in custos.toml).
    Calendar,
    /// Record emergency releases whose ADR or audit bundle is overdue (the gateway also checks
    /// on its refresh interval); exit 1 when any is.
    Overdue,
    /// Restore an app's last known good release (the one the active release superseded); the
    /// active one becomes `rolled back`. Reports how long the switch took to reach a gateway.
    #[command(
        after_help = "Example:\n  custos release rollback ml/support-bot --why \"p99 latency doubled after 1.5.0\""
    )]
    Rollback {
        /// The app, as TEAM/APP.
        app: String,
        /// Tenant of the app to roll back.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// A release's state, tier and reasons, decisions, and what is still missing.
    Status {
        /// The release's id (rel_…).
        id: String,
    },
    /// A tenant's releases (of one app, or all).
    List {
        /// Only this app's releases.
        app: Option<String>,
        /// Tenant whose releases are listed.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
    },
}

fn duration_arg(s: &str) -> Result<std::time::Duration, String> {
    custos_core::duration::parse_duration(s)
        .map_err(|e| format!("{e} (e.g. 30s, 5m, 1h)"))
        .and_then(|d| {
            if d.is_zero() {
                Err("must be longer than zero".into())
            } else {
                Ok(d)
            }
        })
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
    manifest::file_sha256(path).map_err(|e| anyhow!("{e}"))
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

fn evidence_item(spec: &str, flag: &str) -> Result<custos_control::ReleaseEvidence> {
    let (kind, file) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("{flag} {spec:?}: expected KIND=FILE"))?;
    if kind.is_empty()
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("{flag} {spec:?}: the kind is lower-case letters, digits and '-'");
    }
    let path = Path::new(file);
    Ok(custos_control::ReleaseEvidence {
        kind: kind.into(),
        name: file.into(),
        sha256: file_sha256(path)
            .with_context(|| format!("{flag} {kind}"))?
            .0,
    })
}

fn view_json(v: &custos_control::ReleaseView) -> Value {
    let r = &v.release;
    json!({
        "id": r.id, "tenant": r.tenant, "app": r.app, "state": r.state,
        "tier": r.tier, "derived_tier": r.derived_tier,
        "reasons": serde_json::from_str::<Value>(&r.reasons).unwrap_or(Value::Null),
        "composite": serde_json::from_str::<Value>(&r.composite).unwrap_or(Value::Null),
        "evidence": serde_json::from_str::<Value>(&r.evidence).unwrap_or(Value::Null),
        "requires": {"approvals": v.rule.approvals, "evidence": v.rule.evidence},
        "decisions": v.decisions.iter().map(|d| json!({"role": d.role, "decision": d.decision, "by": d.by_whom, "why": d.why,
            "at": custos_core::time::format_rfc3339(d.at), "ledger_index": d.ledger_index})).collect::<Vec<_>>(),
        "missing": v.missing,
        "author": r.author, "why": r.why, "ticket": r.ticket,
        "created_at": custos_core::time::format_rfc3339(r.created_at),
    })
}

fn print_view(ctx: &Ctx, v: &custos_control::ReleaseView, headline: Option<String>) {
    if ctx.json {
        output::json(&view_json(v));
        return;
    }
    if let Some(h) = headline {
        eprintln!("{h}");
    }
    let r = &v.release;
    let composite: custos_govern::release::tier::Composite =
        serde_json::from_str(&r.composite).unwrap_or_default();
    println!("release {} of {}/{}: {}", r.id, r.tenant, r.app, r.state);
    println!("  components: {}", composite.label());
    let reasons: Vec<String> = serde_json::from_str(&r.reasons).unwrap_or_default();
    println!(
        "  tier: {}{} ({})",
        r.tier,
        if r.derived_tier == custos_control::DRILL {
            ", a drill".to_owned()
        } else if r.tier != r.derived_tier {
            format!(", raised from {}", r.derived_tier)
        } else {
            String::new()
        },
        reasons.join("; ")
    );
    for d in &v.decisions {
        println!(
            "  {}: {} by {}{}",
            d.role,
            d.decision,
            d.by_whom,
            d.why
                .as_deref()
                .map(|w| format!(" — {w}"))
                .unwrap_or_default()
        );
    }
    if v.missing.is_empty() {
        println!("  nothing missing");
    } else {
        println!("  missing: {}", v.missing.join(", "));
    }
}

pub async fn release(ctx: &Ctx, cmd: ReleaseCmd) -> Result<ExitCode> {
    use custos_govern::release::tier::{Composite, Flags, Pin, Tier};
    match cmd {
        ReleaseCmd::Create {
            app,
            tenant,
            model,
            prompt,
            data,
            tier,
            adr,
            evidence,
            new_pii_flow,
            schema_change,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            let store = control.store();
            let mut composite = Composite::default();
            if let Some(m) = &model {
                let (n, v) = split_ref(m, "NAME@VERSION")?;
                let e = store.model_version(n, v).await?;
                if e.state == "retired" {
                    bail!("--model {m}: it is retired");
                }
                let digest = match &e.manifest_digest {
                    Some(d) => d.clone(),
                    None => hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                        e.registration.as_bytes(),
                    )),
                };
                composite.model = Some(Pin {
                    name: n.into(),
                    version: v.into(),
                    digest,
                    pii: false,
                });
            }
            if let Some(p) = &prompt {
                let (n, v) = split_ref(p, "NAME@VERSION")?;
                let row = store.prompt(n, v).await?;
                composite.prompt = Some(Pin {
                    name: n.into(),
                    version: v.into(),
                    digest: row.digest,
                    pii: false,
                });
            }
            for d in &data {
                let (n, t) = split_ref(d, "NAME@TAG")?;
                let row = store.dataset(n, t).await?;
                let facts: DatasetFacts = serde_json::from_str(&row.facts).unwrap_or_default();
                let pii = facts.pii.is_some_and(|p| p.status == "contains-pii");
                composite.data.push(Pin {
                    name: n.into(),
                    version: t.into(),
                    digest: row.digest,
                    pii,
                });
            }
            let mut items = Vec::new();
            if let Some(a) = &adr {
                items.push(evidence_item(&format!("adr={}", a.display()), "--adr")?);
            }
            for e in &evidence {
                items.push(evidence_item(e, "--evidence")?);
            }
            let requested = tier
                .as_deref()
                .map(Tier::parse)
                .transpose()
                .map_err(|e| anyhow!("--tier: {e}"))?;
            let r = control
                .create_release(
                    &actor,
                    custos_control::NewRelease {
                        tenant,
                        app,
                        composite,
                        requested_tier: requested,
                        flags: Flags {
                            new_pii_flow,
                            schema_change,
                        },
                        evidence: items,
                    },
                    &change.reason()?,
                )
                .await?;
            let id = r.value.release.id.clone();
            print_view(
                ctx,
                &r.value,
                Some(format!(
                    "created release {id}; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                )),
            );
        }
        ReleaseCmd::Evidence { id, items, change } => {
            let items = items
                .iter()
                .map(|e| evidence_item(e, "evidence"))
                .collect::<Result<Vec<_>>>()?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .add_release_evidence(&actor, &id, items, &change.reason()?)
                .await?;
            print_view(
                ctx,
                &r.value,
                Some(format!(
                    "attached evidence to {id}; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                )),
            );
        }
        ReleaseCmd::Approve { id, role, change } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .decide_release(&actor, &id, &role, true, &change.reason()?)
                .await?;
            print_view(
                ctx,
                &r.value,
                Some(format!(
                    "approved {id} as {role}; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                )),
            );
        }
        ReleaseCmd::Deny { id, role, change } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .decide_release(&actor, &id, &role, false, &change.reason()?)
                .await?;
            print_view(
                ctx,
                &r.value,
                Some(format!(
                    "denied {id} as {role}; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                )),
            );
        }
        ReleaseCmd::Promote {
            id,
            post_check,
            no_post_check,
            auto_rollback,
            change,
        } => {
            let trust = crate::models::trusted_keys(&ctx.config)?;
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .promote_release(&actor, &id, &trust, &change.reason()?)
                .await?;
            let alias = r
                .value
                .release
                .app
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            print_view(
                ctx,
                &r.value,
                Some(format!(
                    "promoted {id}: calls to the model {alias:?} now get it; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                )),
            );
            crate::release_ops::proof_after_change(ctx, &id).await;
            if !no_post_check {
                let window = post_check.unwrap_or_else(|| control.post_check_window());
                return crate::release_ops::watch(
                    ctx,
                    &control,
                    &actor,
                    &id,
                    r.value.release.updated_at,
                    window,
                    auto_rollback,
                    &change.reason()?,
                )
                .await;
            }
        }
        ReleaseCmd::Rollback {
            app,
            tenant,
            change,
        } => {
            let started = std::time::Instant::now();
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .rollback_release(&actor, &tenant, &app, &change.reason()?)
                .await?;
            let refresh = ctx.config.server.key_refresh_interval.0;
            print_view(
                ctx,
                &r.value,
                Some(format!(
                    "rolled {tenant}/{app} back to {} in {} ms; gateways serve it within {} ms; ledger entry {}",
                    r.value.release.id,
                    started.elapsed().as_millis(),
                    refresh.as_millis(),
                    r.ledger.end.saturating_sub(1)
                )),
            );
            // The proof is of the release rolled back.
            if let Some(from) = control
                .store()
                .releases(&tenant, Some(&app))
                .await?
                .into_iter()
                .filter(|x| x.state == "rolled back")
                .max_by_key(|x| x.updated_at)
            {
                crate::release_ops::proof_after_change(ctx, &from.id).await;
            }
        }
        ReleaseCmd::Check {
            id,
            auto_rollback,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            return crate::release_ops::check(
                ctx,
                &control,
                &actor,
                &id,
                auto_rollback,
                &change.reason()?,
            )
            .await;
        }
        ReleaseCmd::Proof { id, out, key_file } => {
            return crate::release_ops::proof(ctx, &id, &out, key_file.as_deref()).await;
        }
        ReleaseCmd::VerifyProof { file, public_key } => {
            return crate::release_ops::verify_proof(ctx, &file, &public_key);
        }
        ReleaseCmd::Drill {
            app,
            tenant,
            calls,
            failure_rate,
            out,
            key_file,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            return crate::release_ops::drill(
                ctx,
                &control,
                &actor,
                crate::release_ops::DrillArgs {
                    tenant,
                    app,
                    calls,
                    failure_rate,
                    out,
                    key_file,
                    reason: change.reason()?,
                },
            )
            .await;
        }
        ReleaseCmd::Slo { tenant, app } => {
            let control = crate::control::open(ctx).await?;
            return crate::release_ops::slo(ctx, &control, &tenant, app.as_deref()).await;
        }
        ReleaseCmd::Calendar => return crate::release_ops::calendar(ctx),
        ReleaseCmd::Overdue => {
            let control = crate::control::open(ctx).await?;
            let found = control
                .flag_overdue_emergencies(&custos_control::Actor::system("custos release overdue"))
                .await?;
            let all = control.overdue_emergencies().await?;
            if ctx.json {
                output::json(&json!({"recorded_now": found, "overdue": all}));
            } else if all.is_empty() {
                eprintln!("no emergency release is overdue");
            } else {
                for o in &all {
                    println!(
                        "{} {}: {} overdue since {}",
                        o["name"].as_str().unwrap_or(""),
                        o["app"].as_str().unwrap_or(""),
                        o["missing"]
                            .as_array()
                            .map(|m| m
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" and "))
                            .unwrap_or_default(),
                        o["due"].as_str().unwrap_or("")
                    );
                }
            }
            return Ok(if all.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        ReleaseCmd::Status { id } => {
            let control = crate::control::open(ctx).await?;
            let v = control.release_view(&id).await?;
            print_view(ctx, &v, None);
        }
        ReleaseCmd::List { app, tenant } => {
            let store = crate::identity::open(ctx).await?;
            let all = store.releases(&tenant, app.as_deref()).await?;
            if ctx.json {
                output::json(&Value::Array(
                    all.iter()
                        .map(|r| json!({"id": r.id, "app": r.app, "state": r.state, "tier": r.tier,
                                        "composite": serde_json::from_str::<Value>(&r.composite).unwrap_or(Value::Null),
                                        "author": r.author, "created_at": custos_core::time::format_rfc3339(r.created_at)}))
                        .collect(),
                ));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|r| {
                        let c: custos_govern::release::tier::Composite =
                            serde_json::from_str(&r.composite).unwrap_or_default();
                        vec![
                            r.id.clone(),
                            r.app.clone(),
                            r.state.clone(),
                            r.tier.clone(),
                            c.label(),
                            r.author.clone(),
                            output::time(Some(r.created_at)),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "ID",
                        "APP",
                        "STATE",
                        "TIER",
                        "COMPONENTS",
                        "AUTHOR",
                        "CREATED",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
