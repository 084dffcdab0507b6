//! Prices, usage records, budgets and their once-per-period alerts. Money is stored as
//! BIGINT nano-units and summed by the database exactly; tags are a JSON object per record.

use crate::{Backend, Store, StoreError};
use custos_finops::budget::{Action, Budget, Scope};
use custos_finops::period::Window;
use custos_finops::{Amount, Currency, Price, Rates, Usage, UsageRecord};
use sqlx::any::AnyRow;
use sqlx::Row;

const USAGE_COLUMNS: &str = "id, at, source, tenant, team, app, env, key_id, provider, model, region, \
    input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, images, \
    duration_ms, compute_ms, calls, documents, latency_ms, cost_nanos, currency, priced, energy_mwh, \
    co2e_mg, tags, untagged, request_id, status, detail, release_id, end_user, gpu_ms";
const USAGE_WIDTH: usize = 35;
/// 35 × 28 = 980 parameters per statement, under SQLite's and PostgreSQL's limits.
const USAGE_ROWS_PER_INSERT: usize = 28;

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn has_tokens(u: &Usage) -> bool {
    [
        u.input_tokens,
        u.cached_input_tokens,
        u.cache_write_tokens,
        u.output_tokens,
        u.reasoning_tokens,
    ]
    .iter()
    .any(|&n| n > 0)
}

/// A dimension a usage report can group by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dimension {
    Tenant,
    Team,
    App,
    Env,
    Key,
    Provider,
    Model,
    Region,
    Source,
    Day,
    Currency,
    Tag(String),
}

impl std::str::FromStr for Dimension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim() {
            "tenant" => Dimension::Tenant,
            "team" => Dimension::Team,
            "app" => Dimension::App,
            "env" => Dimension::Env,
            "key" => Dimension::Key,
            "provider" => Dimension::Provider,
            "model" => Dimension::Model,
            "region" => Dimension::Region,
            "source" => Dimension::Source,
            "day" => Dimension::Day,
            "currency" => Dimension::Currency,
            t if t.starts_with("tag:") && t.len() > 4 => {
                let key = &t[4..];
                check_tag_key(key)?;
                Dimension::Tag(key.to_owned())
            }
            other => {
                return Err(format!(
                "{other:?} is not a report dimension: use tenant, team, app, env, key, provider, model, region, source, day or tag:NAME"
            ))
            }
        })
    }
}

impl Dimension {
    pub fn label(&self) -> String {
        match self {
            Dimension::Tenant => "tenant".into(),
            Dimension::Team => "team".into(),
            Dimension::App => "app".into(),
            Dimension::Env => "env".into(),
            Dimension::Key => "key".into(),
            Dimension::Provider => "provider".into(),
            Dimension::Model => "model".into(),
            Dimension::Region => "region".into(),
            Dimension::Source => "source".into(),
            Dimension::Day => "day".into(),
            Dimension::Currency => "currency".into(),
            Dimension::Tag(t) => format!("tag:{t}"),
        }
    }
}

/// Tag names go into JSON paths, so they are kept to a safe alphabet.
pub fn check_tag_key(key: &str) -> Result<(), String> {
    if key.is_empty()
        || key.len() > 64
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
    {
        return Err(format!(
            "tag name {key:?} must be 1–64 letters, digits or _-.:/"
        ));
    }
    Ok(())
}

/// Upper bounds (ms, inclusive) of the latency buckets `usage_traffic` counts calls in; a last
/// bucket holds the slower ones.
pub const LATENCY_BOUNDS_MS: [i64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000,
];

/// What the console's traffic tables group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficDimension {
    Tenant,
    /// `team/app`.
    App,
    Model,
    /// The release that served the call (empty: none).
    Release,
    Env,
}

impl TrafficDimension {
    fn expr(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::App => "team || '/' || app",
            Self::Model => "model",
            Self::Release => "COALESCE(release_id, '')",
            Self::Env => "env",
        }
    }
}

/// Gateway calls of one group: counts, spend and a latency histogram.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub key: String,
    pub calls: i64,
    /// Answered 5xx (the provider's or custos' own failure).
    pub server_errors: i64,
    /// Answered 4xx after reaching the provider.
    pub client_errors: i64,
    pub cost: Amount,
    pub tokens: i64,
    /// Calls per `LATENCY_BOUNDS_MS` bucket, and one more for the slower ones.
    pub latency: Vec<i64>,
}

/// Which records a report or a sum covers.
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    pub tenant: Option<String>,
    pub team: Option<String>,
    pub app: Option<String>,
    pub key_id: Option<String>,
    pub env: Option<String>,
    /// Records carrying all of these tags.
    pub tags: Vec<(String, String)>,
    pub from_ms: i64,
    pub until_ms: i64,
}

/// One group of a report: the dimension values and the sums.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub keys: Vec<String>,
    pub records: i64,
    pub calls: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub documents: i64,
    pub compute_ms: i64,
    /// GPUs × wall clock.
    pub gpu_ms: i64,
    pub cost: Amount,
    /// The cost of the records that have tokens, calls, documents and GPU time: each unit
    /// cost divides only the cost of usage in its unit.
    pub token_cost: Amount,
    pub call_cost: Amount,
    pub document_cost: Amount,
    pub gpu_cost: Amount,
    pub unpriced: i64,
    pub untagged: i64,
    pub untagged_cost: Amount,
    pub energy_mwh: i64,
    pub co2e_mg: i64,
}

/// Where a report reads: the records, or the daily rollup (window in UTC day numbers).
#[derive(Clone, Copy, Debug)]
enum Source {
    Records,
    Daily,
}

impl UsageTotals {
    fn add(&mut self, o: &UsageTotals) {
        self.records += o.records;
        self.calls += o.calls;
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_write_tokens += o.cache_write_tokens;
        self.output_tokens += o.output_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.documents += o.documents;
        self.compute_ms += o.compute_ms;
        self.gpu_ms += o.gpu_ms;
        self.cost = self.cost.saturating_add(o.cost);
        self.token_cost = self.token_cost.saturating_add(o.token_cost);
        self.call_cost = self.call_cost.saturating_add(o.call_cost);
        self.document_cost = self.document_cost.saturating_add(o.document_cost);
        self.gpu_cost = self.gpu_cost.saturating_add(o.gpu_cost);
        self.unpriced += o.unpriced;
        self.untagged += o.untagged;
        self.untagged_cost = self.untagged_cost.saturating_add(o.untagged_cost);
        self.energy_mwh += o.energy_mwh;
        self.co2e_mg += o.co2e_mg;
    }
}

/// The rollup's key of one record.
type DailyKey = (i64, [String; 11]);

fn daily_key(r: &UsageRecord) -> DailyKey {
    (
        r.at_ms.div_euclid(86_400_000),
        [
            r.tenant.clone(),
            r.team.clone(),
            r.app.clone(),
            r.env.clone(),
            r.key_id.clone(),
            r.provider.clone(),
            r.model.clone(),
            r.region.clone(),
            r.source.clone(),
            r.currency.as_str().to_owned(),
            serde_json::to_string(&r.tags).unwrap_or_else(|_| "{}".into()),
        ],
    )
}

