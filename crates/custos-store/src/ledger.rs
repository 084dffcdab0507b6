//! The ledger's tables: entries (event text + leaf hash), the complete Merkle nodes each
//! append creates, signed checkpoints and prune records. The database refuses UPDATE and
//! DELETE on all of them (triggers), except DELETE of entries below a recorded prune point;
//! verification does not trust that and recomputes everything.

use crate::{Backend, Store, StoreError};
use custos_ledger::{leaf_hash, Frontier, Hash};
use sqlx::Row;
use std::ops::Range;

/// One stored ledger entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub index: i64,
    pub recorded_at: i64,
    pub event: String,
    pub leaf_hash: String,
}

/// A stored complete node of the Merkle tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerNode {
    pub level: i64,
    pub index: i64,
    pub hash: String,
}

/// The next index: past the last entry, or past the prune point when every entry is pruned.
const NEXT_INDEX: &str = "SELECT COALESCE(MAX(n), 0) FROM (SELECT MAX(idx) + 1 AS n FROM ledger_entries UNION ALL SELECT MAX(size) AS n FROM ledger_prunes) AS sizes";

/// Rows per multi-row INSERT: 4 × 250 parameters stays far below SQLite's and PostgreSQL's
/// bind-parameter limits.
const ROWS_PER_INSERT: usize = 250;

/// `prefix ($1, $2, …), ($n+1, …)` for `rows` rows of `width` columns. SQLite gets plain `?`
/// placeholders: its lookup of a numbered parameter's name is linear, which made a
/// 1,000-parameter statement spend most of its time binding (seen in a profile).
fn values_sql(backend: Backend, prefix: &str, width: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * width * 6);
    sql.push_str(prefix);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => sql.push_str(&format!("${}", r * width + c + 1)),
            }
        }
        sql.push(')');
    }
    sql
}

fn parse_hash(hex_text: &str) -> Result<Hash, StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).map_err(|_| {
        StoreError::Invalid(format!(
            "stored ledger hash {hex_text:?} is not 64 hex digits"
        ))
    })?;
    Ok(out)
}

impl Store {
    /// Appends events in one transaction and returns their indexes. Safe across processes:
    /// a writer that loses the race for the next index retries.
    pub async fn ledger_append(&self, events: &[String]) -> Result<Range<u64>, StoreError> {
        let mut attempt = 0u64;
        loop {
            match self.ledger_append_once(events).await {
                Ok(r) => return Ok(r),
                Err(StoreError::Database(_) | StoreError::Conflict(_)) if attempt < 20 => {
                    attempt += 1;
                    let jitter = custos_core::random::next_u64() % 10;
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt + jitter))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn ledger_append_once(&self, events: &[String]) -> Result<Range<u64>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let (next,): (i64,) = sqlx::query_as(NEXT_INDEX).fetch_one(&mut *tx).await?;
        let size =
            u64::try_from(next).map_err(|_| StoreError::Invalid("negative ledger index".into()))?;
        let mut right_edge = Vec::new();
        for (level, index) in Frontier::positions(size) {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT hash FROM ledger_nodes WHERE level = $1 AND idx = $2")
                    .bind(i64::from(level))
                    .bind(index as i64)
                    .fetch_optional(&mut *tx)
                    .await?;
            let hash = row.ok_or_else(|| {
                StoreError::Invalid(format!("the ledger lacks its node at level {level}, index {index}; run `custos audit verify`"))
            })?;
            right_edge.push(parse_hash(&hash.0)?);
        }
        let mut frontier = Frontier::from_nodes(size, right_edge)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let now = custos_core::time::now_ms();
        // Compute every row first, then write them with multi-row INSERTs: one statement per
        // few hundred rows instead of one per row keeps group commit cheap.
        let mut entry_rows: Vec<(i64, String)> = Vec::with_capacity(events.len());
        let mut node_rows: Vec<(i64, i64, String)> = Vec::with_capacity(events.len() * 2);
        for event in events {
            let leaf = leaf_hash(event.as_bytes());
            entry_rows.push((frontier.size() as i64, hex::encode(leaf)));
            for (level, idx, hash) in frontier.append(leaf) {
                node_rows.push((i64::from(level), idx as i64, hex::encode(hash)));
            }
        }
        for (chunk, events) in entry_rows
            .chunks(ROWS_PER_INSERT)
            .zip(events.chunks(ROWS_PER_INSERT))
        {
            let sql = values_sql(
                self.backend(),
                "INSERT INTO ledger_entries (idx, recorded_at, event, leaf_hash) VALUES ",
                4,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for ((index, leaf), event) in chunk.iter().zip(events) {
                q = q.bind(*index).bind(now).bind(event).bind(leaf);
            }
            q.execute(&mut *tx).await.map_err(|e| {
                StoreError::conflict_as(e, || format!("ledger entries from {}", chunk[0].0))
            })?;
        }
        for chunk in node_rows.chunks(ROWS_PER_INSERT) {
            let sql = values_sql(
                self.backend(),
                "INSERT INTO ledger_nodes (level, idx, hash) VALUES ",
                3,
                chunk.len(),
            );
            let mut q = sqlx::query(&sql);
            for (level, idx, hash) in chunk {
                q = q.bind(*level).bind(*idx).bind(hash);
            }
            q.execute(&mut *tx)
                .await
                .map_err(|e| StoreError::conflict_as(e, || "ledger nodes".into()))?;
        }
        tx.commit().await?;
        Ok(size..frontier.size())
    }

    /// Entries from index `from`, at most `limit`, in index order.
    pub async fn ledger_entries(
        &self,
        from: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT idx, recorded_at, event, leaf_hash FROM ledger_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(from)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LedgerEntry {
                    index: r.try_get("idx")?,
                    recorded_at: r.try_get("recorded_at")?,
                    event: r.try_get("event")?,
                    leaf_hash: r.try_get("leaf_hash")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Every stored node, ordered by level then index.
    pub async fn ledger_nodes(&self) -> Result<Vec<LedgerNode>, StoreError> {
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|(level, index, hash)| LedgerNode { level, index, hash })
            .collect())
    }

    /// The latest prune: (prune point, signed checkpoint at it). Entries below it are gone.
    pub async fn ledger_latest_prune(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM ledger_prunes ORDER BY size DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(s, n)| (u64::try_from(s).unwrap_or(0), n)))
    }

