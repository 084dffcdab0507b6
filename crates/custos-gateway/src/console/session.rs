//! Console sessions as signed cookies: what signed in (a key's digest), for how long, and a
//! nonce the CSRF tokens of the session's forms are derived from. Nothing secret is in the
//! cookie and nothing is kept server-side, so any replica holding the same signing key
//! (`CUSTOS_CONSOLE_SECRET`) serves any session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The environment variable holding the signing key (32 or more bytes, base64 or hex).
pub const SECRET_ENV: &str = "CUSTOS_CONSOLE_SECRET";
/// The session cookie.
pub const COOKIE: &str = "custos_session";
/// The sign-in form's cookie: a nonce its CSRF token is bound to, before any session exists.
pub const SIGNIN_COOKIE: &str = "custos_signin";
/// Longest cookie value read or written; browsers keep about 4 KB per cookie.
pub const MAX_COOKIE: usize = 4000;
/// What session cookies are signed for.
const SESSION_LABEL: &[u8] = b"custos-console-session-v1\n";

type HmacSha256 = Hmac<Sha256>;

/// Why a session cookie was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("the session cookie is malformed")]
    Malformed,
    #[error("the session cookie's signature does not match (signed by another key, or altered)")]
    BadSignature,
    #[error("the session has expired; sign in again")]
    Expired,
    #[error("the session was signed out; sign in again")]
    Ended,
    #[error("{SECRET_ENV} must be 32 or more random bytes, written as base64 or hex")]
    WeakSecret,
}

/// What a session signed in with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "m", rename_all = "lowercase")]
pub enum Credential {
    /// A custos API key, by the hex SHA-256 digest the key index holds (never the key).
    Key { d: String },
    /// An OIDC sign-in: the verified claims of the provider's access token (never the token).
    Token { c: TokenFacts },
}

/// A verified token's claims as a session keeps them (`custos_authz::jwt::TokenClaims`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFacts {
    pub iss: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub mfa: bool,
    /// When the token expires (Unix seconds).
    pub exp: i64,
}

impl TokenFacts {
    pub fn of(c: &custos_authz::jwt::TokenClaims) -> Self {
        TokenFacts {
            iss: c.issuer.clone(),
            sub: c.subject.clone(),
            tenant: c.tenant.clone(),
            team: c.team.clone(),
            roles: c.roles.clone(),
            groups: c.groups.clone(),
            scopes: c.scopes.clone(),
            mfa: c.mfa,
            exp: c.expires_at,
        }
    }

    pub fn claims(&self) -> custos_authz::jwt::TokenClaims {
        custos_authz::jwt::TokenClaims {
            issuer: self.iss.clone(),
            subject: self.sub.clone(),
            tenant: self.tenant.clone(),
            team: self.team.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            scopes: self.scopes.clone(),
            mfa: self.mfa,
            expires_at: self.exp,
        }
    }
}

/// One signed-in session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(flatten)]
    pub credential: Credential,
    /// When it began and ends (ms since the epoch).
    pub iat: i64,
    pub exp: i64,
    /// Random, per session: CSRF tokens are derived from it.
    pub n: String,
}

/// Signs and opens session cookies and derives CSRF tokens.
pub struct Sessions {
    key: Vec<u8>,
    ttl_ms: i64,
    /// The key came from the environment (sessions outlive the process and cross replicas).
    pub shared: bool,
    /// Cookies are marked `Secure` (`[console] secure_cookies`: TLS here or behind a proxy).
    pub secure: bool,
    /// Sessions signed out through this process, by nonce, until they would have expired:
    /// a copy of a signed-out cookie is refused here.
    ended: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// Most signed-out sessions remembered; past it, the ones already expired are forgotten
/// first, and then no more are added (each still expires by itself).
const MAX_ENDED: usize = 100_000;

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl_ms", &self.ttl_ms)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// `n` random bytes, hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // The OS generator failing is not something a request can recover from; an all-zero
    // nonce would still be bound to this key, and the failure is logged.
    if let Err(e) = getrandom::fill(&mut b) {
        tracing::error!(error = %e, "the system random number generator failed");
    }
    hex::encode(b)
}

