//! Releases and their components: prompts (SemVer-versioned texts) and datasets (tags pinned
//! by digest) as versioned objects, so a composite release (`model@1.4.2 + prompt@2.3.0 +
//! data@golden`) names each part by digest.

pub mod health;
pub mod proof;
pub mod semver;
pub mod tier;

use serde::{Deserialize, Serialize};

/// The largest prompt custos keeps (system prompt and templates).
pub const MAX_PROMPT: u64 = 1 << 20;

/// What a dataset registration records beyond its digest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetFacts {
    /// Where the data lives (a path as given, or a URI).
    pub location: String,
    /// How the digest was taken: `files` (a folder's manifest digest), `file`, `manifest`
    /// (a DVC-style `.dvc` or manifest file) or `given` (a URI with --sha256).
    pub digest_of: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub files: Option<u64>,
    /// The datasheet, by path and digest.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub datasheet: Option<crate::models::registry::Reference>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pii: Option<PiiStatus>,
}

/// What a `custos pii dataset --report` said of the data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiStatus {
    /// `contains-pii` or `none-found`.
    pub status: String,
    pub records: u64,
    pub records_with_pii: u64,
    /// Findings per entity type, over all columns or fields.
    pub entities: std::collections::BTreeMap<String, u64>,
    /// SHA-256 of the report it was read from.
    pub report_sha256: String,
}

impl PiiStatus {
    /// Reads a `custos pii dataset --report` JSON document.
    pub fn from_report(v: &serde_json::Value, report_sha256: &str) -> Result<Self, String> {
        let n = |k: &str| {
            v.get(k).and_then(serde_json::Value::as_u64).ok_or_else(|| {
                format!(
                    "the PII report has no {k} count (is it `custos pii dataset --report` output?)"
                )
            })
        };
        let records = n("records")?;
        let with = n("records_with_pii")?;
        let mut entities = std::collections::BTreeMap::new();
        if let Some(cols) = v.get("entities").and_then(serde_json::Value::as_object) {
            for per in cols.values().filter_map(serde_json::Value::as_object) {
                for (t, c) in per {
                    *entities.entry(t.clone()).or_insert(0) += c.as_u64().unwrap_or(0);
                }
            }
        }
        Ok(PiiStatus {
            status: if with > 0 {
                "contains-pii"
            } else {
                "none-found"
            }
            .into(),
            records,
            records_with_pii: with,
            entities,
            report_sha256: report_sha256.to_owned(),
        })
    }
}

/// Checks a prompt or dataset name (as model names: 1–128 of letters, digits, `._-+`).
pub fn check_name(what: &str, s: &str) -> Result<(), String> {
    crate::models::registry::check_name(what, s)
}
