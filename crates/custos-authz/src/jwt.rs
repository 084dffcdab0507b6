//! JWT bearer tokens from an OIDC provider: the JWKS key set, signature verification
//! (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA) and the registered-claim checks, then
//! the mapping of claims to who the caller is. Pure: the caller supplies the keys and the clock.
//!
//! Every way a token can be wrong is its own [`TokenError`] variant, so the gateway can answer
//! with a distinct problem type. Symmetric algorithms and `none` are refused outright: a
//! verifier holding only public keys must never accept an HMAC made with one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use custos_core::config::{ClaimNames, JwtIssuerConfig};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Keys per JWKS document; more is a broken or hostile document.
const MAX_KEYS: usize = 100;

/// A JWS algorithm custos verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

/// Why a token was refused. Each variant maps to one problem type at the gateway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is {0} bytes; at most {MAX_TOKEN_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is refused: only asymmetric signatures (RS*, PS*, ES256, ES384, EdDSA) that this issuer allows are accepted")]
    AlgorithmRefused(String),
    #[error("the token names key {0:?}, which is not in the issuer's key set")]
    UnknownKey(String),
    #[error("the token's signature does not verify: it was altered or signed by another key")]
    BadSignature,
    #[error("the token expired at {exp} (now {now}, leeway {leeway_s} s)")]
    Expired { exp: i64, now: i64, leeway_s: i64 },
    #[error("the token is not valid before {nbf} (now {now}, leeway {leeway_s} s)")]
    NotYetValid { nbf: i64, now: i64, leeway_s: i64 },
    #[error("the token's audience {found} is not this API (expected one of: {expected})")]
    WrongAudience { found: String, expected: String },
    #[error("the token's issuer {0:?} is not trusted")]
    WrongIssuer(String),
    #[error("the token lacks a usable claim: {0}")]
    Claim(String),
}

impl TokenError {
    /// The stable slug of this refusal, used as the problem type and in metrics.
    pub fn slug(&self) -> &'static str {
        match self {
            TokenError::TooLarge(_) => "token-too-large",
            TokenError::Malformed(_) => "token-malformed",
            TokenError::AlgorithmRefused(_) => "token-algorithm-refused",
            TokenError::UnknownKey(_) => "token-unknown-key",
            TokenError::BadSignature => "token-bad-signature",
            TokenError::Expired { .. } => "token-expired",
            TokenError::NotYetValid { .. } => "token-not-yet-valid",
            TokenError::WrongAudience { .. } => "token-wrong-audience",
            TokenError::WrongIssuer(_) => "token-wrong-issuer",
            TokenError::Claim(_) => "token-claims",
        }
    }
}

/// Errors reading a JWKS document.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is not JSON: {0}")]
    Json(String),
    #[error("the key set has no `keys` array")]
    NoKeys,
    #[error("the key set has {0} keys; at most {MAX_KEYS} are read")]
    TooMany(usize),
    #[error("key {index} (kid {kid:?}): {reason}")]
    Key {
        index: usize,
        kid: Option<String>,
        reason: String,
    },
}

#[derive(Clone, Debug)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Material {
    fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                Material::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (Material::P256(_), Alg::ES256)
                | (Material::P384(_), Alg::ES384)
                | (Material::Ed25519(_), Alg::EdDSA)
        )
    }

    fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            Material::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Material::P384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
        }
    }
}

#[derive(Clone, Debug)]
struct Jwk {
    alg: Option<Alg>,
    material: Material,
}

/// An issuer's public keys, as published at its `jwks_uri`.
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    keys: Vec<Jwk>,
    by_kid: HashMap<String, usize>,
}

