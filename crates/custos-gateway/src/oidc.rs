//! JWT bearer tokens from the `[[auth.jwt]]` issuers → `Principal`.
//!
//! Each issuer's key set is loaded at start, refreshed every `jwks_refresh_interval`, and
//! fetched again when a token names an unknown `kid` (at most once per `jwks_min_refetch`,
//! 30 s by default, per issuer, so a flood of forged kids cannot hammer the IdP). A request
//! never waits on the network otherwise. Tenant and team names in the claims resolve to
//! custos' ids through the `Directory`.

use crate::providers::openai::{https_client, HttpClient};
use arc_swap::ArcSwap;
use bytes::Bytes;
use custos_authz::jwt::{Jwks, TokenClaims, TokenError, Unverified, Validator};
use custos_core::config::{JwtIssuerConfig, OperationScopes};
use custos_core::time::now_ms;
use http_body_util::{BodyExt, Full, Limited};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A key set larger than this is refused.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("auth.jwt issuer {issuer:?}: {message}")]
    Config { issuer: String, message: String },
    #[error("auth.jwt issuer {issuer:?}: cannot load its keys from {source_name}: {message}")]
    Keys {
        issuer: String,
        source_name: String,
        message: String,
    },
}

#[derive(Debug)]
enum KeySource {
    File(PathBuf),
    Url(String),
}

impl KeySource {
    fn name(&self) -> String {
        match self {
            KeySource::File(p) => p.display().to_string(),
            KeySource::Url(u) => u.clone(),
        }
    }
}

struct Issuer {
    validator: Validator,
    scopes: OperationScopes,
    source: KeySource,
    refresh: Duration,
    min_refetch: Duration,
    jwks: ArcSwap<Jwks>,
    last_fetch_ms: AtomicI64,
    fetching: tokio::sync::Mutex<()>,
}

/// Every trusted issuer, looked up by the token's `iss`.
pub struct Issuers {
    list: Vec<Issuer>,
    client: HttpClient,
    /// Tokens already verified, until they expire: a client sends the same token for many
    /// calls, and a signature check costs 50–70 µs. An entry counts only while the issuer's
    /// key set is the one it was verified against.
    verified: std::sync::Mutex<HashMap<String, Verified>>,
}

struct Verified {
    issuer: usize,
    claims: TokenClaims,
    /// Unix seconds after which the token is expired even with the leeway.
    valid_until: i64,
    jwks: Arc<Jwks>,
}

/// Verified tokens kept before the cache starts over.
const VERIFIED_CAPACITY: usize = 65_536;

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|i| i.validator.issuer()))
            .finish()
    }
}

impl Issuers {
    /// Builds the issuers and loads their keys. A key file that does not parse stops the
    /// start; an unreachable key URL only warns (API keys keep working, and the keys are
    /// fetched again on the next refresh or unknown `kid`).
    pub async fn load(configs: &[JwtIssuerConfig]) -> Result<Self, IssuerError> {
        let client = https_client(Duration::from_secs(5));
        let mut list = Vec::with_capacity(configs.len());
        for c in configs {
            let validator = Validator::new(c).map_err(|e| IssuerError::Config {
                issuer: c.issuer.clone(),
                message: e.to_string(),
            })?;
            let source = match (&c.jwks_file, &c.jwks_url) {
                (Some(f), _) => KeySource::File(f.clone()),
                (None, Some(u)) => KeySource::Url(u.clone()),
                (None, None) => {
                    return Err(IssuerError::Config {
                        issuer: c.issuer.clone(),
                        message: "set `jwks_file` or `jwks_url`".into(),
                    })
                }
            };
            list.push(Issuer {
                validator,
                scopes: c.scopes.clone(),
                source,
                refresh: c.jwks_refresh_interval.0.max(c.jwks_min_refetch.0),
                min_refetch: c.jwks_min_refetch.0,
                jwks: ArcSwap::from_pointee(Jwks::default()),
                last_fetch_ms: AtomicI64::new(i64::MIN / 2),
                fetching: tokio::sync::Mutex::new(()),
            });
        }
        let issuers = Issuers {
            list,
            client,
            verified: std::sync::Mutex::new(HashMap::new()),
        };
        for issuer in &issuers.list {
            match issuers.fetch(issuer).await {
                Ok(_) => {}
                Err(e) if matches!(issuer.source, KeySource::File(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "issuer keys not loaded yet; tokens of this issuer fail until they are")
                }
            }
        }
        Ok(issuers)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The scopes an issuer's tokens need per operation, if `issuer` is one of them.
    pub fn scopes_of(&self, issuer: &str) -> Option<&OperationScopes> {
        self.list
            .iter()
            .find(|i| i.validator.issuer() == issuer)
            .map(|i| &i.scopes)
    }

    /// Reads one issuer's key set from its source and swaps it in.
    async fn fetch(&self, issuer: &Issuer) -> Result<usize, IssuerError> {
        issuer.last_fetch_ms.store(now_ms(), Ordering::Relaxed);
        let fail = |message: String| IssuerError::Keys {
            issuer: issuer.validator.issuer().to_owned(),
            source_name: issuer.source.name(),
            message,
        };
        let bytes = match &issuer.source {
            KeySource::File(p) => tokio::fs::read(p).await.map_err(|e| fail(e.to_string()))?,
            KeySource::Url(u) => self.get(u).await.map_err(fail)?,
        };
        let jwks = Jwks::parse(&bytes).map_err(|e| fail(e.to_string()))?;
        let n = jwks.len();
        issuer.jwks.store(Arc::new(jwks));
        Ok(n)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|e| crate::providers::openai::error_chain(&e))?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let body = Limited::new(res.into_body(), MAX_JWKS_BYTES);
        let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
            .await
            .map_err(|_| "the key set did not arrive within 10 s".to_owned())?
            .map_err(|e| format!("reading the key set: {e}"))?;
        Ok(body.to_bytes().to_vec())
    }

