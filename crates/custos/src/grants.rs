//! `custos grants`: time-bound roles. Just-in-time requests that another principal approves,
//! break-glass access that is live at once and always alerts, revocation, and the list of who
//! holds what until when. Every step leaves a ledger event with its reason.

use crate::audit::record_by;
use crate::{output, Ctx};
use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use custos_core::duration::{format_duration, parse_duration};
use custos_core::time::{format_rfc3339, now_ms};
use custos_store::{Grant, GrantKind, NewGrant, Store};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum GrantsCmd {
    /// Ask for a role for a while; it is live only once someone else approves it.
    #[command(
        after_help = "The grant starts when it is approved and stops by itself when its time is up.\nThe longest grant is `authz.grants.max_duration` (default 8h), or less per role.\n\nExample:\n  custos grants request --tenant acme --principal alice@example.com --role tenant-admin --for 60m --why \"INC-4711: rotate leaked key\""
    )]
    Request {
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Approve a pending request (not your own).
    #[command(after_help = "Example:\n  custos grants approve grant_01936f… --as bob@example.com")]
    Approve {
        id: String,
        #[arg(long = "as", env = "CUSTOS_PRINCIPAL", value_name = "PRINCIPAL")]
        by: String,
    },
    /// Deny a pending request.
    Deny {
        id: String,
        #[arg(long = "as", env = "CUSTOS_PRINCIPAL", value_name = "PRINCIPAL")]
        by: String,
    },
    /// Take a role now, in an emergency: at most 4h, always alerted (webhooks) and audited.
    #[command(
        name = "break-glass",
        after_help = "Example:\n  custos grants break-glass --tenant acme --principal alice@example.com --role security-admin --for 1h --why \"INC-4712: provider key leaked, revoking\""
    )]
    BreakGlass {
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// End a grant before its time.
    Revoke {
        id: String,
        #[arg(long = "as", env = "CUSTOS_PRINCIPAL", value_name = "PRINCIPAL")]
        by: Option<String>,
    },
    /// Who holds or asked for what, until when.
    #[command(
        after_help = "Examples:\n  custos grants list --active\n  custos grants list --tenant acme --json"
    )]
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only grants live now.
        #[arg(long)]
        active: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct GrantArgs {
    #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Who will hold the role: a token subject, an API key id or a SPIFFE ID.
    #[arg(long)]
    principal: String,
    /// The role (as the policies name it: tenant-admin, security-admin, …).
    #[arg(long)]
    role: String,
    /// How long, e.g. 30m, 2h.
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    /// Why: a sentence or a ticket; recorded in the ledger.
    #[arg(long)]
    why: String,
    /// Who asks (default: the grantee).
    #[arg(long = "as", env = "CUSTOS_PRINCIPAL", value_name = "PRINCIPAL")]
    by: Option<String>,
}

fn grant_json(g: &Grant, now: i64) -> Value {
    json!({
        "id": g.id,
        "tenant": g.tenant,
        "principal": g.principal,
        "role": g.role,
        "kind": g.kind.as_str(),
        "state": g.state(now),
        "why": g.why,
        "duration": format_duration(std::time::Duration::from_millis(g.duration_ms.max(0) as u64)),
        "requested_by": g.requested_by,
        "requested_at": format_rfc3339(g.requested_at),
        "decided_by": g.decided_by,
        "expires_at": g.expires_at.map(format_rfc3339),
        "revoked_by": g.revoked_by,
    })
}

fn actor(id: &str) -> Value {
    json!({"type": "user", "id": id, "auth": "local"})
}

fn resource(g: &Grant) -> Value {
    json!({"type": "grant", "id": g.id, "tenant": g.tenant, "principal": g.principal,
           "role": g.role, "kind": g.kind.as_str(), "expires_at": g.expires_at.map(format_rfc3339)})
}

async fn create(ctx: &Ctx, store: &Store, a: GrantArgs, kind: GrantKind) -> Result<Grant> {
    let d = parse_duration(&a.duration).with_context(|| format!("--for {}", a.duration))?;
    let max = ctx
        .config
        .authz
        .grants
        .max_for(&a.role, kind == GrantKind::BreakGlass);
    if d > max {
        bail!(
            "--for {}: a {} grant of {} lasts at most {} (authz.grants in custos.toml)",
            a.duration,
            if kind == GrantKind::BreakGlass {
                "break-glass"
            } else {
                "just-in-time"
            },
            a.role,
            format_duration(max)
        );
    }
    if d.is_zero() {
        bail!("--for must be longer than zero");
    }
    if !a
        .role
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        || a.role.is_empty()
    {
        bail!("--role {:?}: use letters, digits, '-', '_' or '.'", a.role);
    }
    store.tenant(&a.tenant).await?;
    let by = a.by.clone().unwrap_or_else(|| a.principal.clone());
    let g = store
        .grant_create(&NewGrant {
            tenant: a.tenant,
            principal: a.principal,
            role: a.role,
            kind,
            why: a.why,
            duration_ms: i64::try_from(d.as_millis()).context("duration too large")?,
            requested_by: by.clone(),
        })
        .await?;
    let activity = match kind {
        GrantKind::Jit => "grant.request",
        GrantKind::BreakGlass => "grant.break_glass",
    };
    record_by(store, actor(&by), activity, resource(&g), Some(&g.why)).await?;
    Ok(g)
}