/// The rollup rows `records` add to: per day and key, the sums of `DAILY_SUMS`.
fn daily_sums<'a>(
    records: impl Iterator<Item = &'a UsageRecord>,
) -> std::collections::HashMap<DailyKey, [i64; 20]> {
    let mut sums: std::collections::HashMap<DailyKey, [i64; 20]> = Default::default();
    for r in records {
        let u = &r.usage;
        let cost = r.cost.to_i64_nanos().unwrap_or(i64::MAX);
        let add = [
            1,
            clamp_i64(u.calls),
            clamp_i64(u.input_tokens),
            clamp_i64(u.cached_input_tokens),
            clamp_i64(u.cache_write_tokens),
            clamp_i64(u.output_tokens),
            clamp_i64(u.reasoning_tokens),
            clamp_i64(r.documents),
            clamp_i64(u.compute_ms),
            cost,
            i64::from(!r.priced),
            i64::from(r.untagged),
            if r.untagged { cost } else { 0 },
            clamp_i64(r.energy_mwh),
            clamp_i64(r.co2e_mg),
            clamp_i64(u.gpu_ms),
            if has_tokens(u) { cost } else { 0 },
            if u.calls > 0 { cost } else { 0 },
            if r.documents > 0 { cost } else { 0 },
            if u.gpu_ms > 0 { cost } else { 0 },
        ];
        let e = sums.entry(daily_key(r)).or_insert([0; 20]);
        for (a, b) in e.iter_mut().zip(add) {
            *a = a.saturating_add(b);
        }
    }
    sums
}

/// `usage_insert` on SQLite, in one transaction on `conn`.
fn sqlite_usage_insert(
    conn: &mut rusqlite::Connection,
    records: &[UsageRecord],
) -> Result<u64, StoreError> {
    use rusqlite::types::Value as V;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut fresh = Vec::with_capacity(records.len());
    {
        let placeholders = vec!["?"; USAGE_WIDTH].join(", ");
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO usage_records ({USAGE_COLUMNS}) VALUES ({placeholders}) ON CONFLICT (id) DO NOTHING"
        ))?;
        for r in records {
            let u = &r.usage;
            let cost = r.cost.to_i64_nanos().ok_or_else(|| {
                StoreError::Invalid(format!("usage record {}: cost out of range", r.id))
            })?;
            use rusqlite::types::{ToSqlOutput as O, ValueRef};
            fn text(s: &str) -> O<'_> {
                O::Borrowed(ValueRef::Text(s.as_bytes()))
            }
            fn opt(s: &Option<String>) -> O<'_> {
                s.as_deref().map_or(O::Borrowed(ValueRef::Null), text)
            }
            let tags = serde_json::to_string(&r.tags).unwrap_or_else(|_| "{}".into());
            let int = |n: u64| O::Owned(V::Integer(clamp_i64(n)));
            let num = |n: i64| O::Owned(V::Integer(n));
            let values: [O<'_>; USAGE_WIDTH] = [
                text(&r.id),
                num(r.at_ms),
                text(&r.source),
                text(&r.tenant),
                text(&r.team),
                text(&r.app),
                text(&r.env),
                text(&r.key_id),
                text(&r.provider),
                text(&r.model),
                text(&r.region),
                int(u.input_tokens),
                int(u.cached_input_tokens),
                int(u.cache_write_tokens),
                int(u.output_tokens),
                int(u.reasoning_tokens),
                int(u.images),
                int(u.duration_ms),
                int(u.compute_ms),
                int(u.calls),
                int(r.documents),
                int(r.latency_ms),
                num(cost),
                text(r.currency.as_str()),
                num(i64::from(r.priced)),
                int(r.energy_mwh),
                int(r.co2e_mg),
                text(&tags),
                num(i64::from(r.untagged)),
                opt(&r.request_id),
                num(i64::from(r.status)),
                opt(&r.detail),
                opt(&r.release),
                opt(&r.end_user),
                int(u.gpu_ms),
            ];
            if insert.execute(rusqlite::params_from_iter(values.iter()))? == 1 {
                fresh.push(r);
            }
        }
    }
    // Only records stored just now count in the rollup, so a retried batch adds nothing twice.
    let sums = daily_sums(fresh.iter().copied());
    if !sums.is_empty() {
        let placeholders = vec!["?"; 12 + DAILY_SUMS.len()].join(", ");
        let updates: Vec<String> = DAILY_SUMS
            .iter()
            .map(|c| format!("{c} = usage_daily.{c} + excluded.{c}"))
            .collect();
        let mut upsert = tx.prepare_cached(&format!(
            "INSERT INTO usage_daily ({DAILY_KEYS}, {}) VALUES ({placeholders}) ON CONFLICT ({DAILY_KEYS}) DO UPDATE SET {}",
            DAILY_SUMS.join(", "),
            updates.join(", ")
        ))?;
        for ((day, keys), vals) in &sums {
            let params = std::iter::once(V::Integer(*day))
                .chain(keys.iter().map(|k| V::Text(k.clone())))
                .chain(vals.iter().map(|v| V::Integer(*v)));
            upsert.execute(rusqlite::params_from_iter(params))?;
        }
    }
    tx.commit()?;
    Ok(fresh.len() as u64)
}

const DAILY_KEYS: &str =
    "day, tenant, team, app, env, key_id, provider, model, region, source, currency, tags";
const DAILY_SUMS: [&str; 20] = [
    "records",
    "calls",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "documents",
    "compute_ms",
    "cost_nanos",
    "unpriced",
    "untagged",
    "untagged_cost",
    "energy_mwh",
    "co2e_mg",
    "gpu_ms",
    "token_cost_nanos",
    "call_cost_nanos",
    "document_cost_nanos",
    "gpu_cost_nanos",
];

impl Store {
    fn tag_expr(&self, param: usize) -> String {
        match self.backend() {
            Backend::Sqlite => format!("json_extract(tags, ${param})"),
            Backend::Postgres => format!("(tags::jsonb ->> ${param})"),
        }
    }

    fn tag_param(&self, key: &str) -> String {
        match self.backend() {
            Backend::Sqlite => format!("$.\"{key}\""),
            Backend::Postgres => key.to_owned(),
        }
    }

