//! quota: requests per minute and tokens per minute, per key and per team, with GCRA
//! (the generic cell rate algorithm: one timestamp per limit, no background refill).
//!
//! Prompt tokens are charged before the call; when the provider reports usage the charge is
//! corrected to the true total, which may put a scope into debt that later calls wait out.
//! Every response to a limited key carries OpenAI's `x-ratelimit-*` headers.

use crate::call::ModelCall;
use crate::problem::{Problem, ProblemKind};
use crate::stack::Next;
use crate::state::AppState;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use custos_core::principal::SharedPrincipal;
use custos_store::shared::{Admission, Limit, Shared};
use http::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

const PERIOD_NS: i64 = 60_000_000_000;

/// One limit's state: the theoretical arrival time, in ns since the limiter's epoch.
#[derive(Debug, Default)]
pub struct Cell {
    tat: Mutex<i64>,
}

fn lock(c: &Cell) -> MutexGuard<'_, i64> {
    c.tat.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Key,
    Team,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Requests,
    Tokens,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
        }
    }
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
        }
    }
}

/// The outcome for one limit after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub scope: Scope,
    pub kind: Kind,
    pub limit: u32,
    pub remaining: u32,
    /// Time until the limit is fully replenished.
    pub reset: Duration,
}

impl Standing {
    /// Where a limit stands with the cell's TAT `tat` at `now` (both in ns).
    fn at(scope: Scope, kind: Kind, limit: u32, tat: i64, now: i64) -> Standing {
        let (remaining, reset) = standing(tat, now, limit);
        Standing {
            scope,
            kind,
            limit,
            remaining,
            reset,
        }
    }
}

/// Pure GCRA step: with `tat` the stored state, is `cost` units at `now` conforming to
/// `limit` per minute? Returns the new TAT on success, the wait on refusal.
pub fn gcra(tat: i64, now: i64, cost: u64, limit: u32) -> Result<i64, Option<Duration>> {
    let interval = PERIOD_NS / i64::from(limit.max(1));
    let increment = i64::try_from(cost)
        .unwrap_or(i64::MAX)
        .saturating_mul(interval);
    if increment > PERIOD_NS {
        return Err(None);
    }
    let new_tat = tat.max(now).saturating_add(increment);
    if new_tat - now <= PERIOD_NS {
        Ok(new_tat)
    } else {
        Err(Some(Duration::from_nanos(
            (new_tat - now - PERIOD_NS) as u64,
        )))
    }
}

/// Remaining units and time to full replenishment for a TAT.
pub fn standing(tat: i64, now: i64, limit: u32) -> (u32, Duration) {
    let interval = PERIOD_NS / i64::from(limit.max(1));
    let used = (tat - now).max(0);
    let remaining = ((PERIOD_NS - used).max(0) / interval).min(i64::from(limit)) as u32;
    (remaining, Duration::from_nanos(used as u64))
}

/// Charges taken for one call, kept so the token charge can be corrected afterwards.
#[derive(Debug)]
pub struct Grant {
    quotas: Arc<Quotas>,
    token_cells: Vec<(Arc<Cell>, u32)>,
    charged_tokens: u32,
    pub standings: Vec<Standing>,
    /// Token limits charged on the shared Redis, settled there.
    shared: Option<SharedTokens>,
}

/// The shared Redis and the token limits (counter, limit) a call was charged on there.
type SharedTokens = (Arc<Shared>, Vec<(String, u32)>);

impl Grant {
    /// Corrects the token charge to the provider-reported total.
    pub fn settle(&self, actual_tokens: u32) {
        let delta = i64::from(actual_tokens) - i64::from(self.charged_tokens);
        if delta == 0 {
            return;
        }
        if let Some((shared, limits)) = &self.shared {
            let (shared, limits) = (shared.clone(), limits.clone());
            // Off the response's path; a failed correction is logged, the next call sees the
            // counter as it stands.
            tokio::spawn(async move {
                let keys: Vec<(&str, u32)> = limits.iter().map(|(k, l)| (k.as_str(), *l)).collect();
                if let Err(e) = shared.settle(&keys, delta).await {
                    tracing::warn!(error = %e, "correcting a shared token charge failed");
                }
            });
            return;
        }
        for (cell, limit) in &self.token_cells {
            let interval = PERIOD_NS / i64::from((*limit).max(1));
            let now = self.quotas.now();
            let mut tat = lock(cell);
            let shift = delta.saturating_mul(interval);
            if delta > 0 {
                // Usage beyond the estimate is debt that later calls wait out.
                *tat = (*tat).max(now).saturating_add(shift);
            } else if *tat > now {
                // A refund never moves the TAT before now: unused capacity does not pile up.
                *tat = tat.saturating_add(shift).max(now);
            }
        }
    }
}

