//! Time-bound grants of a role: just-in-time elevation (requested, then approved or denied by
//! someone else) and break-glass (live at once). A grant is live while it is approved, not
//! revoked, and before `expires_at`; nothing has to run for it to stop.
//!
//! Decisions are compare-and-set on `status = 'pending'`, so two approvers racing cannot both
//! decide, and a decided grant never changes again except by revocation.

use crate::{Store, StoreError};
use custos_core::{id::new_id, time::now_ms};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    /// Requested, and live only once another principal approves it.
    Jit,
    /// Live at once; always alerted and audited.
    BreakGlass,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Jit => "jit",
            GrantKind::BreakGlass => "break_glass",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "jit" => Ok(GrantKind::Jit),
            "break_glass" => Ok(GrantKind::BreakGlass),
            other => Err(StoreError::Invalid(format!("stored grant kind {other:?}"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantStatus {
    Pending,
    Approved,
    Denied,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Approved => "approved",
            GrantStatus::Denied => "denied",
            GrantStatus::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "pending" => Ok(GrantStatus::Pending),
            "approved" => Ok(GrantStatus::Approved),
            "denied" => Ok(GrantStatus::Denied),
            "revoked" => Ok(GrantStatus::Revoked),
            other => Err(StoreError::Invalid(format!(
                "stored grant status {other:?}"
            ))),
        }
    }
}

/// A grant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub tenant: String,
    /// Who holds the role while the grant is live (token subject, key id, SPIFFE ID).
    pub principal: String,
    pub role: String,
    pub kind: GrantKind,
    pub status: GrantStatus,
    pub why: String,
    pub duration_ms: i64,
    pub requested_by: String,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<i64>,
}

impl Grant {
    /// Whether the role is held at `now`.
    pub fn live(&self, now: i64) -> bool {
        self.status == GrantStatus::Approved && self.expires_at.is_some_and(|e| now < e)
    }

    /// `pending`, `live`, `expired`, `denied` or `revoked` at `now`.
    pub fn state(&self, now: i64) -> &'static str {
        match self.status {
            GrantStatus::Approved if self.live(now) => "live",
            GrantStatus::Approved => "expired",
            s => s.as_str(),
        }
    }
}

/// A grant to request (JIT) or open (break-glass).
#[derive(Clone, Debug)]
pub struct NewGrant {
    pub tenant: String,
    pub principal: String,
    pub role: String,
    pub kind: GrantKind,
    pub why: String,
    pub duration_ms: i64,
    pub requested_by: String,
}

const COLUMNS: &str = "id, tenant, principal, role, kind, status, why, duration_ms, requested_by, \
     requested_at, decided_by, decided_at, expires_at, revoked_by, revoked_at";

fn grant(r: &AnyRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        principal: r.try_get("principal")?,
        role: r.try_get("role")?,
        kind: GrantKind::parse(&r.try_get::<String, _>("kind")?)?,
        status: GrantStatus::parse(&r.try_get::<String, _>("status")?)?,
        why: r.try_get("why")?,
        duration_ms: r.try_get("duration_ms")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("requested_at")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_by: r.try_get("revoked_by")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub(crate) async fn grant_in(c: &mut sqlx::AnyConnection, id: &str) -> Result<Grant, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM grants WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *c)
        .await?;
    match row {
        Some(r) => grant(&r),
        None => Err(StoreError::NotFound(format!("grant {id:?}"))),
    }
}