impl Jwks {
    /// Reads a JWKS document. Keys that are not for signatures (`use: enc`) and key types
    /// custos does not verify with are skipped; a malformed signing key is an error.
    pub fn parse(bytes: &[u8]) -> Result<Jwks, JwksError> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::NoKeys);
        };
        if list.len() > MAX_KEYS {
            return Err(JwksError::TooMany(list.len()));
        }
        let mut jwks = Jwks::default();
        for (index, k) in list.iter().enumerate() {
            let kid = k.get("kid").and_then(Value::as_str).map(str::to_owned);
            let fail = |reason: String| JwksError::Key {
                index,
                kid: kid.clone(),
                reason,
            };
            if k.get("use")
                .and_then(Value::as_str)
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let alg = match k.get("alg").and_then(Value::as_str) {
                None => None,
                Some(a) => match Alg::parse(a) {
                    Some(a) => Some(a),
                    // A key pinned to an algorithm custos refuses can never verify a token.
                    None => continue,
                },
            };
            let field = |name: &str| -> Result<Vec<u8>, JwksError> {
                let text = k
                    .get(name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail(format!("missing `{name}`")))?;
                URL_SAFE_NO_PAD
                    .decode(text.trim_end_matches('='))
                    .map_err(|e| fail(format!("`{name}` is not base64url: {e}")))
            };
            let material = match k.get("kty").and_then(Value::as_str) {
                Some("RSA") => {
                    let mut n = field("n")?;
                    let e = field("e")?;
                    let lead = n.iter().take_while(|b| **b == 0).count();
                    n.drain(..lead);
                    if n.len() < 256 {
                        return Err(fail(format!(
                            "RSA modulus of {} bits; at least 2048 are required",
                            n.len() * 8
                        )));
                    }
                    Material::Rsa { n, e }
                }
                Some("EC") => {
                    let (x, y) = (field("x")?, field("y")?);
                    let (size, crv) = match k.get("crv").and_then(Value::as_str) {
                        Some("P-256") => (32, 256),
                        Some("P-384") => (48, 384),
                        _ => continue,
                    };
                    if x.len() != size || y.len() != size {
                        return Err(fail(format!("P-{crv} coordinates must be {size} bytes")));
                    }
                    let mut point = Vec::with_capacity(1 + 2 * size);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    if crv == 256 {
                        Material::P256(point)
                    } else {
                        Material::P384(point)
                    }
                }
                Some("OKP") => {
                    if k.get("crv").and_then(Value::as_str) != Some("Ed25519") {
                        continue;
                    }
                    let x = field("x")?;
                    if x.len() != 32 {
                        return Err(fail("an Ed25519 key is 32 bytes".into()));
                    }
                    Material::Ed25519(x)
                }
                _ => continue,
            };
            if let Some(kid) = &kid {
                jwks.by_kid.insert(kid.clone(), jwks.keys.len());
            }
            jwks.keys.push(Jwk { alg, material });
        }
        Ok(jwks)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this id is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}

/// A token split and decoded, signature not yet checked. Cheap to make: the gateway uses it
/// to route a token to its issuer before verifying.
#[derive(Debug)]
pub struct Unverified<'a> {
    signing_input: &'a str,
    signature: Vec<u8>,
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Map<String, Value>,
}

