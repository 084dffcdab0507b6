//! The ledger's tables: entries (event text + leaf hash), the complete Merkle nodes each
//! append creates, signed checkpoints and prune records. The database refuses UPDATE and
//! DELETE on all of them (triggers), except DELETE of entries below a recorded prune point;
//! verification does not trust that and recomputes everything.

use crate::{Backend, Store, StoreError};
use custos_ledger::{leaf_hash, Frontier, Hash, StoredEntry, StoredNode};
use rusqlite::OptionalExtension;
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
pub(crate) fn values_sql(backend: Backend, prefix: &str, width: usize, rows: usize) -> String {
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

/// The key a node is stored under: the last entry it covers. Nodes an append creates then
/// sort after every stored one, so a commit writes to the end of one B-tree.
fn last_leaf(level: u32, index: u64) -> Result<i64, StoreError> {
    index
        .checked_add(1)
        .and_then(|n| n.checked_shl(level).filter(|s| s >> level == n))
        .and_then(|n| i64::try_from(n - 1).ok())
        .ok_or_else(|| {
            StoreError::Invalid(format!("no ledger node at level {level}, index {index}"))
        })
}

/// The (level, index) of the node stored under (`last_leaf`, `level`); an index of -1 when no
/// node can have that key (only tampering writes one), so that verification reports it.
fn node_position(last_leaf: i64, level: i64) -> (i64, i64) {
    let index = u32::try_from(level).ok().filter(|l| *l < 63).and_then(|l| {
        let covered = u64::try_from(last_leaf).ok()?.checked_add(1)?;
        let count = i64::try_from(covered >> l).ok()?;
        (covered.trailing_zeros() >= l).then_some(count - 1)
    });
    (level, index.unwrap_or(-1))
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

/// A column as text, whatever SQLite holds there. Text that is not UTF-8, or a value of
/// another type, can only come from tampering; decoding it lossily keeps it visible as a hash
/// mismatch instead of stopping the scan.
fn text_at<'r>(
    row: &'r rusqlite::Row<'_>,
    i: usize,
) -> Result<std::borrow::Cow<'r, str>, StoreError> {
    use rusqlite::types::ValueRef;
    Ok(match row.get_ref(i)? {
        ValueRef::Text(b) | ValueRef::Blob(b) => match std::str::from_utf8(b) {
            Ok(t) => t.into(),
            Err(_) => String::from_utf8_lossy(b),
        },
        ValueRef::Null => "".into(),
        ValueRef::Integer(n) => n.to_string().into(),
        ValueRef::Real(x) => x.to_string().into(),
    })
}

/// Stored (last_leaf, level, hash) rows as nodes, ordered by level then index.
fn nodes_in_level_order(rows: Vec<(i64, i64, String)>) -> Vec<LedgerNode> {
    let mut nodes: Vec<LedgerNode> = rows
        .into_iter()
        .map(|(last, level, hash)| {
            let (level, index) = node_position(last, level);
            LedgerNode { level, index, hash }
        })
        .collect();
    nodes.sort_by_key(|n| (n.level, n.index));
    nodes
}

/// One stored node by its key: (last_leaf, level).
const NODE_AT: &str = "SELECT hash FROM ledger_nodes WHERE last_leaf = ?1 AND level = ?2";
const NODE_AT_PG: &str = "SELECT hash FROM ledger_nodes WHERE last_leaf = $1 AND level = $2";

pub(crate) type WriterSlot = std::sync::Mutex<Option<rusqlite::Connection>>;

/// Appends on SQLite through one long-lived rusqlite connection with cached prepared
/// statements: sqlx's per-value conversions and cross-thread hand-offs held group commit to
/// about 40,000 events/s; this path does the same SQL in one blocking call per batch.
/// `BEGIN IMMEDIATE` takes the write lock up front, so writers in other processes queue on
/// the busy timeout instead of failing halfway.
fn sqlite_append(
    file: &std::path::Path,
    slot: &WriterSlot,
    events: &[String],
) -> Result<Range<u64>, StoreError> {
    with_writer_conn(file, slot, |conn| sqlite_append_tx(conn, events))
}

/// Runs `f` on a long-lived writer connection (the ledger's or the usage writer's), opening
/// it on first use.
pub(crate) fn with_writer_conn<T>(
    file: &std::path::Path,
    slot: &WriterSlot,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut guard = slot
        .lock()
        .map_err(|_| StoreError::Invalid("the ledger writer lock is poisoned".into()))?;
    let mut conn = match guard.take() {
        Some(conn) => conn,
        None => {
            let conn = rusqlite::Connection::open(file)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY;",
            )?;
            conn
        }
    };
    let result = f(&mut conn);
    // A connection that failed is dropped rather than reused.
    if result.is_ok() {
        *guard = Some(conn);
    }
    result
}

