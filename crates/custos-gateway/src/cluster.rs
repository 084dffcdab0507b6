//! cluster: the link to the Redis replicas share (`[cluster] redis_url`). Connected at start
//! and, while it cannot be, retried in the background; once connected the connection
//! reconnects by itself. Controls ask for it per call and apply `on_redis_error` when it is
//! missing or fails.

use custos_core::config::{ClusterConfig, OnRedisError};
use custos_store::shared::Shared;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Cluster {
    url: String,
    link: arc_swap::ArcSwapOption<Shared>,
    pub on_error: OnRedisError,
    pub timeout: Duration,
}

/// Counters live under this prefix, shared by every replica of a deployment.
const PREFIX: &str = "custos:";

impl Cluster {
    /// The configured link (`CUSTOS_REDIS_URL` first), connecting once now; `None` without
    /// a Redis.
    pub async fn start(config: &ClusterConfig) -> Option<Arc<Self>> {
        let env = std::env::var("CUSTOS_REDIS_URL").ok();
        let url = config.redis(env.as_deref())?;
        let c = Arc::new(Self {
            url,
            link: arc_swap::ArcSwapOption::empty(),
            on_error: config.on_redis_error,
            timeout: config.timeout.0,
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
