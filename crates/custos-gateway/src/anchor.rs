//! External anchors of the ledger: every signed checkpoint is published outside the database
//! it protects — an append-only directory (one read-only file per size, never overwritten)
//! and any webhooks — and read back by `custos audit verify` and by the signer, which will
//! not sign a head that does not extend the latest published one.

use crate::webhook::{WebhookSetupError, Webhooks};
use crate::witness::{Added, WitnessClient, WitnessError};
use custos_core::config::AuditConfig;
use custos_ledger::NoteVerifier;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("anchor directory {dir}: {reason}")]
    Dir { dir: String, reason: String },
    #[error("anchor directory {dir} already holds a different checkpoint for size {size}: two heads were signed for one size (a fork), or the file was altered")]
    Fork { dir: String, size: u64 },
    #[error("audit.anchor_webhooks: {0}")]
    Webhook(#[from] WebhookSetupError),
    #[error("anchor webhook {url}: {reason}")]
    Delivery { url: String, reason: String },
    #[error(transparent)]
    Witness(#[from] WitnessError),
    #[error("audit.witnesses: {path}: {reason}")]
    WitnessKey { path: String, reason: String },
    #[error("witness {url} did not cosign: {reason}")]
    NotCosigned { url: String, reason: String },
    #[error(transparent)]
    Store(#[from] custos_store::StoreError),
}

/// Where signed checkpoints are published.
pub struct Anchors {
    dir: Option<PathBuf>,
    webhooks: Webhooks,
    /// The CloudEvents source checkpoints are sent under (`[events] source`).
    source: String,
    witnesses: Vec<(WitnessClient, Option<NoteVerifier>)>,
}

impl std::fmt::Debug for Anchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anchors")
            .field("dir", &self.dir)
            .field("webhooks", &self.webhooks.len())
            .finish()
    }
}

/// The file name of the checkpoint for `size`: zero-padded so names sort as sizes do.
fn file_name(size: u64) -> String {
    format!("checkpoint-{size:020}.note")
}

fn size_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".note")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A checkpoint note larger than this in the anchor directory is not read.
const MAX_NOTE_BYTES: u64 = 64 * 1024;

impl Anchors {
    pub fn new(config: &AuditConfig) -> Result<Self, AnchorError> {
        let mut witnesses = Vec::new();
        for w in &config.witnesses {
            let key = match &w.public_key_file {
                Some(path) => {
                    let fail = |reason: String| AnchorError::WitnessKey {
                        path: path.display().to_string(),
                        reason,
                    };
                    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
                    Some(NoteVerifier::from_key(text.trim()).map_err(|e| fail(e.to_string()))?)
                }
                None => None,
            };
            witnesses.push((WitnessClient::new(&w.url), key));
        }
        Ok(Self {
            dir: config.anchor_dir.clone(),
            webhooks: Webhooks::new("audit.anchor_webhooks", &config.anchor_webhooks, None)?,
            source: custos_core::config::EventsConfig::default().source,
            witnesses,
        })
    }

