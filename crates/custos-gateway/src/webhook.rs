//! Alert delivery: each alert is POSTed as JSON to every configured webhook, signed with
//! HMAC-SHA256 over `timestamp.body` (header `X-Custos-Signature: t=…,v1=…`, the scheme
//! Stripe and GitHub receivers already know), and retried with exponential backoff. The
//! signing secret comes from the environment or a file, never the configuration file.

use crate::providers::openai::{error_chain, https_client, HttpClient};
use bytes::Bytes;
use custos_core::config::WebhookConfig;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use sha2::Sha256;
use std::time::Duration;

/// Attempts per alert and receiver: 1 s, 2 s, 4 s … between them.
const ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    #[error("finops.webhooks[{index}]: the environment variable {var} is not set")]
    MissingEnv { index: usize, var: String },
    #[error("finops.webhooks[{index}]: cannot read the secret file {path}: {reason}")]
    SecretFile {
        index: usize,
        path: String,
        reason: String,
    },
    #[error("finops.webhooks[{index}]: {url:?} is not a valid URL")]
    Url { index: usize, url: String },
}

struct Receiver {
    url: http::Uri,
    secret: Option<Vec<u8>>,
}

/// The configured receivers and one HTTP client.
pub struct Webhooks {
    receivers: Vec<Receiver>,
    client: HttpClient,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("receivers", &self.receivers.len())
            .finish()
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(unix.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhooks {
    pub fn new(config: &[WebhookConfig]) -> Result<Self, WebhookSetupError> {
        let mut receivers = Vec::new();
        for (index, w) in config.iter().enumerate() {
            let secret = match (&w.secret_env, &w.secret_file) {
                (Some(var), _) => Some(
                    std::env::var(var)
                        .map_err(|_| WebhookSetupError::MissingEnv {
                            index,
                            var: var.clone(),
                        })?
                        .into_bytes(),
                ),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| WebhookSetupError::SecretFile {
                            index,
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?
                        .trim()
                        .as_bytes()
                        .to_vec(),
                ),
                (None, None) => None,
            };
            let url = w.url.parse().map_err(|_| WebhookSetupError::Url {
                index,
                url: w.url.clone(),
            })?;
            receivers.push(Receiver { url, secret });
        }
        Ok(Self {
            receivers,
            client: https_client(Duration::from_secs(5)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.receivers.len()
    }

    /// Delivers `payload` to every receiver and waits, retrying each up to `attempts` times;
    /// returns the receivers that failed, with why. For one-shot processes (the CLI).
    pub async fn deliver_and_wait(
        &self,
        event_id: &str,
        payload: &serde_json::Value,
        attempts: u32,
    ) -> Vec<(String, String)> {
        let body = Bytes::from(payload.to_string());
        let mut failed = Vec::new();
        for r in &self.receivers {
            let mut wait = Duration::from_secs(1);
            for attempt in 1..=attempts.max(1) {
                match self.post(r, event_id, body.clone()).await {
                    Ok(()) => break,
                    Err(e) if attempt >= attempts.max(1) => failed.push((r.url.to_string(), e)),
                    Err(_) => {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        failed
    }

    /// Delivers `payload` to every receiver in the background, retrying failures.
    pub fn deliver(self: &std::sync::Arc<Self>, event_id: String, payload: serde_json::Value) {
        let body = Bytes::from(payload.to_string());
        for i in 0..self.receivers.len() {
            let this = self.clone();
            let body = body.clone();
            let event_id = event_id.clone();
            tokio::spawn(async move {
                let r = &this.receivers[i];
                let mut wait = Duration::from_secs(1);
                for attempt in 1..=ATTEMPTS {
                    match this.post(r, &event_id, body.clone()).await {
                        Ok(()) => return,
                        Err(e) if attempt == ATTEMPTS => {
                            tracing::error!(url = %r.url, error = %e, attempts = ATTEMPTS, "giving up on an alert webhook");
                        }
                        Err(e) => {
                            tracing::warn!(url = %r.url, error = %e, attempt, "alert webhook failed; retrying");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                    }
                }
            });
        }
    }

    async fn post(&self, r: &Receiver, event_id: &str, body: Bytes) -> Result<(), String> {
        let mut req = http::Request::post(r.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-custos-event-id", event_id)
            .header(
                http::header::USER_AGENT,
                concat!("custos/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(secret) = &r.secret {
            let unix = custos_core::time::now_ms() / 1000;
            req = req.header("x-custos-signature", signature(secret, unix, &body));
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Err(_) => Err("no answer within 10 s".into()),
            Ok(Err(e)) => Err(error_chain(&e)),
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => Err(format!("the receiver answered {}", resp.status())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_hmac_test_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = signature(b"k", 1_700_000_000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="));
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
    }
}