#[derive(Debug)]
pub struct Quotas {
    epoch: Instant,
    cells: RwLock<HashMap<(Scope, Kind, String), Arc<Cell>>>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            cells: RwLock::new(HashMap::new()),
        }
    }
}

pub enum Refusal {
    Wait {
        standing: Standing,
        retry_after: Duration,
        all: Vec<Standing>,
    },
    TooLarge {
        limit: u32,
        cost: u32,
        scope: Scope,
    },
}

impl Quotas {
    fn now(&self) -> i64 {
        self.epoch.elapsed().as_nanos() as i64
    }

    fn cell(&self, scope: Scope, kind: Kind, id: &str) -> Arc<Cell> {
        let key = (scope, kind, id.to_owned());
        if let Some(c) = self
            .cells
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return c.clone();
        }
        self.cells
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Decides one call: all of the principal's limits must admit it, or none is charged.
    pub fn admit(
        self: &Arc<Self>,
        p: &SharedPrincipal,
        tokens: u32,
    ) -> Result<Option<Grant>, Refusal> {
        let limits = principal_limits(p, tokens);
        if limits.is_empty() {
            return Ok(None);
        }
        let cells: Vec<Arc<Cell>> = limits
            .iter()
            .map(|(s, k, id, _, _)| self.cell(*s, *k, id))
            .collect();
        // Locks are always taken in the same order (key before team, requests before tokens).
        let mut guards: Vec<MutexGuard<'_, i64>> = cells.iter().map(|c| lock(c)).collect();
        let now = self.now();
        let mut new_tats = Vec::with_capacity(limits.len());
        let mut worst: Option<(Duration, Standing)> = None;
        for ((scope, kind, _, limit, cost), tat) in limits.iter().zip(&guards) {
            match gcra(**tat, now, *cost, *limit) {
                Ok(t) => new_tats.push(t),
                Err(None) => {
                    return Err(Refusal::TooLarge {
                        limit: *limit,
                        cost: tokens,
                        scope: *scope,
                    })
                }
                Err(Some(wait)) => {
                    let s = Standing::at(*scope, *kind, *limit, **tat, now);
                    if worst.as_ref().is_none_or(|(w, _)| wait > *w) {
                        worst = Some((wait, s));
                    }
                    new_tats.push(**tat);
                }
            }
        }
        if let Some((retry_after, standing_now)) = worst {
            let all = limits
                .iter()
                .zip(&guards)
                .map(|((scope, kind, _, limit, _), tat)| {
                    Standing::at(*scope, *kind, *limit, **tat, now)
                })
                .collect();
            return Err(Refusal::Wait {
                standing: standing_now,
                retry_after,
                all,
            });
        }
        let mut standings = Vec::with_capacity(limits.len());
        for ((g, t), (scope, kind, _, limit, _)) in guards.iter_mut().zip(&new_tats).zip(&limits) {
            **g = *t;
            standings.push(Standing::at(*scope, *kind, *limit, *t, now));
        }
        drop(guards);
        let token_cells = limits
            .iter()
            .zip(cells)
            .filter(|((_, k, _, _, _), _)| *k == Kind::Tokens)
            .map(|((_, _, _, l, _), c)| (c, *l))
            .collect();
        Ok(Some(Grant {
            quotas: self.clone(),
            token_cells,
            charged_tokens: tokens,
            standings,
            shared: None,
        }))
    }
}