    /// Sends checkpoints to the webhooks as events of `source` (`[events] source`).
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = source.to_owned();
        self
    }

    /// No sink at all: checkpoints live only in the database they are meant to protect.
    pub fn is_empty(&self) -> bool {
        self.dir.is_none() && self.webhooks.is_empty() && self.witnesses.is_empty()
    }

    /// The newest published checkpoint of `origin`: the anchor directory's and each
    /// witness's, the largest first. Returns (where, note).
    pub async fn latest_of(&self, origin: &str) -> Result<Option<(String, String)>, AnchorError> {
        let mut found: Vec<(String, String)> = Vec::new();
        if let Some(dir) = &self.dir {
            found.extend(latest_in(dir)?);
        }
        for (w, _) in &self.witnesses {
            if let Some(note) = w.latest(origin).await? {
                found.push((format!("witness {}", w.url()), note));
            }
        }
        Ok(found.into_iter().max_by_key(|(_, note)| {
            custos_ledger::read_checkpoint_unverified(note).map_or(0, |c| c.size)
        }))
    }

    /// Has every witness cosign the checkpoint `note` of `size`, proving it extends what
    /// each last saw with a consistency proof from the ledger's stored nodes.
    async fn witness(
        &self,
        size: u64,
        note: &str,
        store: &custos_store::Store,
    ) -> Result<(), AnchorError> {
        use custos_ledger::{consistency_positions, consistency_proof};
        let origin = note.split('\n').next().unwrap_or("");
        for (w, key) in &self.witnesses {
            let mut old = match w.latest(origin).await? {
                Some(n) => custos_ledger::read_checkpoint_unverified(&n).map_or(0, |c| c.size),
                None => 0,
            };
            let mut cosigned = None;
            for _ in 0..3 {
                let proof = if old > 0 && old < size {
                    let nodes = store
                        .ledger_nodes_at(&consistency_positions(old, size))
                        .await?;
                    consistency_proof(&nodes, old, size).map_err(|e| AnchorError::NotCosigned {
                        url: w.url().to_owned(),
                        reason: format!("no consistency proof from {old}: {e}"),
                    })?
                } else {
                    Vec::new()
                };
                match w.add(old, &proof, note).await? {
                    Added::Cosigned(c) => {
                        cosigned = Some(c);
                        break;
                    }
                    Added::Conflict(n) => old = n,
                }
            }
            let Some(c) = cosigned else {
                return Err(AnchorError::NotCosigned {
                    url: w.url().to_owned(),
                    reason: "its recorded size kept changing".into(),
                });
            };
            if let Some(key) = key {
                key.open_cosignature(&format!("{note}{c}")).map_err(|e| {
                    AnchorError::NotCosigned {
                        url: w.url().to_owned(),
                        reason: format!("its cosignature does not verify: {e}"),
                    }
                })?;
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Publishes one signed checkpoint to every sink. The directory file is created new and
    /// made read-only; a file already there with the same note is success (a retry), one
    /// with another note is a fork and an error.
    pub async fn publish(
        &self,
        size: u64,
        note: &str,
        store: &custos_store::Store,
    ) -> Result<(), AnchorError> {
        self.witness(size, note, store).await?;
        if let Some(dir) = &self.dir {
            let (dir, note) = (dir.clone(), note.to_owned());
            tokio::task::spawn_blocking(move || write_dir(&dir, size, &note))
                .await
                .map_err(|e| AnchorError::Dir {
                    dir: String::new(),
                    reason: e.to_string(),
                })??;
        }
        if !self.webhooks.is_empty() {
            let event = custos_control::export::CloudEvent {
                id: format!("checkpoint-{size}"),
                activity: "ledger.checkpoint".into(),
                time: Some(custos_core::time::format_rfc3339(
                    custos_core::time::now_ms(),
                )),
                subject: Some(format!("checkpoint/{size}")),
                tenant: None,
                ledger_index: None,
                data: serde_json::json!({"size": size, "note": note}),
            };
            let failed = self
                .webhooks
                .deliver_and_wait(&self.source, &event, 3)
                .await;
            if let Some((url, reason)) = failed.into_iter().next() {
                return Err(AnchorError::Delivery { url, reason });
            }
        }
        Ok(())
    }
}

fn dir_error(dir: &Path, reason: impl std::fmt::Display) -> AnchorError {
    AnchorError::Dir {
        dir: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

fn write_dir(dir: &Path, size: u64, note: &str) -> Result<(), AnchorError> {
    std::fs::create_dir_all(dir).map_err(|e| dir_error(dir, e))?;
    let path = dir.join(file_name(size));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(note.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| dir_error(dir, format!("writing {}: {e}", path.display())))?;
            let mut perms = f.metadata().map_err(|e| dir_error(dir, e))?.permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&path, perms).map_err(|e| dir_error(dir, e))?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = read_note(&path).map_err(|e| dir_error(dir, e))?;
            if existing == note {
                Ok(())
            } else {
                Err(AnchorError::Fork {
                    dir: dir.display().to_string(),
                    size,
                })
            }
        }
        Err(e) => Err(dir_error(dir, format!("creating {}: {e}", path.display()))),
    }
}

fn read_note(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_NOTE_BYTES {
        return Err(format!(
            "{} is {} bytes, too large for a checkpoint note",
            path.display(),
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The newest checkpoint file in `dir` (by the size in its name); a missing directory holds
/// none.
pub fn latest_in(dir: &Path) -> Result<Option<(String, String)>, AnchorError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(dir_error(dir, e)),
    };
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(dir, e))?;
        let name = entry.file_name();
        if let Some(size) = name.to_str().and_then(size_of) {
            if best.as_ref().is_none_or(|(s, _)| size > *s) {
                best = Some((size, entry.path()));
            }
        }
    }
    match best {
        None => Ok(None),
        Some((_, path)) => {
            let note = read_note(&path).map_err(|e| dir_error(dir, e))?;
            Ok(Some((path.display().to_string(), note)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_append_only_and_sorted_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("anchors");
        assert!(latest_in(&d).unwrap().is_none());
        write_dir(&d, 9, "nine\n").unwrap();
        write_dir(&d, 10, "ten\n").unwrap();
        write_dir(&d, 10, "ten\n").unwrap();
        assert!(matches!(
            write_dir(&d, 10, "other\n"),
            Err(AnchorError::Fork { size: 10, .. })
        ));
        std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        let (path, note) = latest_in(&d).unwrap().unwrap();
        assert!(path.ends_with(&file_name(10)), "{path}");
        assert_eq!(note, "ten\n");
        assert_eq!(size_of(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(size_of("checkpoint-1.note"), None);
    }
}
