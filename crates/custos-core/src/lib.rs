//! Shared vocabulary of custos: identifiers, the `Principal` every control reasons about,
//! request ids, durations and the `custos.toml` configuration.
//!
//! This crate does no I/O beyond reading the configuration file it is pointed at, so every
//! other crate can depend on it without pulling in a runtime.

pub mod config;
pub mod duration;
pub mod id;
pub mod principal;
pub mod random;
pub mod reason;
pub mod request_id;
pub mod time;

pub use config::{Config, ConfigError};
pub use principal::Principal;
pub use reason::Reason;
pub use request_id::RequestId;
