//! The console's pages: overview (traffic, latency, errors, spend per request), spend
//! (showback, trends, budgets, CSV), access (keys, grants) and releases (approve, deny,
//! roll back). Each reads what the admin API's read of the same thing would, after the same
//! policy decision; each form is one `custos-control` call.

use super::session::Sessions;
use super::stats::{millis, percent, quantile};
use super::view::{self, badge, card, chart, csrf_field, enc, notice};
use super::Console;
use super::{authorize, check_change, error_page, form, form_reason, html_page, see_other, Viewer};
use crate::refusals::ClientAddr;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use custos_control::ControlError;
use custos_core::time::{format_rfc3339, now_ms};
use custos_finops::chart::{line_chart, Series};
use custos_finops::showback::{burn_down, daily_spend, per_unit};
use custos_finops::Amount;
use custos_store::{
    Dimension, KeyFilter, StoreError, Traffic, TrafficDimension, UsageFilter, LATENCY_BOUNDS_MS,
};
use http::{header, StatusCode};
use maud::{html, Markup};
use std::collections::HashMap;
use std::sync::Arc;

/// What every console handler starts from: the state, the signed-in viewer (or the redirect
/// to sign in, as the rejection) and the query string.
pub(crate) struct Page {
    pub(super) s: AppState,
    pub(super) console: Arc<Console>,
    pub(super) v: Viewer,
    pub(super) q: HashMap<String, String>,
}

impl axum::extract::FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        s: &AppState,
    ) -> Result<Self, Response> {
        let Some(console) = parts.extensions.get::<Arc<Console>>().cloned() else {
            return Err(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Unavailable",
                "The console is not set up.",
            ));
        };
        let Query(q) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Invalid request", &e.body_text()))?;
        let here = parts
            .uri
            .path_and_query()
            .map_or("/console", |p| p.as_str());
        let addr = parts.extensions.get::<ClientAddr>().copied();
        let v = super::viewer(s, &console.sessions, &parts.headers, addr, here)?;
        Ok(Page {
            s: s.clone(),
            console,
            v,
            q,
        })
    }
}

impl Page {
    pub(super) fn sessions(&self) -> &Sessions {
        &self.console.sessions
    }

    /// The tenant the page is about (`?tenant=`, else the viewer's), read allowed by `action`.
    pub(super) async fn tenant_for(&self, action: &str) -> Result<String, Response> {
        let tenant = self.v.tenant(self.q.get("tenant").map(String::as_str));
        authorize(&self.s, &self.v, action, &tenant).await?;
        Ok(tenant)
    }

    /// A change's form: origin and CSRF checked; the tenant it names.
    fn change(&self, body: &Bytes) -> Result<(HashMap<String, String>, String), Response> {
        let f = form(body);
        check_change(self.sessions(), &self.v, &f)?;
        let tenant = self.v.tenant(f.get("tenant").map(String::as_str));
        Ok((f, tenant))
    }
}

pub(super) fn store_error(e: StoreError) -> Response {
    tracing::error!(error = %e, "a console page could not read the store");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "The database could not be read; try again shortly.",
    )
}

pub(super) fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::Denied { .. } => {
            error_page(StatusCode::FORBIDDEN, "Access denied", &e.to_string())
        }
        ControlError::Store(StoreError::NotFound(m)) => {
            error_page(StatusCode::NOT_FOUND, "Not found", &m)
        }
        ControlError::Store(e) => store_error(e),
        e @ ControlError::NotCovered { .. } => {
            error_page(StatusCode::CONFLICT, "Not yet", &e.to_string())
        }
        e => error_page(StatusCode::BAD_REQUEST, "Not done", &e.to_string()),
    }
}

/// A refused change: when the policies want a second factor that a provider sign-in lacks,
/// the page offers to sign in again with one (step-up) and come back to `back`.
fn refused(console: &Console, v: &Viewer, e: ControlError, back: &str) -> Response {
    let could_step_up = console.oidc.is_some()
        && !v.principal.mfa
        && matches!(
            v.session.credential,
            super::session::Credential::Token { .. }
        )
        && matches!(e, ControlError::Denied { .. });
    if !could_step_up {
        return control_error(e);
    }
    let body = view::bare(
        "Access denied",
        html! {
            main.signin {
                h1 { "A second factor is needed" }
                p { (e.to_string()) }
                p { "Your sign-in shows no second factor, and the policies ask for one for this change." }
                p { a.button href={ "/console/signin/oidc?step_up=1&next=" (enc(back)) } { "Sign in again with a second factor" } }
                p { a href=(back) { "Back" } }
            }
        },
    );
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body.into_string(),
    )
        .into_response()
}

/// A money figure with a sensible number of decimals.
fn money(a: Amount, currency: &str) -> String {
    let dp = if a.to_f64().abs() >= 100.0 { 2 } else { 4 };
    format!("{} {currency}", a.format_dp(dp)).trim().to_owned()
}

/// The currency of a tenant's records (the one most spent in), or "".
async fn currency_of(s: &AppState, f: &UsageFilter) -> String {
    s.store
        .usage_report(f, &[Dimension::Currency], 0)
        .await
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.keys.into_iter().next())
        .unwrap_or_default()
}

/// The windows the overview offers: (query value, label, milliseconds).
const WINDOWS: [(&str, &str, i64); 4] = [
    ("1h", "last hour", 3_600_000),
    ("24h", "last 24 hours", 86_400_000),
    ("7d", "last 7 days", 7 * 86_400_000),
    ("30d", "last 30 days", 30 * 86_400_000),
];

fn window_of(q: &HashMap<String, String>) -> (&'static str, &'static str, i64) {
    let asked = q.get("window").map(String::as_str).unwrap_or("24h");
    WINDOWS
        .iter()
        .copied()
        .find(|w| w.0 == asked)
        .unwrap_or(WINDOWS[1])
}

fn tenant_field(tenant: &str) -> Markup {
    html! { input type="hidden" name="tenant" value=(tenant); }
}

/// One traffic row's cells: calls, errors, percentiles, spend and spend per call.
fn traffic_cells(t: &Traffic, currency: &str) -> Markup {
    let q = |p| millis(quantile(p, &LATENCY_BOUNDS_MS, &t.latency));
    html! {
        td.num { (t.calls) }
        td.num { (percent(t.server_errors, t.calls)) }
        td.num { (percent(t.client_errors, t.calls)) }
        td.num { (q(0.5)) }
        td.num { (q(0.95)) }
        td.num { (q(0.99)) }
        td.num { (money(t.cost, currency)) }
        td.num { (per_unit(t.cost, t.calls, 1).map_or("–".into(), |a| money(a, currency))) }
    }
}

fn traffic_table(title: &str, first: &str, rows: &[Traffic], currency: &str) -> Markup {
    html! {
        h2 { (title) }
        @if rows.is_empty() {
            p.muted { "No calls in this window." }
        } @else {
            table {
                thead { tr {
                    th { (first) } th.num { "calls" } th.num { "5xx" } th.num { "4xx" }
                    th.num { "p50" } th.num { "p95" } th.num { "p99" }
                    th.num { "spend" } th.num { "per call" }
                } }
                tbody {
                    @for t in rows.iter().take(25) {
                        tr {
                            td { @if t.key.is_empty() { span.muted { "(none)" } } @else { (t.key) } }
                            (traffic_cells(t, currency))
                        }
                    }
                }
            }
        }
    }
}

