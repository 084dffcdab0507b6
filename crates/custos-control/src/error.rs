//! What can stop a change, in words a CLI user or an API client can act on.

use custos_authz::policy::PolicyError;
use custos_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The policies deny the action; the denial is in the ledger.
    #[error("{action} on tenant {tenant:?} is denied to {who}: {reason}{}", if *local { "; the configured policies permit nothing to Custos::Role::\"operator\" (the built-in roles.cedar has `operator.all`; `custos policy explain` shows decisions)" } else { "" })]
    Denied {
        action: String,
        tenant: String,
        who: String,
        reason: String,
        /// The local operator was denied by default (no policy names it).
        local: bool,
    },
    /// `[audit] require_why` names the action and no reason was given.
    #[error("{action} must say why ([audit] require_why): give --why TEXT (and --ticket ID) on the command line, or \"why\" (and \"ticket\") in the request body")]
    ReasonRequired { action: String },
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    #[error("the policies could not be evaluated, so the change is refused: {0}")]
    Policy(PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A change freeze (a window, or an SLO's spent error budget) refuses the promotion.
    #[error("release-frozen: {0}")]
    Frozen(String),
    /// A legal hold keeps what the change would erase.
    #[error("legal-hold: {0}")]
    Held(String),
    /// A proof needs a signed checkpoint covering entries the latest one does not.
    #[error("not covered yet: the latest signed checkpoint covers {signed} ledger entries and the proof needs {needed}; sign one (custos audit checkpoint --key-file FILE, or [audit] checkpoint_key_file on the gateway) and retry")]
    NotCovered { needed: u64, signed: u64 },
}

impl ControlError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ControlError::Invalid(message.into())
    }
}
