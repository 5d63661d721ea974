//! One typed configuration: the file (`tollgate.toml`), then `TOLLGATE_*` environment variables,
//! then flags, validated at start with messages a person can act on.

use serde::Deserialize;
use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tollgate_core::pricing::{parse_dollars, Price, PricingTable};
use tollgate_core::routing::{ModelPattern, RouteTable};
use tollgate_gateway::UnpricedPolicy;
use tollgate_store::DatabaseLocation;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "./tollgate.db";
pub const DEFAULT_CONFIG: &str = "tollgate.toml";
pub const DEFAULT_OWNER_EMAIL: &str = "owner@localhost";
/// The shortest usage retention: a monthly budget's first day is read from the events.
pub const MIN_RETENTION_DAYS: u32 = 35;

/// The file's shape. Unknown fields are errors, so a typo never goes unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub owner_email: Option<String>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub keys: KeysConfig,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Most request-body bytes held in memory by all requests at once; a body that does not
    /// fit gets a retryable 503 [default: 256 MiB].
    pub max_body_bytes_in_flight: Option<usize>,
    /// Largest server-sent event held from a provider, in bytes; a stream that goes past it is
    /// cut [default: 1 MiB].
    pub max_stream_event_bytes: Option<usize>,
    /// Reverse proxies (IPs or CIDR ranges) whose client-address header is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The one header trusted proxies report the client's address in: `x-forwarded-for`
    /// (default) or `forwarded`.
    pub client_ip_header: Option<String>,
    /// Most store lookups a second of keys the server has not loaded yet (a key used the
    /// moment it is created) [default: 50].
    pub key_lookups_per_second: Option<u32>,
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    /// Model names that stand for another model: `fast = "gpt-4o-mini"`.
    #[serde(default)]
    pub aliases: HashMap<String, String>,
    #[serde(default)]
    pub pricing: PricingConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// Provider objects (files, batches, ...) and the ownership ledger.
    #[serde(default)]
    pub objects: ObjectsConfig,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub metering: MeteringConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub tracing: TracingConfig,
    #[serde(default)]
    pub secret_scanning: SecretScanningConfig,
    #[serde(default)]
    pub anomalies: AnomaliesConfig,
    /// Days usage events are kept; the daily roll-up (reports by day, budgets) is kept for
    /// ever [default: for ever].
    pub usage_retention_days: Option<u32>,
}

/// OpenTelemetry traces (`[tracing]`), off unless an endpoint is given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/HTTP collector's base URL, such as http://127.0.0.1:4318 (`/v1/traces` is
    /// added); `OTEL_EXPORTER_OTLP_ENDPOINT` wins.
    pub otlp_endpoint: Option<String>,
    /// "http/protobuf" (default) or "http/json".
    pub otlp_protocol: Option<String>,
    /// The traces' `service.name` [default: tollgate]; `OTEL_SERVICE_NAME` wins.
    pub service_name: Option<String>,
    /// Share of requests traced, 0 to 1 [default: 1].
    pub sample_ratio: Option<f64>,
}

/// Where traces go, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The full URL spans are posted to (`.../v1/traces`).
    pub traces_url: String,
    pub json: bool,
    pub service_name: String,
    pub sample_ratio: f64,
}

/// Prometheus metrics at `GET /metrics` (`[metrics]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` [default: true].
    pub enabled: Option<bool>,
    /// Client addresses (IPs or CIDR ranges, after trusted_proxies) that may scrape; `[]`:
    /// every address [default: loopback only].
    pub allow_from: Option<Vec<String>>,
}

/// Where usage events wait before they are stored (`[metering]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeteringConfig {
    /// The spool's directory [default: beside the database, `tollgate.usage-spool` for
    /// `tollgate.db`].
    pub spool_dir: Option<PathBuf>,
    /// Spooled bytes past which new requests get a retryable 503 [default: 256 MiB].
    pub max_spool_bytes: Option<u64>,
}

/// Limits on client connections (`[connections]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Most client connections at once; more get a 503 [default: 4096].
    pub max: Option<usize>,
    /// Most of them that have not shown a valid key yet; past it the oldest is closed
    /// [default: a quarter of max].
    pub max_unauthenticated: Option<usize>,
    /// Seconds to receive a request's head; also how long an idle keep-alive connection is
    /// kept [default: 10].
    pub head_timeout_secs: Option<u64>,
    /// Seconds a write to a client may make no progress before the connection is closed
    /// [default: 60].
    pub write_timeout_secs: Option<u64>,
    /// Most concurrent streams on one HTTP/2 connection [default: 128].
    pub http2_max_streams: Option<u32>,
    /// Largest request head in bytes [default: 65536].
    pub max_head_bytes: Option<usize>,
}

/// Defaults for rate limits; the limits themselves are set with `tollgate limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Output tokens assumed for a request without max_tokens, for token limits and budgets.
    pub default_max_output_tokens: Option<u64>,
    /// Limits every key gets (each key counted on its own) unless it has its own rule for the
    /// same model pattern.
    #[serde(default)]
    pub per_key: Vec<DefaultLimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultLimitConfig {
    #[serde(default = "every_model")]
    pub model: String,
    pub rpm: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrency: Option<u64>,
}

fn every_model() -> String {
    "*".to_owned()
}