impl Quotas {
    /// Where each of the principal's limits stands now, charging nothing.
    pub fn peek(&self, p: &SharedPrincipal) -> Vec<Standing> {
        let now = self.now();
        let cells = self.cells.read().unwrap_or_else(|e| e.into_inner());
        principal_limits(p, 0)
            .into_iter()
            .map(|(scope, kind, id, limit, _)| {
                let tat = cells
                    .get(&(scope, kind, id.to_owned()))
                    .map_or(0, |c| *lock(c));
                Standing::at(scope, kind, limit, tat, now)
            })
            .collect()
    }
}

/// `peek` on the shared Redis.
async fn peek_shared(
    shared: Arc<Shared>,
    p: &SharedPrincipal,
) -> Result<Vec<Standing>, custos_store::StoreError> {
    let limits = principal_limits(p, 0);
    let keys: Vec<String> = limits
        .iter()
        .map(|(scope, kind, id, _, _)| shared_key(&p.tenant, *scope, *kind, id))
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (now, tats) = shared.peek(&refs).await?;
    Ok(shared_standings(
        now,
        limits.iter().map(|(s, k, _, l, _)| (*s, *k, *l)),
        &tats,
    ))
}

/// Standings from TATs on Redis's clock (µs; `standing` counts in ns).
fn shared_standings(
    now: i64,
    limits: impl Iterator<Item = (Scope, Kind, u32)>,
    tats: &[i64],
) -> Vec<Standing> {
    limits
        .zip(tats)
        .map(|((scope, kind, limit), tat)| {
            Standing::at(
                scope,
                kind,
                limit,
                tat.saturating_mul(1000),
                now.saturating_mul(1000),
            )
        })
        .collect()
}

/// Outermost of the model-call layers: an answer the quota layer never saw (a malformed
/// body's 400, a refusal before quota, an idempotent replay) still tells a limited caller
/// where its limits stand, as OpenAI's answers always do. Nothing is charged.
pub async fn headers<N: Next>(state: &AppState, req: Request, next: &N) -> Response {
    let principal = req.extensions().get::<SharedPrincipal>().cloned();
    let mut response = next.run(req).await;
    let Some(p) = principal else {
        return response;
    };
    let limited =
        p.rpm.is_some() || p.team_rpm.is_some() || p.tpm.is_some() || p.team_tpm.is_some();
    let h = response.headers();
    if !limited
        || h.contains_key("x-ratelimit-limit-requests")
        || h.contains_key("x-ratelimit-limit-tokens")
    {
        return response;
    }
    let standings = match &state.cluster {
        Some(c) => match c.call(|s| peek_shared(s, &p)).await {
            Ok(s) => s,
            Err(_) => return response,
        },
        None => state.quota.peek(&p),
    };
    write_headers(response.headers_mut(), &standings);
    response
}

/// A principal's limits (scope, kind, the key's or team's id, per minute, this call's cost),
/// in the order their locks are taken: key before team, requests before tokens.
fn principal_limits(p: &SharedPrincipal, tokens: u32) -> Vec<(Scope, Kind, &str, u32, u64)> {
    let mut limits = Vec::with_capacity(4);
    if let Some(l) = p.rpm {
        limits.push((Scope::Key, Kind::Requests, p.uid.as_str(), l, 1));
    }
    if let Some(l) = p.team_rpm {
        limits.push((Scope::Team, Kind::Requests, p.team_id.as_str(), l, 1));
    }
    if let Some(l) = p.tpm {
        limits.push((
            Scope::Key,
            Kind::Tokens,
            p.uid.as_str(),
            l,
            u64::from(tokens),
        ));
    }
    if let Some(l) = p.team_tpm {
        limits.push((
            Scope::Team,
            Kind::Tokens,
            p.team_id.as_str(),
            l,
            u64::from(tokens),
        ));
    }
    limits
}

/// The shared counter of one limit: every replica names it the same, under its tenant.
fn shared_key(tenant: &str, scope: Scope, kind: Kind, id: &str) -> String {
    format!("q:{tenant}:{}:{}:{id}", scope.label(), kind.label())
}

