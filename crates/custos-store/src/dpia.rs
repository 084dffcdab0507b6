//! Data protection impact assessments: required by a trigger (recorded once per trigger),
//! drafted with the assessment's text, approved. Written only through a `Change`.

use crate::{Change, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A DPIA: `required` until its text is attached (`drafted`), then `approved`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dpia {
    pub id: String,
    pub tenant: String,
    /// `pii-dataset`, `high-release-pii`, `cross-border`, `pii-entity`, or `manual`.
    pub trigger_kind: String,
    /// What the trigger saw, once: e.g. `dataset:support@2026-11`, `release:rel_…`.
    pub trigger_key: String,
    /// What the assessment is about, for people.
    pub subject: String,
    pub release_id: Option<String>,
    /// The trigger's facts (JSON).
    pub details: String,
    pub state: String,
    pub document: Option<String>,
    pub document_sha256: Option<String>,
    pub author: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    pub required_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, tenant, trigger_kind, trigger_key, subject, release_id, details, state, \
    document, document_sha256, author, approved_by, approved_at, required_at, updated_at";

fn row(r: &AnyRow) -> Result<Dpia, StoreError> {
    Ok(Dpia {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        trigger_kind: r.try_get("trigger_kind")?,
        trigger_key: r.try_get("trigger_key")?,
        subject: r.try_get("subject")?,
        release_id: r.try_get("release_id")?,
        details: r.try_get("details")?,
        state: r.try_get("state")?,
        document: r.try_get("document")?,
        document_sha256: r.try_get("document_sha256")?,
        author: r.try_get("author")?,
        approved_by: r.try_get("approved_by")?,
        approved_at: r.try_get("approved_at")?,
        required_at: r.try_get("required_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    /// DPIAs, newest first.
    pub async fn dpias(&self) -> Result<Vec<Dpia>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dpias ORDER BY required_at DESC, id DESC"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row).collect()
    }

    pub async fn dpia(&self, id: &str) -> Result<Dpia, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM dpias WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        r.as_ref()
            .map(row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("DPIA {id:?}")))
    }
}

impl Change {
    pub async fn dpia_get(&mut self, id: &str) -> Result<Option<Dpia>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM dpias WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        r.as_ref().map(row).transpose()
    }

    pub async fn dpia_by_trigger(&mut self, key: &str) -> Result<Option<Dpia>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dpias WHERE trigger_key = $1"
        ))
        .bind(key)
        .fetch_optional(self.conn())
        .await?;
        r.as_ref().map(row).transpose()
    }

    /// The DPIAs a release waits on: those of the release not yet approved.
    pub async fn dpias_open_for_release(&mut self, release: &str) -> Result<Vec<Dpia>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM dpias WHERE release_id = $1 AND state <> 'approved' ORDER BY id"
        ))
        .bind(release)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(row).collect()
    }

    pub async fn dpia_insert(&mut self, d: &Dpia) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO dpias ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&d.id)
        .bind(&d.tenant)
        .bind(&d.trigger_kind)
        .bind(&d.trigger_key)
        .bind(&d.subject)
        .bind(&d.release_id)
        .bind(&d.details)
        .bind(&d.state)
        .bind(&d.document)
        .bind(&d.document_sha256)
        .bind(&d.author)
        .bind(&d.approved_by)
        .bind(d.approved_at)
        .bind(d.required_at)
        .bind(d.updated_at)
        .execute(self.conn())
        .await
        .map_err(|x| StoreError::conflict_as(x, || format!("a DPIA for {}", d.trigger_key)))?;
        Ok(())
    }

    /// Writes a DPIA's new state, text and approval if its state is still `expected`.
    pub async fn dpia_update(&mut self, d: &Dpia, expected: &str) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE dpias SET state = $2, document = $3, document_sha256 = $4, author = $5, \
             approved_by = $6, approved_at = $7, updated_at = $8 WHERE id = $1 AND state = $9",
        )
        .bind(&d.id)
        .bind(&d.state)
        .bind(&d.document)
        .bind(&d.document_sha256)
        .bind(&d.author)
        .bind(&d.approved_by)
        .bind(d.approved_at)
        .bind(d.updated_at)
        .bind(expected)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "DPIA {} changed meanwhile (it is no longer {expected})",
                d.id
            )));
        }
        Ok(())
    }
}
