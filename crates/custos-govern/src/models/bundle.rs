//! Sigstore bundles (v0.3) as OpenSSF model-signing writes them for key signing: the DSSE
//! envelope, and as verification material a hint naming the public key (no certificate, no
//! transparency-log entry). Bundles from Sigstore's keyless flow are recognized and refused
//! with a pointer to the tool that verifies them.

use super::dsse::{Envelope, IN_TOTO};
use super::keys::{PublicKey, SigningKey};
use super::ModelError;
use serde_json::{json, Value};

pub const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const MEDIA_TYPES: &[&str] = &[
    MEDIA_TYPE,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];

/// The largest bundle custos reads: a manifest of a million files is ~150 MB of JSON; a
/// bundle is read whole, so it is capped.
pub const MAX_BUNDLE: u64 = 256 << 20;

/// Signs an in-toto statement into a bundle.
pub fn sign(statement: &Value, key: &SigningKey) -> Result<Value, ModelError> {
    let payload = serde_json::to_vec(statement)
        .map_err(|e| ModelError::Invalid(format!("cannot encode the statement: {e}")))?;
    let envelope = Envelope::sign(IN_TOTO, &payload, key, "")?;
    Ok(json!({
        "mediaType": MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key.public_key().hint()},
            "tlogEntries": []
        },
        "dsseEnvelope": envelope,
    }))
}

/// A parsed bundle, not yet verified.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub envelope: Envelope,
    /// The key hint the bundle names, if any.
    pub hint: Option<String>,
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            ModelError::Signature(format!(
                "not a Sigstore bundle (invalid JSON at line {}, column {}: {e})",
                e.line(),
                e.column()
            ))
        })?;
        let media = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if !MEDIA_TYPES.contains(&media) {
            return Err(ModelError::Signature(format!(
                "not a Sigstore bundle v0.3 (mediaType {media:?}; expected {MEDIA_TYPE})"
            )));
        }
        let material = v.get("verificationMaterial").ok_or_else(|| {
            ModelError::Signature("the bundle has no verificationMaterial".into())
        })?;
        if material.get("certificate").is_some() || material.get("x509CertificateChain").is_some() {
            return Err(ModelError::Signature(
                "the bundle was signed with a Sigstore certificate (keyless); custos verifies \
                 key-signed bundles — verify this one with `model_signing verify sigstore`"
                    .into(),
            ));
        }
        let hint = material
            .pointer("/publicKey/hint")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let envelope = v.get("dsseEnvelope").ok_or_else(|| {
            ModelError::Signature(
                "the bundle holds no DSSE envelope (a message signature is not a model signature)"
                    .into(),
            )
        })?;
        let envelope: Envelope = serde_json::from_value(envelope.clone())
            .map_err(|e| ModelError::Signature(format!("the DSSE envelope is malformed: {e}")))?;
        Ok(Bundle { envelope, hint })
    }

    /// The in-toto statement, once the signature verifies with `key`.
    pub fn open(&self, key: &PublicKey) -> Result<Value, ModelError> {
        if let Some(hint) = &self.hint {
            if !hint.is_empty() && *hint != key.hint() {
                return Err(ModelError::Signature(format!(
                    "signed by another key (the bundle names key {}…, this public key is {}…)",
                    &hint[..hint.len().min(16)],
                    &key.hint()[..16]
                )));
            }
        }
        if self.envelope.payload_type != IN_TOTO {
            return Err(ModelError::Signature(format!(
                "the payload is {:?}, not an in-toto statement",
                self.envelope.payload_type
            )));
        }
        let payload = self.envelope.open(key)?;
        serde_json::from_slice(&payload)
            .map_err(|e| ModelError::Signature(format!("the signed payload is not JSON: {e}")))
    }
}
