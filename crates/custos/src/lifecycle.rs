//! `custos lineage`, `custos hold` and `custos erase`: what data was derived from what (and
//! which models and releases stand on it), legal holds, and right-to-erasure requests that
//! rewrite registered datasets without a subject's records and end in a verifiable receipt.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use custos_govern::lifecycle::erase::{self, subjects_digest, Format, Mode, Subject};
use custos_govern::lifecycle::receipt;
use custos_govern::release::DatasetFacts;
use custos_store::Dataset;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum LineageCmd {
    /// Record that TO was derived from (or trained on) FROM: dataset:NAME@TAG,
    /// model:NAME@VERSION or release:ID. Models' training datasets (by digest) and releases'
    /// components are lineage already.
    #[command(
        after_help = "Example:\n  custos lineage add dataset:reviews@raw_2025_09 dataset:reviews-clean@2025_09 --job \"dedupe.py@3f2a1c\" --why \"nightly ETL\""
    )]
    Add {
        from: String,
        to: String,
        /// The job that made TO (script and commit, pipeline run).
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// What a node came from and what stands on it.
    Show { node: String },
    /// Everything downstream of a node: derived datasets, models trained on them, releases.
    Impact { node: String },
}

#[derive(Subcommand, Debug)]
pub enum HoldCmd {
    /// Place a legal hold: erasures and lifecycle actions on what it covers are refused.
    #[command(
        after_help = "Targets:\n  dataset:NAME or dataset:NAME@TAG   a dataset, or one tag of it\n  location:PREFIX                    every dataset stored under the prefix\n  subject:KIND:VALUE                 a data subject (kept as a digest), e.g. subject:email:jane@example.com\n\nExample:\n  custos hold place dataset:reviews --why \"litigation LIT-7\""
    )]
    Place {
        target: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Release a hold (--why required).
    Release {
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Holds in force (--all: released ones too).
    List {
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EraseArgs {
    #[command(subcommand)]
    cmd: Option<EraseCmd>,
    #[command(flatten)]
    run: EraseRun,
}

#[derive(Args, Debug)]
pub struct EraseRun {
    /// The data subject: email:ADDRESS, phone:NUMBER, id:VALUE or text:VALUE; repeat for
    /// every identifier of the same person.
    #[arg(long, value_name = "KIND:VALUE")]
    subject: Vec<String>,
    /// Only these datasets (NAME@TAG) and what lineage derives from them; default: every
    /// registered dataset.
    #[arg(long, value_name = "NAME@TAG")]
    dataset: Vec<String>,
    /// Keep the subject's records with their identifying values replaced, instead of
    /// leaving the records out.
    #[arg(long)]
    pseudonymize: bool,
    /// A PII vault (`custos pii anonymize --vault`) to remove the subject's entries from
    /// (repeatable; needs CUSTOS_PII_KEY, the key it was written with).
    #[arg(long, value_name = "FILE")]
    vault: Vec<PathBuf>,
    /// Where to write the receipt (never overwritten).
    #[arg(short = 'o', long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The ledger key: signs the checkpoint the receipt's proof is under.
    #[arg(long, env = "CUSTOS_LEDGER_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Subcommand, Debug)]
pub enum EraseCmd {
    /// Check an erasure receipt offline with the ledger's public key (and, given the
    /// subject's identifiers, that it is about them).
    #[command(name = "verify-receipt")]
    VerifyReceipt {
        file: PathBuf,
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        #[arg(long, value_name = "KIND:VALUE")]
        subject: Vec<String>,
    },
    /// Erasure requests: open, done or partial, and when each is due.
    List,
    /// Record open erasure requests past their SLA (the gateway also checks every five
    /// minutes and alerts the webhooks); exit 1 when any is.
    Overdue,
}

#[derive(Subcommand, Debug)]
pub enum DsarCmd {
    /// Everything custos can find about a data subject in the registered datasets (CSV and
    /// JSON Lines records naming them) and its own records (holds about them, usage records
    /// naming them as end user, ledger events naming them), as JSON for the requester; the
    /// request is ledgered with the subject as a salted digest.
    #[command(
        after_help = "Example:\n  custos dsar export --subject email:jane@example.com --why DSAR-7 -o jane.json"
    )]
    Export {
        #[arg(long, value_name = "KIND:VALUE", required = true)]
        subject: Vec<String>,
        /// Where to write it (never overwritten; default standard output).
        #[arg(short = 'o', long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Most records per file.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

pub async fn dsar(ctx: &Ctx, cmd: DsarCmd) -> Result<ExitCode> {
    let DsarCmd::Export {
        subject,
        out,
        limit,
        change,
    } = cmd;
    let subjects = subject
        .iter()
        .map(|s| Subject::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(o) = &out {
        if o.exists() {
            bail!("{} exists; exports are never overwritten", o.display());
        }
    }
    let (control, actor) = control(ctx, &change).await?;
    let store = control.store().clone();
    let mut datasets = Vec::new();
    let mut locations = std::collections::BTreeSet::new();
    let mut unreachable = Vec::new();
    for ds in store.datasets(None).await? {
        let facts: DatasetFacts = serde_json::from_str(&ds.facts).unwrap_or_default();
        let label = format!("{}@{}", ds.name, ds.tag);
        let loc = Path::new(&facts.location);
        if facts.location.contains("://") || !loc.exists() {
            unreachable.push(json!({"dataset": label, "location": facts.location}));
            continue;
        }
        if !locations.insert(facts.location.clone()) {
            continue;
        }
        for f in data_files(loc)? {
            let format = Format::of(&f).context("not a CSV or JSON Lines file")?;
            let mut input = std::io::BufReader::new(
                std::fs::File::open(&f).with_context(|| format!("cannot read {}", f.display()))?,
            );
            let records = erase::find(&mut input, format, &subjects, limit)
                .map_err(|e| anyhow!("{}: {e}", f.display()))?;
            if !records.is_empty() {
                datasets.push(
                    json!({"dataset": label, "path": f.display().to_string(), "records": records}),
                );
            }
        }
    }
    let holds: Vec<Value> = {
        let all = store.holds(false).await?;
        subjects
            .iter()
            .filter_map(|s| {
                let d = custos_control::subject_hold_digest(s);
                all.iter()
                    .find(|h| h.target == format!("subject:{d}"))
                    .map(|h| json!({"id": h.id, "reason": h.reason, "placed_at": custos_core::time::format_rfc3339(h.placed_at),
                                    "released_at": h.released_at.map(custos_core::time::format_rfc3339)}))
            })
            .collect()
    };
    let own = control.own_records(&subjects).await?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow!("no randomness for the subject's salt: {e}"))?;
    let digest = subjects_digest(&subjects, &salt);
    let found = json!({"files": datasets.len(),
                       "records": datasets.iter().map(|d| d["records"].as_array().map_or(0, Vec::len)).sum::<usize>()});
    let r = control
        .record_dsar(&actor, &digest, found.clone(), &change.reason()?)
        .await?;
    let export = json!({
        "kind": "custos.dsar-export/v1",
        "generated_at": custos_core::time::format_rfc3339(custos_core::time::now_ms()),
        "subject": {"digest": digest, "salt": hex::encode(salt), "identifiers": subjects.len()},
        "datasets": datasets,
        "not_searched": unreachable,
        "holds": holds,
        "custos": {
            "usage_records_as_end_user": own.usage_records,
            "ledger_events_name_the_subject": if own.subject_keys > 0 {
                "yes, sealed under the subject's key (custos audit query shows them; an erasure destroys the key)"
            } else {
                "no readable ones"
            },
        },
        "ledger_index": r.ledger.end.saturating_sub(1),
    });
    let text = serde_json::to_string_pretty(&export)?;
    match &out {
        Some(o) => {
            crate::release_ops::write_new(o, &text)?;
            eprintln!(
                "wrote {} records from {} files to {}",
                found["records"],
                found["files"],
                o.display()
            );
        }
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn control(
    ctx: &Ctx,
    change: &ChangeArgs,
) -> Result<(custos_control::Control, custos_control::Actor)> {
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), change).await?;
    Ok((control, actor))
}

pub async fn lineage(ctx: &Ctx, cmd: LineageCmd) -> Result<ExitCode> {
    match cmd {
        LineageCmd::Add {
            from,
            to,
            job,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .add_lineage(&actor, &from, &to, job, &change.reason()?)
                .await?;
            if ctx.json {
                output::json(&json!({"from": r.value.src, "to": r.value.dst, "job": r.value.job}));
            } else {
                eprintln!(
                    "recorded {from} -> {to}; ledger entry {}",
                    r.ledger.end.saturating_sub(1)
                );
            }
        }
        LineageCmd::Show { node } => {
            custos_govern::lifecycle::lineage::parse_node(&node).map_err(|e| anyhow!(e))?;
            let g = crate::control::open(ctx).await?.lineage_graph().await?;
            let up = g.sources(&node);
            let down = g.impact(&node);
            if ctx.json {
                output::json(&json!({"node": node, "sources": up, "downstream": down}));
            } else {
                println!("{node}");
                for e in &up {
                    println!(
                        "  from {} ({}{})",
                        e.from,
                        e.how,
                        e.job
                            .as_deref()
                            .map(|j| format!(", {j}"))
                            .unwrap_or_default()
                    );
                }
                for e in &down {
                    println!("  to   {} ({} from {})", e.to, e.how, e.from);
                }
            }
        }
        LineageCmd::Impact { node } => {
            custos_govern::lifecycle::lineage::parse_node(&node).map_err(|e| anyhow!(e))?;
            let g = crate::control::open(ctx).await?.lineage_graph().await?;
            let down = g.impact(&node);
            if ctx.json {
                output::json(&json!(down));
            } else if down.is_empty() {
                eprintln!("nothing stands on {node}");
            } else {
                for e in &down {
                    println!("{}\t{} from {}", e.to, e.how, e.from);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn hold(ctx: &Ctx, cmd: HoldCmd) -> Result<ExitCode> {
    let show = |h: &custos_store::Hold| {
        json!({"id": h.id, "target": h.target, "reason": h.reason, "placed_by": h.placed_by,
               "placed_at": custos_core::time::format_rfc3339(h.placed_at),
               "released_by": h.released_by, "released_at": h.released_at.map(custos_core::time::format_rfc3339)})
    };
    match cmd {
        HoldCmd::Place { target, change } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .place_hold(&actor, &target, &change.reason()?)
                .await?;
            if ctx.json {
                output::json(&show(&r.value));
            } else {
                println!("{}", r.value.id);
                eprintln!(
                    "placed hold {} on {}; ledger entry {}",
                    r.value.id,
                    r.value.target,
                    r.ledger.end.saturating_sub(1)
                );
            }
        }
        HoldCmd::Release { id, change } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control.release_hold(&actor, &id, &change.reason()?).await?;
            if ctx.json {
                output::json(&show(&r.value));
            } else {
                eprintln!(
                    "released hold {id} on {}; ledger entry {}",
                    r.value.target,
                    r.ledger.end.saturating_sub(1)
                );
            }
        }
        HoldCmd::List { all } => {
            let store = crate::identity::open(ctx).await?;
            let holds = store.holds(!all).await?;
            if ctx.json {
                output::json(&Value::Array(holds.iter().map(show).collect()));
            } else {
                let rows: Vec<Vec<String>> = holds
                    .iter()
                    .map(|h| {
                        vec![
                            h.id.clone(),
                            h.target.clone(),
                            if h.released_at.is_some() {
                                "released"
                            } else {
                                "in force"
                            }
                            .into(),
                            h.placed_by.clone(),
                            output::time(Some(h.placed_at)),
                            h.reason.clone(),
                        ]
                    })
                    .collect();
                output::table(
                    &["ID", "TARGET", "STATE", "PLACED BY", "PLACED", "WHY"],
                    &rows,
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sha256_file(path: &Path) -> Result<String> {
    custos_govern::models::manifest::file_sha256(path)
        .map(|(h, _)| format!("sha256:{h}"))
        .map_err(|e| anyhow!("{e}"))
}

/// The CSV and JSON Lines files of a dataset's location, in a stable order.
fn data_files(location: &Path) -> Result<Vec<PathBuf>> {
    if location.is_file() {
        return Ok(vec![location.to_owned()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![location.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let p = e?.path();
            let meta = std::fs::symlink_metadata(&p)?;
            if meta.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                dirs.push(p);
            } else if meta.is_file() && Format::of(&p).is_some() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The digest a dataset tag is registered under, as `custos datasets add` takes it.
fn dataset_digest(location: &Path) -> Result<(String, &'static str)> {
    if location.is_dir() {
        let m = custos_govern::models::manifest::hash(location, &Default::default(), None)
            .map_err(|e| anyhow!("{e}"))?;
        Ok((m.digest(), "files"))
    } else {
        let (h, _) =
            custos_govern::models::manifest::file_sha256(location).map_err(|e| anyhow!("{e}"))?;
        Ok((h, "file"))
    }
}

/// Rewrites one file without the subjects' records; `None` when nothing named them.
fn erase_file(
    path: &Path,
    subjects: &[Subject],
    mode: &Mode,
) -> Result<Option<(String, String, erase::Outcome)>> {
    let format = Format::of(path).context("not a CSV or JSON Lines file")?;
    let before = sha256_file(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.custos-erase.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let outcome = (|| -> Result<erase::Outcome> {
        let mut input = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut out = std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .with_context(|| {
                    format!(
                        "cannot create {} (a previous erasure left it? remove it and retry)",
                        tmp.display()
                    )
                })?,
        );
        let o = erase::rewrite(&mut input, &mut out, format, subjects, mode)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let f = out.into_inner().map_err(|e| anyhow!("{e}"))?;
        f.sync_all()?;
        Ok(o)
    })();
    let o = match outcome {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if o.matched == 0 {
        std::fs::remove_file(&tmp)?;
        return Ok(None);
    }
    // The new version replaces the old one whole: no reader sees half of either.
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(Some((before, sha256_file(path)?, o)))
}

pub async fn erase(ctx: &Ctx, args: EraseArgs) -> Result<ExitCode> {
    match args.cmd {
        Some(EraseCmd::VerifyReceipt {
            file,
            public_key,
            subject,
        }) => {
            let verifier = crate::audit::read_public_key(&public_key)?;
            let subjects = subject
                .iter()
                .map(|s| Subject::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            return Ok(match receipt::verify(&v, &verifier, &subjects) {
                Ok(ok) => {
                    if ctx.json {
                        output::json(
                            &json!({"verified": true, "request": ok.request, "objects": ok.objects,
                                             "not_erased": ok.not_erased, "ledger_index": ok.index, "log": ok.origin}),
                        );
                    }
                    eprintln!(
                        "receipt verified: erasure {} changed {} objects ({} not erased); ledger entry {} in the log {}{}",
                        ok.request, ok.objects, ok.not_erased, ok.index, ok.origin,
                        if subjects.is_empty() { "" } else { "; it is about this subject" }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    if ctx.json {
                        output::json(&json!({"verified": false, "error": e.to_string()}));
                    }
                    eprintln!("receipt NOT verified: {e}");
                    ExitCode::from(1)
                }
            });
        }
        Some(EraseCmd::List) => {
            let store = crate::identity::open(ctx).await?;
            let all = store.erasures().await?;
            let now = custos_core::time::now_ms();
            let f = custos_core::time::format_rfc3339;
            if ctx.json {
                output::json(&Value::Array(all.iter().map(|e| json!({"id": e.id, "state": e.state, "subject": e.subject_digest,
                    "requested_at": f(e.requested_at), "due_at": f(e.due_at), "finished_at": e.finished_at.map(f),
                    "overdue": e.state == "open" && now > e.due_at, "receipt": e.receipt_digest})).collect()));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|e| {
                        vec![
                            e.id.clone(),
                            if e.state == "open" && now > e.due_at {
                                "OVERDUE".into()
                            } else {
                                e.state.clone()
                            },
                            f(e.requested_at),
                            f(e.due_at),
                            e.finished_at.map(f).unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "STATE", "REQUESTED", "DUE", "FINISHED"], &rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(EraseCmd::Overdue) => {
            let control = crate::control::open(ctx).await?;
            let recorded = control
                .flag_overdue_erasures(&custos_control::Actor::system("custos erase overdue"))
                .await?;
            let now = custos_core::time::now_ms();
            let overdue: Vec<Value> = control
                .store()
                .erasures()
                .await?
                .into_iter()
                .filter(|e| e.state == "open" && e.due_at < now)
                .map(|e| json!({"id": e.id, "due_at": custos_core::time::format_rfc3339(e.due_at)}))
                .collect();
            if ctx.json {
                output::json(&json!({"overdue": overdue, "recorded_now": recorded.len()}));
            } else if overdue.is_empty() {
                eprintln!("no erasure request is past its SLA");
            } else {
                for o in &overdue {
                    println!(
                        "{} overdue since {}",
                        o["id"].as_str().unwrap_or(""),
                        o["due_at"].as_str().unwrap_or("")
                    );
                }
            }
            return Ok(if overdue.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        None => {}
    }
    run(ctx, args.run).await
}

async fn run(ctx: &Ctx, a: EraseRun) -> Result<ExitCode> {
    if a.subject.is_empty() {
        bail!(
            "name the data subject: --subject email:jane@example.com (repeat for each identifier)"
        );
    }
    let subjects = a
        .subject
        .iter()
        .map(|s| Subject::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(out) = a.out.clone() else {
        bail!("give -o receipt.json: the receipt is what proves the erasure");
    };
    if out.exists() {
        bail!("{} exists; receipts are never overwritten", out.display());
    }
    let key = a.key_file.clone().or_else(|| ctx.config.audit.checkpoint_key_file.clone()).context(
        "the receipt's proof needs a signed checkpoint: give --key-file (custos audit keygen makes one) or set [audit] checkpoint_key_file",
    )?;
    let reason = a.change.reason()?;
    let vault_key = if a.vault.is_empty() {
        None
    } else {
        for v in &a.vault {
            std::fs::metadata(v)
                .with_context(|| format!("--vault {}: cannot read it", v.display()))?;
        }
        Some(
            crate::pii::key_from_env()?
                .context("--vault needs the key the vault was written with: set CUSTOS_PII_KEY")?,
        )
    };
    let (control, actor) = control(ctx, &a.change).await?;
    let store = control.store().clone();
    let holds = store.holds(true).await?;
    for s in &subjects {
        let d = custos_control::subject_hold_digest(s);
        if let Some(h) = custos_control::holding(&holds, None, None, Some(&d)) {
            bail!("a legal hold ({}, placed by {}: {}) covers this subject; nothing was erased. Release it first: custos hold release {} --why …",
                  h.id, h.placed_by, h.reason, h.id);
        }
    }
    // The datasets: the ones named and what lineage derives from them, or all registered.
    let registered = store.datasets(None).await?;
    let mut targets: Vec<Dataset> = Vec::new();
    if a.dataset.is_empty() {
        targets = registered.clone();
    } else {
        let graph = control.lineage_graph().await?;
        for d in &a.dataset {
            let (n, t) = d
                .split_once('@')
                .with_context(|| format!("--dataset {d:?}: expected NAME@TAG"))?;
            store.dataset(n, t).await?;
            let mut nodes = vec![format!("dataset:{n}@{t}")];
            nodes.extend(graph.impact(&nodes[0]).into_iter().map(|e| e.to));
            for node in nodes {
                if let Some(r) = node.strip_prefix("dataset:") {
                    if let Some(x) = registered
                        .iter()
                        .find(|x| format!("{}@{}", x.name, x.tag) == r)
                    {
                        if !targets.iter().any(|y| y.name == x.name && y.tag == x.tag) {
                            targets.push(x.clone());
                        }
                    }
                }
            }
        }
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow!("no randomness for the subject's salt: {e}"))?;
    let subject_digest = subjects_digest(&subjects, &salt);
    let begun = control
        .begin_erasure(&actor, &subject_digest, &reason)
        .await?
        .value;
    eprintln!(
        "erasure {} opened; due {}",
        begun.id,
        custos_core::time::format_rfc3339(begun.due_at)
    );
    let mode = if a.pseudonymize {
        Mode::Pseudonymize {
            token: format!("[erased:{}]", &begun.id[begun.id.len().saturating_sub(8)..]),
        }
    } else {
        Mode::Delete
    };
    let mut objects = Vec::new();
    let mut not_erased = Vec::new();
    let mut new_versions = Vec::new();
    let mut affected = Vec::new();
    let mut searched = 0u64;
    let mut locations = std::collections::BTreeSet::new();
    for ds in &targets {
        let facts: DatasetFacts = serde_json::from_str(&ds.facts).unwrap_or_default();
        let label = format!("{}@{}", ds.name, ds.tag);
        let loc = Path::new(&facts.location);
        // Tags of the same files (an erasure's new versions among them) are searched once.
        if !locations.insert(facts.location.clone()) {
            continue;
        }
        if let Some(h) = custos_control::holding(
            &holds,
            Some((&ds.name, &ds.tag)),
            Some(&facts.location),
            None,
        ) {
            not_erased.push(json!({"dataset": label, "location": facts.location, "why": format!("legal hold {}: {}", h.id, h.reason)}));
            eprintln!("  {label}: held by {} ({}); not erased", h.id, h.reason);
            continue;
        }
        if facts.location.contains("://") || !loc.exists() {
            not_erased.push(json!({"dataset": label, "location": facts.location,
                                   "why": "custos cannot reach this location from here; erase it where it lives and attach the proof"}));
            continue;
        }
        let mut changed = false;
        for f in data_files(loc)? {
            searched += 1;
            if let Some((before, after, o)) = erase_file(&f, &subjects, &mode)? {
                changed = true;
                eprintln!(
                    "  {label}: {} — {} of {} records {}",
                    f.display(),
                    o.matched,
                    o.records,
                    if a.pseudonymize {
                        "pseudonymized"
                    } else {
                        "removed"
                    }
                );
                objects.push(json!({"dataset": label, "path": f.display().to_string(), "version_before": before,
                                    "version_after": after, "records": o.records, "matched": o.matched,
                                    "values_replaced": o.values_replaced,
                                    "action": if a.pseudonymize { "pseudonymized" } else { "deleted" },
                                    "at": custos_core::time::format_rfc3339(custos_core::time::now_ms())}));
            }
        }
        if changed {
            let (digest, digest_of) = dataset_digest(loc)?;
            let mut f2 = facts.clone();
            f2.digest_of = digest_of.into();
            let tag = format!(
                "{}+erased.{}",
                ds.tag,
                &begun.id[begun.id.len().saturating_sub(8)..]
            );
            new_versions.push(Dataset {
                name: ds.name.clone(),
                tag,
                digest,
                facts: serde_json::to_string(&f2)?,
                created_by: actor.name(),
                created_at: custos_core::time::now_ms(),
            });
            affected.push(format!("dataset:{label}"));
        }
    }
    for v in &a.vault {
        let Some(key) = &vault_key else { break };
        let before = sha256_file(v)?;
        let text =
            std::fs::read_to_string(v).with_context(|| format!("cannot read {}", v.display()))?;
        let mut vault: custos_pii::anonymize::Vault = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a custos vault", v.display()))?;
        let total = vault.entries.len();
        let gone = vault
            .erase(key, |value| subjects.iter().any(|s| s.matches(value)))
            .map_err(|e| anyhow!("{}: {e}", v.display()))?;
        if gone.is_empty() {
            continue;
        }
        let tmp = v.with_extension("custos-erase.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&vault)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, v).with_context(|| format!("cannot replace {}", v.display()))?;
        eprintln!(
            "  vault {}: {} of {} entries removed",
            v.display(),
            gone.len(),
            total
        );
        objects.push(json!({"vault": v.display().to_string(), "version_before": before,
                            "version_after": sha256_file(v)?, "records": total, "matched": gone.len(),
                            "action": "deleted", "at": custos_core::time::format_rfc3339(custos_core::time::now_ms())}));
    }
    // What custos holds itself: keys sealing the subject's identifiers in ledger events
    // (destroyed: those identifiers become unreadable, the ledger stays whole) and usage
    // records naming them as a call's end user (cleared).
    let own = control.own_records(&subjects).await?;
    let graph = control.lineage_graph().await?;
    let mut models: Vec<String> = Vec::new();
    for node in &affected {
        for e in graph.impact(node) {
            if let Some(m) = e.to.strip_prefix("model:") {
                if !models.iter().any(|x| x == m) {
                    models.push(m.to_owned());
                }
            }
        }
    }
    let finished = custos_core::time::now_ms();
    let receipt_body = json!({
        "request": begun.id,
        "subject": {"digest": subject_digest, "salt": hex::encode(salt), "identifiers": subjects.len()},
        // The receipt is handed out: it names no address, even one given in the reason.
        "why": reason.why.as_deref().map(custos_govern::lifecycle::seal::mask_emails),
        "ticket": reason.ticket,
        "requested_at": custos_core::time::format_rfc3339(begun.requested_at),
        "due_at": custos_core::time::format_rfc3339(begun.due_at),
        "finished_at": custos_core::time::format_rfc3339(finished),
        "mode": if a.pseudonymize { "pseudonymize" } else { "delete" },
        "searched": {"datasets": targets.len(), "files": searched},
        "objects": objects,
        "new_versions": new_versions.iter().map(|v| json!({"dataset": format!("{}@{}", v.name, v.tag), "digest": format!("sha256:{}", v.digest)})).collect::<Vec<_>>(),
        "models_flagged": models,
        "custos": {"ledger_subject_keys_shredded": own.subject_keys, "usage_records_end_user_cleared": own.usage_records,
                   "gateway_stored_responses": format!("kept in gateway memory for at most {} after each call (idempotency replay), then gone",
                                                       ctx.config.idempotency.ttl)},
        "not_erased": not_erased,
    });
    let done = control
        .complete_erasure(
            &actor,
            &begun.id,
            &receipt_body,
            &new_versions,
            &models,
            &subjects,
            &reason,
        )
        .await?;
    let index = done.value;
    crate::audit::checkpoint(ctx, &key).await?;
    let Some((size, note)) = store.ledger_latest_checkpoint().await? else {
        bail!("no signed checkpoint after signing one; run custos audit verify");
    };
    let entry = store
        .ledger_entries(index as i64, 1)
        .await?
        .into_iter()
        .next()
        .context("the erasure's ledger event is missing; run custos audit verify")?;
    let nodes = store
        .ledger_nodes_at(&custos_ledger::inclusion_positions(index, size))
        .await?;
    let path = custos_ledger::inclusion_proof(&nodes, index, size)
        .map_err(|e| anyhow!("cannot prove the event: {e}"))?;
    let artifact = receipt::build(receipt_body, index, &entry.event, &path, size, &note);
    let text = serde_json::to_string_pretty(&artifact)?;
    crate::release_ops::write_new(&out, &text)?;
    if let Some(dir) = &ctx.config.audit.anchor_dir {
        // The seed's audit/deletions/{id}.json, read-only beside the anchored checkpoints.
        let dir = dir.join("deletions");
        std::fs::create_dir_all(&dir)?;
        let p = dir.join(format!("{}.json", begun.id));
        std::fs::write(&p, &text)?;
        let mut perms = std::fs::metadata(&p)?.permissions();
        perms.set_readonly(true);
        std::fs::set_permissions(&p, perms)?;
    }
    if ctx.json {
        output::json(
            &json!({"request": begun.id, "objects": artifact["receipt"]["objects"], "not_erased": artifact["receipt"]["not_erased"],
                             "models_flagged": artifact["receipt"]["models_flagged"], "receipt": out}),
        );
    } else {
        eprintln!(
            "erasure {} {}: {} objects rewritten, {} not erased, {} models flagged trained-on-erased-data; receipt in {}",
            begun.id,
            if artifact["receipt"]["not_erased"].as_array().is_some_and(|x| !x.is_empty()) { "partial" } else { "done" },
            artifact["receipt"]["objects"].as_array().map_or(0, Vec::len),
            artifact["receipt"]["not_erased"].as_array().map_or(0, Vec::len),
            artifact["receipt"]["models_flagged"].as_array().map_or(0, Vec::len),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
