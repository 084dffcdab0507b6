//! `custos tenants|teams|apps|keys`: the identity objects the gateway serves.

use crate::control::ChangeArgs;
use crate::output::{self, opt, time};
use crate::Ctx;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use custos_control::{KeyRequest, KeyScope, TeamLimits};
use custos_core::duration::parse_duration;
use custos_core::principal::ModelScope;
use custos_core::time::now_ms;
use custos_store::{KeyFilter, KeyRow, Store};
use serde_json::json;
use std::process::ExitCode;

/// The tenant used when `--tenant` is not given; created on first use.
pub const DEFAULT_TENANT: &str = custos_control::DEFAULT_TENANT;

#[derive(Args, Debug, Clone)]
pub struct TenantArg {
    /// Tenant the object belongs to.
    #[arg(long, default_value = DEFAULT_TENANT, value_name = "TENANT")]
    pub tenant: String,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant.
    #[command(after_help = "Example:\n  custos tenants create acme")]
    Create {
        /// Tenant name: 1-64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`.
        name: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List tenants.
    List,
    /// Pin a tenant to the regions its calls may be served from (residency); no regions unpins.
    #[command(
        after_help = "Calls of a pinned tenant to a model whose provider is in another region (or has\nno `region` in custos.toml) are denied by the built-in `residency.pinned-regions` policy.\n\nExamples:\n  custos tenants regions acme eu-west\n  custos tenants regions acme eu-west eu-central\n  custos tenants regions acme          # unpin"
    )]
    Regions {
        /// The tenant.
        name: String,
        /// Regions its calls may go to (none: any region).
        regions: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TeamCmd {
    /// Create a team, optionally with limits shared by all its keys.
    #[command(
        after_help = "Examples:\n  custos teams create ml\n  custos teams create search --tenant acme --rpm 3000 --tpm 1000000"
    )]
    Create {
        /// Team name, unique in its tenant.
        name: String,
        #[command(flatten)]
        tenant: TenantArg,
        /// Requests per minute shared by every key of the team.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute shared by every key of the team.
        #[arg(long)]
        tpm: Option<u32>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Set or clear (with 0) a team's shared limits; gateways apply them within a second.
    #[command(after_help = "Example:\n  custos teams set-limits ml --rpm 600 --tpm 0")]
    SetLimits {
        /// The team.
        name: String,
        #[command(flatten)]
        tenant: TenantArg,
        /// Requests per minute shared by every key of the team (0 clears the limit).
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute shared by every key of the team (0 clears the limit).
        #[arg(long)]
        tpm: Option<u32>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List teams (of one tenant with --tenant, else all).
    List {
        /// Only this tenant's teams.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    /// Create an app in a team.
    #[command(after_help = "Example:\n  custos apps create chatbot --team ml")]
    Create {
        /// App name, unique in its team.
        name: String,
        /// The team the app belongs to.
        #[arg(long)]
        team: String,
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List apps.
    List {
        /// Only this tenant's apps (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this team's apps.
        #[arg(long)]
        team: Option<String>,
    },
    /// Show or declare the tools (functions) an app's model calls may use.
    ///
    /// Once an app declares its tools, the gateway refuses a request that offers any other
    /// tool (403 tool-not-allowed, or strips it per `[tools] offered`) and a model response
    /// that calls one (rewritten into a refusal, or blocked, per `[tools] called`). The
    /// decision is the Cedar action `tool.call` on `Custos::Tool::"NAME"` (built-in policy
    /// `tools.declared`). Without flags, prints the declaration.
    #[command(
        after_help = "Examples:\n  custos apps tools chatbot --team ml --allow web_search,get_weather --why 'agent v2'\n  custos apps tools chatbot --team ml\n  custos apps tools chatbot --team ml --clear --why 'tools retired'"
    )]
    Tools {
        /// The app.
        name: String,
        /// The team the app belongs to.
        #[arg(long)]
        team: String,
        #[command(flatten)]
        tenant: TenantArg,
        /// Comma-separated tool names the app uses; every other tool is refused.
        #[arg(long, value_delimiter = ',', conflicts_with = "clear")]
        allow: Option<Vec<String>>,
        /// Withdraw the declaration: the app's tools are no longer limited by it.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Mint an API key. The key is printed once, on standard output, and never again.
    #[command(
        after_help = "Examples:\n  custos keys create --team ml --app chatbot\n  custos keys create --team ml --app chatbot --models 'gpt-4o-mini,text-embedding-3-small' \\\n      --rpm 600 --tpm 200000 --expires 90d\n  custos keys create --team ml --app console --role tenant-admin --expires 8h   # the web console's (app console)\n  export OPENAI_API_KEY=$(custos keys create --team ml --app chatbot)"
    )]
    Create {
        /// The team the key belongs to (its limits and budgets apply).
        #[arg(long)]
        team: String,
        /// The app the key is for, in that team.
        #[arg(long)]
        app: String,
        #[command(flatten)]
        tenant: TenantArg,
        /// Comma-separated models the key may call; `*` for all routed models.
        #[arg(long, default_value = "*")]
        models: String,
        /// Requests per minute (none = unlimited).
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute (none = unlimited).
        #[arg(long)]
        tpm: Option<u32>,
        /// Lifetime, e.g. 90d, 12h, 2w (none = no expiry).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Deployment environment the key is for.
        #[arg(long, default_value = "prod")]
        env: String,
        /// A label to recognize the key by.
        #[arg(long)]
        name: Option<String>,
        /// A role the key holds in policies (repeat or comma-separate): `finops-viewer` for a
        /// dashboard, `auditor` or `tenant-admin` to sign in to the console. None: `service`
        /// (model calls only). A credential may give only roles it holds.
        #[arg(long = "role", value_name = "ROLE", value_delimiter = ',')]
        roles: Vec<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List keys (active only, unless --all).
    #[command(
        after_help = "Examples:\n  custos keys list\n  custos keys list --team ml --all --json"
    )]
    List {
        /// Only keys of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only keys of this team.
        #[arg(long)]
        team: Option<String>,
        /// Only keys of this app.
        #[arg(long)]
        app: Option<String>,
        /// Include revoked and expired keys.
        #[arg(long)]
        all: bool,
    },
    /// Show one key by id (key_…) or displayed prefix (ck_live_…).
    Show {
        /// The key's id or its public prefix.
        key: String,
    },
    /// Revoke a key now; every gateway refuses it within a second.
    #[command(
        after_help = "Example:\n  custos keys revoke key_01936f… --why \"leaked in a CI log\" --ticket INC-4711"
    )]
    Revoke {
        /// The key's id or its public prefix.
        key: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Issue a successor key with the same scope and limits; the old key stops after --overlap.
    #[command(
        after_help = "Examples:\n  custos keys rotate key_01936f…\n  custos keys rotate ck_live_AbC123 --overlap 24h"
    )]
    Rotate {
        /// The key's id or its public prefix.
        key: String,
        /// How long the old key keeps working (default: stops now).
        #[arg(long, value_name = "DURATION")]
        overlap: Option<String>,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

pub async fn open(ctx: &Ctx) -> Result<Store> {
    Store::open(&ctx.database_url).await.with_context(|| {
        format!(
            "cannot open the database {}",
            custos_store::redact_url(&ctx.database_url)
        )
    })
}

/// The control plane and the acting identity for one change command.
async fn control(
    ctx: &Ctx,
    change: &ChangeArgs,
) -> Result<(custos_control::Control, custos_control::Actor)> {
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), change).await?;
    Ok((control, actor))
}

