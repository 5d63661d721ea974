//! Tollgate's data plane: the OpenAI-compatible HTTP API.
//!
//! Authentication never touches the database on a request's path. Every key lives in an
//! in-memory [`KeyTable`] loaded at start and kept in step by following the store's change
//! log, so a bad, unknown or flooded key is answered from memory, and a revoke made anywhere
//! (CLI, another replica) takes effect here within the follow interval.

pub mod admission;
mod auth;
mod budget_alerts;
mod catalog;
mod denials;
mod dispatch;
mod error;
mod follower;
mod headers;
mod http1;
mod key_table;
mod last_used;
mod metering;
pub mod mock;
mod models;
mod proxy;
mod request_id;
mod server;
mod settings;
mod sse;
mod tokens;
mod upstream;
mod workers;

pub use auth::Principal;
pub use error::GatewayError;
pub use key_table::{CatchUp, KeyTable};
pub use server::{Gateway, RunningGateway, StartError};
pub use settings::{
    AlertSettings, GatewaySettings, MeteringSettings, ProviderKey, ProviderSettings,
    UnpricedPolicy, WebhookSecret, WebhookSettings,
};
