use std::net::SocketAddr;
use std::time::Duration;

/// One model a route offers, as `GET /v1/models` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub id: String,
    /// The provider serving it, shown as `owned_by`.
    pub provider: String,
}

/// Everything the data plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    pub models: Vec<ModelEntry>,
    /// How often the store's change log is read.
    pub follow_interval: Duration,
    /// How often last-used times are written.
    pub last_used_flush: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl GatewaySettings {
    pub fn new(listen: SocketAddr) -> GatewaySettings {
        GatewaySettings {
            listen,
            models: Vec::new(),
            follow_interval: Duration::from_millis(200),
            last_used_flush: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}