    /// Every price, by provider, model and date.
    pub async fn prices_all(&self) -> Result<Vec<Price>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, model, effective_from, currency, rates FROM prices
             ORDER BY provider, model, effective_from",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let model: String = r.try_get("model")?;
                let bad = |e: String| StoreError::Invalid(format!("stored price of {model}: {e}"));
                let rates: Rates = serde_json::from_str(&r.try_get::<String, _>("rates")?)
                    .map_err(|e| bad(e.to_string()))?;
                Ok(Price {
                    provider: r.try_get("provider")?,
                    effective_from: r.try_get("effective_from")?,
                    currency: r.try_get::<String, _>("currency")?.parse().map_err(bad)?,
                    rates,
                    model: model.clone(),
                })
            })
            .collect()
    }

    /// Writes usage records; a record whose id is already stored is skipped, so a retried
    /// batch or a re-sent job report is counted once. Returns how many were new.
    pub async fn usage_insert(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        if let Some(file) = self.sqlite_file() {
            // On SQLite the gateway's usage writer keeps its own connection with prepared
            // statements, as the ledger writer does: through sqlx each batch paid a statement
            // parse and a copy of every bound value.
            let (file, slot, records) = (file.to_owned(), self.usage_writer(), records.to_vec());
            return tokio::task::spawn_blocking(move || {
                crate::ledger::with_writer_conn(&file, &slot, |conn| {
                    sqlite_usage_insert(conn, &records)
                })
            })
            .await
            .map_err(|e| StoreError::Invalid(format!("the usage writer thread failed: {e}")))?;
        }
        let mut tx = self.pool().begin().await?;
        let mut added = 0;
        for chunk in records.chunks(USAGE_ROWS_PER_INSERT) {
            let mut sql = crate::ledger::values_sql(
                self.backend(),
                &format!("INSERT INTO usage_records ({USAGE_COLUMNS}) VALUES "),
                USAGE_WIDTH,
                chunk.len(),
            );
            sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let mut q = sqlx::query_as::<_, (String,)>(&sql);
            for r in chunk {
                let u = &r.usage;
                let cost = r.cost.to_i64_nanos().ok_or_else(|| {
                    StoreError::Invalid(format!("usage record {}: cost out of range", r.id))
                })?;
                let tags = serde_json::to_string(&r.tags).unwrap_or_else(|_| "{}".into());
                q = q
                    .bind(r.id.clone())
                    .bind(r.at_ms)
                    .bind(r.source.clone())
                    .bind(r.tenant.clone())
                    .bind(r.team.clone())
                    .bind(r.app.clone())
                    .bind(r.env.clone())
                    .bind(r.key_id.clone())
                    .bind(r.provider.clone())
                    .bind(r.model.clone())
                    .bind(r.region.clone())
                    .bind(clamp_i64(u.input_tokens))
                    .bind(clamp_i64(u.cached_input_tokens))
                    .bind(clamp_i64(u.cache_write_tokens))
                    .bind(clamp_i64(u.output_tokens))
                    .bind(clamp_i64(u.reasoning_tokens))
                    .bind(clamp_i64(u.images))
                    .bind(clamp_i64(u.duration_ms))
                    .bind(clamp_i64(u.compute_ms))
                    .bind(clamp_i64(u.calls))
                    .bind(clamp_i64(r.documents))
                    .bind(clamp_i64(r.latency_ms))
                    .bind(cost)
                    .bind(r.currency.as_str().to_owned())
                    .bind(i32::from(r.priced))
                    .bind(clamp_i64(r.energy_mwh))
                    .bind(clamp_i64(r.co2e_mg))
                    .bind(tags)
                    .bind(i32::from(r.untagged))
                    .bind(r.request_id.clone())
                    .bind(i32::from(r.status))
                    .bind(r.detail.clone())
                    .bind(r.release.clone())
                    .bind(r.end_user.clone())
                    .bind(clamp_i64(u.gpu_ms));
            }
            let fresh: std::collections::HashSet<String> = q
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(id,)| id)
                .collect();
            added += fresh.len() as u64;
            // Only records stored just now count in the rollup, so a retried batch adds
            // nothing twice.
            let sums = daily_sums(chunk.iter().filter(|r| fresh.contains(&r.id)));
            let sums: Vec<(DailyKey, [i64; 20])> = sums.into_iter().collect();
            for part in sums.chunks(USAGE_ROWS_PER_INSERT) {
                let mut sql = crate::ledger::values_sql(
                    self.backend(),
                    &format!(
                        "INSERT INTO usage_daily ({DAILY_KEYS}, {}) VALUES ",
                        DAILY_SUMS.join(", ")
                    ),
                    12 + DAILY_SUMS.len(),
                    part.len(),
                );
                let updates: Vec<String> = DAILY_SUMS
                    .iter()
                    .map(|c| format!("{c} = usage_daily.{c} + excluded.{c}"))
                    .collect();
                sql.push_str(&format!(
                    " ON CONFLICT ({DAILY_KEYS}) DO UPDATE SET {}",
                    updates.join(", ")
                ));
                let mut q = sqlx::query(&sql);
                for ((day, keys), vals) in part {
                    q = q.bind(*day);
                    for k in keys {
                        q = q.bind(k.clone());
                    }
                    for v in vals {
                        q = q.bind(*v);
                    }
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Appends the WHERE clause for `f` from parameter `next` on; returns the binds.
    fn filter_sql(&self, f: &UsageFilter, sql: &mut String, next: &mut usize) -> Vec<String> {
        self.filter_sql_on("at", f, sql, next)
    }

    /// Like `filter_sql`, comparing the window with `time` (`at`, or `day` in the rollup).
    fn filter_sql_on(
        &self,
        time: &str,
        f: &UsageFilter,
        sql: &mut String,
        next: &mut usize,
    ) -> Vec<String> {
        let mut binds = Vec::new();
        sql.push_str(&format!(
            " WHERE {time} >= ${} AND {time} < ${}",
            *next,
            *next + 1
        ));
        *next += 2;
        for (col, val) in [
            ("tenant", &f.tenant),
            ("team", &f.team),
            ("app", &f.app),
            ("key_id", &f.key_id),
            ("env", &f.env),
        ] {
            if let Some(v) = val {
                sql.push_str(&format!(" AND {col} = ${}", *next));
                *next += 1;
                binds.push(v.clone());
            }
        }
        for (k, v) in &f.tags {
            sql.push_str(&format!(" AND {} = ${}", self.tag_expr(*next), *next + 1));
            *next += 2;
            binds.push(self.tag_param(k));
            binds.push(v.clone());
        }
        binds
    }

    /// Sums usage by the given dimensions (none: one grand total), biggest cost first.
    /// Whole UTC days are read from the daily rollup (a month of 10 million calls is a few
    /// thousand rows there); only partial days at the window's edges, and day grouping in a
    /// zone other than UTC, scan the records themselves.
    pub async fn usage_report(
        &self,
        f: &UsageFilter,
        by: &[Dimension],
        day_offset_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        const DAY: i64 = 86_400_000;
        let local_days = by.contains(&Dimension::Day) && day_offset_ms.rem_euclid(DAY) != 0;
        let first_whole = f.from_ms.div_euclid(DAY) + i64::from(f.from_ms.rem_euclid(DAY) != 0);
        let end_whole = if f.until_ms == i64::MAX {
            i64::MAX / DAY
        } else {
            f.until_ms.div_euclid(DAY)
        };
        if local_days || first_whole >= end_whole {
            return self
                .usage_query(Source::Records, f, by, day_offset_ms)
                .await;
        }
        let mut parts = Vec::new();
        let interior = UsageFilter {
            from_ms: first_whole,
            until_ms: end_whole,
            ..f.clone()
        };
        parts.push(
            self.usage_query(Source::Daily, &interior, by, day_offset_ms)
                .await?,
        );
        if f.from_ms < first_whole * DAY {
            let edge = UsageFilter {
                until_ms: first_whole * DAY,
                ..f.clone()
            };
            parts.push(
                self.usage_query(Source::Records, &edge, by, day_offset_ms)
                    .await?,
            );
        }
        if f.until_ms != i64::MAX && f.until_ms > end_whole * DAY {
            let edge = UsageFilter {
                from_ms: end_whole * DAY,
                ..f.clone()
            };
            parts.push(
                self.usage_query(Source::Records, &edge, by, day_offset_ms)
                    .await?,
            );
        }
        if parts.len() == 1 {
            return Ok(parts.pop().unwrap_or_default());
        }
        let mut merged: Vec<UsageTotals> = Vec::new();
        let mut index: std::collections::HashMap<Vec<String>, usize> = Default::default();
        for t in parts.into_iter().flatten() {
            match index.get(&t.keys) {
                Some(&i) => merged[i].add(&t),
                None => {
                    index.insert(t.keys.clone(), merged.len());
                    merged.push(t);
                }
            }
        }
        // A grand total of nothing is still one row of zeros, as the database gives it.
        if by.is_empty() && merged.len() > 1 {
            let mut total = merged.remove(0);
            for t in &merged {
                total.add(t);
            }
            merged = vec![total];
        }
        merged.sort_by_key(|t| std::cmp::Reverse(t.cost));
        Ok(merged)
    }

    async fn usage_query(
        &self,
        source: Source,
        f: &UsageFilter,
        by: &[Dimension],
        day_offset_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let mut next = 1usize;
        let mut group_binds = Vec::new();
        let mut keys = Vec::new();
        for d in by {
            keys.push(match d {
                Dimension::Tenant => "tenant".to_owned(),
                Dimension::Team => "team".to_owned(),
                Dimension::App => "app".to_owned(),
                Dimension::Env => "env".to_owned(),
                Dimension::Key => "key_id".to_owned(),
                Dimension::Provider => "provider".to_owned(),
                Dimension::Model => "model".to_owned(),
                Dimension::Region => "region".to_owned(),
                Dimension::Source => "source".to_owned(),
                Dimension::Currency => "currency".to_owned(),
                Dimension::Day => match source {
                    Source::Records => {
                        format!("CAST(((at + {day_offset_ms}) / 86400000) AS BIGINT)")
                    }
                    Source::Daily => "day".to_owned(),
                },
                Dimension::Tag(t) => {
                    let e = format!("COALESCE({}, '')", self.tag_expr(next));
                    next += 1;
                    group_binds.push(self.tag_param(t));
                    e
                }
            });
        }
        let select_keys: String = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("CAST({k} AS TEXT) AS k{i}, "))
            .collect();
        let (count, unpriced, untagged_cost, table, time) = match source {
            Source::Records => (
                "COUNT(*)",
                "SUM(1 - priced)",
                "SUM(untagged * cost_nanos)",
                "usage_records",
                "at",
            ),
            Source::Daily => (
                "SUM(records)",
                "SUM(unpriced)",
                "SUM(untagged_cost)",
                "usage_daily",
                "day",
            ),
        };
        // What each unit cost divides: the cost of the records that have the unit.
        let unit_costs: [(&str, &str); 4] = match source {
            Source::Records => [
                ("SUM(CASE WHEN input_tokens + cached_input_tokens + cache_write_tokens + output_tokens + reasoning_tokens > 0 THEN cost_nanos ELSE 0 END)", "token_cost"),
                ("SUM(CASE WHEN calls > 0 THEN cost_nanos ELSE 0 END)", "call_cost"),
                ("SUM(CASE WHEN documents > 0 THEN cost_nanos ELSE 0 END)", "document_cost"),
                ("SUM(CASE WHEN gpu_ms > 0 THEN cost_nanos ELSE 0 END)", "gpu_cost"),
            ],
            Source::Daily => [
                ("SUM(token_cost_nanos)", "token_cost"),
                ("SUM(call_cost_nanos)", "call_cost"),
                ("SUM(document_cost_nanos)", "document_cost"),
                ("SUM(gpu_cost_nanos)", "gpu_cost"),
            ],
        };
        let unit_costs: String = unit_costs
            .iter()
            .map(|(expr, name)| format!("CAST(COALESCE({expr}, 0) AS BIGINT) AS {name}"))
            .collect::<Vec<_>>()
            .join(",\n               ");
        let mut sql = format!(
            "SELECT {select_keys} CAST(COALESCE({count}, 0) AS BIGINT) AS records,
               CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS calls,
               CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens,
               CAST(COALESCE(SUM(cached_input_tokens), 0) AS BIGINT) AS cached_input_tokens,
               CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT) AS cache_write_tokens,
               CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens,
               CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT) AS reasoning_tokens,
               CAST(COALESCE(SUM(documents), 0) AS BIGINT) AS documents,
               CAST(COALESCE(SUM(compute_ms), 0) AS BIGINT) AS compute_ms,
               CAST(COALESCE(SUM(gpu_ms), 0) AS BIGINT) AS gpu_ms,
               CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cost_nanos,
               {unit_costs},
               CAST(COALESCE({unpriced}, 0) AS BIGINT) AS unpriced,
               CAST(COALESCE(SUM(untagged), 0) AS BIGINT) AS untagged,
               CAST(COALESCE({untagged_cost}, 0) AS BIGINT) AS untagged_cost,
               CAST(COALESCE(SUM(energy_mwh), 0) AS BIGINT) AS energy_mwh,
               CAST(COALESCE(SUM(co2e_mg), 0) AS BIGINT) AS co2e_mg
             FROM {table}"
        );
        let binds = self.filter_sql_on(time, f, &mut sql, &mut next);
        if !keys.is_empty() {
            let groups: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", groups.join(", ")));
        }
        sql.push_str(" ORDER BY cost_nanos DESC");
        let mut q = sqlx::query(&sql);
        for b in &group_binds {
            q = q.bind(b.clone());
        }
        q = q.bind(f.from_ms).bind(f.until_ms);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let keys = (0..by.len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(format!("k{i}").as_str())
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(UsageTotals {
                    keys,
                    records: r.try_get("records")?,
                    calls: r.try_get("calls")?,
                    input_tokens: r.try_get("input_tokens")?,
                    cached_input_tokens: r.try_get("cached_input_tokens")?,
                    cache_write_tokens: r.try_get("cache_write_tokens")?,
                    output_tokens: r.try_get("output_tokens")?,
                    reasoning_tokens: r.try_get("reasoning_tokens")?,
                    documents: r.try_get("documents")?,
                    compute_ms: r.try_get("compute_ms")?,
                    gpu_ms: r.try_get("gpu_ms")?,
                    cost: Amount::from_nanos(r.try_get::<i64, _>("cost_nanos")?.into()),
                    token_cost: Amount::from_nanos(r.try_get::<i64, _>("token_cost")?.into()),
                    call_cost: Amount::from_nanos(r.try_get::<i64, _>("call_cost")?.into()),
                    document_cost: Amount::from_nanos(r.try_get::<i64, _>("document_cost")?.into()),
                    gpu_cost: Amount::from_nanos(r.try_get::<i64, _>("gpu_cost")?.into()),
                    unpriced: r.try_get("unpriced")?,
                    untagged: r.try_get("untagged")?,
                    untagged_cost: Amount::from_nanos(r.try_get::<i64, _>("untagged_cost")?.into()),
                    energy_mwh: r.try_get("energy_mwh")?,
                    co2e_mg: r.try_get("co2e_mg")?,
                })
            })
            .collect()
    }

    /// Up to `limit` records in `f` with ids after `after` (ids grow with time), for
    /// streaming exports page by page.
    pub async fn usage_page(
        &self,
        f: &UsageFilter,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let mut sql = format!("SELECT {USAGE_COLUMNS} FROM usage_records");
        let mut next = 1;
        let binds = self.filter_sql(f, &mut sql, &mut next);
        sql.push_str(&format!(
            " AND id > ${next} ORDER BY id LIMIT ${}",
            next + 1
        ));
        let mut q = sqlx::query(&sql).bind(f.from_ms).bind(f.until_ms);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.bind(after).bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Spend in `f`'s range bucketed by `bucket_ms` (e.g. 15 minutes): (bucket start, cost).
    pub async fn usage_buckets(
        &self,
        f: &UsageFilter,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, Amount)>, StoreError> {
        let bucket_ms = bucket_ms.max(1);
        let mut sql = format!(
            "SELECT CAST((at / {bucket_ms}) * {bucket_ms} AS BIGINT) AS b,
                    CAST(SUM(cost_nanos) AS BIGINT) AS c FROM usage_records"
        );
        let mut next = 1;
        let binds = self.filter_sql(f, &mut sql, &mut next);
        sql.push_str(" GROUP BY 1 ORDER BY 1");
        let mut q = sqlx::query_as::<_, (i64, i64)>(&sql)
            .bind(f.from_ms)
            .bind(f.until_ms);
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|(b, c)| (b, Amount::from_nanos(c.into())))
            .collect())
    }

    /// Gateway calls in `f` grouped by `by` (none: one row) and by latency bucket
    /// (`LATENCY_BOUNDS_MS`): the counts behind the console's traffic tables, each row small
    /// however many calls the window holds.
    pub async fn usage_traffic(
        &self,
        f: &UsageFilter,
        by: Option<TrafficDimension>,
    ) -> Result<Vec<Traffic>, StoreError> {
        let key = by.map_or("''", TrafficDimension::expr);
        let mut bucket = String::from("CASE");
        for (i, b) in LATENCY_BOUNDS_MS.iter().enumerate() {
            bucket.push_str(&format!(" WHEN latency_ms <= {b} THEN {i}"));
        }
        bucket.push_str(&format!(" ELSE {} END", LATENCY_BOUNDS_MS.len()));
        let mut sql = format!(
            "SELECT CAST({key} AS TEXT) AS k, {bucket} AS b,
                    CAST(COUNT(*) AS BIGINT) AS n,
                    CAST(COALESCE(SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END), 0) AS BIGINT) AS e5,
                    CAST(COALESCE(SUM(CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END), 0) AS BIGINT) AS e4,
                    CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS c,
                    CAST(COALESCE(SUM(input_tokens + cached_input_tokens + cache_write_tokens + output_tokens + reasoning_tokens), 0) AS BIGINT) AS t
             FROM usage_records"
        );
        let mut next = 1;
        let binds = self.filter_sql(f, &mut sql, &mut next);
        sql.push_str(" AND source = 'gateway' GROUP BY 1, 2");
        let mut q = sqlx::query_as::<_, (Option<String>, i32, i64, i64, i64, i64, i64)>(&sql)
            .bind(f.from_ms)
            .bind(f.until_ms);
        for b in binds {
            q = q.bind(b);
        }
        let mut out: Vec<Traffic> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for (k, b, n, e5, e4, c, t) in q.fetch_all(self.pool()).await? {
            let k = k.unwrap_or_default();
            let i = *index.entry(k.clone()).or_insert_with(|| {
                out.push(Traffic {
                    key: k,
                    latency: vec![0; LATENCY_BOUNDS_MS.len() + 1],
                    ..Traffic::default()
                });
                out.len() - 1
            });
            let row = &mut out[i];
            row.calls += n;
            row.server_errors += e5;
            row.client_errors += e4;
            row.cost = row.cost.saturating_add(Amount::from_nanos(c.into()));
            row.tokens += t;
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| row.latency.get_mut(b)) {
                *slot += n;
            }
        }
        out.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Gateway calls in `f` per `bucket_ms`: (bucket start, calls, 5xx, cost).
    pub async fn usage_traffic_series(
        &self,
        f: &UsageFilter,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, i64, i64, Amount)>, StoreError> {
        let bucket_ms = bucket_ms.max(1);
        let mut sql = format!(
            "SELECT CAST((at / {bucket_ms}) * {bucket_ms} AS BIGINT) AS b,
                    CAST(COUNT(*) AS BIGINT) AS n,
                    CAST(COALESCE(SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END), 0) AS BIGINT) AS e,
                    CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS c
             FROM usage_records"
        );
        let mut next = 1;
        let binds = self.filter_sql(f, &mut sql, &mut next);
        sql.push_str(" AND source = 'gateway' GROUP BY 1 ORDER BY 1");
        let mut q = sqlx::query_as::<_, (i64, i64, i64, i64)>(&sql)
            .bind(f.from_ms)
            .bind(f.until_ms);
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|(b, n, e, c)| (b, n, e, Amount::from_nanos(c.into())))
            .collect())
    }

    /// Gateway calls in `f` (drills' aside) and how many of them were bad: a 5xx, or (with
    /// `slow_ms`) slower than that. The counts behind an SLO's error budget.
    pub async fn usage_outcomes(
        &self,
        f: &UsageFilter,
        slow_ms: Option<u64>,
    ) -> Result<(u64, u64), StoreError> {
        let bad = match slow_ms {
            Some(ms) => format!("latency_ms > {}", clamp_i64(ms)),
            None => "status >= 500".to_owned(),
        };
        let mut sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n,
                    CAST(COALESCE(SUM(CASE WHEN {bad} THEN 1 ELSE 0 END), 0) AS BIGINT) AS b
             FROM usage_records"
        );
        let mut next = 1;
        let binds = self.filter_sql(f, &mut sql, &mut next);
        // A release drill's synthetic failures (its keys' env is `drill`) spend no budget.
        sql.push_str(" AND source = 'gateway' AND env <> 'drill'");
        let mut q = sqlx::query_as::<_, (i64, i64)>(&sql)
            .bind(f.from_ms)
            .bind(f.until_ms);
        for b in binds {
            q = q.bind(b);
        }
        let (n, b) = q.fetch_one(self.pool()).await?;
        Ok((n.max(0) as u64, b.max(0) as u64))
    }

    /// The calls a release served in [from, until): (status, latency ms, cost in nanos), at
    /// most `limit` of them (the earliest).
    pub async fn usage_release_calls(
        &self,
        release: &str,
        from_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<(u16, u64, i64)>, StoreError> {
        let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
            "SELECT status, latency_ms, cost_nanos FROM usage_records
             WHERE release_id = $1 AND at >= $2 AND at < $3 ORDER BY at LIMIT $4",
        )
        .bind(release)
        .bind(from_ms)
        .bind(until_ms)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(s, l, c)| (s.clamp(0, 999) as u16, l.max(0) as u64, c))
            .collect())
    }

    /// What a budget's scope has spent in `w`, from every process's records.
    pub async fn budget_spent(&self, b: &Budget, w: Window) -> Result<Amount, StoreError> {
        let f = budget_filter(b, w);
        let rows = self.usage_report(&f, &[], 0).await?;
        Ok(rows.first().map_or(Amount::ZERO, |r| r.cost))
    }

    pub async fn budgets(&self, tenant: Option<&str>) -> Result<Vec<Budget>, StoreError> {
        budgets_in(&mut *self.pool().acquire().await?, tenant).await
    }

    /// Claims the alert for `threshold` in the period starting at `period_start`; true for
    /// exactly one caller across restarts and processes.
    pub async fn budget_alert_claim(
        &self,
        budget_id: &str,
        period_start: i64,
        threshold: u32,
        spent: Amount,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO budget_alerts (budget_id, period_start, threshold, fired_at, spent_nanos)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(budget_id)
        .bind(period_start)
        .bind(i64::from(threshold))
        .bind(custos_core::time::now_ms())
        .bind(spent.to_i64_nanos().unwrap_or(i64::MAX))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Thresholds already alerted for a budget's period.
    pub async fn budget_alerts_fired(
        &self,
        budget_id: &str,
        period_start: i64,
    ) -> Result<Vec<u32>, StoreError> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT threshold FROM budget_alerts WHERE budget_id = $1 AND period_start = $2 ORDER BY threshold",
        )
        .bind(budget_id)
        .bind(period_start)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(t,)| t as u32).collect())
    }
}