/// Traffic, latency, errors and spend per call of a tenant over a window.
pub(crate) async fn overview(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("usage.read").await);
    let Page { s, v, q, .. } = p;
    let (wkey, wlabel, wms) = window_of(&q);
    let now = now_ms();
    let f = UsageFilter {
        tenant: Some(tenant.clone()),
        from_ms: now - wms,
        until_ms: now + 1,
        ..UsageFilter::default()
    };
    let total = tri!(s.store.usage_traffic(&f, None).await.map_err(store_error))
        .pop()
        .unwrap_or_else(|| Traffic {
            latency: vec![0; LATENCY_BOUNDS_MS.len() + 1],
            ..Traffic::default()
        });
    let mut groups = Vec::new();
    for d in [
        TrafficDimension::App,
        TrafficDimension::Model,
        TrafficDimension::Release,
        TrafficDimension::Env,
    ] {
        groups.push(tri!(s
            .store
            .usage_traffic(&f, Some(d))
            .await
            .map_err(store_error)));
    }
    let currency = currency_of(&s, &f).await;
    // 48 points across the window.
    let bucket = (wms / 48).max(60_000);
    let first = (now - wms).div_euclid(bucket) * bucket;
    let n = ((now - first) / bucket + 1) as usize;
    let series = tri!(s
        .store
        .usage_traffic_series(&f, bucket)
        .await
        .map_err(store_error));
    let mut calls = vec![0.0; n];
    let mut errors = vec![0.0; n];
    let mut spend = vec![0.0; n];
    for (b, c, e, cost) in &series {
        let i = ((b - first) / bucket) as usize;
        if i < n {
            calls[i] += *c as f64;
            errors[i] += *e as f64;
            spend[i] += cost.to_f64();
        }
    }
    let labels: Vec<String> = (0..n)
        .map(|i| {
            let t = format_rfc3339(first + i as i64 * bucket);
            if wms <= 86_400_000 {
                t[11..16].to_owned()
            } else {
                t[5..10].to_owned()
            }
        })
        .collect();
    let refusals = s.metrics.answered(&tenant, &[402, 403, 429]);
    let routes = s.metrics.routes_of(&tenant);
    // Every tenant's traffic and the refusals no tenant can be told of: for operators.
    let everything = if super::sees_everything(&s, &v) {
        let all = UsageFilter {
            tenant: None,
            ..f.clone()
        };
        Some((
            tri!(s
                .store
                .usage_traffic(&all, Some(TrafficDimension::Tenant))
                .await
                .map_err(store_error)),
            s.metrics.auth_failures(),
        ))
    } else {
        None
    };
    let lat = |p| millis(quantile(p, &LATENCY_BOUNDS_MS, &total.latency));
    let body = html! {
        h1 { "Overview" }
        form.filters method="get" action="/console" {
            (tenant_field(&tenant))
            label { "Window"
                select name="window" data-autosubmit {
                    @for (k, l, _) in WINDOWS {
                        option value=(k) selected[k == wkey] { (l) }
                    }
                }
            }
            noscript { button type="submit" { "Show" } }
        }
        p.muted { "Calls of tenant " strong { (tenant) } " that reached a provider, " (wlabel) "." }
        div.cards {
            (card("calls", &total.calls.to_string()))
            (card("5xx errors", &percent(total.server_errors, total.calls)))
            (card("4xx answers", &percent(total.client_errors, total.calls)))
            (card("p50 latency", &lat(0.5)))
            (card("p95 latency", &lat(0.95)))
            (card("p99 latency", &lat(0.99)))
            (card("spend", &money(total.cost, &currency)))
            (card("per call", &per_unit(total.cost, total.calls, 1).map_or("–".into(), |a| money(a, &currency))))
        }
        h2 { "Refused by this gateway since it started" }
        div.cards {
            (card("quota (429)", &refusals[2].to_string()))
            (card("budget (402)", &refusals[0].to_string()))
            (card("policy (403)", &refusals[1].to_string()))
        }
        h2 { "Traffic" }
        (chart(line_chart(
            "Calls and server errors",
            "calls",
            &labels,
            &[
                Series { name: "calls".into(), values: calls, dashed: false },
                Series { name: "5xx".into(), values: errors, dashed: false },
            ],
        )))
        (chart(line_chart(
            "Spend",
            &currency,
            &labels,
            &[Series { name: "spend".into(), values: spend, dashed: false }],
        )))
        (traffic_table("By app", "team/app", &groups[0], &currency))
        (traffic_table("By model", "model", &groups[1], &currency))
        (traffic_table("By release", "release", &groups[2], &currency))
        (traffic_table("By environment", "env", &groups[3], &currency))
        @if let Some((tenants, failures)) = &everything {
            (traffic_table("Every tenant", "tenant", tenants, &currency))
            h2 { "Refused before a principal was known (this gateway, every tenant)" }
            @if failures.is_empty() {
                p.muted { "None since this gateway started." }
            } @else {
                div.cards { @for (reason, n) in failures { (card(reason, &n.to_string())) } }
            }
        }
        h2 { "By route, answered by this gateway since it started" }
        @if routes.is_empty() {
            p.muted { "No requests of this tenant yet." }
        } @else {
            table {
                thead { tr { th { "route" } th.num { "requests" } th.num { "4xx" } th.num { "5xx" } } }
                tbody {
                    @for (route, all, client, server) in &routes {
                        tr {
                            td.mono { (route) }
                            td.num { (all) }
                            td.num { (percent(*client as i64, *all as i64)) }
                            td.num { (percent(*server as i64, *all as i64)) }
                        }
                    }
                }
            }
        }
        p.hint { "Percentiles are estimated from latency buckets (≤10 ms, 25, 50, 100, 250, 500 ms, 1 s, …)." }
    };
    html_page(view::page(&v.frame("Overview", "/console", &tenant), body))
}

/// The spend page's windows and group choices.
const SPEND_WINDOWS: [(&str, &str); 4] = [
    ("month", "this month"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
    ("90d", "last 90 days"),
];
const GROUPS: [&str; 5] = ["team", "app", "model", "provider", "env"];

/// What a spend request asks for: the window, the grouping and its label.
struct SpendQuery {
    window: &'static str,
    start_ms: i64,
    end_ms: i64,
    group: Dimension,
    group_key: String,
}

impl SpendQuery {
    /// The tenant's records in the window.
    fn filter(&self, tenant: &str) -> UsageFilter {
        UsageFilter {
            tenant: Some(tenant.to_owned()),
            from_ms: self.start_ms,
            until_ms: self.end_ms,
            ..UsageFilter::default()
        }
    }
}

fn spend_query(s: &AppState, q: &HashMap<String, String>) -> Result<SpendQuery, Response> {
    let now = now_ms();
    let window = q.get("window").map(String::as_str).unwrap_or("month");
    let (window, start_ms) = match window {
        "7d" => ("7d", now - 7 * 86_400_000),
        "30d" => ("30d", now - 30 * 86_400_000),
        "90d" => ("90d", now - 90 * 86_400_000),
        _ => {
            let tz = custos_finops::period::time_zone(&s.config.finops.time_zone)
                .unwrap_or(jiff::tz::TimeZone::UTC);
            let w =
                custos_finops::period::window(custos_finops::period::PeriodKind::Monthly, &tz, now)
                    .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Invalid request", &e))?;
            ("month", w.start_ms)
        }
    };
    let group_key = q
        .get("group")
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| "team".into());
    let group = match group_key.strip_prefix("tag:") {
        Some(t) => {
            custos_store::check_tag_key(t)
                .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Invalid request", &e))?;
            Dimension::Tag(t.to_owned())
        }
        None if GROUPS.contains(&group_key.as_str()) => group_key
            .parse()
            .map_err(|e: String| error_page(StatusCode::BAD_REQUEST, "Invalid request", &e))?,
        None => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                &format!(
                    "group {group_key:?} is not one of {} or tag:NAME",
                    GROUPS.join(", ")
                ),
            ))
        }
    };
    Ok(SpendQuery {
        window,
        start_ms,
        end_ms: now + 1,
        group,
        group_key,
    })
}

