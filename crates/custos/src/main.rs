//! The `custos` binary: argument parsing and wiring. Domain logic lives in the library crates.

// The gateway allocates per request from several threads; mimalloc's thread-local heaps
// keep that off glibc malloc's shared arenas (see bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod access;
mod audit;
mod audit_stream;
mod comply;
mod control;
mod cost;
mod grants;
mod iac;
mod identity;
mod injection;
mod lifecycle;
mod lifecycle_policy;
mod local_authz;
mod models;
mod output;
mod pii;
mod policy;
mod release;
mod release_ops;
mod sbom;
mod secrets;
mod serve;
mod vulns;
mod witness;

use anyhow::Result;
use clap::{Parser, Subcommand};
use custos_core::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const ABOUT: &str = "custos: an AI governance control plane in one binary.

Run an OpenAI-compatible gateway that enforces identity, quotas and idempotency on every
model call, meter its cost against budgets, manage the tenants, teams, apps and API keys it
serves, keep a tamper-evident audit ledger, and scan code, data and dependencies for leaked
secrets, personal data and known vulnerabilities; sign and gate models and releases, honour
erasure, and answer audits from the evidence: a risk register, DPIAs, compliance status and
signed evidence bundles.";

const AFTER_HELP: &str = "Quickstart:
  custos init                                     write custos.toml, create the database
  custos teams create ml                          a team in the default tenant
  custos apps create chatbot --team ml            an app of that team
  custos keys create --team ml --app chatbot      mint a key (printed once)
  custos serve                                    start the gateway on 127.0.0.1:8080

Configuration comes from --config, $CUSTOS_CONFIG, or ./custos.toml when present; without
one, custos uses an embedded SQLite file under .custos/ and the built-in mock provider.";

