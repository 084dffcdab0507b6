//! A token issuer for tests and benchmarks: fresh Ed25519 and P-256 key pairs, their JWKS,
//! and signed JWTs with any header and claims (including deliberately broken ones).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// Signs test tokens. Key ids: `ed-1` (EdDSA) and `ec-1` (ES256), after an optional prefix.
pub struct TestIssuer {
    pub issuer: String,
    prefix: String,
    ed: Ed25519KeyPair,
    ec: EcdsaKeyPair,
    rng: SystemRandom,
}

impl TestIssuer {
    pub fn new(issuer: &str) -> TestIssuer {
        TestIssuer::with_kid_prefix(issuer, "")
    }

    /// An issuer whose key ids start with `prefix`: the same IdP after a key rotation.
    pub fn with_kid_prefix(issuer: &str, prefix: &str) -> TestIssuer {
        let rng = SystemRandom::new();
        let ed_doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
        let ed = Ed25519KeyPair::from_pkcs8(ed_doc.as_ref()).expect("ed25519 key");
        let ec_doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("p256");
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_doc.as_ref(), &rng)
            .expect("p256 key");
        TestIssuer {
            issuer: issuer.to_owned(),
            prefix: prefix.to_owned(),
            ed,
            ec,
            rng,
        }
    }

    /// The public key set, as an OIDC provider publishes it.
    pub fn jwks(&self) -> String {
        let point = self.ec.public_key().as_ref();
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": format!("{}ed-1", self.prefix), "use": "sig", "alg": "EdDSA",
             "x": b64(self.ed.public_key().as_ref())},
            {"kty": "EC", "crv": "P-256", "kid": format!("{}ec-1", self.prefix), "use": "sig",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        ]})
        .to_string()
    }

    /// Standard claims for `sub`, valid for an hour from `now`, audience `aud`.
    pub fn claims(&self, sub: &str, aud: &str, now: i64) -> Value {
        json!({"iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "nbf": now,
               "exp": now + 3600})
    }

    /// An EdDSA token with kid `ed-1`.
    pub fn token(&self, claims: &Value) -> String {
        let kid = format!("{}ed-1", self.prefix);
        self.sign(&json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}), claims)
    }

    /// A token with exactly this header, signed by the key its `alg` names (EdDSA or ES256;
    /// anything else gets an Ed25519 signature, which no honest verifier accepts).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match header.get("alg").and_then(Value::as_str) {
            Some("ES256") => self
                .ec
                .sign(&self.rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            _ => self.ed.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
