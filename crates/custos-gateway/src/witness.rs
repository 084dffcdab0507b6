//! custos as a C2SP `tlog-witness` for other custos ledgers (`custos witness serve`), and
//! the client a ledger uses to have its checkpoints cosigned. The witness keeps, per log
//! origin, the latest checkpoint it verified; it cosigns a new one (`cosignature/v1`) only
//! if a consistency proof takes its recorded tree there, so a log can never show it a
//! rewritten or shortened history. `GET /checkpoint?origin=…` returns that checkpoint with
//! its cosignature: the anchor `custos audit verify --witness URL` checks against.

use crate::providers::openai::{error_chain, https_client, HttpClient};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use custos_ledger::{note_body, witness_accepts, Hash, NoteSigner, NoteVerifier, WitnessRefusal};
use http::StatusCode;
use http_body_util::{BodyExt as _, Full, Limited};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Largest add-checkpoint request: a note and at most 63 proof hashes.
const MAX_REQUEST: usize = 16 * 1024;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness state {path}: {reason}")]
    State { path: String, reason: String },
    #[error("witness {url}: {reason}")]
    Remote { url: String, reason: String },
}

/// What a witness recorded of one log.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Recorded {
    size: u64,
    /// Base64 root.
    root: String,
    /// The log's signed note with this witness's cosignature appended.
    note: String,
}

/// A running witness: its key, the logs it serves, and its state file.
pub struct Witness {
    signer: NoteSigner,
    logs: HashMap<String, NoteVerifier>,
    state_file: PathBuf,
    state: tokio::sync::Mutex<BTreeMap<String, Recorded>>,
}

