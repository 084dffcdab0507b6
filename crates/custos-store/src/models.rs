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
