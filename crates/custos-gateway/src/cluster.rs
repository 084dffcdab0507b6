//! cluster: the link to the Redis replicas share (`[cluster] redis_url`). Connected at start
//! and, while it cannot be, retried in the background; once connected the connection
//! reconnects by itself. Controls ask for it per call and apply their `on_redis_error` when it
//! is missing or fails. Changes made on one replica (keys, grants, budgets, releases, models)
//! are announced on a channel, so every replica reloads them at once instead of at its next
//! poll.

use crate::state::AppState;
use custos_core::config::{ClusterConfig, OnRedisError, RedisErrorModes};
use custos_store::shared::{Shared, CHANGES, PREFIX};
use custos_store::StoreError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Cluster {
    url: String,
    link: arc_swap::ArcSwapOption<Shared>,
    pub modes: RedisErrorModes,
    pub timeout: Duration,
    /// This replica, in the claims it holds and the notices it sends.
    pub replica: String,
}

/// The shared controls, for their mode, logs and the fallback metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Quota,
    Budgets,
    Idempotency,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Quota => "quota",
            Control::Budgets => "budgets",
            Control::Idempotency => "idempotency",
        }
    }
}

/// What changed, so replicas reload only that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// API keys: creation, revocation, rotation.
    Keys,
    /// Teams, apps and grants.
    Directory,
    /// Prices, budgets and spend overrides.
    Finops,
    /// Release aliases.
    Releases,
    /// The model registry (signature gates).
    Models,
}

impl Topic {
    const ALL: [Topic; 5] = [
        Topic::Keys,
        Topic::Directory,
        Topic::Finops,
        Topic::Releases,
        Topic::Models,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Keys => "keys",
            Topic::Directory => "directory",
            Topic::Finops => "finops",
            Topic::Releases => "releases",
            Topic::Models => "models",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl Cluster {
    /// The configured link (`CUSTOS_REDIS_URL` first), connecting once now; `None` without
    /// a Redis.
    pub async fn start(config: &ClusterConfig) -> Option<Arc<Self>> {
        let env = std::env::var("CUSTOS_REDIS_URL").ok();
        let url = config.redis(env.as_deref())?;
        let c = Arc::new(Self {
            url,
            link: arc_swap::ArcSwapOption::empty(),
            modes: config.on_redis_error,
            timeout: config.timeout.0,
            replica: custos_core::id::new_id("replica"),
        });
        c.connect().await;
        Some(c)
    }

    async fn connect(&self) -> bool {
        match Shared::connect(
            &self.url,
            PREFIX,
            self.timeout.max(Duration::from_millis(50)),
        )
        .await
        {
            Ok(s) => {
                self.link.store(Some(Arc::new(s)));
                tracing::info!("connected to the shared Redis");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the shared Redis does not answer; retrying in the background");
                false
            }
        }
    }

    /// The connection, once there is one.
    pub fn shared(&self) -> Option<Arc<Shared>> {
        self.link.load_full()
    }

    /// The mode `control` falls back to.
    pub fn mode(&self, control: Control) -> OnRedisError {
        match control {
            Control::Quota => self.modes.quota,
            Control::Budgets => self.modes.budgets,
            Control::Idempotency => self.modes.idempotency,
        }
    }

    /// Runs `op` on the shared Redis within the timeout; Err says why it could not.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, String>
    where
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let Some(shared) = self.shared() else {
            return Err("not connected".to_owned());
        };
        match tokio::time::timeout(self.timeout, op(shared)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    /// Counts and logs a decision `control` takes without the shared state; returns the mode.
    pub fn fall_back(&self, state: &AppState, control: Control, reason: &str) -> OnRedisError {
        let mode = self.mode(control);
        state
            .metrics
            .shared_fallback(control.as_str(), mode.as_str());
        tracing::warn!(
            control = control.as_str(),
            mode = mode.as_str(),
            reason,
            "the shared Redis is unavailable; on_redis_error applies"
        );
        mode
    }

    /// Tells the other replicas that `topic` changed (in the background; their polling
    /// catches up if the notice is lost).
    pub fn announce(self: &Arc<Self>, topic: Topic) {
        let Some(shared) = self.shared() else {
            return;
        };
        let message = format!("{}:{}", topic.as_str(), self.replica);
        let timeout = self.timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, shared.publish(CHANGES, &message)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot announce a change to the other replicas")
                }
                Err(_) => tracing::warn!("announcing a change to the other replicas timed out"),
            }
        });
    }

    /// Retries the first connection until it succeeds.
    pub fn spawn_connector(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            while me.shared().is_none() {
                tokio::time::sleep(wait).await;
                if me.connect().await {
                    break;
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        })
    }

    /// Whether Redis answers now, for `/readyz`.
    pub async fn ready(&self) -> bool {
        match self.shared() {
            Some(s) => tokio::time::timeout(self.timeout, s.ping())
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        }
    }
}

/// Reloads what other replicas announce, for as long as the gateway runs: subscribes (again
/// after any break, with backoff, reloading everything it may have missed) and hands notices
/// to one reloader, which coalesces a burst into one reload per topic.
pub fn spawn_listener(state: AppState) -> Option<tokio::task::JoinHandle<()>> {
    let cluster = state.cluster.clone()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Topic>();
    let reloader = {
        let state = state.clone();
        async move {
            while let Some(first) = rx.recv().await {
                let mut topics = vec![first];
                while let Ok(t) = rx.try_recv() {
                    if !topics.contains(&t) {
                        topics.push(t);
                    }
                }
                for t in topics {
                    reload(&state, t).await;
                }
            }
        }
    };
    let listener = async move {
        let mut wait = Duration::from_millis(200);
        let mut missed = false;
        loop {
            let Some(shared) = cluster.shared() else {
                tokio::time::sleep(wait).await;
                continue;
            };
            let me = cluster.replica.clone();
            let resubscribed = tx.clone();
            let notices = tx.clone();
            let listening = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = listening.clone();
            let result = shared
                .listen(
                    CHANGES,
                    move || {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        if missed {
                            for t in Topic::ALL {
                                let _ = resubscribed.send(t);
                            }
                        }
                    },
                    move |message| {
                        let Some((topic, from)) = message.split_once(':') else {
                            return true;
                        };
                        if let (Some(t), true) = (Topic::parse(topic), from != me) {
                            let _ = notices.send(t);
                        }
                        true
                    },
                )
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "change notices from other replicas stopped; polling until they resume");
            }
            missed = true;
            if listening.load(std::sync::atomic::Ordering::Relaxed) {
                wait = Duration::from_millis(200);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    };
    Some(tokio::spawn(async move {
        tokio::join!(reloader, listener);
    }))
}

async fn reload(state: &AppState, topic: Topic) {
    let failed = match topic {
        Topic::Keys => state.keys.refresh(&state.store).await.err(),
        Topic::Directory => state.directory.refresh(&state.store).await.err(),
        Topic::Finops => state.finops.refresh(&state.store).await.err(),
        Topic::Releases => state
            .aliases
            .refresh(&state.store, &state.routes)
            .await
            .err(),
        Topic::Models => {
            if state.routes.iter().any(|r| r.registry.is_some()) {
                crate::registry::refresh(state).await;
            }
            None
        }
    };
    if let Some(e) = failed {
        tracing::warn!(error = %e, topic = topic.as_str(), "reloading after another replica's change failed; the next poll retries");
    }
}
