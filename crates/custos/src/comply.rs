//! `custos risk`, `custos dpia` and `custos comply`: the risk register as code (init, lint,
//! report), data protection impact assessments, compliance status against NIST AI RMF and
//! ISO/IEC 42001 from custos' own evidence, and the signed evidence bundle for auditors.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use custos_core::time::{format_rfc3339, now_ms, parse_rfc3339};
use custos_govern::comply::{self, bundle, dpia, CheckResult, ControlResult, Status};
use custos_govern::risk::{self, fair, report, Parsed};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const DAY_MS: i64 = 86_400_000;

#[derive(Subcommand, Debug)]
pub enum RiskCmd {
    /// Write a starter register (the OWASP Top 10 for LLM applications and the data, access,
    /// supply-chain and cost risks around them), linked to the controls that exist here.
    #[command(
        after_help = "Example:\n  custos risk init --system support-bot --owner risk@example.com\n  $EDITOR risks.yaml && custos risk lint"
    )]
    Init {
        /// Where to write the starter register (never overwritten).
        #[arg(short, long, default_value = "risks.yaml")]
        output: PathBuf,
        /// The AI system the register is about.
        #[arg(long, default_value = "ai-system")]
        system: String,
        /// Owner of every risk (else left blank for you to fill: the lint asks for each).
        #[arg(long)]
        owner: Option<String>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check the register: at least ten risks tracked; each with an owner, mitigation and
    /// due date; no open risk past its date; no expired acceptance or one above the
    /// thresholds; every linked control exists in the running configuration.
    #[command(
        after_help = "Exit status: 0 when clean (warnings allowed), 1 with problems (each printed as\nFILE:LINE: error[RULE] RISK: message), 2 when the file cannot be read.\n\nExample:\n  custos risk lint risks.yaml"
    )]
    Lint {
        /// The risk register to check.
        #[arg(default_value = "risks.yaml")]
        file: PathBuf,
    },
    /// Render the register: a heat map (SVG), or a table (Markdown, HTML with the heat map),
    /// with FAIR annualized loss exposure for risks that carry ranges.
    #[command(
        after_help = "Examples:\n  custos risk report --format html -o risks.html\n  custos risk report --format svg -o heatmap.svg\n  custos risk report --format md --iterations 50000 --seed 7"
    )]
    Report {
        /// The risk register to report on.
        #[arg(default_value = "risks.yaml")]
        file: PathBuf,
        /// Report format: Markdown, HTML (heat map and table), SVG (heat map) or JSON.
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormat,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        sim: SimArgs,
    },
    /// The control ids a risk may link to (`controls: [...]`), from the running configuration.
    Controls,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Simulated years per FAIR estimate.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    iterations: u32,
    /// Seed of the simulation: the same register and seed give the same numbers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Md,
    Html,
    Svg,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ThreatCmd {
    /// The deployment's data-flow diagram as configured (clients, gateway, identity and model
    /// providers with their regions, datasets, stores, anchors, webhooks, trust boundaries)
    /// and each attack surface with the controls that cover it and those that are off, with
    /// the register's risks placed on their surfaces.
    #[command(
        after_help = "Formats: md (diagram in Mermaid, surfaces and controls; the default), mermaid, svg, json.\n\nExit status: 0, or 1 with --fail-on-gaps when a control is off.\n\nExamples:\n  custos threat model --risks risks.yaml > THREATS.md\n  custos threat model --format svg -o dfd.svg\n  custos threat model --json | jq '.surfaces[] | {name, off: [.controls[] | select(.on | not) | .id]}'"
    )]
    Model {
        /// Diagram format.
        #[arg(long, value_enum, default_value = "md")]
        format: ThreatFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The risk register whose risks are placed on the surfaces (default: ./risks.yaml
        /// when present).
        #[arg(long, value_name = "FILE")]
        risks: Option<PathBuf>,
        /// Exit 1 when any control is off.
        #[arg(long)]
        fail_on_gaps: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ThreatFormat {
    Md,
    Mermaid,
    Svg,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum DpiaCmd {
    /// DPIAs and their state (required, drafted, approved).
    List,
    /// One DPIA with what triggered it (--document prints its text).
    Show {
        /// The DPIA's id (dpia_…).
        id: String,
        /// Print the DPIA's document text as well.
        #[arg(long)]
        document: bool,
    },
    /// The assessment's template (GDPR Art. 35 sections), prefilled with the trigger's facts.
    Template {
        /// The DPIA's id (dpia_…).
        id: String,
        /// Write the template to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Attach the assessment to a DPIA (every section answered), or with --subject open a DPIA
    /// nothing triggered and attach it.
    #[command(
        after_help = "Examples:\n  custos dpia template dpia_0193… -o dpia.md && $EDITOR dpia.md\n  custos dpia new dpia_0193… --file dpia.md --why \"DPIA for the support bot's new data\"\n  custos dpia new --subject \"support transcripts to a US provider\" --file dpia.md"
    )]
    New {
        /// The DPIA a trigger required (see `custos dpia list`).
        id: Option<String>,
        /// The DPIA document (Markdown, every GDPR Art. 35 section filled in).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// What is assessed, for a DPIA no trigger required.
        #[arg(long, conflicts_with = "id")]
        subject: Option<String>,
        /// The release it belongs to: it waits for the DPIA's approval.
        #[arg(long, requires = "subject")]
        release: Option<String>,
        /// Tenant the DPIA belongs to.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Approve a drafted DPIA (never its author; by default the privacy-officer role).
    Approve {
        /// The DPIA's id (dpia_…).
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ComplyCmd {
    /// Pass, fail or not covered per framework control, with the evidence behind each
    /// answer, from custos' store and ledger. Exit 1 when a control fails.
    #[command(
        after_help = "Frameworks: nist-ai-rmf (NIST AI RMF 1.0), iso-42001 (ISO/IEC 42001:2023 Annex A), or\n--mapping FILE of your own over the same checks (`custos comply checks` lists them).\n\nExamples:\n  custos comply status --framework nist-ai-rmf --public-key .custos/ledger.pub\n  custos comply status --framework iso-42001 --risks risks.yaml --json"
    )]
    Status {
        #[command(flatten)]
        scope: StatusArgs,
        /// Print every check's evidence too.
        #[arg(long)]
        evidence: bool,
        /// Judge as of this day (YYYY-MM-DD, UTC end of day) instead of now: the status an
        /// audit asks for at a period's end, or what expires if nothing is done by then.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
    },
    /// The automated checks and what each asks.
    Checks,
    /// A signed evidence bundle for an audit period: the ledger export with its range proof
    /// and signed checkpoint, releases with their evidence files, model cards, access reviews,
    /// the risk register and its lint, DPIAs, erasure receipts, the compliance status, and an
    /// index.html to read offline.
    #[command(
        after_help = "Periods: 2026-Q4, 2026-11, 2026, or 2026-10-01..2026-12-31 (UTC).\n\nExample:\n  custos comply bundle --period 2026-Q4 -o audit-2026Q4.zip --key-file .custos/ledger.key --risks risks.yaml\n  custos comply verify audit-2026Q4.zip --public-key .custos/ledger.pub"
    )]
    Bundle {
        /// The period the bundle covers: 2026-Q4, 2026-11, 2026, or 2026-10-01..2026-12-31 (UTC).
        #[arg(long)]
        period: String,
        /// Where to write the bundle (.zip; never overwritten).
        #[arg(short, long)]
        output: PathBuf,
        /// The ledger's private key: signs a fresh checkpoint and the bundle's manifest.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        #[command(flatten)]
        scope: StatusArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Check a bundle with only the archive and the ledger's public key: the signature, every
    /// file's SHA-256, files missing or added, and the ledger entries against the signed root.
    #[command(
        after_help = "Exit status: 0 verified, 1 when anything is altered, missing or added (each named),\n2 when the archive or key cannot be read."
    )]
    Verify {
        /// The bundle `custos comply bundle` wrote (.zip).
        bundle: PathBuf,
        /// The ledger's public key the bundle must be signed with.
        #[arg(long, value_name = "FILE")]
        public_key: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// nist-ai-rmf, iso-42001 or all.
    #[arg(long, default_value = "all")]
    framework: String,
    /// A mapping file of your own (YAML: id, name, source, controls with their checks).
    #[arg(long, value_name = "FILE")]
    mapping: Option<PathBuf>,
    /// The risk register to lint (default: ./risks.yaml when present).
    #[arg(long, value_name = "FILE")]
    risks: Option<PathBuf>,
    /// The ledger's public key, to check checkpoint signatures (default: .custos/ledger.pub
    /// when present).
    #[arg(long, value_name = "FILE")]
    public_key: Option<PathBuf>,
    /// A signed checkpoint held outside the database, as an anchor (repeatable).
    #[arg(long = "checkpoint", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
}

/// A file custos reads whole (a register, a mapping, an assessment), refused past `max`
/// bytes so a wrong path cannot exhaust memory.
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", path.display());
    }
    if meta.len() > max {
        bail!(
            "{} is {} bytes, more than the {max} this command reads",
            path.display(),
            meta.len()
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Registers, mappings and DPIAs larger than this are not what they claim to be.
const MAX_TEXT: u64 = 16 << 20;

fn today() -> (i32, u8, u8) {
    let s = format_rfc3339(now_ms());
    risk::parse_date(&s[..10]).unwrap_or((1970, 1, 1))
}

/// Reads a register's text; `Err` is the exit-2 reason (unreadable, too large, not UTF-8).
fn read_text(file: &Path) -> Result<String> {
    let bytes = read_bounded(file, MAX_TEXT)?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{}: not UTF-8 (byte {})",
            file.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// Reads and parses a register; `Err` carries the exit-2 reason.
fn read_register(file: &Path) -> Result<std::result::Result<Parsed, (usize, String)>> {
    let text = read_text(file)?;
    Ok(risk::parse(&text).map_err(|risk::RiskError::Syntax { line, message }| (line, message)))
}

fn exposures(reg: &risk::Register, sim: &SimArgs) -> BTreeMap<String, fair::Exposure> {
    reg.risks
        .iter()
        .filter_map(|r| {
            let f = r.fair.as_ref()?;
            fair::simulate(f, sim.iterations, sim.seed)
                .ok()
                .map(|e| (r.id.clone(), e))
        })
        .collect()
}

/// The lint of a register file, as JSON, and whether it is clean.
async fn lint_file(
    ctx: &Ctx,
    control: &custos_control::Control,
    file: &Path,
) -> Result<(Value, bool)> {
    let text = read_text(file)?;
    let engine = crate::control::engine(ctx)?;
    let ids = engine.policies().ids();
    let lint = control
        .lint_register(&ctx.config, &ids, &text, today())
        .await?;
    let ok = lint.ok();
    Ok((
        json!({"file": file.display().to_string(), "ok": ok,
               "risks": lint.register.risks.len(), "problems": lint.problems}),
        ok,
    ))
}

fn print_lint(v: &Value) {
    let file = v["file"].as_str().unwrap_or("risks.yaml");
    for p in v["problems"].as_array().into_iter().flatten() {
        println!(
            "{file}:{}: {}[{}]{}: {}",
            p["line"],
            p["severity"].as_str().unwrap_or("error"),
            p["rule"].as_str().unwrap_or(""),
            p["risk"]
                .as_str()
                .map(|r| format!(" {r}"))
                .unwrap_or_default(),
            p["message"].as_str().unwrap_or("")
        );
    }
}

pub async fn risk(ctx: &Ctx, cmd: RiskCmd) -> Result<ExitCode> {
    match cmd {
        RiskCmd::Init {
            output: out,
            system,
            owner,
            force,
        } => {
            if out.exists() && !force {
                bail!("{} exists; pass --force to overwrite it", out.display());
            }
            let control = crate::control::open(ctx).await?;
            let engine = crate::control::engine(ctx)?;
            let catalog = control
                .control_catalog(&ctx.config, &engine.policies().ids())
                .await?;
            let due = &format_rfc3339(now_ms() + 90 * DAY_MS)[..10];
            let text = risk::starter::register(&system, owner.as_deref(), due, &catalog);
            let risks = risk::parse(&text).map_or(0, |p| p.register.risks.len());
            std::fs::write(&out, text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {} ({risks} risks, due {due}); edit it, then `custos risk lint {}`",
                out.display(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        RiskCmd::Lint { file } => {
            if let Err(e) = read_register(&file) {
                eprintln!("error: {e:#}");
                return Ok(ExitCode::from(2));
            }
            let control = crate::control::open(ctx).await?;
            let (v, ok) = lint_file(ctx, &control, &file).await?;
            if ctx.json {
                output::json(&v);
            } else {
                print_lint(&v);
                let n = v["problems"].as_array().map_or(0, Vec::len);
                eprintln!(
                    "{}: {} risks, {}",
                    file.display(),
                    v["risks"].as_u64().unwrap_or(0),
                    if n == 0 {
                        "no problems".to_owned()
                    } else {
                        format!("{n} problem(s)")
                    }
                );
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        RiskCmd::Report {
            file,
            format,
            output: out,
            sim,
        } => {
            let parsed = match read_register(&file)? {
                Ok(p) => p,
                Err((line, message)) => {
                    eprintln!("{}:{line}: error[syntax]: {message}", file.display());
                    return Ok(ExitCode::from(2));
                }
            };
            let exp = exposures(&parsed.register, &sim);
            let text = match format {
                ReportFormat::Md => report::markdown(&parsed.register, &exp),
                ReportFormat::Html => report::html(&parsed.register, &exp),
                ReportFormat::Svg => report::heat_map(&parsed.register),
                ReportFormat::Json => serde_json::to_string_pretty(&json!({
                    "system": parsed.register.system, "currency": parsed.register.currency.as_deref().unwrap_or("USD"),
                    "risks": parsed.register.risks.iter().map(|r| json!({
                        "id": r.id, "title": r.title, "surface": r.surface, "threat": r.threat,
                        "likelihood": r.likelihood(), "impact": r.impact(), "score": r.score(),
                        "rating": r.score().map(risk::rating), "status": r.status(),
                        "owner": r.owner, "due": r.due, "controls": r.controls,
                        "exposure": exp.get(&r.id)})).collect::<Vec<_>>()}))?,
            };
            match out {
                Some(p) => {
                    std::fs::write(&p, text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("wrote {}", p.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        RiskCmd::Controls => {
            let control = crate::control::open(ctx).await?;
            let engine = crate::control::engine(ctx)?;
            let catalog = control
                .control_catalog(&ctx.config, &engine.policies().ids())
                .await?;
            if ctx.json {
                output::json(&json!(catalog));
            } else {
                let rows: Vec<Vec<String>> = catalog
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.clone()])
                    .collect();
                output::table(&["CONTROL", "WHAT"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn threat(ctx: &Ctx, cmd: ThreatCmd) -> Result<ExitCode> {
    let ThreatCmd::Model {
        format,
        output: out,
        risks,
        fail_on_gaps,
    } = cmd;
    let control = crate::control::open(ctx).await?;
    let engine = crate::control::engine(ctx)?;
    let mut model = control
        .threat_model(&ctx.config, &engine.policies().ids())
        .await?;
    if let Some(f) = risks.or_else(|| Some(PathBuf::from("risks.yaml")).filter(|p| p.exists())) {
        match read_register(&f)? {
            Ok(p) => model.link(&p.register),
            Err((line, message)) => bail!("{}:{line}: {message}", f.display()),
        }
    }
    let format = if ctx.json { ThreatFormat::Json } else { format };
    let text = match format {
        ThreatFormat::Md => custos_govern::threat::markdown(&model),
        ThreatFormat::Mermaid => custos_govern::threat::mermaid(&model),
        ThreatFormat::Svg => custos_govern::threat::svg(&model),
        ThreatFormat::Json => {
            let mut v = serde_json::to_value(&model)?;
            v["mermaid"] = json!(custos_govern::threat::mermaid(&model));
            serde_json::to_string_pretty(&v)? + "\n"
        }
    };
    match out {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => print!("{text}"),
    }
    let gaps = model.gaps();
    if !ctx.json && !matches!(format, ThreatFormat::Json) {
        eprintln!(
            "{} surfaces, {} controls off: {}",
            model.surfaces.len(),
            gaps.len(),
            gaps.iter()
                .map(|(s, c)| format!("{s}/{}", c.id))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(if fail_on_gaps && !gaps.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn dpia_json(d: &custos_store::Dpia, document: bool) -> Value {
    json!({"id": d.id, "tenant": d.tenant, "trigger": d.trigger_kind, "trigger_key": d.trigger_key,
           "subject": d.subject, "release": d.release_id, "state": d.state,
           "details": serde_json::from_str::<Value>(&d.details).unwrap_or(Value::Null),
           "author": d.author, "approved_by": d.approved_by,
           "approved_at": d.approved_at.map(format_rfc3339),
           "required_at": format_rfc3339(d.required_at),
           "document_sha256": d.document_sha256,
           "document": if document { json!(d.document) } else { Value::Null }})
}

/// The facts a trigger recorded, as lines for the template.
fn facts(d: &custos_store::Dpia) -> Vec<String> {
    let v: Value = serde_json::from_str(&d.details).unwrap_or(Value::Null);
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{}: {}", k.replace('_', " "), v))
                .collect()
        })
        .unwrap_or_default()
}

fn trigger_text(kind: &str) -> &'static str {
    match kind {
        "pii-dataset" => "a dataset with personal data was registered",
        "high-release-pii" => "a high-tier release touches personal data",
        "cross-border" => "a new cross-border transfer of personal data",
        "pii-entity" => "a new type of personal data flows to a provider",
        _ => "opened by hand",
    }
}

pub async fn dpia_cmd(ctx: &Ctx, cmd: DpiaCmd) -> Result<ExitCode> {
    match cmd {
        DpiaCmd::List => {
            let store = crate::identity::open(ctx).await?;
            let all = store.dpias().await?;
            if ctx.json {
                output::json(&json!(all
                    .iter()
                    .map(|d| dpia_json(d, false))
                    .collect::<Vec<_>>()));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.state.clone(),
                            d.trigger_kind.clone(),
                            d.subject.clone(),
                            output::time(Some(d.required_at)),
                            output::opt(d.approved_by.clone()),
                        ]
                    })
                    .collect();
                output::table(
                    &[
                        "ID",
                        "STATE",
                        "TRIGGER",
                        "SUBJECT",
                        "REQUIRED",
                        "APPROVED BY",
                    ],
                    &rows,
                );
            }
        }
        DpiaCmd::Show { id, document } => {
            let store = crate::identity::open(ctx).await?;
            let d = store.dpia(&id).await?;
            if ctx.json {
                output::json(&dpia_json(&d, document));
            } else if document {
                print!("{}", d.document.as_deref().unwrap_or(""));
            } else {
                output::json(&dpia_json(&d, false));
            }
        }
        DpiaCmd::Template { id, output: out } => {
            let store = crate::identity::open(ctx).await?;
            let d = store.dpia(&id).await?;
            let text = dpia::template(&d.subject, trigger_text(&d.trigger_kind), &facts(&d));
            match out {
                Some(p) => {
                    std::fs::write(&p, text)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!(
                        "wrote {}; answer each section, then `custos dpia new {id} --file {}`",
                        p.display(),
                        p.display()
                    );
                }
                None => print!("{text}"),
            }
        }
        DpiaCmd::New {
            id,
            file,
            subject,
            release,
            tenant,
            change,
        } => {
            let text = read_bounded(&file, MAX_TEXT)?;
            let text =
                String::from_utf8(text).map_err(|_| anyhow!("{}: not UTF-8", file.display()))?;
            let (control, actor) = crate::control::for_change(ctx, &change).await?;
            let reason = change.reason()?;
            let id = match (id, subject) {
                (Some(id), _) => id,
                (None, Some(s)) => {
                    let gaps = dpia::missing(&text);
                    if !gaps.is_empty() {
                        bail!(
                            "{}: the assessment is incomplete: {}",
                            file.display(),
                            gaps.join("; ")
                        );
                    }
                    control
                        .dpia_open(&actor, &tenant, &s, release.as_deref(), &reason)
                        .await?
                        .value
                        .id
                }
                (None, None) => {
                    bail!("name the DPIA (custos dpia list) or open one with --subject")
                }
            };
            let r = control.dpia_draft(&actor, &id, &text, &reason).await?;
            if ctx.json {
                output::json(&dpia_json(&r.value, false));
            } else {
                println!("{}", r.value.id);
                eprintln!(
                    "DPIA {} drafted by {} (sha256:{}); ledger entry {}. Someone else approves it: custos dpia approve {}",
                    r.value.id,
                    actor.name(),
                    r.value.document_sha256.as_deref().unwrap_or(""),
                    r.ledger.end.saturating_sub(1),
                    r.value.id
                );
            }
        }
        DpiaCmd::Approve { id, change } => {
            let (control, actor) = crate::control::for_change(ctx, &change).await?;
            let r = control.dpia_approve(&actor, &id, &change.reason()?).await?;
            if ctx.json {
                output::json(&dpia_json(&r.value, false));
            } else {
                eprintln!(
                    "DPIA {id} approved by {}; ledger entry {}",
                    actor.name(),
                    r.ledger.end.saturating_sub(1)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `[start, end)` in ms of a period: `2026-Q4`, `2026-11`, `2026`, `2026-10-01..2026-12-31`.
pub fn period_bounds(p: &str) -> Result<(i64, i64)> {
    let at = |y: i32, m: u32| {
        let (y, m) = if m > 12 { (y + 1, m - 12) } else { (y, m) };
        parse_rfc3339(&format!("{y:04}-{m:02}-01T00:00:00Z"))
            .ok_or_else(|| anyhow!("--period {p:?}: no such date"))
    };
    let bad = || anyhow!("--period {p:?}: use 2026-Q4, 2026-11, 2026 or 2026-10-01..2026-12-31");
    let p = p.trim();
    if let Some((a, b)) = p.split_once("..") {
        let day = |s: &str| {
            risk::parse_date(s)
                .and_then(|_| parse_rfc3339(&format!("{s}T00:00:00Z")))
                .ok_or_else(bad)
        };
        let (a, b) = (day(a)?, day(b)? + DAY_MS);
        if a >= b {
            bail!("--period {p:?}: the start is after the end");
        }
        return Ok((a, b));
    }
    let (y, rest) = p.split_at(p.len().min(4));
    let y: i32 = y.parse().map_err(|_| bad())?;
    if !(1970..=9998).contains(&y) {
        return Err(bad());
    }
    match rest {
        "" => Ok((at(y, 1)?, at(y, 13)?)),
        r => match r.strip_prefix("-Q").or_else(|| r.strip_prefix("-q")) {
            Some(q) => {
                let q: u32 = q.parse().map_err(|_| bad())?;
                if !(1..=4).contains(&q) {
                    return Err(bad());
                }
                Ok((at(y, 3 * q - 2)?, at(y, 3 * q + 1)?))
            }
            None => {
                let m: u32 = r
                    .strip_prefix('-')
                    .and_then(|m| m.parse().ok())
                    .ok_or_else(bad)?;
                if !(1..=12).contains(&m) || r.len() != 3 {
                    return Err(bad());
                }
                Ok((at(y, m)?, at(y, m + 1)?))
            }
        },
    }
}

/// Every check's result as of `as_of`.
async fn checks(
    ctx: &Ctx,
    control: &custos_control::Control,
    scope: &StatusArgs,
    as_of: i64,
) -> Result<(BTreeMap<String, CheckResult>, Option<Value>)> {
    let mut out: BTreeMap<String, CheckResult> = control
        .comply_checks(&ctx.config, as_of)
        .await?
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let key = scope
        .public_key
        .clone()
        .or_else(|| Some(PathBuf::from(".custos/ledger.pub")).filter(|p| p.exists()));
    let verifier = match &key {
        Some(p) => Some(crate::audit::read_public_key(p)?),
        None => None,
    };
    let anchored =
        crate::audit::anchored_check(ctx, control.store(), verifier.as_ref(), &scope.checkpoints)
            .await?;
    out.insert(anchored.id.clone(), anchored);
    let risks = scope
        .risks
        .clone()
        .or_else(|| Some(PathBuf::from("risks.yaml")).filter(|p| p.exists()));
    let mut lint = None;
    let r = match &risks {
        None => CheckResult::new(
            "risk-register",
            Status::NotCovered,
            "no risk register (pass --risks FILE, or `custos risk init`)",
        ),
        Some(f) => {
            let (v, ok) = lint_file(ctx, control, f).await?;
            let errors = v["problems"]
                .as_array()
                .map_or(0, |p| p.iter().filter(|p| p["severity"] == "error").count());
            let c = if ok {
                CheckResult::new(
                    "risk-register",
                    Status::Pass,
                    format!("{}: {} risks, lint clean", f.display(), v["risks"]),
                )
            } else {
                CheckResult::new(
                    "risk-register",
                    Status::Fail,
                    format!(
                        "{}: {errors} lint error(s) (`custos risk lint {}`)",
                        f.display(),
                        f.display()
                    ),
                )
            };
            lint = Some(v.clone());
            c.with(vec![json!({"file": f.display().to_string(), "lint": v})])
        }
    };
    out.insert(r.id.clone(), r);
    Ok((out, lint))
}

fn frameworks(scope: &StatusArgs) -> Result<Vec<comply::Framework>> {
    if let Some(m) = &scope.mapping {
        let text = String::from_utf8(read_bounded(m, MAX_TEXT)?)
            .map_err(|_| anyhow!("{}: not UTF-8", m.display()))?;
        return Ok(vec![
            comply::parse_framework(&text).map_err(|e| anyhow!("{}: {e}", m.display()))?
        ]);
    }
    match scope.framework.as_str() {
        "all" => Ok(vec![
            comply::framework("nist-ai-rmf")?,
            comply::framework("iso-42001")?,
        ]),
        f => Ok(vec![comply::framework(f)?]),
    }
}

fn status_json(
    results: &BTreeMap<String, CheckResult>,
    controls: &[ControlResult],
    as_of: i64,
) -> Value {
    let count = |s: Status| controls.iter().filter(|c| c.status == s).count();
    json!({"as_of": format_rfc3339(as_of),
           "summary": {"pass": count(Status::Pass), "fail": count(Status::Fail), "not_covered": count(Status::NotCovered)},
           "controls": controls, "checks": results.values().collect::<Vec<_>>()})
}

fn status_markdown(results: &BTreeMap<String, CheckResult>, controls: &[ControlResult]) -> String {
    let mut s = String::from("| framework | control | status | title |\n|---|---|---|---|\n");
    for c in controls {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.framework,
            c.id,
            c.status.as_str(),
            c.title
        ));
    }
    s.push_str("\n| check | status | summary |\n|---|---|---|\n");
    for r in results.values() {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            r.id,
            r.status.as_str(),
            r.summary.replace('|', "\\|")
        ));
    }
    s
}

pub async fn comply_cmd(ctx: &Ctx, cmd: ComplyCmd) -> Result<ExitCode> {
    match cmd {
        ComplyCmd::Checks => {
            if ctx.json {
                output::json(&json!(comply::CHECKS
                    .iter()
                    .map(|(id, what)| json!({"id": id, "asks": what}))
                    .collect::<Vec<_>>()));
            } else {
                let rows: Vec<Vec<String>> = comply::CHECKS
                    .iter()
                    .map(|(a, b)| vec![(*a).into(), (*b).into()])
                    .collect();
                output::table(&["CHECK", "ASKS"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        ComplyCmd::Status {
            scope,
            evidence,
            as_of,
        } => {
            let fws = frameworks(&scope)?;
            let control = crate::control::open(ctx).await?;
            let as_of = match as_of {
                None => now_ms(),
                Some(d) => risk::parse_date(&d)
                    .and_then(|_| parse_rfc3339(&format!("{d}T23:59:59Z")))
                    .ok_or_else(|| anyhow!("--as-of {d:?}: a date, YYYY-MM-DD"))?,
            };
            let (results, _) = checks(ctx, &control, &scope, as_of).await?;
            let controls: Vec<ControlResult> = fws
                .iter()
                .flat_map(|f| comply::evaluate(f, &results))
                .collect();
            let failed = controls.iter().any(|c| c.status == Status::Fail);
            if ctx.json {
                output::json(&status_json(&results, &controls, as_of));
            } else {
                let rows: Vec<Vec<String>> = controls
                    .iter()
                    .map(|c| {
                        vec![
                            c.framework.clone(),
                            c.id.clone(),
                            c.status.as_str().to_uppercase(),
                            c.title.clone(),
                        ]
                    })
                    .collect();
                output::table(&["FRAMEWORK", "CONTROL", "STATUS", "TITLE"], &rows);
                println!();
                let rows: Vec<Vec<String>> = results
                    .values()
                    .map(|r| {
                        vec![
                            r.id.clone(),
                            r.status.as_str().to_uppercase(),
                            r.summary.clone(),
                        ]
                    })
                    .collect();
                output::table(&["CHECK", "STATUS", "EVIDENCE"], &rows);
                if evidence {
                    for r in results.values().filter(|r| !r.evidence.is_empty()) {
                        println!("\n{}:", r.id);
                        for e in &r.evidence {
                            println!("  {e}");
                        }
                    }
                }
                let count = |s: Status| controls.iter().filter(|c| c.status == s).count();
                eprintln!(
                    "{} controls: {} pass, {} fail, {} not covered",
                    controls.len(),
                    count(Status::Pass),
                    count(Status::Fail),
                    count(Status::NotCovered)
                );
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        ComplyCmd::Bundle {
            period,
            output: out,
            key_file,
            scope,
            change,
        } => {
            let (start, end) = period_bounds(&period)?;
            if out.exists() {
                bail!("{} exists; bundles never overwrite", out.display());
            }
            let signer = custos_ledger::NoteSigner::from_key(
                std::fs::read_to_string(&key_file)
                    .with_context(|| format!("cannot read {}", key_file.display()))?
                    .trim(),
            )
            .with_context(|| format!("{} is not a custos ledger key", key_file.display()))?;
            let mut scope = scope;
            if scope.public_key.is_none() {
                let public = key_file.with_extension("pub");
                if public.exists() {
                    scope.public_key = Some(public);
                }
            }
            let (control, actor) = crate::control::for_change(ctx, &change).await?;
            // A fresh checkpoint covers everything recorded so far, so the export reaches the
            // period's end (or now).
            crate::audit::checkpoint(ctx, &key_file).await?;
            let as_of = end.min(now_ms());
            let files = collect(ctx, &control, &scope, &period, start, end, as_of).await?;
            let created = format_rfc3339(now_ms());
            let tmp = out.with_extension("zip.partial");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let manifest = bundle::write(
                std::io::BufWriter::new(f),
                &files,
                &period,
                &created,
                &signer,
            )?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let digest = custos_control::sha256_file(&out)?;
            control
                .record_observation(
                    &actor,
                    "comply.bundle",
                    json!({"type": "evidence_bundle", "name": out.file_name().map(|n| n.to_string_lossy().into_owned()),
                           "period": period, "sha256": digest, "files": files.len()}),
                    &change.reason()?,
                )
                .await?;
            if ctx.json {
                output::json(
                    &json!({"bundle": out.display().to_string(), "sha256": digest, "manifest": manifest}),
                );
            } else {
                eprintln!(
                    "wrote {} ({} files, period {period}, {digest}); an auditor checks it with: custos comply verify {} --public-key ledger.pub",
                    out.display(),
                    files.len(),
                    out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ComplyCmd::Verify {
            bundle: path,
            public_key,
        } => {
            let key = match crate::audit::read_public_key(&public_key) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let f = match std::fs::File::open(&path) {
                Ok(_) if !path.is_file() => {
                    eprintln!("error: {} is not a file", path.display());
                    return Ok(ExitCode::from(2));
                }
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", path.display());
                    return Ok(ExitCode::from(2));
                }
            };
            match bundle::verify(std::io::BufReader::new(f), &key) {
                Err(bundle::BundleError::Zip(e)) => {
                    eprintln!("error: {}: {e}", path.display());
                    Ok(ExitCode::from(2))
                }
                Err(e) => {
                    if ctx.json {
                        output::json(&json!({"ok": false, "problems": [e.to_string()]}));
                    }
                    eprintln!("bundle NOT verified: {e}");
                    Ok(ExitCode::from(1))
                }
                Ok(v) => {
                    let ok = v.problems.is_empty();
                    if ctx.json {
                        output::json(
                            &json!({"ok": ok, "period": v.period, "signer": v.signer, "files": v.files, "proofs": v.proofs,
                            "bytes": v.bytes, "ledger": v.ledger.as_ref().map(|l| json!({"first": l.first, "end": l.end, "tree_size": l.size})),
                            "problems": v.problems}),
                        );
                    }
                    for p in &v.problems {
                        eprintln!("TAMPERED: {p}");
                    }
                    if ok {
                        eprintln!(
                            "bundle verified: {} files signed by {} for {}, {} release proof(s) and erasure receipt(s) inside verified{}",
                            v.files,
                            v.signer,
                            v.period,
                            v.proofs,
                            v.ledger
                                .map(|l| format!(
                                    "; ledger entries {}..{} of the signed log of {}",
                                    l.first, l.end, l.size
                                ))
                                .unwrap_or_default()
                        );
                        Ok(ExitCode::SUCCESS)
                    } else {
                        eprintln!("bundle NOT verified: {} problem(s)", v.problems.len());
                        Ok(ExitCode::from(1))
                    }
                }
            }
        }
    }
}

fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| {
            n.to_string_lossy().replace(
                |c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)),
                "_",
            )
        })
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "file".into())
}

fn pretty(v: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

/// The bundle's files.
async fn collect(
    ctx: &Ctx,
    control: &custos_control::Control,
    scope: &StatusArgs,
    period: &str,
    start: i64,
    end: i64,
    as_of: i64,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let store = control.store();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut index: Vec<(String, String)> = Vec::new();

    // The ledger for the period, with its range proof under a signed checkpoint.
    let mut reviews = Vec::new();
    match crate::audit::export_files(store, Some(start), Some(end), 100_000).await {
        Ok((ledger, manifest)) => {
            for (name, bytes) in ledger {
                if name.ends_with(".jsonl") {
                    for line in String::from_utf8_lossy(&bytes).lines() {
                        if line.contains("access.review") {
                            if let Ok(v) = serde_json::from_str::<Value>(line) {
                                if let Some(ev) = v["event"]
                                    .as_str()
                                    .and_then(|e| serde_json::from_str::<Value>(e).ok())
                                {
                                    if ev["activity"] == "access.review" {
                                        reviews
                                            .push(json!({"ledger_index": v["index"], "event": ev}));
                                    }
                                }
                            }
                        }
                    }
                }
                files.insert(format!("ledger/{name}"), bytes);
            }
            index.push((
                "ledger/manifest.json".into(),
                format!(
                    "ledger entries {}..{} of the signed log of {}, with the range proof",
                    manifest["first"], manifest["end"], manifest["tree_size"]
                ),
            ));
        }
        Err(e) => {
            files.insert(
                "ledger/NONE.txt".into(),
                format!("no ledger entries for {period}: {e:#}\n").into_bytes(),
            );
            index.push((
                "ledger/NONE.txt".into(),
                "why the ledger export is absent".into(),
            ));
        }
    }
    files.insert(
        "access-reviews/reviews.json".into(),
        pretty(&json!(reviews)),
    );
    index.push((
        "access-reviews/reviews.json".into(),
        format!("{} access review(s) recorded in the period", reviews.len()),
    ));

    // Compliance status and the register.
    let (results, lint) = checks(ctx, control, scope, as_of).await?;
    let mut controls = Vec::new();
    for f in [
        comply::framework("nist-ai-rmf")?,
        comply::framework("iso-42001")?,
    ] {
        controls.extend(comply::evaluate(&f, &results));
    }
    files.insert(
        "comply/status.json".into(),
        pretty(&status_json(&results, &controls, as_of)),
    );
    files.insert(
        "comply/status.md".into(),
        status_markdown(&results, &controls).into_bytes(),
    );
    index.push((
        "comply/status.md".into(),
        "compliance status: NIST AI RMF 1.0 and ISO/IEC 42001 controls, and each check's evidence"
            .into(),
    ));
    if let Some(path) = scope
        .risks
        .clone()
        .or_else(|| Some(PathBuf::from("risks.yaml")).filter(|p| p.exists()))
    {
        let text = read_bounded(&path, MAX_TEXT)?;
        if let Ok(p) = risk::parse(&String::from_utf8_lossy(&text)) {
            let exp = exposures(
                &p.register,
                &SimArgs {
                    iterations: 10_000,
                    seed: 1,
                },
            );
            files.insert(
                "risks/report.html".into(),
                report::html(&p.register, &exp).into_bytes(),
            );
            index.push((
                "risks/report.html".into(),
                "the risk register: heat map and table".into(),
            ));
        }
        files.insert("risks/risks.yaml".into(), text);
        files.insert(
            "risks/lint.json".into(),
            pretty(&lint.unwrap_or(Value::Null)),
        );
        index.push((
            "risks/lint.json".into(),
            "the register's lint result".into(),
        ));
    }

    // Releases live in the period, with their decisions and evidence files.
    for t in store.list_tenants().await? {
        for r in store.releases(&t.name, None).await? {
            if r.created_at >= end || (r.state != "active" && r.updated_at < start) {
                continue;
            }
            let decisions = store.release_decisions(&r.id).await?;
            let items: Vec<Value> = serde_json::from_str(&r.evidence).unwrap_or_default();
            let mut attached = Vec::new();
            for i in &items {
                let (Some(kind), Some(name), Some(sha)) =
                    (i["kind"].as_str(), i["name"].as_str(), i["sha256"].as_str())
                else {
                    continue;
                };
                let path = format!("releases/{}/evidence/{kind}-{}", r.id, file_name(name));
                match std::fs::read(name) {
                    Ok(b) if hex::encode(sha2::Sha256::digest(&b)) == sha => {
                        files.insert(path.clone(), b);
                        attached.push(json!({"kind": kind, "file": path, "sha256": sha}));
                    }
                    _ => attached.push(json!({"kind": kind, "file": null, "sha256": sha, "note": format!("{name} is not readable here or changed since it was attached")})),
                }
            }
            let doc = json!({"id": r.id, "tenant": r.tenant, "app": r.app, "state": r.state, "tier": r.tier,
                "derived_tier": r.derived_tier, "reasons": serde_json::from_str::<Value>(&r.reasons).unwrap_or(Value::Null),
                "composite": serde_json::from_str::<Value>(&r.composite).unwrap_or(Value::Null),
                "author": r.author, "why": r.why, "ticket": r.ticket,
                "created_at": format_rfc3339(r.created_at), "updated_at": format_rfc3339(r.updated_at),
                "decisions": decisions.iter().map(|d| json!({"role": d.role, "decision": d.decision, "by": d.by_whom, "why": d.why, "at": format_rfc3339(d.at), "ledger_index": d.ledger_index})).collect::<Vec<_>>(),
                "evidence": attached});
            files.insert(format!("releases/{}/release.json", r.id), pretty(&doc));
            // Its proof (the release's ledger events under the fresh checkpoint), when the
            // release has any decision to prove.
            if let Ok(proof) = control.release_proof(&r.id).await {
                files.insert(format!("releases/{}/proof.json", r.id), pretty(&proof));
            }
            index.push((
                format!("releases/{}/release.json", r.id),
                format!(
                    "release {} of {}/{} ({}, {})",
                    r.id, r.tenant, r.app, r.tier, r.state
                ),
            ));
        }
    }

    // Model cards of registered models.
    for m in store.model_versions(None).await? {
        if let Some(card) = &m.card {
            let dir = format!("models/{}@{}", file_name(&m.name), file_name(&m.version));
            files.insert(format!("{dir}/card.md"), card.clone().into_bytes());
            files.insert(format!("{dir}/model.json"), pretty(&json!({"name": m.name, "version": m.version, "kind": m.kind, "state": m.state,
                "manifest_digest": m.manifest_digest, "signer": m.signer, "card_digest": m.card_digest, "card_signature": m.card_signature})));
            index.push((
                format!("{dir}/card.md"),
                format!("model card of {}@{} ({})", m.name, m.version, m.state),
            ));
        }
    }

    // DPIAs and erasure receipts.
    for d in store.dpias().await? {
        if d.required_at >= end {
            continue;
        }
        files.insert(format!("dpia/{}.json", d.id), pretty(&dpia_json(&d, false)));
        if let Some(doc) = &d.document {
            files.insert(format!("dpia/{}.md", d.id), doc.clone().into_bytes());
        }
        index.push((
            format!("dpia/{}.json", d.id),
            format!("DPIA {} ({}): {}", d.id, d.state, d.subject),
        ));
    }
    for e in store.erasures().await? {
        if e.requested_at >= end || e.finished_at.is_some_and(|f| f < start) {
            continue;
        }
        match control.erasure_receipt(&e.id).await {
            Ok(r) => {
                files.insert(format!("erasures/{}.receipt.json", e.id), pretty(&r));
                index.push((
                    format!("erasures/{}.receipt.json", e.id),
                    format!(
                        "erasure receipt {} (verifies with `custos erase verify-receipt`)",
                        e.id
                    ),
                ));
            }
            Err(err) => {
                files.insert(format!("erasures/{}.json", e.id), pretty(&json!({"id": e.id, "state": e.state,
                    "requested_at": format_rfc3339(e.requested_at), "due_at": format_rfc3339(e.due_at), "receipt": null, "why": err.to_string()})));
            }
        }
    }
    files.insert(
        "index.html".into(),
        index_html(period, start, end, &controls, &results, &index).into_bytes(),
    );
    Ok(files)
}

fn index_html(
    period: &str,
    start: i64,
    end: i64,
    controls: &[ControlResult],
    results: &BTreeMap<String, CheckResult>,
    index: &[(String, String)],
) -> String {
    use custos_govern::html::escape;
    let count = |s: Status| controls.iter().filter(|c| c.status == s).count();
    let mut s = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>custos evidence bundle {p}</title><style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}}.pass{{background:#c8e6c9}}.fail{{background:#ef9a9a}}.not-covered{{background:#eee}}</style></head><body><h1>Evidence bundle {p}</h1><p>Period {} to {} (UTC). Every file's SHA-256 is in <code>manifest.json</code>, signed in <code>manifest.sig</code> by the ledger's key. Check it offline: <code>custos comply verify BUNDLE.zip --public-key ledger.pub</code>.</p><p>{} controls: {} pass, {} fail, {} not covered.</p><h2>Contents</h2><ul>",
        format_rfc3339(start),
        format_rfc3339(end),
        controls.len(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::NotCovered),
        p = escape(period)
    );
    for (file, what) in index {
        s.push_str(&format!(
            "<li><a href=\"{f}\">{f}</a>: {}</li>",
            escape(what),
            f = escape(file)
        ));
    }
    s.push_str(
        "</ul><h2>Checks</h2><table><tr><th>check</th><th>status</th><th>evidence</th></tr>",
    );
    for r in results.values() {
        let class = match r.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotCovered => "not-covered",
        };
        s.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.id),
            r.status.as_str(),
            escape(&r.summary)
        ));
    }
    s.push_str("</table><h2>Controls</h2><table><tr><th>framework</th><th>control</th><th>status</th><th>title</th><th>checks</th></tr>");
    for c in controls {
        let class = match c.status {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotCovered => "not-covered",
        };
        let checks: Vec<String> = c
            .checks
            .iter()
            .map(|(id, st)| format!("{id}: {}", st.as_str()))
            .collect();
        s.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.framework),
            escape(&c.id),
            c.status.as_str(),
            escape(&c.title),
            escape(&checks.join(", "))
        ));
    }
    s.push_str("</table></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let d = |s: &str| parse_rfc3339(&format!("{s}T00:00:00Z")).unwrap();
        assert_eq!(
            period_bounds("2026-Q4").unwrap(),
            (d("2026-10-01"), d("2027-01-01"))
        );
        assert_eq!(
            period_bounds("2026-02").unwrap(),
            (d("2026-02-01"), d("2026-03-01"))
        );
        assert_eq!(
            period_bounds("2026").unwrap(),
            (d("2026-01-01"), d("2027-01-01"))
        );
        assert_eq!(
            period_bounds("2026-10-01..2026-10-31").unwrap(),
            (d("2026-10-01"), d("2026-11-01"))
        );
        for bad in [
            "2026-Q5",
            "2026-13",
            "26",
            "2026-10-31..2026-10-01",
            "x",
            "2026-1",
            "2026-02-30..2026-03-01",
        ] {
            assert!(period_bounds(bad).is_err(), "{bad}");
        }
    }
}