#[derive(Parser, Debug)]
#[command(name = "custos", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Configuration file (default: ./custos.toml if it exists).
    #[arg(long, global = true, env = "CUSTOS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Overrides the config file.
    #[arg(
        long,
        global = true,
        env = "CUSTOS_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a commented custos.toml and create the database.
    #[command(
        after_help = "Examples:\n  custos init\n  custos init --path /etc/custos/custos.toml --force"
    )]
    Init {
        /// Where to write the configuration file.
        #[arg(long, default_value = "custos.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Start the gateway.
    #[command(
        after_help = "Examples:\n  custos serve\n  custos serve --listen 0.0.0.0:8080\n  CUSTOS_DATABASE_URL=postgres://custos@db/custos custos serve"
    )]
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage tenants: the top-level isolation boundary.
    #[command(subcommand)]
    Tenants(identity::TenantCmd),
    /// Manage teams: groups of apps with optional shared rate limits.
    #[command(subcommand)]
    Teams(identity::TeamCmd),
    /// Manage apps: the workloads that hold API keys.
    #[command(subcommand)]
    Apps(identity::AppCmd),
    /// Manage API keys: create, list, show, revoke, rotate.
    #[command(subcommand)]
    Keys(identity::KeyCmd),
    /// The price catalog: per-token, per-call, per-image, per-second and per-hour rates.
    #[command(subcommand)]
    Prices(cost::PricesCmd),
    /// Budgets per tenant, team, app, key or tag, with alerts and blocking.
    #[command(subcommand)]
    Budgets(cost::BudgetsCmd),
    /// Record usage of work outside the gateway (training and batch jobs).
    #[command(subcommand)]
    Usage(cost::UsageCmd),
    /// Spend reports with unit economics, anomalies, and the per-run budget guard.
    #[command(subcommand)]
    Cost(cost::CostCmd),
    /// Access reviews: who can do what, and what needs attention.
    #[command(subcommand)]
    Access(access::AccessCmd),
    /// Time-bound roles: just-in-time requests and approvals, break-glass, revocation.
    #[command(subcommand)]
    Grants(grants::GrantsCmd),
    /// Cedar policies: schema, validation, decision tables, explanations.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// The tamper-evident audit ledger: checkpoint keys, signed checkpoints, verification.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Witness other custos ledgers: cosign their checkpoints (C2SP tlog-witness).
    #[command(subcommand)]
    Witness(witness::WitnessCmd),
    /// Find secrets (API keys, tokens, private keys, passwords) in files and trees.
    #[command(subcommand)]
    Secrets(secrets::SecretsCmd),
    /// Find and anonymize personal data (names, e-mails, cards, IDs…) in text.
    #[command(subcommand)]
    Pii(pii::PiiCmd),
    /// Screen text for prompt injection as the gateway does, and measure the detectors.
    #[command(subcommand)]
    Injection(injection::InjectionCmd),
    /// Write a software bill of materials (CycloneDX or SPDX) from lockfiles or images.
    Sbom(sbom::SbomArgs),
    /// Check infrastructure as code: Terraform plans, CloudFormation, Kubernetes, Dockerfiles.
    #[command(subcommand)]
    Iac(iac::IacCmd),
    /// Known vulnerabilities in dependencies, from OSV advisories held locally.
    #[command(subcommand)]
    Vulns(vulns::VulnsCmd),
    /// Model registry and signing: register, sign and verify (OpenSSF model-signing
    /// bundles), approve, promote, retire, attest provenance.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Prompt versions (system prompts and templates, SemVer, by digest) for releases.
    #[command(subcommand)]
    Prompts(release::PromptsCmd),
    /// Dataset tags pinned by digest, with datasheet and PII status, for releases.
    #[command(subcommand)]
    Datasets(release::DatasetsCmd),
    /// Composite releases: risk tiers, evidence, approvals, promotion with post-checks,
    /// rollback, proofs, drills, SLO freezes.
    #[command(subcommand)]
    Release(release::ReleaseCmd),
    /// Data lineage: datasets derived from datasets, models trained on them, releases.
    #[command(subcommand)]
    Lineage(lifecycle::LineageCmd),
    /// Legal holds on datasets, locations and data subjects.
    #[command(subcommand)]
    Hold(lifecycle::HoldCmd),
    /// Right to erasure: rewrite registered datasets (CSV, JSON Lines, Parquet) without a data
    /// subject's records, shred their identity in the ledger, clear their end-user ids, with a
    /// receipt that verifies offline (`custos erase verify-receipt`).
    #[command(
        after_help = "Examples:\n  custos erase --subject email:jane@example.com --subject id:4711 --why DSR-42 -o receipt.json --key-file .custos/ledger.key\n  CUSTOS_PII_KEY=$(cat pii.key) custos erase --subject email:jane@example.com --vault vaults/support.json --why DSR-43 -o r.json\n  custos erase verify-receipt receipt.json --public-key .custos/ledger.pub --subject email:jane@example.com --subject id:4711\n  custos erase list"
    )]
    Erase(lifecycle::EraseArgs),
    /// Data subject access requests: what custos can find about a person, as JSON.
    #[command(subcommand)]
    Dsar(lifecycle::DsarCmd),
    /// Retention and tiering per data class over a folder or an S3 store: plan, apply.
    #[command(subcommand)]
    Lifecycle(lifecycle_policy::LifecycleCmd),
    /// The risk register as code: a starter register, lint, heat map and reports with FAIR
    /// annualized loss exposure.
    #[command(subcommand)]
    Risk(comply::RiskCmd),
    /// The threat model of the deployment as configured: data flows, trust boundaries, and
    /// each attack surface's controls (on or off), with the risk register's risks on them.
    #[command(subcommand)]
    Threat(comply::ThreatCmd),
    /// Data protection impact assessments: triggered by personal data flows, written from a
    /// GDPR Art. 35 template, approved by someone else; a release waits for its DPIA.
    #[command(subcommand)]
    Dpia(comply::DpiaCmd),
    /// Compliance from custos' own evidence: status against NIST AI RMF 1.0 and ISO/IEC
    /// 42001, and signed evidence bundles an auditor verifies offline.
    #[command(subcommand)]
    Comply(comply::ComplyCmd),
}

pub struct Ctx {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub database_url: String,
    pub json: bool,
}

