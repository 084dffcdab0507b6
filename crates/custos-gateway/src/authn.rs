//! authn: `Authorization: Bearer <key or JWT>` → `Principal`: custos API keys against an
//! in-memory key index, JWTs against the `[[auth.jwt]]` issuers (see `oidc`).
//!
//! The index is loaded at start and refreshed from the store every `key_refresh_interval`,
//! reading only rows changed since the last refresh, so a key revoked by any process sharing
//! the database stops working here within one interval. Expiry is checked per request.

use crate::metrics::CallLabels;
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use crate::tls::PeerCertificate;
use arc_swap::ArcSwap;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use custos_authz::{KeyCheck, KeyDigest, KeyIndex, KeyRecord, TokenError};
use custos_core::config::OperationScopes;
use custos_core::principal::{AuthMethod, ModelScope, Principal, SharedPrincipal};
use custos_core::time::now_ms;
use custos_store::{KeyRow, Store, StoreError};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Rows changed this long before the newest change seen are read again on each refresh, so a
/// write whose commit lands late (or from a process with a slightly slower clock) is not missed.
const REFRESH_OVERLAP_MS: i64 = 5_000;

pub struct KeyCache {
    index: ArcSwap<KeyIndex>,
    watermark: AtomicI64,
    last_ok_ms: AtomicI64,
    /// One refresh at a time: overlapping ones could each upsert into the same old index and
    /// the later store would drop the other's keys.
    refreshing: tokio::sync::Mutex<()>,
}

impl KeyCache {
    /// Loads every key from the store.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let cache = Self {
            index: ArcSwap::from_pointee(KeyIndex::default()),
            watermark: AtomicI64::new(i64::MIN + REFRESH_OVERLAP_MS),
            last_ok_ms: AtomicI64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
        };
        cache.refresh(store).await?;
        Ok(cache)
    }

    /// Reads keys changed since the last refresh and swaps in an updated index.
    pub async fn refresh(&self, store: &Store) -> Result<usize, StoreError> {
        let _one = self.refreshing.lock().await;
        let since = self.watermark.load(Ordering::Relaxed) - REFRESH_OVERLAP_MS;
        let rows = store.keys_changed_since(since).await?;
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        if rows.is_empty() {
            return Ok(0);
        }
        let newest = rows.iter().map(|r| r.updated_at).max().unwrap_or(since);
        let count = rows.len();
        let mut next = KeyIndex::clone(&self.index.load());
        next.upsert(rows.into_iter().filter_map(record_from_row));
        self.index.store(Arc::new(next));
        self.watermark.fetch_max(newest, Ordering::Relaxed);
        Ok(count)
    }

    pub fn check(&self, presented: &str) -> KeyCheck {
        self.index.load().check(presented, now_ms())
    }

    /// Checks the key behind a console session by its digest.
    pub fn check_digest(&self, digest: &KeyDigest) -> KeyCheck {
        self.index.load().check_digest(digest, now_ms())
    }

    pub fn len(&self) -> usize {
        self.index.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Epoch ms of the last successful refresh (for `/readyz`).
    pub fn last_refresh_ms(&self) -> i64 {
        self.last_ok_ms.load(Ordering::Relaxed)
    }

    /// Refreshes in the background until the returned handle is aborted.
    pub fn spawn_refresher(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        crate::spawn_every(
            interval,
            "key refresh failed; serving from the last loaded keys",
            move || {
                let (this, store) = (self.clone(), store.clone());
                async move { this.refresh(&store).await.map(|_| ()) }
            },
        )
    }
}

fn limit(v: Option<i64>) -> Option<u32> {
    v.filter(|v| *v > 0)
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// Builds the index record of a stored key; rows with a corrupt digest are skipped (and logged).
pub fn record_from_row(row: KeyRow) -> Option<KeyRecord> {
    let Some(digest) = KeyDigest::from_hex(&row.digest_hex) else {
        tracing::error!(key_id = %row.id, "stored key digest is not 64 hex characters; key ignored");
        return None;
    };
    let principal = Principal {
        id: row.id.clone(),
        method: AuthMethod::ApiKey,
        tenant_id: row.tenant_id,
        tenant: row.tenant,
        team_id: row.team_id,
        team: row.team,
        app_id: row.app_id,
        app: row.app,
        env: row.env,
        models: ModelScope::parse(&row.models),
        rpm: limit(row.rpm),
        tpm: limit(row.tpm),
        team_rpm: limit(row.team_rpm),
        team_tpm: limit(row.team_tpm),
        roles: row.roles,
        ..Principal::default()
    };
    let mut principal = principal;
    principal.qualify();
    Some(KeyRecord {
        id: row.id,
        digest,
        principal: Arc::new(principal),
        expires_at_ms: row.expires_at,
        revoked_at_ms: row.revoked_at,
    })
}

/// The bearer token of a request, if it sent one.
fn bearer(req: &Request) -> Result<&str, Problem> {
    let Some(value) = req.headers().get(http::header::AUTHORIZATION) else {
        return Err(Problem::new(
            ProblemKind::MissingApiKey,
            "send your custos API key as `Authorization: Bearer ck_live_…`; create one with `custos keys create`",
        ));
    };
    let value = value.to_str().map_err(|_| {
        Problem::new(
            ProblemKind::InvalidApiKey,
            "the Authorization header is not ASCII",
        )
    })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::new(
            ProblemKind::InvalidApiKey,
            "the Authorization header must be `Bearer <key>`",
        ));
    }
    Ok(token.trim())
}

