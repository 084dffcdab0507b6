//! `custos tenants|teams|apps|keys`: the identity objects the gateway serves.

use crate::audit::record;
use crate::output::{self, opt, time};
use crate::Ctx;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use custos_core::duration::parse_duration;
use custos_core::principal::ModelScope;
use custos_core::time::now_ms;
use custos_store::{KeyFilter, KeyRow, NewKey, Store, StoreError};
use serde_json::json;
use std::process::ExitCode;

/// The tenant used when `--tenant` is not given; created on first use.
pub const DEFAULT_TENANT: &str = "default";

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
    Create { name: String },
    /// List tenants.
    List,
    /// Pin a tenant to the regions its calls may be served from (residency); no regions unpins.
    #[command(
        after_help = "Calls of a pinned tenant to a model whose provider is in another region (or has\nno `region` in custos.toml) are denied by the built-in `residency.pinned-regions` policy.\n\nExamples:\n  custos tenants regions acme eu-west\n  custos tenants regions acme eu-west eu-central\n  custos tenants regions acme          # unpin"
    )]
    Regions { name: String, regions: Vec<String> },
}

#[derive(Subcommand, Debug)]
pub enum TeamCmd {
    /// Create a team, optionally with limits shared by all its keys.
    #[command(
        after_help = "Examples:\n  custos teams create ml\n  custos teams create search --tenant acme --rpm 3000 --tpm 1000000"
    )]
    Create {
        name: String,
        #[command(flatten)]
        tenant: TenantArg,
        /// Requests per minute shared by every key of the team.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute shared by every key of the team.
        #[arg(long)]
        tpm: Option<u32>,
    },
    /// Set or clear (with 0) a team's shared limits; gateways apply them within a second.
    #[command(after_help = "Example:\n  custos teams set-limits ml --rpm 600 --tpm 0")]
    SetLimits {
        name: String,
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        rpm: Option<u32>,
        #[arg(long)]
        tpm: Option<u32>,
    },
    /// List teams (of one tenant with --tenant, else all).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    /// Create an app in a team.
    #[command(after_help = "Example:\n  custos apps create chatbot --team ml")]
    Create {
        name: String,
        #[arg(long)]
        team: String,
        #[command(flatten)]
        tenant: TenantArg,
    },
    /// List apps.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        team: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Mint an API key. The key is printed once, on standard output, and never again.
    #[command(
        after_help = "Examples:\n  custos keys create --team ml --app chatbot\n  custos keys create --team ml --app chatbot --models 'gpt-4o-mini,text-embedding-3-small' \\\n      --rpm 600 --tpm 200000 --expires 90d\n  export OPENAI_API_KEY=$(custos keys create --team ml --app chatbot)"
    )]
    Create {
        #[arg(long)]
        team: String,
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
    },
    /// List keys (active only, unless --all).
    #[command(
        after_help = "Examples:\n  custos keys list\n  custos keys list --team ml --all --json"
    )]
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long)]
        app: Option<String>,
        /// Include revoked and expired keys.
        #[arg(long)]
        all: bool,
    },
    /// Show one key by id (key_…) or displayed prefix (ck_live_…).
    Show { key: String },
    /// Revoke a key now; every gateway refuses it within a second.
    #[command(after_help = "Example:\n  custos keys revoke key_01936f…")]
    Revoke { key: String },
    /// Issue a successor key with the same scope and limits; the old key stops after --overlap.
    #[command(
        after_help = "Examples:\n  custos keys rotate key_01936f…\n  custos keys rotate ck_live_AbC123 --overlap 24h"
    )]
    Rotate {
        key: String,
        /// How long the old key keeps working (default: stops now).
        #[arg(long, value_name = "DURATION")]
        overlap: Option<String>,
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

/// The tenant, created on first use when it is the default one.
async fn tenant(store: &Store, name: &str) -> Result<()> {
    if name == DEFAULT_TENANT {
        store.ensure_tenant(name).await?;
    }
    Ok(())
}

/// Adds a hint about the command that creates a missing object.
fn hint(e: StoreError, create: &str) -> anyhow::Error {
    match e {
        StoreError::NotFound(what) => {
            anyhow::anyhow!("{what} not found; create it with `{create}`")
        }
        other => other.into(),
    }
}

pub async fn tenants(ctx: &Ctx, cmd: TenantCmd) -> Result<ExitCode> {
    let store = open(ctx).await?;
    match cmd {
        TenantCmd::Create { name } => {
            let t = store.create_tenant(&name).await?;
            record(
                &store,
                "tenant.create",
                json!({"type": "tenant", "id": t.id, "name": t.name}),
                None,
            )
            .await?;
            if ctx.json {
                output::json(
                    &json!({"id": t.id, "name": t.name, "created_at": time(Some(t.created_at))}),
                );
            } else {
                eprintln!("created tenant {} ({})", t.name, t.id);
            }
        }
        TenantCmd::List => {
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
        TenantCmd::Regions { name, regions } => {
            let t = store.set_tenant_regions(&name, &regions).await?;
            record(
                &store,
                "tenant.regions",
                json!({"type": "tenant", "id": t.id, "name": t.name, "regions": t.regions}),
                None,
            )
            .await?;
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
    let store = open(ctx).await?;
    match cmd {
        TeamCmd::Create {
            name,
            tenant: t,
            rpm,
            tpm,
        } => {
            tenant(&store, &t.tenant).await?;
            let team = store
                .create_team(&t.tenant, &name, limit(rpm), limit(tpm))
                .await
                .map_err(|e| hint(e, &format!("custos tenants create {}", t.tenant)))?;
            record(&store, "team.create", team_json(&team), None).await?;
            if ctx.json {
                output::json(&team_json(&team));
            } else {
                eprintln!("created team {}/{} ({})", team.tenant, team.name, team.id);
            }
        }
        TeamCmd::SetLimits {
            name,
            tenant: t,
            rpm,
            tpm,
        } => {
            let current = store.team(&t.tenant, &name).await?;
            let rpm = rpm.map_or(current.rpm, |v| limit(Some(v)));
            let tpm = tpm.map_or(current.tpm, |v| limit(Some(v)));
            let team = store.set_team_limits(&t.tenant, &name, rpm, tpm).await?;
            record(&store, "team.update", team_json(&team), None).await?;
            if ctx.json {
                output::json(&team_json(&team));
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
    let store = open(ctx).await?;
    match cmd {
        AppCmd::Create {
            name,
            team,
            tenant: t,
        } => {
            tenant(&store, &t.tenant).await?;
            let app = store
                .create_app(&t.tenant, &team, &name)
                .await
                .map_err(|e| {
                    hint(
                        e,
                        &format!("custos teams create {team} --tenant {}", t.tenant),
                    )
                })?;
            record(&store, "app.create", json!({"type": "app", "id": app.id, "tenant": app.tenant, "team": app.team, "name": app.name}), None).await?;
            if ctx.json {
                output::json(
                    &json!({"id": app.id, "tenant": app.tenant, "team": app.team, "name": app.name, "created_at": time(Some(app.created_at))}),
                );
            } else {
                eprintln!(
                    "created app {}/{}/{} ({})",
                    app.tenant, app.team, app.name, app.id
                );
            }
        }
        AppCmd::List { tenant, team } => {
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
    }
    Ok(ExitCode::SUCCESS)
}

fn key_json(k: &KeyRow) -> serde_json::Value {
    json!({
        "id": k.id, "prefix": k.prefix, "name": k.name, "tenant": k.tenant, "team": k.team, "app": k.app,
        "env": k.env, "models": k.models, "rpm": k.rpm, "tpm": k.tpm, "status": k.status(now_ms()),
        "created_at": time(Some(k.created_at)), "expires_at": k.expires_at.map(|t| time(Some(t))),
        "revoked_at": k.revoked_at.map(|t| time(Some(t))), "rotated_from": k.rotated_from,
    })
}

/// The ledger's view of a key: who owns it and what it may do, never the secret.
fn key_resource(k: &KeyRow) -> serde_json::Value {
    json!({"type": "api_key", "id": k.id, "prefix": k.prefix, "tenant": k.tenant, "team": k.team, "app": k.app,
        "env": k.env, "models": k.models, "rpm": k.rpm, "tpm": k.tpm, "expires_at": k.expires_at.map(|t| time(Some(t)))})
}

fn key_details(k: &KeyRow) {
    let rows = [
        ("id", k.id.clone()),
        ("prefix", format!("{}…", k.prefix)),
        ("name", opt(k.name.as_deref())),
        ("owner", format!("{}/{}/{}", k.tenant, k.team, k.app)),
        ("env", k.env.clone()),
        ("models", k.models.clone()),
        ("limits", format!("{} rpm, {} tpm", opt(k.rpm), opt(k.tpm))),
        ("status", k.status(now_ms()).into()),
        ("created", time(Some(k.created_at))),
        ("expires", time(k.expires_at)),
        ("revoked", time(k.revoked_at)),
        ("rotated from", opt(k.rotated_from.as_deref())),
    ];
    for (label, value) in rows {
        eprintln!("  {label:<13}{value}");
    }
}

fn mint_new(
    app_id: &str,
    env: &str,
    models: &str,
    rpm: Option<i64>,
    tpm: Option<i64>,
    expires_at: Option<i64>,
    name: Option<String>,
) -> Result<(custos_authz::MintedKey, NewKey)> {
    let minted = custos_authz::api_key::mint()?;
    let new = NewKey {
        digest_hex: minted.digest.to_hex(),
        prefix: minted.display_prefix.clone(),
        name,
        app_id: app_id.to_owned(),
        env: env.to_owned(),
        models: models.to_owned(),
        rpm,
        tpm,
        expires_at,
    };
    Ok((minted, new))
}

fn duration_ms(flag: &str, value: &str) -> Result<i64> {
    let d = parse_duration(value).with_context(|| format!("--{flag}"))?;
    i64::try_from(d.as_millis()).context("duration too large")
}

pub async fn keys(ctx: &Ctx, cmd: KeyCmd) -> Result<ExitCode> {
    let store = open(ctx).await?;
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
        } => {
            if !custos_core::id::is_valid_name(&env) {
                bail!("--env {env:?} is invalid: use letters, digits, '.', '_' or '-'");
            }
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
            let expires_at = match &expires {
                Some(e) => Some(now_ms() + duration_ms("expires", e)?),
                None => None,
            };
            tenant(&store, &t.tenant).await?;
            let app_row = store.app(&t.tenant, &team, &app).await.map_err(|e| {
                hint(
                    e,
                    &format!(
                        "custos apps create {app} --team {team}{}",
                        if t.tenant == DEFAULT_TENANT {
                            String::new()
                        } else {
                            format!(" --tenant {}", t.tenant)
                        }
                    ),
                )
            })?;
            let (minted, new) = mint_new(
                &app_row.id,
                &env,
                &scope.to_list(),
                limit(rpm),
                limit(tpm),
                expires_at,
                name,
            )?;
            let row = store.insert_key(&new).await?;
            record(&store, "key.create", key_resource(&row), None).await?;
            if ctx.json {
                let mut v = key_json(&row);
                v["key"] = json!(minted.secret);
                output::json(&v);
            } else {
                eprintln!(
                    "created API key {} for {}/{}/{}:",
                    row.id, row.tenant, row.team, row.app
                );
                key_details(&row);
                eprintln!("the key is shown once, below; store it in your secret manager now:");
                println!("{}", minted.secret);
            }
        }
        KeyCmd::List {
            tenant,
            team,
            app,
            all,
        } => {
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
                                time(k.expires_at),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        KeyCmd::Show { key } => {
            let k = store.key(&key).await?;
            if ctx.json {
                output::json(&key_json(&k));
            } else {
                key_details(&k);
            }
        }
        KeyCmd::Revoke { key } => {
            let k = store.revoke_key(&key, None).await?;
            record(&store, "key.revoke", key_resource(&k), None).await?;
            if ctx.json {
                output::json(&key_json(&k));
            } else {
                eprintln!(
                    "revoked key {} ({}…); gateways refuse it within a second",
                    k.id, k.prefix
                );
            }
        }
        KeyCmd::Rotate { key, overlap } => {
            let old = store.key(&key).await?;
            let overlap_ms = match &overlap {
                Some(o) => duration_ms("overlap", o)?,
                None => 0,
            };
            let (minted, new) = mint_new(
                &old.app_id,
                &old.env,
                &old.models,
                old.rpm,
                old.tpm,
                old.expires_at,
                old.name.clone(),
            )?;
            let (old, succ) = store
                .rotate_key(&old.id, &new, now_ms() + overlap_ms)
                .await?;
            let rotated = json!({"type": "api_key", "id": succ.id, "rotated_from": old.id, "tenant": succ.tenant, "old_key_stops_at": time(old.revoked_at)});
            record(&store, "key.rotate", rotated, None).await?;
            if ctx.json {
                output::json(
                    &json!({"old": key_json(&old), "new": key_json(&succ), "key": minted.secret}),
                );
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
                println!("{}", minted.secret);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
