//! metrics: Prometheus text exposition at `/metrics`.
//!
//! Requests by route, model, status and team; end-to-end latency by route and tenant, the
//! time custos adds and the upstream's time as separate histograms; tokens and cost by
//! tenant, app and model; auth failures and quota rejections. Label values come only from
//! bounded sets (routed models, known routes, teams in the store, and at most
//! `MAX_LABEL_VALUES` tenants and apps, the rest `other`), never from raw input, so neither a
//! hostile client nor a large deployment can blow up the series count.

use crate::stack::Next;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Labels filled in by inner layers as a call is understood.
#[derive(Debug, Default)]
pub struct CallLabels {
    route: &'static str,
    model: OnceLock<String>,
    team: OnceLock<String>,
    tenant: OnceLock<String>,
    /// The release whose alias the call named.
    release: OnceLock<String>,
    /// The API version served: `v1` for the OpenAI-compatible API, the negotiated one for
    /// the admin API.
    api_version: OnceLock<&'static str>,
    upstream_ns: AtomicU64,
}

impl CallLabels {
    /// The caller's tenant, once authenticated.
    pub fn set_tenant(&self, tenant: &str) {
        let _ = self.tenant.set(tenant.to_owned());
    }
    pub fn set_model(&self, model: &str) {
        let _ = self.model.set(model.to_owned());
    }
    pub fn set_team(&self, team: &str) {
        let _ = self.team.set(team.to_owned());
    }
    pub fn set_release(&self, release: &str) {
        let _ = self.release.set(release.to_owned());
    }
    pub fn set_api_version(&self, version: &'static str) {
        let _ = self.api_version.set(version);
    }
    /// Time from sending the request upstream to receiving its response headers.
    pub fn set_upstream(&self, elapsed: std::time::Duration) {
        self.upstream_ns.store(
            elapsed.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }
}

impl crate::otel::CallFacts for CallLabels {
    fn tenant(&self) -> Option<&str> {
        self.tenant.get().map(String::as_str)
    }
    fn team(&self) -> Option<&str> {
        self.team.get().map(String::as_str)
    }
    fn model(&self) -> Option<&str> {
        self.model.get().map(String::as_str)
    }
}

/// Seconds; fine at the low end where custos' own overhead lives.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];
const UPSTREAM_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// End to end, from a request's arrival to its response headers.
const REQUEST_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0,
];

/// Distinct tenants (and apps) that get their own label value; later ones are `other`.
pub const MAX_LABEL_VALUES: usize = 200;

/// The first `MAX_LABEL_VALUES` values seen keep their name; the rest share `other`.
#[derive(Debug, Default)]
struct LabelCap(Mutex<std::collections::HashSet<String>>);

impl LabelCap {
    fn label(&self, v: &str) -> String {
        if v.is_empty() {
            return String::new();
        }
        let mut seen = lock(&self.0);
        if seen.contains(v) {
            return v.to_owned();
        }
        if seen.len() < MAX_LABEL_VALUES {
            seen.insert(v.to_owned());
            return v.to_owned();
        }
        "other".into()
    }
}

