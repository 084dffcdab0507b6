//! A change to custos' state and the ledger event that explains it, in one database
//! transaction: both are written or neither is. `custos-control` opens one per operation.
//!
//! Ledger appends serialize: SQLite by `BEGIN IMMEDIATE` (the database's one write lock),
//! PostgreSQL by a transaction-scoped advisory lock that every ledger writer takes first.

use crate::{Backend, Store, StoreError};
use sqlx::{Any, AnyConnection, Transaction};
use std::ops::Range;

/// The PostgreSQL advisory lock every ledger writer holds until its transaction ends
/// (an arbitrary constant: "custos" in ASCII).
pub(crate) const LEDGER_LOCK: i64 = 0x0000_6375_7374_6f73;

/// An open change: writes made through it and the events it appends commit together.
/// Dropping it without `commit` rolls everything back.
pub struct Change {
    tx: Transaction<'static, Any>,
    backend: Backend,
    appended: Option<Range<u64>>,
}

impl Store {
    /// Opens a change, holding the ledger's write lock until it commits or is dropped.
    pub async fn begin_change(&self) -> Result<Change, StoreError> {
        let tx = match self.backend() {
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool().begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(LEDGER_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        Ok(Change {
            tx,
            backend: self.backend(),
            appended: None,
        })
    }
}

impl Change {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Appends events to the ledger inside this change; returns their indexes.
    pub async fn append_events(&mut self, events: &[String]) -> Result<Range<u64>, StoreError> {
        let backend = self.backend;
        let range = crate::ledger::append_in(&mut self.tx, backend, events).await?;
        self.appended = Some(match self.appended.take() {
            Some(r) => r.start..range.end,
            None => range.clone(),
        });
        Ok(range)
    }

    /// Commits the change and its events; returns the ledger indexes the events got.
    pub async fn commit(self) -> Result<Option<Range<u64>>, StoreError> {
        self.tx.commit().await?;
        Ok(self.appended)
    }
}

/// Named values the control plane keeps between changes (see migration 0012).
impl Change {
    pub async fn state_get(&mut self, name: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT value FROM control_state WHERE name = $1")
                .bind(name)
                .fetch_optional(self.conn())
                .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn state_put(&mut self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO control_state (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(custos_core::time::now_ms())
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
