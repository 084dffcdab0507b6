//! The CLI's side of the control plane: the flags every change command shares (why, ticket,
//! credential), the acting identity (a verified credential, else the local operator), and the
//! `Control` over the configured database and policies. Commands parse, call and print.

use crate::Ctx;
use anyhow::{bail, Context, Result};
use custos_authz::policy::{self, Engine, RequestFacts};
use custos_control::{Actor, Control, Settings};
use custos_core::Reason;
use custos_store::Store;
use std::sync::Arc;

/// Flags of every command that changes custos' state.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ChangeArgs {
    /// Why the change is made; recorded with it in the audit ledger. Required for the actions
    /// `[audit] require_why` lists (grants, break-glass, overrides, key revocation, …).
    #[arg(long, value_name = "TEXT")]
    pub why: Option<String>,
    /// The ticket, incident or change request the change belongs to (e.g. CHG-1042).
    #[arg(long, value_name = "ID")]
    pub ticket: Option<String>,
    /// A file holding your API key or JWT: the change is made as its holder, authorized by
    /// the policies (else $CUSTOS_TOKEN; else you act as the local operator, your OS login).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

impl ChangeArgs {
    pub fn reason(&self) -> Result<Reason> {
        Reason::new(self.why.as_deref(), self.ticket.as_deref())
            .map_err(|e| anyhow::anyhow!("--why/--ticket: {e}"))
    }
}

/// The configured policies, as the admin API would apply them.
pub fn engine(ctx: &Ctx) -> Result<Engine> {
    engine_for(&ctx.config)
}

pub fn engine_for(config: &custos_core::Config) -> Result<Engine> {
    let schema = policy::schema()?;
    let policies = policy::configured(&config.authz.policies, &schema)?;
    Ok(Engine::new(schema, policies)?)
}

/// The control plane over the configured database and policies.
pub async fn open(ctx: &Ctx) -> Result<Control> {
    let store = crate::identity::open(ctx).await?;
    Ok(Control::new(
        store,
        Arc::new(engine(ctx)?),
        Settings::from_config(&ctx.config),
    ))
}

/// The control plane and the acting identity for one change command.
pub async fn for_change(ctx: &Ctx, change: &ChangeArgs) -> Result<(Control, Actor)> {
    let control = open(ctx).await?;
    let actor = actor(ctx, control.store(), change).await?;
    Ok((control, actor))
}

/// The credential in `--token-file` or `$CUSTOS_TOKEN`, if any.
fn token(args: &ChangeArgs) -> Result<Option<String>> {
    Ok(match &args.token_file {
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
    })
}

/// Who acts: the holder of the credential in `--token-file` or `$CUSTOS_TOKEN`, verified
/// exactly as the gateway verifies it; else the local operator (`local:<OS login>`).
pub async fn actor(ctx: &Ctx, store: &Store, args: &ChangeArgs) -> Result<Actor> {
    let Some(token) = token(args)? else {
        return Ok(Actor::local(&crate::audit::os_login_name()));
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
    let directory = custos_gateway::directory::Directory::load(store).await?;
    let now = custos_core::time::now_ms();
    let facts = RequestFacts {
        time: now.div_euclid(1000),
        step_up: principal.mfa,
        grants: directory.granted_roles(&principal, now),
        ..RequestFacts::default()
    };
    let tenant = (*directory.tenant_facts(&principal.tenant)).clone();
    let mut actor = Actor::credential(principal, facts, tenant);
    actor.source = Some("cli".into());
    Ok(actor)
}
