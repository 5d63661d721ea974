//! One module per command group.

pub mod audit;
pub mod dev;
pub mod hook;
pub mod keys;
pub mod limits;
pub mod migrate;
pub mod objects;
pub mod projects;
pub mod scan;
pub mod serve;
pub mod service_accounts;
pub mod usage;
pub mod users;