/// Suspicious-use detection (`[anomalies]`); see `tollgate_core::anomaly`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomaliesConfig {
    /// [default: true]
    pub enabled: Option<bool>,
    /// Alert on addresses a key was never used from [default: true].
    pub new_address: Option<bool>,
    /// Distinct addresses remembered per key; past them, new ones no longer alert [default: 16].
    pub max_addresses: Option<usize>,
    /// A five-minute window this many times the key's hourly average is a spike [default: 10].
    pub spike_factor: Option<u64>,
    /// ...with at least this many requests [default: 100]...
    pub spike_min_requests: Option<u64>,
    /// ...or this many dollars [default: 5].
    pub spike_min_usd: Option<f64>,
    /// Refused requests naming one key within a minute that make a burst; 0: off [default: 20].
    pub failed_auth_burst: Option<u32>,
    /// Two networks (IPv4 /16, IPv6 /32) within this many seconds are "at once"; 0: off
    /// [default: 60].
    pub distant_within_secs: Option<i64>,
    /// Findings that suspend the key at once (`new_address`, `request_spike`, `spend_spike`,
    /// `failed_auth_burst`, `distant_networks`) [default: none].
    #[serde(default)]
    pub suspend_on: Vec<String>,
    /// Only keys of these projects are suspended (ids) [default: every project's].
    #[serde(default)]
    pub suspend_projects: Vec<String>,
    /// Only these keys are suspended (ids), besides the projects' [default: every key].
    #[serde(default)]
    pub suspend_keys: Vec<String>,
}

/// Leak reports from GitHub's secret scanning (`[secret_scanning]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretScanningConfig {
    /// Serve `POST /secret-scanning/github` [default: true].
    pub enabled: Option<bool>,
    /// Where the keys that sign reports are published [default: GitHub's].
    pub github_keys_url: Option<String>,
    /// `revoke` (the default) or `flag` (record and alert only).
    pub on_report: Option<String>,
}

/// Where budget alerts are posted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Attempts per delivery [default: 8].
    pub attempts: Option<u32>,
    /// Seconds before the first retry; doubles each time [default: 2].
    pub first_retry_secs: Option<u64>,
    /// Days before a key expires that its owner is alerted (`api_key.expiring`); 0: never
    /// [default: 7].
    pub expiry_warning_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable holding the signing secret (never the secret itself).
    pub secret_env: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnpricedChoice {
    /// Refuse requests for a routed model with no price.
    #[default]
    Refuse,
    /// Meter them at the `fallback` price.
    Fallback,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    #[serde(default)]
    pub unpriced: UnpricedChoice,
    pub fallback: Option<PriceConfig>,
    /// Prices that replace or extend the shipped list.
    #[serde(default)]
    pub models: BTreeMap<String, PriceConfig>,
}

/// Dollars per million tokens, written as strings ("2.50") or numbers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: toml::Value,
    pub cached_input: Option<toml::Value>,
    pub output: toml::Value,
}

impl PriceConfig {
    fn price(&self, what: &str) -> Result<Price, ConfigError> {
        let amount = |v: &toml::Value| -> Result<i64, ConfigError> {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => format!("{f}"),
                other => other.to_string(),
            };
            parse_dollars(&text).map_err(|e| ConfigError(format!("{what}: {e}")))
        };
        let input = amount(&self.input)?;
        Ok(Price {
            input,
            cached_input: self
                .cached_input
                .as_ref()
                .map(amount)
                .transpose()?
                .unwrap_or(input),
            output: amount(&self.output)?,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// Any OpenAI-compatible HTTP API.
    #[default]
    Openai,
    /// Tollgate's built-in simulated provider.
    Mock,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: Option<String>,
    pub format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The word keys start with (`sk` gives `sk-proj-…`).
    pub prefix: Option<String>,
}

/// An OpenAI-compatible model provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: ProviderType,
    /// Base URL including `/v1` (not used by `type = "mock"`).
    #[serde(default)]
    pub base_url: String,
    /// The environment variable holding the provider's real API key (never the key itself).
    pub api_key_env: Option<String>,
    /// Extra headers sent with every request to this provider.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest wait for the provider to start answering, and between streamed pieces.
    pub timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    /// Models routed to this provider: exact names or `*` patterns. None: the models its
    /// `GET /models` lists.
    #[serde(default)]
    pub models: Vec<String>,
    /// For `type = "mock"`: pause between streamed words, in milliseconds.
    pub stream_delay_ms: Option<u64>,
    /// PEM file of certificate authorities to trust for this provider's `https://` URL, in
    /// addition to the public ones (a provider with an internal CA or a self-signed
    /// certificate).
    pub ca_file: Option<PathBuf>,
    /// Credentials of single projects at this provider (one OpenAI project key per Tollgate
    /// project): the provider then keeps those projects' files, batches and stored responses
    /// apart by itself.
    #[serde(default)]
    pub project_keys: Vec<ProjectKeyConfig>,
}

/// A project's own credential at a provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectKeyConfig {
    /// The Tollgate project: its id (`proj_…`) or name.
    pub project: String,
    /// The environment variable holding the credential.
    pub api_key_env: Option<String>,
    /// A file holding the credential (a mounted secret); surrounding whitespace is ignored.
    pub api_key_file: Option<PathBuf>,
}

/// What happens to provider objects Tollgate has no record of (made before Tollgate, or
/// around it) when projects share a credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownObjectsChoice {
    /// Nobody reaches them through Tollgate.
    #[default]
    Hide,
    /// They belong to the project `adopt_into` names.
    Adopt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    #[serde(default)]
    pub unknown: UnknownObjectsChoice,
    /// With `unknown = "adopt"`: the project (id or name) unknown objects belong to.
    pub adopt_into: Option<String>,
}

/// Redis, for state every replica shares (`[redis]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; `--redis-url` and `TOLLGATE_REDIS_URL` win.
    pub url: Option<String>,
    /// Starts every key Tollgate writes [default: "tollgate:"].
    pub prefix: Option<String>,
    /// Longest wait for an answer before a request is limited without Redis [default: 250].
    pub timeout_ms: Option<u64>,
    /// When Redis cannot be reached: "limit-locally" (each replica with its share of each
    /// limit; the default) or "refuse" (503).
    pub when_unreachable: Option<String>,
}