fn load_config(cli: &Cli) -> Result<(Config, Option<PathBuf>), custos_core::ConfigError> {
    let path = match &cli.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("custos.toml")).filter(|p| p.exists()),
    };
    match &path {
        Some(p) => Ok((Config::load(p)?, path)),
        None => Ok((Config::embedded(), None)),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Init { path, force } = &cli.command {
        return serve::init(path, *force, cli.database_url.as_deref(), cli.json).await;
    }
    if let Command::Witness(cmd) = cli.command {
        return witness::run(cmd).await;
    }
    let (config, config_path) = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(url) = &config.database.url {
        if custos_store::url_has_password(url) {
            eprintln!(
                "error: invalid configuration: {}: key `database.url`: the URL contains a password; \
                 set CUSTOS_DATABASE_URL in the environment instead",
                config_path.as_deref().unwrap_or(std::path::Path::new("custos.toml")).display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let database_url = config.database_url(cli.database_url.as_deref());
    let ctx = Ctx {
        config,
        config_path,
        database_url,
        json: cli.json,
    };
    local_authz::check(&ctx, &cli.command).await?;
    let notice = ChangeNotice::before(&ctx, &cli.command).await;
    let result = match cli.command {
        Command::Init { .. } | Command::Witness(_) => unreachable!("handled above"),
        Command::Serve { listen } => serve::serve(ctx, listen).await,
        Command::Tenants(cmd) => identity::tenants(&ctx, cmd).await,
        Command::Teams(cmd) => identity::teams(&ctx, cmd).await,
        Command::Apps(cmd) => identity::apps(&ctx, cmd).await,
        Command::Keys(cmd) => identity::keys(&ctx, cmd).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::Policy(cmd) => policy::run(&ctx, cmd).await,
        Command::Grants(cmd) => grants::run(&ctx, cmd).await,
        Command::Access(cmd) => access::run(&ctx, cmd).await,
        Command::Prices(cmd) => cost::prices(&ctx, cmd).await,
        Command::Budgets(cmd) => cost::budgets(&ctx, cmd).await,
        Command::Usage(cmd) => cost::usage(&ctx, cmd).await,
        Command::Cost(cmd) => cost::cost(&ctx, cmd).await,
        Command::Models(cmd) => models::run(&ctx, cmd).await,
        Command::Prompts(cmd) => release::prompts(&ctx, cmd).await,
        Command::Datasets(cmd) => release::datasets(&ctx, cmd).await,
        Command::Release(cmd) => release::release(&ctx, cmd).await,
        Command::Lineage(cmd) => lifecycle::lineage(&ctx, cmd).await,
        Command::Hold(cmd) => lifecycle::hold(&ctx, cmd).await,
        Command::Erase(args) => lifecycle::erase(&ctx, args).await,
        Command::Dsar(cmd) => lifecycle::dsar(&ctx, cmd).await,
        Command::Lifecycle(cmd) => lifecycle_policy::run(&ctx, cmd).await,
        Command::Risk(cmd) => comply::risk(&ctx, cmd).await,
        Command::Dpia(cmd) => comply::dpia_cmd(&ctx, cmd).await,
        Command::Threat(cmd) => comply::threat(&ctx, cmd).await,
        Command::Comply(cmd) => comply::comply_cmd(&ctx, cmd).await,
        Command::Secrets(_)
        | Command::Pii(_)
        | Command::Injection(_)
        | Command::Sbom(_)
        | Command::Iac(_)
        | Command::Vulns(_) => {
            unreachable!("handled in main")
        }
    };
    if let Some(n) = notice {
        n.after().await;
    }
    result
}

/// Tells running gateways sharing a Redis that a command changed what they cache (keys,
/// grants, budgets, releases, models), so a revocation from the CLI is refused everywhere at
/// once rather than at the next poll. A command changed something when it appended to the
/// ledger, as every change through the control plane does.
struct ChangeNotice {
    topic: &'static str,
    url: String,
    database_url: String,
    timeout: std::time::Duration,
    ledger_size: u64,
}

impl ChangeNotice {
    async fn before(ctx: &Ctx, command: &Command) -> Option<Self> {
        let topic = match command {
            Command::Keys(_) => "keys",
            Command::Tenants(_) | Command::Teams(_) | Command::Apps(_) | Command::Grants(_) => {
                "directory"
            }
            Command::Prices(_) | Command::Budgets(_) | Command::Usage(_) => "finops",
            Command::Release(_) => "releases",
            Command::Models(_) => "models",
            _ => return None,
        };
        let env = std::env::var("CUSTOS_REDIS_URL").ok();
        let url = ctx.config.cluster.redis(env.as_deref())?;
        let store = custos_store::Store::connect(&ctx.database_url).await.ok()?;
        let ledger_size = store.ledger_size().await.ok()?;
        Some(Self {
            topic,
            url,
            database_url: ctx.database_url.clone(),
            timeout: ctx
                .config
                .cluster
                .timeout
                .0
                .max(std::time::Duration::from_millis(250)),
            ledger_size,
        })
    }

    async fn after(self) {
        let Ok(store) = custos_store::Store::connect(&self.database_url).await else {
            return;
        };
        if !store
            .ledger_size()
            .await
            .is_ok_and(|size| size > self.ledger_size)
        {
            return;
        }
        let timeout = self.timeout;
        let sent = async {
            let shared = custos_store::shared::Shared::connect(
                &self.url,
                custos_store::shared::PREFIX,
                timeout,
            )
            .await?;
            shared
                .publish(
                    custos_store::shared::CHANGES,
                    &format!("{}:cli", self.topic),
                )
                .await
        };
        match tokio::time::timeout(timeout * 2, sent).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "warning: running gateways were not told of this change ({e}); they pick it up at their next refresh"
            ),
            Err(_) => eprintln!(
                "warning: the shared Redis did not answer; running gateways pick this change up at their next refresh"
            ),
        }
    }
}

/// The command line, with the database and configuration flags left out of the help of
/// the scanners, which never read either. A hidden stand-in of the same id on each of their
/// commands keeps the global from reaching them (still accepted there, and ignored).
fn command_line() -> clap::Command {
    fn shadow(c: clap::Command, ids: &'static [(&'static str, &'static str)]) -> clap::Command {
        let subs: Vec<String> = c
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        let mut c = c;
        for (id, long) in ids {
            if !c.get_arguments().any(|a| a.get_id() == *id) {
                c = c.arg(
                    clap::Arg::new(*id)
                        .long(*long)
                        .hide(true)
                        .num_args(1)
                        .value_name("IGNORED"),
                );
            }
        }
        for s in subs {
            c = c.mut_subcommand(s, |sc| shadow(sc, ids));
        }
        c
    }
    const DATABASE: (&str, &str) = ("database_url", "database-url");
    const CONFIG: (&str, &str) = ("config", "config");
    // `secrets` has a `--config` of its own (a rules file): only the database flag goes.
    <Cli as clap::CommandFactory>::command()
        .mut_subcommand("secrets", |c| shadow(c, &[DATABASE]))
        .mut_subcommand("sbom", |c| shadow(c, &[DATABASE, CONFIG]))
        .mut_subcommand("vulns", |c| shadow(c, &[DATABASE, CONFIG]))
}

fn main() -> ExitCode {
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&command_line().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // Every command but the servers writes to a terminal or a pipe (`| head`) and should
    // stop quietly when the reader goes away. Sockets are unaffected: Rust writes to them
    // with MSG_NOSIGNAL.
    if !matches!(cli.command, Command::Serve { .. } | Command::Witness(_)) {
        restore_sigpipe();
    }
    // Scanners need neither the runtime nor the database; their exit status 1 means
    // "findings", so their errors exit 2.
    if let Command::Vulns(cmd) = cli.command {
        return match vulns::run(cmd, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Iac(cmd) = cli.command {
        return match iac::run(cmd, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Sbom(args) = cli.command {
        return match sbom::run(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Secrets(cmd) = cli.command {
        return match secrets::run(cmd, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if matches!(cli.command, Command::Pii(_)) {
        let config = match load_config(&cli) {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("error: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        };
        let Command::Pii(cmd) = cli.command else {
            unreachable!("matched above")
        };
        return match pii::run(cmd, &config.pii, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if matches!(cli.command, Command::Injection(_)) {
        let config = match load_config(&cli) {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("error: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        };
        let Command::Injection(cmd) = cli.command else {
            unreachable!("matched above")
        };
        return match injection::run(cmd, &config.injection, cli.json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Commands write reports to pipes (`| head`): when the reader goes away they should stop
/// quietly, as Unix tools do, not panic on a failed print. Not for `serve`: a server must
/// survive a client closing its socket.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called before any thread is spawned; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(test)]
mod tests {
    /// Issue 29 (27): every flag and argument of every command says what it is for, and the
    /// scanners do not offer flags they never read.
    #[test]
    fn every_argument_has_help() {
        fn walk(c: &clap::Command, path: &str, bare: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    bare.push(format!("{path} {id}"));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), bare);
            }
        }
        let mut cmd = super::command_line();
        cmd.build();
        let mut bare = Vec::new();
        walk(&cmd, "custos", &mut bare);
        assert!(bare.is_empty(), "arguments without help: {bare:#?}");
        let find = |path: &[&str]| {
            let mut c = &cmd;
            for p in path {
                c = c.find_subcommand(p).unwrap();
            }
            c.get_arguments()
                .filter(|a| !a.is_hide_set())
                .map(|a| a.get_id().as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert!(!find(&["secrets", "scan"]).contains(&"database_url".to_owned()));
        assert!(!find(&["sbom"]).contains(&"config".to_owned()));
        assert!(find(&["keys", "list"]).contains(&"database_url".to_owned()));
    }
}
