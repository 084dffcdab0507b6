//! Models: hashing a model folder into a manifest, signing and verifying it byte-compatibly
//! with OpenSSF model-signing (Sigstore bundle v0.3, DSSE, in-toto Statement v1), SLSA
//! provenance for training runs, and the registry's states.

pub mod bundle;
pub mod card;
mod der;
pub mod dsse;
mod error;
pub mod keys;
pub mod manifest;
pub mod provenance;
pub mod registry;
pub mod trust;

pub use error::{Difference, ModelError};