/// A file's key in `billing_items`: the first 60 bits of its SHA-256, so each row carries an
/// integer rather than 64 hex characters.
fn file_id(sha256: &str) -> i64 {
    i64::from_str_radix(sha256.get(..15).unwrap_or("0"), 16).unwrap_or(0)
}

fn sqlite_billing_insert(
    file: &std::path::Path,
    file_id: i64,
    items: &[custos_finops::billing::LineItem],
) -> Result<u64, StoreError> {
    let mut conn = rusqlite::Connection::open(file)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut added = 0u64;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO billing_items (file_id, row_number, provider, billing_account, sub_account, service, service_category, charge_category, period_start, period_end, billed_nanos, effective_nanos, list_nanos, currency, region, resource_id, sku, description, tags)              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)              ON CONFLICT (file_id, row_number) DO NOTHING",
        )?;
        let mut tags = String::new();
        for it in items {
            let nanos = |a: Amount| {
                a.to_i64_nanos().ok_or_else(|| {
                    StoreError::Invalid(format!("row {}: an amount is out of range", it.row))
                })
            };
            tags.clear();
            if !it.tags.is_empty() {
                tags = serde_json::to_string(&it.tags).unwrap_or_else(|_| "{}".into());
            }
            added += stmt.execute(rusqlite::params![
                file_id,
                clamp_i64(it.row),
                it.provider,
                it.billing_account,
                it.sub_account,
                it.service,
                it.service_category,
                it.charge_category,
                it.period_start_ms,
                it.period_end_ms,
                nanos(it.billed_cost)?,
                nanos(it.effective_cost)?,
                nanos(it.list_cost)?,
                it.currency.as_str(),
                it.region,
                it.resource_id,
                it.sku,
                it.description,
                if tags.is_empty() { "{}" } else { tags.as_str() },
            ])? as u64;
        }
    }
    tx.commit()?;
    Ok(added)
}