impl Quotas {
    /// `admit` on the shared Redis: one atomic decision over all the principal's limits, on
    /// Redis's clock, so replicas together admit what one would.
    pub async fn admit_shared(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        p: &SharedPrincipal,
        tokens: u32,
    ) -> Result<Result<Option<Grant>, Refusal>, custos_store::StoreError> {
        let limits: Vec<(Scope, Kind, String, u32, u64)> = principal_limits(p, tokens)
            .into_iter()
            .map(|(scope, kind, id, limit, cost)| {
                (
                    scope,
                    kind,
                    shared_key(&p.tenant, scope, kind, id),
                    limit,
                    cost,
                )
            })
            .collect();
        if limits.is_empty() {
            return Ok(Ok(None));
        }
        let asked: Vec<Limit<'_>> = limits
            .iter()
            .map(|(_, _, key, limit, cost)| Limit {
                key,
                limit: *limit,
                cost: *cost,
            })
            .collect();
        let standings = |now: i64, tats: &[i64]| -> Vec<Standing> {
            shared_standings(now, limits.iter().map(|(s, k, _, l, _)| (*s, *k, *l)), tats)
        };
        Ok(match shared.admit(&asked).await? {
            Admission::TooLarge { index } => Err(Refusal::TooLarge {
                limit: limits[index].3,
                cost: tokens,
                scope: limits[index].0,
            }),
            Admission::Wait {
                index,
                wait,
                now,
                tats,
            } => {
                let all = standings(now, &tats);
                Err(Refusal::Wait {
                    standing: all[index],
                    retry_after: wait,
                    all,
                })
            }
            Admission::Admitted { now, tats } => {
                let token_limits = limits
                    .iter()
                    .filter(|(_, k, _, _, _)| *k == Kind::Tokens)
                    .map(|(_, _, key, l, _)| (key.clone(), *l))
                    .collect();
                Ok(Some(Grant {
                    quotas: self.clone(),
                    token_cells: Vec::new(),
                    charged_tokens: tokens,
                    standings: standings(now, &tats),
                    shared: Some((shared.clone(), token_limits)),
                }))
            }
        })
    }
}

/// Decides a call on the shared Redis when there is one, applying `on_redis_error` when it
/// is missing or does not answer in time; else in this process.
async fn decide(
    state: &AppState,
    p: &SharedPrincipal,
    tokens: u32,
) -> Result<Result<Option<Grant>, Refusal>, Response> {
    use custos_core::config::OnRedisError;
    let Some(cluster) = &state.cluster else {
        return Ok(state.quota.admit(p, tokens));
    };
    // An unlimited principal never waits on Redis, nor falls back when it is away.
    if p.rpm.is_none() && p.team_rpm.is_none() && p.tpm.is_none() && p.team_tpm.is_none() {
        return Ok(Ok(None));
    }
    let failed = match cluster
        .call(|shared| async move { state.quota.admit_shared(&shared, p, tokens).await })
        .await
    {
        Ok(d) => return Ok(d),
        Err(reason) => reason,
    };
    match cluster.fall_back(state, crate::cluster::Control::Quota, &failed) {
        OnRedisError::Local => Ok(state.quota.admit(p, tokens)),
        OnRedisError::FailOpen => Ok(Ok(None)),
        OnRedisError::FailClosed => {
            Err(Problem::new(
                ProblemKind::Overloaded,
                "rate limits are shared through Redis, which does not answer; this gateway refuses calls until it does (on_redis_error = \"fail_closed\")",
            )
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(1u64))
            .into_response())
        }
    }
}

/// OpenAI's reset format: `20ms`, `1.5s`, `6m0s`.
pub fn format_reset(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = format!("{:.3}", d.as_secs_f64());
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let secs = d.as_secs();
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// Writes `x-ratelimit-*` headers for the tightest limit of each kind.
pub fn write_headers(headers: &mut HeaderMap, standings: &[Standing]) {
    for kind in [Kind::Requests, Kind::Tokens] {
        let Some(s) = standings
            .iter()
            .filter(|s| s.kind == kind)
            .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset)))
        else {
            continue;
        };
        // Static names and integer values: these headers are on every model call.
        let [limit, remaining, reset] = match kind {
            Kind::Requests => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            Kind::Tokens => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        };
        headers.insert(
            http::HeaderName::from_static(limit),
            HeaderValue::from(s.limit),
        );
        headers.insert(
            http::HeaderName::from_static(remaining),
            HeaderValue::from(s.remaining),
        );
        if let Ok(v) = HeaderValue::try_from(format_reset(s.reset)) {
            headers.insert(http::HeaderName::from_static(reset), v);
        }
    }
}

