//! The deploy gate's rule: a registry entry is served only when it is approved (or promoted)
//! and, for weights, its stored signature verifies with a key the trust policy allows for the
//! model's name and signs exactly the registered manifest digest.

use super::bundle::Bundle;
use super::keys::PublicKey;
use super::manifest::Manifest;
use super::registry::{name_matches, Kind, State};

/// A key and the model names it may sign.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub names: Vec<String>,
    pub key: PublicKey,
    /// Where the key came from, for messages.
    pub source: String,
}

/// What the gate knows of a registry entry.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub kind: Kind,
    pub state: &'a str,
    pub manifest_digest: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// A servable entry: what every call it serves records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Servable {
    /// `sha256:HEX` of the manifest (weights), or `None` for a remote model.
    pub manifest_digest: Option<String>,
    /// The hint of the trusted key that signed it.
    pub signer: Option<String>,
}

/// Checks a signature bundle against the keys trusted for `name`; returns the signed
/// manifest and the key that verified it.
pub fn verify_trusted(
    name: &str,
    bundle: &str,
    trust: &[TrustedKey],
) -> Result<(Manifest, String), String> {
    let keys: Vec<&TrustedKey> = trust
        .iter()
        .filter(|t| t.names.iter().any(|p| name_matches(p, name)))
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "no [[registry.trust]] rule names model {name:?}, so no key may sign it"
        ));
    }
    let bundle = Bundle::parse(bundle.as_bytes()).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for t in keys {
        match bundle.open(&t.key) {
            Ok(statement) => {
                let m = Manifest::from_statement(&statement).map_err(|e| e.to_string())?;
                return Ok((m, t.key.hint()));
            }
            Err(e) => last = format!("{} ({})", e, t.source),
        }
    }
    Err(format!(
        "the signature verifies with no key trusted for {name:?}: {last}"
    ))
}

/// Checks a model card's signature (a DSSE envelope, JSON) against the keys trusted for
/// `name`; returns the hint of the key that verified it.
pub fn verify_card_trusted(
    name: &str,
    version: &str,
    text: &str,
    envelope: &str,
    trust: &[TrustedKey],
) -> Result<String, String> {
    let envelope: crate::models::dsse::Envelope = serde_json::from_str(envelope)
        .map_err(|e| format!("the signature is not a DSSE envelope: {e}"))?;
    let mut last = format!("no [[registry.trust]] rule names model {name:?}");
    for t in trust
        .iter()
        .filter(|t| t.names.iter().any(|p| name_matches(p, name)))
    {
        match crate::models::card::verify(&envelope, &t.key, name, version, text) {
            Ok(()) => return Ok(t.key.hint()),
            Err(e) => last = format!("{e} ({})", t.source),
        }
    }
    Err(last)
}

/// Whether the gate serves `entry`, and if not, why.
pub fn servable(entry: &Entry<'_>, trust: &[TrustedKey]) -> Result<Servable, String> {
    let state =
        State::parse(entry.state).ok_or_else(|| format!("unknown state {:?}", entry.state))?;
    if !matches!(state, State::Approved | State::Promoted) {
        return Err(format!(
            "{}@{} is {}; only an approved or promoted model is served",
            entry.name,
            entry.version,
            state.as_str()
        ));
    }
    if entry.kind == Kind::Remote {
        return Ok(Servable {
            manifest_digest: None,
            signer: None,
        });
    }
    let (Some(digest), Some(bundle)) = (entry.manifest_digest, entry.signature) else {
        return Err(format!("{}@{} is not signed", entry.name, entry.version));
    };
    let (m, signer) = verify_trusted(entry.name, bundle, trust)?;
    if m.digest() != digest {
        return Err(format!(
            "the signature covers manifest {}, not the registered {digest}",
            m.digest()
        ));
    }
    Ok(Servable {
        manifest_digest: Some(format!("sha256:{digest}")),
        signer: Some(signer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::bundle;
    use crate::models::keys::{Curve, SigningKey};
    use crate::models::manifest::{Method, Resource, Serialization};

    fn signed() -> (SigningKey, Manifest, String) {
        let (key, _) = SigningKey::generate(Curve::P256).unwrap();
        let m = Manifest {
            model_name: "m".into(),
            serialization: Serialization {
                method: Method::Files,
                hash_type: "sha256".into(),
                allow_symlinks: false,
                ignore_paths: vec![],
            },
            resources: vec![Resource {
                name: "w".into(),
                algorithm: "sha256".into(),
                digest: "11".repeat(32),
            }],
            bytes: 0,
        };
        let b = bundle::sign(&m.statement(), &key).unwrap().to_string();
        (key, m, b)
    }

    #[test]
    fn the_gate_needs_approval_a_trusted_key_and_the_registered_digest() {
        let (key, m, b) = signed();
        let digest = m.digest();
        let trust = vec![TrustedKey {
            names: vec!["llama-*".into()],
            key: key.public_key(),
            source: "k.pub".into(),
        }];
        let entry = |state, name| Entry {
            name,
            version: "1",
            kind: Kind::Weights,
            state,
            manifest_digest: Some(&digest),
            signature: Some(&b),
        };
        assert!(servable(&entry("approved", "llama-3"), &trust).is_ok());
        assert!(servable(&entry("signed", "llama-3"), &trust)
            .unwrap_err()
            .contains("only an approved"));
        assert!(servable(&entry("approved", "mistral"), &trust)
            .unwrap_err()
            .contains("no [[registry.trust]]"));
        let (other, _) = SigningKey::generate(Curve::P256).unwrap();
        let wrong = vec![TrustedKey {
            names: vec!["*".into()],
            key: other.public_key(),
            source: "o.pub".into(),
        }];
        assert!(servable(&entry("approved", "llama-3"), &wrong)
            .unwrap_err()
            .contains("verifies with no key"));
        let unsigned = Entry {
            signature: None,
            ..entry("approved", "llama-3")
        };
        assert!(servable(&unsigned, &trust)
            .unwrap_err()
            .contains("not signed"));
        let other_digest = "22".repeat(32);
        let moved = Entry {
            manifest_digest: Some(&other_digest),
            ..entry("promoted", "llama-3")
        };
        assert!(servable(&moved, &trust)
            .unwrap_err()
            .contains("not the registered"));
    }
}
