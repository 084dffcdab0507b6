//! Secret detection: rules (`rules`), the per-file engine (`engine`), the directory walk
//! (`walk`) that feeds it files in parallel, and `eval`, which scores rules on labeled samples.

pub mod engine;
pub mod eval;
pub mod history;
pub mod rules;
pub mod walk;

pub use engine::{shannon_entropy, Finding, Scanner};
pub use history::{scan_history, scan_staged, CommitInfo, HistoryOptions, HistorySummary};
pub use rules::{RuleError, RuleSet, DEFAULT_RULES};
pub use walk::{scan_image, scan_path, ScanOptions, ScanSummary};
