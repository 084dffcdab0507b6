//! Signing keys as `model_signing sign key` takes them: ECDSA on P-256 or P-384, private keys
//! in PEM (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, as `openssl ecparam -genkey`
//! writes), public keys as PEM SubjectPublicKeyInfo. Signatures are DER, over SHA-256 for
//! P-256 and SHA-384 for P-384, like Sigstore's.

use super::der;
use super::ModelError;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// The curves custos signs and verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "secp256r1" | "prime256v1" => Ok(Curve::P256),
            "p384" | "p-384" | "secp384r1" => Ok(Curve::P384),
            other => Err(ModelError::Key(format!(
                "unknown curve {other:?}: use p256 or p384"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => P256,
            Curve::P384 => P384,
        }
    }

    fn from_oid(oid: &[u8]) -> Result<Self, ModelError> {
        match oid {
            P256 => Ok(Curve::P256),
            P384 => Ok(Curve::P384),
            P521 => Err(ModelError::Key(
                "P-521 keys are not supported: use a P-256 or P-384 key".into(),
            )),
            _ => Err(ModelError::Key(
                "the key's curve is not P-256 or P-384".into(),
            )),
        }
    }

    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }
}

/// The body of the first PEM block labelled `label`, decoded.
fn pem_block(text: &str, labels: &[&str]) -> Result<(String, Vec<u8>), ModelError> {
    for label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = text.find(&begin) else {
            continue;
        };
        let body = &text[start + begin.len()..];
        let Some(stop) = body.find(&end) else {
            return Err(ModelError::Key(format!(
                "the PEM block {label} has no END line"
            )));
        };
        let body = &body[..stop];
        if body.contains("ENCRYPTED") {
            return Err(ModelError::Key(
                "the private key is encrypted: write a decrypted copy to a file only you can \
                 read (openssl pkey -in KEY -out PLAIN) or keep it in the environment"
                    .into(),
            ));
        }
        let b64: String = body
            .lines()
            .filter(|l| !l.contains(':'))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| ModelError::Key(format!("the PEM block {label} is not base64: {e}")))?;
        return Ok(((*label).to_owned(), der));
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(ModelError::Key(
            "the private key is encrypted (PKCS#8): decrypt it first \
             (openssl pkey -in KEY -out PLAIN) into a file only you can read"
                .into(),
        ));
    }
    Err(ModelError::Key(format!(
        "no PEM block labelled {} found",
        labels.join(" or ")
    )))
}

/// Wraps a SEC1 `ECPrivateKey` as PKCS#8, the one container ring reads.
fn sec1_to_pkcs8(sec1: &[u8]) -> Result<(Curve, Vec<u8>), ModelError> {
    let bad = || ModelError::Key("the EC PRIVATE KEY block is not a SEC1 key".into());
    let (body, _) = der::expect(sec1, der::SEQUENCE).ok_or_else(bad)?;
    let (_version, rest) = der::expect(body, der::INTEGER).ok_or_else(bad)?;
    let (_scalar, rest) = der::expect(rest, der::OCTET_STRING).ok_or_else(bad)?;
    let (params, _) = der::expect(rest, der::CONTEXT_0).ok_or_else(|| {
        ModelError::Key("the SEC1 key does not name its curve; convert it to PKCS#8".into())
    })?;
    let (oid, _) = der::expect(params, der::OID).ok_or_else(bad)?;
    let curve = Curve::from_oid(oid)?;
    let alg = [
        der::write(der::OID, EC_PUBLIC_KEY),
        der::write(der::OID, curve.oid()),
    ]
    .concat();
    let info = [
        der::write(der::INTEGER, &[0]),
        der::write(der::SEQUENCE, &alg),
        der::write(der::OCTET_STRING, sec1),
    ]
    .concat();
    Ok((curve, der::write(der::SEQUENCE, &info)))
}

/// The curve a PKCS#8 `PrivateKeyInfo` names.
fn pkcs8_curve(pkcs8: &[u8]) -> Result<Curve, ModelError> {
    let bad = || ModelError::Key("the PRIVATE KEY block is not a PKCS#8 key".into());
    let (body, _) = der::expect(pkcs8, der::SEQUENCE).ok_or_else(bad)?;
    let (_version, rest) = der::expect(body, der::INTEGER).ok_or_else(bad)?;
    let (alg, _) = der::expect(rest, der::SEQUENCE).ok_or_else(bad)?;
    let (kind, rest) = der::expect(alg, der::OID).ok_or_else(bad)?;
    if kind != EC_PUBLIC_KEY {
        return Err(ModelError::Key(
            "the private key is not an EC key: model signing takes P-256 or P-384 keys \
             (custos models keygen makes one)"
                .into(),
        ));
    }
    let (oid, _) = der::expect(rest, der::OID).ok_or_else(bad)?;
    Curve::from_oid(oid)
}

