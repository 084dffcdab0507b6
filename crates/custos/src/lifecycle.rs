//! `custos lineage`, `custos hold` and `custos erase`: what data was derived from what (and
//! which models and releases stand on it), legal holds, and right-to-erasure requests that
//! rewrite registered datasets without a subject's records and end in a verifiable receipt.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use custos_govern::lifecycle::erase::{self, subjects_digest, Format, Subject};
use custos_govern::lifecycle::receipt;
use custos_govern::release::DatasetFacts;
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
        /// What it came from: dataset:NAME@TAG, model:NAME@VERSION or release:ID.
        from: String,
        /// What was made from it, named the same way.
        to: String,
        /// The job that made TO (script and commit, pipeline run).
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// What a node came from and what stands on it.
    Show {
        /// dataset:NAME@TAG, model:NAME@VERSION or release:ID.
        node: String,
    },
    /// Everything downstream of a node: derived datasets, models trained on them, releases.
    Impact {
        /// dataset:NAME@TAG, model:NAME@VERSION or release:ID.
        node: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum HoldCmd {
    /// Place a legal hold: erasures and lifecycle actions on what it covers are refused.
    #[command(
        after_help = "Targets:\n  dataset:NAME or dataset:NAME@TAG   a dataset, or one tag of it\n  location:PREFIX                    every dataset stored under the prefix\n  subject:KIND:VALUE                 a data subject (kept as a digest), e.g. subject:email:jane@example.com\n\nExample:\n  custos hold place dataset:reviews --why \"litigation LIT-7\""
    )]
    Place {
        /// What to hold: dataset:NAME[@TAG], location:PREFIX or subject:KIND:VALUE.
        target: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Release a hold (--why required).
    Release {
        /// The hold's id (hold_…).
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Holds in force (--all: released ones too).
    List {
        /// Released holds too.
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
        /// The receipt `custos erase` wrote.
        file: PathBuf,
        /// The ledger's public key the receipt's checkpoint must be signed with.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
        /// The subject the receipt should be about (email:…, phone:…, id:…, text:…): checked against its salted digest.
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
    /// Everything custos can find about a data subject in the registered datasets (CSV,
    /// JSON Lines and Parquet records naming them) and its own records (holds about them, usage records
    /// naming them as end user, ledger events naming them), as JSON for the requester; the
    /// request is ledgered with the subject as a salted digest.
    #[command(
        after_help = "Example:\n  custos dsar export --subject email:jane@example.com --why DSAR-7 -o jane.json"
    )]
    Export {
        /// Whom to export: email:ADDRESS, phone:NUMBER, id:VALUE or text:VALUE (repeatable).
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
        for f in custos_control::data_files(loc)? {
            if custos_govern::lifecycle::parquet::is_parquet(&f) {
                let records = custos_govern::lifecycle::parquet::find_parquet(&f, &subjects, limit)
                    .map_err(|e| anyhow!("{}: {e}", f.display()))?;
                if !records.is_empty() {
                    datasets.push(json!({"dataset": label, "path": f.display().to_string(), "records": records}));
                }
                continue;
            }
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

/// Removes the subjects' entries from a PII vault file, replacing it whole; the receipt's
/// object for it, or `None` when it held none of theirs.
fn erase_vault(
    v: &Path,
    key: &custos_pii::anonymize::Key,
    subjects: &[Subject],
) -> Result<Option<Value>> {
    let before = custos_control::sha256_file(v)?;
    let text =
        std::fs::read_to_string(v).with_context(|| format!("cannot read {}", v.display()))?;
    let mut vault: custos_pii::anonymize::Vault = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a custos vault", v.display()))?;
    let total = vault.entries.len();
    let gone = vault
        .erase(key, |value| subjects.iter().any(|s| s.matches(value)))
        .map_err(|e| anyhow!("{}: {e}", v.display()))?;
    if gone.is_empty() {
        return Ok(None);
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
    Ok(Some(
        json!({"vault": v.display().to_string(), "version_before": before,
                   "version_after": custos_control::sha256_file(v)?, "records": total, "matched": gone.len(),
                   "action": "deleted", "at": custos_core::time::format_rfc3339(custos_core::time::now_ms())}),
    ))
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
    // Held subjects are refused before anything is touched, the vaults included.
    control.check_subject_holds(&subjects).await?;
    let mut extra = Vec::new();
    for v in &a.vault {
        let Some(key) = &vault_key else { break };
        if let Some(o) = erase_vault(v, key, &subjects)? {
            extra.push(o);
        }
    }
    let spec = custos_control::EraseSpec {
        subjects: subjects.clone(),
        datasets: a.dataset.clone(),
        pseudonymize: a.pseudonymize,
        extra_objects: extra,
        stored_responses_ttl: ctx.config.idempotency.ttl.to_string(),
    };
    let erased = control
        .erase(&actor, &spec, &reason, &|line| eprintln!("{line}"))
        .await?;
    let begun = &erased.request;
    crate::audit::checkpoint(ctx, &key).await?;
    let artifact = control.erasure_receipt(&begun.id).await?;
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
