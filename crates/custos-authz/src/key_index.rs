//! The in-memory key index the gateway authenticates against: digest → key record.
//!
//! Lookups hash the presented key and probe a hash map by digest, so the time taken does not
//! depend on how much of a stored key the presented one shares; the map is replaced whole
//! (copy-on-write) by the refresher, so readers never wait on a lock.

use crate::api_key::{check_format, ApiKeyError, KeyDigest};
use custos_core::principal::SharedPrincipal;
use std::collections::HashMap;
use std::sync::Arc;

/// What the index knows about one key.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub id: String,
    pub digest: KeyDigest,
    pub principal: SharedPrincipal,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// The outcome of authenticating a presented key.
#[derive(Clone, Debug)]
pub enum KeyCheck {
    Valid(SharedPrincipal),
    Malformed(ApiKeyError),
    Unknown,
    Expired { key_id: String },
    Revoked { key_id: String },
}

#[derive(Clone, Debug, Default)]
pub struct KeyIndex {
    by_digest: HashMap<KeyDigest, Arc<KeyRecord>>,
}

impl KeyIndex {
    pub fn new(records: impl IntoIterator<Item = KeyRecord>) -> Self {
        let mut index = Self::default();
        index.upsert(records);
        index
    }

    /// Inserts or replaces records (by digest).
    pub fn upsert(&mut self, records: impl IntoIterator<Item = KeyRecord>) {
        for r in records {
            self.by_digest.insert(r.digest, Arc::new(r));
        }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Authenticates a presented key at time `now_ms`.
    pub fn check(&self, presented: &str, now_ms: i64) -> KeyCheck {
        if let Err(e) = check_format(presented) {
            return KeyCheck::Malformed(e);
        }
        self.check_digest(&KeyDigest::of(presented), now_ms)
    }

    /// Checks a key known only by its digest (a console session signed in with it) at time
    /// `now_ms`, so revocation and expiry end the session as they end the key.
    pub fn check_digest(&self, digest: &KeyDigest, now_ms: i64) -> KeyCheck {
        let Some(record) = self.by_digest.get(digest) else {
            return KeyCheck::Unknown;
        };
        if record.revoked_at_ms.is_some_and(|t| t <= now_ms) {
            return KeyCheck::Revoked {
                key_id: record.id.clone(),
            };
        }
        if record.expires_at_ms.is_some_and(|t| t <= now_ms) {
            return KeyCheck::Expired {
                key_id: record.id.clone(),
            };
        }
        KeyCheck::Valid(record.principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api_key::mint_from;
    use custos_core::principal::{AuthMethod, ModelScope, Principal};

    fn principal(id: &str) -> SharedPrincipal {
        Arc::new(Principal {
            id: id.into(),
            method: AuthMethod::ApiKey,
            tenant_id: "ten_1".into(),
            tenant: "acme".into(),
            team_id: "team_1".into(),
            team: "ml".into(),
            app_id: "app_1".into(),
            app: "bot".into(),
            env: "prod".into(),
            models: ModelScope::Any,
            rpm: None,
            tpm: None,
            team_rpm: None,
            team_tpm: None,
            ..Principal::default()
        })
    }

    #[test]
    fn checks_validity_expiry_and_revocation() {
        let a = mint_from([1; 32]);
        let b = mint_from([2; 32]);
        let c = mint_from([3; 32]);
        let unknown = mint_from([4; 32]);
        let index = KeyIndex::new([
            KeyRecord {
                id: "key_a".into(),
                digest: a.digest,
                principal: principal("key_a"),
                expires_at_ms: None,
                revoked_at_ms: None,
            },
            KeyRecord {
                id: "key_b".into(),
                digest: b.digest,
                principal: principal("key_b"),
                expires_at_ms: Some(1_000),
                revoked_at_ms: None,
            },
            KeyRecord {
                id: "key_c".into(),
                digest: c.digest,
                principal: principal("key_c"),
                expires_at_ms: None,
                revoked_at_ms: Some(500),
            },
        ]);
        assert!(matches!(index.check(&a.secret, 2_000), KeyCheck::Valid(p) if p.id == "key_a"));
        assert!(matches!(index.check(&b.secret, 999), KeyCheck::Valid(_)));
        assert!(matches!(
            index.check(&b.secret, 1_000),
            KeyCheck::Expired { .. }
        ));
        assert!(matches!(index.check(&c.secret, 400), KeyCheck::Valid(_)));
        assert!(matches!(
            index.check(&c.secret, 500),
            KeyCheck::Revoked { .. }
        ));
        assert!(matches!(index.check(&unknown.secret, 0), KeyCheck::Unknown));
        assert!(matches!(
            index.check("Bearer nonsense", 0),
            KeyCheck::Malformed(_)
        ));
    }
}
