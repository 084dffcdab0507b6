//! Event delivery: each event is POSTed as a CloudEvents 1.0 document in structured JSON mode
//! (`application/cloudevents+json`) to the receivers whose `types` select it, signed with
//! HMAC-SHA256 over `timestamp.body` (header `X-Custos-Signature: t=…,v1=…`, the scheme
//! Stripe and GitHub receivers already know). The signing secret comes from the environment
//! or a file, never the configuration file.

use crate::providers::openai::{error_chain, https_client, HttpClient};
use bytes::Bytes;
use custos_control::export::{selects, CloudEvent, DEFAULT_TYPES};
use custos_core::config::{Config, WebhookConfig};
use hmac::{Hmac, Mac};
use http_body_util::Full;
use sha2::Sha256;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    #[error("{table}[{index}]: the environment variable {var} is not set")]
    MissingEnv {
        table: &'static str,
        index: usize,
        var: String,
    },
    #[error("{table}[{index}]: cannot read the secret file {path}: {reason}")]
    SecretFile {
        table: &'static str,
        index: usize,
        path: String,
        reason: String,
    },
    #[error("{table}[{index}]: {url:?} is not a valid URL")]
    Url {
        table: &'static str,
        index: usize,
        url: String,
    },
}

/// One receiver: where, how it is signed, and what it gets.
pub struct Receiver {
    pub url: http::Uri,
    secret: Option<Vec<u8>>,
    /// Activities it gets (names or prefixes); empty gets every event.
    pub types: Vec<String>,
    /// Personal identifiers in clear rather than sealed.
    pub reveal: bool,
}

impl Receiver {
    /// Whether this receiver gets events of `activity`.
    pub fn wants(&self, activity: &str) -> bool {
        self.types.is_empty() || selects(&self.types, activity)
    }

    /// Whether a recorded event's text could be one this receiver wants, without parsing it:
    /// false only when the compact text names no activity the receiver selects. Model calls
    /// fill the ledger; most are skipped this way.
    pub fn might_want(&self, text: &str) -> bool {
        const KEY: &str = "\"activity\":\"";
        if self.types.is_empty() || !text.contains(KEY) {
            return true;
        }
        self.types.iter().any(|t| {
            let prefix = t.trim_end_matches('*');
            text.match_indices(KEY)
                .any(|(at, _)| text[at + KEY.len()..].starts_with(prefix))
        })
    }
}

/// What one POST came to.
#[derive(Debug)]
pub enum Outcome {
    Delivered,
    /// The receiver refused the event for good (a 4xx other than 408 and 429): sending it
    /// again would be refused again.
    Refused(String),
    /// No answer, a 5xx, 408 or 429: worth another try.
    Failed(String),
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
    /// The receivers of one configuration table. `defaults` are the types a receiver that
    /// names none gets; `None` gives such receivers everything (anchor receivers).
    pub fn new(
        table: &'static str,
        config: &[WebhookConfig],
        defaults: Option<&[&str]>,
    ) -> Result<Self, WebhookSetupError> {
        let mut receivers = Vec::new();
        for (index, w) in config.iter().enumerate() {
            let secret = match (&w.secret_env, &w.secret_file) {
                (Some(var), _) => Some(
                    std::env::var(var)
                        .map_err(|_| WebhookSetupError::MissingEnv {
                            table,
                            index,
                            var: var.clone(),
                        })?
                        .into_bytes(),
                ),
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| WebhookSetupError::SecretFile {
                            table,
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
                table,
                index,
                url: w.url.clone(),
            })?;
            let types = match (&w.types[..], defaults) {
                ([], Some(d)) => d.iter().map(|t| t.to_string()).collect(),
                (t, _) => t.to_vec(),
            };
            receivers.push(Receiver {
                url,
                secret,
                types,
                reveal: w.reveal,
            });
        }
        Ok(Self {
            receivers,
            client: https_client(Duration::from_secs(5)),
        })
    }

    /// The event receivers of a configuration: `[[events.webhooks]]` and the older
    /// `[[finops.webhooks]]`.
    pub fn for_events(config: &Config) -> Result<Self, WebhookSetupError> {
        let mut all = Self::new(
            "events.webhooks",
            &config.events.webhooks,
            Some(DEFAULT_TYPES),
        )?;
        let finops = Self::new(
            "finops.webhooks",
            &config.finops.webhooks,
            Some(DEFAULT_TYPES),
        )?;
        all.receivers.extend(finops.receivers);
        Ok(all)
    }

    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    pub fn len(&self) -> usize {
        self.receivers.len()
    }

