//! Subject keys for sealed identifiers (crypto-shredding): every event the control plane
//! commits has its personal identifiers sealed under their subject's key in the same
//! transaction; the gateway seals its callers and end users through a `Sealer`; readers reveal
//! what is still readable. An erasure destroys the keys, never a ledger leaf.

use crate::{Control, ControlError};
use custos_core::time::now_ms;
use custos_govern::lifecycle::seal::{self, SubjectKey, KEY_LEN};
use custos_store::{Change, Store, StoreError, SubjectKeyRow};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a process trusts a key it has read: a key shredded elsewhere is used for new
/// events at most this long (those events are then unreadable, never readable by the wrong
/// party).
const CACHE_TTL: Duration = Duration::from_secs(60);
/// The most subjects a process keeps keys for at once.
const CACHE_MAX: usize = 50_000;

fn candidate(label: &str) -> SubjectKeyRow {
    SubjectKeyRow {
        lookup: seal::lookup(label),
        key_id: hex::encode(custos_core::random::secret(10)),
        secret: hex::encode(custos_core::random::secret(KEY_LEN)),
    }
}

fn to_key(r: &SubjectKeyRow) -> Result<SubjectKey, StoreError> {
    let bytes = hex::decode(&r.secret)
        .ok()
        .and_then(|b| <[u8; KEY_LEN]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| StoreError::Invalid(format!("subject key {} is damaged", r.key_id)))?;
    Ok(SubjectKey {
        id: r.key_id.clone(),
        secret: bytes,
    })
}

/// Seals `event` (JSON text) inside `change`: keys are created in the same transaction as
/// the event that first needs them. Text that is not a JSON object passes unchanged.
pub(crate) async fn seal_in(change: &mut Change, event: String) -> Result<String, StoreError> {
    let Ok(mut v) = serde_json::from_str::<Value>(&event) else {
        return Ok(event);
    };
    let plan = seal::plan(&v);
    if plan.labels.is_empty() {
        return Ok(event);
    }
    let mut keys = HashMap::new();
    let at = now_ms();
    for label in plan.labels {
        let row = change.subject_key_ensure(&candidate(&label), at).await?;
        keys.insert(label, to_key(&row)?);
    }
    seal::apply(&mut v, &keys);
    Ok(v.to_string())
}

/// Seals `event` (JSON text) on its own, for an event written outside a change (a denial).
pub(crate) async fn seal_text(store: &Store, event: String) -> Result<String, StoreError> {
    let mut c = store.begin_change().await?;
    let sealed = seal_in(&mut c, event).await?;
    c.commit().await?;
    Ok(sealed)
}

/// Reveals sealed identifiers in events read back from the ledger: readable while their key
/// lives, `erased:KEYID` after it was shredded.
pub async fn reveal(store: &Store, events: &mut [Value]) -> Result<(), StoreError> {
    let mut ids = BTreeSet::new();
    for e in events.iter() {
        seal::sealed_ids(e, &mut ids);
    }
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let mut keys = HashMap::new();
    for r in store.subject_keys_by_id(&ids).await? {
        let k = to_key(&r)?;
        keys.insert(k.id, k.secret);
    }
    for e in events.iter_mut() {
        seal::reveal(e, &keys);
    }
    Ok(())
}

/// A process's access to subject keys, for events written outside a control-plane change
/// (the gateway's `model.invoke`): keys are created on first use and cached briefly.
#[derive(Debug)]
pub struct Sealer {
    store: Store,
    cache: Mutex<HashMap<String, (SubjectKey, Instant)>>,
}

impl Sealer {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key of the subject `label` (`email:…`, `id:…`), created if it has none.
    pub async fn key(&self, label: &str) -> Result<SubjectKey, StoreError> {
        if let Some((k, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(label)
        {
            if at.elapsed() < CACHE_TTL {
                return Ok(k.clone());
            }
        }
        let row = self
            .store
            .subject_key_ensure(&candidate(label), now_ms())
            .await?;
        let k = to_key(&row)?;
        let mut c = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() >= CACHE_MAX {
            c.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if c.len() >= CACHE_MAX {
                c.clear();
            }
        }
        c.insert(label.to_owned(), (k.clone(), Instant::now()));
        Ok(k)
    }

    /// `values` sealed under the key of the subject `identifier` names (see
    /// `seal::label_of`).
    pub async fn seal_as(
        &self,
        identifier: &str,
        values: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        let k = self.key(&seal::label_of(identifier)).await?;
        Ok(values.iter().map(|v| seal::seal(&k, v)).collect())
    }

    /// Seals an event's personal identifiers in place; when the keys cannot be had (the
    /// database is unreachable), redacts them instead: an event is never written with them.
    pub async fn seal_event(&self, event: &mut Value) {
        let plan = seal::plan(event);
        if plan.labels.is_empty() {
            return;
        }
        let mut keys = HashMap::new();
        for label in plan.labels {
            match self.key(&label).await {
                Ok(k) => {
                    keys.insert(label, k);
                }
                Err(e) => {
                    tracing::error!(error = %e, "no subject key; the event's identifiers are redacted");
                    seal::redact(event);
                    return;
                }
            }
        }
        seal::apply(event, &keys);
    }

    /// Forgets cached keys (after this process shredded some).
    pub fn forget(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Control {
    /// Reveals sealed identifiers in ledger events (see [`reveal`]).
    pub async fn reveal(&self, events: &mut [Value]) -> Result<(), ControlError> {
        Ok(reveal(&self.store, events).await?)
    }
}
