//! SLO burn-rate alerts that fire: one row per (tenant, SLO, severity), changed only inside
//! the change that records the alert's start or end, so each transition is recorded once
//! however many gateways watch the same SLOs.

use crate::{Change, Store, StoreError};
use sqlx::Row;

impl Store {
    /// The alerts firing now, as (tenant, SLO, severity).
    pub async fn slo_alerts_firing(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, slo, severity FROM slo_alerts WHERE firing = 1 ORDER BY tenant, slo, severity",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

impl Change {
    /// Sets whether an alert fires; true when this changed it (false: it already was so,
    /// another gateway having recorded the transition).
    pub async fn slo_alert_set(
        &mut self,
        tenant: &str,
        slo: &str,
        severity: &str,
        firing: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO slo_alerts (tenant, slo, severity, firing, changed_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, slo, severity) DO UPDATE SET firing = excluded.firing,
                 changed_at = excluded.changed_at
             WHERE slo_alerts.firing <> excluded.firing",
        )
        .bind(tenant)
        .bind(slo)
        .bind(severity)
        .bind(i64::from(firing))
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
