//! SLSA Provenance v1 for a training run, as an in-toto statement in a signed DSSE envelope:
//! the subject is the trained model (its manifest digest), the materials are the datasets and
//! code it was built from, the parameters are the run's. `check` holds one against a
//! registry entry.

use super::dsse::{Envelope, IN_TOTO};
use super::keys::{PublicKey, SigningKey};
use super::manifest::STATEMENT_TYPE;
use super::ModelError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type custos writes when the caller names none.
pub const DEFAULT_BUILD_TYPE: &str = "https://custos.dev/training-run/v1";

/// Something a run consumed, by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub name: String,
    /// Hex SHA-256.
    pub sha256: String,
}

/// A training run as SLSA describes a build.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingRun {
    pub builder_id: String,
    pub build_type: String,
    pub materials: Vec<Material>,
    /// The run's external parameters (hyper-parameters, the config file's digest, …).
    pub parameters: serde_json::Map<String, Value>,
    pub invocation_id: Option<String>,
    pub started_on: Option<String>,
    pub finished_on: Option<String>,
}

/// A provenance statement's claims.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    pub subject_name: String,
    pub subject_sha256: String,
    pub run: TrainingRun,
}

impl Provenance {
    pub fn statement(&self) -> Value {
        let mut metadata = serde_json::Map::new();
        for (k, v) in [
            ("invocationId", &self.run.invocation_id),
            ("startedOn", &self.run.started_on),
            ("finishedOn", &self.run.finished_on),
        ] {
            if let Some(v) = v {
                metadata.insert(k.into(), json!(v));
            }
        }
        let deps: Vec<Value> = self
            .run
            .materials
            .iter()
            .map(|m| json!({"name": m.name, "digest": {"sha256": m.sha256}}))
            .collect();
        json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.subject_name, "digest": {"sha256": self.subject_sha256}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": self.run.build_type,
                    "externalParameters": self.run.parameters,
                    "resolvedDependencies": deps,
                },
                "runDetails": {
                    "builder": {"id": self.run.builder_id},
                    "metadata": metadata,
                }
            }
        })
    }

    /// Signs the statement into a DSSE envelope.
    pub fn sign(&self, key: &SigningKey) -> Result<Envelope, ModelError> {
        let payload = serde_json::to_vec(&self.statement())
            .map_err(|e| ModelError::Invalid(format!("cannot encode provenance: {e}")))?;
        Envelope::sign(IN_TOTO, &payload, key, &key.public_key().hint())
    }

    /// Verifies an envelope with `key` and reads its claims.
    pub fn open(envelope: &Envelope, key: &PublicKey) -> Result<Self, ModelError> {
        if envelope.payload_type != IN_TOTO {
            return Err(ModelError::Signature(format!(
                "the envelope holds {:?}, not an in-toto statement",
                envelope.payload_type
            )));
        }
        let payload = envelope.open(key)?;
        let v: Value = serde_json::from_slice(&payload)
            .map_err(|e| ModelError::Signature(format!("the statement is not JSON: {e}")))?;
        Self::from_statement(&v)
    }

    /// How these claims disagree with a registry entry: the subject must be its manifest
    /// digest, and every registered dataset must be a material (`dataset:TAG`) with the same
    /// digest.
    pub fn disagreements(
        &self,
        entry: &str,
        manifest_digest: Option<&str>,
        datasets: &[crate::models::registry::Reference],
    ) -> Vec<String> {
        let mut out = Vec::new();
        if manifest_digest != Some(self.subject_sha256.as_str()) {
            out.push(format!(
                "the provenance names sha256:{}, the registry {entry} has {}",
                self.subject_sha256,
                manifest_digest.map_or("no weights".into(), |d| format!("sha256:{d}"))
            ));
        }
        for d in datasets {
            let want = format!("dataset:{}", d.name);
            match self.run.materials.iter().find(|m| m.name == want) {
                None => out.push(format!(
                    "the registered dataset {} is not among the run's materials",
                    d.name
                )),
                Some(m) if m.sha256 != d.sha256 => out.push(format!(
                    "dataset {}: the run used sha256:{}, the registry has sha256:{}",
                    d.name, m.sha256, d.sha256
                )),
                Some(_) => {}
            }
        }
        out
    }

    pub fn from_statement(v: &Value) -> Result<Self, ModelError> {
        let bad = |w: &str| ModelError::Signature(format!("the provenance {w}"));
        if v.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(bad("is not an in-toto Statement v1"));
        }
        if v.get("predicateType").and_then(Value::as_str) != Some(PREDICATE_TYPE) {
            return Err(bad("is not SLSA Provenance v1"));
        }
        let subject = v
            .pointer("/subject/0")
            .ok_or_else(|| bad("has no subject"))?;
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let materials = v
            .pointer("/predicate/buildDefinition/resolvedDependencies")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .map(|d| Material {
                        name: d
                            .get("name")
                            .or_else(|| d.get("uri"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        sha256: d
                            .pointer("/digest/sha256")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Provenance {
            subject_name: subject
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            subject_sha256: subject
                .pointer("/digest/sha256")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("subject has no sha256 digest"))?
                .to_owned(),
            run: TrainingRun {
                builder_id: s("/predicate/runDetails/builder/id")
                    .ok_or_else(|| bad("names no builder"))?,
                build_type: s("/predicate/buildDefinition/buildType")
                    .ok_or_else(|| bad("names no buildType"))?,
                materials,
                parameters: v
                    .pointer("/predicate/buildDefinition/externalParameters")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                invocation_id: s("/predicate/runDetails/metadata/invocationId"),
                started_on: s("/predicate/runDetails/metadata/startedOn"),
                finished_on: s("/predicate/runDetails/metadata/finishedOn"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::keys::Curve;

    #[test]
    fn provenance_signs_and_reads_back() {
        let (key, _) = SigningKey::generate(Curve::P256).unwrap();
        let p = Provenance {
            subject_name: "m@1".into(),
            subject_sha256: "ab".repeat(32),
            run: TrainingRun {
                builder_id: "https://ci.example/runner".into(),
                build_type: DEFAULT_BUILD_TYPE.into(),
                materials: vec![Material {
                    name: "dataset:reviews-v3".into(),
                    sha256: "cd".repeat(32),
                }],
                parameters: json!({"epochs": 3}).as_object().unwrap().clone(),
                invocation_id: Some("run-7".into()),
                ..TrainingRun::default()
            },
        };
        let env = p.sign(&key).unwrap();
        assert_eq!(Provenance::open(&env, &key.public_key()).unwrap(), p);
        let registered = |sha: &str| {
            vec![crate::models::registry::Reference {
                name: "reviews-v3".into(),
                sha256: sha.repeat(32),
            }]
        };
        assert!(p
            .disagreements("m@1", Some(&"ab".repeat(32)), &registered("cd"))
            .is_empty());
        let d = p.disagreements("m@1", Some(&"ee".repeat(32)), &registered("ff"));
        assert!(
            d[0].contains("the registry m@1 has sha256:eeee")
                && d[1].contains("the run used sha256:cdcd"),
            "{d:?}"
        );
        let other = vec![crate::models::registry::Reference {
            name: "other".into(),
            sha256: "00".repeat(32),
        }];
        assert!(p.disagreements("m@1", Some(&"ab".repeat(32)), &other)[0]
            .contains("not among the run's materials"));
    }
}
