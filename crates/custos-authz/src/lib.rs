//! Identity for custos. Today: API keys — minting, the wire format, hashing, and the
//! in-memory index the gateway authenticates against. Later: JWT/OIDC, mTLS and Cedar
//! policies, all producing the same `custos_core::Principal`.

pub mod api_key;
pub mod key_index;

pub use api_key::{ApiKeyError, KeyDigest, MintedKey};
pub use key_index::{KeyCheck, KeyIndex, KeyRecord};