fn record_from_row(r: &AnyRow) -> Result<UsageRecord, StoreError> {
    let id: String = r.try_get("id")?;
    let n = |c: &str| -> Result<u64, StoreError> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
    let bad =
        |what: &str, e: String| StoreError::Invalid(format!("usage record {id}: {what}: {e}"));
    Ok(UsageRecord {
        at_ms: r.try_get("at")?,
        source: r.try_get("source")?,
        tenant: r.try_get("tenant")?,
        team: r.try_get("team")?,
        app: r.try_get("app")?,
        env: r.try_get("env")?,
        key_id: r.try_get("key_id")?,
        provider: r.try_get("provider")?,
        model: r.try_get("model")?,
        region: r.try_get("region")?,
        usage: Usage {
            input_tokens: n("input_tokens")?,
            cached_input_tokens: n("cached_input_tokens")?,
            cache_write_tokens: n("cache_write_tokens")?,
            output_tokens: n("output_tokens")?,
            reasoning_tokens: n("reasoning_tokens")?,
            images: n("images")?,
            duration_ms: n("duration_ms")?,
            compute_ms: n("compute_ms")?,
            gpu_ms: n("gpu_ms")?,
            calls: n("calls")?,
        },
        documents: n("documents")?,
        latency_ms: n("latency_ms")?,
        cost: Amount::from_nanos(r.try_get::<i64, _>("cost_nanos")?.into()),
        currency: r
            .try_get::<String, _>("currency")?
            .parse()
            .map_err(|e| bad("currency", e))?,
        priced: r.try_get::<i32, _>("priced")? != 0,
        energy_mwh: n("energy_mwh")?,
        co2e_mg: n("co2e_mg")?,
        tags: serde_json::from_str(&r.try_get::<String, _>("tags")?)
            .map_err(|e| bad("tags", e.to_string()))?,
        untagged: r.try_get::<i32, _>("untagged")? != 0,
        request_id: r.try_get("request_id")?,
        status: r.try_get::<i32, _>("status")?.clamp(0, 999) as u16,
        detail: r.try_get("detail")?,
        release: r.try_get("release_id")?,
        end_user: r.try_get("end_user")?,
        id,
    })
}

