use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::pricing::{Price, PricingTable};
use tollgate_core::routing::{ModelPattern, RouteTable};

/// A provider's real API key. Prints as `*****`.
#[derive(Clone)]
pub struct ProviderKey(String);

impl ProviderKey {
    pub fn new(key: String) -> ProviderKey {
        ProviderKey(key)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProviderKey(*****)")
    }
}

/// The secret a webhook's deliveries are signed with. Prints as `*****`.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    pub fn new(secret: String) -> WebhookSecret {
        WebhookSecret(secret)
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(*****)")
    }
}

/// Where budget alerts are posted.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: String,
    pub secret: WebhookSecret,
}

/// What a leak report (GitHub secret scanning) does to a key of this deployment it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakAction {
    /// Revoke it at once (the default).
    Revoke,
    /// Only record and alert: the owner decides.
    Flag,
}

/// GitHub's secret scanning partner program endpoint, `POST /secret-scanning/github`.
#[derive(Debug, Clone)]
pub struct SecretScanningSettings {
    /// Where the keys that sign reports are published; `None` turns the endpoint off (404).
    pub github_keys_url: Option<String>,
    pub on_report: LeakAction,
}

/// Which suspicious-use findings suspend a key at once (it then gets 401 saying so until an
/// owner lifts the suspension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuspendPolicy {
    /// Finding kinds that suspend (`request_spike`, `new_address`, ...); empty: none.
    pub kinds: Vec<String>,
    /// Only keys of these projects; empty: every project's.
    pub projects: Vec<tollgate_core::ProjectId>,
    /// Only these keys, besides the projects'; empty (with no projects): every key.
    pub keys: Vec<tollgate_core::KeyId>,
}

impl SuspendPolicy {
    /// Whether finding `kind` on `key` (of `project`) suspends it.
    pub fn suspends(
        &self,
        kind: &str,
        key: &tollgate_core::KeyId,
        project: Option<&tollgate_core::ProjectId>,
    ) -> bool {
        let kind = kind.strip_suffix("_after_rotation").unwrap_or(kind);
        if !self.kinds.iter().any(|k| k == kind) {
            return false;
        }
        if self.projects.is_empty() && self.keys.is_empty() {
            return true;
        }
        self.keys.contains(key) || project.is_some_and(|p| self.projects.contains(p))
    }
}

/// GitHub's published secret-scanning signing keys.
pub const GITHUB_SECRET_SCANNING_KEYS: &str =
    "https://api.github.com/meta/public_keys/secret_scanning";

/// Budget alert delivery.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub webhooks: Vec<WebhookSettings>,
    /// Attempts per delivery, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; it doubles after each failure (up to ten minutes).
    pub first_retry: Duration,
    /// Longest wait for one attempt.
    pub timeout: Duration,
}

/// One OpenAI-compatible upstream.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub name: String,
    /// Base URL including `/v1`, without a trailing slash.
    pub base_url: String,
    pub api_key: Option<ProviderKey>,
    /// Extra headers sent on every request to this provider.
    pub headers: Vec<(String, String)>,
    /// Longest wait for the response to start (and between two pieces of a streamed body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Certificate authorities (PEM) trusted for this provider besides the public ones.
    pub ca_file: Option<std::path::PathBuf>,
    /// Projects with a credential of their own at this provider (an OpenAI project key per
    /// Tollgate project): their requests carry it instead of `api_key`.
    pub project_keys: Vec<(tollgate_core::ProjectId, ProviderKey)>,
}

/// What happens to a routed model with no price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpricedPolicy {
    /// Refuse the request: nothing is served for free by accident.
    Refuse,
    /// Meter it at this price.
    Fallback(Price),
}

/// A limit every key gets on the models a pattern matches, unless the key has its own rule
/// for that pattern (from the configuration's `[[limits]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultLimit {
    pub model: ModelPattern,
    pub limits: RateLimits,
}

/// The metering pipeline's sizes.
#[derive(Debug, Clone)]
pub struct MeteringSettings {
    /// Events waiting to be written before requests wait (back-pressure).
    pub capacity: usize,
    /// Most events written in one transaction.
    pub batch: usize,
    /// How long the writer waits for more events before writing a batch.
    pub linger: Duration,
    /// Where usage events are spooled before they are stored (see `spool`); `None` keeps
    /// them only in memory until stored (a killed process loses those not yet stored).
    pub spool_dir: Option<std::path::PathBuf>,
    /// Past this many spooled bytes, new requests are refused with a retryable 503.
    pub max_spool_bytes: u64,
}

/// Limits on client connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// Most client connections open at once; beyond it, new ones get a 503 and are closed.
    pub max_connections: usize,
    /// Most of them that have not shown a valid key yet; past it the oldest is closed (see
    /// `serve::trust`).
    pub max_unauthenticated: usize,
    /// Longest wait for a request's head, and for the next request on an idle keep-alive
    /// connection (HTTP/1.1).
    pub head_timeout: Duration,
    /// Longest a write to a client may make no progress (a client that stopped reading).
    pub write_timeout: Duration,
    /// Most concurrent streams on one HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list), in bytes.
    pub max_head_bytes: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_connections: 4_096,
            max_unauthenticated: 1_024,
            head_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(60),
            http2_max_streams: 128,
            max_head_bytes: 64 * 1024,
        }
    }
}

