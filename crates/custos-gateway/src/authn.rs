//! authn: `Authorization: Bearer <key>` → `Principal`, against an in-memory key index.
//!
//! The index is loaded at start and refreshed from the store every `key_refresh_interval`,
//! reading only rows changed since the last refresh, so a key revoked by any process sharing
//! the database stops working here within one interval. Expiry is checked per request.

use crate::metrics::CallLabels;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;
use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custos_authz::{KeyCheck, KeyDigest, KeyIndex, KeyRecord};
use custos_core::principal::{AuthMethod, ModelScope, Principal};
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
}

impl KeyCache {
    /// Loads every key from the store.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let cache = Self {
            index: ArcSwap::from_pointee(KeyIndex::default()),
            watermark: AtomicI64::new(i64::MIN + REFRESH_OVERLAP_MS),
            last_ok_ms: AtomicI64::new(0),
        };
        cache.refresh(store).await?;
        Ok(cache)
    }

    /// Reads keys changed since the last refresh and swaps in an updated index.
    pub async fn refresh(&self, store: &Store) -> Result<usize, StoreError> {
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
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.refresh(&store).await {
                    tracing::warn!(error = %e, "key refresh failed; serving from the last loaded keys");
                }
            }
        })
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
    };
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

/// The authn layer's middleware function.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let outcome = bearer(&req).and_then(|token| match state.keys.check(token) {
        KeyCheck::Valid(p) => Ok(p),
        KeyCheck::Malformed(e) => Err(Problem::new(
            ProblemKind::InvalidApiKey,
            format!("invalid API key: {e}"),
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
    });
    match outcome {
        Ok(principal) => {
            if let Some(labels) = req.extensions().get::<Arc<CallLabels>>() {
                labels.set_team(&principal.team);
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
