//! How a command fails: a message for the person and an exit code for scripts.
//!
//! | code | meaning |
//! |---|---|
//! | 1 | internal error |
//! | 2 | invalid arguments or input |
//! | 3 | configuration or environment (config file, database file, server secret) |
//! | 4 | not found |
//! | 5 | conflict with the current state (duplicate name, revoked key, ...) |
//!
//! `tollgate scan` follows secret scanners instead: 1 means secrets were found (and the
//! findings are the message), 2 that the scan could not be done.

use tollgate_control::{ControlError, ErrorClass};

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// A command that ends with this status and says nothing more (what it found is printed).
    pub fn silent(code: u8) -> Failure {
        Failure {
            code,
            message: String::new(),
        }
    }

    pub fn environment(message: impl ToString) -> Failure {
        Failure {
            code: 3,
            message: message.to_string(),
        }
    }
}

impl From<ControlError> for Failure {
    fn from(err: ControlError) -> Self {
        let code = match err.class() {
            ErrorClass::Internal | ErrorClass::Busy => 1,
            ErrorClass::Invalid => 2,
            ErrorClass::Environment => 3,
            ErrorClass::NotFound => 4,
            ErrorClass::Conflict => 5,
        };
        Failure {
            code,
            message: err.to_string(),
        }
    }
}

impl From<tollgate_store::StoreError> for Failure {
    fn from(err: tollgate_store::StoreError) -> Self {
        ControlError::from(err).into()
    }
}

impl From<crate::config::ConfigError> for Failure {
    fn from(err: crate::config::ConfigError) -> Self {
        Failure::environment(err)
    }
}

impl From<crate::secret_file::SecretError> for Failure {
    fn from(err: crate::secret_file::SecretError) -> Self {
        Failure::environment(err)
    }
}

impl From<tollgate_gateway::StartError> for Failure {
    fn from(err: tollgate_gateway::StartError) -> Self {
        Failure::environment(err)
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure {
            code: 1,
            message: err.to_string(),
        }
    }
}