pub async fn run(ctx: &Ctx, cmd: GrantsCmd) -> Result<ExitCode> {
    let store = crate::identity::open(ctx).await?;
    let now = now_ms();
    let show = |g: &Grant, line: String| {
        if ctx.json {
            output::json(&grant_json(g, now_ms()));
        } else {
            println!("{line}");
        }
    };
    match cmd {
        GrantsCmd::Request { grant } => {
            let g = create(ctx, &store, grant, GrantKind::Jit).await?;
            show(
                &g,
                format!(
                    "{}: {} asks for {} in {} for {} — pending; another principal approves with\n  custos grants approve {} --as APPROVER",
                    g.id,
                    g.principal,
                    g.role,
                    g.tenant,
                    format_duration(std::time::Duration::from_millis(g.duration_ms as u64)),
                    g.id
                ),
            );
        }
        GrantsCmd::BreakGlass { grant } => {
            let g = create(ctx, &store, grant, GrantKind::BreakGlass).await?;
            let hooks = custos_gateway::webhook::Webhooks::new(&ctx.config.finops.webhooks)?;
            let payload = json!({"type": "grant.break_glass", "grant": grant_json(&g, now)});
            let failed = hooks.deliver_and_wait(&g.id, &payload, 3).await;
            if hooks.is_empty() {
                eprintln!("warning: no [[finops.webhooks]] are configured: the break-glass alert is only in the audit ledger");
            }
            for (url, why) in &failed {
                eprintln!("warning: the break-glass alert did not reach {url}: {why}");
            }
            show(
                &g,
                format!(
                    "BREAK-GLASS {}: {} holds {} in {} until {} ({}); alerted {} receiver(s)",
                    g.id,
                    g.principal,
                    g.role,
                    g.tenant,
                    g.expires_at.map(format_rfc3339).unwrap_or_default(),
                    g.why,
                    hooks.len() - failed.len()
                ),
            );
        }
        GrantsCmd::Approve { id, by } | GrantsCmd::Deny { id, by } if by.trim().is_empty() => {
            bail!("grant {id}: name who decides with --as or CUSTOS_PRINCIPAL");
        }
        GrantsCmd::Approve { id, by } => {
            let g = store.grant_decide(&id, true, &by).await?;
            record_by(
                &store,
                actor(&by),
                "grant.approve",
                resource(&g),
                Some(&g.why),
            )
            .await?;
            show(
                &g,
                format!(
                    "{}: {} holds {} in {} until {}",
                    g.id,
                    g.principal,
                    g.role,
                    g.tenant,
                    g.expires_at.map(format_rfc3339).unwrap_or_default()
                ),
            );
        }
        GrantsCmd::Deny { id, by } => {
            let g = store.grant_decide(&id, false, &by).await?;
            record_by(&store, actor(&by), "grant.deny", resource(&g), Some(&g.why)).await?;
            show(&g, format!("{}: denied", g.id));
        }
        GrantsCmd::Revoke { id, by } => {
            let by = by.unwrap_or_else(crate::audit::local_operator);
            let g = store.grant_revoke(&id, &by).await?;
            record_by(&store, actor(&by), "grant.revoke", resource(&g), None).await?;
            show(&g, format!("{}: revoked", g.id));
        }
        GrantsCmd::List { tenant, active } => {
            let list: Vec<Grant> = store
                .grants_list(tenant.as_deref())
                .await?
                .into_iter()
                .filter(|g| !active || g.live(now))
                .collect();
            if ctx.json {
                output::json(&json!(list
                    .iter()
                    .map(|g| grant_json(g, now))
                    .collect::<Vec<_>>()));
            } else {
                output::table(
                    &[
                        "ID",
                        "TENANT",
                        "PRINCIPAL",
                        "ROLE",
                        "KIND",
                        "STATE",
                        "UNTIL",
                        "WHY",
                    ],
                    &list
                        .iter()
                        .map(|g| {
                            vec![
                                g.id.clone(),
                                g.tenant.clone(),
                                g.principal.clone(),
                                g.role.clone(),
                                g.kind.as_str().to_owned(),
                                g.state(now).to_owned(),
                                g.expires_at
                                    .map(format_rfc3339)
                                    .unwrap_or_else(|| "-".into()),
                                g.why.clone(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
