//! `custos policy`: print the schema, validate policy files, run a table of expected
//! decisions, and explain one decision, with the same engine the gateway uses.

use crate::{output, Ctx};
use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use custos_authz::policy::{self, Decision, Engine, RequestFacts, Resource, TenantFacts};
use custos_core::principal::{AuthMethod, Principal};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Print the Cedar schema every policy is validated against.
    #[command(
        after_help = "Entity types: Tenant, Team (\"tenant/team\"), Role, Group, User (token subject),\nServiceAccount (API key id or SPIFFE ID), Provider, Model, Dataset. Actions: chat,\ncompletions, embeddings, responses (group model.use) and the control-plane actions (group admin,\nreads also in group read).\n\nExample:\n  custos policy schema > custos.cedarschema"
    )]
    Schema,
    /// Validate policy files against the schema (default: the files in custos.toml).
    #[command(
        after_help = "Exit status: 0 when every file parses and validates, 1 otherwise.\n\nExamples:\n  custos policy check\n  custos policy check policies/*.cedar"
    )]
    Check {
        /// Policy files; none: `[authz] policies` of custos.toml, or the built-in roles.
        files: Vec<PathBuf>,
    },
    /// Run a table of request → expected decision cases (YAML).
    #[command(after_help = TEST_HELP)]
    Test {
        /// The cases file.
        cases: PathBuf,
        /// Policy files to test (default: the cases file's `policies`, else custos.toml's).
        #[arg(long = "policies", num_args = 1..)]
        policies: Vec<PathBuf>,
    },
    /// Show whether a request is allowed, and which policies decide it.
    #[command(
        after_help = "Examples:\n  custos policy explain --user alice --tenant acme --role developer --action chat --model gpt-4o\n  custos policy explain --user bob --tenant acme --role tenant-admin --action keys.create --on-tenant globex\n  custos policy explain --key key_01936f… --action embeddings --model text-embedding-3-small"
    )]
    Explain(Box<ExplainArgs>),
}

const TEST_HELP: &str = r#"The cases file:

  policies: [roles.cedar]          # optional, relative to this file
  tenants:                         # optional facts about tenants
    acme: { regions: [eu-west] }
  cases:
    - name: developers may chat
      principal: { user: alice, tenant: acme, team: ml, roles: [developer] }
      action: chat
      resource: { model: gpt-4o, provider: openai, region: eu-west }
      expect: allow
      policies: [developer.models]  # optional: the deciding policies
    - name: no admin across tenants
      principal: { user: bob, tenant: acme, roles: [tenant-admin], mfa: true }
      action: keys.create
      resource: { tenant: globex }
      context: { grants: [], classification: internal, time: "2026-01-05T10:00:00Z" }
      expect: deny

A principal is a `user` (token subject) or a `key` (service account) with tenant, team,
roles, groups, scopes, mfa, env and app. Exit status: 0 when every case passes, 1 otherwise."#;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A token subject (a User principal)…
    #[arg(long, conflicts_with = "key")]
    user: Option<String>,
    /// …or an API key id or prefix, read from the database (a ServiceAccount).
    #[arg(long)]
    key: Option<String>,
    /// The principal's tenant (users only; keys know theirs).
    #[arg(long)]
    tenant: Option<String>,
    /// The principal's team.
    #[arg(long)]
    team: Option<String>,
    /// A role the principal holds (repeat for several).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// An identity-provider group of the principal (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// A role held through a live grant (repeat for several).
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// The principal proved a second factor.
    #[arg(long)]
    mfa: bool,
    /// The action: chat, completions, embeddings, keys.create, usage.read, …
    #[arg(long)]
    action: String,
    /// A model route (for model actions); provider and region come from custos.toml.
    #[arg(long, conflicts_with = "on_tenant")]
    model: Option<String>,
    /// The tenant a control-plane action acts on (default: the principal's).
    #[arg(long)]
    on_tenant: Option<String>,
    /// A tool (for `tool.call`): whether the key's app declared it is read from the
    /// database; `--model` names the model offered it.
    #[arg(long, conflicts_with = "on_tenant")]
    tool: Option<String>,
    /// The arguments of the tool call, as JSON text (the model calls the tool; without
    /// it, the request offers the tool).
    #[arg(long, requires = "tool")]
    arguments: Option<String>,
    /// Data classification the request declares.
    #[arg(long, default_value = "internal")]
    classification: String,
    /// Policy files (default: custos.toml's, else the built-in roles).
    #[arg(long = "policies", num_args = 1..)]
    policies: Vec<PathBuf>,
}

