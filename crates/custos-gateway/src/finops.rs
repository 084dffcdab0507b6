//! The gateway's cost state: the price catalog and budget trackers cached in memory (the hot
//! path never reads the database), the usage writer, and the refresher that reloads prices
//! and budgets and re-reads every budget's spend from the store, so several gateway
//! processes on one database see each other's spend. Threshold alerts are claimed in the
//! store (once per budget, period and threshold, whichever process gets there first), then
//! appended to the audit ledger, whence the event relay sends them to the webhooks.

use crate::audit::AuditSink;
use crate::batch::{BatchSink, Commit};
use arc_swap::ArcSwap;
use custos_core::principal::{AuthMethod, Principal};
use custos_finops::budget::{Budget, Tracker};
use custos_finops::{Amount, Attribution, Catalog, Price, Usage, UsageRecord};
use custos_store::Store;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

const QUEUE: usize = 65_536;
const BATCH: usize = 1_024;

struct UsageWriter(Store);

impl Commit<UsageRecord> for UsageWriter {
    async fn commit(&self, records: &[UsageRecord]) -> Result<(), String> {
        self.0
            .usage_insert(records)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    fn what(&self) -> &'static str {
        "usage records"
    }
}

/// A threshold some process crossed; the store decides whether this one alerts.
#[derive(Debug)]
struct Crossing {
    tracker: Arc<Tracker>,
    window_start: i64,
    window_end: i64,
    threshold: u32,
    spent: Amount,
}

#[derive(Debug)]
pub struct Finops {
    pub catalog: ArcSwap<Catalog>,
    /// Trackers by tenant name.
    budgets: ArcSwap<HashMap<String, Vec<Arc<Tracker>>>>,
    /// Spend overrides in force: (tenant, key id) → (expiry, why).
    overrides: ArcSwap<HashMap<(String, String), (i64, String)>>,
    pub usage: BatchSink<UsageRecord>,
    crossings: tokio::sync::mpsc::UnboundedSender<Crossing>,
    /// Region of each provider, from the configuration.
    pub regions: HashMap<String, String>,
    pub default_max_output: u64,
    /// Tags every usage record should carry (`[finops] mandatory_tags`); a gateway call
    /// without one is recorded untagged.
    pub mandatory_tags: Vec<String>,
    /// Device power and grid intensity for job carbon estimates.
    pub carbon: custos_finops::carbon::Tables,
    /// One refresh at a time, so an older snapshot is never stored over a newer one. It
    /// holds the store's `finops_revision` the last refresh loaded.
    refreshing: tokio::sync::Mutex<Option<[i64; 6]>>,
}