fn sqlite_append_tx(
    conn: &mut rusqlite::Connection,
    events: &[String],
) -> Result<Range<u64>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let next: i64 = tx.prepare_cached(NEXT_INDEX)?.query_row([], |r| r.get(0))?;
    let size =
        u64::try_from(next).map_err(|_| StoreError::Invalid("negative ledger index".into()))?;
    let mut right_edge = Vec::new();
    {
        let mut node = tx.prepare_cached(NODE_AT)?;
        for (level, index) in Frontier::positions(size) {
            let hash: Option<String> = node
                .query_row((last_leaf(level, index)?, i64::from(level)), |r| r.get(0))
                .optional()?;
            let hash = hash.ok_or_else(|| {
                StoreError::Invalid(format!("the ledger lacks its node at level {level}, index {index}; run `custos audit verify`"))
            })?;
            right_edge.push(parse_hash(&hash)?);
        }
    }
    let mut frontier =
        Frontier::from_nodes(size, right_edge).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let now = custos_core::time::now_ms();
    {
        let mut entry = tx.prepare_cached(
            "INSERT INTO ledger_entries (idx, recorded_at, event, leaf_hash) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut node = tx.prepare_cached(
            "INSERT INTO ledger_nodes (last_leaf, level, hash) VALUES (?1, ?2, ?3)",
        )?;
        let mut hex_buf = [0u8; 64];
        for event in events {
            let leaf = leaf_hash(event.as_bytes());
            let index = frontier.size() as i64;
            entry.execute((index, now, event, hex_str(&leaf, &mut hex_buf)))?;
            for (level, idx, hash) in frontier.append(leaf) {
                node.execute((
                    last_leaf(level, idx)?,
                    i64::from(level),
                    hex_str(&hash, &mut hex_buf),
                ))?;
            }
        }
    }
    tx.commit()?;
    Ok(size..frontier.size())
}

fn hex_str<'b>(h: &Hash, buf: &'b mut [u8; 64]) -> &'b str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in h.iter().enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(buf).unwrap_or_default()
}

fn read_only(file: &std::path::Path) -> Result<rusqlite::Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // No mmap: mapping the file made a 1M-entry verify ~0.5 s faster but showed the whole
    // file (~1 GB) in the process's resident memory.
    Ok(conn)
}

