use tollgate_core::lifecycle::LifecycleError;
use tollgate_store::StoreError;

/// How a control-plane error should be reported: the CLI maps it to an exit code, the admin API
/// to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong (bad name, bad duration, bad id).
    Invalid,
    NotFound,
    /// The request clashes with the current state (duplicate name, revoked key).
    Conflict,
    /// The server is too busy for this now; try again shortly.
    Busy,
    /// The deployment is not set up right (uninitialised database, wrong secret, unusable file).
    Environment,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("this database has not been set up yet: run `tollgate serve` (or `tollgate init`) once with the same --database-url")]
    NotInitialized,
    #[error("the server secret does not match the one this database was set up with; restore the original secret file (or TOLLGATE_SECRET). With another secret no existing key can be verified")]
    WrongSecret,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// Too much of one kind of work at once (password checks); try again shortly.
    #[error("{0}")]
    Busy(String),
    /// Something that should not happen did (a worker thread died).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ControlError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ControlError::NotInitialized | ControlError::WrongSecret => ErrorClass::Environment,
            ControlError::Invalid(_) => ErrorClass::Invalid,
            ControlError::Conflict(_) => ErrorClass::Conflict,
            ControlError::Internal(_) => ErrorClass::Internal,
            ControlError::Busy(_) => ErrorClass::Busy,
            ControlError::Lifecycle(
                LifecycleError::BadName
                | LifecycleError::GraceTooLong(_)
                | LifecycleError::ExpiryInPast,
            ) => ErrorClass::Invalid,
            ControlError::Lifecycle(_) => ErrorClass::Conflict,
            ControlError::Store(err) => match err {
                StoreError::NotFound { .. } => ErrorClass::NotFound,
                StoreError::Conflict(_) => ErrorClass::Conflict,
                StoreError::BadLocation(_)
                | StoreError::Unwritable { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Foreign { .. }
                | StoreError::ForeignSchema { .. }
                | StoreError::Unreachable { .. }
                | StoreError::TooNew(_) => ErrorClass::Environment,
                StoreError::Database(_) | StoreError::Migration(_) | StoreError::Aborted => {
                    ErrorClass::Internal
                }
            },
        }
    }
}