impl Finops {
    /// Loads prices and budgets and starts the usage writer and the alert task.
    pub async fn start(
        store: Store,
        config: &custos_core::Config,
        audit: AuditSink,
    ) -> Result<(Arc<Self>, Vec<tokio::task::JoinHandle<()>>), custos_store::StoreError> {
        let (usage, writer) = BatchSink::spawn(
            QUEUE,
            BATCH,
            config.database.commit_interval.0,
            UsageWriter(store.clone()),
        );
        let (crossings, rx) = tokio::sync::mpsc::unbounded_channel();
        let regions = config
            .providers
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.region.clone()?)))
            .collect();
        let finops = Arc::new(Self {
            catalog: ArcSwap::from_pointee(Catalog::default()),
            budgets: ArcSwap::from_pointee(HashMap::new()),
            overrides: ArcSwap::from_pointee(HashMap::new()),
            usage,
            crossings,
            regions,
            default_max_output: u64::from(config.finops.default_max_output_tokens),
            mandatory_tags: config.finops.mandatory_tags.clone(),
            carbon: carbon_tables(config),
            refreshing: tokio::sync::Mutex::new(None),
        });
        finops.refresh(&store).await?;
        let alerts = tokio::spawn(alert_task(store, rx, audit));
        Ok((finops, vec![writer, alerts]))
    }

    /// The price of a routed model: the provider's own name for it first, then the name
    /// clients use; a `*` provider entry serves any provider.
    pub fn price(&self, provider: &str, upstream: &str, model: &str, at_ms: i64) -> Option<Price> {
        let c = self.catalog.load();
        c.at(provider, upstream, at_ms)
            .or_else(|| c.at(provider, model, at_ms))
            .cloned()
    }

    /// The reason of the spend override `key_id` holds at `now_ms`, if any. Expiry is checked
    /// here, so an override stops working the moment it ends, not at the next refresh.
    /// Overrides are granted to API keys of a tenant: a token or certificate whose subject
    /// happens to spell a key id holds none.
    pub fn spend_override(&self, p: &Principal, now_ms: i64) -> Option<String> {
        if p.method != AuthMethod::ApiKey {
            return None;
        }
        self.overrides
            .load()
            .get(&(p.tenant.clone(), p.id.clone()))
            .filter(|(expires, _)| *expires > now_ms)
            .map(|(_, why)| why.clone())
    }

    /// Budgets that a call attributed to `a` is charged to.
    pub fn budgets_for(&self, a: &Attribution<'_>) -> Vec<Arc<Tracker>> {
        self.budgets
            .load()
            .get(a.tenant)
            .map(|list| {
                list.iter()
                    .filter(|t| t.budget.applies(a))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reports thresholds a settlement crossed; the alert task claims and sends them.
    pub fn crossed(&self, tracker: &Arc<Tracker>, now_ms: i64, thresholds: Vec<u32>) {
        if thresholds.is_empty() {
            return;
        }
        let (spent, _, w) = tracker.snapshot(now_ms);
        for threshold in thresholds {
            let _ = self.crossings.send(Crossing {
                tracker: tracker.clone(),
                window_start: w.start_ms,
                window_end: w.end_ms,
                threshold,
                spent,
            });
        }
    }

    /// Reloads prices and budgets, and takes in every budget's spend from the store.
    pub async fn refresh(&self, store: &Store) -> Result<(), custos_store::StoreError> {
        let mut seen = self.refreshing.lock().await;
        // Read before loading: a change that lands during the load is seen again next time.
        let revision = store.finops_revision().await?;
        let prices = store.prices_all().await?;
        self.catalog.store(Arc::new(Catalog::new(prices)));
        let now = custos_core::time::now_ms();
        let mut overrides = HashMap::new();
        for o in store.spend_overrides_active(now).await? {
            // Latest expiry first: the first seen per key is the one that counts.
            overrides
                .entry((o.tenant, o.key_id))
                .or_insert((o.expires_at, o.why));
        }
        self.overrides.store(Arc::new(overrides));
        let old = self.budgets.load_full();
        let mut by_id: HashMap<&str, &Arc<Tracker>> = HashMap::new();
        for t in old.values().flatten() {
            by_id.insert(t.budget.id.as_str(), t);
        }
        let mut next: HashMap<String, Vec<Arc<Tracker>>> = HashMap::new();
        for budget in store.budgets(None).await? {
            let tracker = match by_id.get(budget.id.as_str()) {
                Some(t) if t.budget == budget => (*t).clone(),
                _ => match new_tracker(store, budget, now).await? {
                    Some(t) => t,
                    None => continue,
                },
            };
            let w = tracker.window(now);
            let spent = store.budget_spent(&tracker.budget, w).await?;
            let fresh = tracker.refresh(now, w, spent);
            self.crossed(&tracker, now, fresh);
            next.entry(tracker.budget.tenant.clone())
                .or_default()
                .push(tracker);
        }
        self.budgets.store(Arc::new(next));
        *seen = Some(revision);
        Ok(())
    }

    /// Whether prices, budgets or overrides changed in the store since the last refresh.
    async fn changed(&self, store: &Store) -> Result<bool, custos_store::StoreError> {
        let now = store.finops_revision().await?;
        Ok(*self.refreshing.lock().await != Some(now))
    }

    /// Reloads everything every `interval` (spend written by other processes comes in then)
    /// and, every `check` in between, reloads as soon as a price, budget or override was
    /// added or removed — so a new budget binds as fast as a new key does.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        store: Store,
        interval: std::time::Duration,
        check: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let floor = std::time::Duration::from_millis(100);
            let interval = interval.max(floor);
            let mut tick = tokio::time::interval(check.max(floor).min(interval));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let due = last.elapsed() >= interval;
                let changed = due
                    || match this.changed(&store).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot check prices and budgets for changes");
                            false
                        }
                    };
                if !changed {
                    continue;
                }
                if let Err(e) = this.refresh(&store).await {
                    tracing::warn!(error = %e, "cannot refresh prices and budgets");
                }
                last = tokio::time::Instant::now();
            }
        })
    }

    /// The estimated cost of a call before it runs: its prompt at the input rate and its
    /// output bound (or the configured default) at the output rate.
    pub fn estimate(
        &self,
        price: Option<&Price>,
        prompt_tokens: u64,
        max_output: Option<u64>,
    ) -> Amount {
        let Some(p) = price else {
            return Amount::ZERO;
        };
        let u = Usage {
            input_tokens: prompt_tokens,
            output_tokens: max_output.unwrap_or(self.default_max_output),
            calls: 1,
            ..Usage::default()
        };
        p.rates.cost(&u).unwrap_or(Amount::ZERO)
    }
}

