//! Secret detection: rules (`rules`), the per-file engine (`engine`) and the directory walk
//! (`walk`) that feeds it files in parallel.

pub mod engine;
pub mod history;
pub mod rules;
pub mod walk;

pub use engine::{shannon_entropy, Finding, Scanner};
pub use history::{scan_history, scan_staged, CommitInfo, HistoryOptions, HistorySummary};
pub use rules::{RuleError, RuleSet, DEFAULT_RULES};
pub use walk::{scan_path, ScanOptions, ScanSummary};