impl Witness {
    /// A witness signing with `signer` for the logs whose public keys are `logs` (their
    /// key names are the logs' origins), keeping state in `state_dir/witness.json`.
    pub fn open(
        signer: NoteSigner,
        logs: Vec<NoteVerifier>,
        state_dir: PathBuf,
    ) -> Result<Arc<Self>, WitnessError> {
        let state_file = state_dir.join("witness.json");
        let fail = |reason: String| WitnessError::State {
            path: state_file.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&state_dir).map_err(|e| fail(e.to_string()))?;
        let state = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(fail(e.to_string())),
        };
        Ok(Arc::new(Self {
            signer,
            logs: logs.into_iter().map(|v| (v.name().to_owned(), v)).collect(),
            state_file,
            state: tokio::sync::Mutex::new(state),
        }))
    }

    /// Serves on `listener` until Ctrl-C (or SIGINT).
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    }

    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/add-checkpoint", axum::routing::post(add_checkpoint))
            .route("/checkpoint", axum::routing::get(latest))
            .with_state(self)
    }

    /// Writes the state whole to a new file, synced, then renames it over the old one.
    fn persist(&self, state: &BTreeMap<String, Recorded>) -> Result<(), String> {
        let tmp = self.state_file.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            f.write_all(&bytes).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
        }
        std::fs::rename(&tmp, &self.state_file).map_err(|e| e.to_string())
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// An add-checkpoint request body: `old N`, the proof's base64 hashes one per line, a blank
/// line, then the signed note. Returns (old, proof, note).
pub fn parse_add(body: &str) -> Result<(u64, Vec<Hash>, &str), String> {
    let (head, note) = body
        .split_once("\n\n")
        .ok_or("no blank line between the proof and the checkpoint")?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
        .and_then(|n| n.parse().ok())
        .ok_or("the first line must be `old <size>`")?;
    let mut proof = Vec::new();
    for line in lines {
        let h: Hash = B64
            .decode(line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a proof line is not a base64 SHA-256 hash")?;
        proof.push(h);
        if proof.len() > 63 {
            return Err("a consistency proof has at most 63 hashes".into());
        }
    }
    Ok((old, proof, note))
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    if body.len() > MAX_REQUEST {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request too large\n");
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "the request is not UTF-8\n");
    };
    let (old, proof, note) = match parse_add(body) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let origin = note.split('\n').next().unwrap_or("");
    let Some(log) = w.logs.get(origin) else {
        return text(StatusCode::NOT_FOUND, format!("unknown log {origin:?}\n"));
    };
    let checkpoint = match log.open(note) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::FORBIDDEN, format!("{e}\n")),
    };
    let mut state = w.state.lock().await;
    let recorded = match state.get(origin) {
        Some(r) => match B64.decode(&r.root).ok().and_then(|b| b.try_into().ok()) {
            Some(root) => Some((r.size, root)),
            None => return text(StatusCode::INTERNAL_SERVER_ERROR, "corrupt witness state\n"),
        },
        None => None,
    };
    match witness_accepts(recorded, old, &proof, &checkpoint) {
        Ok(()) => {}
        Err(WitnessRefusal::Conflict(size)) => {
            return (
                StatusCode::CONFLICT,
                [(http::header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{size}\n"),
            )
                .into_response()
        }
        Err(e @ WitnessRefusal::Smaller { .. }) => {
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
        Err(e @ WitnessRefusal::BadProof { .. }) => {
            return text(StatusCode::UNPROCESSABLE_ENTITY, format!("{e}\n"))
        }
    }
    let Ok(signed_text) = note_body(note) else {
        return text(StatusCode::BAD_REQUEST, "malformed note\n");
    };
    let now = custos_core::time::now_ms().div_euclid(1000).max(0) as u64;
    let cosignature = w.signer.cosign(signed_text, now);
    let mut next = state.clone();
    next.insert(
        origin.to_owned(),
        Recorded {
            size: checkpoint.size,
            root: B64.encode(checkpoint.root),
            note: format!("{note}{cosignature}"),
        },
    );
    if let Err(e) = w.persist(&next) {
        tracing::error!(error = %e, "cannot record the witness state; the checkpoint is not cosigned");
        return text(StatusCode::SERVICE_UNAVAILABLE, "cannot record state\n");
    }
    *state = next;
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/x.tlog.cosignatures")],
        cosignature,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct OriginQuery {
    origin: String,
}

async fn latest(State(w): State<Arc<Witness>>, Query(q): Query<OriginQuery>) -> Response {
    match w.state.lock().await.get(&q.origin) {
        Some(r) => text(StatusCode::OK, r.note.clone()),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no checkpoint of {:?} recorded\n", q.origin),
        ),
    }
}

/// A ledger's client of one witness.
pub struct WitnessClient {
    url: String,
    client: HttpClient,
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The witness's answer to an add-checkpoint.
pub enum Added {
    /// The cosignature line(s).
    Cosigned(String),
    /// The witness holds another size for this log: retry from it.
    Conflict(u64),
}

impl WitnessClient {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            client: https_client(Duration::from_secs(5)),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(StatusCode, String), WitnessError> {
        let fail = |reason: String| WitnessError::Remote {
            url: self.url.clone(),
            reason,
        };
        let res = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| fail("no answer within 10 s".into()))?
            .map_err(|e| fail(error_chain(&e)))?;
        let status = res.status();
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            Limited::new(res.into_body(), 64 * 1024).collect(),
        )
        .await
        .map_err(|_| fail("the answer did not arrive within 10 s".into()))?
        .map_err(|e| fail(format!("reading the answer: {e}")))?;
        Ok((
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        ))
    }

    /// The checkpoint of `origin` the witness holds (with its cosignature), if any.
    pub async fn latest(&self, origin: &str) -> Result<Option<String>, WitnessError> {
        let req = http::Request::get(format!(
            "{}/checkpoint?origin={}",
            self.url,
            percent_encode(origin)
        ))
        .body(Full::new(Bytes::new()))
        .map_err(|e| WitnessError::Remote {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        match self.send(req).await? {
            (StatusCode::OK, note) => Ok(Some(note)),
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (s, body) => Err(WitnessError::Remote {
                url: self.url.clone(),
                reason: format!("HTTP {s}: {}", body.trim()),
            }),
        }
    }

    /// Asks the witness to cosign `note`, which extends size `old` by `proof`.
    pub async fn add(&self, old: u64, proof: &[Hash], note: &str) -> Result<Added, WitnessError> {
        let mut body = format!("old {old}\n");
        for h in proof {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let req = http::Request::post(format!("{}/add-checkpoint", self.url))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| WitnessError::Remote {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        match self.send(req).await? {
            (StatusCode::OK, cosig) => Ok(Added::Cosigned(cosig)),
            (StatusCode::CONFLICT, size) => {
                size.trim()
                    .parse()
                    .map(Added::Conflict)
                    .map_err(|_| WitnessError::Remote {
                        url: self.url.clone(),
                        reason: "409 without a size".into(),
                    })
            }
            (s, body) => Err(WitnessError::Remote {
                url: self.url.clone(),
                reason: format!("refused with HTTP {s}: {}", body.trim()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_checkpoint_requests_parse_strictly() {
        let (old, proof, note) = parse_add(
            "old 8\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\no\n9\nx\n\n— o sig\n",
        )
        .unwrap();
        assert_eq!((old, proof.len()), (8, 1));
        assert!(note.starts_with("o\n9\n"));
        assert!(parse_add("old 8\n").is_err());
        assert!(parse_add("old x\n\nnote").is_err());
        assert!(parse_add("old 8\nnot base64\n\nnote").is_err());
        assert_eq!(percent_encode("a.b/c d"), "a.b%2Fc%20d");
    }
}