    /// Fetches again if the last fetch is older than the issuer's `min_refetch`; concurrent
    /// callers share one fetch.
    async fn refetch_if_stale(&self, issuer: &Issuer) {
        let stale = |i: &Issuer| {
            now_ms() - i.last_fetch_ms.load(Ordering::Relaxed) >= i.min_refetch.as_millis() as i64
        };
        if !stale(issuer) {
            return;
        }
        let _one = issuer.fetching.lock().await;
        if stale(issuer) {
            if let Err(e) = self.fetch(issuer).await {
                tracing::warn!(error = %e, "refreshing issuer keys after an unknown kid failed");
            }
        }
    }

    /// Verifies a bearer token and returns its claims and the scopes its issuer requires.
    pub async fn verify(&self, token: &str) -> Result<(TokenClaims, &OperationScopes), TokenError> {
        let now = now_ms().div_euclid(1000);
        {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = cache.get(token) {
                let issuer = &self.list[v.issuer];
                if now <= v.valid_until && Arc::ptr_eq(&v.jwks, &issuer.jwks.load()) {
                    return Ok((v.claims.clone(), &issuer.scopes));
                }
            }
        }
        let unverified = Unverified::parse(token)?;
        let iss = unverified.issuer().unwrap_or("");
        let Some((index, issuer)) = self
            .list
            .iter()
            .enumerate()
            .find(|(_, i)| i.validator.issuer() == iss)
        else {
            return Err(TokenError::WrongIssuer(if iss.is_empty() {
                "(none)".into()
            } else {
                iss.to_owned()
            }));
        };
        let mut jwks = issuer.jwks.load_full();
        let missing = match &unverified.kid {
            Some(kid) => !jwks.has_kid(kid),
            None => jwks.is_empty(),
        };
        if missing {
            self.refetch_if_stale(issuer).await;
            jwks = issuer.jwks.load_full();
        }
        let claims = issuer.validator.validate(&unverified, &jwks, now)?;
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CAPACITY {
            cache.clear();
        }
        cache.insert(
            token.to_owned(),
            Verified {
                issuer: index,
                claims: claims.clone(),
                valid_until: claims
                    .expires_at
                    .saturating_add(issuer.validator.leeway_s()),
                jwks,
            },
        );
        Ok((claims, &issuer.scopes))
    }

    /// Verifies an OIDC ID token of `issuer` for `client_id` (its audience): signature,
    /// `iss`, `exp`, `nbf`, `aud`; returns its claims and its `nonce`. Never cached: each is
    /// seen once, at sign-in.
    pub async fn verify_id_token(
        &self,
        token: &str,
        issuer: &str,
        client_id: &str,
    ) -> Result<(TokenClaims, Option<String>), TokenError> {
        let unverified = Unverified::parse(token)?;
        let Some(found) = self.list.iter().find(|i| i.validator.issuer() == issuer) else {
            return Err(TokenError::WrongIssuer(issuer.to_owned()));
        };
        let mut jwks = found.jwks.load_full();
        let missing = match &unverified.kid {
            Some(kid) => !jwks.has_kid(kid),
            None => jwks.is_empty(),
        };
        if missing {
            self.refetch_if_stale(found).await;
            jwks = found.jwks.load_full();
        }
        let claims = found.validator.for_audience(client_id).validate(
            &unverified,
            &jwks,
            now_ms().div_euclid(1000),
        )?;
        let nonce = unverified
            .claims
            .get("nonce")
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        Ok((claims, nonce))
    }

    /// Refreshes every issuer's keys on its interval until the handle is aborted.
    pub fn spawn_refresher(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let tick = self
                .list
                .iter()
                .map(|i| i.refresh)
                .min()
                .unwrap_or(Duration::from_secs(3600));
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                for issuer in &self.list {
                    let age = now_ms() - issuer.last_fetch_ms.load(Ordering::Relaxed);
                    if age >= issuer.refresh.as_millis() as i64 - 1_000 {
                        if let Err(e) = self.fetch(issuer).await {
                            tracing::warn!(error = %e, "issuer key refresh failed; keeping the last keys");
                        }
                    }
                }
            }
        })
    }
}