/// Everything the data plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub listen: SocketAddr,
    /// Threads serving connections, each with a runtime of its own (see `workers`).
    pub workers: usize,
    pub connections: ConnectionSettings,
    pub providers: Vec<ProviderSettings>,
    pub routes: RouteTable,
    pub pricing: PricingTable,
    pub unpriced: UnpricedPolicy,
    /// Largest request body accepted on metered endpoints.
    pub max_body_bytes: usize,
    /// Most request-body bytes held in memory by all requests at once; a body that does not
    /// fit is refused with a retryable 503 (see `body_budget`).
    pub max_body_bytes_in_flight: usize,
    /// Largest server-sent event held from a provider; a stream that goes past it is cut.
    pub max_stream_event_bytes: usize,
    /// How often providers without routes are asked for their models.
    pub model_refresh: Duration,
    pub metering: MeteringSettings,
    /// How often the store's change log is read.
    pub follow_interval: Duration,
    /// How often last-used times are written.
    pub last_used_flush: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Reverse proxies whose forwarding header is believed.
    pub trusted_proxies: Vec<tollgate_core::network::Cidr>,
    /// The one header trusted proxies report the client's address in.
    pub client_ip_header: tollgate_core::network::ClientIpHeader,
    /// Most store lookups a second of keys not (yet) in the key table; see `key_lookup`.
    pub key_lookups_per_second: u32,
    /// Limits every key gets unless it has its own rule for the same models.
    pub default_limits: Vec<DefaultLimit>,
    /// Output tokens a request is assumed to use, for token limits and budgets, when it sets no
    /// `max_tokens` (or `max_completion_tokens`, `max_output_tokens`).
    pub default_max_output_tokens: u64,
    pub alerts: AlertSettings,
    /// How long before a key expires its owner is alerted (`None`: never), and how often keys
    /// are looked at.
    pub key_expiry_warning: Option<Duration>,
    pub key_expiry_check: Duration,
    /// Suspicious-use detection; `None`: off.
    pub anomalies: Option<tollgate_core::anomaly::Thresholds>,
    /// Which findings suspend the key at once.
    pub anomaly_suspend: SuspendPolicy,
    /// Leak reports from GitHub's secret scanning.
    pub secret_scanning: SecretScanningSettings,
    /// What happens to provider objects the ownership ledger has never seen.
    pub unknown_objects: crate::ledger::UnknownObjects,
    /// Rate counters shared with other replicas through Redis; `None`: each replica counts
    /// on its own.
    pub shared_limits: Option<SharedLimitsSettings>,
    pub metrics: MetricsSettings,
    /// How long usage events are kept (the daily roll-up is kept for ever); `None`: for ever.
    pub usage_retention: Option<Duration>,
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Client addresses (after `trusted_proxies`) that may scrape; others get a 404.
    pub allow_from: Vec<tollgate_core::network::Cidr>,
}

impl MetricsSettings {
    /// Loopback only: clients often come from private addresses too (an office, a VPN, a
    /// load balancer that is not a trusted proxy), so a scraper elsewhere is named in
    /// `[metrics] allow_from`.
    pub const DEFAULT_ALLOW_FROM: [&'static str; 2] = ["127.0.0.0/8", "::1/128"];
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            enabled: true,
            allow_from: MetricsSettings::DEFAULT_ALLOW_FROM
                .iter()
                .filter_map(|range| tollgate_core::network::Cidr::parse(range).ok())
                .collect(),
        }
    }
}

/// Where rate counters are shared, and what happens when they cannot be reached.
#[derive(Clone)]
pub struct SharedLimitsSettings {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`); may hold a password.
    pub url: String,
    /// Starts every key Tollgate writes in Redis.
    pub prefix: String,
    /// Longest wait for Redis before a request is limited without it.
    pub timeout: Duration,
    pub when_unreachable: crate::shared_limits::WhenUnreachable,
}

impl std::fmt::Debug for SharedLimitsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimitsSettings")
            .field("url", &"*****")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("when_unreachable", &self.when_unreachable)
            .finish()
    }
}

impl GatewaySettings {
    pub fn new(listen: SocketAddr) -> GatewaySettings {
        GatewaySettings {
            listen,
            workers: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            connections: ConnectionSettings::default(),
            providers: Vec::new(),
            routes: RouteTable::default(),
            pricing: PricingTable::shipped().unwrap_or_default(),
            unpriced: UnpricedPolicy::Refuse,
            max_body_bytes: 32 * 1024 * 1024,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
            max_stream_event_bytes: 1024 * 1024,
            model_refresh: Duration::from_secs(600),
            metering: MeteringSettings {
                capacity: 16_384,
                batch: 2_048,
                linger: Duration::from_millis(50),
                spool_dir: None,
                max_spool_bytes: 256 * 1024 * 1024,
            },
            follow_interval: Duration::from_millis(200),
            last_used_flush: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
            client_ip_header: tollgate_core::network::ClientIpHeader::XForwardedFor,
            key_lookups_per_second: 50,
            default_limits: Vec::new(),
            default_max_output_tokens: 4_096,
            alerts: AlertSettings {
                webhooks: Vec::new(),
                attempts: 8,
                first_retry: Duration::from_secs(2),
                timeout: Duration::from_secs(10),
            },
            anomalies: Some(tollgate_core::anomaly::Thresholds::default()),
            anomaly_suspend: SuspendPolicy::default(),
            key_expiry_warning: Some(Duration::from_secs(7 * 86_400)),
            key_expiry_check: Duration::from_secs(600),
            secret_scanning: SecretScanningSettings {
                github_keys_url: Some(GITHUB_SECRET_SCANNING_KEYS.to_owned()),
                on_report: LeakAction::Revoke,
            },
            unknown_objects: crate::ledger::UnknownObjects::Hide,
            shared_limits: None,
            metrics: MetricsSettings::default(),
            usage_retention: None,
        }
    }
}
