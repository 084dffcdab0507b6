//! Data lifecycle records: recorded lineage edges, legal holds (placed, released) and erasure
//! requests (open until their receipt). Written only through a `Change`.

use crate::{Change, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A recorded lineage edge: `src` → `dst` (node names like `dataset:NAME@TAG`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineageEdge {
    pub src: String,
    pub dst: String,
    pub job: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// A legal hold on `target`: `dataset:NAME@TAG`, `dataset:NAME`, `location:PREFIX` or
/// `subject:sha256:HEX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub id: String,
    pub target: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: i64,
    pub released_by: Option<String>,
    pub released_at: Option<i64>,
}

/// An erasure request: `open` until its receipt, then `done` (or `partial`: held data kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub id: String,
    pub subject_digest: String,
    pub state: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub due_at: i64,
    pub finished_at: Option<i64>,
    pub receipt_digest: Option<String>,
    /// The receipt's body (JSON), once done.
    pub receipt: Option<String>,
    /// The ledger entry of the `erasure.complete` event.
    pub receipt_index: Option<i64>,
}

fn hold_row(r: &AnyRow) -> Result<Hold, StoreError> {
    Ok(Hold {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        reason: r.try_get("reason")?,
        placed_by: r.try_get("placed_by")?,
        placed_at: r.try_get("placed_at")?,
        released_by: r.try_get("released_by")?,
        released_at: r.try_get("released_at")?,
    })
}

fn erasure_row(r: &AnyRow) -> Result<Erasure, StoreError> {
    Ok(Erasure {
        id: r.try_get("id")?,
        subject_digest: r.try_get("subject_digest")?,
        state: r.try_get("state")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("requested_at")?,
        due_at: r.try_get("due_at")?,
        finished_at: r.try_get("finished_at")?,
        receipt_digest: r.try_get("receipt_digest")?,
        receipt: r.try_get("receipt")?,
        receipt_index: r.try_get("receipt_index")?,
    })
}

const HOLD: &str = "id, target, reason, placed_by, placed_at, released_by, released_at";
const ERASURE: &str =
    "id, subject_digest, state, requested_by, requested_at, due_at, finished_at, \
    receipt_digest, receipt, receipt_index";

impl Store {
    pub async fn lineage_edges(&self) -> Result<Vec<LineageEdge>, StoreError> {
        let rows = sqlx::query(
            "SELECT src, dst, job, created_by, created_at FROM lineage_edges ORDER BY created_at, src, dst",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LineageEdge {
                    src: r.try_get("src")?,
                    dst: r.try_get("dst")?,
                    job: r.try_get("job")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Holds, newest first; with `active`, only those not released.
    pub async fn holds(&self, active: bool) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {HOLD} FROM holds WHERE ($1 = 0 OR released_at IS NULL) ORDER BY placed_at DESC, id DESC"
        ))
        .bind(i32::from(active))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(hold_row).collect()
    }

    pub async fn erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ERASURE} FROM erasures ORDER BY requested_at DESC, id DESC"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(erasure_row).collect()
    }

    pub async fn erasure(&self, id: &str) -> Result<Erasure, StoreError> {
        let row = sqlx::query(&format!("SELECT {ERASURE} FROM erasures WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(erasure_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("erasure {id:?}")))
    }
}

impl Change {
    pub async fn lineage_insert(&mut self, e: &LineageEdge) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO lineage_edges (src, dst, job, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&e.src)
        .bind(&e.dst)
        .bind(&e.job)
        .bind(&e.created_by)
        .bind(e.created_at)
        .execute(self.conn())
        .await
        .map_err(|x| StoreError::conflict_as(x, || format!("the lineage edge {} -> {}", e.src, e.dst)))?;
        Ok(())
    }

    pub async fn hold_insert(&mut self, h: &Hold) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO holds ({HOLD}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&h.id)
        .bind(&h.target)
        .bind(&h.reason)
        .bind(&h.placed_by)
        .bind(h.placed_at)
        .bind(&h.released_by)
        .bind(h.released_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Releases an active hold; the hold as it was.
    pub async fn hold_release(&mut self, id: &str, by: &str, at: i64) -> Result<Hold, StoreError> {
        let row = sqlx::query(&format!("SELECT {HOLD} FROM holds WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        let h = row
            .as_ref()
            .map(hold_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("hold {id:?}")))?;
        let done = sqlx::query(
            "UPDATE holds SET released_by = $2, released_at = $3 WHERE id = $1 AND released_at IS NULL",
        )
        .bind(id)
        .bind(by)
        .bind(at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "hold {id} was already released"
            )));
        }
        Ok(h)
    }

    pub async fn erasure_insert(&mut self, e: &Erasure) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO erasures ({ERASURE}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&e.id)
        .bind(&e.subject_digest)
        .bind(&e.state)
        .bind(&e.requested_by)
        .bind(e.requested_at)
        .bind(e.due_at)
        .bind(e.finished_at)
        .bind(&e.receipt_digest)
        .bind(&e.receipt)
        .bind(e.receipt_index)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Closes an open erasure with its receipt (body, digest, and the ledger entry proved).
    pub async fn erasure_finish(
        &mut self,
        id: &str,
        state: &str,
        at: i64,
        receipt: &str,
        receipt_digest: &str,
        receipt_index: u64,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE erasures SET state = $2, finished_at = $3, receipt_digest = $4, receipt = $5, receipt_index = $6 WHERE id = $1 AND state = 'open'",
        )
        .bind(id)
        .bind(state)
        .bind(at)
        .bind(receipt_digest)
        .bind(receipt)
        .bind(i64::try_from(receipt_index).unwrap_or(i64::MAX))
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("erasure {id} is not open")));
        }
        Ok(())
    }
}

