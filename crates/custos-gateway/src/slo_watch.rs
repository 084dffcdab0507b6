//! slo_watch: the SLOs of `[[release.slo]]`, measured by every gateway on an interval. Their
//! budgets (the numbers that freeze promotion) and burn rates become gauges on /metrics; a
//! multiwindow burn-rate alert that starts or stops is recorded through custos-control as
//! `slo.burn` or `slo.recovered`, once across replicas, and the event relay sends it on.

use crate::state::AppState;
use custos_govern::release::health::BURN_ALERTS;
use std::collections::HashSet;
use std::time::Duration;

/// Starts the watch, when SLOs are configured.
pub fn spawn(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    if state.config.release.slo.is_empty() {
        return None;
    }
    let every = state
        .config
        .release
        .slo_interval
        .map_or(Duration::from_secs(30), |d| d.0);
    Some(tokio::spawn(async move {
        // What fires, as the database says: alerts another gateway (or this one before a
        // restart) started end here when they stop.
        let mut firing: HashSet<(String, String, String)> = loop {
            match state.store.slo_alerts_firing().await {
                Ok(v) => break v.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "slo: cannot read the alerts that fire; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let burns = match state.control.slo_burns().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "slo: cannot measure the SLOs");
                    continue;
                }
            };
            for b in &burns {
                for alert in &BURN_ALERTS {
                    let key = (
                        b.state.tenant.clone(),
                        b.state.name.clone(),
                        alert.severity.to_owned(),
                    );
                    let fires = b.firing.contains(&alert.severity);
                    if fires == firing.contains(&key) {
                        continue;
                    }
                    match state
                        .control
                        .record_slo_alert(b, alert.severity, fires)
                        .await
                    {
                        Ok(recorded) => {
                            if recorded.is_some() {
                                tracing::info!(slo = %b.state.name, tenant = %b.state.tenant,
                                    severity = alert.severity, firing = fires, "slo: burn-rate alert");
                            }
                            if fires {
                                firing.insert(key);
                            } else {
                                firing.remove(&key);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, slo = %b.state.name, "slo: cannot record a burn-rate alert; trying again next time")
                        }
                    }
                }
            }
            state.metrics.set_slos(burns);
        }
    }))
}
