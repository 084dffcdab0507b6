//! Release components besides models: prompt versions (SemVer, each newer than the last) and
//! dataset tags pinned by digest. Immutable once added; each addition is a ledgered change.

use crate::{Actor, Control, ControlError, Evidence, Recorded, GLOBAL};
use custos_core::time::now_ms;
use custos_core::Reason;
use custos_govern::release::{self, semver::Version, DatasetFacts};
use custos_store::{Dataset, Prompt};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A prompt version to add.
#[derive(Clone, Debug)]
pub struct NewPrompt {
    pub name: String,
    pub version: String,
    pub body: String,
    pub model: Option<String>,
}

/// A dataset tag to add.
#[derive(Clone, Debug)]
pub struct NewDataset {
    pub name: String,
    pub tag: String,
    /// Hex SHA-256.
    pub digest: String,
    pub facts: DatasetFacts,
}

impl Control {
    /// Adds a prompt version: SemVer, newer than every version of the prompt so far.
    pub async fn add_prompt(
        &self,
        actor: &Actor,
        p: NewPrompt,
        reason: &Reason,
    ) -> Result<Recorded<Prompt>, ControlError> {
        let d = self
            .authorize(actor, "prompts.manage", GLOBAL, reason)
            .await?;
        release::check_name("prompt name", &p.name).map_err(ControlError::Invalid)?;
        let v = Version::parse(&p.version).map_err(ControlError::Invalid)?;
        if p.body.trim().is_empty() {
            return Err(ControlError::invalid("the prompt is empty"));
        }
        if p.body.len() as u64 > release::MAX_PROMPT {
            return Err(ControlError::invalid(format!(
                "the prompt is {} bytes; at most {} are kept",
                p.body.len(),
                release::MAX_PROMPT
            )));
        }
        let mut c = self.store.begin_change().await?;
        let newest = c
            .prompt_versions(&p.name)
            .await?
            .into_iter()
            .filter_map(|s| Version::parse(&s).ok().map(|v| (v, s)))
            .max_by(|a, b| a.0.cmp_precedence(&b.0));
        if let Some((old, text)) = &newest {
            if v.bump_from(old).is_none() {
                return Err(ControlError::invalid(format!(
                    "prompt {} is at {text}; a new version must be newer than that",
                    p.name
                )));
            }
        }
        let row = Prompt {
            digest: hex::encode(Sha256::digest(p.body.as_bytes())),
            name: p.name,
            version: p.version,
            body: p.body,
            model: p.model,
            created_by: actor.name(),
            created_at: now_ms(),
        };
        c.prompt_insert(&row).await?;
        let state = json!({"name": row.name, "version": row.version, "digest": format!("sha256:{}", row.digest), "model": row.model,
                           "previous": newest.map(|n| n.1)});
        let e = self.event(
            actor,
            "prompts.manage",
            &d,
            Evidence {
                activity: "prompt.add",
                resource: json!({"type": "prompt", "name": format!("{}@{}", row.name, row.version), "digest": format!("sha256:{}", row.digest)}),
                before: None,
                after: Some(state),
            },
            reason,
        );
        self.commit(c, vec![e], row).await
    }

    /// Adds a dataset tag pinned by its digest.
    pub async fn add_dataset(
        &self,
        actor: &Actor,
        ds: NewDataset,
        reason: &Reason,
    ) -> Result<Recorded<Dataset>, ControlError> {
        let d = self
            .authorize(actor, "datasets.manage", GLOBAL, reason)
            .await?;
        release::check_name("dataset name", &ds.name).map_err(ControlError::Invalid)?;
        release::check_name("dataset tag", &ds.tag).map_err(ControlError::Invalid)?;
        if hex::decode(&ds.digest).map(|b| b.len()) != Ok(32) {
            return Err(ControlError::invalid(
                "a dataset's digest is 64 hex digits of SHA-256",
            ));
        }
        let facts =
            serde_json::to_string(&ds.facts).map_err(|e| ControlError::invalid(e.to_string()))?;
        let row = Dataset {
            name: ds.name,
            tag: ds.tag,
            digest: ds.digest.to_ascii_lowercase(),
            facts,
            created_by: actor.name(),
            created_at: now_ms(),
        };
        let mut c = self.store.begin_change().await?;
        c.dataset_insert(&row).await?;
        let label = format!("{}@{}", row.name, row.tag);
        let trigger = match &ds.facts.pii {
            Some(p) if p.status == "contains-pii" => {
                self.dpia_trigger(
                    &mut c,
                    actor,
                    crate::dpia::Trigger {
                        tenant: GLOBAL.into(),
                        kind: "pii-dataset",
                        key: format!("dataset:{label}"),
                        subject: format!("dataset {label}"),
                        release_id: None,
                        details: json!({"dataset": label, "records": p.records, "records_with_pii": p.records_with_pii,
                                        "entities": p.entities, "report_sha256": p.report_sha256}),
                    },
                    reason,
                )
                .await?
            }
            _ => None,
        };
        let e = self.event(
            actor,
            "datasets.manage",
            &d,
            Evidence {
                activity: "dataset.add",
                resource: json!({"type": "dataset", "name": format!("{}@{}", row.name, row.tag), "digest": format!("sha256:{}", row.digest)}),
                before: None,
                after: Some(json!({"name": row.name, "tag": row.tag, "digest": row.digest, "facts": ds.facts})),
            },
            reason,
        );
        self.commit(c, std::iter::once(e).chain(trigger).collect(), row)
            .await
    }
}
