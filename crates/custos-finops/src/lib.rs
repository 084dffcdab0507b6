//! custos' cost arithmetic, kept pure: exact decimal money, the price catalog and the cost
//! of a call, calendar periods in a time zone, budgets with thresholds and reservations,
//! spend anomalies and carbon estimates. The gateway, the store and the CLI bring the I/O.

pub mod anomaly;
pub mod billing;
pub mod budget;
pub mod carbon;
pub mod chart;
pub mod focus;
pub mod job;
pub mod money;
pub mod period;
pub mod pricing;
pub mod reconcile;
pub mod showback;
pub mod tags;
pub mod usage;

pub use budget::{Action, Attribution, Budget, Scope, Tracker};
pub use money::{Amount, Currency, Money};
pub use period::PeriodKind;
pub use pricing::{Catalog, Price, Rates};
pub use usage::{Usage, UsageRecord};