/// The usage filter of a budget's scope in a window.
pub fn budget_filter(b: &Budget, w: Window) -> UsageFilter {
    let mut f = UsageFilter {
        tenant: Some(b.tenant.clone()),
        from_ms: w.start_ms,
        until_ms: w.end_ms,
        ..UsageFilter::default()
    };
    match &b.scope {
        Scope::Tenant => {}
        Scope::Team(t) => f.team = Some(t.clone()),
        Scope::App(a) => f.app = Some(a.clone()),
        Scope::Key(k) => f.key_id = Some(k.clone()),
        Scope::Tag { key, value } => f.tags = vec![(key.clone(), value.clone())],
    }
    f
}

fn budget_from_row(r: &AnyRow) -> Result<Budget, StoreError> {
    let name: String = r.try_get("name")?;
    let bad =
        |what: &str, e: String| StoreError::Invalid(format!("stored budget {name}: {what}: {e}"));
    let thresholds: String = r.try_get("thresholds")?;
    Ok(Budget {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        scope: r
            .try_get::<String, _>("scope")?
            .parse()
            .map_err(|e| bad("scope", e))?,
        period: r
            .try_get::<String, _>("period")?
            .parse()
            .map_err(|e| bad("period", e))?,
        time_zone: r.try_get("time_zone")?,
        amount: Amount::from_nanos(r.try_get::<i64, _>("amount_nanos")?.into()),
        currency: r
            .try_get::<String, _>("currency")?
            .parse::<Currency>()
            .map_err(|e| bad("currency", e))?,
        thresholds: thresholds
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.parse::<u32>()
                    .map_err(|e| bad("thresholds", e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        action: r
            .try_get::<String, _>("action")?
            .parse::<Action>()
            .map_err(|e| bad("action", e))?,
        name: name.clone(),
    })
}

/// A usage record for tests and tools: one call's worth, unpriced.
pub fn sample_record(id: &str, tenant: &str, team: &str, at_ms: i64, cost: Amount) -> UsageRecord {
    UsageRecord {
        id: id.to_owned(),
        at_ms,
        source: "gateway".into(),
        tenant: tenant.to_owned(),
        team: team.to_owned(),
        app: "app".into(),
        env: "dev".into(),
        key_id: "k".into(),
        provider: "mock".into(),
        model: "mock-1".into(),
        region: String::new(),
        usage: Usage {
            calls: 1,
            ..Usage::default()
        },
        documents: 0,
        latency_ms: 0,
        cost,
        currency: Currency::USD,
        priced: true,
        energy_mwh: 0,
        co2e_mg: 0,
        tags: Default::default(),
        untagged: false,
        request_id: None,
        status: 200,
        detail: None,
        release: None,
        end_user: None,
    }
}

/// A billing export already taken in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingFile {
    pub sha256: String,
    pub name: String,
    pub format: String,
    pub rows: i64,
    pub currency: String,
    pub billed: Amount,
    pub ingested_at: i64,
}

/// Billed spend of one group of line items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BilledGroup {
    pub keys: Vec<String>,
    pub currency: String,
    pub rows: i64,
    pub billed: Amount,
}

const BILLING_WIDTH: usize = 19;
const BILLING_ROWS_PER_INSERT: usize = 50;

