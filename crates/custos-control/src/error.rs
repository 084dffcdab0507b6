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
}

impl ControlError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        ControlError::Invalid(message.into())
    }
}