/// "recorded as ledger entry N" for a change's first event.
fn entry<T>(r: &custos_control::Recorded<T>) -> String {
    format!("ledger entry {}", r.ledger.end.saturating_sub(1))
}

pub async fn tenants(ctx: &Ctx, cmd: TenantCmd) -> Result<ExitCode> {
    match cmd {
        TenantCmd::Create { name, change } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .create_tenant(&actor, &name, &change.reason()?)
                .await?;
            let t = &r.value;
            if ctx.json {
                output::json(
                    &json!({"id": t.id, "name": t.name, "created_at": time(Some(t.created_at)), "ledger_index": r.ledger.start}),
                );
            } else {
                eprintln!("created tenant {} ({}); {}", t.name, t.id, entry(&r));
            }
        }
        TenantCmd::List => {
            let store = open(ctx).await?;
            let list = store.list_tenants().await?;
            if ctx.json {
                output::json(&json!(list.iter().map(|t| json!({"id": t.id, "name": t.name, "regions": t.regions, "created_at": time(Some(t.created_at))})).collect::<Vec<_>>()));
            } else {
                output::table(
                    &["NAME", "ID", "REGIONS", "CREATED"],
                    &list
                        .iter()
                        .map(|t| {
                            vec![
                                t.name.clone(),
                                t.id.clone(),
                                if t.regions.is_empty() {
                                    "any".into()
                                } else {
                                    t.regions.join(",")
                                },
                                time(Some(t.created_at)),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        TenantCmd::Regions {
            name,
            regions,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .set_tenant_regions(&actor, &name, &regions, &change.reason()?)
                .await?;
            let t = &r.value;
            if ctx.json {
                output::json(&json!({"id": t.id, "name": t.name, "regions": t.regions}));
            } else if t.regions.is_empty() {
                println!("tenant {} is not pinned: any region may serve it", t.name);
            } else {
                println!("tenant {} is pinned to {}", t.name, t.regions.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn limit(v: Option<u32>) -> Option<i64> {
    v.filter(|v| *v > 0).map(i64::from)
}

fn team_json(t: &custos_store::Team) -> serde_json::Value {
    json!({"id": t.id, "tenant": t.tenant, "name": t.name, "rpm": t.rpm, "tpm": t.tpm, "created_at": time(Some(t.created_at))})
}

pub async fn teams(ctx: &Ctx, cmd: TeamCmd) -> Result<ExitCode> {
    match cmd {
        TeamCmd::Create {
            name,
            tenant: t,
            rpm,
            tpm,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .create_team(
                    &actor,
                    &t.tenant,
                    &name,
                    limit(rpm),
                    limit(tpm),
                    &change.reason()?,
                )
                .await?;
            let team = &r.value;
            if ctx.json {
                output::json(&team_json(team));
            } else {
                eprintln!(
                    "created team {}/{} ({}); {}",
                    team.tenant,
                    team.name,
                    team.id,
                    entry(&r)
                );
            }
        }
        TeamCmd::SetLimits {
            name,
            tenant: t,
            rpm,
            tpm,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            let limits = TeamLimits {
                rpm: rpm.map(|v| limit(Some(v))),
                tpm: tpm.map(|v| limit(Some(v))),
            };
            let r = control
                .set_team_limits(&actor, &t.tenant, &name, limits, &change.reason()?)
                .await?;
            let team = &r.value;
            if ctx.json {
                output::json(&team_json(team));
            } else {
                eprintln!(
                    "team {}/{} limits: rpm {}, tpm {}",
                    team.tenant,
                    team.name,
                    opt(team.rpm),
                    opt(team.tpm)
                );
            }
        }
        TeamCmd::List { tenant } => {
            let store = open(ctx).await?;
            let list = store.list_teams(tenant.as_deref()).await?;
            if ctx.json {
                output::json(&json!(list.iter().map(team_json).collect::<Vec<_>>()));
            } else {
                output::table(
                    &["TENANT", "TEAM", "RPM", "TPM", "ID"],
                    &list
                        .iter()
                        .map(|t| {
                            vec![
                                t.tenant.clone(),
                                t.name.clone(),
                                opt(t.rpm),
                                opt(t.tpm),
                                t.id.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn apps(ctx: &Ctx, cmd: AppCmd) -> Result<ExitCode> {
    match cmd {
        AppCmd::Create {
            name,
            team,
            tenant: t,
            change,
        } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .create_app(&actor, &t.tenant, &team, &name, &change.reason()?)
                .await?;
            let app = &r.value;
            if ctx.json {
                output::json(
                    &json!({"id": app.id, "tenant": app.tenant, "team": app.team, "name": app.name, "created_at": time(Some(app.created_at))}),
                );
            } else {
                eprintln!(
                    "created app {}/{}/{} ({}); {}",
                    app.tenant,
                    app.team,
                    app.name,
                    app.id,
                    entry(&r)
                );
            }
        }
        AppCmd::List { tenant, team } => {
            let store = open(ctx).await?;
            let list = store.list_apps(tenant.as_deref(), team.as_deref()).await?;
            if ctx.json {
                output::json(&json!(list.iter().map(|a| json!({"id": a.id, "tenant": a.tenant, "team": a.team, "name": a.name, "created_at": time(Some(a.created_at))})).collect::<Vec<_>>()));
            } else {
                output::table(
                    &["TENANT", "TEAM", "APP", "ID"],
                    &list
                        .iter()
                        .map(|a| {
                            vec![
                                a.tenant.clone(),
                                a.team.clone(),
                                a.name.clone(),
                                a.id.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        AppCmd::Tools {
            name,
            team,
            tenant: t,
            allow,
            clear,
            change,
        } => {
            let app = if allow.is_none() && !clear {
                let store = open(ctx).await?;
                store.app(&t.tenant, &team, &name).await?
            } else {
                let tools = allow.map(|list| {
                    list.into_iter()
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                });
                let (control, actor) = control(ctx, &change).await?;
                let r = control
                    .set_app_tools(&actor, &t.tenant, &team, &name, tools, &change.reason()?)
                    .await?;
                if !ctx.json {
                    eprintln!("{}", entry(&r));
                }
                r.value
            };
            if ctx.json {
                output::json(
                    &json!({"tenant": app.tenant, "team": app.team, "app": app.name, "tools": app.tools}),
                );
            } else {
                match &app.tools {
                    None => println!(
                        "{}/{}/{} declares no tools: tool use is not limited by a declaration",
                        app.tenant, app.team, app.name
                    ),
                    Some(list) if list.is_empty() => println!(
                        "{}/{}/{} declares that it uses no tools: every tool is refused",
                        app.tenant, app.team, app.name
                    ),
                    Some(list) => println!(
                        "{}/{}/{} uses only: {}",
                        app.tenant,
                        app.team,
                        app.name,
                        list.join(", ")
                    ),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key_json(k: &KeyRow) -> serde_json::Value {
    json!({
        "id": k.id, "prefix": k.prefix, "name": k.name, "tenant": k.tenant, "team": k.team, "app": k.app,
        "env": k.env, "models": k.models, "rpm": k.rpm, "tpm": k.tpm, "status": k.status(now_ms()),
        "created_at": time(Some(k.created_at)), "expires_at": k.expires_at.map(|t| time(Some(t))),
        "ends_at": k.ends_at().map(|t| time(Some(t))),
        "revoked_at": k.revoked_at.map(|t| time(Some(t))), "rotated_from": k.rotated_from,
        "roles": k.roles,
    })
}

/// A key's fields, one per line: on stdout for `keys show`, on stderr beside a secret
/// (whose line alone goes to stdout, for `$(custos keys create …)`).
fn key_details(k: &KeyRow, to_stdout: bool) {
    let rows = [
        ("id", k.id.clone()),
        ("prefix", format!("{}…", k.prefix)),
        ("name", opt(k.name.as_deref())),
        ("owner", format!("{}/{}/{}", k.tenant, k.team, k.app)),
        ("env", k.env.clone()),
        ("models", k.models.clone()),
        (
            "roles",
            if k.roles.is_empty() {
                "service (model calls)".to_owned()
            } else {
                k.roles.join(", ")
            },
        ),
        ("limits", format!("{} rpm, {} tpm", opt(k.rpm), opt(k.tpm))),
        ("status", k.status(now_ms()).into()),
        ("created", time(Some(k.created_at))),
        ("expires", time(k.ends_at())),
        ("revoked", time(k.revoked_at)),
        ("rotated from", opt(k.rotated_from.as_deref())),
    ];
    for (label, value) in rows {
        if to_stdout {
            println!("{label:<15}{value}");
        } else {
            eprintln!("  {label:<13}{value}");
        }
    }
}

fn duration_ms(flag: &str, value: &str) -> Result<i64> {
    let d = parse_duration(value).with_context(|| format!("--{flag}"))?;
    i64::try_from(d.as_millis()).context("duration too large")
}

pub async fn keys(ctx: &Ctx, cmd: KeyCmd) -> Result<ExitCode> {
    match cmd {
        KeyCmd::Create {
            team,
            app,
            tenant: t,
            models,
            rpm,
            tpm,
            expires,
            env,
            name,
            roles,
            change,
        } => {
            let scope = ModelScope::parse(&models);
            if let ModelScope::Only(list) = &scope {
                let unknown: Vec<&str> = list
                    .iter()
                    .filter(|m| !ctx.config.models.iter().any(|r| &r.name == *m))
                    .map(String::as_str)
                    .collect();
                if !unknown.is_empty() {
                    eprintln!(
                        "warning: no route serves {}; the key cannot use it until one does",
                        unknown.join(", ")
                    );
                }
            }
            let expires_in_ms = match &expires {
                Some(e) => Some(duration_ms("expires", e)?),
                None => None,
            };
            let (control, actor) = control(ctx, &change).await?;
            let req = KeyRequest {
                tenant: t.tenant,
                team,
                app,
                scope: KeyScope {
                    models: scope.to_list(),
                    rpm: limit(rpm),
                    tpm: limit(tpm),
                    env,
                    expires_in_ms,
                    name,
                    roles,
                },
            };
            let r = control.create_key(&actor, &req, &change.reason()?).await?;
            let (row, secret) = (&r.value.key, &r.value.secret);
            if ctx.json {
                let mut v = key_json(row);
                v["key"] = json!(secret);
                output::json(&v);
            } else {
                eprintln!(
                    "created API key {} for {}/{}/{} ({}):",
                    row.id,
                    row.tenant,
                    row.team,
                    row.app,
                    entry(&r)
                );
                key_details(row, false);
                eprintln!("the key is shown once, below; store it in your secret manager now:");
                println!("{secret}");
            }
        }
        KeyCmd::List {
            tenant,
            team,
            app,
            all,
        } => {
            let store = open(ctx).await?;
            let list = store
                .list_keys(&KeyFilter {
                    tenant,
                    team,
                    app,
                    include_inactive: all,
                })
                .await?;
            if ctx.json {
                output::json(&json!(list.iter().map(key_json).collect::<Vec<_>>()));
            } else {
                let now = now_ms();
                output::table(
                    &[
                        "ID", "PREFIX", "OWNER", "ENV", "MODELS", "RPM", "TPM", "STATUS", "EXPIRES",
                    ],
                    &list
                        .iter()
                        .map(|k| {
                            vec![
                                k.id.clone(),
                                k.prefix.clone(),
                                format!("{}/{}/{}", k.tenant, k.team, k.app),
                                k.env.clone(),
                                k.models.clone(),
                                opt(k.rpm),
                                opt(k.tpm),
                                k.status(now).into(),
                                time(k.ends_at()),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        KeyCmd::Show { key } => {
            let store = open(ctx).await?;
            let k = store.key(&key).await?;
            if ctx.json {
                output::json(&key_json(&k));
            } else {
                key_details(&k, true);
            }
        }
        KeyCmd::Revoke { key, change } => {
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .revoke_key(&actor, None, &key, &change.reason()?)
                .await?;
            let k = &r.value;
            if ctx.json {
                output::json(&key_json(k));
            } else {
                eprintln!(
                    "revoked key {} ({}…); gateways refuse it within a second; {}",
                    k.id,
                    k.prefix,
                    entry(&r)
                );
            }
        }
        KeyCmd::Rotate {
            key,
            overlap,
            change,
        } => {
            let overlap_ms = match &overlap {
                Some(o) => duration_ms("overlap", o)?,
                None => 0,
            };
            let (control, actor) = control(ctx, &change).await?;
            let r = control
                .rotate_key(&actor, None, &key, overlap_ms, &change.reason()?)
                .await?;
            let (old, succ, secret) = (&r.value.old, &r.value.new, &r.value.secret);
            if ctx.json {
                output::json(&json!({"old": key_json(old), "new": key_json(succ), "key": secret}));
            } else {
                eprintln!(
                    "rotated {} → {}; the old key stops working {}",
                    old.id,
                    succ.id,
                    if overlap_ms == 0 {
                        "now".to_string()
                    } else {
                        format!("at {}", time(old.revoked_at))
                    }
                );
                eprintln!("the new key is shown once, below:");
                println!("{secret}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