/// Reads a secret written as hex or base64 (standard or URL-safe, padded or not).
fn decode_secret(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(s).ok();
    }
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let unpadded = s.trim_end_matches('=');
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| B64.decode(unpadded))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded))
        .ok()
}

impl Sessions {
    /// Sessions signed with `secret` (from the environment), or with a random key of this
    /// process when there is none.
    pub fn new(secret: Option<&str>, ttl_ms: i64, secure: bool) -> Result<Self, SessionError> {
        let (key, shared) = match secret.filter(|s| !s.trim().is_empty()) {
            Some(s) => match decode_secret(s) {
                Some(k) if k.len() >= 32 => (k, true),
                _ => return Err(SessionError::WeakSecret),
            },
            None => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|_| SessionError::WeakSecret)?;
                (k, false)
            }
        };
        Ok(Self {
            key,
            ttl_ms,
            shared,
            secure,
            ended: Default::default(),
        })
    }

    /// Ends `s` in this process: its cookie no longer opens here.
    pub fn end(&self, s: &Session, now_ms: i64) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.len() >= MAX_ENDED {
            ended.retain(|_, exp| *exp > now_ms);
        }
        if ended.len() < MAX_ENDED {
            ended.insert(s.n.clone(), s.exp);
        } else {
            tracing::warn!(
                "too many signed-out console sessions to remember; this one ends when it expires"
            );
        }
    }

    fn mac(&self, label: &[u8], data: &[u8]) -> HmacSha256 {
        // Keys of any length are accepted by HMAC.
        let mut m = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        m.update(label);
        m.update(data);
        m
    }

    /// A new session for `credential`, starting `now_ms`.
    pub fn start(&self, credential: Credential, now_ms: i64) -> Session {
        self.start_until(credential, now_ms, i64::MAX)
    }

    /// A new session that ends at `until_ms` if that is before its time is up.
    pub fn start_until(&self, credential: Credential, now_ms: i64, until_ms: i64) -> Session {
        Session {
            credential,
            iat: now_ms,
            exp: now_ms.saturating_add(self.ttl_ms).min(until_ms),
            n: random_hex(16),
        }
    }

    /// How long a new session lasts, in seconds (the cookie's `Max-Age`).
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_ms / 1000
    }

    /// `value` as `payload.signature` (both base64url), signed for the purpose `label` so
    /// that no signed value passes for one of another kind.
    pub fn seal_value<T: Serialize>(&self, label: &[u8], value: &T) -> String {
        let payload = B64.encode(serde_json::to_vec(value).unwrap_or_default());
        let sig = B64.encode(self.mac(label, payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// A value sealed for `label` by this key.
    pub fn open_value<T: serde::de::DeserializeOwned>(
        &self,
        label: &[u8],
        sealed: &str,
    ) -> Result<T, SessionError> {
        if sealed.len() > MAX_COOKIE {
            return Err(SessionError::Malformed);
        }
        let (payload, sig) = sealed.split_once('.').ok_or(SessionError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| SessionError::Malformed)?;
        self.mac(label, payload.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| SessionError::BadSignature)?;
        let json = B64.decode(payload).map_err(|_| SessionError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| SessionError::Malformed)
    }

    /// The cookie value of `s`.
    pub fn seal(&self, s: &Session) -> String {
        self.seal_value(SESSION_LABEL, s)
    }

    /// The session in a cookie value, if it is well-formed, signed by this key and current.
    pub fn open(&self, cookie: &str, now_ms: i64) -> Result<Session, SessionError> {
        let s: Session = self.open_value(SESSION_LABEL, cookie)?;
        if now_ms >= s.exp || now_ms < s.iat.saturating_sub(300_000) {
            return Err(SessionError::Expired);
        }
        if self
            .ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&s.n)
        {
            return Err(SessionError::Ended);
        }
        Ok(s)
    }

    /// The CSRF token of forms bound to `nonce` (a session's, or the sign-in cookie's).
    pub fn csrf(&self, nonce: &str) -> String {
        B64.encode(
            self.mac(b"custos-console-csrf-v1\n", nonce.as_bytes())
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `token` is the CSRF token for `nonce` (compared in constant time).
    pub fn csrf_ok(&self, nonce: &str, token: &str) -> bool {
        if nonce.is_empty() {
            return false;
        }
        match B64.decode(token.trim()) {
            Ok(t) => self
                .mac(b"custos-console-csrf-v1\n", nonce.as_bytes())
                .verify_slice(&t)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// The `Set-Cookie` value for `name` = `value`, valid for `max_age` seconds (0 deletes).
    pub fn cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sessions() -> Sessions {
        Sessions::new(Some(&"ab".repeat(32)), 3_600_000, false).unwrap()
    }

    fn key(d: &str) -> Credential {
        Credential::Key { d: d.into() }
    }

    #[test]
    fn a_sealed_session_opens_until_it_expires() {
        let s = sessions();
        let sess = s.start(key("00ff"), 1_000_000);
        let c = s.seal(&sess);
        assert_eq!(s.open(&c, 1_000_001).unwrap(), sess);
        assert_eq!(
            s.open(&c, 1_000_000 + 3_600_000),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn a_signed_out_session_stays_out() {
        let s = sessions();
        let sess = s.start(key("00ff"), 1_000);
        let c = s.seal(&sess);
        s.end(&sess, 2_000);
        assert_eq!(s.open(&c, 2_001), Err(SessionError::Ended));
        let other = s.start(key("00ff"), 1_000);
        assert!(s.open(&s.seal(&other), 2_001).is_ok());
    }

    #[test]
    fn an_altered_or_foreign_cookie_is_refused() {
        let s = sessions();
        let c = s.seal(&s.start(key("00ff"), 1_000));
        let (payload, sig) = c.split_once('.').unwrap();
        // Another digest under the same signature.
        let forged = B64.encode(
            serde_json::to_vec(&Session {
                credential: key("11ee"),
                iat: 1_000,
                exp: i64::MAX,
                n: "x".into(),
            })
            .unwrap(),
        );
        assert_eq!(
            s.open(&format!("{forged}.{sig}"), 2_000),
            Err(SessionError::BadSignature)
        );
        let other = Sessions::new(Some(&"cd".repeat(32)), 3_600_000, false).unwrap();
        assert_eq!(other.open(&c, 2_000), Err(SessionError::BadSignature));
        assert_eq!(s.open(payload, 2_000), Err(SessionError::Malformed));
        assert_eq!(s.open("", 2_000), Err(SessionError::Malformed));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_nonce_and_key() {
        let s = sessions();
        let t = s.csrf("n1");
        assert!(s.csrf_ok("n1", &t));
        assert!(!s.csrf_ok("n2", &t));
        assert!(!s.csrf_ok("", &s.csrf("")));
        assert!(!s.csrf_ok("n1", "not base64 !"));
        let other = Sessions::new(Some(&"cd".repeat(32)), 3_600_000, false).unwrap();
        assert!(!other.csrf_ok("n1", &t));
    }

    #[test]
    fn secrets_must_be_long_enough() {
        assert_eq!(
            Sessions::new(Some("short"), 1, false).unwrap_err(),
            SessionError::WeakSecret
        );
        let b64 = B64.encode([7u8; 32]);
        assert!(Sessions::new(Some(&b64), 1, false).unwrap().shared);
        let random = Sessions::new(None, 1, false).unwrap();
        assert!(!random.shared);
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = "a=1; custos_session_x=2; custos_session=3";
        assert_eq!(cookie_value(h, COOKIE), Some("3"));
        assert_eq!(cookie_value(h, "b"), None);
        let s = Sessions::new(None, 1000, true).unwrap();
        assert!(s
            .cookie(COOKIE, "v", 1)
            .ends_with("SameSite=Strict; Secure"));
    }

    proptest! {
        #[test]
        fn arbitrary_cookies_never_open_or_panic(c in ".{0,300}") {
            let s = sessions();
            prop_assert!(s.open(&c, 0).is_err());
        }

        #[test]
        fn every_sealed_session_round_trips(d in "[0-9a-f]{0,64}", iat in 0i64..1i64<<40) {
            let s = sessions();
            let sess = s.start(key(&d), iat);
            prop_assert_eq!(s.open(&s.seal(&sess), iat).unwrap(), sess);
        }
    }
}