/// The shipped carbon tables with the configuration's `[carbon]` laid over them.
pub fn carbon_tables(config: &custos_core::Config) -> custos_finops::carbon::Tables {
    use custos_finops::carbon::{InstanceGpus, Overrides, Tables};
    let c = &config.carbon;
    Tables::shipped().with(Overrides {
        pue: c.pue,
        default_utilization: c.default_utilization,
        device_watts: c.device_watts.clone().into_iter().collect(),
        grid_g_per_kwh: c.grid_g_per_kwh.clone().into_iter().collect(),
        instance_gpus: c
            .instance_gpus
            .iter()
            .map(|(k, g)| {
                (
                    k.clone(),
                    InstanceGpus {
                        gpu: g.gpu.clone(),
                        count: g.count,
                    },
                )
            })
            .collect(),
    })
}

/// A tracker for a budget just seen, starting from its stored spend and fired thresholds.
async fn new_tracker(
    store: &Store,
    budget: Budget,
    now: i64,
) -> Result<Option<Arc<Tracker>>, custos_store::StoreError> {
    let name = budget.name.clone();
    let tracker = match Tracker::new(budget, now, Amount::ZERO) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(budget = %name, error = %e, "skipping a budget that cannot be tracked");
            return Ok(None);
        }
    };
    let w = tracker.window(now);
    let fired = store
        .budget_alerts_fired(&tracker.budget.id, w.start_ms)
        .await?;
    tracker.mark_fired(w, &fired);
    Ok(Some(Arc::new(tracker)))
}

async fn alert_task(
    store: Store,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Crossing>,
    audit: AuditSink,
) {
    while let Some(c) = rx.recv().await {
        let b = &c.tracker.budget;
        let claimed = loop {
            match store
                .budget_alert_claim(&b.id, c.window_start, c.threshold, c.spent)
                .await
            {
                Ok(claimed) => break claimed,
                Err(e) => {
                    tracing::warn!(error = %e, budget = %b.name, "cannot record a budget alert; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        };
        if !claimed {
            continue;
        }
        let time = custos_core::time::format_rfc3339(custos_core::time::now_ms());
        let id = custos_core::id::new_id("alert");
        let alert = json!({
            "id": id,
            "type": "budget.threshold",
            "time": time,
            "tenant": b.tenant,
            "budget": {
                "id": b.id, "name": b.name, "scope": b.scope.to_string(),
                "period": b.period.as_str(), "time_zone": b.time_zone,
                "amount": b.amount.to_string(), "currency": b.currency.as_str(),
                "action": b.action.as_str(),
            },
            "period": {
                "start": custos_core::time::format_rfc3339(c.window_start),
                "end": custos_core::time::format_rfc3339(c.window_end),
            },
            "threshold_percent": c.threshold,
            "level": b.level(c.threshold).to_string(),
            "spent": c.spent.to_string(),
        });
        tracing::info!(budget = %b.name, tenant = %b.tenant, threshold = c.threshold, "budget threshold reached");
        audit
            .append(&json!({
                "schema": 1,
                "time": time,
                "activity": "budget.threshold",
                "actor": {"type": "system", "id": "custos-gateway"},
                "resources": [{"type": "budget", "id": b.id, "name": b.name, "tenant": b.tenant}],
                "outcome": "alert",
                "reason": format!("{}% of {} {} reached", c.threshold, b.amount, b.currency),
                "detail": alert,
            }))
            .await;
    }
}