/// A data subject's key for sealed identifiers (see migration 18): found by `lookup`, named in
/// the ledger by `key_id`, `secret` hex.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectKeyRow {
    pub lookup: String,
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for SubjectKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKeyRow")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn key_row(r: &AnyRow) -> Result<SubjectKeyRow, StoreError> {
    Ok(SubjectKeyRow {
        lookup: r.try_get("lookup")?,
        key_id: r.try_get("key_id")?,
        secret: r.try_get("secret")?,
    })
}

/// The most identifiers one query binds (SQLite allows 32766 parameters; PostgreSQL 65535).
const BIND_CHUNK: usize = 500;

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// The subject's key, creating it with `candidate` when it has none yet; concurrent callers
    /// get the same key (the first insert wins).
    pub async fn subject_key_ensure(
        &self,
        candidate: &SubjectKeyRow,
        at: i64,
    ) -> Result<SubjectKeyRow, StoreError> {
        let mut c = self.begin_change().await?;
        let k = c.subject_key_ensure(candidate, at).await?;
        c.commit().await?;
        Ok(k)
    }

    /// The keys with these ids that still exist (a shredded key is simply absent).
    pub async fn subject_keys_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<SubjectKeyRow>, StoreError> {
        self.subject_keys_where("key_id", ids).await
    }

    /// The keys found under these lookups.
    pub async fn subject_keys_by_lookup(
        &self,
        lookups: &[String],
    ) -> Result<Vec<SubjectKeyRow>, StoreError> {
        self.subject_keys_where("lookup", lookups).await
    }

    async fn subject_keys_where(
        &self,
        column: &'static str,
        values: &[String],
    ) -> Result<Vec<SubjectKeyRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in values.chunks(BIND_CHUNK) {
            let sql = format!(
                "SELECT lookup, key_id, secret FROM subject_keys WHERE {column} IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for v in chunk {
                q = q.bind(v);
            }
            for r in q.fetch_all(self.pool()).await? {
                out.push(key_row(&r)?);
            }
        }
        Ok(out)
    }

    /// How many usage records name one of these end users (`exact` ids, or addresses
    /// compared lower-cased).
    pub async fn usage_end_user_count(
        &self,
        exact: &[String],
        lower: &[String],
    ) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for (chunk, lc) in end_user_chunks(exact, lower) {
            let sql = format!(
                "SELECT COUNT(*) AS n FROM usage_records WHERE {}",
                end_user_where(chunk.len(), lc)
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            let row = q.fetch_one(self.pool()).await?;
            n += row.try_get::<i64, _>("n")?.max(0) as u64;
        }
        Ok(n)
    }
}