/// Showback of a tenant: spend by a chosen grouping with unit costs, the daily trend, and
/// every budget's standing and burn-down.
pub(crate) async fn spend(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("usage.read").await);
    let Page { s, v, q, .. } = p;
    let sq = tri!(spend_query(&s, &q));
    let f = sq.filter(&tenant);
    let rows = tri!(s
        .store
        .usage_report(&f, std::slice::from_ref(&sq.group), 0)
        .await
        .map_err(store_error));
    let currency = currency_of(&s, &f).await;
    let total = rows
        .iter()
        .fold(Amount::ZERO, |a, r| a.saturating_add(r.cost));
    // The daily trend of the biggest groups; the rest together as "other".
    let first_day = sq.start_ms.div_euclid(86_400_000);
    let days = (sq.end_ms.div_euclid(86_400_000) - first_day + 1).max(1) as usize;
    let daily = tri!(s
        .store
        .usage_report(&f, &[sq.group.clone(), Dimension::Day], 0)
        .await
        .map_err(store_error));
    let top: Vec<&str> = rows.iter().take(7).map(|r| r.keys[0].as_str()).collect();
    let points: Vec<(String, i64, f64)> = daily
        .iter()
        .filter_map(|r| {
            let g = r.keys.first()?;
            let day = r.keys.get(1)?.parse::<i64>().ok()?;
            let name = if top.contains(&g.as_str()) {
                if g.is_empty() {
                    "(none)".to_owned()
                } else {
                    g.clone()
                }
            } else {
                "other".to_owned()
            };
            Some((name, day, r.cost.to_f64()))
        })
        .collect();
    let labels: Vec<String> = (0..days)
        .map(|i| format_rfc3339((first_day + i as i64) * 86_400_000)[5..10].to_owned())
        .collect();
    let trend = daily_spend(&points, first_day, days, Some(days - 1));
    let budgets = budgets_section(&s, &v, &tenant).await;
    let anomalies = anomalies_section(&s, &tenant, &sq.group).await;
    // Bills are the organization's: reconciled only for principals that see every tenant.
    let reconcile = if super::sees_everything(&s, &v) {
        Some(reconcile_section(&s, &q, &tenant, &sq).await)
    } else {
        None
    };
    let csv = format!(
        "/console/spend.csv?tenant={}&window={}&group={}",
        enc(&tenant),
        sq.window,
        enc(&sq.group_key)
    );
    let body = html! {
        h1 { "Spend" }
        form.filters method="get" action="/console/spend" {
            (tenant_field(&tenant))
            label { "Window"
                select name="window" data-autosubmit {
                    @for (k, l) in SPEND_WINDOWS {
                        option value=(k) selected[k == sq.window] { (l) }
                    }
                }
            }
            label { "Group by"
                input name="group" value=(sq.group_key) list="groups" size="14";
                datalist id="groups" {
                    @for g in GROUPS { option value=(g) {} }
                    option value="tag:Project" {}
                }
            }
            button type="submit" { "Show" }
            a.button.secondary href=(csv) download { "Download CSV" }
        }
        div.cards {
            (card("spend", &money(total, &currency)))
            (card("groups", &rows.len().to_string()))
            (card("since", &format_rfc3339(sq.start_ms)[..10]))
        }
        h2 { "Daily spend by " (sq.group_key) }
        (chart(line_chart(&format!("Daily spend by {}", sq.group_key), &currency, &labels, &trend)))
        h2 { "Showback by " (sq.group_key) }
        @if rows.is_empty() {
            p.muted { "No spend in this window." }
        } @else {
            table {
                thead { tr {
                    th { (sq.group_key) } th.num { "spend" } th.num { "share" } th.num { "calls" }
                    th.num { "tokens" } th.num { "per call" } th.num { "per 1M tokens" }
                    th.num { "unpriced" }
                } }
                tbody {
                    @for r in &rows {
                        @let tokens = r.input_tokens + r.cached_input_tokens + r.cache_write_tokens + r.output_tokens + r.reasoning_tokens;
                        tr {
                            td { @if r.keys[0].is_empty() { span.muted { "(none)" } } @else { (r.keys[0]) } }
                            td.num { (money(r.cost, &currency)) }
                            td.num { (share(r.cost, total)) }
                            td.num { (r.calls) }
                            td.num { (tokens) }
                            td.num { (per_unit(r.call_cost, r.calls, 1).map_or("–".into(), |a| money(a, &currency))) }
                            td.num { (per_unit(r.token_cost, tokens, 1_000_000).map_or("–".into(), |a| money(a, &currency))) }
                            td.num { (r.unpriced) }
                        }
                    }
                }
            }
        }
        (anomalies)
        (budgets)
        @if let Some(r) = reconcile { (r) }
    };
    html_page(view::page(
        &v.frame("Spend", "/console/spend", &tenant),
        body,
    ))
}

