//! Work off the request path: the in-memory key table and the change-log follower that keeps
//! it current, last-used times, the metering writer and its crash-safe spool, the model catalog's refresh, budget alert
//! delivery, the IP-denial audit and usage retention.

pub mod anomalies;
pub(crate) mod budget_alerts;
pub(crate) mod catalog;
pub(crate) mod client_tokens;
pub(crate) mod denials;
pub(crate) mod expiry_alerts;
pub(crate) mod follower;
pub(crate) mod key_lookup;
pub mod key_table;
pub(crate) mod last_used;
pub(crate) mod metering;
pub(crate) mod retention;
pub(crate) mod spool;
pub(crate) mod webhooks;
