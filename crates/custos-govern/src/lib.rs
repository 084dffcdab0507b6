//! custos' governance domain: model manifests and their signatures (OpenSSF model-signing
//! bundles), SLSA provenance attestations and the model registry's life cycle. Plain
//! functions over plain data, apart from reading the model files they are pointed at.

pub mod models;
pub mod release;