/// The settings every command resolves, after file, environment and flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseLocation,
    pub secret_file: PathBuf,
    /// The key prefix asked for; it only takes effect on the first run (see `app`).
    pub key_prefix: Option<String>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub listen: SocketAddr,
    /// Threads serving requests; `None`: one per core.
    pub workers: Option<usize>,
    pub owner_email: String,
    pub providers: Vec<ProviderConfig>,
    pub aliases: HashMap<String, String>,
    pub pricing: PricingTable,
    pub unpriced: UnpricedPolicy,
    pub max_body_bytes: usize,
    pub max_body_bytes_in_flight: usize,
    pub max_stream_event_bytes: usize,
    pub trusted_proxies: Vec<tollgate_core::network::Cidr>,
    pub client_ip_header: tollgate_core::network::ClientIpHeader,
    pub key_lookups_per_second: u32,
    pub default_limits: Vec<tollgate_gateway::admission::DefaultLimit>,
    pub default_max_output_tokens: u64,
    pub alerts: tollgate_gateway::AlertSettings,
    pub connections: tollgate_gateway::ConnectionSettings,
    /// Rate counters shared through Redis; `None`: each server counts on its own.
    pub shared_limits: Option<tollgate_gateway::SharedLimitsSettings>,
    pub metrics: tollgate_gateway::MetricsSettings,
    pub secret_scanning: tollgate_gateway::SecretScanningSettings,
    /// Suspicious-use detection; `None`: off.
    pub anomalies: Option<tollgate_core::anomaly::Thresholds>,
    pub anomaly_suspend: tollgate_gateway::SuspendPolicy,
    /// How long before expiry keys are announced; `None`: never.
    pub key_expiry_warning: Option<std::time::Duration>,
    /// OpenTelemetry traces; `None`: off.
    pub tracing: Option<TracingSettings>,
    /// Why the traces' settings are unusable: only `serve` refuses to start for it, so that an
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` meant for something else does not stop management commands.
    pub tracing_problem: Option<String>,
    /// How long usage events are kept; `None`: for ever.
    pub usage_retention: Option<std::time::Duration>,
    /// The usage spool's directory.
    pub spool_dir: PathBuf,
    pub max_spool_bytes: u64,
    /// The project (id or name) that provider objects Tollgate has no record of belong to;
    /// `None`: they are hidden.
    pub adopt_unknown_into: Option<String>,
}

/// What the command line and environment supplied (clap merges flag over env).
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub database_url: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub redis_url: Option<String>,
    pub listen: Option<String>,
    pub owner_email: Option<String>,
    pub log_format: Option<LogFormat>,
    pub key_prefix: Option<String>,
    pub log_level: Option<String>,
    /// Serve the simulated demo provider in place of the default OpenAI one.
    pub demo: bool,
    /// Threads serving requests (`serve --workers`).
    pub workers: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Settings {
    pub fn resolve(overrides: Overrides) -> Result<Settings, ConfigError> {
        let file = load_file(overrides.config.as_deref())?;
        let database_url = overrides
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let database =
            DatabaseLocation::parse(&database_url).map_err(|e| ConfigError(e.to_string()))?;
        let secret_file = overrides
            .secret_file
            .or(file.secret_file)
            .unwrap_or_else(|| match database.path() {
                Some(file) => default_secret_file(file),
                // A server on PostgreSQL keeps its secret in the working directory; replicas
                // must share it (start-up refuses a secret the database was not set up with).
                None => PathBuf::from("tollgate.secret"),
            });
        let key_prefix = overrides.key_prefix.or(file.keys.prefix);
        if let Some(prefix) = &key_prefix {
            tollgate_core::KeyFormat::new(prefix)
                .map_err(|e| ConfigError(format!("keys.prefix: {e}")))?;
        }
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "listen: `{listen_text}` is not an address to listen on; write IP:PORT, such as 127.0.0.1:8080 or 0.0.0.0:8080"
            ))
        })?;
        let owner_email = overrides
            .owner_email
            .or(file.owner_email)
            .unwrap_or_else(|| DEFAULT_OWNER_EMAIL.to_owned());
        let providers = resolve_providers(file.providers, overrides.demo)?;
        let mut pricing = PricingTable::shipped().map_err(|e| ConfigError(e.to_string()))?;
        for (model, price) in &file.pricing.models {
            pricing.set(model, price.price(&format!("pricing.models.{model}"))?);
        }
        let unpriced = match (file.pricing.unpriced, &file.pricing.fallback) {
            (UnpricedChoice::Refuse, _) => UnpricedPolicy::Refuse,
            (UnpricedChoice::Fallback, Some(price)) => UnpricedPolicy::Fallback(price.price("pricing.fallback")?),
            (UnpricedChoice::Fallback, None) => {
                return Err(ConfigError("pricing.unpriced = \"fallback\" needs a pricing.fallback price: fallback = { input = \"1.00\", output = \"3.00\" }".into()))
            }
        };
        for (alias, target) in &file.aliases {
            if alias.trim().is_empty() || target.trim().is_empty() {
                return Err(ConfigError(format!(
                    "aliases: `{alias}` = `{target}` has an empty name"
                )));
            }
        }
        let default_limits = file
            .limits
            .per_key
            .iter()
            .map(|d| {
                let limits = tollgate_core::limit_rules::RateLimits {
                    rpm: d.rpm,
                    rpd: d.rpd,
                    tpm: d.tpm,
                    tpd: d.tpd,
                    concurrent: d.concurrency,
                };
                if limits.is_empty() || d.model.trim().is_empty() {
                    return Err(ConfigError(format!(
                        "limits.per_key: the entry for model `{}` needs a model and at least one of rpm, rpd, tpm, tpd, concurrency",
                        d.model
                    )));
                }
                Ok(tollgate_gateway::admission::DefaultLimit {
                    model: ModelPattern::new(&d.model),
                    limits,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let alerts = resolve_alerts(&file.alerts)?;
        let connections = resolve_connections(&file.connections)?;
        let shared_limits = resolve_redis(overrides.redis_url, &file.redis)?;
        let spool_dir = match (&file.metering.spool_dir, &database) {
            (Some(dir), _) => dir.clone(),
            // Beside the database, named after it without its extension (`tollgate.db`:
            // `tollgate.usage-spool`), so that it is not taken for one of SQLite's files.
            (None, DatabaseLocation::Sqlite(path)) => path.with_extension("usage-spool"),
            // On PostgreSQL, in the working directory.
            (None, DatabaseLocation::Postgres(_)) => PathBuf::from("tollgate.usage-spool"),
        };
        if let (Some(one), Some(all)) = (file.max_body_bytes, file.max_body_bytes_in_flight) {
            if all < one {
                return Err(ConfigError(format!(
                    "max_body_bytes_in_flight ({all}) is smaller than max_body_bytes ({one}): no body of the largest size could ever be read; raise it"
                )));
            }
        }
        let client_ip_header = match &file.client_ip_header {
            None => tollgate_core::network::ClientIpHeader::default(),
            Some(name) => tollgate_core::network::ClientIpHeader::parse(name).ok_or_else(|| {
                ConfigError(format!(
                    "client_ip_header: `{name}` is not a header Tollgate reads client addresses from; use \"x-forwarded-for\" or \"forwarded\", whichever your proxy sets"
                ))
            })?,
        };
        let tracing = resolve_tracing(
            &file.tracing,
            std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok(),
            std::env::var("OTEL_SERVICE_NAME").ok(),
        );
        Ok(Settings {
            database,
            secret_file,
            key_prefix,
            log_level: overrides
                .log_level
                .or(file.log.level)
                .unwrap_or_else(|| "info".to_owned()),
            log_format: overrides.log_format.or(file.log.format).unwrap_or_default(),
            listen,
            workers: overrides.workers,
            owner_email,
            providers,
            aliases: file.aliases,
            pricing,
            unpriced,
            max_body_bytes: file.max_body_bytes.unwrap_or(32 * 1024 * 1024),
            max_body_bytes_in_flight: file.max_body_bytes_in_flight.unwrap_or(256 * 1024 * 1024),
            max_stream_event_bytes: file.max_stream_event_bytes.unwrap_or(1024 * 1024).max(1024),
            trusted_proxies: file
                .trusted_proxies
                .iter()
                .map(|c| {
                    tollgate_core::network::Cidr::parse(c)
                        .map_err(|e| ConfigError(format!("trusted_proxies: {e}")))
                })
                .collect::<Result<_, _>>()?,
            client_ip_header,
            key_lookups_per_second: file.key_lookups_per_second.unwrap_or(50),
            default_limits,
            default_max_output_tokens: file.limits.default_max_output_tokens.unwrap_or(4_096),
            alerts,
            connections,
            shared_limits,
            metrics: resolve_metrics(&file.metrics)?,
            secret_scanning: resolve_secret_scanning(&file.secret_scanning)?,
            anomalies: resolve_anomalies(&file.anomalies)?,
            anomaly_suspend: resolve_suspend_policy(&file.anomalies)?,
            key_expiry_warning: match file.alerts.expiry_warning_days.unwrap_or(7) {
                0 => None,
                days if days <= 365 => Some(std::time::Duration::from_secs(u64::from(days) * 86_400)),
                days => return Err(ConfigError(format!(
                    "alerts.expiry_warning_days: {days} is more than a year; give 1 to 365, or 0 for no expiry alerts"
                ))),
            },
            tracing: tracing.as_ref().ok().cloned().flatten(),
            tracing_problem: tracing.err().map(|e| e.0),
            usage_retention: match file.usage_retention_days {
                None => None,
                Some(days) if (MIN_RETENTION_DAYS..=36_500).contains(&days) => {
                    Some(std::time::Duration::from_secs(u64::from(days) * 86_400))
                }
                Some(days) => return Err(ConfigError(format!(
                    "usage_retention_days: {days} is out of range; give {MIN_RETENTION_DAYS} to 36500 (budgets and daily limits read up to a month of events), or leave it out to keep events for ever"
                ))),
            },
            spool_dir,
            max_spool_bytes: file.metering.max_spool_bytes.unwrap_or(256 * 1024 * 1024),
            adopt_unknown_into: match (file.objects.unknown, file.objects.adopt_into) {
                (UnknownObjectsChoice::Hide, None) => None,
                (UnknownObjectsChoice::Adopt, Some(project)) if !project.trim().is_empty() => {
                    Some(project.trim().to_owned())
                }
                (UnknownObjectsChoice::Adopt, _) => return Err(ConfigError(
                    "objects.unknown = \"adopt\" needs objects.adopt_into, the project (id or name) that objects Tollgate has no record of belong to".into(),
                )),
                (UnknownObjectsChoice::Hide, Some(_)) => return Err(ConfigError(
                    "objects.adopt_into applies only with objects.unknown = \"adopt\"".into(),
                )),
            },
        })
    }

    /// The routing table: each provider's models as routes, and the aliases.
    pub fn routes(&self) -> RouteTable {
        let routes = self
            .providers
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.models.iter().map(move |m| (ModelPattern::new(m), i)))
            .collect();
        RouteTable::new(self.providers.len(), routes, self.aliases.clone())
    }
}

/// Where traces go: the environment's endpoint and service name over the file's.
fn resolve_tracing(
    config: &TracingConfig,
    env_endpoint: Option<String>,
    env_service: Option<String>,
) -> Result<Option<TracingSettings>, ConfigError> {
    let endpoint = env_endpoint
        .filter(|e| !e.trim().is_empty())
        .or_else(|| config.otlp_endpoint.clone());
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let base = endpoint.trim().trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(ConfigError(format!(
            "tracing.otlp_endpoint: `{base}` is not an http:// URL; give the OTLP/HTTP collector's base URL, such as http://127.0.0.1:4318 (an agent or collector beside the server; https is not supported)"
        )));
    }
    let traces_url = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let json = match config.otlp_protocol.as_deref() {
        None | Some("http/protobuf") => false,
        Some("http/json") => true,
        Some(other) => {
            return Err(ConfigError(format!(
                "tracing.otlp_protocol: `{other}` is not a choice; write \"http/protobuf\" or \"http/json\""
            )))
        }
    };
    let sample_ratio = config.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(ConfigError(format!(
            "tracing.sample_ratio: {sample_ratio} is out of range; give 0 to 1"
        )));
    }
    let service_name = env_service
        .filter(|s| !s.trim().is_empty())
        .or_else(|| config.service_name.clone())
        .unwrap_or_else(|| "tollgate".to_owned());
    Ok(Some(TracingSettings {
        traces_url,
        json,
        service_name,
        sample_ratio,
    }))
}

/// Who may scrape `/metrics`.
fn resolve_anomalies(
    config: &AnomaliesConfig,
) -> Result<Option<tollgate_core::anomaly::Thresholds>, ConfigError> {
    if config.enabled == Some(false) {
        return Ok(None);
    }
    let mut t = tollgate_core::anomaly::Thresholds::default();
    if let Some(on) = config.new_address {
        t.new_address = on;
    }
    if let Some(n) = config.max_addresses {
        t.max_addresses = n.clamp(1, 1_000);
    }
    if let Some(factor) = config.spike_factor {
        if factor < 2 {
            return Err(ConfigError(format!(
                "anomalies.spike_factor: {factor} would call ordinary use a spike; give 2 or more"
            )));
        }
        t.spike_factor = factor;
    }
    if let Some(n) = config.spike_min_requests {
        t.spike_min_requests = n;
    }
    if let Some(usd) = config.spike_min_usd {
        if !(usd.is_finite() && usd >= 0.0) {
            return Err(ConfigError(format!(
                "anomalies.spike_min_usd: {usd} is not an amount of dollars"
            )));
        }
        t.spike_min_cost = tollgate_core::MicroUsd((usd * 1_000_000.0).round() as i64);
    }
    if let Some(n) = config.failed_auth_burst {
        t.failed_auth_burst = n;
    }
    if let Some(secs) = config.distant_within_secs {
        t.distant_within_secs = secs.clamp(0, 3_600);
    }
    Ok(Some(t))
}

fn resolve_suspend_policy(
    config: &AnomaliesConfig,
) -> Result<tollgate_gateway::SuspendPolicy, ConfigError> {
    const KINDS: [&str; 5] = [
        "new_address",
        "request_spike",
        "spend_spike",
        "failed_auth_burst",
        "distant_networks",
    ];
    if let Some(bad) = config
        .suspend_on
        .iter()
        .find(|k| !KINDS.contains(&k.as_str()))
    {
        return Err(ConfigError(format!(
            "anomalies.suspend_on: `{bad}` is not a finding; give some of {}",
            KINDS.join(", ")
        )));
    }
    let projects = config
        .suspend_projects
        .iter()
        .map(|p| {
            tollgate_core::ProjectId::parse(p).map_err(|_| {
                ConfigError(format!(
                    "anomalies.suspend_projects: `{p}` is not a project id (proj_...)"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let keys = config
        .suspend_keys
        .iter()
        .map(|k| {
            tollgate_core::KeyId::parse(k).map_err(|_| {
                ConfigError(format!(
                    "anomalies.suspend_keys: `{k}` is not a key id (key_...)"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(tollgate_gateway::SuspendPolicy {
        kinds: config.suspend_on.clone(),
        projects,
        keys,
    })
}

fn resolve_secret_scanning(
    config: &SecretScanningConfig,
) -> Result<tollgate_gateway::SecretScanningSettings, ConfigError> {
    let url = config
        .github_keys_url
        .clone()
        .unwrap_or_else(|| tollgate_gateway::GITHUB_SECRET_SCANNING_KEYS.to_owned());
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError(format!(
            "secret_scanning.github_keys_url: `{url}` must be an http:// or https:// URL"
        )));
    }
    let on_report = match config.on_report.as_deref() {
        None | Some("revoke") => tollgate_gateway::LeakAction::Revoke,
        Some("flag") => tollgate_gateway::LeakAction::Flag,
        Some(other) => {
            return Err(ConfigError(format!(
                "secret_scanning.on_report: `{other}` is not known; give `revoke` (the default: a reported key stops at once) or `flag` (recorded and alerted only)"
            )))
        }
    };
    Ok(tollgate_gateway::SecretScanningSettings {
        github_keys_url: config.enabled.unwrap_or(true).then_some(url),
        on_report,
    })
}

fn resolve_metrics(
    config: &MetricsConfig,
) -> Result<tollgate_gateway::MetricsSettings, ConfigError> {
    let mut metrics = tollgate_gateway::MetricsSettings::default();
    if let Some(enabled) = config.enabled {
        metrics.enabled = enabled;
    }
    if let Some(ranges) = &config.allow_from {
        metrics.allow_from = ranges
            .iter()
            .map(|c| {
                tollgate_core::network::Cidr::parse(c)
                    .map_err(|e| ConfigError(format!("metrics.allow_from: {e}")))
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(metrics)
}

/// Connection limits, defaults filled in and checked.
fn resolve_connections(
    config: &ConnectionsConfig,
) -> Result<tollgate_gateway::ConnectionSettings, ConfigError> {
    let defaults = tollgate_gateway::ConnectionSettings::default();
    let seconds = |value: Option<u64>, default: std::time::Duration, name: &str| match value {
        None => Ok(default),
        Some(0) => Err(ConfigError(format!(
            "connections.{name}: 0 seconds would close every connection at once; give at least 1"
        ))),
        Some(secs) => Ok(std::time::Duration::from_secs(secs)),
    };
    let max_connections = config.max.unwrap_or(defaults.max_connections);
    let settings = tollgate_gateway::ConnectionSettings {
        max_connections,
        max_unauthenticated: config
            .max_unauthenticated
            .unwrap_or((max_connections / 4).max(1)),
        head_timeout: seconds(
            config.head_timeout_secs,
            defaults.head_timeout,
            "head_timeout_secs",
        )?,
        write_timeout: seconds(
            config.write_timeout_secs,
            defaults.write_timeout,
            "write_timeout_secs",
        )?,
        http2_max_streams: config
            .http2_max_streams
            .unwrap_or(defaults.http2_max_streams),
        max_head_bytes: config.max_head_bytes.unwrap_or(defaults.max_head_bytes),
    };
    if settings.max_unauthenticated == 0 || settings.max_unauthenticated > max_connections {
        return Err(ConfigError(format!(
            "connections.max_unauthenticated ({}) must be between 1 and connections.max ({max_connections})",
            settings.max_unauthenticated
        )));
    }
    if settings.max_connections == 0 || settings.http2_max_streams == 0 {
        return Err(ConfigError(
            "connections: max and http2_max_streams must be at least 1".into(),
        ));
    }
    if settings.max_head_bytes < 8 * 1024 {
        return Err(ConfigError(
            "connections.max_head_bytes: at least 8192 (browsers and SDKs send heads of several KiB)".into(),
        ));
    }
    Ok(settings)
}

/// Webhooks with their secrets read from the environment, checked.
fn resolve_alerts(config: &AlertsConfig) -> Result<tollgate_gateway::AlertSettings, ConfigError> {
    let mut webhooks = Vec::new();
    for hook in &config.webhooks {
        let rest = hook
            .url
            .strip_prefix("https://")
            .or_else(|| hook.url.strip_prefix("http://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            return Err(ConfigError(format!(
                "alerts.webhooks: `{}` must be an http:// or https:// URL with a host",
                hook.url
            )));
        }
        let secret = std::env::var(&hook.secret_env).unwrap_or_default();
        if secret.len() < 16 {
            return Err(ConfigError(format!(
                "alerts.webhooks: the signing secret for {} comes from the environment variable {}, which is {}; set it to a random string of at least 16 characters (the receiver checks signatures with it)",
                hook.url,
                hook.secret_env,
                if secret.is_empty() { "not set" } else { "too short" }
            )));
        }
        webhooks.push(tollgate_gateway::WebhookSettings {
            url: hook.url.clone(),
            secret: tollgate_gateway::WebhookSecret::new(secret),
        });
    }
    Ok(tollgate_gateway::AlertSettings {
        webhooks,
        attempts: config.attempts.unwrap_or(8).clamp(1, 20),
        first_retry: std::time::Duration::from_secs(config.first_retry_secs.unwrap_or(2).max(1)),
        timeout: std::time::Duration::from_secs(10),
    })
}

/// `tollgate.secret` beside `tollgate.db`.
fn resolve_redis(
    flag: Option<String>,
    file: &RedisConfig,
) -> Result<Option<tollgate_gateway::SharedLimitsSettings>, ConfigError> {
    use tollgate_gateway::shared_limits::WhenUnreachable;
    let Some(url) = flag
        .or_else(|| file.url.clone())
        .filter(|u| !u.trim().is_empty())
    else {
        return Ok(None);
    };
    let url = url.trim().to_owned();
    if !(url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://"))
    {
        return Err(ConfigError(
            "redis url: not a Redis URL; write one such as redis://127.0.0.1:6379 (rediss:// for TLS)".into(),
        ));
    }
    let when_unreachable = match file.when_unreachable.as_deref() {
        None | Some("limit-locally") => WhenUnreachable::LimitLocally,
        Some("refuse") => WhenUnreachable::Refuse,
        Some(other) => {
            return Err(ConfigError(format!(
                "redis.when_unreachable: `{other}` is not a choice; write \"limit-locally\" or \"refuse\""
            )))
        }
    };
    let timeout_ms = file.timeout_ms.unwrap_or(250);
    if !(1..=10_000).contains(&timeout_ms) {
        return Err(ConfigError(format!(
            "redis.timeout_ms: {timeout_ms} is out of range; give 1 to 10000"
        )));
    }
    Ok(Some(tollgate_gateway::SharedLimitsSettings {
        url,
        prefix: file
            .prefix
            .clone()
            .unwrap_or_else(|| "tollgate:".to_owned()),
        timeout: std::time::Duration::from_millis(timeout_ms),
        when_unreachable,
    }))
}

pub fn default_secret_file(database: &Path) -> PathBuf {
    let stem = database
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tollgate".to_owned());
    database.with_file_name(format!("{stem}.secret"))
}

fn load_file(explicit: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let (path, required) = match explicit {
        Some(path) => (path.to_owned(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default())
        }
        Err(err) => {
            return Err(ConfigError(format!(
                "cannot read the config file {}: {err}",
                path.display()
            )))
        }
    };
    toml::from_str(&text).map_err(|err| {
        ConfigError(format!(
            "the config file {} is not valid: {}",
            path.display(),
            err.to_string().trim_end()
        ))
    })
}

/// The default OpenAI provider (from `OPENAI_BASE_URL`/`OPENAI_API_KEY`) unless the file names
/// one called `openai` (or `--demo` puts the simulated provider first), then the file's
/// providers, checked.
fn resolve_providers(
    declared: Vec<ProviderConfig>,
    demo: bool,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let mut providers = Vec::new();
    if demo {
        providers.push(ProviderConfig {
            name: "demo".into(),
            kind: ProviderType::Mock,
            models: tollgate_gateway::mock::DEMO_MODELS
                .iter()
                .map(|m| m.to_string())
                .collect(),
            ..ProviderConfig::default()
        });
    } else if !declared.iter().any(|p| p.name == "openai") {
        providers.push(ProviderConfig {
            name: "openai".into(),
            base_url: std::env::var("OPENAI_BASE_URL")
                .unwrap_or_else(|_| "https://api.openai.com/v1".into()),
            api_key_env: Some("OPENAI_API_KEY".into()),
            ..ProviderConfig::default()
        });
    }
    providers.extend(declared);
    let mut names = HashSet::new();
    let mut models = HashSet::new();
    for p in &providers {
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError(format!(
                "providers: `{}` is not a provider name; use letters, digits, - and _",
                p.name
            )));
        }
        if !names.insert(p.name.clone()) {
            return Err(ConfigError(format!(
                "providers: the name `{}` is used twice",
                p.name
            )));
        }
        if p.kind == ProviderType::Openai
            && !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "providers.{}: base_url `{}` must start with http:// or https://",
                p.name, p.base_url
            )));
        }
        if p.base_url.contains(['?', '#']) {
            return Err(ConfigError(format!(
                "providers.{}: base_url `{}` must not have a query or fragment; give the URL up to and including /v1",
                p.name, p.base_url
            )));
        }
        if p.ca_file.is_some() && !p.base_url.starts_with("https://") {
            return Err(ConfigError(format!(
                "providers.{}: ca_file applies to https:// providers only; base_url is `{}`",
                p.name, p.base_url
            )));
        }
        for model in &p.models {
            if model.trim().is_empty() {
                return Err(ConfigError(format!(
                    "providers.{}: a model name is empty",
                    p.name
                )));
            }
            if !models.insert(model.clone()) {
                return Err(ConfigError(format!(
                    "providers.{}: the model `{model}` is offered by two providers; each model goes to one",
                    p.name
                )));
            }
        }
        let mut projects = HashSet::new();
        for key in &p.project_keys {
            let project = key.project.trim();
            if project.is_empty() {
                return Err(ConfigError(format!(
                    "providers.{}.project_keys: an entry names no project",
                    p.name
                )));
            }
            if !projects.insert(project) {
                return Err(ConfigError(format!(
                    "providers.{}.project_keys: the project `{project}` has two entries",
                    p.name
                )));
            }
            if key.api_key_env.is_some() == key.api_key_file.is_some() {
                return Err(ConfigError(format!(
                    "providers.{}.project_keys: the project `{project}` needs exactly one of api_key_env and api_key_file",
                    p.name
                )));
            }
        }
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("tollgate.toml");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        (dir, path)
    }

    /// The block of YAML text under the first line ending in `marker`, dedented.
    fn yaml_block(text: &str, marker: &str) -> String {
        let mut lines = text.lines().skip_while(|l| !l.trim_end().ends_with(marker));
        let head = lines.next().unwrap_or_else(|| panic!("no {marker}"));
        let indent = head.len() - head.trim_start().len();
        let body: Vec<&str> = lines
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .collect();
        let inner = body
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start().len())
            .min()
            .unwrap_or(0);
        body.iter()
            .map(|l| l.get(inner..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn leak_reports_are_on_with_github_s_keys_and_revoke_unless_told_otherwise() {
        let default = resolve_secret_scanning(&SecretScanningConfig::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            default.github_keys_url.as_deref(),
            Some(tollgate_gateway::GITHUB_SECRET_SCANNING_KEYS)
        );
        assert_eq!(default.on_report, tollgate_gateway::LeakAction::Revoke);
        let flag = resolve_secret_scanning(&SecretScanningConfig {
            on_report: Some("flag".into()),
            enabled: Some(false),
            ..SecretScanningConfig::default()
        })
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(flag.on_report, tollgate_gateway::LeakAction::Flag);
        assert_eq!(flag.github_keys_url, None, "off");
        for bad in [
            SecretScanningConfig {
                on_report: Some("delete".into()),
                ..SecretScanningConfig::default()
            },
            SecretScanningConfig {
                github_keys_url: Some("ftp://keys".into()),
                ..SecretScanningConfig::default()
            },
        ] {
            assert!(resolve_secret_scanning(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_given_and_checked_when_it_is() {
        let none = TracingConfig::default();
        assert_eq!(resolve_tracing(&none, None, None).ok(), Some(None));
        let file = TracingConfig {
            otlp_endpoint: Some("http://collector:4318/".into()),
            otlp_protocol: Some("http/json".into()),
            ..TracingConfig::default()
        };
        let on = resolve_tracing(&file, None, Some("edge".into()))
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("traces on"));
        assert_eq!(on.traces_url, "http://collector:4318/v1/traces");
        assert!(on.json);
        assert_eq!(on.service_name, "edge");
        assert_eq!(on.sample_ratio, 1.0);
        let env = resolve_tracing(&none, Some("http://agent:4318/v1/traces".into()), None)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("traces on"));
        assert_eq!(env.traces_url, "http://agent:4318/v1/traces");
        assert!(!env.json);
        for (bad, says) in [
            (
                TracingConfig {
                    otlp_endpoint: Some("https://x:4318".into()),
                    ..TracingConfig::default()
                },
                "not an http:// URL",
            ),
            (
                TracingConfig {
                    otlp_endpoint: Some("http://x:4318".into()),
                    otlp_protocol: Some("grpc".into()),
                    ..TracingConfig::default()
                },
                "not a choice",
            ),
            (
                TracingConfig {
                    otlp_endpoint: Some("http://x:4318".into()),
                    sample_ratio: Some(1.5),
                    ..TracingConfig::default()
                },
                "out of range",
            ),
        ] {
            let message = resolve_tracing(&bad, None, None)
                .err()
                .map(|e| e.0)
                .unwrap_or_default();
            assert!(message.contains(says), "{message}");
        }
    }

    #[test]
    fn the_deployment_examples_configs_are_valid() {
        let examples = [
            (
                include_str!("../../../deploy/kubernetes.yaml"),
                "tollgate.toml: |",
            ),
            (include_str!("../../../deploy/compose.yaml"), "content: |"),
        ];
        for (yaml, marker) in examples {
            let toml = yaml_block(yaml, marker);
            assert!(toml.contains("trusted_proxies"), "{toml}");
            let (_dir, path) = write(&toml);
            let settings = Settings::resolve(Overrides {
                config: Some(path),
                ..Overrides::default()
            })
            .unwrap_or_else(|e| panic!("{marker}: {e}\n{toml}"));
            assert_eq!(settings.trusted_proxies.len(), 1);
            assert!(settings.usage_retention.is_some());
        }
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let (_dir, path) = write("listen = \"127.0.0.1:9000\"\ndatabase_url = \"/tmp/x.db\"\n");
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            listen: Some("127.0.0.1:9100".into()),
            ..Overrides::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.listen.port(), 9100);
        assert_eq!(settings.database.path(), Some(&PathBuf::from("/tmp/x.db")));
        assert_eq!(settings.secret_file, PathBuf::from("/tmp/x.secret"));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_explained() {
        let (_dir, path) = write("listn = \"127.0.0.1:9000\"\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        });
        let message = err.err().map(|e| e.0).unwrap_or_default();
        assert!(message.contains("unknown field `listn`"), "{message}");

        let (_dir, path) = write("listen = \"localhost\"\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        });
        assert!(err
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
            .contains("IP:PORT"));

        let (_dir, path) = write("[[providers]]\nname = \"a\"\nbase_url = \"ftp://x\"\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        });
        assert!(err
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
            .contains("http://"));

        let (_dir, path) = write("[metrics]\nallow_from = [\"10.0.0.0/33\"]\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        });
        let message = err.err().map(|e| e.0).unwrap_or_default();
        assert!(message.starts_with("metrics.allow_from: "), "{message}");
        let (_dir, path) = write("[metrics]\nallow_from = [\"10.1.0.0/16\"]\nenabled = false\n");
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!settings.metrics.enabled);
        assert_eq!(settings.metrics.allow_from.len(), 1);
        assert_eq!(settings.usage_retention, None, "kept for ever by default");

        let (_dir, path) = write("usage_retention_days = 7\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        });
        let message = err.err().map(|e| e.0).unwrap_or_default();
        assert!(message.contains("give 35 to 36500"), "{message}");
        let (_dir, path) = write("usage_retention_days = 90\n");
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            settings.usage_retention,
            Some(std::time::Duration::from_secs(90 * 86_400))
        );

        let missing = Settings::resolve(Overrides {
            config: Some(PathBuf::from("/nonexistent/tollgate.toml")),
            ..Overrides::default()
        });
        assert!(missing.is_err());
    }

    #[test]
    fn models_come_from_providers_and_must_be_unique() {
        let (_dir, path) = write(
            "[[providers]]\nname = \"local\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodels = [\"llama\", \"qwen\"]\n",
        );
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let routes = settings.routes();
        let ids: Vec<String> = routes.listable().into_iter().map(|(m, _)| m).collect();
        assert_eq!(ids, ["llama", "qwen"]);
        assert_eq!(
            routes.resolve("qwen").map(|r| r.provider),
            Some(1),
            "after the default openai provider"
        );

        let (_dir, path) = write(
            "[[providers]]\nname = \"a\"\nbase_url = \"http://x\"\nmodels = [\"m\"]\n[[providers]]\nname = \"b\"\nbase_url = \"http://y\"\nmodels = [\"m\"]\n",
        );
        assert!(Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .is_err());
    }

    #[test]
    fn pricing_overrides_fallback_aliases_and_demo() {
        let (_dir, path) = write(
            "[aliases]\nfast = \"gpt-4o-mini\"\n[pricing]\nunpriced = \"fallback\"\nfallback = { input = \"1\", output = 3.5 }\n[pricing.models.\"llama-3\"]\ninput = \"0.05\"\ncached_input = \"0.01\"\noutput = \"0.10\"\n",
        );
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            demo: true,
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(
            settings.pricing.price("llama-3"),
            Some(Price {
                input: 50_000,
                cached_input: 10_000,
                output: 100_000
            })
        );
        assert_eq!(
            settings.unpriced,
            UnpricedPolicy::Fallback(Price {
                input: 1_000_000,
                cached_input: 1_000_000,
                output: 3_500_000
            })
        );
        assert_eq!(settings.providers[0].name, "demo");
        assert!(
            settings.providers.iter().all(|p| p.name != "openai"),
            "demo replaces the default provider"
        );
        assert_eq!(
            settings.routes().resolve("fast").map(|r| r.model),
            Some("gpt-4o-mini".into())
        );

        let (_dir, path) = write("trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]\n");
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(settings.trusted_proxies.len(), 2);
        let (_dir, path) = write("trusted_proxies = [\"10.0.0.0/99\"]\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(err.0.starts_with("trusted_proxies:"), "{}", err.0);

        let (_dir, path) = write("[pricing]\nunpriced = \"fallback\"\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(
            err.0.contains("needs a pricing.fallback price"),
            "{}",
            err.0
        );
        let (_dir, path) = write("[pricing.models.x]\ninput = \"cheap\"\noutput = \"1\"\n");
        let err = Settings::resolve(Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(err.0.contains("pricing.models.x"), "{}", err.0);
    }
}