/// The bills ingested for the window reconciled as `custos cost reconcile` does: untagged
/// spend, the gateway's metering against each provider's bill, reported jobs in the bill.
/// `reconcile_tag`, `tolerance` and `provider_map` (`openai=OpenAI,…`) are query parameters.
async fn reconcile_section(
    s: &AppState,
    q: &HashMap<String, String>,
    tenant: &str,
    sq: &SpendQuery,
) -> Markup {
    let tag = q
        .get("reconcile_tag")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .unwrap_or("Team")
        .to_owned();
    let provider_map = q.get("provider_map").map(|m| m.trim()).unwrap_or("");
    let tolerance_text = q.get("tolerance").map(|t| t.trim()).unwrap_or("1");
    let form = html! {
        form.filters.no-print method="get" action="/console/spend" {
            (tenant_field(tenant))
            input type="hidden" name="window" value=(sq.window);
            input type="hidden" name="group" value=(sq.group_key);
            label { "Allocation tag" input name="reconcile_tag" value=(tag) size="12"; }
            label { "Tolerance %" input name="tolerance" value=(tolerance_text) size="4"; }
            label { "Provider names" input name="provider_map" value=(provider_map) placeholder="openai=OpenAI" size="22"; }
            button type="submit" { "Reconcile" }
        }
    };
    let head = html! { h2 { "Reconciliation with the bills (every tenant)" } (form) };
    let mut params = custos_control::ReconcileParams {
        tag: tag.clone(),
        ..Default::default()
    };
    match tolerance_text.parse::<f64>() {
        Ok(t) if (0.0..=100.0).contains(&t) => params.tolerance = t,
        _ => {
            return html! { (head) (notice("The tolerance is a percentage between 0 and 100.", "error")) }
        }
    }
    for pair in provider_map
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((g, b)) = pair.split_once('=') else {
            return html! { (head) (notice(&format!("Provider names are gateway=billing pairs, e.g. openai=OpenAI; got {pair:?}."), "error")) };
        };
        params
            .mapping
            .providers
            .insert(g.trim().to_owned(), b.trim().to_lowercase());
    }
    let report = match s.control.reconcile(sq.start_ms, sq.end_ms, &params).await {
        Ok(r) => r,
        Err(ControlError::Invalid(m)) => return html! { (head) (notice(&m, "error")) },
        Err(e) => {
            tracing::error!(error = %e, "the console could not reconcile the bills");
            return html! { (head) (notice("The bills could not be read.", "error")) };
        }
    };
    if report.is_empty() {
        return html! {
            (head)
            p.muted { "No bills ingested for this window. " code { "custos cost ingest FILE" } " reads FOCUS and AWS CUR exports." }
        };
    }
    let result = &report.result;
    html! {
        (head)
        p { "Overall: " (if report.failed { badge("over tolerance", "bad") } else { badge("within tolerance", "good") }) }
        @for a in &result.allocation {
            h3 { "Allocation by " (tag) " (" (a.currency) ")" }
            p {
                (a.billed) " billed, " (a.untagged) " untagged ("
                (format!("{:.2}%", a.untagged_percent)) "; tag compliance "
                (format!("{:.1}%", a.tag_compliance_percent)) ") "
                (if a.within_tolerance { badge("ok", "good") } else { badge("over", "bad") })
            }
            table {
                thead { tr { th { (tag) } th.num { "billed" } th.num { "rows" } } }
                tbody {
                    @for t in a.by_tag.iter().take(100) {
                        tr {
                            td { @if t.value.is_empty() { span.muted { "(untagged)" } } @else { (t.value) } }
                            td.num { (t.billed) }
                            td.num { (t.rows) }
                        }
                    }
                }
            }
        }
        @if !result.metering.is_empty() {
            h3 { "Gateway metering against provider bills" }
            table {
                thead { tr { th { "provider" } th { "model" } th.num { "metered" } th.num { "billed" } th.num { "gap" } } }
                tbody {
                    @for g in &result.metering {
                        @for m in &g.by_model {
                            tr {
                                td { (g.provider) }
                                td.mono { (m.model) }
                                td.num { (m.metered) }
                                td.num { (m.billed) }
                                td.num { (m.gap) }
                            }
                        }
                        tr {
                            td { strong { (g.provider) } }
                            td { "total" }
                            td.num { (g.metered) }
                            td.num { (g.billed) }
                            td.num {
                                (g.gap) " (" (format!("{:+.2}%", g.gap_percent)) ") "
                                @if !g.bill_found {
                                    (badge("no bill found: map its name", "warn"))
                                } @else if g.within_tolerance {
                                    (badge("ok", "good"))
                                } @else {
                                    (badge("over", "bad"))
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !report.jobs.is_empty() {
            h3 { "Jobs reported through /v1/usage, in the bill within 48 h of their end" }
            table {
                thead { tr { th { "job" } th { "provider" } th { "resource" } th.num { "reported" } th.num { "billed" } th { "status" } } }
                tbody {
                    @for j in report.jobs.iter().take(200) {
                        tr {
                            td.mono { (j.id) }
                            td { (j.provider) }
                            td { (j.resource) }
                            td.num { (j.reported) }
                            td.num { (j.billed.as_deref().unwrap_or("–")) }
                            td { @match j.status {
                                custos_finops::reconcile::JobStatus::Billed => (badge("billed", "good")),
                                custos_finops::reconcile::JobStatus::Pending => (badge("pending", "muted")),
                                custos_finops::reconcile::JobStatus::Missing => (badge("missing", "bad")),
                            } }
                        }
                    }
                }
            }
        }
        p.hint { "As " code { "custos cost reconcile" } " computes it; its " code { "--model-map" } " and " code { "--job-tag" } " options are there." }
    }
}

fn share(part: Amount, whole: Amount) -> String {
    if whole.is_zero() {
        "–".into()
    } else {
        format!("{:.1}%", part.to_f64() / whole.to_f64() * 100.0)
    }
}

/// Days whose spend strayed from its baseline, per group (the grouping when it is one the
/// anomaly check knows, else teams): the last 14 complete UTC days, each judged against the
/// 28 before it, as `custos cost anomalies` does with its defaults.
async fn anomalies_section(s: &AppState, tenant: &str, group: &Dimension) -> Markup {
    use custos_finops::anomaly::{detect, Settings};
    const JUDGED: i64 = 14;
    let settings = Settings::default();
    let by = match group {
        Dimension::Team | Dimension::App | Dimension::Env | Dimension::Tag(_) => group.clone(),
        _ => Dimension::Team,
    };
    let today = now_ms().div_euclid(86_400_000);
    let first = today - JUDGED - settings.window as i64;
    let f = UsageFilter {
        tenant: Some(tenant.to_owned()),
        from_ms: first * 86_400_000,
        until_ms: today * 86_400_000,
        ..UsageFilter::default()
    };
    let rows = match s
        .store
        .usage_report(&f, &[by.clone(), Dimension::Day], 0)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the console's anomaly check could not read usage");
            return html! { h2 { "Anomalies" } (notice("Usage could not be read.", "error")) };
        }
    };
    let days = (today - first) as usize;
    let mut series: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in &rows {
        let (Some(k), Some(d)) = (
            r.keys.first(),
            r.keys.get(1).and_then(|d| d.parse::<i64>().ok()),
        ) else {
            continue;
        };
        let i = d - first;
        if (0..days as i64).contains(&i) {
            series.entry(k.clone()).or_insert_with(|| vec![0.0; days])[i as usize] +=
                r.cost.to_f64();
        }
    }
    let mut found = Vec::new();
    for (key, daily) in &series {
        for a in detect(daily, &settings) {
            if a.index + JUDGED as usize >= days {
                found.push((key.clone(), first + a.index as i64, a));
            }
        }
    }
    found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let label = match &by {
        Dimension::Tag(t) => format!("tag:{t}"),
        Dimension::App => "app".into(),
        Dimension::Env => "env".into(),
        _ => "team".into(),
    };
    html! {
        h2 { "Anomalies" }
        @if found.is_empty() {
            p.muted { "No day of the last 14 strayed from its " (label) "'s baseline (28 days before it; ±" (settings.k) " deviations)." }
        } @else {
            table {
                thead { tr { th { (label) } th { "day" } th.num { "spend" } th.num { "expected" } th.num { "deviations" } } }
                tbody {
                    @for (key, day, a) in &found {
                        tr {
                            td { @if key.is_empty() { span.muted { "(none)" } } @else { (key) } }
                            td { (format_rfc3339(day * 86_400_000)[..10]) }
                            td.num { (format!("{:.4}", a.value)) }
                            td.num { (format!("{:.4}", a.expected)) }
                            td.num { (format!("{:+.1}", a.score)) }
                        }
                    }
                }
            }
        }
        p.hint { "Alerts go out from " code { "custos cost anomalies --notify" } " run on a schedule." }
    }
}

/// Each budget of the tenant: spent in its current period, status, burn-down.
async fn budgets_section(s: &AppState, v: &Viewer, tenant: &str) -> Markup {
    if let Err(why) = super::decide(s, v, "budgets.read", tenant).await {
        return html! { h2 { "Budgets" } p.muted { (why) } };
    }
    let budgets = match s.store.budgets(Some(tenant)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "budgets could not be read for the console");
            return html! { h2 { "Budgets" } (notice("The budgets could not be read.", "error")) };
        }
    };
    let now = now_ms();
    let mut rows = Vec::new();
    for b in &budgets {
        let tz = custos_finops::period::time_zone(&b.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
        let Ok(w) = custos_finops::period::window(b.period, &tz, now) else {
            continue;
        };
        let off = jiff::Timestamp::from_millisecond(w.start_ms)
            .map(|t| i64::from(tz.to_offset(t).seconds()) * 1000)
            .unwrap_or(0);
        let first = (w.start_ms + off).div_euclid(86_400_000);
        let days = ((w.end_ms - w.start_ms) as f64 / 86_400_000.0)
            .round()
            .max(1.0) as usize;
        let per_day_rows = s
            .store
            .usage_report(&custos_store::budget_filter(b, w), &[Dimension::Day], off)
            .await
            .unwrap_or_default();
        let mut per_day = vec![0.0; days];
        let mut spent = Amount::ZERO;
        for r in &per_day_rows {
            spent = spent.saturating_add(r.cost);
            if let Some(i) = r
                .keys
                .first()
                .and_then(|d| d.parse::<i64>().ok())
                .map(|d| d - first)
            {
                if (0..days as i64).contains(&i) {
                    per_day[i as usize] += r.cost.to_f64();
                }
            }
        }
        let pct = if b.amount.is_zero() {
            0.0
        } else {
            spent.to_f64() / b.amount.to_f64() * 100.0
        };
        let (status, tone) = if spent >= b.amount {
            ("exhausted", "bad")
        } else if b.thresholds.iter().any(|&t| pct >= f64::from(t)) {
            ("alerting", "warn")
        } else {
            ("ok", "good")
        };
        let today = ((now + off).div_euclid(86_400_000) - first).clamp(0, days as i64 - 1) as usize;
        let labels: Vec<String> = (0..days)
            .map(|i| format_rfc3339((first + i as i64) * 86_400_000)[5..10].to_owned())
            .collect();
        rows.push(html! {
            tr {
                td { (b.name) }
                td { (b.scope.to_string()) }
                td { (b.period.as_str()) }
                td.num { (money(b.amount, b.currency.as_str())) }
                td.num { (money(spent, b.currency.as_str())) }
                td.num { (format!("{pct:.1}%")) }
                td { (b.thresholds.iter().map(|t| format!("{t}%")).collect::<Vec<_>>().join(", ")) }
                td { (badge(status, tone)) }
            }
            tr.chartrow {
                td colspan="8" {
                    (chart(line_chart(
                        &format!("Budget {}: burn-down", b.name),
                        b.currency.as_str(),
                        &labels,
                        &burn_down(&per_day, today, b.amount.to_f64()),
                    )))
                }
            }
        });
    }
    html! {
        h2 { "Budgets" }
        @if rows.is_empty() {
            p.muted { "No budgets for this tenant. Create one with " code { "custos budgets create" } "." }
        } @else {
            table {
                thead { tr {
                    th { "budget" } th { "scope" } th { "period" } th.num { "amount" }
                    th.num { "spent" } th.num { "used" } th { "alerts at" } th { "status" }
                } }
                tbody { @for r in rows { (r) } }
            }
        }
    }
}

/// One CSV field, quoted when needed; a leading formula character is neutralized so a
/// spreadsheet shows the text instead of evaluating it.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The showback table as CSV.
pub(crate) async fn spend_csv(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("usage.read").await);
    let Page { s, q, .. } = p;
    let sq = tri!(spend_query(&s, &q));
    let f = sq.filter(&tenant);
    let rows = tri!(s
        .store
        .usage_report(&f, &[sq.group.clone(), Dimension::Currency], 0)
        .await
        .map_err(store_error));
    let mut out = format!(
        "{},currency,cost,calls,input_tokens,output_tokens,cost_per_call,cost_per_1m_tokens,unpriced,from,until\n",
        csv_field(&sq.group_key)
    );
    let (from, until) = (format_rfc3339(sq.start_ms), format_rfc3339(sq.end_ms));
    for r in &rows {
        let tokens = r.input_tokens
            + r.cached_input_tokens
            + r.cache_write_tokens
            + r.output_tokens
            + r.reasoning_tokens;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{from},{until}\n",
            csv_field(&r.keys[0]),
            csv_field(r.keys.get(1).map_or("", String::as_str)),
            r.cost,
            r.calls,
            r.input_tokens + r.cached_input_tokens + r.cache_write_tokens,
            r.output_tokens + r.reasoning_tokens,
            per_unit(r.call_cost, r.calls, 1).map_or(String::new(), |a| a.to_string()),
            per_unit(r.token_cost, tokens, 1_000_000).map_or(String::new(), |a| a.to_string()),
            r.unpriced,
        ));
    }
    let name = format!(
        "attachment; filename=\"custos-spend-{}-{}.csv\"",
        tenant.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_"
        ),
        sq.window
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        out,
    )
        .into_response()
}