impl<'a> Unverified<'a> {
    pub fn parse(token: &'a str) -> Result<Unverified<'a>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(token.len()));
        }
        let malformed = |m: &str| TokenError::Malformed(m.to_owned());
        let (signing_input, sig_b64) = token
            .rsplit_once('.')
            .ok_or_else(|| malformed("a JWT is three base64url parts separated by dots"))?;
        let (header_b64, payload_b64) = signing_input
            .split_once('.')
            .ok_or_else(|| malformed("a JWT is three base64url parts separated by dots"))?;
        if payload_b64.contains('.') {
            return Err(malformed(
                "five parts: this is an encrypted token (JWE); custos accepts signed tokens (JWS)",
            ));
        }
        let decode = |part: &str, what: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|e| TokenError::Malformed(format!("the {what} is not base64url: {e}")))
        };
        let header: Value = serde_json::from_slice(&decode(header_b64, "header")?)
            .map_err(|e| TokenError::Malformed(format!("the header is not JSON: {e}")))?;
        let Value::Object(header) = header else {
            return Err(malformed("the header is not a JSON object"));
        };
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a.clone(),
            _ => return Err(malformed("the header has no `alg` string")),
        };
        if header.contains_key("crit") {
            return Err(malformed(
                "the header lists critical extensions (`crit`) that custos does not implement",
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(malformed("the header's `kid` is not a string")),
        };
        let payload: Value = serde_json::from_slice(&decode(payload_b64, "payload")?)
            .map_err(|e| TokenError::Malformed(format!("the payload is not JSON: {e}")))?;
        let Value::Object(claims) = payload else {
            return Err(malformed("the payload is not a JSON object"));
        };
        let signature = decode(sig_b64, "signature")?;
        Ok(Unverified {
            signing_input,
            signature,
            alg,
            kid,
            claims,
        })
    }

    /// The `iss` claim, if the token has one.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// What a verified token says about its bearer, after claim mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub issuer: String,
    pub subject: String,
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    /// The token shows a second factor (`amr` lists one of mfa, otp, hwk, swk, sms, fido…).
    pub mfa: bool,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Verifies tokens of one issuer.
#[derive(Clone, Debug)]
pub struct Validator {
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Alg>,
    leeway_s: i64,
    default_tenant: Option<String>,
    /// The tenants this issuer may speak for; `None`: every tenant.
    tenants: Option<Vec<String>>,
    claims: ClaimNames,
}

/// Errors in an issuer's configuration that only show when building the validator.
#[derive(Debug, thiserror::Error)]
#[error("auth.jwt issuer {issuer:?}: unknown algorithm {alg:?} (known: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA; HS* and none are never accepted)")]
pub struct UnknownAlgorithm {
    pub issuer: String,
    pub alg: String,
}

impl Validator {
    pub fn new(config: &JwtIssuerConfig) -> Result<Validator, UnknownAlgorithm> {
        let algorithms = if config.algorithms.is_empty() {
            Alg::ALL.to_vec()
        } else {
            config
                .algorithms
                .iter()
                .map(|a| {
                    Alg::parse(a).ok_or_else(|| UnknownAlgorithm {
                        issuer: config.issuer.clone(),
                        alg: a.clone(),
                    })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Validator {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            algorithms,
            leeway_s: i64::try_from(config.leeway.0.as_secs()).unwrap_or(i64::MAX),
            default_tenant: config.default_tenant.clone(),
            tenants: config.allowed_tenants(),
            claims: config.claims.clone(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The same issuer's validator for tokens meant for `audience` (an OIDC client's ID
    /// tokens, whose audience is the client id).
    pub fn for_audience(&self, audience: &str) -> Validator {
        Validator {
            audience: vec![audience.to_owned()],
            ..self.clone()
        }
    }

    /// The clock skew tolerated, in seconds.
    pub fn leeway_s(&self) -> i64 {
        self.leeway_s
    }

    /// Verifies the signature, then `iss`, `exp`, `nbf`, `aud`, then maps the claims.
    /// `now` is Unix seconds.
    pub fn validate(
        &self,
        token: &Unverified<'_>,
        jwks: &Jwks,
        now: i64,
    ) -> Result<TokenClaims, TokenError> {
        let alg = Alg::parse(&token.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| TokenError::AlgorithmRefused(token.alg.clone()))?;
        let fits = |k: &Jwk| k.material.fits(alg) && k.alg.is_none_or(|a| a == alg);
        let msg = token.signing_input.as_bytes();
        let verified = match &token.kid {
            Some(kid) => {
                let key = jwks
                    .by_kid
                    .get(kid)
                    .map(|i| &jwks.keys[*i])
                    .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
                if !fits(key) {
                    return Err(TokenError::AlgorithmRefused(format!(
                        "{} (key {kid:?} is not a key for it)",
                        token.alg
                    )));
                }
                key.material.verify(alg, msg, &token.signature)
            }
            // Without a kid, any key of the right type may have signed it.
            None => jwks
                .keys
                .iter()
                .filter(|k| fits(k))
                .any(|k| k.material.verify(alg, msg, &token.signature)),
        };
        if !verified {
            return Err(TokenError::BadSignature);
        }
        let c = &token.claims;
        match c.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(iss)) => return Err(TokenError::WrongIssuer(iss.clone())),
            _ => return Err(TokenError::Claim("`iss` is missing or not a string".into())),
        }
        let exp = numeric_date(c, "exp")?
            .ok_or_else(|| TokenError::Claim("`exp` is missing: tokens must expire".into()))?;
        if now > exp.saturating_add(self.leeway_s) {
            return Err(TokenError::Expired {
                exp,
                now,
                leeway_s: self.leeway_s,
            });
        }
        if let Some(nbf) = numeric_date(c, "nbf")? {
            if now < nbf.saturating_sub(self.leeway_s) {
                return Err(TokenError::NotYetValid {
                    nbf,
                    now,
                    leeway_s: self.leeway_s,
                });
            }
        }
        let audiences = match c.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(TokenError::Claim("`aud` is not a string or array".into())),
            None => Vec::new(),
        };
        if !audiences
            .iter()
            .any(|a| self.audience.iter().any(|e| e == a))
        {
            return Err(TokenError::WrongAudience {
                found: if audiences.is_empty() {
                    "(none)".into()
                } else {
                    audiences.join(", ")
                },
                expected: self.audience.join(", "),
            });
        }
        self.map_claims(c, exp)
    }

    fn map_claims(&self, c: &Map<String, Value>, exp: i64) -> Result<TokenClaims, TokenError> {
        let names = &self.claims;
        let subject = match claim(c, &names.subject) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(TokenError::Claim(format!(
                    "`{}` (the subject) is missing or not a string",
                    names.subject
                )))
            }
        };
        let text = |name: &str| -> Result<Option<String>, TokenError> {
            match claim(c, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(TokenError::Claim(format!("`{name}` is not a string"))),
            }
        };
        let tenant = text(&names.tenant)?.or_else(|| self.default_tenant.clone());
        if let (Some(t), Some(allowed)) = (&tenant, &self.tenants) {
            if !allowed.iter().any(|a| a == t) {
                return Err(TokenError::Claim(format!(
                    "issuer {:?} is not trusted for tenant {t:?} (its `tenants`: {})",
                    self.issuer,
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
        }
        let team = text(&names.team)?;
        let roles = string_list(c, &names.roles)?;
        let groups = string_list(c, &names.groups)?;
        let mut scopes = string_list(c, &names.scopes)?;
        if names.scopes == "scope" && scopes.is_empty() {
            scopes = string_list(c, "scp")?;
        }
        let amr = string_list(c, &names.mfa)?;
        let mfa = amr.iter().any(|m| {
            matches!(
                m.as_str(),
                "mfa" | "otp" | "hwk" | "swk" | "sms" | "fido" | "face" | "fpt" | "iris" | "sc"
            )
        });
        Ok(TokenClaims {
            issuer: self.issuer.clone(),
            subject,
            tenant,
            team,
            roles,
            groups,
            scopes,
            mfa,
            expires_at: exp,
        })
    }
}

/// A claim by exact name, else by dotted path into nested objects.
fn claim<'c>(c: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if let Some(v) = c.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = c.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A list claim: a JSON array of strings, or one space-separated string (OAuth `scope`).
fn string_list(c: &Map<String, Value>, name: &str) -> Result<Vec<String>, TokenError> {
    match claim(c, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| TokenError::Claim(format!("`{name}` holds a non-string")))
            })
            .collect(),
        Some(_) => Err(TokenError::Claim(format!(
            "`{name}` is not a string or an array of strings"
        ))),
    }
}

/// A NumericDate claim (seconds, possibly fractional) as whole seconds.
fn numeric_date(c: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err(TokenError::Claim(format!("`{name}` is not a valid date"))),
            }
        }
        Some(_) => Err(TokenError::Claim(format!(
            "`{name}` is not a number of seconds"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{b64, TestIssuer};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn config(issuer: &str) -> JwtIssuerConfig {
        JwtIssuerConfig::new(issuer, "custos")
    }

    fn check(t: &TestIssuer, token: &str) -> Result<TokenClaims, TokenError> {
        let jwks = Jwks::parse(t.jwks().as_bytes()).unwrap();
        let v = Validator::new(&config(&t.issuer)).unwrap();
        Unverified::parse(token).and_then(|u| v.validate(&u, &jwks, NOW))
    }

    #[test]
    fn eddsa_and_es256_tokens_map_to_claims() {
        let t = TestIssuer::new("https://idp.example");
        let mut c = t.claims("alice", "custos", NOW);
        c["tenant"] = json!("acme");
        c["team"] = json!("search");
        c["roles"] = json!(["developer"]);
        c["scope"] = json!("custos:chat custos:models");
        c["amr"] = json!(["pwd", "otp"]);
        let got = check(&t, &t.token(&c)).unwrap();
        assert_eq!(got.subject, "alice");
        assert_eq!(got.tenant.as_deref(), Some("acme"));
        assert_eq!(got.team.as_deref(), Some("search"));
        assert_eq!(got.roles, ["developer"]);
        assert_eq!(got.scopes, ["custos:chat", "custos:models"]);
        assert!(got.mfa);
        let es = t.sign(&json!({"alg": "ES256", "kid": "ec-1"}), &c);
        assert_eq!(check(&t, &es).unwrap(), got);
        // Without a kid, the key of the right type is found.
        let es = t.sign(&json!({"alg": "ES256"}), &c);
        assert_eq!(check(&t, &es).unwrap().subject, "alice");
    }

    #[test]
    fn rs256_and_ps256_verify_against_an_rsa_jwk() {
        use rsa::pkcs1v15::SigningKey;
        use rsa::pss::BlindedSigningKey;
        use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
        use rsa::traits::PublicKeyParts;
        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "r1", "n": b64(&key.n().to_bytes_be()),
                                    "e": b64(&key.e().to_bytes_be())}]});
        let jwks = Jwks::parse(jwks.to_string().as_bytes()).unwrap();
        let claims = json!({"iss": "https://idp", "sub": "svc", "aud": ["other", "custos"],
                            "exp": NOW + 10, "tenant": "acme"});
        let v = Validator::new(&config("https://idp")).unwrap();
        let input = |alg: &str| {
            format!(
                "{}.{}",
                b64(json!({"alg": alg, "kid": "r1"}).to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            )
        };
        let rs = input("RS256");
        let sig = SigningKey::<sha2::Sha256>::new(key.clone()).sign(rs.as_bytes());
        let token = format!("{rs}.{}", b64(&sig.to_bytes()));
        let got = v
            .validate(&Unverified::parse(&token).unwrap(), &jwks, NOW)
            .unwrap();
        assert_eq!(got.subject, "svc");
        let ps = input("PS256");
        let sig =
            BlindedSigningKey::<sha2::Sha256>::new(key).sign_with_rng(&mut rng, ps.as_bytes());
        let token = format!("{ps}.{}", b64(&sig.to_bytes()));
        assert!(v
            .validate(&Unverified::parse(&token).unwrap(), &jwks, NOW)
            .is_ok());
        // The same signature under another header is a tampered token.
        let forged = format!("{}.{}", input("PS384"), token.rsplit_once('.').unwrap().1);
        assert_eq!(
            v.validate(&Unverified::parse(&forged).unwrap(), &jwks, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn every_bad_token_has_its_own_error() {
        let t = TestIssuer::new("https://idp.example");
        let good = t.claims("alice", "custos", NOW);
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            t.token(&c)
        };
        let slug = |token: &str| check(&t, token).unwrap_err().slug();
        assert_eq!(slug(&"a".repeat(MAX_TOKEN_BYTES + 1)), "token-too-large");
        assert_eq!(slug("not-a-token"), "token-malformed");
        assert_eq!(slug("a.b.c.d.e"), "token-malformed");
        assert_eq!(slug("e30.e30."), "token-malformed"); // header {} has no alg
        assert_eq!(slug(&with("exp", json!(NOW - 61))), "token-expired");
        assert!(
            check(&t, &with("exp", json!(NOW - 59))).is_ok(),
            "inside the leeway"
        );
        assert_eq!(slug(&with("nbf", json!(NOW + 61))), "token-not-yet-valid");
        assert_eq!(
            slug(&with("aud", json!("someone-else"))),
            "token-wrong-audience"
        );
        assert_eq!(
            slug(&with("iss", json!("https://evil"))),
            "token-wrong-issuer"
        );
        assert_eq!(slug(&with("exp", json!("tomorrow"))), "token-claims");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(slug(&t.token(&no_exp)), "token-claims");
        let unknown = t.sign(&json!({"alg": "EdDSA", "kid": "rotated-away"}), &good);
        assert_eq!(slug(&unknown), "token-unknown-key");
        // Tampered payload: same header and signature, different claims.
        let token = t.token(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let evil = b64(with_sub(&good, "root").to_string().as_bytes());
        assert_eq!(
            slug(&format!("{}.{evil}.{}", parts[0], parts[2])),
            "token-bad-signature"
        );
        // alg none, HMAC with the public key as secret, and an algorithm/key mismatch.
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(slug(&none), "token-algorithm-refused");
        let hs = t.sign(&json!({"alg": "HS256", "kid": "ed-1"}), &good);
        assert_eq!(slug(&hs), "token-algorithm-refused");
        let mismatch = t.sign(&json!({"alg": "ES256", "kid": "ed-1"}), &good);
        assert_eq!(slug(&mismatch), "token-algorithm-refused");
    }

    fn with_sub(c: &Value, sub: &str) -> Value {
        let mut c = c.clone();
        c["sub"] = json!(sub);
        c
    }

    #[test]
    fn claim_mapping_reads_paths_and_namespaced_names() {
        let t = TestIssuer::new("https://kc");
        let mut cfg = config("https://kc");
        cfg.claims.roles = "realm_access.roles".into();
        cfg.claims.tenant = "https://custos.dev/tenant".into();
        cfg.claims.scopes = "scp".into();
        cfg.default_tenant = Some("fallback".into());
        let v = Validator::new(&cfg).unwrap();
        let jwks = Jwks::parse(t.jwks().as_bytes()).unwrap();
        let mut c = t.claims("bob", "custos", NOW);
        c["realm_access"] = json!({"roles": ["auditor", "developer"]});
        c["https://custos.dev/tenant"] = json!("globex");
        c["scp"] = json!(["custos:chat"]);
        let got = v
            .validate(&Unverified::parse(&t.token(&c)).unwrap(), &jwks, NOW)
            .unwrap();
        assert_eq!(got.roles, ["auditor", "developer"]);
        assert_eq!(got.tenant.as_deref(), Some("globex"));
        assert_eq!(got.scopes, ["custos:chat"]);
        assert!(!got.mfa);
        c.as_object_mut()
            .unwrap()
            .remove("https://custos.dev/tenant");
        let got = v
            .validate(&Unverified::parse(&t.token(&c)).unwrap(), &jwks, NOW)
            .unwrap();
        assert_eq!(got.tenant.as_deref(), Some("fallback"));
        c["realm_access"] = json!({"roles": [1, 2]});
        let err = v
            .validate(&Unverified::parse(&t.token(&c)).unwrap(), &jwks, NOW)
            .unwrap_err();
        assert_eq!(err.slug(), "token-claims");
    }

    #[test]
    fn an_issuer_speaks_only_for_its_tenants() {
        let t = TestIssuer::new("https://idp-a");
        let mut cfg = config("https://idp-a");
        cfg.tenants = vec!["acme".into()];
        let v = Validator::new(&cfg).unwrap();
        let jwks = Jwks::parse(t.jwks().as_bytes()).unwrap();
        let run = |c: &Value| v.validate(&Unverified::parse(&t.token(c)).unwrap(), &jwks, NOW);
        let mut c = t.claims("alice", "custos", NOW);
        c["tenant"] = json!("acme");
        assert_eq!(run(&c).unwrap().tenant.as_deref(), Some("acme"));
        c["tenant"] = json!("globex");
        let err = run(&c).unwrap_err();
        assert_eq!(err.slug(), "token-claims");
        assert!(
            err.to_string()
                .contains("not trusted for tenant \"globex\""),
            "{err}"
        );
        // No tenant list but a default tenant: that tenant only.
        cfg.tenants = Vec::new();
        cfg.default_tenant = Some("acme".into());
        let v = Validator::new(&cfg).unwrap();
        let run = |c: &Value| v.validate(&Unverified::parse(&t.token(c)).unwrap(), &jwks, NOW);
        assert_eq!(run(&c).unwrap_err().slug(), "token-claims");
        c.as_object_mut().unwrap().remove("tenant");
        assert_eq!(run(&c).unwrap().tenant.as_deref(), Some("acme"));
        // "*" trusts the issuer for every tenant.
        cfg.tenants = vec!["*".into()];
        let v = Validator::new(&cfg).unwrap();
        c["tenant"] = json!("globex");
        let got = v.validate(&Unverified::parse(&t.token(&c)).unwrap(), &jwks, NOW);
        assert_eq!(got.unwrap().tenant.as_deref(), Some("globex"));
    }

    #[test]
    fn restricted_algorithms_and_bad_key_sets() {
        let t = TestIssuer::new("https://idp");
        let mut cfg = config("https://idp");
        cfg.algorithms = vec!["ES256".into()];
        let v = Validator::new(&cfg).unwrap();
        let jwks = Jwks::parse(t.jwks().as_bytes()).unwrap();
        let token = t.token(&t.claims("a", "custos", NOW));
        let err = v
            .validate(&Unverified::parse(&token).unwrap(), &jwks, NOW)
            .unwrap_err();
        assert_eq!(err.slug(), "token-algorithm-refused");
        cfg.algorithms = vec!["HS256".into()];
        assert!(Validator::new(&cfg).is_err());
        assert!(matches!(Jwks::parse(b"{"), Err(JwksError::Json(_))));
        assert!(matches!(Jwks::parse(b"{}"), Err(JwksError::NoKeys)));
        let short = json!({"keys": [{"kty": "RSA", "n": b64(&[1; 128]), "e": "AQAB"}]});
        let err = Jwks::parse(short.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("2048"), "{err}");
        let bad = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k", "x": "!!"}]});
        let err = Jwks::parse(bad.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("kid Some(\"k\")"), "{err}");
        // Encryption keys and unknown key types are skipped, not errors.
        let skip = json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AA", "e": "AQAB"},
                                   {"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(Jwks::parse(skip.to_string().as_bytes()).unwrap().is_empty());
    }
}