    pub fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// Delivers `event` to every receiver that wants it and waits, trying each up to
    /// `attempts` times; returns the receivers that did not take it, with why. For one-shot
    /// processes (the CLI) and checkpoints.
    pub async fn deliver_and_wait(
        &self,
        source: &str,
        event: &CloudEvent,
        attempts: u32,
    ) -> Vec<(String, String)> {
        let body = Bytes::from(event.to_json(source).to_string());
        let mut failed = Vec::new();
        for r in self.receivers.iter().filter(|r| r.wants(&event.activity)) {
            let mut wait = Duration::from_secs(1);
            for attempt in 1..=attempts.max(1) {
                match self.send(r, &event.id, body.clone()).await {
                    Outcome::Delivered => break,
                    Outcome::Refused(e) => {
                        failed.push((r.url.to_string(), e));
                        break;
                    }
                    Outcome::Failed(e) if attempt >= attempts.max(1) => {
                        failed.push((r.url.to_string(), e))
                    }
                    Outcome::Failed(_) => {
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                }
            }
        }
        failed
    }

    /// One POST of a CloudEvents document to one receiver.
    pub async fn send(&self, r: &Receiver, event_id: &str, body: Bytes) -> Outcome {
        let mut req = http::Request::post(r.url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/cloudevents+json; charset=utf-8",
            )
            .header("x-custos-event-id", event_id)
            .header(
                http::header::USER_AGENT,
                concat!("custos/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(secret) = &r.secret {
            let unix = custos_core::time::now_ms() / 1000;
            req = req.header("x-custos-signature", signature(secret, unix, &body));
        }
        exchange(&self.client, req.body(Full::new(body)), 10, "receiver").await
    }
}

/// Sends one request and classifies the answer: 2xx delivered; a 4xx other than 408 and 429
/// refused for good; anything else (no answer in `timeout_s`, 5xx, 408, 429) worth a retry.
pub(crate) async fn exchange(
    client: &HttpClient,
    req: Result<http::Request<Full<Bytes>>, http::Error>,
    timeout_s: u64,
    who: &str,
) -> Outcome {
    let req = match req {
        Ok(req) => req,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    match tokio::time::timeout(Duration::from_secs(timeout_s), client.request(req)).await {
        Err(_) => Outcome::Failed(format!("no answer within {timeout_s} s")),
        Ok(Err(e)) => Outcome::Failed(error_chain(&e)),
        Ok(Ok(resp)) if resp.status().is_success() => Outcome::Delivered,
        Ok(Ok(resp))
            if resp.status().is_client_error() && !matches!(resp.status().as_u16(), 408 | 429) =>
        {
            Outcome::Refused(format!("the {who} answered {}", resp.status()))
        }
        Ok(Ok(resp)) => Outcome::Failed(format!("the {who} answered {}", resp.status())),
    }
}

/// An HTTP collector (a SIEM's intake) that takes batches of JSON lines by POST.
pub struct HttpSink {
    url: http::Uri,
    authorization: Option<String>,
    client: HttpClient,
}

impl HttpSink {
    /// `authorization` is the whole `Authorization` header value (`Bearer …`, `Splunk …`).
    pub fn new(url: &str, authorization: Option<String>) -> Result<Self, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        }
        Ok(Self {
            url: url
                .parse()
                .map_err(|_| format!("{url:?} is not a valid URL"))?,
            authorization,
            client: https_client(Duration::from_secs(5)),
        })
    }

    /// POSTs one batch of newline-delimited JSON.
    pub async fn post(&self, body: Bytes) -> Outcome {
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-ndjson")
            .header(
                http::header::USER_AGENT,
                concat!("custos/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        exchange(&self.client, req.body(Full::new(body)), 30, "collector").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_prefilter_never_skips_a_wanted_event() {
        let r = |types: &[&str]| Receiver {
            url: "http://127.0.0.1/".parse().unwrap(),
            secret: None,
            types: types.iter().map(|t| t.to_string()).collect(),
            reveal: false,
        };
        let grants = r(&["grant.", "dpia.required", "release.*"]);
        for (text, wanted) in [
            (r#"{"activity":"grant.request","x":1}"#, true),
            (r#"{"activity":"release.approve"}"#, true),
            (r#"{"activity":"dpia.required"}"#, true),
            (
                r#"{"activity":"model.invoke","detail":{"activity":"grant.x"}}"#,
                true,
            ),
            (r#"{"activity":"model.invoke"}"#, false),
            (r#"{"activity": "model.invoke"}"#, true),
            ("not json", true),
        ] {
            assert_eq!(grants.might_want(text), wanted, "{text}");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                // Whatever the prefilter lets through, the exact check decides; what it
                // skips, the exact check would have refused.
                if !grants.might_want(text) {
                    assert!(!grants.wants(v["activity"].as_str().unwrap_or("")));
                }
            }
        }
        assert!(r(&[]).might_want(r#"{"activity":"model.invoke"}"#));
    }

    proptest::proptest! {
        /// The prefilter is sound: an event it skips is one the exact check refuses.
        #[test]
        fn the_prefilter_agrees_with_the_exact_check(
            activity in "[a-z_]{1,6}(\\.[a-z_]{1,6}){0,2}",
            types in proptest::collection::vec("[a-z_]{1,6}(\\.[a-z_]{1,6}){0,2}(\\.|\\.\\*)?", 1..4),
            other in proptest::option::of("[a-z_.]{1,10}"),
        ) {
            let r = Receiver {
                url: "http://127.0.0.1/".parse().unwrap(),
                secret: None,
                types,
                reveal: false,
            };
            let text = serde_json::json!({"activity": activity, "why": other}).to_string();
            if r.wants(&activity) {
                proptest::prop_assert!(r.might_want(&text), "{} skipped", text);
            }
        }
    }

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
