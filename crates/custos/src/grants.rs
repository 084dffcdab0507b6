//! `custos grants`: time-bound roles. Just-in-time requests that another principal approves,
//! break-glass access that is live at once and always alerts, revocation, and the list of who
//! holds what until when. Every step leaves a ledger event with its reason.

use crate::control::ChangeArgs;
use crate::{output, Ctx};
use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use custos_control::GrantRequest;
use custos_core::duration::{format_duration, parse_duration};
use custos_core::time::{format_rfc3339, now_ms};
use custos_store::{Grant, GrantKind};
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
    /// Approve a pending request (not your own): as the holder of CUSTOS_TOKEN or
    /// --token-file (an API key or JWT, verified as the gateway verifies it), else as the
    /// local operator (the OS login).
    #[command(
        after_help = "Examples:\n  CUSTOS_TOKEN=$(cat bob.jwt) custos grants approve grant_01936f…\n  custos grants approve grant_01936f… --token-file ~/.config/custos/token\n  custos grants approve grant_01936f…     # as local:<your login>\n\nThe approver is whoever the credential proves, never a name typed on the command line;\nwhoever requested a grant, or would hold it, cannot decide it."
    )]
    Approve {
        /// The grant's id (grant_…).
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Deny a pending request (same identity rules as approve).
    Deny {
        /// The grant's id (grant_…).
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
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
        /// The grant's id (grant_…).
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Who holds or asked for what, until when.
    #[command(
        after_help = "Examples:\n  custos grants list --active\n  custos grants list --tenant acme --json"
    )]
    List {
        /// Only this tenant's grants.
        #[arg(long)]
        tenant: Option<String>,
        /// Only grants live now.
        #[arg(long)]
        active: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct GrantArgs {
    /// Tenant the grant is for.
    #[arg(long, default_value = crate::identity::DEFAULT_TENANT)]
    pub(crate) tenant: String,
    /// Who will hold the role: an API key id, a SPIFFE ID, or a token's ISSUER#SUBJECT (a
    /// bare subject when exactly one `[[auth.jwt]]` issuer serves the tenant).
    #[arg(long)]
    principal: String,
    /// The role (as the policies name it: tenant-admin, security-admin, …).
    #[arg(long)]
    role: String,
    /// How long, e.g. 30m, 2h.
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    #[command(flatten)]
    change: ChangeArgs,
}

/// A grantee as grants name it: a bare token subject becomes ISSUER#SUBJECT when exactly one
/// configured issuer serves the tenant, so a grant never reaches a namesake at another issuer.
fn grantee(ctx: &Ctx, tenant: &str, principal: &str) -> Result<String> {
    if principal.contains('#')
        || principal.starts_with("key_")
        || principal.starts_with("spiffe://")
        || principal.starts_with("local:")
        || ctx.config.auth.jwt.is_empty()
    {
        return Ok(principal.to_owned());
    }
    let serving: Vec<&str> = ctx
        .config
        .auth
        .jwt
        .iter()
        .filter(|j| {
            j.allowed_tenants()
                .is_none_or(|list| list.iter().any(|t| t == tenant))
        })
        .map(|j| j.issuer.as_str())
        .collect();
    match serving.as_slice() {
        [one] => Ok(format!("{one}#{principal}")),
        [] => Ok(principal.to_owned()),
        many => bail!(
            "--principal {principal:?}: {} issuers serve tenant {tenant:?} ({}); name the subject as ISSUER#SUBJECT",
            many.len(),
            many.join(", ")
        ),
    }
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

async fn create(ctx: &Ctx, a: GrantArgs, kind: GrantKind) -> Result<(Grant, u64)> {
    let d = parse_duration(&a.duration).with_context(|| format!("--for {}", a.duration))?;
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), &a.change).await?;
    let principal = grantee(ctx, &a.tenant, &a.principal)?;
    let req = GrantRequest {
        tenant: a.tenant,
        principal: Some(principal),
        role: a.role,
        duration: d,
        kind,
    };
    match control
        .request_grant(&actor, &req, &a.change.reason()?)
        .await
    {
        Ok(r) => Ok((r.value, r.ledger.start)),
        Err(custos_control::ControlError::ReasonRequired { .. }) => {
            bail!("--why is required: say why the role is needed (a sentence or a ticket)")
        }
        Err(e) => Err(e.into()),
    }
}

/// Approves, denies or revokes a grant as the acting identity.
async fn decide(ctx: &Ctx, id: &str, change: &ChangeArgs, verdict: Option<bool>) -> Result<Grant> {
    let control = crate::control::open(ctx).await?;
    let actor = crate::control::actor(ctx, control.store(), change).await?;
    let reason = change.reason()?;
    let r = match verdict {
        Some(approve) => {
            control
                .decide_grant(&actor, None, id, approve, &reason)
                .await?
        }
        None => control.revoke_grant(&actor, None, id, &reason).await?,
    };
    Ok(r.value)
}

pub async fn run(ctx: &Ctx, cmd: GrantsCmd) -> Result<ExitCode> {
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
            let (g, _) = create(ctx, grant, GrantKind::Jit).await?;
            show(
                &g,
                format!(
                    "{}: {} asks for {} in {} for {} — pending; another principal approves with their own credential:\n  CUSTOS_TOKEN=… custos grants approve {}",
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
            let hooks = custos_gateway::webhook::Webhooks::for_events(&ctx.config)?;
            let (g, index) = create(ctx, grant, GrantKind::BreakGlass).await?;
            // Sent at once rather than when a gateway's relay reaches it; the id is the
            // ledger event's, so a receiver that gets both drops the repeat.
            let store = crate::control::open(ctx).await?.store().clone();
            let event = store
                .ledger_entries(index as i64, 1)
                .await?
                .into_iter()
                .next()
                .and_then(|e| serde_json::from_str(&e.event).ok())
                .unwrap_or_else(
                    || json!({"activity": "grant.break_glass", "grant": grant_json(&g, now)}),
                );
            let event = custos_control::export::CloudEvent::from_ledger(index, event);
            let failed = hooks
                .deliver_and_wait(&ctx.config.events.source, &event, 3)
                .await;
            if hooks.is_empty() {
                eprintln!("warning: no [[events.webhooks]] are configured: the break-glass alert is only in the audit ledger");
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
        GrantsCmd::Approve { id, change } => {
            let g = decide(ctx, &id, &change, Some(true)).await?;
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
        GrantsCmd::Deny { id, change } => {
            let g = decide(ctx, &id, &change, Some(false)).await?;
            show(&g, format!("{}: denied", g.id));
        }
        GrantsCmd::Revoke { id, change } => {
            let g = decide(ctx, &id, &change, None).await?;
            show(&g, format!("{}: revoked", g.id));
        }
        GrantsCmd::List { tenant, active } => {
            let store = crate::identity::open(ctx).await?;
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