/// Ends the session in this browser and in this process (CSRF-checked, so another site
/// cannot sign one out).
pub(crate) async fn signout(p: Page, body: Bytes) -> Response {
    tri!(p.change(&body));
    p.sessions().end(&p.v.session, now_ms());
    let mut res = see_other("/console/signin");
    if let Ok(c) = http::HeaderValue::from_str(&p.sessions().cookie(super::session::COOKIE, "", 0))
    {
        res.headers_mut().insert(header::SET_COOKIE, c);
    }
    res
}

/// Fixed messages a change's redirect may ask to show (never text from the URL).
fn done_message(q: &HashMap<String, String>) -> Option<&'static str> {
    Some(match q.get("done")?.as_str() {
        "revoked" => "The key was revoked. Calls with it are refused from now on.",
        "approved" => "Your approval was recorded.",
        "denied" => "Your denial was recorded.",
        "rolled-back" => "The app was rolled back to its previous release.",
        "grant-approved" => "The grant was approved; the role is held from now until it expires.",
        "grant-denied" => "The grant was denied.",
        _ => return None,
    })
}

/// Keys (with revoke) and grants of a tenant.
pub(crate) async fn access(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("keys.read").await);
    let Page { s, v, q, .. } = p;
    let keys = tri!(s
        .store
        .list_keys(&KeyFilter {
            tenant: Some(tenant.clone()),
            include_inactive: true,
            ..KeyFilter::default()
        })
        .await
        .map_err(store_error));
    let grants = match super::decide(&s, &v, "grants.read", &tenant).await {
        Ok(()) => Ok(tri!(s
            .store
            .grants_list(Some(&tenant))
            .await
            .map_err(store_error))),
        Err(why) => Err(why),
    };
    let now = now_ms();
    let time = |ms: Option<i64>| {
        ms.map_or("–".to_owned(), |t| {
            format_rfc3339(t)[..16].replace('T', " ")
        })
    };
    // The compliance checks span every tenant: shown only to principals the policies let
    // read the whole installation (`.global`), and not asked (nor recorded) for the others.
    let everything = super::sees_everything(&s, &v);
    let compliance = if everything {
        Some(
            s.control
                .comply_checks(&s.config, now_ms())
                .await
                .map_err(|e| e.to_string()),
        )
    } else {
        None
    };
    let risks = match &s.config.console.risks {
        Some(path) if everything => Some(risk_register(&s, path).await),
        _ => None,
    };
    let body = html! {
        h1 { "Access" }
        @if let Some(m) = done_message(&q) { (notice(m, "ok")) }
        h2 { "API keys" }
        @if keys.is_empty() {
            p.muted { "No keys in this tenant." }
        } @else {
            table {
                thead { tr {
                    th { "key" } th { "name" } th { "team/app" } th { "env" } th { "created" }
                    th { "expires" } th { "status" } th.no-print { "" }
                } }
                tbody {
                    @for k in &keys {
                        @let status = k.status(now);
                        tr {
                            td.mono { (k.id) br; span.muted { (k.prefix) "…" } }
                            td { (k.name.as_deref().unwrap_or("")) }
                            td { (k.team) "/" (k.app) }
                            td { (k.env) }
                            td { (time(Some(k.created_at))) }
                            td { (time(k.expires_at)) }
                            td { (badge(status, if status == "active" { "good" } else { "muted" })) }
                            td.no-print {
                                @if status == "active" {
                                    form.inline method="post"
                                        action={ "/console/access/keys/" (enc(&k.id)) "/revoke" }
                                        data-confirm={ "Revoke " (k.id) "? Calls with it will be refused." } {
                                        (csrf_field(&v.csrf))
                                        (tenant_field(&tenant))
                                        input name="why" placeholder="why" required size="18" aria-label={ "why revoke " (k.id) };
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(c) = &compliance {
            h2 { "Compliance checks (every tenant)" }
            @match c {
                Err(e) => (notice(&format!("The checks could not run: {e}"), "error")),
                Ok(checks) => table {
                    thead { tr { th { "check" } th { "status" } th { "why" } } }
                    tbody {
                        @for ch in checks {
                            tr {
                                td.mono { (ch.id) }
                                td { (badge(ch.status.as_str(), check_tone(ch.status))) }
                                td { (ch.summary) }
                            }
                        }
                    }
                },
            }
            p.hint { "The store-backed checks of " code { "custos comply status" } "; the ledger anchor is checked there, where the public key is." }
        }
        @if let Some(r) = &risks { (risk_section(r)) }
        h2 { "Access review" }
        form.filters.no-print method="post" action="/console/access/review" {
            (csrf_field(&v.csrf))
            (tenant_field(&tenant))
            label { "Unused after" input name="unused_after" value="90d" size="6"; }
            label { "Rotate keys after" input name="rotate_after" value="90d" size="6"; }
            label { "Why" input name="why" placeholder="quarterly review" size="24"; }
            button type="submit" { "Run access review" }
        }
        p.hint { "Lists every principal with its roles, keys, grants, creator and last use, flags what needs attention, and records the findings' digest in the ledger (" code { "access.review" } "), as " code { "custos access review" } " does." }
        h2 { "Grants" }
        @match &grants {
            Err(why) => p.muted { (why) },
            Ok(g) if g.is_empty() => p.muted { "No grants requested in this tenant." },
            Ok(g) => table {
                thead { tr {
                    th { "grant" } th { "principal" } th { "role" } th { "kind" } th { "status" }
                    th { "why" } th { "requested" } th { "expires" } th.no-print { "" }
                } }
                tbody {
                    @for g in g.iter().take(200) {
                        tr {
                            td.mono { (g.id) }
                            td.mono { (g.principal) }
                            td { (g.role) }
                            td { (g.kind.as_str()) }
                            td { (badge(g.status.as_str(), if g.live(now) { "good" } else { "muted" })) }
                            td { (g.why) }
                            td { (time(Some(g.requested_at))) " by " span.mono { (g.requested_by) } }
                            td { (time(g.expires_at)) }
                            td.no-print {
                                @if g.status.as_str() == "pending" {
                                    form.inline method="post" action={ "/console/access/grants/" (enc(&g.id)) "/decide" } {
                                        (csrf_field(&v.csrf))
                                        (tenant_field(&tenant))
                                        input name="why" placeholder="why" required size="14" aria-label={ "why decide " (g.id) };
                                        button type="submit" name="decision" value="approve" { "Approve" }
                                        button.danger type="submit" name="decision" value="deny" { "Deny" }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        }
    };
    html_page(view::page(
        &v.frame("Access", "/console/access", &tenant),
        body,
    ))
}

/// Registers larger than this are not what they claim to be (as `custos risk lint`).
const MAX_REGISTER: u64 = 16 << 20;

/// The configured risk register, read and linted; `Err` says why it could not be read.
async fn risk_register(
    s: &AppState,
    path: &std::path::Path,
) -> Result<custos_control::comply::RegisterLint, String> {
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    if meta.len() > MAX_REGISTER {
        return Err(format!(
            "{shown}: {} bytes, larger than a register can be (16 MiB)",
            meta.len()
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{shown}: not UTF-8 (byte {})", e.utf8_error().valid_up_to()))?;
    let ids = s.authz.policy_ids();
    let ids: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
    let today =
        custos_govern::risk::parse_date(&format_rfc3339(now_ms())[..10]).unwrap_or((1970, 1, 1));
    s.control
        .lint_register(&s.config, &ids, &text, today)
        .await
        .map_err(|e| e.to_string())
}

/// The risk register: its lint, heat map and open risks, highest score first.
fn risk_section(r: &Result<custos_control::comply::RegisterLint, String>) -> Markup {
    use custos_govern::risk::{rating, report, Severity};
    let lint = match r {
        Err(e) => {
            return html! {
                h2 { "Risk register" }
                (notice(&format!("The register could not be read: {e}"), "error"))
            }
        }
        Ok(l) => l,
    };
    let reg = &lint.register;
    let errors = lint
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = lint.problems.len() - errors;
    let mut open: Vec<&custos_govern::risk::Risk> =
        reg.risks.iter().filter(|r| r.is_open()).collect();
    open.sort_by_key(|r| std::cmp::Reverse(r.score().unwrap_or(0)));
    let currency = reg.currency.as_deref().unwrap_or("USD");
    html! {
        h2 { "Risk register" @if let Some(sys) = &reg.system { " — " (sys) } }
        div.cards {
            (card("risks", &reg.risks.len().to_string()))
            (card("open", &open.len().to_string()))
            (card("lint", &if lint.ok() {
                if warnings == 0 { "clean".to_owned() } else { format!("clean, {warnings} warnings") }
            } else {
                format!("{errors} errors")
            }))
        }
        @if !lint.problems.is_empty() {
            table {
                thead { tr { th.num { "line" } th { "rule" } th { "risk" } th { "problem" } } }
                tbody {
                    @for p in lint.problems.iter().take(50) {
                        tr {
                            td.num { (p.line) }
                            td { (badge(p.rule, if p.severity == Severity::Error { "bad" } else { "warn" })) }
                            td.mono { (p.risk.as_deref().unwrap_or("")) }
                            td { (p.message) }
                        }
                    }
                }
            }
        }
        @if !reg.risks.is_empty() {
            (chart(report::heat_map(reg)))
        }
        @if !open.is_empty() {
            table {
                thead { tr {
                    th { "risk" } th { "title" } th.num { "score" } th { "owner" } th { "due" }
                    th { "status" } th.num { "annual loss (mean)" }
                } }
                tbody {
                    @for r in open.iter().take(200) {
                        tr {
                            td.mono { (r.id) }
                            td { (r.title.as_deref().unwrap_or("")) }
                            td.num { @match r.score() {
                                Some(n) => { (n) " " span.muted { (rating(n)) } },
                                None => "–",
                            } }
                            td { (r.owner.as_deref().unwrap_or("")) }
                            td { (r.due.as_deref().unwrap_or("")) }
                            td { (r.status()) }
                            td.num { @match lint.exposure.get(&r.id) {
                                Some(ale) => { (format!("{ale:.0} {currency}")) },
                                None => "–",
                            } }
                        }
                    }
                }
            }
        }
        p.hint { "Edit the register as code and check it with " code { "custos risk lint" } "; " code { "custos risk report --format html" } " renders it with FAIR percentiles." }
    }
}

/// The colour of a compliance check's status.
fn check_tone(status: custos_govern::comply::Status) -> &'static str {
    use custos_govern::comply::Status;
    match status {
        Status::Fail => "bad",
        Status::NotCovered => "muted",
        // Passing.
        _ => "good",
    }
}

/// Revokes a key of the tenant (`keys.revoke`, with why), then back to the access page.
pub(crate) async fn revoke_key(p: Page, Path(id): Path<String>, body: Bytes) -> Response {
    let (f, tenant) = tri!(p.change(&body));
    let Page { s, v, console, .. } = p;
    let reason = tri!(form_reason(&f));
    match s
        .control
        .revoke_key(&v.actor(&s), Some(&tenant), &id, &reason)
        .await
    {
        Ok(_) => {
            crate::admin::refresh_keys(&s).await;
            see_other(&format!(
                "/console/access?tenant={}&done=revoked",
                enc(&tenant)
            ))
        }
        Err(e) => refused(
            &console,
            &v,
            e,
            &format!("/console/access?tenant={}", enc(&tenant)),
        ),
    }
}

/// Approves or denies a pending grant of the tenant (another person than its requester).
pub(crate) async fn decide_grant(p: Page, Path(id): Path<String>, body: Bytes) -> Response {
    let (f, tenant) = tri!(p.change(&body));
    let Page { s, v, console, .. } = p;
    let reason = tri!(form_reason(&f));
    let approve = match f.get("decision").map(String::as_str) {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "decision must be approve or deny",
            )
        }
    };
    match s
        .control
        .decide_grant(&v.actor(&s), Some(&tenant), &id, approve, &reason)
        .await
    {
        Ok(_) => {
            crate::admin::refresh_directory(&s).await;
            see_other(&format!(
                "/console/access?tenant={}&done={}",
                enc(&tenant),
                if approve {
                    "grant-approved"
                } else {
                    "grant-denied"
                }
            ))
        }
        Err(e) => refused(
            &console,
            &v,
            e,
            &format!("/console/access?tenant={}", enc(&tenant)),
        ),
    }
}

/// Runs an access review of the tenant and shows its findings (recorded in the ledger).
pub(crate) async fn access_review(p: Page, body: Bytes) -> Response {
    let (f, tenant) = tri!(p.change(&body));
    let Page { s, v, .. } = p;
    let reason = tri!(form_reason(&f));
    let duration = |k: &str| -> Result<i64, Response> {
        let text = f
            .get(k)
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .unwrap_or("90d");
        custos_core::duration::parse_duration(text)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .map_err(|e| {
                error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    &format!("{k}: {e}"),
                )
            })
    };
    let unused = tri!(duration("unused_after"));
    let rotate = tri!(duration("rotate_after"));
    let review = match s
        .control
        .access_review(&v.actor(&s), &tenant, unused, rotate, &reason)
        .await
    {
        Ok(r) => r,
        Err(e) => return control_error(e),
    };
    let time = |ms: Option<i64>| {
        ms.map_or("–".to_owned(), |t| {
            format_rfc3339(t)[..16].replace('T', " ")
        })
    };
    let r = &review.value;
    let body = html! {
        p { a href={ "/console/access?tenant=" (enc(&tenant)) } { "← Access" } }
        h1 { "Access review" }
        (notice(&format!("{} principals, {} flagged; recorded as ledger entry {} (findings {}).", r.rows.len(), r.flagged, review.ledger.start, r.digest), if r.flagged == 0 { "ok" } else { "error" }))
        table {
            thead { tr {
                th { "principal" } th { "type" } th { "roles" } th { "team/app" } th { "status" }
                th { "created" } th { "creator" } th { "last use" } th { "grants" } th { "flags" }
            } }
            tbody {
                @for row in &r.rows {
                    tr {
                        td.mono { (row.principal) }
                        td { (row.kind) }
                        td { (row.roles.join(", ")) }
                        td { (row.team) @if !row.app.is_empty() { "/" (row.app) } }
                        td { (row.status) }
                        td { (time(row.created_at)) }
                        td.mono { (row.creator.as_deref().unwrap_or("–")) }
                        td { @if row.last_use.is_some() { (time(row.last_use)) } @else { "never" } }
                        td { (row.grants.join("; ")) }
                        td { @for fl in &row.flags { (badge(fl, "bad")) " " } }
                    }
                }
            }
        }
    };
    html_page(view::page(
        &v.frame("Access review", "/console/access", &tenant),
        body,
    ))
}

fn release_tone(state: &str) -> &'static str {
    match state {
        "active" => "good",
        "rolled back" => "bad",
        "draft" | "approved" => "warn",
        _ => "muted",
    }
}

/// The tenant's releases, newest first.
pub(crate) async fn releases(p: Page) -> Response {
    let tenant = tri!(p.tenant_for("releases.read").await);
    let Page { s, v, q, .. } = p;
    let rows = tri!(s.store.releases(&tenant, None).await.map_err(store_error));
    let mut views = Vec::new();
    for r in rows.iter().take(200) {
        views.push(tri!(s
            .control
            .release_view(&r.id)
            .await
            .map_err(control_error)));
    }
    let body = html! {
        h1 { "Releases" }
        @if let Some(m) = done_message(&q) { (notice(m, "ok")) }
        @if views.is_empty() {
            p.muted { "No releases in this tenant. Propose one with " code { "custos release create" } "." }
        } @else {
            table {
                thead { tr {
                    th { "release" } th { "app" } th { "tier" } th { "state" }
                    th { "still needs" } th { "author" } th { "created" }
                } }
                tbody {
                    @for rv in &views {
                        @let r = &rv.release;
                        tr {
                            td.mono { a href={ "/console/releases/" (enc(&r.id)) "?tenant=" (enc(&tenant)) } { (r.id) } }
                            td { (r.app) }
                            td { (r.tier) }
                            td { (badge(&r.state, release_tone(&r.state))) }
                            td { @if rv.missing.is_empty() { span.muted { "nothing" } } @else { (rv.missing.join(", ")) } }
                            td.mono { (r.author) }
                            td { (format_rfc3339(r.created_at)[..16].replace('T', " ")) }
                        }
                    }
                }
            }
        }
    };
    html_page(view::page(
        &v.frame("Releases", "/console/releases", &tenant),
        body,
    ))
}

/// The release `id` when it is the tenant's; another tenant's is "not found", as if absent.
async fn release_in(
    s: &AppState,
    tenant: &str,
    id: &str,
) -> Result<custos_control::ReleaseView, Response> {
    match crate::admin::releases::release_of(s, tenant, id).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no release {id:?} in tenant {tenant:?}."),
        )),
        Err(e) => Err(control_error(e)),
    }
}

/// One release: what it is, its decisions, what it still needs, and the forms to decide.
pub(crate) async fn release(p: Page, Path(id): Path<String>) -> Response {
    let tenant = tri!(p.tenant_for("releases.read").await);
    let Page { s, v, q, .. } = p;
    let rv = tri!(release_in(&s, &tenant, &id).await);
    let r = &rv.release;
    let pretty = |j: &str| {
        serde_json::from_str::<serde_json::Value>(j)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| j.to_owned())
    };
    let action = format!("/console/releases/{}/decide", enc(&r.id));
    let body = html! {
        p { a href={ "/console/releases?tenant=" (enc(&tenant)) } { "← Releases" } }
        h1 { "Release " span.mono { (r.id) } }
        @if let Some(m) = done_message(&q) { (notice(m, "ok")) }
        div.cards {
            (card("app", &r.app))
            (card("tier", &r.tier))
            (card("state", &r.state))
            (card("author", &r.author))
        }
        @if let Some(w) = &r.why { p { strong { "Why: " } (w) } }
        @if let Some(t) = &r.ticket { p { strong { "Ticket: " } (t) } }
        h2 { "Approvals" }
        p { "Tier " (r.tier) " requires approval by: "
            @if rv.rule.approvals.is_empty() { "no one" } @else { (rv.rule.approvals.join(", ")) }
            @if !rv.rule.evidence.is_empty() { "; evidence: " (rv.rule.evidence.join(", ")) }
            "." }
        @if rv.missing.is_empty() { p { (badge("nothing missing", "good")) } }
        @else { p { "Still needs: " (rv.missing.join(", ")) } }
        @if rv.decisions.is_empty() {
            p.muted { "No decisions yet." }
        } @else {
            table {
                thead { tr { th { "role" } th { "decision" } th { "by" } th { "why" } th { "when" } th { "ledger" } } }
                tbody {
                    @for d in &rv.decisions {
                        tr {
                            td { (d.role) }
                            td { (badge(&d.decision, if d.decision == "approve" { "good" } else { "bad" })) }
                            td.mono { (d.by_whom) }
                            td { (d.why.as_deref().unwrap_or("")) }
                            td { (format_rfc3339(d.at)[..16].replace('T', " ")) }
                            td.mono { "#" (d.ledger_index) }
                        }
                    }
                }
            }
        }
        @if r.state == "draft" && !rv.rule.approvals.is_empty() {
            h2.no-print { "Decide" }
            form.filters method="post" action=(action) {
                (csrf_field(&v.csrf))
                (tenant_field(&tenant))
                label { "as role"
                    select name="role" {
                        @for role in rv.rule.approvals.iter().filter(|r| !rv.decisions.iter().any(|d| &d.role == *r)) {
                            option value=(role) { (role) }
                        }
                    }
                }
                label { "why" input name="why" size="40" placeholder="required to deny"; }
                button type="submit" name="decision" value="approve" { "Approve" }
                button.danger type="submit" name="decision" value="deny" { "Deny" }
            }
        }
        @if r.state == "active" {
            h2.no-print { "Roll back" }
            form.filters method="post" action=(action) data-confirm={ "Roll " (r.app) " back to its previous release?" } {
                (csrf_field(&v.csrf))
                (tenant_field(&tenant))
                label { "why" input name="why" size="40" required; }
                button.danger type="submit" name="decision" value="rollback" { "Roll back" }
            }
        }
        h2 { "What it releases" }
        pre.mono { (pretty(&r.composite)) }
        h2 { "Evidence" }
        pre.mono { (pretty(&r.evidence)) }
    };
    html_page(view::page(
        &v.frame("Release", "/console/releases", &tenant),
        body,
    ))
}

/// Approves, denies or rolls back, as the form's `decision` says.
pub(crate) async fn decide_release(p: Page, Path(id): Path<String>, body: Bytes) -> Response {
    let (f, tenant) = tri!(p.change(&body));
    let Page { s, v, console, .. } = p;
    // Reading the release is authorized first, so another tenant's id is "not found".
    tri!(authorize(&s, &v, "releases.read", &tenant).await);
    let rv = tri!(release_in(&s, &tenant, &id).await);
    let reason = tri!(form_reason(&f));
    let actor = v.actor(&s);
    let back = |done: &str| {
        see_other(&format!(
            "/console/releases/{}?tenant={}&done={done}",
            enc(&id),
            enc(&tenant)
        ))
    };
    match f.get("decision").map(String::as_str) {
        Some(d @ ("approve" | "deny")) => {
            let role = f.get("role").map(String::as_str).unwrap_or("");
            match s
                .control
                .decide_release(&actor, &id, role, d == "approve", &reason)
                .await
            {
                Ok(_) => back(if d == "approve" { "approved" } else { "denied" }),
                Err(e) => refused(
                    &console,
                    &v,
                    e,
                    &format!("/console/releases/{}?tenant={}", enc(&id), enc(&tenant)),
                ),
            }
        }
        Some("rollback") => match s
            .control
            .rollback_release(&actor, &tenant, &rv.release.app, &reason)
            .await
        {
            Ok(_) => {
                crate::admin::releases::refresh_aliases(&s).await;
                back("rolled-back")
            }
            Err(e) => refused(
                &console,
                &v,
                e,
                &format!("/console/releases/{}?tenant={}", enc(&id), enc(&tenant)),
            ),
        },
        _ => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "decision must be approve, deny or rollback",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralized() {
        assert_eq!(csv_field("ml"), "ml");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }

    #[test]
    fn only_known_messages_are_shown() {
        let mut q = HashMap::new();
        q.insert("done".to_owned(), "revoked".to_owned());
        assert!(done_message(&q).is_some());
        q.insert(
            "done".to_owned(),
            "<b>your key leaked, visit evil</b>".to_owned(),
        );
        assert!(done_message(&q).is_none());
    }
}
