//! Event receivers' cursors over the ledger: the ledger is the outbox, and each receiver's
//! row says which index it gets next and which process delivers to it, by a lease, so that
//! replicas sharing one database deliver each event once in the normal case and a receiver
//! that was down catches up from where it stopped.

use crate::{Store, StoreError};
use sqlx::Row;

/// One receiver's progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventCursor {
    pub receiver: String,
    /// The ledger index it gets next.
    pub next_index: u64,
    pub holder: String,
    /// Unix ms the holder's lease runs to.
    pub lease_until: i64,
    pub delivered: u64,
    /// Events a receiver refused for good (a 4xx other than 408 and 429), skipped.
    pub dropped: u64,
    pub updated_at: i64,
}

impl Store {
    /// Takes or renews `holder`'s lease on `receiver` until `until` and returns the index to
    /// deliver next; `None` while another holder's lease runs. A receiver seen for the first
    /// time starts at `start` (new receivers get what happens from now on, not the history).
    pub async fn event_cursor_claim(
        &self,
        receiver: &str,
        holder: &str,
        now: i64,
        until: i64,
        start: u64,
    ) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "INSERT INTO event_cursors (receiver, next_idx, holder, lease_until, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (receiver) DO UPDATE SET holder = excluded.holder,
                 lease_until = excluded.lease_until, updated_at = excluded.updated_at
             WHERE event_cursors.holder = excluded.holder OR event_cursors.lease_until < excluded.updated_at
             RETURNING next_idx",
        )
        .bind(receiver)
        .bind(i64::try_from(start).unwrap_or(i64::MAX))
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some(u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0))),
            None => Ok(None),
        }
    }

    /// Moves `receiver`'s cursor to `next` after `delivered` events were accepted and
    /// `dropped` refused for good; false (and nothing changed) when `holder` no longer holds
    /// the lease, so a process that lost it never moves the cursor back.
    pub async fn event_cursor_advance(
        &self,
        receiver: &str,
        holder: &str,
        next: u64,
        delivered: u64,
        dropped: u64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE event_cursors SET next_idx = $1, delivered = delivered + $2,
                 dropped = dropped + $3, updated_at = $4
             WHERE receiver = $5 AND holder = $6 AND next_idx <= $1",
        )
        .bind(i64::try_from(next).unwrap_or(i64::MAX))
        .bind(i64::try_from(delivered).unwrap_or(i64::MAX))
        .bind(i64::try_from(dropped).unwrap_or(i64::MAX))
        .bind(now)
        .bind(receiver)
        .bind(holder)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every receiver's cursor, by name.
    pub async fn event_cursors(&self) -> Result<Vec<EventCursor>, StoreError> {
        let rows = sqlx::query(
            "SELECT receiver, next_idx, holder, lease_until, delivered, dropped, updated_at
             FROM event_cursors ORDER BY receiver",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let n = |i: usize| -> Result<u64, sqlx::Error> {
                    Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or(0))
                };
                Ok(EventCursor {
                    receiver: r.try_get(0)?,
                    next_index: n(1)?,
                    holder: r.try_get(2)?,
                    lease_until: r.try_get(3)?,
                    delivered: n(4)?,
                    dropped: n(5)?,
                    updated_at: r.try_get(6)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
