//! The model registry's rows: model versions (their registration, state, signature, card and
//! attestations as JSON text the governance crate defines) and the history of transitions.
//! Writes only through a `Change`, so each lands with its ledger event.

use crate::{Change, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A model version as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    /// `weights` or `remote`.
    pub kind: String,
    pub state: String,
    /// Hex SHA-256 over the manifest's item digests (weights only).
    pub manifest_digest: Option<String>,
    /// The registration record, JSON.
    pub registration: String,
    /// The Sigstore bundle that signs the weights, JSON.
    pub signature: Option<String>,
    /// The hint of the key that signed it.
    pub signer: Option<String>,
    /// The model card's Markdown, its digest and its DSSE signature.
    pub card: Option<String>,
    pub card_digest: Option<String>,
    pub card_signature: Option<String>,
    /// Signed attestations (DSSE envelopes), a JSON array.
    pub attestations: String,
    pub registered_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One transition of a model version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelHistory {
    pub name: String,
    pub version: String,
    pub seq: i64,
    pub at: i64,
    pub activity: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor: String,
    pub why: Option<String>,
    pub ticket: Option<String>,
    /// The ledger entry that records it.
    pub ledger_index: i64,
}

const COLUMNS: &str =
    "name, version, kind, state, manifest_digest, registration, signature, signer, \
     card, card_digest, card_signature, attestations, registered_by, created_at, updated_at";

fn version_row(r: &AnyRow) -> Result<ModelVersion, StoreError> {
    Ok(ModelVersion {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        kind: r.try_get("kind")?,
        state: r.try_get("state")?,
        manifest_digest: r.try_get("manifest_digest")?,
        registration: r.try_get("registration")?,
        signature: r.try_get("signature")?,
        signer: r.try_get("signer")?,
        card: r.try_get("card")?,
        card_digest: r.try_get("card_digest")?,
        card_signature: r.try_get("card_signature")?,
        attestations: r.try_get("attestations")?,
        registered_by: r.try_get("registered_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn history_row(r: &AnyRow) -> Result<ModelHistory, StoreError> {
    Ok(ModelHistory {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        activity: r.try_get("activity")?,
        from_state: r.try_get("from_state")?,
        to_state: r.try_get("to_state")?,
        actor: r.try_get("actor")?,
        why: r.try_get("why")?,
        ticket: r.try_get("ticket")?,
        ledger_index: r.try_get("ledger_index")?,
    })
}

fn not_found(name: &str, version: &str) -> StoreError {
    StoreError::NotFound(format!("model {name}@{version}"))
}

impl Store {
    pub async fn model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM model_versions WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref()
            .map(version_row)
            .transpose()?
            .ok_or_else(|| not_found(name, version))
    }

    /// Every version, or every version of one model; newest first within a model.
    pub async fn model_versions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<ModelVersion>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM model_versions WHERE ($1 = '' OR name = $1)
             ORDER BY name, created_at DESC, version"
        ))
        .bind(name.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(version_row).collect()
    }

    /// The transitions of a model's versions (or of one version), oldest first.
    pub async fn model_history(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ModelHistory>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, seq, at, activity, from_state, to_state, actor, why, ticket, ledger_index
             FROM model_history WHERE name = $1 AND ($2 = '' OR version = $2)
             ORDER BY at, version, seq",
        )
        .bind(name)
        .bind(version.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(history_row).collect()
    }
}

impl Change {
    /// The version as this change sees it (for compare-and-set transitions).
    pub async fn model_get(
        &mut self,
        name: &str,
        version: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM model_versions WHERE name = $1 AND version = $2"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    pub async fn model_insert(&mut self, m: &ModelVersion) -> Result<(), StoreError> {
        let r = sqlx::query(&format!(
            "INSERT INTO model_versions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (name, version) DO NOTHING"
        ))
        .bind(&m.name)
        .bind(&m.version)
        .bind(&m.kind)
        .bind(&m.state)
        .bind(&m.manifest_digest)
        .bind(&m.registration)
        .bind(&m.signature)
        .bind(&m.signer)
        .bind(&m.card)
        .bind(&m.card_digest)
        .bind(&m.card_signature)
        .bind(&m.attestations)
        .bind(&m.registered_by)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(self.conn())
        .await?;
        if r.rows_affected() == 0 {
            // Versions are immutable: a new build is a new version.
            return Err(StoreError::Conflict(format!(
                "model {}@{}",
                m.name, m.version
            )));
        }
        Ok(())
    }

    /// Writes a version's mutable fields, if its state is still `expected_state`.
    pub async fn model_update(
        &mut self,
        m: &ModelVersion,
        expected_state: &str,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE model_versions SET state = $3, signature = $4, signer = $5, card = $6,
                card_digest = $7, card_signature = $8, attestations = $9, updated_at = $10
             WHERE name = $1 AND version = $2 AND state = $11",
        )
        .bind(&m.name)
        .bind(&m.version)
        .bind(&m.state)
        .bind(&m.signature)
        .bind(&m.signer)
        .bind(&m.card)
        .bind(&m.card_digest)
        .bind(&m.card_signature)
        .bind(&m.attestations)
        .bind(m.updated_at)
        .bind(expected_state)
        .execute(self.conn())
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!(
                "model {}@{} changed meanwhile; try again",
                m.name, m.version
            )));
        }
        Ok(())
    }

    /// Appends a transition; its `seq` is assigned here.
    pub async fn model_history_insert(&mut self, h: &ModelHistory) -> Result<(), StoreError> {
        let (seq,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM model_history WHERE name = $1 AND version = $2",
        )
        .bind(&h.name)
        .bind(&h.version)
        .fetch_one(self.conn())
        .await?;
        sqlx::query(
            "INSERT INTO model_history (name, version, seq, at, activity, from_state, to_state, actor, why, ticket, ledger_index)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&h.name)
        .bind(&h.version)
        .bind(seq)
        .bind(h.at)
        .bind(&h.activity)
        .bind(&h.from_state)
        .bind(&h.to_state)
        .bind(&h.actor)
        .bind(&h.why)
        .bind(&h.ticket)
        .bind(h.ledger_index)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

/// A prompt version: the system prompt and templates, by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of `body`.
    pub digest: String,
    pub body: String,
    /// The model it was written for, if stated.
    pub model: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

/// A dataset tag pinned by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub name: String,
    pub tag: String,
    /// Hex SHA-256.
    pub digest: String,
    /// Location, how the digest was taken, datasheet, PII status: JSON.
    pub facts: String,
    pub created_by: String,
    pub created_at: i64,
}

fn prompt_row(r: &AnyRow) -> Result<Prompt, StoreError> {
    Ok(Prompt {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        digest: r.try_get("digest")?,
        body: r.try_get("body")?,
        model: r.try_get("model")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn dataset_row(r: &AnyRow) -> Result<Dataset, StoreError> {
    Ok(Dataset {
        name: r.try_get("name")?,
        tag: r.try_get("tag")?,
        digest: r.try_get("digest")?,
        facts: r.try_get("facts")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Every version of one prompt (or of all), in the order added.
    pub async fn prompts(&self, name: Option<&str>) -> Result<Vec<Prompt>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, digest, body, model, created_by, created_at FROM prompts
             WHERE ($1 = '' OR name = $1) ORDER BY name, created_at, version",
        )
        .bind(name.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(prompt_row).collect()
    }

    pub async fn prompt(&self, name: &str, version: &str) -> Result<Prompt, StoreError> {
        let row = sqlx::query(
            "SELECT name, version, digest, body, model, created_by, created_at FROM prompts
             WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref()
            .map(prompt_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("prompt {name}@{version}")))
    }

    pub async fn datasets(&self, name: Option<&str>) -> Result<Vec<Dataset>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, tag, digest, facts, created_by, created_at FROM datasets
             WHERE ($1 = '' OR name = $1) ORDER BY name, created_at, tag",
        )
        .bind(name.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(dataset_row).collect()
    }

    pub async fn dataset(&self, name: &str, tag: &str) -> Result<Dataset, StoreError> {
        let row = sqlx::query(
            "SELECT name, tag, digest, facts, created_by, created_at FROM datasets
             WHERE name = $1 AND tag = $2",
        )
        .bind(name)
        .bind(tag)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref()
            .map(dataset_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("dataset {name}@{tag}")))
    }
}

impl Change {
    /// The versions of a prompt as this change sees them (to check a new one is newer).
    pub async fn prompt_versions(&mut self, name: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT version FROM prompts WHERE name = $1")
            .bind(name)
            .fetch_all(self.conn())
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    pub async fn prompt_insert(&mut self, p: &Prompt) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO prompts (name, version, digest, body, model, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.digest)
        .bind(&p.body)
        .bind(&p.model)
        .bind(&p.created_by)
        .bind(p.created_at)
        .execute(self.conn())
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "prompt {}@{}",
                p.name, p.version
            )));
        }
        Ok(())
    }

    pub async fn dataset_insert(&mut self, d: &Dataset) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO datasets (name, tag, digest, facts, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, tag) DO NOTHING",
        )
        .bind(&d.name)
        .bind(&d.tag)
        .bind(&d.digest)
        .bind(&d.facts)
        .bind(&d.created_by)
        .bind(d.created_at)
        .execute(self.conn())
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "dataset {}@{}",
                d.name, d.tag
            )));
        }
        Ok(())
    }
}
