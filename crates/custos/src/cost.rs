//! `custos prices|budgets|usage|cost`: the price catalog, budgets, job usage reports, and
//! spend reports with unit economics, anomalies and the per-run guard.

use crate::audit::record;
use crate::control::ChangeArgs;
use crate::identity::open;
use crate::output::{self, time};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use custos_finops::anomaly::{self, Method, Settings};
use custos_finops::budget::{Action, Budget, Scope};
use custos_finops::job::{JobReport, Policy, Reporter};
use custos_finops::period::{self, PeriodKind, Window};
use custos_finops::pricing::{self, parse_effective};
use custos_finops::showback::UnitCosts;
use custos_finops::{Amount, Currency, Price, Rates};
use custos_store::{Dimension, UsageFilter, UsageTotals};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum PricesCmd {
    /// Import prices from custos' TOML/JSON format or LiteLLM's model_prices_and_context_window.json.
    #[command(after_help = "Examples:
  custos prices import prices.toml
  custos prices import model_prices_and_context_window.json --effective-from 2026-11-01

A custos price file:
  currency = \"USD\"
  [[price]]
  provider = \"openai\"
  model = \"gpt-4o-mini\"
  effective_from = \"2026-01-01\"
  input_per_1m = \"0.15\"
  cached_input_per_1m = \"0.075\"
  output_per_1m = \"0.60\"

Rates: input_per_1m, output_per_1m, cached_input_per_1m, cache_write_per_1m,
reasoning_per_1m (per million tokens), per_call, per_image, per_second, per_hour.")]
    Import {
        /// A price file: custos' TOML, or LiteLLM's model_prices_and_context_window.json.
        file: PathBuf,
        /// Effective date for entries that carry none (LiteLLM's never do); default: always.
        #[arg(long, value_name = "DATE")]
        effective_from: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Set one price.
    #[command(
        after_help = "Example:\n  custos prices set --provider openai --model gpt-4o --input 2.50 --cached-input 1.25 --output 10 --effective-from 2026-12-01"
    )]
    Set(Box<SetPrice>),
    /// List prices (those in force at --at, or every dated price with --all).
    List {
        /// Only this provider's prices.
        #[arg(long)]
        provider: Option<String>,
        /// Only this model's prices.
        #[arg(long)]
        model: Option<String>,
        /// Show every dated price, not only the one in force.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args, Debug)]
pub struct SetPrice {
    /// The provider, as named in `[[providers]]` (`*` for any provider).
    #[arg(long)]
    provider: String,
    /// The model: the provider's own name for it, or the name clients send.
    #[arg(long)]
    model: String,
    /// Input tokens, per million.
    #[arg(long, value_name = "AMOUNT")]
    input: Option<Amount>,
    /// Output tokens, per million.
    #[arg(long, value_name = "AMOUNT")]
    output: Option<Amount>,
    /// Cached (cache-read) input tokens, per million (default: the input rate).
    #[arg(long, value_name = "AMOUNT")]
    cached_input: Option<Amount>,
    /// Cache-write input tokens, per million (default: the input rate).
    #[arg(long, value_name = "AMOUNT")]
    cache_write: Option<Amount>,
    /// Reasoning tokens, per million (default: the output rate).
    #[arg(long, value_name = "AMOUNT")]
    reasoning: Option<Amount>,
    /// Per call, whatever its tokens.
    #[arg(long, value_name = "AMOUNT")]
    per_call: Option<Amount>,
    /// Per generated image.
    #[arg(long, value_name = "AMOUNT")]
    per_image: Option<Amount>,
    /// Per second of audio or compute.
    #[arg(long, value_name = "AMOUNT")]
    per_second: Option<Amount>,
    /// Per instance- or GPU-hour, for job reports.
    #[arg(long, value_name = "AMOUNT")]
    per_hour: Option<Amount>,
    /// ISO 4217 currency of the rates.
    #[arg(long, default_value = "USD")]
    currency: Currency,
    /// Date or RFC 3339 time from which the price applies (default: now).
    #[arg(long, value_name = "DATE")]
    effective_from: Option<String>,
    #[command(flatten)]
    change: ChangeArgs,
}

#[derive(Subcommand, Debug)]
pub enum BudgetsCmd {
    /// Create a budget for a tenant, team, app, key or tag.
    #[command(after_help = "Examples:
  custos budgets create ml-monthly --tenant acme --scope team:ml --amount 500
  custos budgets create atlas --scope tag:Project=atlas --period weekly --amount 200 --action block
  custos budgets create prod-daily --scope tenant --period daily --amount 50 --thresholds 50,80,100 --time-zone Europe/Berlin

Each threshold alerts once per period (audit ledger and [[finops.webhooks]]). With
--action block, gateway calls charged to a used-up budget get 402 budget-exhausted.")]
    Create {
        /// Budget name, unique in its tenant.
        name: String,
        /// Tenant the budget belongs to.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        /// tenant, team:NAME, app:NAME, key:ID or tag:KEY=VALUE.
        #[arg(long, default_value = "tenant")]
        scope: Scope,
        /// Budget period: daily, weekly or monthly (in the budget's time zone).
        #[arg(long, default_value = "monthly")]
        period: PeriodKind,
        /// The budget, in --currency (exact decimal).
        #[arg(long)]
        amount: Amount,
        /// ISO 4217 currency of the amount.
        #[arg(long, default_value = "USD")]
        currency: Currency,
        /// Percentages that alert, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "70,90,100")]
        thresholds: Vec<u32>,
        /// What happens at 100%: alert only, or block calls.
        #[arg(long, default_value = "alert")]
        action: Action,
        /// Time zone in which periods begin (IANA name); default finops.time_zone.
        #[arg(long)]
        time_zone: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List budgets with their spend in the current period.
    List {
        /// Only this tenant's budgets.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Let one API key spend past its blocking budgets for a while (at most 72 h).
    #[command(after_help = "Example:
  custos budgets override --key ck_live_AbC123 --for 2h --why \"INC-4711: month-end batch\"

Calls through the key still count against every budget; each call that passes a used-up
budget leaves a budget.override event in the audit ledger. The override ends by itself.")]
    Override {
        /// The key's id (key_…) or displayed prefix.
        #[arg(long)]
        key: String,
        /// How long it lasts, e.g. 90m, 2h, 1d (at most 72h).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Delete a budget.
    Delete {
        /// The budget's name.
        name: String,
        /// Tenant the budget belongs to.
        #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsageCmd {
    /// Record usage of work outside the gateway (training, batch, ETL).
    #[command(after_help = "Examples:
  custos usage record --team ml --app trainer --instance-type p4d.24xlarge --provider aws \\
      --gpu-type a100 --gpu-count 8 --hours 3.5 --region us-east-1 \\
      --tags Project=atlas,Env=prod,Team=ml,CostCenter=cc-42
  custos usage record --team ml --app etl --documents 120000 --cost 41.20 --tags Project=atlas

Units: --hours is wall-clock time; GPU-hours are GPUs x wall-clock hours (the example above
is 28 GPU-hours: 8 GPUs for 3.5 h); instance-hours are instances x wall-clock hours. An
instance type's price is per instance-hour (3.5 x its rate above), a GPU type's per GPU-hour.
Give --hours or --gpu-hours (both only when they agree).

The same report can be POSTed as JSON to /v1/usage with the app's API key.")]
    Record(Box<RecordArgs>),
}

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Tenant the work is charged to.
    #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
    tenant: String,
    /// Team the work is charged to.
    #[arg(long)]
    team: String,
    /// App of the team that ran the work.
    #[arg(long)]
    app: String,
    /// Environment (prod, staging, dev, …).
    #[arg(long, default_value = "prod")]
    env: String,
    /// Report id: recording the same id twice counts once.
    #[arg(long)]
    id: Option<String>,
    /// When the work ended (default now).
    #[arg(long)]
    time: Option<String>,
    /// Who billed the work (aws, gcp, azure, openai, …), as in `custos prices`.
    #[arg(long)]
    provider: Option<String>,
    /// What was used when it is neither an instance nor a GPU type: a priced model or SKU.
    #[arg(long)]
    model: Option<String>,
    /// Cloud region (prices nothing; carbon intensity comes from it).
    #[arg(long)]
    region: Option<String>,
    /// GPU model (a100, h100, l4, …): priced per GPU-hour without --instance-type, and its
    /// power draw estimates carbon.
    #[arg(long)]
    gpu_type: Option<String>,
    /// GPUs per instance with --instance-type, else GPUs in all (default 1).
    #[arg(long)]
    gpu_count: Option<u32>,
    /// Wall-clock hours the job ran.
    #[arg(long)]
    hours: Option<f64>,
    /// GPU-hours: GPUs x wall-clock hours (instead of --hours).
    #[arg(long)]
    gpu_hours: Option<f64>,
    /// Measured average GPU utilization, 0–1 (carbon estimate; default a typical figure).
    #[arg(long)]
    gpu_utilization: Option<f64>,
    /// Instance type (p4d.24xlarge, …): priced per instance-hour.
    #[arg(long)]
    instance_type: Option<String>,
    /// Instances of --instance-type that ran (default 1).
    #[arg(long)]
    instance_count: Option<u32>,
    /// Bytes the job read (kept on the record).
    #[arg(long)]
    data_scanned_bytes: Option<u64>,
    /// Documents the job processed (cost per document).
    #[arg(long)]
    documents: Option<u64>,
    /// Input tokens the job consumed (priced by --model).
    #[arg(long)]
    input_tokens: Option<u64>,
    /// Output tokens the job produced (priced by --model).
    #[arg(long)]
    output_tokens: Option<u64>,
    /// The job's own cost (else priced from the catalog).
    #[arg(long)]
    cost: Option<Amount>,
    /// Currency of --cost (default USD).
    #[arg(long)]
    currency: Option<Currency>,
    /// KEY=VALUE pairs, comma-separated.
    #[arg(long, default_value = "")]
    tags: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
    /// A self-contained page with SVG charts (daily spend per team, budget burn-down).
    Html,
}

#[derive(Args, Debug, Clone)]
pub struct Range {
    /// A month, YYYY-MM (default: the current month).
    #[arg(long, conflicts_with_all = ["since", "until"])]
    period: Option<String>,
    /// Start date or time (inclusive).
    #[arg(long, requires = "until")]
    since: Option<String>,
    /// End date or time (exclusive).
    #[arg(long, requires = "since")]
    until: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct Filters {
    /// Only this tenant's usage.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this team's usage.
    #[arg(long)]
    team: Option<String>,
    /// Only this app's usage.
    #[arg(long)]
    app: Option<String>,
    /// Only usage in this environment (prod, staging, dev, …).
    #[arg(long)]
    env: Option<String>,
    /// Only records with these tags (KEY=VALUE, comma-separated).
    #[arg(long)]
    tag: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum TagsCmd {
    /// Check a Terraform plan for resources missing mandatory tags; exit 1 when any do.
    #[command(after_help = "Examples:
  terraform plan -out plan.out && terraform show -json plan.out > plan.json
  custos cost tags check plan.json --require Project,Env,Team,CostCenter

Provider default tags count (AWS tags_all, Google effective_labels). Resources whose types
take no tags are skipped; tags known only after apply are reported as unknown.
Exit status: 0 compliant, 1 resources miss tags, 2 the plan could not be read.")]
    Check {
        /// A Terraform plan as JSON (`terraform show -json plan.out > plan.json`).
        plan: PathBuf,
        /// Required tag keys, comma-separated (default: finops.mandatory_tags).
        #[arg(long, value_delimiter = ',')]
        require: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CostCmd {
    /// Mandatory cost tags in infrastructure plans.
    #[command(subcommand)]
    Tags(TagsCmd),
    /// Take in cloud billing exports: FOCUS 1.0–1.2 or AWS CUR 2.0, as CSV, gzip CSV or Parquet.
    #[command(after_help = "Examples:
  custos cost ingest focus-2026-11.csv.gz
  custos cost ingest cur2-part-*.csv.gz --currency USD
  custos cost ingest focus-export-00001.snappy.parquet

A defect is reported with its row and column, and nothing of that file is kept. Ingesting
the same file again adds nothing.")]
    Ingest {
        /// Billing exports: FOCUS 1.0–1.2 or AWS CUR 2.0, as CSV, gzip CSV or Parquet.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The currency every row must be in (default: the first row's).
        #[arg(long)]
        currency: Option<Currency>,
    },
    /// Reconcile billed spend: allocation by tag, and gateway metering against provider bills.
    #[command(after_help = "Examples:
  custos cost reconcile --period 2026-11 --tag Team
  custos cost reconcile --tag CostCenter --tolerance 0.5 --provider-map openai=OpenAI,azure=Microsoft

Exit status 1 when untagged spend or a provider's metering gap exceeds the tolerance.")]
    Reconcile {
        #[command(flatten)]
        range: Range,
        /// The tag that allocates spend (e.g. Team, CostCenter).
        #[arg(long, default_value = "Team")]
        tag: String,
        /// Largest acceptable untagged share and metering gap, in percent.
        #[arg(long, default_value_t = 1.0)]
        tolerance: f64,
        /// Gateway provider = billing provider name pairs, comma-separated.
        #[arg(long, value_delimiter = ',')]
        provider_map: Vec<String>,
        /// Bill text = gateway model pairs, comma-separated: a bill line whose SKU, service
        /// or description holds the text is that model's (else the longest model name the
        /// line names as a whole: gpt-4o never takes a gpt-4o-mini line).
        #[arg(long, value_delimiter = ',', value_name = "TEXT=MODEL")]
        model_map: Vec<String>,
        /// A tag jobs and billed resources both carry (e.g. WorkflowId): a job reported
        /// through /v1/usage is then found in the bill by its value; else by its provider
        /// and the instance, GPU or model it was priced as.
        #[arg(long, value_name = "KEY")]
        job_tag: Option<String>,
    },
    /// Spend, tokens and unit economics by team, app, model, tag…, against the previous period.
    #[command(after_help = "Examples:
  custos cost report --by team,app,model --period 2026-11
  custos cost report --by tag:Project --env prod --format csv > spend.csv
  custos cost report --by team --since 2026-11-01 --until 2026-11-15 --json

Dimensions: tenant, team, app, env, key, provider, model, region, source, day, tag:NAME.
Unit economics, each dividing only the cost of the usage that has the unit: token cost per
1K tokens, call cost per call (and per 1M calls in JSON), document cost per document, GPU cost
per GPU-hour (GPUs x wall-clock hours).")]
    Report {
        /// Dimensions to group by, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "team")]
        by: Vec<Dimension>,
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        filters: Filters,
        /// Output format (html: one self-contained page with SVG charts).
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Complete days whose spend deviates more than k σ from the trailing window.
    #[command(after_help = "Examples:
  custos cost anomalies --by team
  custos cost anomalies --by model --method robust --seasonal --k 3 --days 14

Exit status 1 when an anomaly is found (for cron jobs and CI).")]
    Anomalies {
        /// Scope of each series: tenant, team, app, model, provider, env or tag:NAME.
        #[arg(long, default_value = "team")]
        by: Dimension,
        /// Days to report on (each judged against the trailing window before it).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Days of history each day is judged against.
        #[arg(long, default_value_t = 28)]
        window: u32,
        /// How far from the baseline a day must be, in deviations, to be an anomaly.
        #[arg(long, default_value_t = 2.0)]
        k: f64,
        /// The baseline: `sigma` (mean and standard deviation) or `robust` (median and
        /// 1.4826 × median absolute deviation, for spiky series).
        #[arg(long, default_value = "sigma", value_parser = ["sigma", "robust", "stddev", "mad"])]
        method: String,
        /// Compare each day with the same weekday.
        #[arg(long)]
        seasonal: bool,
        /// Alert each new anomaly once (audit ledger and [[finops.webhooks]]), for cron jobs.
        #[arg(long)]
        notify: bool,
        #[command(flatten)]
        filters: Filters,
    },
    /// Export usage records as FOCUS-shaped Parquet or CSV, for Spark, Athena, Trino or DuckDB.
    #[command(after_help = "Examples:
  custos cost export --period 2026-11 -o usage-2026-11.parquet
  custos cost export --since 2026-11-01 --until 2026-11-08 --format csv -o week.csv
  duckdb -c \"SELECT SubAccountName, SUM(BilledCost) FROM 'usage-2026-11.parquet' GROUP BY 1\"

FOCUS 1.2 columns (BilledCost as DECIMAL(18,9), charge periods as UTC timestamps) plus
x_ columns for token classes, calls, documents, environment and request id.")]
    Export {
        #[command(flatten)]
        range: Range,
        #[command(flatten)]
        filters: Filters,
        /// parquet or csv (default: from the -o extension, else parquet).
        #[arg(long)]
        format: Option<String>,
        /// Output file.
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
    /// A per-run budget guard for jobs: exit 1 when the run's spend would pass its budget.
    #[command(after_help = "Examples:
  custos cost guard --budget 500 --tags WorkflowId=run-42
  custos cost guard --budget 500 --tags WorkflowId=run-42 --estimate 120
  custos cost guard --budget 500 --tags WorkflowId=run-42,SpendOverride=true

The run's spend is every usage record carrying all the given tags (SpendOverride aside).
SpendOverride=true lets the run continue past its budget; the override is audited.")]
    Guard {
        /// The run's budget, in the currency of its usage.
        #[arg(long)]
        budget: Amount,
        /// The run's tags, KEY=VALUE comma-separated.
        #[arg(long)]
        tags: String,
        /// What the next step is expected to cost.
        #[arg(long, default_value = "0")]
        estimate: Amount,
        /// Only this tenant's usage.
        #[arg(long)]
        tenant: Option<String>,
        /// Why the run goes ahead anyway (recorded when a SpendOverride lets it past the budget).
        #[arg(long)]
        why: Option<String>,
    },
}

fn parse_tag_list(s: &str) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("tag {part:?} is not KEY=VALUE");
        };
        custos_store::check_tag_key(k.trim()).map_err(anyhow::Error::msg)?;
        tags.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(tags)
}

fn tz(ctx: &Ctx) -> Result<jiff::tz::TimeZone> {
    period::time_zone(&ctx.config.finops.time_zone)
        .map_err(|e| anyhow::anyhow!("finops.time_zone: {e}"))
}

fn rates_json(r: &Rates) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

pub async fn prices(ctx: &Ctx, cmd: PricesCmd) -> Result<ExitCode> {
    let store = open(ctx).await?;
    match cmd {
        PricesCmd::Import {
            file,
            effective_from,
            change,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let is_toml = file.extension().is_some_and(|e| e == "toml")
                || !text.trim_start().starts_with(['{', '[']);
            let mut prices = if is_toml {
                pricing::parse_toml(&text)
            } else {
                pricing::parse_json(&text)
            }
            .with_context(|| format!("{}", file.display()))?;
            if let Some(d) = effective_from {
                let at = parse_effective(&d).map_err(anyhow::Error::msg)?;
                for p in prices.iter_mut().filter(|p| p.effective_from == 0) {
                    p.effective_from = at;
                }
            }
            if prices.is_empty() {
                bail!("{} holds no prices", file.display());
            }
            let control = crate::control::open(ctx).await?;
            let actor = crate::control::actor(ctx, control.store(), &change).await?;
            let n = control
                .set_prices(
                    &actor,
                    &prices,
                    Some(&file.display().to_string()),
                    &change.reason()?,
                )
                .await?
                .value;
            if ctx.json {
                output::json(&json!({"imported": n}));
            } else {
                eprintln!("imported {n} prices from {}", file.display());
            }
        }
        PricesCmd::Set(args) => {
            let SetPrice {
                provider,
                model,
                input,
                output,
                cached_input,
                cache_write,
                reasoning,
                per_call,
                per_image,
                per_second,
                per_hour,
                currency,
                effective_from,
                change,
            } = *args;
            let rates = Rates {
                input_per_1m: input.unwrap_or_default(),
                output_per_1m: output.unwrap_or_default(),
                cached_input_per_1m: cached_input,
                cache_write_per_1m: cache_write,
                reasoning_per_1m: reasoning,
                per_call: per_call.unwrap_or_default(),
                per_image: per_image.unwrap_or_default(),
                per_second: per_second.unwrap_or_default(),
                per_hour: per_hour.unwrap_or_default(),
            };
            if rates == Rates::default() {
                bail!("give at least one rate, e.g. --input 2.50 --output 10");
            }
            if rates.has_negative() {
                bail!("rates must not be negative");
            }
            let effective_from = match effective_from {
                Some(d) => parse_effective(&d).map_err(anyhow::Error::msg)?,
                None => custos_core::time::now_ms(),
            };
            let price = Price {
                provider,
                model,
                effective_from,
                currency,
                rates,
            };
            let control = crate::control::open(ctx).await?;
            let actor = crate::control::actor(ctx, control.store(), &change).await?;
            control
                .set_prices(
                    &actor,
                    std::slice::from_ref(&price),
                    None,
                    &change.reason()?,
                )
                .await?;
            let j = json!({"type": "price", "provider": price.provider, "model": price.model,
                "effective_from": time(Some(price.effective_from)), "currency": price.currency.as_str(),
                "rates": rates_json(&price.rates)});
            if ctx.json {
                output::json(&j);
            } else {
                eprintln!(
                    "set the price of {}/{} from {}",
                    price.provider,
                    price.model,
                    time(Some(price.effective_from))
                );
            }
        }
        PricesCmd::List {
            provider,
            model,
            all,
        } => {
            let now = custos_core::time::now_ms();
            let mut prices = store.prices_all().await?;
            prices.retain(|p| {
                provider.as_ref().is_none_or(|x| *x == p.provider)
                    && model.as_ref().is_none_or(|x| *x == p.model)
            });
            if !all {
                let catalog = custos_finops::Catalog::new(prices.clone());
                prices.retain(|p| {
                    catalog
                        .at(&p.provider, &p.model, now)
                        .is_some_and(|q| q.effective_from == p.effective_from)
                });
            }
            if ctx.json {
                output::json(&Value::Array(
                    prices
                        .iter()
                        .map(|p| {
                            json!({"provider": p.provider, "model": p.model,
                            "effective_from": time(Some(p.effective_from)),
                            "currency": p.currency.as_str(), "rates": rates_json(&p.rates)})
                        })
                        .collect(),
                ));
            } else {
                let opt = |a: Option<Amount>| a.map_or_else(|| "-".into(), |a| a.to_string());
                output::table(
                    &[
                        "PROVIDER",
                        "MODEL",
                        "FROM",
                        "CUR",
                        "INPUT/1M",
                        "CACHED/1M",
                        "OUTPUT/1M",
                        "OTHER",
                    ],
                    &prices
                        .iter()
                        .map(|p| {
                            let r = &p.rates;
                            let mut other = Vec::new();
                            for (n, a) in [
                                ("call", r.per_call),
                                ("image", r.per_image),
                                ("second", r.per_second),
                                ("hour", r.per_hour),
                            ] {
                                if !a.is_zero() {
                                    other.push(format!("{a}/{n}"));
                                }
                            }
                            vec![
                                p.provider.clone(),
                                p.model.clone(),
                                time(Some(p.effective_from)),
                                p.currency.to_string(),
                                r.input_per_1m.to_string(),
                                opt(r.cached_input_per_1m),
                                r.output_per_1m.to_string(),
                                other.join(" "),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn budget_json(b: &Budget, spent: Option<(Amount, Window)>) -> Value {
    let mut j = json!({"id": b.id, "tenant": b.tenant, "name": b.name, "scope": b.scope.to_string(),
        "period": b.period.as_str(), "time_zone": b.time_zone, "amount": b.amount.to_string(),
        "currency": b.currency.as_str(), "thresholds": b.thresholds, "action": b.action.as_str()});
    if let Some((s, w)) = spent {
        j["spent"] = json!(s.to_string());
        j["period_start"] = json!(time(Some(w.start_ms)));
        j["period_end"] = json!(time(Some(w.end_ms)));
    }
    j
}

pub async fn budgets(ctx: &Ctx, cmd: BudgetsCmd) -> Result<ExitCode> {
    let store = open(ctx).await?;
    match cmd {
        BudgetsCmd::Create {
            name,
            tenant,
            scope,
            period,
            amount,
            currency,
            thresholds,
            action,
            time_zone,
            change,
        } => {
            let control = crate::control::open(ctx).await?;
            let actor = crate::control::actor(ctx, control.store(), &change).await?;
            let b = Budget {
                id: String::new(),
                name,
                tenant,
                scope,
                period,
                time_zone: time_zone.unwrap_or_default(),
                amount,
                currency,
                thresholds,
                action,
            };
            let b = control
                .create_budget(&actor, b, &change.reason()?)
                .await?
                .value;
            if ctx.json {
                output::json(&budget_json(&b, None));
            } else {
                eprintln!(
                    "created the {} budget {}/{} of {} {} for {} (alerts at {}%, {} at 100%)",
                    b.period.as_str(),
                    b.tenant,
                    b.name,
                    b.amount,
                    b.currency,
                    b.scope,
                    b.thresholds
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("%, "),
                    if b.action == Action::Block {
                        "blocking"
                    } else {
                        "alerting only"
                    }
                );
            }
        }
        BudgetsCmd::List { tenant } => {
            let now = custos_core::time::now_ms();
            let mut rows = Vec::new();
            for b in store.budgets(tenant.as_deref()).await? {
                let tz = period::time_zone(&b.time_zone).map_err(anyhow::Error::msg)?;
                let w = period::window(b.period, &tz, now).map_err(anyhow::Error::msg)?;
                let spent = store.budget_spent(&b, w).await?;
                rows.push((b, spent, w));
            }
            if ctx.json {
                output::json(&Value::Array(
                    rows.iter()
                        .map(|(b, s, w)| budget_json(b, Some((*s, *w))))
                        .collect(),
                ));
            } else {
                output::table(
                    &[
                        "TENANT", "NAME", "SCOPE", "PERIOD", "SPENT", "AMOUNT", "USED", "ACTION",
                        "ENDS",
                    ],
                    &rows
                        .iter()
                        .map(|(b, s, w)| {
                            vec![
                                b.tenant.clone(),
                                b.name.clone(),
                                b.scope.to_string(),
                                b.period.as_str().into(),
                                format!("{} {}", s.format_money(), b.currency),
                                format!("{} {}", b.amount.format_money(), b.currency),
                                format!("{:.1}%", s.to_f64() / b.amount.to_f64() * 100.0),
                                b.action.as_str().into(),
                                time(Some(w.end_ms)),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        BudgetsCmd::Override {
            key,
            duration,
            change,
        } => {
            let d = custos_core::duration::parse_duration(&duration)
                .map_err(|e| anyhow::anyhow!("--for {duration:?}: {e}"))?;
            let control = crate::control::open(ctx).await?;
            let actor = crate::control::actor(ctx, control.store(), &change).await?;
            let req = custos_control::NewOverride {
                key,
                duration_ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            };
            let o = match control
                .create_override(&actor, None, &req, &change.reason()?)
                .await
            {
                Ok(r) => r.value,
                Err(custos_control::ControlError::ReasonRequired { .. }) => {
                    bail!("--why must say why (a ticket or incident)")
                }
                Err(e) => return Err(e.into()),
            };
            let row = control.store().key(&o.key_id).await?;
            let j = json!({"type": "spend_override", "id": o.id, "tenant": o.tenant, "key": o.key_id,
                "expires_at": time(Some(o.expires_at))});
            if ctx.json {
                output::json(&j);
            } else {
                eprintln!(
                    "key {} may spend past its budgets until {} (gateways pick this up within finops.refresh_interval)",
                    row.prefix,
                    time(Some(o.expires_at))
                );
            }
        }
        BudgetsCmd::Delete {
            name,
            tenant,
            change,
        } => {
            let control = crate::control::open(ctx).await?;
            let actor = crate::control::actor(ctx, control.store(), &change).await?;
            let b = control
                .delete_budget(&actor, &tenant, &name, &change.reason()?)
                .await?
                .value;
            if ctx.json {
                output::json(&budget_json(&b, None));
            } else {
                eprintln!("deleted the budget {}/{}", b.tenant, b.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn usage(ctx: &Ctx, cmd: UsageCmd) -> Result<ExitCode> {
    let UsageCmd::Record(a) = cmd;
    let a = *a;
    let store = open(ctx).await?;
    let team = store
        .team(&a.tenant, &a.team)
        .await
        .with_context(|| format!("team {}/{}", a.tenant, a.team))?;
    let report = JobReport {
        id: a.id,
        time: a.time,
        model: a.model,
        provider: a.provider,
        region: a.region,
        env: Some(a.env.clone()),
        gpu_type: a.gpu_type,
        gpu_count: a.gpu_count,
        hours: a.hours,
        gpu_hours: a.gpu_hours,
        gpu_utilization: a.gpu_utilization,
        instance_type: a.instance_type,
        instance_count: a.instance_count,
        data_scanned_bytes: a.data_scanned_bytes,
        documents: a.documents,
        input_tokens: a.input_tokens,
        output_tokens: a.output_tokens,
        calls: None,
        cost: a.cost,
        currency: a.currency,
        tags: parse_tag_list(&a.tags)?,
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let key_id = format!("local:{user}");
    let who = Reporter {
        tenant: &team.tenant,
        team: &team.name,
        app: &a.app,
        env: &a.env,
        key_id: &key_id,
    };
    let cfg = &ctx.config.finops;
    let policy = Policy {
        mandatory_tags: cfg.mandatory_tags.clone(),
        accept_untagged: cfg.untagged == custos_core::config::UntaggedPolicy::Accept,
    };
    let catalog = custos_finops::Catalog::new(store.prices_all().await?);
    let rec = custos_finops::job::to_record(
        &report,
        &who,
        &catalog,
        &custos_gateway::finops::carbon_tables(&ctx.config),
        &policy,
        custos_core::time::now_ms(),
        || custos_core::id::new_id("use"),
    )?;
    let added = store.usage_insert(std::slice::from_ref(&rec)).await?;
    let mut j = custos_finops::job::summary(&rec);
    j["new"] = json!(added == 1);
    let gap = custos_finops::job::carbon_gap(&rec);
    if let Some(g) = &gap {
        eprintln!("warning: {g}");
    }
    if ctx.json {
        output::json(&j);
    } else if added == 0 {
        eprintln!("usage {} was already recorded; nothing added", rec.id);
    } else {
        eprintln!(
            "recorded usage {}: {} {}{}{}",
            rec.id,
            rec.cost.format_money(),
            rec.currency,
            if rec.priced {
                ""
            } else {
                " (no price known: set one with `custos prices set`)"
            },
            if rec.co2e_mg > 0 && gap.is_none() {
                format!(", {:.3} kgCO2e", rec.co2e_mg as f64 / 1e6)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn filter_of(f: &Filters, w: Window) -> Result<UsageFilter> {
    Ok(UsageFilter {
        tenant: f.tenant.clone(),
        team: f.team.clone(),
        app: f.app.clone(),
        key_id: None,
        env: f.env.clone(),
        tags: parse_tag_list(f.tag.as_deref().unwrap_or(""))?
            .into_iter()
            .collect(),
        from_ms: w.start_ms,
        until_ms: w.end_ms,
    })
}

/// The report window and the one before it.
fn windows(ctx: &Ctx, r: &Range) -> Result<(Window, Window)> {
    let tz = tz(ctx)?;
    let now = custos_core::time::now_ms();
    match (&r.period, &r.since, &r.until) {
        (_, Some(s), Some(u)) => {
            let w = Window {
                start_ms: parse_effective(s).map_err(anyhow::Error::msg)?,
                end_ms: parse_effective(u).map_err(anyhow::Error::msg)?,
            };
            if w.end_ms <= w.start_ms {
                bail!("--until must be after --since");
            }
            let len = w.end_ms - w.start_ms;
            Ok((
                w,
                Window {
                    start_ms: w.start_ms - len,
                    end_ms: w.start_ms,
                },
            ))
        }
        (Some(m), _, _) => {
            let w = period::month(m, &tz).map_err(anyhow::Error::msg)?;
            let prev = period::previous(PeriodKind::Monthly, &tz, w).map_err(anyhow::Error::msg)?;
            Ok((w, prev))
        }
        _ => {
            let w = period::window(PeriodKind::Monthly, &tz, now).map_err(anyhow::Error::msg)?;
            let prev = period::previous(PeriodKind::Monthly, &tz, w).map_err(anyhow::Error::msg)?;
            Ok((w, prev))
        }
    }
}

fn units(t: &UsageTotals) -> UnitCosts {
    UnitCosts::of(&custos_finops::showback::UnitBasis {
        tokens: tokens(t),
        token_cost: t.token_cost,
        calls: t.calls,
        call_cost: t.call_cost,
        documents: t.documents,
        document_cost: t.document_cost,
        gpu_ms: t.gpu_ms,
        gpu_cost: t.gpu_cost,
    })
}

/// The report's unit-cost columns: each names the cost it divides and the unit.
const UNIT_HEADERS: [&str; 5] = [
    "TOKEN_COST/1K_TOKENS",
    "CALL_COST/CALL",
    "DOC_COST/DOC",
    "GPU_COST/GPU_HOUR",
    "GPU_HOURS",
];

fn unit_cells(t: &UsageTotals) -> [String; 5] {
    let fmt = |a: Option<Amount>, dp: u32| a.map_or_else(|| "-".into(), |a| a.format_dp(dp));
    let u = units(t);
    [
        fmt(u.token_cost_per_1k_tokens, 6),
        fmt(u.call_cost_per_call, 6),
        fmt(u.document_cost_per_document, 6),
        fmt(u.gpu_cost_per_gpu_hour, 4),
        format!("{:.2}", t.gpu_ms as f64 / 3_600_000.0),
    ]
}

fn tokens(t: &UsageTotals) -> i64 {
    t.input_tokens
        + t.cached_input_tokens
        + t.cache_write_tokens
        + t.output_tokens
        + t.reasoning_tokens
}

fn group_json(by: &[Dimension], t: &UsageTotals, prev: Option<&UsageTotals>) -> Value {
    let keys: serde_json::Map<String, Value> = by
        .iter()
        .zip(&t.keys)
        .map(|(d, k)| (d.label(), json!(k)))
        .collect();
    let s = |a: Option<Amount>| a.map(|a| a.round_dp(6).to_string());
    let u = units(t);
    let change = prev.and_then(|p| {
        (!p.cost.is_zero()).then(|| (t.cost.to_f64() - p.cost.to_f64()) / p.cost.to_f64() * 100.0)
    });
    json!({
        "keys": keys,
        "cost": t.cost.to_string(),
        "records": t.records,
        "calls": t.calls,
        "tokens": {"input": t.input_tokens, "cached_input": t.cached_input_tokens,
                   "cache_write": t.cache_write_tokens, "output": t.output_tokens,
                   "reasoning": t.reasoning_tokens, "total": tokens(t)},
        "documents": t.documents,
        "gpu_hours": t.gpu_ms as f64 / 3_600_000.0,
        "billed_compute_hours": t.compute_ms as f64 / 3_600_000.0,
        // Each unit cost divides only the cost of the usage that has the unit.
        "cost_of": {
            "token_usage": t.token_cost.to_string(),
            "call_usage": t.call_cost.to_string(),
            "document_usage": t.document_cost.to_string(),
            "gpu_usage": t.gpu_cost.to_string(),
        },
        "unit": {
            "token_cost_per_1k_tokens": s(u.token_cost_per_1k_tokens),
            "call_cost_per_call": s(u.call_cost_per_call),
            "document_cost_per_document": s(u.document_cost_per_document),
            "call_cost_per_1m_calls": s(u.call_cost_per_1m_calls),
            "gpu_cost_per_gpu_hour": s(u.gpu_cost_per_gpu_hour),
        },
        "previous_cost": prev.map(|p| p.cost.to_string()),
        "change_percent": change,
        "unpriced_records": t.unpriced,
        "untagged_records": t.untagged,
        "energy_kwh": t.energy_mwh as f64 / 1e6,
        "co2e_kg": t.co2e_mg as f64 / 1e6,
    })
}

async fn report(
    ctx: &Ctx,
    by: Vec<Dimension>,
    range: Range,
    filters: Filters,
    format: ReportFormat,
) -> Result<ExitCode> {
    let store = open(ctx).await?;
    let (w, prev_w) = windows(ctx, &range)?;
    let tz = tz(ctx)?;
    let offset = jiff::Timestamp::from_millisecond(w.start_ms)
        .map(|t| tz.to_offset(t).seconds() as i64 * 1000)
        .unwrap_or(0);
    // Money in different currencies is never added together.
    let mut dims = by.clone();
    if !dims.contains(&Dimension::Currency) {
        dims.push(Dimension::Currency);
    }
    let rows = store
        .usage_report(&filter_of(&filters, w)?, &dims, offset)
        .await?;
    let prev_rows = store
        .usage_report(&filter_of(&filters, prev_w)?, &dims, offset)
        .await?;
    let prev: HashMap<&Vec<String>, &UsageTotals> =
        prev_rows.iter().map(|r| (&r.keys, r)).collect();
    let totals = store
        .usage_report(&filter_of(&filters, w)?, &[Dimension::Currency], offset)
        .await?;
    // Days as dates; for people (not JSON) a missing tag value reads "(untagged)".
    let labels = |t: &UsageTotals, human: bool| -> Vec<String> {
        dims.iter()
            .zip(&t.keys)
            .map(|(d, k)| match d {
                Dimension::Day => k
                    .parse::<i64>()
                    .map(|d| time(Some(d * 86_400_000))[..10].to_owned())
                    .unwrap_or_else(|_| k.clone()),
                Dimension::Tag(_) if human && k.is_empty() => "(untagged)".into(),
                _ => k.clone(),
            })
            .collect()
    };
    let untagged: i64 = totals.iter().map(|t| t.untagged).sum();
    let records: i64 = totals.iter().map(|t| t.records).sum();
    let compliance = if records == 0 {
        100.0
    } else {
        (records - untagged) as f64 / records as f64 * 100.0
    };
    match format {
        ReportFormat::Json => {
            let groups: Vec<Value> = rows
                .iter()
                .map(|t| {
                    let mut t2 = t.clone();
                    t2.keys = labels(t, false);
                    group_json(&dims, &t2, prev.get(&t.keys).copied())
                })
                .collect();
            output::json(&json!({
                "period": {"start": time(Some(w.start_ms)), "end": time(Some(w.end_ms))},
                "previous": {"start": time(Some(prev_w.start_ms)), "end": time(Some(prev_w.end_ms))},
                "by": dims.iter().map(Dimension::label).collect::<Vec<_>>(),
                "groups": groups,
                "totals": totals.iter().map(|t| group_json(&[Dimension::Currency], t, None)).collect::<Vec<_>>(),
                "tag_compliance_percent": (!ctx.config.finops.mandatory_tags.is_empty()).then_some(compliance),
                "mandatory_tags": ctx.config.finops.mandatory_tags,
            }));
        }
        ReportFormat::Table | ReportFormat::Csv | ReportFormat::Html => {
            let mut headers: Vec<String> = dims.iter().map(|d| d.label().to_uppercase()).collect();
            headers.extend(["COST", "PREV", "CHANGE", "CALLS", "TOKENS"].map(String::from));
            headers.extend(UNIT_HEADERS.map(String::from));
            headers.push("KG_CO2E".into());
            let mut table: Vec<Vec<String>> = rows
                .iter()
                .map(|t| {
                    let p = prev.get(&t.keys);
                    let mut row = labels(t, true);
                    row.push(t.cost.format_money());
                    row.push(p.map_or_else(|| "-".into(), |p| p.cost.format_money()));
                    row.push(match p {
                        Some(p) if !p.cost.is_zero() => format!(
                            "{:+.1}%",
                            (t.cost.to_f64() - p.cost.to_f64()) / p.cost.to_f64() * 100.0
                        ),
                        _ => "new".into(),
                    });
                    row.push(t.calls.to_string());
                    row.push(tokens(t).to_string());
                    row.extend(unit_cells(t));
                    row.push(format!("{:.3}", t.co2e_mg as f64 / 1e6));
                    row
                })
                .collect();
            if format == ReportFormat::Html {
                let unpriced: i64 = totals.iter().map(|t| t.unpriced).sum();
                let compliance =
                    (!ctx.config.finops.mandatory_tags.is_empty()).then_some(compliance);
                let page = html_report(
                    ctx, &store, &filters, w, offset, &headers, &table, compliance, unpriced,
                )
                .await?;
                print!("{page}");
            } else if format == ReportFormat::Csv {
                let mut out = custos_finops::focus::csv_line(&headers);
                for row in &table {
                    out.push_str(&custos_finops::focus::csv_line(row));
                }
                print!("{out}");
            } else {
                eprintln!(
                    "spend from {} to {} (previous: from {}), time zone {}",
                    time(Some(w.start_ms)),
                    time(Some(w.end_ms)),
                    time(Some(prev_w.start_ms)),
                    ctx.config.finops.time_zone
                );
                for t in &totals {
                    let mut row = vec![String::new(); dims.len()];
                    row[0] = "TOTAL".into();
                    if let Some(c) = t.keys.first() {
                        row[dims.len() - 1] = c.clone();
                    }
                    row.extend([
                        t.cost.format_money(),
                        String::new(),
                        String::new(),
                        t.calls.to_string(),
                        tokens(t).to_string(),
                    ]);
                    row.extend(unit_cells(t));
                    row.push(format!("{:.3}", t.co2e_mg as f64 / 1e6));
                    table.push(row);
                }
                let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
                output::table(&headers, &table);
                let unpriced: i64 = totals.iter().map(|t| t.unpriced).sum();
                if unpriced > 0 {
                    eprintln!("note: {unpriced} records had no price and count as zero; add prices with `custos prices set` or `custos prices import`");
                }
                if ctx.config.finops.mandatory_tags.is_empty() {
                    eprintln!("tag compliance: no mandatory tags configured (set [finops] mandatory_tags to check them)");
                } else {
                    eprintln!("tag compliance: {compliance:.1}% of {records} records carry every mandatory tag");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTML page: the table, daily spend per team and each budget's burn-down, all inline.
#[allow(clippy::too_many_arguments)]
async fn html_report(
    ctx: &Ctx,
    store: &custos_store::Store,
    filters: &Filters,
    w: Window,
    offset: i64,
    headers: &[String],
    table: &[Vec<String>],
    compliance: Option<f64>,
    unpriced: i64,
) -> Result<String> {
    use custos_finops::showback::{burn_down, daily_spend, report_html, BudgetLine, ReportPage};
    let tz = tz(ctx)?;
    let first_day = (w.start_ms + offset).div_euclid(86_400_000);
    let days = ((w.end_ms - w.start_ms) as f64 / 86_400_000.0)
        .ceil()
        .max(1.0) as usize;
    let day_labels = |first: i64, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| time(Some((first + i as i64) * 86_400_000))[..10].to_owned())
            .collect()
    };
    let daily: Vec<(String, i64, f64)> = store
        .usage_report(
            &filter_of(filters, w)?,
            &[Dimension::Team, Dimension::Day],
            offset,
        )
        .await?
        .iter()
        .filter_map(|r| {
            let team = r.keys.first()?.clone();
            let day = r.keys.get(1)?.parse::<i64>().ok()?;
            Some((team, day, r.cost.to_f64()))
        })
        .collect();
    let now = custos_core::time::now_ms();
    let today_index = (now < w.end_ms)
        .then(|| ((now + offset).div_euclid(86_400_000) - first_day).max(0) as usize);
    let mut charts = vec![(
        "Daily spend per team".to_owned(),
        "spend".to_owned(),
        day_labels(first_day, days),
        daily_spend(&daily, first_day, days, today_index),
    )];
    let mut budget_lines = Vec::new();
    for b in store.budgets(filters.tenant.as_deref()).await? {
        let btz = period::time_zone(&b.time_zone).unwrap_or(tz.clone());
        let Ok(bw) = period::window(b.period, &btz, now.min(w.end_ms - 1)) else {
            continue;
        };
        let b_off = jiff::Timestamp::from_millisecond(bw.start_ms)
            .map(|t| btz.to_offset(t).seconds() as i64 * 1000)
            .unwrap_or(0);
        let b_first = (bw.start_ms + b_off).div_euclid(86_400_000);
        let b_days = ((bw.end_ms - bw.start_ms) as f64 / 86_400_000.0)
            .round()
            .max(1.0) as usize;
        let rows = store
            .usage_report(
                &custos_store::budget_filter(&b, bw),
                &[Dimension::Day],
                b_off,
            )
            .await?;
        let mut per_day = vec![0.0; b_days];
        for r in &rows {
            if let Some(i) = r
                .keys
                .first()
                .and_then(|d| d.parse::<i64>().ok())
                .map(|d| d - b_first)
            {
                if (0..b_days as i64).contains(&i) {
                    per_day[i as usize] += r.cost.to_f64();
                }
            }
        }
        let today =
            ((now + b_off).div_euclid(86_400_000) - b_first).clamp(0, b_days as i64 - 1) as usize;
        let spent = rows
            .iter()
            .fold(Amount::ZERO, |a, r| a.saturating_add(r.cost));
        let percent = if b.amount.is_zero() {
            0.0
        } else {
            spent.to_f64() / b.amount.to_f64() * 100.0
        };
        let status = if spent >= b.amount {
            "exhausted"
        } else if b.thresholds.iter().any(|&t| percent >= f64::from(t)) {
            "alerting"
        } else {
            "ok"
        };
        budget_lines.push(BudgetLine {
            name: format!("{}/{}", b.tenant, b.name),
            scope: b.scope.to_string(),
            period: b.period.as_str().to_owned(),
            amount: format!("{} {}", b.amount, b.currency),
            spent: format!("{} {}", spent, b.currency),
            percent,
            status,
        });
        charts.push((
            format!(
                "Budget {} ({}, {}): burn-down, {:.1}% used{}",
                b.name,
                b.scope,
                b.period.as_str(),
                percent,
                if status == "exhausted" {
                    ", exhausted"
                } else {
                    ""
                }
            ),
            b.currency.as_str().to_owned(),
            day_labels(b_first, b_days),
            burn_down(&per_day, today, b.amount.to_f64()),
        ));
    }
    let generator = format!("custos {}", env!("CARGO_PKG_VERSION"));
    let scope = match &filters.tenant {
        Some(t) => format!("tenant {t}"),
        None => "all tenants".to_owned(),
    };
    Ok(report_html(&ReportPage {
        scope: &scope,
        start: &time(Some(w.start_ms)),
        end: &time(Some(w.end_ms)),
        time_zone: &ctx.config.finops.time_zone,
        compliance_percent: compliance,
        unpriced,
        budgets: budget_lines,
        generator: &generator,
        generated_at: &time(Some(now)),
        headers,
        rows: table,
        charts,
    }))
}

/// Commands whose exit status 1 means "found something" report their errors as 2.
fn exit_2_on_error(r: Result<ExitCode>) -> Result<ExitCode> {
    r.or_else(|e| {
        eprintln!("error: {e:#}");
        Ok(ExitCode::from(2))
    })
}

fn tags_check(ctx: &Ctx, plan: &std::path::Path, require: Vec<String>) -> Result<ExitCode> {
    let required = if require.is_empty() {
        ctx.config.finops.mandatory_tags.clone()
    } else {
        require
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    };
    if required.is_empty() {
        bail!("name the required tags with --require Project,Env,… or set finops.mandatory_tags");
    }
    let text = std::fs::read(plan).with_context(|| format!("cannot read {}", plan.display()))?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid JSON at line {}, column {}: {e}",
            plan.display(),
            e.line(),
            e.column()
        )
    })?;
    let report = custos_finops::tags::check_plan(&value, &required)
        .map_err(|e| anyhow::anyhow!("{}: {e}", plan.display()))?;
    let failing: Vec<_> = report.failing().collect();
    if ctx.json {
        output::json(&json!({"required": required, "resources": report.checked,
            "untaggable": report.untaggable, "failing": failing.len()}));
    } else {
        output::table(
            &["RESOURCE", "TYPE", "MISSING"],
            &failing
                .iter()
                .map(|r| {
                    vec![
                        r.address.clone(),
                        r.resource_type.clone(),
                        r.missing.join(","),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        let unknown = report.checked.iter().filter(|r| r.unknown).count();
        eprintln!(
            "{} of {} taggable resources miss a required tag ({}); {} untaggable skipped{}",
            failing.len(),
            report.checked.len(),
            required.join(", "),
            report.untaggable,
            if unknown > 0 {
                format!("; {unknown} with tags known only after apply")
            } else {
                String::new()
            }
        );
    }
    Ok(if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn file_sha256(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Rows parsed per batch handed to the database.
const INGEST_BATCH: usize = 20_000;

/// Parses a billing file on its own thread and hands batches over, so parsing overlaps the
/// database writes. Ends with the format, the row count, and the first defect if any.
fn spawn_parser(
    path: PathBuf,
    currency: Option<Currency>,
    tx: tokio::sync::mpsc::Sender<Vec<custos_finops::billing::LineItem>>,
) -> std::thread::JoinHandle<Result<(custos_finops::billing::Format, u64, Option<Currency>)>> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = if custos_finops::billing::is_parquet(&path) {
            custos_finops::billing::Reader::parquet(file, currency)
        } else {
            let input = Box::new(std::io::BufReader::with_capacity(1 << 20, file));
            custos_finops::billing::Reader::new(input, currency)
        }
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut batch = Vec::with_capacity(INGEST_BATCH);
        let mut seen_currency = currency;
        while let Some(item) = reader.next_item() {
            let item = item.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            seen_currency.get_or_insert(item.currency);
            batch.push(item);
            if batch.len() == INGEST_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(INGEST_BATCH));
                if tx.blocking_send(full).is_err() {
                    bail!("the database writer stopped");
                }
            }
        }
        if !batch.is_empty() && tx.blocking_send(batch).is_err() {
            bail!("the database writer stopped");
        }
        Ok((reader.format(), reader.rows(), seen_currency))
    })
}

async fn ingest(ctx: &Ctx, files: Vec<PathBuf>, currency: Option<Currency>) -> Result<ExitCode> {
    let store = open(ctx).await?;
    let mut summary = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let sha = file_sha256(&path)?;
        if let Some(done) = store.billing_file(&sha).await? {
            if !ctx.json {
                eprintln!(
                    "{name}: already ingested on {} as {} ({} rows); nothing added",
                    time(Some(done.ingested_at)),
                    done.name,
                    done.rows
                );
            }
            summary.push(json!({"file": name, "sha256": sha, "rows": done.rows, "added": 0, "already_ingested": true}));
            continue;
        }
        // Rows left by an earlier run that failed part-way are replaced, not doubled.
        store.billing_discard(&sha).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let parser = spawn_parser(path.clone(), currency, tx);
        let mut added = 0u64;
        let mut total = Amount::ZERO;
        let mut stored = 0u64;
        let mut write_error = None;
        // A damaged file can send a decoder into a loop that no error ends: no batch for
        // this long stops the ingest (the parser thread ends with the process).
        const STALL: std::time::Duration = std::time::Duration::from_secs(120);
        let mut stalled = false;
        loop {
            let batch = match tokio::time::timeout(STALL, rx.recv()).await {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(_) => {
                    stalled = true;
                    break;
                }
            };
            stored += batch.len() as u64;
            for it in &batch {
                total = total.saturating_add(it.billed_cost);
            }
            match store.billing_insert(&sha, batch).await {
                Ok(n) => added += n,
                Err(e) => {
                    write_error = Some(e);
                    break;
                }
            }
            if !ctx.json && stored % 1_000_000 < INGEST_BATCH as u64 && stored >= 1_000_000 {
                eprintln!("  {name}: {stored} rows stored");
            }
        }
        drop(rx);
        if stalled {
            store.billing_discard(&sha).await?;
            bail!(
                "{name}: no rows were decoded for {} s after row {stored}; the file looks damaged. Nothing of it was kept",
                STALL.as_secs()
            );
        }
        let parsed = parser
            .join()
            .map_err(|_| anyhow::anyhow!("{name}: the parser thread panicked"))?;
        let (format, rows, file_currency) = match (parsed, write_error) {
            (Ok(p), None) => p,
            (parsed, write_error) => {
                // Nothing of a bad file stays behind.
                store.billing_discard(&sha).await?;
                if let Some(e) = write_error {
                    return Err(anyhow::Error::new(e)
                        .context(format!("{name}: storing rows failed; nothing was kept")));
                }
                return Err(parsed
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("{name}: failed")))
                .context("nothing of this file was kept");
            }
        };
        let cur = file_currency.map(|c| c.to_string()).unwrap_or_default();
        store
            .billing_file_done(&custos_store::BillingFile {
                sha256: sha.clone(),
                name: name.clone(),
                format: format.as_str().into(),
                rows: rows as i64,
                currency: cur.clone(),
                billed: total,
                ingested_at: custos_core::time::now_ms(),
            })
            .await?;
        record(
            ctx,
            &store,
            "billing.ingest",
            json!({"type": "billing_file", "name": name, "sha256": sha, "format": format.as_str(), "rows": rows, "billed": total.to_string(), "currency": cur}),
            None,
        )
        .await?;
        if !ctx.json {
            eprintln!(
                "{name}: {} export, {rows} rows, billed {} {cur}",
                format.as_str(),
                total.format_money()
            );
        }
        summary.push(json!({"file": name, "sha256": sha, "format": format.as_str(), "rows": rows, "added": added, "billed": total.to_string(), "currency": cur}));
    }
    if ctx.json {
        output::json(&Value::Array(summary));
    }
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(
    ctx: &Ctx,
    range: Range,
    tag: String,
    tolerance: f64,
    provider_map: Vec<String>,
    model_map: Vec<String>,
    job_tag: Option<String>,
) -> Result<ExitCode> {
    use custos_finops::reconcile::{self as rec, Mapping};
    let mut mapping = Mapping::default();
    for pair in &provider_map {
        let Some((g, b)) = pair.split_once('=') else {
            bail!("--provider-map takes gateway=billing pairs, e.g. openai=OpenAI; got {pair:?}");
        };
        mapping
            .providers
            .insert(g.trim().to_owned(), b.trim().to_lowercase());
    }
    for pair in &model_map {
        match pair.split_once('=') {
            Some((text, model)) if !text.trim().is_empty() && !model.trim().is_empty() => mapping
                .models
                .push((text.trim().to_owned(), model.trim().to_owned())),
            _ => bail!(
                "--model-map takes bill-text=model pairs, e.g. 'SKU-7781=support-bot'; got {pair:?}"
            ),
        }
    }
    custos_store::check_tag_key(&tag).map_err(|e| anyhow::anyhow!("--tag: {e}"))?;
    if let Some(t) = &job_tag {
        custos_store::check_tag_key(t).map_err(|e| anyhow::anyhow!("--job-tag: {e}"))?;
    }
    if !(0.0..=100.0).contains(&tolerance) {
        bail!("--tolerance is a percentage between 0 and 100");
    }
    let store = open(ctx).await?;
    let (w, _) = windows(ctx, &range)?;
    let control = custos_control::Control::new(
        store,
        std::sync::Arc::new(crate::control::engine(ctx)?),
        custos_control::Settings::from_config(&ctx.config),
    );
    let report = control
        .reconcile(
            w.start_ms,
            w.end_ms,
            &custos_control::ReconcileParams {
                tag: tag.clone(),
                tolerance,
                mapping,
                job_tag: job_tag.clone(),
            },
        )
        .await?;
    let custos_control::ReconcileReport {
        by_tag,
        result,
        jobs: job_checks,
        failed,
    } = report;
    let missing = job_checks
        .iter()
        .filter(|j| j.status == rec::JobStatus::Missing)
        .count();
    let allocation: Vec<Value> = result
        .allocation
        .iter()
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect();
    let gaps: Vec<Value> = result
        .metering
        .iter()
        .map(|g| serde_json::to_value(g).unwrap_or(Value::Null))
        .collect();
    if ctx.json {
        output::json(
            &json!({"period": {"start": time(Some(w.start_ms)), "end": time(Some(w.end_ms))},
            "tag": tag, "tolerance_percent": tolerance, "allocation": allocation, "metering": gaps,
            "jobs": job_checks.iter().map(|j| {
                let mut v = serde_json::to_value(j).unwrap_or(Value::Null);
                v["at"] = json!(time(Some(j.at_ms)));
                v
            }).collect::<Vec<_>>()}),
        );
    } else {
        eprintln!(
            "billed spend from {} to {}, allocated by tag {tag}",
            time(Some(w.start_ms)),
            time(Some(w.end_ms))
        );
        let mut rows = Vec::new();
        for g in &by_tag {
            rows.push(vec![
                if g.keys[0].is_empty() {
                    "(untagged)".into()
                } else {
                    g.keys[0].clone()
                },
                g.currency.clone(),
                g.billed.format_money(),
                g.rows.to_string(),
            ]);
        }
        output::table(&[&tag.to_uppercase(), "CURRENCY", "BILLED", "ROWS"], &rows);
        for a in &allocation {
            eprintln!(
                "{}: {} billed, {} untagged ({:.2}%; tolerance {tolerance}%): {}",
                a["currency"].as_str().unwrap_or(""),
                a["billed"].as_str().unwrap_or(""),
                a["untagged"].as_str().unwrap_or(""),
                a["untagged_percent"].as_f64().unwrap_or(0.0),
                if a["within_tolerance"] == true {
                    "ok"
                } else {
                    "OVER"
                }
            );
        }
        if !gaps.is_empty() {
            eprintln!("\ngateway metering against provider bills:");
            let mut rows = Vec::new();
            for g in &gaps {
                for m in g["by_model"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        g["provider"].as_str().unwrap_or("").to_owned(),
                        m["model"].as_str().unwrap_or("").to_owned(),
                        m["metered"].as_str().unwrap_or("").to_owned(),
                        m["billed"].as_str().unwrap_or("").to_owned(),
                        m["gap"].as_str().unwrap_or("").to_owned(),
                    ]);
                }
                rows.push(vec![
                    g["provider"].as_str().unwrap_or("").to_owned(),
                    "TOTAL".into(),
                    g["metered"].as_str().unwrap_or("").to_owned(),
                    g["billed"].as_str().unwrap_or("").to_owned(),
                    format!(
                        "{} ({:+.2}%{})",
                        g["gap"].as_str().unwrap_or(""),
                        g["gap_percent"].as_f64().unwrap_or(0.0),
                        if g["bill_found"] == true {
                            ""
                        } else {
                            ", no bill found: use --provider-map"
                        }
                    ),
                ]);
            }
            output::table(&["PROVIDER", "MODEL", "METERED", "BILLED", "GAP"], &rows);
        }
        if !job_checks.is_empty() {
            eprintln!(
                "\njobs reported through /v1/usage against the bill (each within 48 h of its end{}):",
                job_tag
                    .as_ref()
                    .map(|t| format!(", matched by tag {t} when they carry it"))
                    .unwrap_or_default()
            );
            let rows: Vec<Vec<String>> = job_checks
                .iter()
                .map(|j| {
                    vec![
                        j.id.clone(),
                        j.provider.clone(),
                        j.resource.clone(),
                        time(Some(j.at_ms)),
                        j.reported.clone(),
                        j.billed.clone().unwrap_or_else(|| "-".into()),
                        match j.status {
                            rec::JobStatus::Billed => {
                                format!("billed (by {})", j.matched_by.unwrap_or("resource"))
                            }
                            rec::JobStatus::Pending => {
                                "pending: the bill does not reach 48 h past its end yet".into()
                            }
                            rec::JobStatus::Missing => "MISSING from the bill".into(),
                        },
                    ]
                })
                .collect();
            output::table(
                &[
                    "JOB", "PROVIDER", "RESOURCE", "ENDED", "REPORTED", "BILLED", "STATUS",
                ],
                &rows,
            );
            if missing > 0 {
                eprintln!(
                    "{} not in the bill 48 h after it ended",
                    output::count(missing, "job")
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn export(
    ctx: &Ctx,
    range: Range,
    filters: Filters,
    format: Option<String>,
    output: PathBuf,
) -> Result<ExitCode> {
    use custos_finops::focus::{CsvWriter, ParquetWriter};
    let format = match format.as_deref() {
        Some(f) => f.to_ascii_lowercase(),
        None if output.extension().is_some_and(|e| e == "csv") => "csv".into(),
        None => "parquet".into(),
    };
    if format != "parquet" && format != "csv" {
        bail!("--format {format:?}: use parquet or csv");
    }
    let store = open(ctx).await?;
    let (w, _) = windows(ctx, &range)?;
    let f = filter_of(&filters, w)?;
    // Written next to the target and renamed at the end: a failed export leaves no half file.
    let partial = output.with_extension(format!("{format}.partial"));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, file);
    enum Sink<W: std::io::Write + Send> {
        Parquet(Box<ParquetWriter<W>>),
        Csv(CsvWriter<W>),
    }
    let mut sink = if format == "csv" {
        Sink::Csv(CsvWriter::new(out)?)
    } else {
        Sink::Parquet(Box::new(ParquetWriter::new(out)?))
    };
    let mut after = String::new();
    let mut rows = 0u64;
    let mut total = BTreeMap::<String, Amount>::new();
    loop {
        let page = store.usage_page(&f, &after, 50_000).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        for r in &page {
            match &mut sink {
                Sink::Parquet(p) => p.write(r)?,
                Sink::Csv(c) => c.write(r)?,
            }
            let t = total.entry(r.currency.to_string()).or_default();
            *t = t.saturating_add(r.cost);
        }
        rows += page.len() as u64;
        if !ctx.json && rows % 1_000_000 < 50_000 && rows >= 1_000_000 {
            eprintln!("  {rows} records written");
        }
    }
    match sink {
        Sink::Parquet(p) => p.finish()?,
        Sink::Csv(c) => {
            c.finish()?;
        }
    }
    std::fs::rename(&partial, &output)
        .with_context(|| format!("cannot move the export into {}", output.display()))?;
    let totals: BTreeMap<String, String> = total
        .iter()
        .map(|(c, a)| (c.clone(), a.to_string()))
        .collect();
    if ctx.json {
        output::json(
            &json!({"file": output.display().to_string(), "format": format, "rows": rows, "billed": totals}),
        );
    } else {
        eprintln!(
            "wrote {rows} FOCUS rows to {} ({}){}",
            output.display(),
            format,
            totals
                .iter()
                .map(|(c, a)| format!(", {a} {c}"))
                .collect::<String>()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cost(ctx: &Ctx, cmd: CostCmd) -> Result<ExitCode> {
    match cmd {
        CostCmd::Export {
            range,
            filters,
            format,
            output,
        } => exit_2_on_error(export(ctx, range, filters, format, output).await),
        CostCmd::Ingest { files, currency } => exit_2_on_error(ingest(ctx, files, currency).await),
        CostCmd::Reconcile {
            range,
            tag,
            tolerance,
            provider_map,
            model_map,
            job_tag,
        } => exit_2_on_error(
            reconcile(ctx, range, tag, tolerance, provider_map, model_map, job_tag).await,
        ),
        CostCmd::Tags(TagsCmd::Check { plan, require }) => {
            exit_2_on_error(tags_check(ctx, &plan, require))
        }
        CostCmd::Report {
            by,
            range,
            filters,
            format,
        } => {
            report(
                ctx,
                by,
                range,
                filters,
                if ctx.json { ReportFormat::Json } else { format },
            )
            .await
        }
        CostCmd::Anomalies {
            by,
            days,
            window,
            k,
            method,
            seasonal,
            notify,
            filters,
        } => exit_2_on_error(
            anomalies(
                ctx,
                by,
                days,
                window,
                notify,
                Settings {
                    k,
                    window: window as usize,
                    min_history: (window as usize / 2).max(7),
                    // The parser accepts only the values `Method` reads.
                    method: method.parse::<Method>().unwrap_or(Method::Sigma),
                    weekday_seasonality: seasonal,
                },
                filters,
            )
            .await,
        ),
        CostCmd::Guard {
            budget,
            tags,
            estimate,
            tenant,
            why,
        } => exit_2_on_error(guard(ctx, budget, &tags, estimate, tenant, why).await),
    }
}

async fn anomalies(
    ctx: &Ctx,
    by: Dimension,
    days: u32,
    window: u32,
    notify: bool,
    settings: Settings,
    filters: Filters,
) -> Result<ExitCode> {
    if !(1..=366).contains(&days) || !(7..=366).contains(&window) {
        bail!("--days must be 1–366 and --window 7–366");
    }
    // Webhooks are set up (their secrets read) before anything is claimed: a claimed alert
    // is never sent again, so one that could not be sent must not be claimed.
    let hooks = if notify {
        Some(custos_gateway::webhook::Webhooks::for_events(&ctx.config)?)
    } else {
        None
    };
    let store = open(ctx).await?;
    let tz = tz(ctx)?;
    let now = custos_core::time::now_ms();
    // Only complete days are judged: today, half over, would always look like a drop.
    let today = period::window(PeriodKind::Daily, &tz, now).map_err(anyhow::Error::msg)?;
    let total_days = (days + window) as i64;
    let start = jiff::Timestamp::from_millisecond(today.start_ms)
        .map_err(anyhow::Error::msg)?
        .to_zoned(tz.clone())
        .checked_sub(jiff::Span::new().days(total_days))
        .map_err(anyhow::Error::msg)?
        .start_of_day()
        .map_err(anyhow::Error::msg)?;
    let range = Window {
        start_ms: start.timestamp().as_millisecond(),
        end_ms: today.start_ms,
    };
    let base = filter_of(&filters, range)?;
    let groups = store
        .usage_report(&base, std::slice::from_ref(&by), 0)
        .await?;
    let mut found = Vec::new();
    for g in &groups {
        let key = g.keys.first().cloned().unwrap_or_default();
        let mut f = base.clone();
        match &by {
            Dimension::Tenant => f.tenant = Some(key.clone()),
            Dimension::Team => f.team = Some(key.clone()),
            Dimension::App => f.app = Some(key.clone()),
            Dimension::Env => f.env = Some(key.clone()),
            Dimension::Tag(t) => f.tags.push((t.clone(), key.clone())),
            _ => bail!("anomalies can be grouped by tenant, team, app, env or tag:NAME"),
        }
        // 15-minute buckets land in the right local day even in zones offset by 30 or 45
        // minutes.
        let buckets = store.usage_buckets(&f, 900_000).await?;
        let mut daily = vec![0f64; total_days as usize];
        let first = start.date();
        for (b, cost) in buckets {
            if let Some(d) = period::civil_day(&tz, b) {
                if let Ok(span) = first.until(d) {
                    let i = span.get_days() as usize;
                    if i < daily.len() {
                        daily[i] += cost.to_f64();
                    }
                }
            }
        }
        for a in anomaly::detect(&daily, &settings) {
            if a.index + (days as usize) < daily.len() {
                continue;
            }
            let day = first
                .checked_add(jiff::Span::new().days(a.index as i64))
                .map(|d| d.to_string())
                .unwrap_or_default();
            let anomaly = json!({"scope": by.label(), "key": key, "day": day,
                "spend": format!("{:.4}", a.value), "expected": format!("{:.4}", a.expected),
                "score": (a.score * 100.0).round() / 100.0});
            if let Some(hooks) = &hooks {
                notify_anomaly(ctx, &store, hooks, &anomaly).await?;
            }
            found.push(anomaly);
        }
    }
    if ctx.json {
        output::json(
            &json!({"method": settings.method, "k": settings.k, "window_days": window,
            "seasonal": settings.weekday_seasonality, "anomalies": found}),
        );
    } else {
        output::table(
            &["SCOPE", "KEY", "DAY", "SPEND", "EXPECTED", "SCORE"],
            &found
                .iter()
                .map(|a| {
                    ["scope", "key", "day", "spend", "expected", "score"]
                        .iter()
                        .map(|k| match &a[*k] {
                            Value::String(s) => s.clone(),
                            v => v.to_string(),
                        })
                        .collect()
                })
                .collect::<Vec<_>>(),
        );
    }
    Ok(if found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Alerts an anomaly once: posted to the webhooks under an id derived from the series and
/// day, and only once every receiver has it claimed in the store and recorded in the audit
/// ledger — so a receiver that is down gets it on a later run (receivers dedupe by the id).
async fn notify_anomaly(
    ctx: &Ctx,
    store: &custos_store::Store,
    hooks: &custos_gateway::webhook::Webhooks,
    anomaly: &Value,
) -> Result<()> {
    // The civil day (as UTC midnight) keys the claim, whatever the zone's DST.
    let day_ms =
        parse_effective(anomaly["day"].as_str().unwrap_or("")).map_err(anyhow::Error::msg)?;
    let series = format!(
        "anomaly:{}:{}",
        anomaly["scope"].as_str().unwrap_or(""),
        anomaly["key"].as_str().unwrap_or("")
    );
    if store
        .budget_alerts_fired(&series, day_ms)
        .await?
        .contains(&0)
    {
        return Ok(());
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{series}\0{day_ms}"));
    let id = format!("alert_{}", &hex::encode(digest)[..26]);
    let mut alert = anomaly.clone();
    alert["id"] = json!(id);
    alert["type"] = json!("cost.anomaly");
    alert["time"] = json!(time(Some(custos_core::time::now_ms())));
    // Sent in the shape of the event the ledger will hold, with the alert's id, so the
    // gateway relay's later copy of it is recognised as the same event.
    let data = json!({
        "schema": 1, "time": alert["time"], "activity": "cost.anomaly",
        "actor": {"type": "operator", "id": crate::audit::local_operator(), "auth": "local"},
        "resources": [{"type": "series", "id": series, "detail": alert}],
        "outcome": "allowed",
    });
    let mut event = custos_control::export::CloudEvent::from_ledger(0, data);
    event.ledger_index = None;
    let failed = hooks
        .deliver_and_wait(&ctx.config.events.source, &event, 3)
        .await;
    if !failed.is_empty() {
        for (url, why) in failed {
            eprintln!(
                "warning: the anomaly alert {id} could not be delivered to {url}: {why}; \
                 it stays unclaimed and the next run sends it again"
            );
        }
        return Ok(());
    }
    // Another run may have delivered and claimed it meanwhile: it is recorded once.
    if !store
        .budget_alert_claim(&series, day_ms, 0, Amount::ZERO)
        .await?
    {
        return Ok(());
    }
    record(
        ctx,
        store,
        "cost.anomaly",
        json!({"type": "series", "id": series, "detail": alert}),
        None,
    )
    .await?;
    Ok(())
}

async fn guard(
    ctx: &Ctx,
    budget: Amount,
    tags: &str,
    estimate: Amount,
    tenant: Option<String>,
    why: Option<String>,
) -> Result<ExitCode> {
    let mut tags = parse_tag_list(tags)?;
    let overridden = tags
        .remove("SpendOverride")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if tags.is_empty() {
        bail!("give the run's tags, e.g. --tags WorkflowId=run-42: they select its spend");
    }
    if budget.is_negative() || estimate.is_negative() {
        bail!("--budget and --estimate must not be negative");
    }
    let store = open(ctx).await?;
    let f = UsageFilter {
        tenant,
        tags: tags.clone().into_iter().collect(),
        from_ms: 0,
        until_ms: i64::MAX,
        ..UsageFilter::default()
    };
    let spent: Amount = store
        .usage_report(&f, &[], 0)
        .await?
        .first()
        .map_or(Amount::ZERO, |t| t.cost);
    let after = spent.saturating_add(estimate);
    let over = after > budget;
    let j = json!({"spent": spent.to_string(), "estimate": estimate.to_string(),
        "budget": budget.to_string(), "over": over, "override": overridden && over, "tags": tags});
    if ctx.json {
        output::json(&j);
    }
    if !over {
        if !ctx.json {
            eprintln!(
                "within budget: {} spent + {} estimated of {}",
                spent.format_money(),
                estimate.format_money(),
                budget.format_money()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if overridden {
        record(
            ctx,
            &store,
            "cost.override",
            json!({"type": "run", "tags": tags, "spent": spent.to_string(),
            "estimate": estimate.to_string(), "budget": budget.to_string()}),
            why.as_deref(),
        )
        .await?;
        if !ctx.json {
            eprintln!("over budget ({} of {}) but SpendOverride=true: continuing; the override is in the audit ledger", after.format_money(), budget.format_money());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !ctx.json {
        eprintln!(
            "error: the run would spend {} ({} so far + {} estimated), over its budget of {}; add SpendOverride=true to its tags to continue anyway",
            after.format_money(),
            spent.format_money(),
            estimate.format_money(),
            budget.format_money()
        );
    }
    Ok(ExitCode::from(1))
}
