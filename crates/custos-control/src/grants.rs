//! Time-bound grants: just-in-time requests another principal approves, and break-glass a
//! principal opens for itself, each one authorized change with its ledger event.

use crate::{Actor, Control, ControlError, Evidence, Recorded};
use custos_core::duration::format_duration;
use custos_core::time::format_rfc3339;
use custos_core::Reason;
use custos_store::{Grant, GrantKind, NewGrant, StoreError};
use serde_json::{json, Value};
use std::time::Duration;

fn grant_state(g: &Grant) -> Value {
    json!({"type": "grant", "id": g.id, "tenant": g.tenant, "principal": g.principal,
           "role": g.role, "kind": g.kind.as_str(), "status": g.status.as_str(),
           "decided_by": g.decided_by, "expires_at": g.expires_at.map(format_rfc3339)})
}

/// A grant to request or open.
#[derive(Clone, Debug)]
pub struct GrantRequest {
    pub tenant: String,
    /// Who will hold the role, as grants name principals; `None`: the actor itself.
    pub principal: Option<String>,
    pub role: String,
    pub duration: Duration,
    pub kind: GrantKind,
}

impl Control {
    /// Records a JIT request (pending until another principal approves) or opens a break-glass
    /// grant (live now; only for the actor itself). Both need `why`.
    pub async fn request_grant(
        &self,
        actor: &Actor,
        req: &GrantRequest,
        reason: &Reason,
    ) -> Result<Recorded<Grant>, ControlError> {
        let (action, activity) = match req.kind {
            GrantKind::Jit => ("grants.request", "grant.request"),
            GrantKind::BreakGlass => ("grants.break_glass", "grant.break_glass"),
        };
        let d = self.authorize(actor, action, &req.tenant, reason).await?;
        let Some(why) = reason.why.clone() else {
            return Err(ControlError::ReasonRequired {
                action: action.into(),
            });
        };
        if req.role.is_empty()
            || req.role.len() > 64
            || !req
                .role
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ControlError::invalid(format!(
                "role {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                req.role
            )));
        }
        let breaking = req.kind == GrantKind::BreakGlass;
        let max = self.settings.grants.max_for(&req.role, breaking);
        if req.duration.is_zero() {
            return Err(ControlError::invalid("a grant must last longer than zero"));
        }
        if req.duration > max {
            return Err(ControlError::invalid(format!(
                "a {} grant of {} lasts at most {} (authz.grants in custos.toml)",
                if breaking {
                    "break-glass"
                } else {
                    "just-in-time"
                },
                req.role,
                format_duration(max)
            )));
        }
        let me = actor.name();
        let principal = req.principal.clone().unwrap_or_else(|| me.clone());
        // Breaking glass is taking a role oneself: for anyone else it needs their credential.
        if breaking && principal != me {
            return Err(ControlError::invalid(format!(
                "break-glass for {principal} must be done with {principal}'s own credential; you act as {me}"
            )));
        }
        let mut c = self.store.begin_change().await?;
        c.tenant(&req.tenant).await?;
        let g = c
            .grant_create(&NewGrant {
                tenant: req.tenant.clone(),
                principal,
                role: req.role.clone(),
                kind: req.kind,
                why,
                duration_ms: i64::try_from(req.duration.as_millis())
                    .map_err(|_| ControlError::invalid("the duration is too long"))?,
                requested_by: me,
            })
            .await?;
        let e = self.event(
            actor,
            action,
            &d,
            Evidence {
                activity,
                resource: grant_state(&g),
                before: None,
                after: Some(grant_state(&g)),
            },
            reason,
        );
        self.commit(c, vec![e], g).await
    }

    /// The grant, authorized for `grants.approve` on its tenant; with `tenant` given, a grant
    /// of another tenant is "not found".
    async fn grant_for(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        id: &str,
        reason: &Reason,
    ) -> Result<custos_authz::policy::Decision, ControlError> {
        if let Some(t) = tenant {
            let d = self.authorize(actor, "grants.approve", t, reason).await?;
            return match self.store.grant(id).await {
                Ok(g) if g.tenant == t => Ok(d),
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    Err(StoreError::NotFound(format!("grant {id:?}")).into())
                }
                Err(e) => Err(e.into()),
            };
        }
        let g = self.store.grant(id).await?;
        self.authorize(actor, "grants.approve", &g.tenant, reason)
            .await
    }

    /// Approves or denies a pending grant; the approver may be neither requester nor grantee.
    pub async fn decide_grant(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        id: &str,
        approve: bool,
        reason: &Reason,
    ) -> Result<Recorded<Grant>, ControlError> {
        let d = self.grant_for(actor, tenant, id, reason).await?;
        let mut c = self.store.begin_change().await?;
        let before = c.grant(id).await?;
        let g = c.grant_decide(id, approve, &actor.name()).await?;
        let e = self.event(
            actor,
            "grants.approve",
            &d,
            Evidence {
                activity: if approve {
                    "grant.approve"
                } else {
                    "grant.deny"
                },
                resource: grant_state(&g),
                before: Some(grant_state(&before)),
                after: Some(grant_state(&g)),
            },
            reason,
        );
        self.commit(c, vec![e], g).await
    }

    /// Ends a pending or live grant now.
    pub async fn revoke_grant(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        id: &str,
        reason: &Reason,
    ) -> Result<Recorded<Grant>, ControlError> {
        let d = self.grant_for(actor, tenant, id, reason).await?;
        let mut c = self.store.begin_change().await?;
        let before = c.grant(id).await?;
        let g = c.grant_revoke(id, &actor.name()).await?;
        let e = self.event(
            actor,
            "grants.approve",
            &d,
            Evidence {
                activity: "grant.revoke",
                resource: grant_state(&g),
                before: Some(grant_state(&before)),
                after: Some(grant_state(&g)),
            },
            reason,
        );
        self.commit(c, vec![e], g).await
    }
}