/// Tokens and cost of metered model calls for one (tenant, app, model).
#[derive(Debug, Default, Clone)]
struct Spend {
    input: u64,
    cached_input: u64,
    cache_write: u64,
    output: u64,
    reasoning: u64,
    calls: u64,
    /// Cost in nanos of each currency.
    cost_nanos: std::collections::BTreeMap<custos_finops::Currency, i128>,
}

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, ns: u64) {
        let secs = ns as f64 / 1e9;
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// (route, model, status, team, tenant, release, API version).
type RequestKey = (
    &'static str,
    String,
    u16,
    String,
    String,
    String,
    &'static str,
);

#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests seen, for sampling the access log.
    seen: std::sync::atomic::AtomicU64,
    requests: Mutex<HashMap<RequestKey, u64>>,
    overhead: Mutex<HashMap<&'static str, Arc<Histogram>>>,
    upstream: Mutex<HashMap<(&'static str, String), Arc<Histogram>>>,
    auth_failures: Mutex<HashMap<&'static str, u64>>,
    quota_rejections: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// Decisions taken without the shared Redis, by control and by what was done instead.
    shared_fallbacks: Mutex<HashMap<(&'static str, &'static str), u64>>,
    idempotent_replays: AtomicU64,
    connections_shed: AtomicU64,
    in_flight: AtomicI64,
    /// Entities found by PII analysis, by type: counts only, never values.
    pii_entities: Mutex<HashMap<String, u64>>,
    /// (category, action) → prompt injections screened.
    injections: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// End-to-end latency by (route, tenant).
    duration: Mutex<HashMap<(&'static str, String), Arc<Histogram>>>,
    /// Tokens and cost by (tenant, app, model).
    spend: Mutex<HashMap<(String, String, String), Spend>>,
    tenants: LabelCap,
    apps: LabelCap,
    releases: LabelCap,
    /// Spans exported and dropped, when traces are exported.
    pub otel: Arc<crate::otel::Stats>,
    /// The SLOs as last measured.
    slos: Mutex<Vec<custos_control::SloBurn>>,
}

impl Metrics {
    /// The SLOs as just measured (`slo_watch`).
    pub fn set_slos(&self, slos: Vec<custos_control::SloBurn>) {
        *lock(&self.slos) = slos;
    }

    fn render_slos(&self, out: &mut String) {
        let slos = lock(&self.slos);
        if slos.is_empty() {
            return;
        }
        let labels = |b: &custos_control::SloBurn| {
            format!(
                "tenant=\"{}\",slo=\"{}\",app=\"{}\",kind=\"{}\"",
                escape(&b.state.tenant),
                escape(&b.state.name),
                escape(b.state.app.as_deref().unwrap_or("")),
                b.state.kind
            )
        };
        out.push_str("# HELP custos_slo_objective_ratio The share of good calls an SLO promises.\n# TYPE custos_slo_objective_ratio gauge\n");
        for b in slos.iter() {
            let _ = writeln!(
                out,
                "custos_slo_objective_ratio{{{}}} {}",
                labels(b),
                b.state.objective / 100.0
            );
        }
        out.push_str("# HELP custos_slo_error_budget_burn Bad calls over the calls the objective allows, over the SLO's window: 1 or more is the budget spent, and promotion frozen.\n# TYPE custos_slo_error_budget_burn gauge\n");
        for b in slos.iter() {
            let _ = writeln!(
                out,
                "custos_slo_error_budget_burn{{{}}} {}",
                labels(b),
                b.state.budget.burn
            );
        }
        out.push_str("# HELP custos_slo_frozen 1 while an SLO's spent budget freezes promotion (but for emergency releases).\n# TYPE custos_slo_frozen gauge\n");
        for b in slos.iter() {
            let _ = writeln!(
                out,
                "custos_slo_frozen{{{}}} {}",
                labels(b),
                u8::from(b.state.budget.exhausted)
            );
        }
        out.push_str("# HELP custos_slo_burn_rate How fast an SLO spends its error budget over a lookback (1: exactly over its window).\n# TYPE custos_slo_burn_rate gauge\n");
        for b in slos.iter() {
            for r in &b.rates {
                let _ = writeln!(
                    out,
                    "custos_slo_burn_rate{{{},window=\"{}\"}} {}",
                    labels(b),
                    r.window,
                    r.rate
                );
            }
        }
        out.push_str("# HELP custos_slo_alert_firing 1 while a multiwindow burn-rate alert's condition holds (page: 14.4x over 1h and 5m; ticket: 6x over 6h and 30m).\n# TYPE custos_slo_alert_firing gauge\n");
        for b in slos.iter() {
            for a in &custos_govern::release::health::BURN_ALERTS {
                let _ = writeln!(
                    out,
                    "custos_slo_alert_firing{{{},severity=\"{}\"}} {}",
                    labels(b),
                    a.severity,
                    u8::from(b.firing.contains(&a.severity))
                );
            }
        }
    }

    /// Metrics that show the trace exporter's counters.
    pub fn with_otel(otel: Arc<crate::otel::Stats>) -> Self {
        Self {
            otel,
            ..Self::default()
        }
    }
}

/// Known routes get their own label; anything else is `other`.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/responses" => "/v1/responses",
        "/v1/models" => "/v1/models",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/pii/analyze" => "/pii/analyze",
        "/pii/anonymize" => "/pii/anonymize",
        "/pii/supportedentities" => "/pii/supportedentities",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        p if p.starts_with("/admin/") => "/admin",
        p if p == "/console" || p.starts_with("/console/") => "/console",
        _ => "other",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock cannot leave the counters inconsistent in a way
    // that matters more than losing all metrics, so recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// The requests of `tenant` this process answered with each of `statuses`, since it
    /// started (the console's refusal counts).
    pub fn answered(&self, tenant: &str, statuses: &[u16]) -> Vec<u64> {
        let r = lock(&self.requests);
        statuses
            .iter()
            .map(|st| {
                r.iter()
                    .filter(|(k, _)| k.2 == *st && k.4 == tenant)
                    .map(|(_, n)| n)
                    .sum()
            })
            .collect()
    }

    /// The requests of `tenant` this process answered, by route: (route, all, 4xx, 5xx),
    /// busiest first.
    pub fn routes_of(&self, tenant: &str) -> Vec<(&'static str, u64, u64, u64)> {
        let mut by: HashMap<&'static str, (u64, u64, u64)> = HashMap::new();
        for (k, n) in lock(&self.requests).iter().filter(|(k, _)| k.4 == tenant) {
            let e = by.entry(k.0).or_default();
            e.0 += n;
            if (400..500).contains(&k.2) {
                e.1 += n;
            } else if k.2 >= 500 {
                e.2 += n;
            }
        }
        let mut out: Vec<_> = by.into_iter().map(|(r, (a, c, s))| (r, a, c, s)).collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }

    /// Requests refused before a principal was known, by reason, since this process started.
    pub fn auth_failures(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = lock(&self.auth_failures)
            .iter()
            .map(|(r, n)| (*r, *n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }

    pub fn auth_failure(&self, reason: &'static str) {
        *lock(&self.auth_failures).entry(reason).or_default() += 1;
    }

    pub fn quota_rejection(&self, scope: &'static str, limit: &'static str) {
        *lock(&self.quota_rejections)
            .entry((scope, limit))
            .or_default() += 1;
    }

    /// A decision `control` took without the shared state, doing `mode` instead.
    pub fn shared_fallback(&self, control: &'static str, mode: &'static str) {
        *lock(&self.shared_fallbacks)
            .entry((control, mode))
            .or_default() += 1;
    }

    /// Counts entities found by PII analysis (types only).
    pub fn pii_found<'a>(&self, entities: impl IntoIterator<Item = &'a str>) {
        let mut m = lock(&self.pii_entities);
        for e in entities {
            *m.entry(e.to_owned()).or_default() += 1;
        }
    }

    /// A prompt injection found, by category, and what was done (`flagged`, `blocked`).
    pub fn injection(&self, category: &'static str, action: &'static str) {
        *lock(&self.injections)
            .entry((category, action))
            .or_default() += 1;
    }

    /// A connection refused by the connection limits.
    pub fn connection_shed(&self) {
        self.connections_shed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn idempotent_replay(&self) {
        self.idempotent_replays.fetch_add(1, Ordering::Relaxed);
    }

    /// A metered model call's tokens and cost (`currency` an ISO code).
    pub fn spend(
        &self,
        tenant: &str,
        app: &str,
        model: &str,
        usage: &custos_finops::usage::Usage,
        currency: custos_finops::Currency,
        cost_nanos: i128,
    ) {
        let key = (
            self.tenants.label(tenant),
            self.apps.label(app),
            model.to_owned(),
        );
        let mut m = lock(&self.spend);
        let s = m.entry(key).or_default();
        s.input += usage.input_tokens;
        s.cached_input += usage.cached_input_tokens;
        s.cache_write += usage.cache_write_tokens;
        s.output += usage.output_tokens;
        s.reasoning += usage.reasoning_tokens;
        s.calls += 1;
        *s.cost_nanos.entry(currency).or_default() += cost_nanos;
    }

    fn record(&self, labels: &CallLabels, status: u16, total_ns: u64) {
        let model = labels.model.get().cloned().unwrap_or_default();
        let team = labels.team.get().cloned().unwrap_or_default();
        let upstream_ns = labels.upstream_ns.load(Ordering::Relaxed);
        let tenant = self
            .tenants
            .label(labels.tenant.get().map(String::as_str).unwrap_or(""));
        let release = labels
            .release
            .get()
            .map_or_else(String::new, |r| self.releases.label(r));
        let api_version = match labels.api_version.get() {
            Some(v) => *v,
            None if labels.route.starts_with("/v1/") => "v1",
            None => "",
        };
        if labels.route.starts_with("/v1/") {
            let h = lock(&self.duration)
                .entry((labels.route, tenant.clone()))
                .or_insert_with(|| Arc::new(Histogram::new(REQUEST_BUCKETS)))
                .clone();
            h.observe(total_ns);
            let overhead = total_ns.saturating_sub(upstream_ns);
            let h = lock(&self.overhead)
                .entry(labels.route)
                .or_insert_with(|| Arc::new(Histogram::new(OVERHEAD_BUCKETS)))
                .clone();
            h.observe(overhead);
            if upstream_ns > 0 {
                let h = lock(&self.upstream)
                    .entry((labels.route, model.clone()))
                    .or_insert_with(|| Arc::new(Histogram::new(UPSTREAM_BUCKETS)))
                    .clone();
                h.observe(upstream_ns);
            }
        }
        *lock(&self.requests)
            .entry((
                labels.route,
                model,
                status,
                team,
                tenant,
                release,
                api_version,
            ))
            .or_default() += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, keys_cached: usize, exporting_traces: bool) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP custos_requests_total Requests handled, by route, model, status, team, tenant, release (calls to an app's alias) and API version.\n# TYPE custos_requests_total counter\n");
        let mut rows: Vec<_> = lock(&self.requests)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        rows.sort();
        for ((route, model, status, team, tenant, release, api_version), v) in rows {
            let _ = writeln!(
                out,
                "custos_requests_total{{route=\"{route}\",model=\"{}\",status=\"{status}\",team=\"{}\",tenant=\"{}\",release=\"{}\",api_version=\"{api_version}\"}} {v}",
                escape(&model),
                escape(&team),
                escape(&tenant),
                escape(&release)
            );
        }
        out.push_str("# HELP custos_pii_entities_total Personal data entities found by PII analysis, by type.\n# TYPE custos_pii_entities_total counter\n");
        let mut pii: Vec<_> = lock(&self.pii_entities)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        pii.sort();
        for (entity, v) in pii {
            let _ = writeln!(
                out,
                "custos_pii_entities_total{{entity=\"{}\"}} {v}",
                escape(&entity)
            );
        }
        out.push_str("# HELP custos_injections_total Prompt injections screened in model calls, by category and action.\n# TYPE custos_injections_total counter\n");
        let mut inj: Vec<_> = lock(&self.injections)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        inj.sort();
        for ((category, action), v) in inj {
            let _ = writeln!(
                out,
                "custos_injections_total{{category=\"{category}\",action=\"{action}\"}} {v}"
            );
        }
        out.push_str("# HELP custos_request_duration_seconds Time from a request's arrival to its response headers (the first byte of a stream), by route and tenant.\n# TYPE custos_request_duration_seconds histogram\n");
        let mut hs: Vec<_> = lock(&self.duration)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        hs.sort_by(|a, b| a.0.cmp(&b.0));
        for ((route, tenant), h) in hs {
            h.render(
                &mut out,
                "custos_request_duration_seconds",
                &format!("route=\"{route}\",tenant=\"{}\"", escape(&tenant)),
            );
        }
        // Each (tenant, app, model) as its label text, escaped once for the three families.
        let mut spend: Vec<_> = lock(&self.spend)
            .iter()
            .map(|((tenant, app, model), v)| {
                let l = format!(
                    "tenant=\"{}\",app=\"{}\",model=\"{}\"",
                    escape(tenant),
                    escape(app),
                    escape(model)
                );
                (l, v.clone())
            })
            .collect();
        spend.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP custos_tokens_total Tokens of metered model calls, by tenant, app, model and class (input, cached_input, cache_write, output, reasoning).\n# TYPE custos_tokens_total counter\n");
        for (l, s) in &spend {
            for (class, v) in [
                ("input", s.input),
                ("cached_input", s.cached_input),
                ("cache_write", s.cache_write),
                ("output", s.output),
                ("reasoning", s.reasoning),
            ] {
                let _ = writeln!(out, "custos_tokens_total{{{l},class=\"{class}\"}} {v}");
            }
        }
        out.push_str("# HELP custos_metered_calls_total Model calls metered, by tenant, app and model (divide custos_cost_total by it for cost per request).\n# TYPE custos_metered_calls_total counter\n");
        for (l, s) in &spend {
            let _ = writeln!(out, "custos_metered_calls_total{{{l}}} {}", s.calls);
        }
        out.push_str("# HELP custos_cost_total Cost of metered model calls at the configured prices, by tenant, app, model and currency.\n# TYPE custos_cost_total counter\n");
        for (l, s) in &spend {
            for (currency, nanos) in &s.cost_nanos {
                let _ = writeln!(
                    out,
                    "custos_cost_total{{{l},currency=\"{}\"}} {}",
                    currency.as_str(),
                    *nanos as f64 / 1e9
                );
            }
        }
        out.push_str("# HELP custos_overhead_seconds Time custos adds to a request: total time to response headers minus upstream time.\n# TYPE custos_overhead_seconds histogram\n");
        let mut hs: Vec<_> = lock(&self.overhead)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        hs.sort_by_key(|(k, _)| *k);
        for (route, h) in hs {
            h.render(
                &mut out,
                "custos_overhead_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP custos_upstream_seconds Time from sending a request to the provider to its response headers.\n# TYPE custos_upstream_seconds histogram\n");
        let mut hs: Vec<_> = lock(&self.upstream)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        hs.sort_by(|a, b| a.0.cmp(&b.0));
        for ((route, model), h) in hs {
            h.render(
                &mut out,
                "custos_upstream_seconds",
                &format!("route=\"{route}\",model=\"{}\"", escape(&model)),
            );
        }
        out.push_str("# HELP custos_auth_failures_total Requests refused by authentication, by reason.\n# TYPE custos_auth_failures_total counter\n");
        let mut rows: Vec<_> = lock(&self.auth_failures)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        rows.sort();
        for (reason, v) in rows {
            let _ = writeln!(out, "custos_auth_failures_total{{reason=\"{reason}\"}} {v}");
        }
        out.push_str("# HELP custos_quota_rejections_total Requests refused by a quota, by scope (key or team) and limit (requests or tokens).\n# TYPE custos_quota_rejections_total counter\n");
        let mut rows: Vec<_> = lock(&self.quota_rejections)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        rows.sort();
        for ((scope, limit), v) in rows {
            let _ = writeln!(
                out,
                "custos_quota_rejections_total{{scope=\"{scope}\",limit=\"{limit}\"}} {v}"
            );
        }
        out.push_str("# HELP custos_shared_state_fallbacks_total Decisions taken without the shared Redis, by control and what was done instead (local, fail_open, fail_closed).\n# TYPE custos_shared_state_fallbacks_total counter\n");
        let mut rows: Vec<_> = lock(&self.shared_fallbacks)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        rows.sort();
        for ((control, mode), v) in rows {
            let _ = writeln!(
                out,
                "custos_shared_state_fallbacks_total{{control=\"{control}\",mode=\"{mode}\"}} {v}"
            );
        }
        let _ = writeln!(out, "# HELP custos_connections_shed_total Connections answered 503 and closed by the connection limits.\n# TYPE custos_connections_shed_total counter\ncustos_connections_shed_total {}", self.connections_shed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP custos_idempotent_replays_total Responses replayed for a repeated Idempotency-Key.\n# TYPE custos_idempotent_replays_total counter\ncustos_idempotent_replays_total {}", self.idempotent_replays.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP custos_in_flight_requests Requests being handled now.\n# TYPE custos_in_flight_requests gauge\ncustos_in_flight_requests {}", self.in_flight.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP custos_build_info The running build.\n# TYPE custos_build_info gauge\ncustos_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_slos(&mut out);
        if exporting_traces {
            let o = &self.otel;
            let _ = writeln!(
                out,
                "# HELP custos_otlp_spans_exported_total Spans the OTLP receiver took.\n# TYPE custos_otlp_spans_exported_total counter\ncustos_otlp_spans_exported_total {}",
                o.exported.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "# HELP custos_otlp_spans_dropped_total Spans not exported: the queue was full, or the receiver refused or never took their batch.\n# TYPE custos_otlp_spans_dropped_total counter\ncustos_otlp_spans_dropped_total{{reason=\"queue_full\"}} {}\ncustos_otlp_spans_dropped_total{{reason=\"export_failed\"}} {}",
                o.dropped_queue.load(Ordering::Relaxed),
                o.dropped_export.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP custos_api_keys_cached API keys in the in-memory index.\n# TYPE custos_api_keys_cached gauge\ncustos_api_keys_cached {keys_cached}");
        out
    }
}

/// The metrics layer's middleware function: outermost after request_id, so it times everything.
pub async fn observe<N: Next>(state: &AppState, mut req: Request, next: &N) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let labels = Arc::new(CallLabels {
        route: route_label(req.uri().path()),
        ..Default::default()
    });
    if let Some(t) = crate::otel::current(&req) {
        t.set_facts(labels.clone());
    }
    req.extensions_mut().insert(labels.clone());
    state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = next.run(req).await;
    state.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    let total = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    let status = response.status().as_u16();
    state.metrics.record(&labels, status, total);
    // One line per request, never prompts, keys or other request content: at debug, except
    // server errors and the sampled ones.
    let n = state.metrics.seen.fetch_add(1, Ordering::Relaxed);
    let sample = u64::from(state.config.log.access_log_sample);
    let model = labels.model.get().map(String::as_str).unwrap_or("");
    let team = labels.team.get().map(String::as_str).unwrap_or("");
    let upstream_us = labels.upstream_ns.load(Ordering::Relaxed) / 1_000;
    if status >= 500 || (sample > 0 && n.is_multiple_of(sample)) {
        tracing::info!(%method, route = labels.route, status, model, team,
            duration_us = total / 1_000, upstream_us, "request");
    } else {
        tracing::debug!(%method, route = labels.route, status, model, team,
            duration_us = total / 1_000, upstream_us, "request");
    }
    response
}

/// `GET /metrics`.
pub async fn exposition(State(state): State<AppState>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state
            .metrics
            .render(state.keys.len(), state.tracer.is_some()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_past_the_cap_share_other() {
        let cap = LabelCap::default();
        for i in 0..MAX_LABEL_VALUES {
            assert_eq!(cap.label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(cap.label("one-too-many"), "other");
        // Values admitted before keep their own series.
        assert_eq!(cap.label("t0"), "t0");
        assert_eq!(cap.label(""), "");
    }

    #[test]
    fn spend_renders_as_counters_with_bounded_labels() {
        let m = Metrics::default();
        let usage = custos_finops::usage::Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Default::default()
        };
        for i in 0..=MAX_LABEL_VALUES {
            m.spend(
                &format!("t{i}"),
                "app",
                "m",
                &usage,
                custos_finops::Currency::USD,
                1_500_000,
            );
        }
        let text = m.render(0, false);
        assert!(text.contains(
            "custos_cost_total{tenant=\"t0\",app=\"app\",model=\"m\",currency=\"USD\"} 0.0015"
        ));
        assert!(text.contains(
            "custos_tokens_total{tenant=\"other\",app=\"app\",model=\"m\",class=\"output\"} 5"
        ));
        let tenants: std::collections::HashSet<&str> = text
            .lines()
            .filter(|l| l.starts_with("custos_metered_calls_total{"))
            .map(|l| l.split('"').nth(1).unwrap())
            .collect();
        assert_eq!(tenants.len(), MAX_LABEL_VALUES + 1);
    }
}