/// The quota layer's middleware function: after idempotency (replays are free), before the
/// provider call.
pub async fn enforce<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let (Some(principal), Some(call)) = (
        req.extensions().get::<SharedPrincipal>().cloned(),
        req.extensions().get::<Arc<ModelCall>>().cloned(),
    ) else {
        return next.run(req).await;
    };
    let decision = match decide(state, &principal, call.prompt_tokens).await {
        Ok(d) => d,
        Err(refused) => return refused,
    };
    match decision {
        Ok(None) => next.run(req).await,
        Ok(Some(grant)) => {
            let grant = Arc::new(grant);
            req.extensions_mut().insert(grant.clone());
            let mut response = next.run(req).await;
            write_headers(response.headers_mut(), &grant.standings);
            response
        }
        Err(Refusal::TooLarge { limit, cost, scope }) => {
            state.metrics.quota_rejection(scope.label(), "tokens");
            Problem::new(
                ProblemKind::RequestTooLargeForLimit,
                format!("this request has {cost} prompt tokens, more than the {} limit of {limit} tokens per minute", scope.label()),
            )
            .into_response()
        }
        Err(Refusal::Wait {
            standing,
            retry_after,
            all,
        }) => {
            state
                .metrics
                .quota_rejection(standing.scope.label(), standing.kind.label());
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            let mut response = Problem::new(
                match standing.kind {
                    Kind::Requests => ProblemKind::RateLimitRequests,
                    Kind::Tokens => ProblemKind::RateLimitTokens,
                },
                format!(
                    "{} limit of {} {} per minute reached; retry in {}",
                    standing.scope.label(),
                    standing.limit,
                    standing.kind.label(),
                    format_reset(retry_after)
                ),
            )
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)))
            .into_response();
            write_headers(response.headers_mut(), &all);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn allows_a_full_burst_then_refuses() {
        let mut tat = 0;
        for _ in 0..10 {
            tat = gcra(tat, 0, 1, 10).unwrap();
        }
        let wait = gcra(tat, 0, 1, 10).unwrap_err().unwrap();
        assert_eq!(wait, Duration::from_secs(6));
        // After 6 s one more request conforms.
        assert!(gcra(tat, 6_000_000_000, 1, 10).is_ok());
        assert_eq!(gcra(0, 0, 11, 10), Err(None));
    }

    #[test]
    fn standing_counts_down() {
        let tat = gcra(0, 0, 3, 10).unwrap();
        assert_eq!(standing(tat, 0, 10), (7, Duration::from_secs(18)));
        assert_eq!(standing(0, 5, 10), (10, Duration::ZERO));
    }

    #[test]
    fn reset_format() {
        assert_eq!(format_reset(Duration::from_millis(20)), "20ms");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(1)), "1s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
    }

    proptest! {
        /// Token-bucket bound: between any two admitted calls, no more was admitted than a
        /// full bucket plus what refilled in between.
        #[test]
        fn never_exceeds_limit_per_window(
            limit in 1u32..50,
            steps in proptest::collection::vec((0i64..5_000_000_000, 1u64..5), 1..200),
        ) {
            let mut tat = 0i64;
            let mut now = 0i64;
            let mut admitted: Vec<(i64, u64)> = Vec::new();
            for (dt, cost) in steps {
                now += dt;
                if let Ok(t) = gcra(tat, now, cost, limit) {
                    tat = t;
                    admitted.push((now, cost));
                }
            }
            let interval = PERIOD_NS / i64::from(limit);
            for i in 0..admitted.len() {
                let mut sum = 0u64;
                for j in i..admitted.len() {
                    sum += admitted[j].1;
                    let bound = (PERIOD_NS + admitted[j].0 - admitted[i].0) / interval + 1;
                    prop_assert!(sum as i64 <= bound, "admitted {} between {} and {}, bound {}", sum, admitted[i].0, admitted[j].0, bound);
                }
            }
        }
    }
}
