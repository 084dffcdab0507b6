//! Identity and authorization for custos: API keys (minting, hashing, the in-memory index),
//! JWT bearer tokens from OIDC providers, and Cedar policies. Every credential produces the
//! same `custos_core::Principal`; every decision is a pure function over plain data.

pub mod api_key;
pub mod jwt;
pub mod key_index;
pub mod policy;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod x509;

pub use api_key::{ApiKeyError, KeyDigest, MintedKey};
pub use jwt::{Jwks, TokenClaims, TokenError, Unverified, Validator};
pub use key_index::{KeyCheck, KeyIndex, KeyRecord};
