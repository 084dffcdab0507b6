//! Refusals before a principal is known (a bad or missing key, a refused token) are counted,
//! not recorded one by one: each window the ledger gets one `auth.refused` event per source
//! address and reason, with the count and the first and last time seen. A flood of bogus
//! keys thus adds a bounded number of entries; every authenticated denial stays one event.

use crate::audit::AuditSink;
use custos_core::time::{format_rfc3339, now_ms};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Distinct (source, reason) pairs kept per window; beyond it, refusals count under the
/// source "other" so memory and ledger growth stay bounded under a spoofed-source flood.
const MAX_SOURCES: usize = 4_096;

/// The peer address of a request's connection, set by the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

#[derive(Debug)]
struct Tally {
    count: u64,
    first_ms: i64,
    last_ms: i64,
}

/// Refusals counted since the last flush.
#[derive(Debug, Default)]
pub struct Refusals {
    window: Mutex<HashMap<(Option<IpAddr>, &'static str), Tally>>,
}

impl Refusals {
    /// Counts one refusal of a caller from `source` for `reason` (a problem slug).
    pub fn note(&self, source: Option<IpAddr>, reason: &'static str) {
        let now = now_ms();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let key = if w.len() >= MAX_SOURCES && !w.contains_key(&(source, reason)) {
            (None, reason)
        } else {
            (source, reason)
        };
        let t = w.entry(key).or_insert(Tally {
            count: 0,
            first_ms: now,
            last_ms: now,
        });
        t.count += 1;
        t.last_ms = now;
    }

    /// Appends one `auth.refused` event per (source, reason) counted since the last flush.
    pub async fn flush(&self, audit: &AuditSink) -> usize {
        let taken = std::mem::take(&mut *self.window.lock().unwrap_or_else(|e| e.into_inner()));
        let n = taken.len();
        let mut rows: Vec<_> = taken.into_iter().collect();
        rows.sort_by_key(|((_, _), t)| t.first_ms);
        for ((source, reason), t) in rows {
            audit
                .append(&serde_json::json!({
                    "schema": 1,
                    "time": format_rfc3339(now_ms()),
                    "activity": "auth.refused",
                    "actor": null,
                    "resources": [{"type": "src_endpoint", "id": source.map_or_else(|| "other".to_owned(), |ip| ip.to_string())}],
                    "src_endpoint": {"ip": source.map_or_else(|| "other".to_owned(), |ip| ip.to_string())},
                    "outcome": "denied",
                    "reason": reason,
                    "count": t.count,
                    "first_seen": format_rfc3339(t.first_ms),
                    "last_seen": format_rfc3339(t.last_ms),
                }))
                .await;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_bounded_by_sources_and_reasons() {
        let r = Refusals::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10_000 {
            r.note(Some(a), "invalid-api-key");
        }
        r.note(Some(a), "missing-api-key");
        for i in 0..(MAX_SOURCES as u32 + 500) {
            r.note(Some(IpAddr::from(i.to_be_bytes())), "invalid-api-key");
        }
        let w = r.window.lock().unwrap();
        assert!(w.len() <= MAX_SOURCES + 1, "{}", w.len());
        assert_eq!(w[&(Some(a), "invalid-api-key")].count, 10_000);
        assert!(w[&(None, "invalid-api-key")].count >= 500);
    }
}
