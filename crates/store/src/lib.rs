//! Tollgate's persistence. [`Store`] is the one interface the rest of the product uses; its
//! methods take and return domain records, so no caller sees which database sits behind it.
//! Today that is SQLite (WAL mode, foreign keys on, migrations embedded and applied at open).
//!
//! The store writes what it is given: ids, timestamps and rules come from the control plane.
//! Every mutation writes its audit entry, and for keys and projects a change-log row, in the
//! same transaction, so a change is either wholly there or not at all.

#[macro_use]
mod backend;
mod audit;
mod budgets;
mod change_log;
mod client_tokens;
mod copy;
mod error;
mod invites;
mod keys;
mod location;
mod open;
mod organizations;
mod project_members;
mod projects;
mod provider_objects;
mod rate_limits;
mod records;
#[cfg(feature = "scratch")]
pub mod scratch;
mod service_accounts;
mod sessions;
mod usage;
mod write;

pub use client_tokens::{ClientToken, FoundClientToken};
pub use copy::{CopiedTable, TABLES};
pub use error::StoreError;
pub use location::{DatabaseLocation, PostgresUrl};
pub use provider_objects::ProviderObject;
pub use records::*;
pub use sessions::{NewSession, SessionRecord};
pub use write::Write;

/// The database behind Tollgate.
#[derive(Clone, Debug)]
pub struct Store {
    pool: backend::Pool,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
