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
    /// Approve a pending request (not your own): as the holder of CUSTOS_TOKEN or
    /// --token-file (an API key or JWT, verified as the gateway verifies it), else as the
    /// local operator (the OS login).
    #[command(
        after_help = "Examples:\n  CUSTOS_TOKEN=$(cat bob.jwt) custos grants approve grant_01936f…\n  custos grants approve grant_01936f… --token-file ~/.config/custos/token\n  custos grants approve grant_01936f…     # as local:<your login>\n\nThe approver is whoever the credential proves, never a name typed on the command line;\nwhoever requested a grant, or would hold it, cannot decide it."
    )]
    Approve {
        id: String,
        #[command(flatten)]
        cred: Credential,
    },
    /// Deny a pending request (same identity rules as approve).
    Deny {
        id: String,
        #[command(flatten)]
        cred: Credential,
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
        #[command(flatten)]
        cred: Credential,
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
    /// Why: a sentence or a ticket; recorded in the ledger.
    #[arg(long)]
    why: String,
    #[command(flatten)]
    cred: Credential,
}

/// Who acts: a credential, or else the local operator.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Credential {
    /// A file holding your API key or JWT (else $CUSTOS_TOKEN; else you act as the local
    /// operator, your OS login).
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
}

/// Who a grants command acts as, as proved: the principal of a verified credential, or the
/// local operator.
struct Acting {
    /// The name grants record (`Principal::grant_name`, or `local:<login>`).
    name: String,
    actor: Value,
}

/// The acting identity: the credential in `--token-file` or `$CUSTOS_TOKEN`, verified exactly
/// as the gateway verifies it and authorized for `action` on `tenant` by the policies; else
/// the local operator.
async fn acting(
    ctx: &Ctx,
    store: &Store,
    cred: &Credential,
    action: &str,
    tenant: &str,
) -> Result<Acting> {
    let token = match &cred.token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("--token-file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var("CUSTOS_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    };
    let Some(token) = token else {
        let name = crate::audit::local_operator();
        return Ok(Acting {
            actor: actor(&name),
            name,
        });
    };
    let principal = if token.starts_with("ck_") {
        let keys = custos_gateway::authn::KeyCache::load(store).await?;
        match keys.check(&token) {
            custos_authz::KeyCheck::Valid(p) => (*p).clone(),
            custos_authz::KeyCheck::Expired { key_id } => {
                bail!("the credential is API key {key_id}, which has expired")
            }
            custos_authz::KeyCheck::Revoked { key_id } => {
                bail!("the credential is API key {key_id}, which was revoked")
            }
            _ => bail!("the credential is not a valid custos API key"),
        }
    } else {
        let issuers = custos_gateway::oidc::Issuers::load(&ctx.config.auth.jwt).await?;
        if issuers.is_empty() {
            bail!("the credential looks like a JWT, but no [[auth.jwt]] issuer is configured");
        }
        let (claims, _) = issuers
            .verify(&token)
            .await
            .map_err(|e| anyhow::anyhow!("the credential was refused: {e}"))?;
        let directory = custos_gateway::directory::Directory::load(store).await?;
        directory
            .principal(claims)
            .map_err(|e| anyhow::anyhow!("the credential was refused: {e}"))?
    };
    crate::local_authz::authorize_principal(ctx, &principal, action, tenant)?;
    Ok(Acting {
        name: principal.grant_name(),
        actor: json!({"type": if principal.method == custos_core::principal::AuthMethod::Jwt { "user" } else { "service_account" },
            "id": principal.id, "uid": principal.uid, "issuer": (!principal.issuer.is_empty()).then_some(&principal.issuer),
            "tenant": principal.tenant, "auth": principal.method.as_str(), "mfa": principal.mfa}),
    })
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
    let action = match kind {
        GrantKind::Jit => "grants.request",
        GrantKind::BreakGlass => "grants.break_glass",
    };
    let who = acting(ctx, store, &a.cred, action, &a.tenant).await?;
    let principal = grantee(ctx, &a.tenant, &a.principal)?;
    // Breaking glass is taking a role oneself: for anyone else it needs their credential.
    if kind == GrantKind::BreakGlass && who.name != principal {
        bail!(
            "break-glass for {principal} must be done with {principal}'s own credential (CUSTOS_TOKEN or --token-file); you act as {}",
            who.name
        );
    }
    let by = who.name.clone();
    let g = store
        .grant_create(&NewGrant {
            tenant: a.tenant,
            principal,
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
    record_by(store, who.actor, activity, resource(&g), Some(&g.why)).await?;
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
        GrantsCmd::Approve { id, cred } => {
            let tenant = store.grant(&id).await?.tenant;
            let who = acting(ctx, &store, &cred, "grants.approve", &tenant).await?;
            let g = store.grant_decide(&id, true, &who.name).await?;
            record_by(
                &store,
                who.actor,
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
        GrantsCmd::Deny { id, cred } => {
            let tenant = store.grant(&id).await?.tenant;
            let who = acting(ctx, &store, &cred, "grants.approve", &tenant).await?;
            let g = store.grant_decide(&id, false, &who.name).await?;
            record_by(&store, who.actor, "grant.deny", resource(&g), Some(&g.why)).await?;
            show(&g, format!("{}: denied", g.id));
        }
        GrantsCmd::Revoke { id, cred } => {
            let tenant = store.grant(&id).await?.tenant;
            let who = acting(ctx, &store, &cred, "grants.approve", &tenant).await?;
            let g = store.grant_revoke(&id, &who.name).await?;
            record_by(&store, who.actor, "grant.revoke", resource(&g), None).await?;
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
