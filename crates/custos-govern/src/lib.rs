//! custos' governance domain: model manifests and their signatures (OpenSSF model-signing
//! bundles), SLSA provenance and the model registry's life cycle; releases, their health and
//! proofs; data lineage and erasure; the risk register and compliance mappings. Plain
//! functions over plain data, apart from reading the files they are pointed at.

pub mod comply;
pub mod html;
pub mod lifecycle;
pub mod models;
pub mod release;
pub mod risk;
pub mod threat;