pub async fn run(ctx: &Ctx, cmd: PolicyCmd) -> Result<ExitCode> {
    match cmd {
        PolicyCmd::Schema => {
            print!("{}", policy::SCHEMA);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Check { files } => {
            let schema = policy::schema()?;
            let paths = if files.is_empty() {
                ctx.config.authz.policies.clone()
            } else {
                files
            };
            match policy::configured(&paths, &schema) {
                Ok(p) => {
                    let what = if paths.is_empty() {
                        policy::BUILTIN_NAME.to_owned()
                    } else {
                        paths
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    if ctx.json {
                        output::json(&json!({"valid": true, "policies": p.ids(), "files": what}));
                    } else {
                        println!("{} policies valid ({what})", p.len());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if ctx.json {
                        output::json(&json!({"valid": false, "error": e.to_string()}));
                    } else {
                        eprintln!("error: {e}");
                    }
                    Ok(ExitCode::from(1))
                }
            }
        }
        PolicyCmd::Test { cases, policies } => test(ctx, &cases, policies),
        PolicyCmd::Explain(args) => explain(ctx, *args).await,
    }
}

fn engine(ctx: &Ctx, files: &[PathBuf]) -> Result<Engine> {
    let schema = policy::schema()?;
    let files = if files.is_empty() {
        &ctx.config.authz.policies[..]
    } else {
        files
    };
    let policies = policy::configured(files, &schema)?;
    Ok(Engine::new(schema, policies)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    policies: Vec<PathBuf>,
    #[serde(default)]
    tenants: HashMap<String, TenantSpec>,
    cases: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TenantSpec {
    #[serde(default)]
    regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: PrincipalSpec,
    action: String,
    resource: ResourceSpec,
    #[serde(default)]
    context: ContextSpec,
    expect: Expect,
    #[serde(default)]
    policies: Option<Vec<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    user: Option<String>,
    key: Option<String>,
    tenant: String,
    #[serde(default)]
    team: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    env: String,
    #[serde(default)]
    app: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSpec {
    model: Option<String>,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    region: String,
    tenant: Option<String>,
    /// A tool (`tool.call`), with the app's declaration and the call's arguments.
    tool: Option<String>,
    #[serde(default)]
    declared: bool,
    #[serde(default)]
    app_declares: bool,
    /// JSON text of a call's arguments; absent: the tool is offered.
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ContextSpec {
    /// RFC 3339 time, or Unix seconds.
    time: Option<serde_json::Value>,
    #[serde(default)]
    classification: String,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    step_up: Option<bool>,
}

impl PrincipalSpec {
    fn principal(&self) -> Result<Principal, String> {
        let (id, method) = match (&self.user, &self.key) {
            (Some(u), None) => (u.clone(), AuthMethod::Jwt),
            (None, Some(k)) => (k.clone(), AuthMethod::ApiKey),
            _ => return Err("a principal has exactly one of `user` and `key`".into()),
        };
        Ok(Principal {
            id,
            method,
            tenant: self.tenant.clone(),
            team: self.team.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            scopes: self.scopes.clone(),
            mfa: self.mfa,
            env: self.env.clone(),
            app: self.app.clone(),
            ..Principal::default()
        })
    }
}

impl ResourceSpec {
    fn resource(&self) -> Result<Resource, String> {
        if let Some(t) = &self.tool {
            if self.tenant.is_some() {
                return Err("a resource is one of `model`, `tenant` or `tool`".into());
            }
            return Ok(Resource::Tool(policy::ToolFacts {
                name: t.clone(),
                declared: self.declared,
                app_declares: self.app_declares,
                model: self.model.clone().unwrap_or_default(),
                phase: if self.arguments.is_some() {
                    "called"
                } else {
                    "offered"
                },
                arguments: self.arguments.clone().unwrap_or_default(),
            }));
        }
        match (&self.model, &self.tenant) {
            (Some(m), None) => Ok(Resource::Model {
                name: m.clone(),
                provider: self.provider.clone(),
                region: self.region.clone(),
            }),
            (None, Some(t)) => Ok(Resource::Tenant(t.clone())),
            _ => Err(
                "a resource is `model` (with provider, region), `tenant`, or `tool` (with declared, app_declares, arguments)"
                    .into(),
            ),
        }
    }
}

fn parse_time(v: &Option<serde_json::Value>) -> Result<i64, String> {
    match v {
        None => Ok(custos_core::time::now_ms() / 1000),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("time {n} is not whole seconds")),
        Some(serde_json::Value::String(s)) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|e| format!("time {s:?} is not RFC 3339: {e}")),
        Some(other) => Err(format!("time {other} is not RFC 3339 text or Unix seconds")),
    }
}

fn test(ctx: &Ctx, path: &Path, policies: Vec<PathBuf>) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: CaseFile =
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let files: Vec<PathBuf> = if !policies.is_empty() {
        policies
    } else {
        file.policies.iter().map(|p| base.join(p)).collect()
    };
    let engine = engine(ctx, &files)?;
    let mut results = Vec::new();
    let mut failed = 0usize;
    for (i, case) in file.cases.iter().enumerate() {
        let outcome = run_case(&engine, &file.tenants, case);
        let (pass, got, detail) = match &outcome {
            Ok(d) => {
                let got = if d.allowed {
                    Expect::Allow
                } else {
                    Expect::Deny
                };
                let policies_ok = case.policies.as_ref().is_none_or(|want| {
                    let mut want = want.clone();
                    want.sort_unstable();
                    want == d.policies
                });
                (got == case.expect && policies_ok, Some(got), d.reason())
            }
            Err(e) => (false, None, e.clone()),
        };
        if !pass {
            failed += 1;
        }
        results.push(json!({
            "case": i + 1,
            "name": case.name,
            "pass": pass,
            "expected": format!("{:?}", case.expect).to_lowercase(),
            "got": got.map(|g| format!("{g:?}").to_lowercase()),
            "policies": outcome.as_ref().map(|d| d.policies.clone()).unwrap_or_default(),
            "expected_policies": case.policies,
            "detail": detail,
        }));
    }
    if ctx.json {
        output::json(
            &json!({"passed": results.len() - failed, "failed": failed, "cases": results}),
        );
    } else {
        for r in &results {
            let mark = if r["pass"] == true { "PASS" } else { "FAIL" };
            println!(
                "{mark}  {}  ({})",
                r["name"].as_str().unwrap_or(""),
                r["detail"].as_str().unwrap_or("")
            );
            if r["pass"] != true {
                println!(
                    "      expected {}{}, got {}",
                    r["expected"].as_str().unwrap_or(""),
                    match r["expected_policies"].as_array() {
                        Some(p) => format!(
                            " by {}",
                            p.iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => String::new(),
                    },
                    r["got"].as_str().unwrap_or("an error"),
                );
            }
        }
        println!("{} passed, {failed} failed", results.len() - failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_case(
    engine: &Engine,
    tenants: &HashMap<String, TenantSpec>,
    case: &Case,
) -> Result<Decision, String> {
    let principal = case.principal.principal()?;
    let resource = case.resource.resource()?;
    let tenant = TenantFacts {
        regions: tenants
            .get(&principal.tenant)
            .map(|t| t.regions.clone())
            .unwrap_or_default(),
    };
    let facts = RequestFacts {
        time: parse_time(&case.context.time)?,
        classification: case.context.classification.clone(),
        step_up: case.context.step_up.unwrap_or(principal.mfa),
        grants: case.context.grants.clone(),
    };
    engine
        .authorize(&principal, &case.action, &resource, &tenant, &facts)
        .map_err(|e| e.to_string())
}

async fn explain(ctx: &Ctx, a: ExplainArgs) -> Result<ExitCode> {
    let engine = engine(ctx, &a.policies)?;
    let store = || async {
        custos_store::Store::open(&ctx.database_url)
            .await
            .with_context(|| "cannot open the database".to_owned())
    };
    let mut principal = match (&a.user, &a.key) {
        (Some(u), None) => {
            let Some(tenant) = &a.tenant else {
                bail!("--user needs --tenant");
            };
            Principal {
                id: u.clone(),
                method: AuthMethod::Jwt,
                tenant: tenant.clone(),
                team: a.team.clone().unwrap_or_default(),
                mfa: a.mfa,
                ..Principal::default()
            }
        }
        (None, Some(k)) => {
            let row = store().await?.key(k).await?;
            Principal {
                id: row.id,
                method: AuthMethod::ApiKey,
                tenant: row.tenant,
                team: row.team,
                app: row.app,
                env: row.env,
                mfa: a.mfa,
                ..Principal::default()
            }
        }
        _ => bail!("name the principal with --user SUBJECT or --key KEY_ID"),
    };
    principal.roles = a.roles.clone();
    principal.groups = a.groups.clone();
    let declared = match (&a.tool, &a.key) {
        (Some(_), Some(_)) => store()
            .await?
            .app(&principal.tenant, &principal.team, &principal.app)
            .await
            .ok()
            .and_then(|app| app.tools),
        _ => None,
    };
    let resource = match (&a.tool, &a.model) {
        (Some(t), model) => Resource::Tool(policy::ToolFacts {
            name: t.clone(),
            declared: declared.as_ref().is_some_and(|d| d.contains(t)),
            app_declares: declared.is_some(),
            model: model.clone().unwrap_or_default(),
            phase: if a.arguments.is_some() {
                "called"
            } else {
                "offered"
            },
            arguments: a.arguments.clone().unwrap_or_default(),
        }),
        (None, Some(m)) => {
            let Some(route) = ctx.config.models.iter().find(|r| r.name == *m) else {
                bail!("no model {m:?} is routed in the configuration");
            };
            let provider = route.provider.get_ref().clone();
            let region = ctx
                .config
                .providers
                .iter()
                .find(|p| p.name == provider)
                .and_then(|p| p.region.clone())
                .unwrap_or_default();
            Resource::Model {
                name: m.clone(),
                provider,
                region,
            }
        }
        (None, None) => Resource::Tenant(a.on_tenant.clone().unwrap_or(principal.tenant.clone())),
    };
    // Residency pins come from the database when the tenant is there.
    let tenant = match store().await {
        Ok(s) => match s.tenant(&principal.tenant).await {
            Ok(t) => TenantFacts { regions: t.regions },
            Err(_) => TenantFacts::default(),
        },
        Err(_) => TenantFacts::default(),
    };
    let facts = RequestFacts {
        time: custos_core::time::now_ms() / 1000,
        classification: a.classification.clone(),
        step_up: a.mfa,
        grants: a.grants.clone(),
    };
    let d = engine.authorize(&principal, &a.action, &resource, &tenant, &facts)?;
    let policies = engine.policies();
    if ctx.json {
        output::json(&json!({
            "allowed": d.allowed,
            "reason": d.reason(),
            "policies": d.policies.iter().map(|id| json!({"id": id, "at": policies.origin(id)})).collect::<Vec<_>>(),
            "errors": d.errors,
            "principal": {"uid": policy::principal_uid(&principal).to_string(), "roles": policy::roles(&principal), "grants": a.grants, "tenant": principal.tenant},
            "resource": match &resource {
                Resource::Model { name, provider, region } => json!({"model": name, "provider": provider, "region": region}),
                Resource::Tenant(t) => json!({"tenant": t}),
                Resource::Tool(t) => json!({"tool": t.name, "declared": t.declared, "app_declares": t.app_declares, "phase": t.phase}),
            },
        }));
    } else {
        println!("{}", if d.allowed { "ALLOW" } else { "DENY" });
        println!(
            "  principal  {} in tenant {}",
            policy::principal_uid(&principal),
            principal.tenant
        );
        println!("  roles      {}", policy::roles(&principal).join(", "));
        if !a.grants.is_empty() {
            println!("  grants     {}", a.grants.join(", "));
        }
        println!("  action     {}", a.action);
        match &resource {
            Resource::Model {
                name,
                provider,
                region,
            } => println!(
                "  resource   model {name} (provider {provider}, region {})",
                if region.is_empty() { "unknown" } else { region }
            ),
            Resource::Tenant(t) => println!("  resource   tenant {t}"),
            Resource::Tool(t) => println!(
                "  resource   tool {} ({}; {})",
                t.name,
                t.phase,
                match (t.app_declares, t.declared) {
                    (false, _) => "the app declares no tools",
                    (true, true) => "declared by the app",
                    (true, false) => "not declared by the app",
                }
            ),
        }
        if !tenant.regions.is_empty() {
            println!("  pinned to  {}", tenant.regions.join(", "));
        }
        println!("  because    {}", d.reason());
        for id in &d.policies {
            println!("    {id}  at {}", policies.origin(id).unwrap_or("?"));
        }
        for e in &d.errors {
            println!("  skipped    {e}");
        }
    }
    Ok(if d.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
