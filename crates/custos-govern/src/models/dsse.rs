//! DSSE envelopes (secure-systems-lab/dsse v1): a payload, its type, and signatures over the
//! pre-authentication encoding `DSSEv1 len(type) type len(payload) payload`.

use super::keys::{PublicKey, SigningKey};
use super::ModelError;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The pre-authentication encoding that is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub sig: String,
    #[serde(default)]
    pub keyid: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Envelope {
    /// Signs `payload` as `payload_type`; `keyid` names the key (empty when unnamed).
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        key: &SigningKey,
        keyid: &str,
    ) -> Result<Self, ModelError> {
        let sig = key.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload: b64().encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![Signature {
                sig: b64().encode(sig),
                keyid: keyid.to_owned(),
            }],
        })
    }

    /// The payload, once one of the signatures verifies with `key`.
    pub fn open(&self, key: &PublicKey) -> Result<Vec<u8>, ModelError> {
        let payload = b64()
            .decode(&self.payload)
            .map_err(|e| ModelError::Signature(format!("the DSSE payload is not base64: {e}")))?;
        if self.signatures.is_empty() {
            return Err(ModelError::Signature(
                "the DSSE envelope has no signature".into(),
            ));
        }
        let message = pae(&self.payload_type, &payload);
        for s in &self.signatures {
            let Ok(sig) = b64().decode(&s.sig) else {
                continue;
            };
            if key.verify(&message, &sig) {
                return Ok(payload);
            }
        }
        Err(ModelError::Signature(
            "no signature in the envelope verifies with this public key".into(),
        ))
    }

    /// The payload, unverified: for showing what a signature claims before checking it.
    pub fn payload_unverified(&self) -> Result<Vec<u8>, ModelError> {
        b64()
            .decode(&self.payload)
            .map_err(|e| ModelError::Signature(format!("the DSSE payload is not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::keys::Curve;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_changed_type_or_payload_does_not_verify() {
        let (key, _) = SigningKey::generate(Curve::P256).unwrap();
        let e = Envelope::sign(IN_TOTO, b"{}", &key, "").unwrap();
        assert_eq!(e.open(&key.public_key()).unwrap(), b"{}");
        let mut t = e.clone();
        t.payload_type = "text/plain".into();
        assert!(t.open(&key.public_key()).is_err());
        let mut p = e.clone();
        p.payload = b64().encode(b"[]");
        assert!(p.open(&key.public_key()).is_err());
        let (other, _) = SigningKey::generate(Curve::P256).unwrap();
        assert!(e.open(&other.public_key()).is_err());
    }
}
