//! The event relay: the ledger is the outbox. For each webhook one task follows the ledger
//! from the receiver's cursor, sends the events its `types` select as CloudEvents, and moves
//! the cursor on; a lease in the database lets one replica at a time do it, and a receiver
//! that was down gets what it missed, in order, when it answers again.

use crate::webhook::{Outcome, Webhooks};
use bytes::Bytes;
use custos_control::export::{activity, CloudEvent};
use custos_core::time::now_ms;
use custos_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often a caught-up relay looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// Ledger entries read at a time.
const PAGE: i64 = 500;
/// The longest wait between tries of an event a receiver did not take.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One relay per process; `holder` names the process in the cursors' leases.
pub struct Relay {
    store: Store,
    hooks: Arc<Webhooks>,
    source: String,
    holder: String,
    /// How long a claim on a receiver lasts unless renewed (`[events] failover`).
    lease: Duration,
}

impl Relay {
    pub fn new(
        store: Store,
        hooks: Arc<Webhooks>,
        config: &custos_core::config::EventsConfig,
    ) -> Self {
        Self {
            store,
            hooks,
            source: config.source.clone(),
            holder: custos_core::id::new_id("relay"),
            lease: config.failover.0.max(Duration::from_millis(300)),
        }
    }

    /// One task per receiver. A receiver seen for the first time starts at `start` (the
    /// ledger's size when the gateway started): it gets what happens from then on.
    pub fn spawn(self, start: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let this = Arc::new(self);
        (0..this.hooks.len())
            .map(|i| {
                let this = this.clone();
                tokio::spawn(async move { this.follow(i, start).await })
            })
            .collect()
    }

    async fn claim(&self, name: &str, start: u64) -> Option<u64> {
        let now = now_ms();
        let until = now + self.lease.as_millis() as i64;
        match self
            .store
            .event_cursor_claim(name, &self.holder, now, until, start)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(receiver = %name, error = %e, "events: cannot read the receiver's cursor; retrying");
                None
            }
        }
    }

    async fn follow(&self, i: usize, start: u64) {
        let r = &self.hooks.receivers()[i];
        let name = r.url.to_string();
        // The claim is renewed when a third of the lease has passed, not on every look
        // for new events.
        let mut held: Option<(u64, std::time::Instant)> = None;
        loop {
            let next = match held {
                Some((next, at)) if at.elapsed() < self.lease / 3 => next,
                _ => {
                    let Some(next) = self.claim(&name, start).await else {
                        // Another replica delivers to this receiver (or the database is away).
                        held = None;
                        tokio::time::sleep(self.lease / 3).await;
                        continue;
                    };
                    held = Some((next, std::time::Instant::now()));
                    next
                }
            };
            let page = match self.store.ledger_entries(next as i64, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "events: cannot read the ledger; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(last) = page.last().map(|e| e.index as u64) else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            // Whatever happens below, the next round reads the cursor afresh.
            held = None;
            let mut whole = true;
            for e in &page {
                if !r.might_want(&e.event) {
                    continue;
                }
                let mut event: serde_json::Value = match serde_json::from_str(&e.event) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if !r.wants(activity(&event)) {
                    continue;
                }
                if r.reveal {
                    if let Err(err) =
                        custos_control::seal::reveal(&self.store, std::slice::from_mut(&mut event))
                            .await
                    {
                        tracing::warn!(error = %err, "events: cannot reveal sealed identifiers; sending them sealed");
                    }
                }
                let ce = CloudEvent::from_ledger(e.index as u64, event);
                let body = Bytes::from(ce.to_json(&self.source).to_string());
                let Some(delivered) = self.send(r, &name, start, &ce, body).await else {
                    whole = false;
                    break;
                };
                // Each delivered event moves the cursor, so a crash repeats at most one.
                let (d, x) = if delivered { (1, 0) } else { (0, 1) };
                if !self.advance(&name, e.index as u64 + 1, d, x).await {
                    whole = false;
                    break;
                }
            }
            if whole {
                self.advance(&name, last + 1, 0, 0).await;
            }
        }
    }

    /// Tries until the receiver takes the event (`Some(true)`) or refuses it for good
    /// (`Some(false)`); `None` when this process lost the receiver's lease meanwhile.
    async fn send(
        &self,
        r: &crate::webhook::Receiver,
        name: &str,
        start: u64,
        ce: &CloudEvent,
        body: Bytes,
    ) -> Option<bool> {
        let mut wait = Duration::from_secs(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.hooks.send(r, &ce.id, body.clone()).await {
                Outcome::Delivered => return Some(true),
                Outcome::Refused(why) => {
                    tracing::error!(receiver = %name, event = %ce.id, error = %why, "events: the receiver refused an event; skipping it");
                    return Some(false);
                }
                Outcome::Failed(why) => {
                    tracing::warn!(receiver = %name, event = %ce.id, error = %why, attempt, "events: delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                    // Renew the lease; if another process took the receiver over, it sends
                    // from the cursor and this one stops.
                    self.claim(name, start).await?;
                }
            }
        }
    }

    async fn advance(&self, name: &str, next: u64, delivered: u64, dropped: u64) -> bool {
        match self
            .store
            .event_cursor_advance(name, &self.holder, next, delivered, dropped, now_ms())
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(receiver = %name, error = %e, "events: cannot move the receiver's cursor; the events may be sent again");
                false
            }
        }
    }
}