impl Store {
    pub async fn billing_file(&self, sha256: &str) -> Result<Option<BillingFile>, StoreError> {
        let row = sqlx::query(
            "SELECT sha256, name, format, rows_ingested, currency, billed_nanos, ingested_at
             FROM billing_files WHERE file_id = $1 AND sha256 = $2",
        )
        .bind(file_id(sha256))
        .bind(sha256)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(BillingFile {
                sha256: r.try_get("sha256")?,
                name: r.try_get("name")?,
                format: r.try_get("format")?,
                rows: r.try_get("rows_ingested")?,
                currency: r.try_get("currency")?,
                billed: Amount::from_nanos(r.try_get::<i64, _>("billed_nanos")?.into()),
                ingested_at: r.try_get("ingested_at")?,
            })
        })
        .transpose()
    }

    /// Stores line items of the file `sha256`; rows already stored are skipped, so an ingest
    /// interrupted and run again ends with each row once. On SQLite the batch goes through
    /// one rusqlite transaction with a cached statement on a blocking thread (sqlx's
    /// per-value conversions made this 2–3× slower on bulk ingests).
    pub async fn billing_insert(
        &self,
        sha256: &str,
        items: Vec<custos_finops::billing::LineItem>,
    ) -> Result<u64, StoreError> {
        let id = file_id(sha256);
        if let Some(file) = self.sqlite_file.clone() {
            return tokio::task::spawn_blocking(move || sqlite_billing_insert(&file, id, &items))
                .await
                .map_err(|e| StoreError::Invalid(format!("the billing writer failed: {e}")))?;
        }
        let items = &items[..];
        let mut tx = self.pool().begin().await?;
        let mut added = 0;
        for chunk in items.chunks(BILLING_ROWS_PER_INSERT) {
            let mut sql = crate::ledger::values_sql(
                self.backend(),
                "INSERT INTO billing_items (file_id, row_number, provider, billing_account, sub_account, \
                 service, service_category, charge_category, period_start, period_end, billed_nanos, \
                 effective_nanos, list_nanos, currency, region, resource_id, sku, description, tags) VALUES ",
                BILLING_WIDTH,
                chunk.len(),
            );
            sql.push_str(" ON CONFLICT (file_id, row_number) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for it in chunk {
                let nanos = |a: Amount| {
                    a.to_i64_nanos().ok_or_else(|| {
                        StoreError::Invalid(format!("row {}: an amount is out of range", it.row))
                    })
                };
                q = q
                    .bind(id)
                    .bind(clamp_i64(it.row))
                    .bind(it.provider.clone())
                    .bind(it.billing_account.clone())
                    .bind(it.sub_account.clone())
                    .bind(it.service.clone())
                    .bind(it.service_category.clone())
                    .bind(it.charge_category.clone())
                    .bind(it.period_start_ms)
                    .bind(it.period_end_ms)
                    .bind(nanos(it.billed_cost)?)
                    .bind(nanos(it.effective_cost)?)
                    .bind(nanos(it.list_cost)?)
                    .bind(it.currency.as_str().to_owned())
                    .bind(it.region.clone())
                    .bind(it.resource_id.clone())
                    .bind(it.sku.clone())
                    .bind(it.description.clone())
                    .bind(serde_json::to_string(&it.tags).unwrap_or_else(|_| "{}".into()));
            }
            added += q.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Removes the rows of a file whose ingest failed part-way.
    pub async fn billing_discard(&self, sha256: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM billing_items WHERE file_id = $1")
            .bind(file_id(sha256))
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// Marks a file as fully ingested.
    pub async fn billing_file_done(&self, f: &BillingFile) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO billing_files (file_id, sha256, name, format, rows_ingested, currency, billed_nanos, ingested_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (file_id) DO NOTHING",
        )
        .bind(file_id(&f.sha256))
        .bind(&f.sha256)
        .bind(&f.name)
        .bind(&f.format)
        .bind(f.rows)
        .bind(&f.currency)
        .bind(f.billed.to_i64_nanos().unwrap_or(i64::MAX))
        .bind(f.ingested_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Billed spend of line items whose charge period starts in `[from, until)`, grouped by
    /// the value of tag `tag` (empty when absent) or, with `None`, by provider, service and
    /// SKU with the description.
    pub async fn billing_groups(
        &self,
        from_ms: i64,
        until_ms: i64,
        tag: Option<&str>,
    ) -> Result<Vec<BilledGroup>, StoreError> {
        let (keys, binds): (String, Vec<String>) = match tag {
            Some(t) => (
                format!("COALESCE(CAST({} AS TEXT), '')", self.tag_expr(1)),
                vec![self.tag_param(t)],
            ),
            None => ("provider, service, sku, description".into(), Vec::new()),
        };
        let n = binds.len();
        let width = if tag.is_some() { 1 } else { 4 };
        let select: Vec<String> = (0..width).map(|i| format!("k{i}")).collect();
        let inner_keys: Vec<String> = if tag.is_some() {
            vec![format!("{keys} AS k0")]
        } else {
            ["provider", "service", "sku", "description"]
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c} AS k{i}"))
                .collect()
        };
        let sql = format!(
            "SELECT {sel}, currency, CAST(COUNT(*) AS BIGINT) AS n, CAST(SUM(billed_nanos) AS BIGINT) AS billed
             FROM (SELECT {inner}, currency, billed_nanos FROM billing_items
                   WHERE period_start >= ${a} AND period_start < ${b}) AS items
             GROUP BY {sel}, currency ORDER BY billed DESC",
            sel = select.join(", "),
            inner = inner_keys.join(", "),
            a = n + 1,
            b = n + 2,
        );
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(from_ms)
            .bind(until_ms)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BilledGroup {
                    keys: (0..width)
                        .map(|i| r.try_get::<String, _>(format!("k{i}").as_str()))
                        .collect::<Result<_, _>>()?,
                    currency: r.try_get("currency")?,
                    rows: r.try_get("n")?,
                    billed: Amount::from_nanos(r.try_get::<i64, _>("billed")?.into()),
                })
            })
            .collect()
    }
}

/// A job's usage record, as reconciliation reads it.
#[derive(Clone, Debug)]
pub struct JobRow {
    pub id: String,
    pub provider: String,
    pub model: String,
    pub at_ms: i64,
    pub compute_ms: i64,
    pub cost: Amount,
    pub currency: String,
    pub tags: std::collections::BTreeMap<String, String>,
}

/// Billed line items of one provider, service, SKU, description, resource, tag value and day.
#[derive(Clone, Debug)]
pub struct BilledSpanRow {
    pub provider: String,
    pub service: String,
    pub sku: String,
    pub description: String,
    pub resource_id: String,
    pub tag: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub currency: String,
    pub billed: Amount,
}