/// Changes to grants, inside a `Change` (with their ledger event).
impl crate::change::Change {
    /// Records a JIT request (pending) or a break-glass grant (approved, live now).
    pub async fn grant_create(&mut self, g: &NewGrant) -> Result<Grant, StoreError> {
        if g.why.trim().is_empty() {
            return Err(StoreError::Invalid("a grant needs a reason (--why)".into()));
        }
        if g.duration_ms <= 0 {
            return Err(StoreError::Invalid(
                "a grant needs a positive duration".into(),
            ));
        }
        let now = now_ms();
        let id = new_id("grant");
        let (status, decided_by, decided_at, expires_at) = match g.kind {
            GrantKind::Jit => (GrantStatus::Pending, None, None, None),
            GrantKind::BreakGlass => (
                GrantStatus::Approved,
                Some(g.requested_by.clone()),
                Some(now),
                Some(now + g.duration_ms),
            ),
        };
        sqlx::query(
            "INSERT INTO grants (id, tenant, principal, role, kind, status, why, duration_ms,
                                 requested_by, requested_at, decided_by, decided_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&id)
        .bind(&g.tenant)
        .bind(&g.principal)
        .bind(&g.role)
        .bind(g.kind.as_str())
        .bind(status.as_str())
        .bind(&g.why)
        .bind(g.duration_ms)
        .bind(&g.requested_by)
        .bind(now)
        .bind(&decided_by)
        .bind(decided_at)
        .bind(expires_at)
        .execute(self.conn())
        .await?;
        grant_in(self.conn(), &id).await
    }

    pub async fn grant(&mut self, id: &str) -> Result<Grant, StoreError> {
        grant_in(self.conn(), id).await
    }

    /// Approves or denies a pending grant. The approver may be neither the requester nor the
    /// grantee. An approved grant runs for its duration from now.
    pub async fn grant_decide(
        &mut self,
        id: &str,
        approve: bool,
        by: &str,
    ) -> Result<Grant, StoreError> {
        let g = grant_in(self.conn(), id).await?;
        if g.status != GrantStatus::Pending {
            return Err(StoreError::Conflict(format!(
                "grant {id} is already {}",
                g.status.as_str()
            )));
        }
        if by == g.requested_by || by == g.principal {
            return Err(StoreError::Invalid(format!(
                "{by} requested grant {id} (or would hold it) and cannot decide it: another principal must"
            )));
        }
        let now = now_ms();
        let (status, expires_at) = if approve {
            (GrantStatus::Approved, Some(now + g.duration_ms))
        } else {
            (GrantStatus::Denied, None)
        };
        let done = sqlx::query(
            "UPDATE grants SET status = $1, decided_by = $2, decided_at = $3, expires_at = $4
             WHERE id = $5 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(by)
        .bind(now)
        .bind(expires_at)
        .bind(id)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "grant {id} was decided by someone else meanwhile"
            )));
        }
        grant_in(self.conn(), id).await
    }

    /// Ends a pending or approved grant now.
    pub async fn grant_revoke(&mut self, id: &str, by: &str) -> Result<Grant, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE grants SET status = 'revoked', revoked_by = $1, revoked_at = $2
             WHERE id = $3 AND status IN ('pending', 'approved')",
        )
        .bind(by)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?;
        let g = grant_in(self.conn(), id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "grant {id} is {} and cannot be revoked",
                g.status.as_str()
            )));
        }
        Ok(g)
    }
}

impl Store {
    pub async fn grant(&self, id: &str) -> Result<Grant, StoreError> {
        grant_in(&mut *self.pool().acquire().await?, id).await
    }

    /// Grants of a tenant (all tenants: `None`), newest first.
    pub async fn grants_list(&self, tenant: Option<&str>) -> Result<Vec<Grant>, StoreError> {
        let order = "ORDER BY requested_at DESC, id DESC";
        let rows = match tenant {
            Some(t) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM grants WHERE tenant = $1 {order}"
                ))
                .bind(t)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {COLUMNS} FROM grants {order}"))
                    .fetch_all(self.pool())
                    .await?
            }
        };
        rows.iter().map(grant).collect()
    }

    /// Grants live at `now`, for the gateway's cache.
    pub async fn grants_live(&self, now: i64) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM grants WHERE status = 'approved' AND expires_at > $1"
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(grant).collect()
    }
}
