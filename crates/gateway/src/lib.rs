//! Tollgate's data plane: the OpenAI-compatible HTTP API.
//!
//! Authentication never touches the database on a request's path. Every key lives in an
//! in-memory [`KeyTable`] loaded at start and kept in step by following the store's change
//! log, so a bad, unknown or flooded key is answered from memory, and a revoke made anywhere
//! (CLI, another replica) takes effect here within the follow interval.

pub mod admission;
mod background;
mod body_budget;
mod error;
mod headers;
mod ledger;
mod live_origins;
mod lookup_cap;
mod metrics;
pub mod mock;
pub mod published_keys;
mod rate_headers;
mod request;
mod request_id;
pub mod secret_scanning;
mod serve;
mod server;
mod settings;
pub mod shared_limits;
mod state;
mod tokens;
mod upstream;
mod worker;

pub use background::key_table::{CatchUp, KeyTable};
pub use error::GatewayError;
pub use ledger::UnknownObjects;
pub use request::auth::Principal;
pub use server::{Gateway, RunningGateway, StartError};
pub use settings::{
    AlertSettings, ConnectionSettings, GatewaySettings, LeakAction, MeteringSettings,
    MetricsSettings, ProviderKey, ProviderSettings, SecretScanningSettings, SharedLimitsSettings,
    SuspendPolicy, UnpricedPolicy, WebhookSecret, WebhookSettings, GITHUB_SECRET_SCANNING_KEYS,
};
pub use upstream::dedicated_projects;