fn end_user_chunks<'a>(
    exact: &'a [String],
    lower: &'a [String],
) -> impl Iterator<Item = (&'a [String], bool)> {
    exact
        .chunks(BIND_CHUNK)
        .map(|c| (c, false))
        .chain(lower.chunks(BIND_CHUNK).map(|c| (c, true)))
}

fn end_user_where(n: usize, lower: bool) -> String {
    if lower {
        format!("LOWER(end_user) IN ({})", placeholders(1, n))
    } else {
        format!("end_user IN ({})", placeholders(1, n))
    }
}

impl Change {
    /// The subject's key inside this change, creating it when absent (see `subject_key_ensure`).
    pub async fn subject_key_ensure(
        &mut self,
        candidate: &SubjectKeyRow,
        at: i64,
    ) -> Result<SubjectKeyRow, StoreError> {
        sqlx::query(
            "INSERT INTO subject_keys (lookup, key_id, secret, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (lookup) DO NOTHING",
        )
        .bind(&candidate.lookup)
        .bind(&candidate.key_id)
        .bind(&candidate.secret)
        .bind(at)
        .execute(self.conn())
        .await?;
        let row = sqlx::query("SELECT lookup, key_id, secret FROM subject_keys WHERE lookup = $1")
            .bind(&candidate.lookup)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref()
            .map(key_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound("the subject key just written".into()))
    }

    /// Destroys the keys under these lookups (crypto-shredding); returns the ids destroyed.
    pub async fn subject_keys_shred(
        &mut self,
        lookups: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for chunk in lookups.chunks(BIND_CHUNK) {
            let list = placeholders(1, chunk.len());
            let select = format!("SELECT key_id FROM subject_keys WHERE lookup IN ({list})");
            let mut q = sqlx::query_scalar::<_, String>(&select);
            for l in chunk {
                q = q.bind(l);
            }
            ids.extend(q.fetch_all(self.conn()).await?);
            let sql = format!("DELETE FROM subject_keys WHERE lookup IN ({list})");
            let mut d = sqlx::query(&sql);
            for l in chunk {
                d = d.bind(l);
            }
            d.execute(self.conn()).await?;
        }
        ids.sort();
        Ok(ids)
    }

    /// Clears the end-user id of the usage records that name one of these end users (see
    /// `usage_end_user_count`); returns how many records changed (costs and counts stay).
    pub async fn usage_clear_end_user(
        &mut self,
        exact: &[String],
        lower: &[String],
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for (chunk, lc) in end_user_chunks(exact, lower) {
            let sql = format!(
                "UPDATE usage_records SET end_user = NULL WHERE {}",
                end_user_where(chunk.len(), lc)
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            n += q.execute(self.conn()).await?.rows_affected();
        }
        Ok(n)
    }
}

impl Store {
    /// Usage records before `before_ms`, and those of them naming an end user.
    pub async fn usage_before(&self, before_ms: i64) -> Result<(u64, u64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COUNT(end_user) AS u FROM usage_records WHERE at < $1",
        )
        .bind(before_ms)
        .fetch_one(self.pool())
        .await?;
        Ok((
            row.try_get::<i64, _>("n")?.max(0) as u64,
            row.try_get::<i64, _>("u")?.max(0) as u64,
        ))
    }
}

impl Change {
    /// Deletes the usage records before `before_ms`; returns how many.
    pub async fn usage_delete_before(&mut self, before_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM usage_records WHERE at < $1")
            .bind(before_ms)
            .execute(self.conn())
            .await?
            .rows_affected())
    }

    /// Clears the end-user ids of usage records before `before_ms`; returns how many.
    pub async fn usage_clear_end_users_before(
        &mut self,
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE usage_records SET end_user = NULL WHERE at < $1 AND end_user IS NOT NULL",
        )
        .bind(before_ms)
        .execute(self.conn())
        .await?
        .rows_affected())
    }
}
