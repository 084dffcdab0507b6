//! custos' PII engine: finds personal data in text (Presidio's entity types,
//! checksums where formats have them, gazetteers for names and places) and
//! anonymizes it with per-entity operators; and screens text for prompt injection
//! (`injection`). Pure and synchronous: the CLI, the REST API and the gateway's guard
//! layer all call into it.

pub mod analyzer;
pub mod anonymize;
pub mod dataset;
pub mod eval;
pub mod finding;
pub mod injection;
pub mod names;
pub mod patterns;
pub mod scan;
pub mod synth;
pub mod tagger;
pub mod titles;
pub mod validate;

pub use analyzer::{
    AllowList, Analyzer, ConfigError, CustomRecognizer, DenyList, GuardAction, GuardConfig,
    GuardPolicy, GuardRule, PiiConfig, Recognizer, Request,
};
pub use anonymize::{Anonymized, Anonymizer, Key, Operator, Pseudonyms, Vault};
pub use eval::{evaluate, Report, Sample, Span};
pub use finding::{CharOffsets, Finding};
