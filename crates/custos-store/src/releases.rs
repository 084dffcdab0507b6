//! Composite releases and the decisions of their approvers. Written only through a `Change`;
//! state moves are compare-and-set on the state read, so two deciders cannot both move it.

use crate::{Change, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A release as stored; `composite`, `reasons` and `evidence` are JSON the governance crate
/// defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub id: String,
    pub tenant: String,
    pub app: String,
    pub state: String,
    pub tier: String,
    pub derived_tier: String,
    pub reasons: String,
    pub composite: String,
    pub evidence: String,
    pub author: String,
    pub why: Option<String>,
    pub ticket: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One approver role's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseDecision {
    pub release_id: String,
    pub role: String,
    /// `approve` or `deny`.
    pub decision: String,
    pub by_whom: String,
    pub why: Option<String>,
    pub at: i64,
    pub ledger_index: i64,
}

const COLUMNS: &str = "id, tenant, app, state, tier, derived_tier, reasons, composite, evidence, author, why, ticket, created_at, updated_at";

fn release_row(r: &AnyRow) -> Result<Release, StoreError> {
    Ok(Release {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        app: r.try_get("app")?,
        state: r.try_get("state")?,
        tier: r.try_get("tier")?,
        derived_tier: r.try_get("derived_tier")?,
        reasons: r.try_get("reasons")?,
        composite: r.try_get("composite")?,
        evidence: r.try_get("evidence")?,
        author: r.try_get("author")?,
        why: r.try_get("why")?,
        ticket: r.try_get("ticket")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn decision_row(r: &AnyRow) -> Result<ReleaseDecision, StoreError> {
    Ok(ReleaseDecision {
        release_id: r.try_get("release_id")?,
        role: r.try_get("role")?,
        decision: r.try_get("decision")?,
        by_whom: r.try_get("by_whom")?,
        why: r.try_get("why")?,
        at: r.try_get("at")?,
        ledger_index: r.try_get("ledger_index")?,
    })
}

impl Store {
    pub async fn release(&self, id: &str) -> Result<Release, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM releases WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(release_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("release {id:?}")))
    }

    /// A tenant's releases (of one app, or all), newest first.
    pub async fn releases(
        &self,
        tenant: &str,
        app: Option<&str>,
    ) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM releases WHERE tenant = $1 AND ($2 = '' OR app = $2)
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(tenant)
        .bind(app.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(release_row).collect()
    }

    pub async fn release_decisions(&self, id: &str) -> Result<Vec<ReleaseDecision>, StoreError> {
        let rows = sqlx::query(
            "SELECT release_id, role, decision, by_whom, why, at, ledger_index FROM release_decisions
             WHERE release_id = $1 ORDER BY at, role",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decision_row).collect()
    }
}

impl Change {
    pub async fn release_get(&mut self, id: &str) -> Result<Option<Release>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM releases WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(release_row).transpose()
    }

    /// The app's newest release in one of `states`, as this change sees it.
    pub async fn release_latest(
        &mut self,
        tenant: &str,
        app: &str,
        states: &[&str],
    ) -> Result<Option<Release>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM releases WHERE tenant = $1 AND app = $2 ORDER BY created_at DESC, id DESC"
        ))
        .bind(tenant)
        .bind(app)
        .fetch_all(self.conn())
        .await?;
        for r in &rows {
            let rel = release_row(r)?;
            if states.contains(&rel.state.as_str()) {
                return Ok(Some(rel));
            }
        }
        Ok(None)
    }

    pub async fn release_decisions_in(
        &mut self,
        id: &str,
    ) -> Result<Vec<ReleaseDecision>, StoreError> {
        let rows = sqlx::query(
            "SELECT release_id, role, decision, by_whom, why, at, ledger_index FROM release_decisions
             WHERE release_id = $1 ORDER BY at, role",
        )
        .bind(id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(decision_row).collect()
    }

    pub async fn release_insert(&mut self, r: &Release) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO releases ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(&r.id)
        .bind(&r.tenant)
        .bind(&r.app)
        .bind(&r.state)
        .bind(&r.tier)
        .bind(&r.derived_tier)
        .bind(&r.reasons)
        .bind(&r.composite)
        .bind(&r.evidence)
        .bind(&r.author)
        .bind(&r.why)
        .bind(&r.ticket)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(self.conn())
        .await
        .map_err(|e| StoreError::conflict_as(e, || format!("release {}", r.id)))?;
        Ok(())
    }

    /// Writes a release's state and evidence, if its state is still `expected`.
    pub async fn release_update(&mut self, r: &Release, expected: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE releases SET state = $2, evidence = $3, updated_at = $4 WHERE id = $1 AND state = $5",
        )
        .bind(&r.id)
        .bind(&r.state)
        .bind(&r.evidence)
        .bind(r.updated_at)
        .bind(expected)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!(
                "release {} changed meanwhile; try again",
                r.id
            )));
        }
        Ok(())
    }

    pub async fn release_decision_insert(&mut self, d: &ReleaseDecision) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO release_decisions (release_id, role, decision, by_whom, why, at, ledger_index)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&d.release_id)
        .bind(&d.role)
        .bind(&d.decision)
        .bind(&d.by_whom)
        .bind(&d.why)
        .bind(d.at)
        .bind(d.ledger_index)
        .execute(self.conn())
        .await
        .map_err(|e| StoreError::conflict_as(e, || format!("a {} decision on release {}", d.role, d.release_id)))?;
        Ok(())
    }
}

impl Store {
    /// Every active release (one per app at most), for the gateway's alias table.
    pub async fn releases_active(&self) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM releases WHERE state = 'active' ORDER BY tenant, app"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(release_row).collect()
    }

    /// Emergency releases that went live (active, superseded or rolled back since), oldest
    /// first: the ones whose post-hoc follow-up may be due.
    pub async fn releases_emergency_live(&self) -> Result<Vec<Release>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM releases WHERE tier = 'emergency'
             AND state IN ('active', 'superseded', 'rolled back') ORDER BY created_at"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(release_row).collect()
    }
}

impl Change {
    /// Marks the app's active release (other than `except`) superseded; returns its id.
    pub async fn release_supersede(
        &mut self,
        tenant: &str,
        app: &str,
        except: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM releases WHERE tenant = $1 AND app = $2 AND state = 'active' AND id <> $3",
        )
        .bind(tenant)
        .bind(app)
        .bind(except)
        .fetch_optional(self.conn())
        .await?;
        if let Some((id,)) = &row {
            sqlx::query("UPDATE releases SET state = 'superseded', updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(self.conn())
                .await?;
        }
        Ok(row.map(|r| r.0))
    }
}

impl Change {
    /// Moves a release from `expected` to `state` (compare-and-set).
    pub async fn release_set_state(
        &mut self,
        id: &str,
        expected: &str,
        state: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE releases SET state = $2, updated_at = $3 WHERE id = $1 AND state = $4",
        )
        .bind(id)
        .bind(state)
        .bind(now)
        .bind(expected)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!(
                "release {id} changed meanwhile; try again"
            )));
        }
        Ok(())
    }
}