/// A private key that signs.
pub struct SigningKey {
    curve: Curve,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("curve", &self.curve)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PEM private key (PKCS#8 or SEC1).
    pub fn from_pem(text: &str) -> Result<Self, ModelError> {
        let (label, der) = pem_block(text, &["PRIVATE KEY", "EC PRIVATE KEY"])?;
        let (curve, pkcs8) = if label == "EC PRIVATE KEY" {
            sec1_to_pkcs8(&der)?
        } else {
            (pkcs8_curve(&der)?, der)
        };
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(curve.signing(), &pkcs8, &rng)
            .map_err(|e| ModelError::Key(format!("the private key is not usable: {e}")))?;
        Ok(SigningKey { curve, pair, rng })
    }

    /// A new key, and its PKCS#8 PEM to keep.
    pub fn generate(curve: Curve) -> Result<(Self, String), ModelError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(curve.signing(), &rng)
            .map_err(|_| ModelError::Key("the system's random source failed".into()))?;
        let pem = pem("PRIVATE KEY", doc.as_ref());
        let key = Self::from_pem(&pem)?;
        Ok((key, pem))
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            curve: self.curve,
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// A DER ECDSA signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ModelError> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| ModelError::Key("signing failed".into()))
    }
}

/// A public key that verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    curve: Curve,
    /// The uncompressed point.
    point: Vec<u8>,
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_pem(text: &str) -> Result<Self, ModelError> {
        let (_, der) = pem_block(text, &["PUBLIC KEY"])?;
        let bad = || ModelError::Key("the PUBLIC KEY block is not a SubjectPublicKeyInfo".into());
        let (body, _) = der::expect(&der, der::SEQUENCE).ok_or_else(bad)?;
        let (alg, rest) = der::expect(body, der::SEQUENCE).ok_or_else(bad)?;
        let (kind, params) = der::expect(alg, der::OID).ok_or_else(bad)?;
        if kind != EC_PUBLIC_KEY {
            return Err(ModelError::Key(
                "the public key is not an EC key (P-256 or P-384)".into(),
            ));
        }
        let (oid, _) = der::expect(params, der::OID).ok_or_else(bad)?;
        let curve = Curve::from_oid(oid)?;
        let (bits, _) = der::expect(rest, der::BIT_STRING).ok_or_else(bad)?;
        let point = match bits.split_first() {
            Some((0, point)) => point.to_vec(),
            _ => return Err(bad()),
        };
        let expected = match curve {
            Curve::P256 => 65,
            Curve::P384 => 97,
        };
        if point.len() != expected || point.first() != Some(&4) {
            return Err(ModelError::Key(
                "the public key is not an uncompressed EC point".into(),
            ));
        }
        Ok(PublicKey { curve, point })
    }

    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki(&self) -> Vec<u8> {
        let alg = [
            der::write(der::OID, EC_PUBLIC_KEY),
            der::write(der::OID, self.curve.oid()),
        ]
        .concat();
        let bits = [&[0u8][..], &self.point].concat();
        der::write(
            der::SEQUENCE,
            &[
                der::write(der::SEQUENCE, &alg),
                der::write(der::BIT_STRING, &bits),
            ]
            .concat(),
        )
    }

    /// PEM as OpenSSL and Python's `cryptography` write it (64 columns, final newline).
    pub fn to_pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki())
    }

    /// model-signing's key hint: SHA-256 (hex) of the PEM text. A bundle names the key that
    /// signed it by this, so a verifier can tell a wrong key from a bad signature.
    pub fn hint(&self) -> String {
        hex::encode(Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Whether `sig` (DER, or fixed-width r‖s) signs `message`.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let (asn1, fixed): (
            &dyn signature::VerificationAlgorithm,
            &dyn signature::VerificationAlgorithm,
        ) = match self.curve {
            Curve::P256 => (
                &signature::ECDSA_P256_SHA256_ASN1,
                &signature::ECDSA_P256_SHA256_FIXED,
            ),
            Curve::P384 => (
                &signature::ECDSA_P384_SHA384_ASN1,
                &signature::ECDSA_P384_SHA384_FIXED,
            ),
        };
        signature::UnparsedPublicKey::new(asn1, &self.point)
            .verify(message, sig)
            .is_ok()
            || signature::UnparsedPublicKey::new(fixed, &self.point)
                .verify(message, sig)
                .is_ok()
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_round_trip_through_pem() {
        for curve in [Curve::P256, Curve::P384] {
            let (key, pem) = SigningKey::generate(curve).unwrap();
            let again = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(again.public_key(), key.public_key());
            let public = PublicKey::from_pem(&key.public_key().to_pem()).unwrap();
            let sig = key.sign(b"payload").unwrap();
            assert!(public.verify(b"payload", &sig));
            assert!(!public.verify(b"payloaD", &sig));
        }
    }

    #[test]
    fn wrong_blocks_are_named() {
        let e = SigningKey::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
        let e = PublicKey::from_pem("hello").unwrap_err();
        assert!(e.to_string().contains("PUBLIC KEY"), "{e}");
        let e =
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n")
                .unwrap_err();
        assert!(e.to_string().contains("PKCS#8"), "{e}");
    }
}