impl Store {
    /// Appends events in one transaction and returns their indexes. Safe across processes:
    /// a writer that loses the race for the next index retries.
    pub async fn ledger_append(&self, events: &[String]) -> Result<Range<u64>, StoreError> {
        let mut attempt = 0u64;
        loop {
            match self.ledger_append_once(events).await {
                Ok(r) => return Ok(r),
                Err(StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Conflict(_))
                    if attempt < 20 =>
                {
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
        if let Some(file) = &self.sqlite_file {
            let (file, slot, events) = (file.clone(), self.ledger_writer.clone(), events.to_vec());
            return tokio::task::spawn_blocking(move || sqlite_append(&file, &slot, &events))
                .await
                .map_err(|e| {
                    StoreError::Invalid(format!("the ledger writer thread failed: {e}"))
                })?;
        }
        let mut change = self.begin_change().await?;
        let range = change.append_events(events).await?;
        change.commit().await?;
        Ok(range)
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

    /// Calls `f` with every entry from index `from` on, in index order, from one consistent
    /// snapshot. On SQLite this reads through its own read-only connection: sqlx hands rows
    /// over one at a time across threads, which made verifying a million entries take 25 s.
    /// The scan blocks its thread while it runs; it is for batch work (verify, export), never
    /// the gateway's request path.
    pub async fn ledger_scan_entries(
        &self,
        from: i64,
        f: &mut (dyn FnMut(&StoredEntry<'_>) + Send),
    ) -> Result<(), StoreError> {
        if let Some(file) = &self.sqlite_file {
            let conn = read_only(file)?;
            let mut stmt = conn.prepare(
                "SELECT idx, event, leaf_hash FROM ledger_entries WHERE idx >= ?1 ORDER BY idx",
            )?;
            let mut rows = stmt.query([from])?;
            while let Some(row) = rows.next()? {
                let event = text_at(row, 1)?;
                let leaf = text_at(row, 2)?;
                f(&StoredEntry {
                    index: row.get(0)?,
                    event: &event,
                    leaf_hash: &leaf,
                });
            }
            return Ok(());
        }
        let mut next = from;
        loop {
            let page = self.ledger_entries(next, 10_000).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            next = last.index + 1;
            for e in &page {
                f(&StoredEntry {
                    index: e.index,
                    event: &e.event,
                    leaf_hash: &e.leaf_hash,
                });
            }
        }
    }

    /// Calls `f` with every stored node in the order appends wrote them (by the last entry
    /// each covers, then level), so each level's nodes come in index order; the same SQLite
    /// fast path as `ledger_scan_entries`.
    pub async fn ledger_scan_nodes(
        &self,
        f: &mut (dyn FnMut(&StoredNode<'_>) + Send),
    ) -> Result<(), StoreError> {
        if let Some(file) = &self.sqlite_file {
            let conn = read_only(file)?;
            let mut stmt = conn.prepare(
                "SELECT last_leaf, level, hash FROM ledger_nodes ORDER BY last_leaf, level",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let hash = text_at(row, 2)?;
                let (level, index) = node_position(row.get(0)?, row.get(1)?);
                f(&StoredNode {
                    level,
                    index,
                    hash: &hash,
                });
            }
            return Ok(());
        }
        let mut after = (-1i64, i64::MAX);
        loop {
            let page: Vec<(i64, i64, String)> = sqlx::query_as(
                "SELECT last_leaf, level, hash FROM ledger_nodes WHERE (last_leaf, level) > ($1, $2) ORDER BY last_leaf, level LIMIT 10000",
            )
            .bind(after.0)
            .bind(after.1)
            .fetch_all(self.pool())
            .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = (last.0, last.1);
            for (last, level, hash) in &page {
                let (level, index) = node_position(*last, *level);
                f(&StoredNode { level, index, hash });
            }
        }
    }

    /// The stored nodes wholly below entry `size` (the tree of a pruned prefix).
    pub async fn ledger_nodes_below(&self, size: u64) -> Result<Vec<LedgerNode>, StoreError> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT last_leaf, level, hash FROM ledger_nodes WHERE last_leaf < $1 ORDER BY last_leaf, level",
        )
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await?;
        Ok(nodes_in_level_order(rows))
    }

    /// Every stored node, ordered by level then index.
    pub async fn ledger_nodes(&self) -> Result<Vec<LedgerNode>, StoreError> {
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT last_leaf, level, hash FROM ledger_nodes")
                .fetch_all(self.pool())
                .await?;
        Ok(nodes_in_level_order(rows))
    }

    /// The latest prune: (prune point, signed checkpoint at it). Entries below it are gone.
    pub async fn ledger_latest_prune(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT size, note FROM ledger_prunes ORDER BY size DESC LIMIT 1")
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(s, n)| (u64::try_from(s).unwrap_or(0), n)))
    }

    /// The latest prune record whole: (prune point, signed prune note, exports JSON).
    pub async fn ledger_latest_prune_record(
        &self,
    ) -> Result<Option<(u64, String, String)>, StoreError> {
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT size, note, exports FROM ledger_prunes ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(s, n, e)| (u64::try_from(s).unwrap_or(0), n, e)))
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

    /// The index of the entry recording the gateway call with this X-Request-ID, if any.
    /// Gateway events serialize `"request_id":"…"` compactly; the LIKE narrows, the JSON
    /// check decides.
    pub async fn ledger_find_request(&self, request_id: &str) -> Result<Option<u64>, StoreError> {
        let escaped: String = request_id
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT idx, event FROM ledger_entries WHERE event LIKE $1 ESCAPE '\\' ORDER BY idx",
        )
        .bind(format!("%{escaped}%"))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().find_map(|(idx, event)| {
            let v: serde_json::Value = serde_json::from_str(&event).ok()?;
            (v["request_id"].as_str() == Some(request_id)).then_some(idx as u64)
        }))
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
        if let Some(file) = &self.sqlite_file {
            // Through the ledger's own connection and a cached statement: sqlx's per-query
            // hand-off across threads made an 18-node proof cost ~0.7 ms.
            let (file, slot, positions) =
                (file.clone(), self.ledger_writer.clone(), positions.to_vec());
            return tokio::task::spawn_blocking(move || {
                with_writer_conn(&file, &slot, |conn| {
                    let mut stmt = conn.prepare_cached(NODE_AT)?;
                    for (level, index) in positions {
                        let hash: Option<String> = stmt
                            .query_row((last_leaf(level, index)?, i64::from(level)), |r| r.get(0))
                            .optional()?;
                        if let Some(hash) = hash {
                            map.0.insert((level, index), parse_hash(&hash)?);
                        }
                    }
                    Ok(map)
                })
            })
            .await
            .map_err(|e| StoreError::Invalid(format!("the ledger reader thread failed: {e}")))?;
        }
        for &(level, index) in positions {
            let row: Option<(String,)> = sqlx::query_as(NODE_AT_PG)
                .bind(last_leaf(level, index)?)
                .bind(i64::from(level))
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

/// Appends events inside the caller's transaction, which holds the ledger's write lock
/// (see `change.rs`): the next index read here cannot be taken by another writer meanwhile.
pub(crate) async fn append_in(
    c: &mut sqlx::AnyConnection,
    backend: Backend,
    events: &[String],
) -> Result<Range<u64>, StoreError> {
    let (next,): (i64,) = sqlx::query_as(NEXT_INDEX).fetch_one(&mut *c).await?;
    let size =
        u64::try_from(next).map_err(|_| StoreError::Invalid("negative ledger index".into()))?;
    let mut right_edge = Vec::new();
    for (level, index) in Frontier::positions(size) {
        let row: Option<(String,)> = sqlx::query_as(NODE_AT_PG)
            .bind(last_leaf(level, index)?)
            .bind(i64::from(level))
            .fetch_optional(&mut *c)
            .await?;
        let hash = row.ok_or_else(|| {
            StoreError::Invalid(format!("the ledger lacks its node at level {level}, index {index}; run `custos audit verify`"))
        })?;
        right_edge.push(parse_hash(&hash.0)?);
    }
    let mut frontier =
        Frontier::from_nodes(size, right_edge).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let now = custos_core::time::now_ms();
    // Compute every row first, then write them with multi-row INSERTs: one statement per
    // few hundred rows instead of one per row keeps group commit cheap.
    let mut entry_rows: Vec<(i64, String)> = Vec::with_capacity(events.len());
    let mut node_rows: Vec<(i64, i64, String)> = Vec::with_capacity(events.len() * 2);
    for event in events {
        let leaf = leaf_hash(event.as_bytes());
        entry_rows.push((frontier.size() as i64, hex::encode(leaf)));
        for (level, idx, hash) in frontier.append(leaf) {
            node_rows.push((last_leaf(level, idx)?, i64::from(level), hex::encode(hash)));
        }
    }
    for (chunk, events) in entry_rows
        .chunks(ROWS_PER_INSERT)
        .zip(events.chunks(ROWS_PER_INSERT))
    {
        let sql = values_sql(
            backend,
            "INSERT INTO ledger_entries (idx, recorded_at, event, leaf_hash) VALUES ",
            4,
            chunk.len(),
        );
        let mut q = sqlx::query(&sql);
        for ((index, leaf), event) in chunk.iter().zip(events) {
            q = q.bind(*index).bind(now).bind(event).bind(leaf);
        }
        q.execute(&mut *c).await.map_err(|e| {
            StoreError::conflict_as(e, || format!("ledger entries from {}", chunk[0].0))
        })?;
    }
    for chunk in node_rows.chunks(ROWS_PER_INSERT) {
        let sql = values_sql(
            backend,
            "INSERT INTO ledger_nodes (last_leaf, level, hash) VALUES ",
            3,
            chunk.len(),
        );
        let mut q = sqlx::query(&sql);
        for (last, level, hash) in chunk {
            q = q.bind(*last).bind(*level).bind(hash);
        }
        q.execute(&mut *c)
            .await
            .map_err(|e| StoreError::conflict_as(e, || "ledger nodes".into()))?;
    }
    Ok(size..frontier.size())
}

#[cfg(test)]
mod tests {
    use super::{last_leaf, node_position};

    #[test]
    fn node_keys_round_trip_and_impossible_keys_are_flagged() {
        for level in 0..20u32 {
            for index in [0u64, 1, 2, 7, 1000] {
                let last = last_leaf(level, index).unwrap();
                assert_eq!(
                    node_position(last, i64::from(level)),
                    (i64::from(level), index as i64)
                );
            }
        }
        // Keys only tampering writes: never a panic, an index verification reports.
        for (last, level) in [
            (2, 1),
            (-1, 0),
            (i64::MAX, 0),
            (i64::MAX, 62),
            (5, -3),
            (5, 99),
        ] {
            let (_, index) = node_position(last, level);
            assert!(
                index == -1 || (last == i64::MAX && level == 62),
                "{last}/{level}"
            );
        }
        assert!(last_leaf(63, 1).is_err());
        assert!(last_leaf(0, u64::MAX).is_err());
    }
}