/// The problem answering a refused token; each refusal has its own type.
fn token_problem(e: TokenError) -> Problem {
    let kind = match &e {
        TokenError::TooLarge(_) => ProblemKind::TokenTooLarge,
        TokenError::Malformed(_) => ProblemKind::TokenMalformed,
        TokenError::AlgorithmRefused(_) => ProblemKind::TokenAlgorithmRefused,
        TokenError::UnknownKey(_) => ProblemKind::TokenUnknownKey,
        TokenError::BadSignature => ProblemKind::TokenBadSignature,
        TokenError::Expired { .. } => ProblemKind::TokenExpired,
        TokenError::NotYetValid { .. } => ProblemKind::TokenNotYetValid,
        TokenError::WrongAudience { .. } => ProblemKind::TokenWrongAudience,
        TokenError::WrongIssuer(_) => ProblemKind::TokenWrongIssuer,
        TokenError::Claim(_) => ProblemKind::TokenClaims,
    };
    // RFC 6750 §3: tell bearer-token clients what went wrong in the challenge too.
    Problem::new(kind, e.to_string()).with_header(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    )
}

/// The operation a path performs, and the scope a token needs for it.
fn required_scope<'s>(scopes: &'s OperationScopes, path: &str) -> &'s str {
    match path {
        "/v1/chat/completions" => &scopes.chat,
        "/v1/completions" => &scopes.completions,
        "/v1/embeddings" => &scopes.embeddings,
        "/v1/responses" => &scopes.responses,
        "/v1/usage" => &scopes.usage,
        p if p.starts_with("/v1/models") => &scopes.models,
        p if p.starts_with("/pii/") => &scopes.pii,
        p if p.starts_with("/admin/") => &scopes.admin,
        _ => "",
    }
}

/// A JWT's principal, if its signature, claims and scope hold.
async fn token_principal(
    state: &AppState,
    token: &str,
    path: &str,
) -> Result<SharedPrincipal, Problem> {
    let (claims, scopes) = state.issuers.verify(token).await.map_err(token_problem)?;
    let needed = required_scope(scopes, path);
    if !needed.is_empty() && !claims.scopes.iter().any(|s| s == needed) {
        return Err(Problem::new(
            ProblemKind::InsufficientScope,
            format!("this operation needs the scope {needed:?}, which the token does not carry"),
        )
        .with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_str(&format!(
                r#"Bearer error="insufficient_scope", scope="{needed}""#
            ))
            .unwrap_or_else(|_| http::HeaderValue::from_static("Bearer")),
        ));
    }
    state
        .directory
        .principal(claims)
        .map(Arc::new)
        .map_err(token_problem)
}

/// A client certificate's principal (mTLS), through `[[auth.mtls]]`.
fn cert_principal(
    state: &AppState,
    peer: Option<&PeerCertificate>,
) -> Result<SharedPrincipal, Problem> {
    let not_mapped = |detail: String| Problem::new(ProblemKind::CertificateNotMapped, detail);
    let peer = peer.ok_or_else(|| not_mapped("no client certificate".into()))?;
    let (mut p, _) = crate::tls::principal(&state.config.auth.mtls, peer).map_err(not_mapped)?;
    state.directory.resolve(&mut p).map_err(not_mapped)?;
    Ok(Arc::new(p))
}

/// An API key's principal.
fn key_principal(state: &AppState, token: &str) -> Result<SharedPrincipal, Problem> {
    match state.keys.check(token) {
        KeyCheck::Valid(p) => Ok(p),
        KeyCheck::Malformed(e) => Err(Problem::new(
            ProblemKind::InvalidApiKey,
            if token.matches('.').count() == 2 {
                "this looks like a JWT, but no `[[auth.jwt]]` issuer is configured; send a custos API key".to_owned()
            } else {
                format!("invalid API key: {e}")
            },
        )),
        KeyCheck::Unknown => Err(Problem::new(
            ProblemKind::InvalidApiKey,
            "invalid API key: no such key",
        )),
        KeyCheck::Expired { key_id } => Err(Problem::new(
            ProblemKind::ExpiredApiKey,
            format!("API key {key_id} has expired; ask for a new key"),
        )),
        KeyCheck::Revoked { key_id } => Err(Problem::new(
            ProblemKind::RevokedApiKey,
            format!("API key {key_id} was revoked"),
        )),
    }
}

/// The authn layer's middleware function: custos API keys (`ck_…`), else JWTs of the
/// configured issuers.
pub async fn authenticate<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let peer = req.extensions().get::<PeerCertificate>().cloned();
    let outcome = match bearer(&req) {
        Err(_) if peer.is_some() && !req.headers().contains_key(http::header::AUTHORIZATION) => {
            cert_principal(state, peer.as_ref())
        }
        Err(p) => Err(p),
        Ok(token) if !token.starts_with("ck_") && !state.issuers.is_empty() => {
            let token = token.to_owned();
            token_principal(state, &token, req.uri().path()).await
        }
        Ok(token) => key_principal(state, token),
    };
    match outcome {
        Ok(principal) => {
            if let Some(labels) = req.extensions().get::<Arc<CallLabels>>() {
                labels.set_team(&principal.team);
                labels.set_tenant(&principal.tenant);
            }
            if let Some(slot) = req.extensions().get::<Arc<crate::audit::AuditSlot>>() {
                slot.set_principal(&principal);
            }
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(problem) => {
            state.metrics.auth_failure(problem.kind.slug());
            problem.into_response()
        }
    }
}