    /// Removes the entries below `size`, recording the signed checkpoint at `size` and the
    /// exports that hold them, in one transaction; returns how many rows went. Nodes stay:
    /// they are hashes only, and the remainder's verification needs them.
    pub async fn ledger_prune(
        &self,
        size: u64,
        note: &str,
        exports: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO ledger_prunes (size, note, exports, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(size as i64)
        .bind(note)
        .bind(exports)
        .bind(custos_core::time::now_ms())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_as(e, || format!("a prune at size {size}")))?;
        let done = sqlx::query("DELETE FROM ledger_entries WHERE idx < $1")
            .bind(size as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// The first index at or after `from` whose entry was recorded at or after `time_ms`
    /// (the end when none is). Appends commit in index order, so recorded times ascend and
    /// a binary search over the primary key finds it in O(log n) point reads, without an
    /// index that every append would pay for.
    pub async fn ledger_index_at_time(&self, from: u64, time_ms: i64) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = (from, self.ledger_size().await?);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at: Option<(i64,)> =
                sqlx::query_as("SELECT recorded_at FROM ledger_entries WHERE idx = $1")
                    .bind(mid as i64)
                    .fetch_optional(self.pool())
                    .await?;
            match at {
                Some((t,)) if t < time_ms => lo = mid + 1,
                Some(_) => hi = mid,
                // A hole (only below a prune point): search above it.
                None => lo = mid + 1,
            }
        }
        Ok(lo)
    }

    /// The number of entries ever appended (pruned ones included).
    pub async fn ledger_size(&self) -> Result<u64, StoreError> {
        let (next,): (i64,) = sqlx::query_as(NEXT_INDEX).fetch_one(self.pool()).await?;
        Ok(u64::try_from(next).unwrap_or(0))
    }

    /// The stored nodes at these positions (absent ones are simply missing from the map).
    pub async fn ledger_nodes_at(
        &self,
        positions: &[(u32, u64)],
    ) -> Result<custos_ledger::NodeMap, StoreError> {
        let mut map = custos_ledger::NodeMap::default();
        for &(level, index) in positions {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT hash FROM ledger_nodes WHERE level = $1 AND idx = $2")
                    .bind(i64::from(level))
                    .bind(index as i64)
                    .fetch_optional(self.pool())
                    .await?;
            if let Some((hash,)) = row {
                map.0.insert((level, index), parse_hash(&hash)?);
            }
        }
        Ok(map)
    }

    /// The newest checkpoint (size, note), if any.
    pub async fn ledger_latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(s, n)| (u64::try_from(s).unwrap_or(0), n)))
    }

    /// Records a signed checkpoint note for a tree size.
    pub async fn ledger_add_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO ledger_checkpoints (size, note, created_at) VALUES ($1, $2, $3)")
            .bind(size as i64)
            .bind(note)
            .bind(custos_core::time::now_ms())
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::conflict_as(e, || format!("a checkpoint for size {size}")))?;
        Ok(())
    }

    /// Every checkpoint (size, note), oldest first.
    pub async fn ledger_checkpoints(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT size, note FROM ledger_checkpoints ORDER BY size")
                .fetch_all(self.pool())
                .await?,
        )
    }
}
