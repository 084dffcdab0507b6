//! The CLI's reads and ledger maintenance are authorized by the same policies as the admin
//! API: such a command acts as the local operator (`ServiceAccount::"local:<login>"` with role
//! `operator`) on the tenant it names. The built-in roles let the operator do everything; a
//! `forbid` written for it (say, on `audit.prune`) stops the command before it touches the
//! database. Changes are authorized by `custos-control`, as whoever acts.

use crate::grants::GrantsCmd;
use crate::identity::{AppCmd, KeyCmd, TeamCmd, TenantCmd, DEFAULT_TENANT};
use crate::{Command, Ctx};
use anyhow::{bail, Result};
use custos_authz::policy::{self, Engine, RequestFacts, Resource, TenantFacts};
use custos_core::principal::{AuthMethod, Principal};

/// The action a reading command performs and the tenant it reads; `None` for commands that
/// change state (`custos-control` authorizes those, as the acting identity) and for commands
/// outside the control plane (scanners, policy tools, serve).
fn action(cmd: &Command) -> Option<(&'static str, String)> {
    let default = || DEFAULT_TENANT.to_owned();
    Some(match cmd {
        Command::Tenants(TenantCmd::List) => ("tenants.read", default()),
        Command::Teams(TeamCmd::List { tenant }) | Command::Apps(AppCmd::List { tenant, .. }) => {
            ("teams.read", tenant.clone().unwrap_or_else(default))
        }
        Command::Keys(KeyCmd::List { tenant, .. }) => {
            ("keys.read", tenant.clone().unwrap_or_else(default))
        }
        Command::Grants(GrantsCmd::List { tenant, .. }) => {
            ("grants.read", tenant.clone().unwrap_or_else(default))
        }
        Command::Models(
            crate::models::ModelsCmd::List { .. }
            | crate::models::ModelsCmd::Show { .. }
            | crate::models::ModelsCmd::History { .. },
        )
        | Command::Prompts(
            crate::release::PromptsCmd::List { .. } | crate::release::PromptsCmd::Show { .. },
        )
        | Command::Datasets(
            crate::release::DatasetsCmd::List { .. } | crate::release::DatasetsCmd::Show { .. },
        ) => ("models.read", default()),
        Command::Release(crate::release::ReleaseCmd::List { tenant, .. }) => {
            ("releases.read", tenant.clone())
        }
        Command::Audit(crate::audit::AuditCmd::Prune { .. }) => ("audit.prune", default()),
        Command::Audit(crate::audit::AuditCmd::Export { .. }) => ("audit.export", default()),
        Command::Comply(crate::comply::ComplyCmd::Status { .. }) => ("audit.read", default()),
        Command::Dpia(
            crate::comply::DpiaCmd::List
            | crate::comply::DpiaCmd::Show { .. }
            | crate::comply::DpiaCmd::Template { .. },
        ) => ("dpia.read", default()),
        Command::Audit(
            crate::audit::AuditCmd::Query { .. } | crate::audit::AuditCmd::Tail { .. },
        ) => ("audit.read", default()),
        _ => return None,
    })
}

/// The configured policies' decision on `principal` doing `action` on `tenant`, now.
fn decide(
    ctx: &Ctx,
    principal: &Principal,
    action: &str,
    tenant: &str,
) -> Result<policy::Decision> {
    let schema = policy::schema()?;
    let engine = Engine::new(
        schema.clone(),
        policy::configured(&ctx.config.authz.policies, &schema)?,
    )?;
    let facts = RequestFacts {
        time: custos_core::time::now_ms() / 1000,
        ..RequestFacts::default()
    };
    Ok(engine.authorize(
        principal,
        action,
        &Resource::Tenant(tenant.to_owned()),
        &TenantFacts::default(),
        &facts,
    )?)
}

/// Refuses the command when the policies deny it to the local operator.
pub async fn check(ctx: &Ctx, cmd: &Command) -> Result<()> {
    let Some((action, tenant)) = action(cmd) else {
        return Ok(());
    };
    let operator = Principal {
        id: crate::audit::local_operator(),
        method: AuthMethod::ApiKey,
        tenant: tenant.clone(),
        roles: vec!["operator".into()],
        ..Principal::default()
    };
    let d = decide(ctx, &operator, action, &tenant)?;
    if !d.allowed {
        bail!(
            "{action} on tenant {tenant:?} is denied to the local operator {}: {}{}",
            operator.id,
            d.reason(),
            if d.policies.is_empty() {
                "; the configured policies permit nothing to Custos::Role::\"operator\" (the built-in roles.cedar has `operator.all`; `custos policy explain` shows decisions)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
