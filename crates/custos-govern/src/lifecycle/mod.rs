//! Data lifecycle: lineage (what was derived from what, and which models and releases stand
//! on it), data subjects and finding their records, and erasure — rewriting a dataset's files
//! without a subject's records — with the receipt that proves it.

pub mod erase;
pub mod lineage;
pub mod parquet;
pub mod policy;
pub mod receipt;
pub mod seal;