impl Store {
    /// Job usage records (`POST /v1/usage`, `custos usage record`) that ended in the window.
    pub async fn job_rows(&self, from_ms: i64, until_ms: i64) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, provider, model, at, compute_ms, cost_nanos, currency, tags FROM usage_records
             WHERE source = 'job' AND at >= $1 AND at < $2 ORDER BY at, id",
        )
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                Ok(JobRow {
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    at_ms: r.try_get("at")?,
                    compute_ms: r.try_get("compute_ms")?,
                    cost: Amount::from_nanos(r.try_get::<i64, _>("cost_nanos")?.into()),
                    currency: r.try_get("currency")?,
                    tags: serde_json::from_str(&r.try_get::<String, _>("tags")?).map_err(|e| {
                        StoreError::Invalid(format!("usage record {id}: tags: {e}"))
                    })?,
                    id,
                })
            })
            .collect()
    }

    /// Billed items whose charge period overlaps the window, summed per provider, service,
    /// SKU, description, resource, value of `tag` and day.
    pub async fn billing_spans(
        &self,
        from_ms: i64,
        until_ms: i64,
        tag: Option<&str>,
    ) -> Result<Vec<BilledSpanRow>, StoreError> {
        let tag_expr = match tag {
            Some(_) => format!("COALESCE(CAST({} AS TEXT), '')", self.tag_expr(3)),
            None => "''".into(),
        };
        let sql = format!(
            "SELECT provider, service, sku, description, resource_id, tag, currency,
                    CAST(MIN(period_start) AS BIGINT) AS first, CAST(MAX(period_end) AS BIGINT) AS last,
                    CAST(SUM(billed_nanos) AS BIGINT) AS billed
             FROM (SELECT provider, service, sku, description, resource_id, {tag_expr} AS tag, currency,
                          period_start, period_end, billed_nanos, period_start / 86400000 AS day
                   FROM billing_items WHERE period_start < $2 AND period_end > $1) AS items
             GROUP BY provider, service, sku, description, resource_id, tag, currency, day"
        );
        let mut q = sqlx::query(&sql).bind(from_ms).bind(until_ms);
        if let Some(t) = tag {
            q = q.bind(self.tag_param(t));
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(BilledSpanRow {
                    provider: r.try_get("provider")?,
                    service: r.try_get("service")?,
                    sku: r.try_get("sku")?,
                    description: r.try_get("description")?,
                    resource_id: r.try_get("resource_id")?,
                    tag: r.try_get("tag")?,
                    start_ms: r.try_get("first")?,
                    end_ms: r.try_get("last")?,
                    currency: r.try_get("currency")?,
                    billed: Amount::from_nanos(r.try_get::<i64, _>("billed")?.into()),
                })
            })
            .collect()
    }

    /// How far each billing provider's ingested items reach (lowercase name → latest end).
    pub async fn billing_coverage(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT LOWER(provider), CAST(MAX(period_end) AS BIGINT) FROM billing_items GROUP BY LOWER(provider)",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().collect())
    }
}

impl Store {
    /// The last day (Unix ms of its UTC start) on which each credential of `tenant` was used,
    /// from the daily rollup: an access review reads a few rows per key, not every call.
    pub async fn last_use_by_credential(
        &self,
        tenant: &str,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT key_id, MAX(day) FROM usage_daily WHERE tenant = $1 GROUP BY key_id",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(k, day)| (k, day.saturating_mul(86_400_000)))
            .collect())
    }
}

/// A time-bound right for one API key to spend past its blocking budgets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendOverride {
    pub id: String,
    pub tenant: String,
    pub key_id: String,
    pub expires_at: i64,
    pub why: String,
    pub created_by: String,
    pub created_at: i64,
}

impl Store {
    /// Overrides still in force at `now_ms`, latest expiry first.
    /// A fingerprint of the price catalog, the budgets and the spend overrides: it changes
    /// whenever one is added, replaced or deleted (each write stamps `created_at`; a delete
    /// changes a count), so a gateway can poll it cheaply and reload only on change.
    pub async fn finops_revision(&self) -> Result<[i64; 6], StoreError> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM prices) AS a, (SELECT COALESCE(MAX(created_at), 0) FROM prices) AS b,
                    (SELECT COUNT(*) FROM budgets) AS c, (SELECT COALESCE(MAX(created_at), 0) FROM budgets) AS d,
                    (SELECT COUNT(*) FROM spend_overrides) AS e,
                    (SELECT COALESCE(MAX(created_at), 0) FROM spend_overrides) AS f",
        )
        .fetch_one(self.pool())
        .await?;
        Ok([
            r.try_get("a")?,
            r.try_get("b")?,
            r.try_get("c")?,
            r.try_get("d")?,
            r.try_get("e")?,
            r.try_get("f")?,
        ])
    }

    pub async fn spend_overrides_active(
        &self,
        now_ms: i64,
    ) -> Result<Vec<SpendOverride>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant, key_id, expires_at, why, created_by, created_at FROM spend_overrides
             WHERE expires_at > $1 ORDER BY expires_at DESC",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SpendOverride {
                    id: r.try_get("id")?,
                    tenant: r.try_get("tenant")?,
                    key_id: r.try_get("key_id")?,
                    expires_at: r.try_get("expires_at")?,
                    why: r.try_get("why")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}

async fn budgets_in(
    c: &mut sqlx::AnyConnection,
    tenant: Option<&str>,
) -> Result<Vec<Budget>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, tenant, name, scope, period, time_zone, amount_nanos, currency, thresholds, action
         FROM budgets WHERE ($1 = '' OR tenant = $1) ORDER BY tenant, name",
    )
    .bind(tenant.unwrap_or(""))
    .fetch_all(&mut *c)
    .await?;
    rows.iter().map(budget_from_row).collect()
}

/// Changes to prices, budgets and spend overrides, inside a `Change` (with their ledger event).
impl crate::change::Change {
    /// Adds or replaces prices (same provider, model and effective date).
    pub async fn prices_upsert(&mut self, prices: &[Price]) -> Result<usize, StoreError> {
        let now = custos_core::time::now_ms();
        for p in prices {
            let rates = serde_json::to_string(&p.rates)
                .map_err(|e| StoreError::Invalid(format!("rates of {}: {e}", p.model)))?;
            sqlx::query(
                "INSERT INTO prices (provider, model, effective_from, currency, rates, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (provider, model, effective_from)
                 DO UPDATE SET currency = excluded.currency, rates = excluded.rates, created_at = excluded.created_at",
            )
            .bind(&p.provider)
            .bind(&p.model)
            .bind(p.effective_from)
            .bind(p.currency.as_str())
            .bind(rates)
            .bind(now)
            .execute(self.conn())
            .await?;
        }
        Ok(prices.len())
    }

    pub async fn budget_create(&mut self, b: &Budget) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO budgets (id, tenant, name, scope, period, time_zone, amount_nanos, currency,
                                  thresholds, action, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&b.id)
        .bind(&b.tenant)
        .bind(&b.name)
        .bind(b.scope.to_string())
        .bind(b.period.as_str())
        .bind(&b.time_zone)
        .bind(
            b.amount
                .to_i64_nanos()
                .ok_or_else(|| StoreError::Invalid("the budget amount is too large".into()))?,
        )
        .bind(b.currency.as_str())
        .bind(
            b.thresholds
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .bind(b.action.as_str())
        .bind(custos_core::time::now_ms())
        .execute(self.conn())
        .await
        .map_err(|e| {
            StoreError::conflict_as(e, || format!("budget {:?} of tenant {:?}", b.name, b.tenant))
        })?;
        Ok(())
    }

    /// Deletes a budget by tenant and name (its alert history stays).
    pub async fn budget_delete(&mut self, tenant: &str, name: &str) -> Result<Budget, StoreError> {
        let found = budgets_in(self.conn(), Some(tenant))
            .await?
            .into_iter()
            .find(|b| b.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("budget {name:?} of tenant {tenant:?}")))?;
        sqlx::query("DELETE FROM budgets WHERE id = $1")
            .bind(&found.id)
            .execute(self.conn())
            .await?;
        Ok(found)
    }

    pub async fn spend_override_create(&mut self, o: &SpendOverride) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO spend_overrides (id, tenant, key_id, expires_at, why, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&o.id)
        .bind(&o.tenant)
        .bind(&o.key_id)
        .bind(o.expires_at)
        .bind(&o.why)
        .bind(&o.created_by)
        .bind(o.created_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
