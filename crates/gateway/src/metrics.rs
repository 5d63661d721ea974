//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format (the
//! `prometheus-client` crate). A leaf: the request path marks its response with what happened
//! ([`Served`], [`Forwarded`], [`Refusal`]) and the connection records every request once, from
//! those marks, when its response head is ready; the metering writer records tokens and cost
//! as usage events pass; gauges are read when scraped.
//!
//! Labels stay few and bounded: routes and refusal reasons are fixed words, statuses HTTP
//! codes, providers the configured ones. Tokens and cost are labelled by project and model:
//! past [`MAX_USAGE_SERIES`] pairs, new pairs are counted under model `other`, so a provider
//! that makes up model names cannot grow the scrape without bound.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tollgate_store::UsageEvent;

/// Most (project, model) pairs tokens and cost are kept apart for.
pub const MAX_USAGE_SERIES: usize = 2_000;

/// The OpenMetrics exposition's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What served a request: the endpoint group it was routed to (`chat.completions`, `files`,
/// ...), or the part of the server (`admin`, `console`, `health`). Set on the response.
#[derive(Debug, Clone, Copy)]
pub struct Served(pub &'static str);

/// A request went to a provider, which answered its head after `wait`. Set on the response.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub provider: String,
    pub wait: Duration,
}

/// Why Tollgate answered a request itself with an error. Set on the response.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// A limit: `requests`, `tokens`, `budget`, `shared_state_unavailable` (Redis away and the
    /// setting says refuse) or `server_busy` (bodies or usage backlog).
    Limit(&'static str),
    /// The caller's key: `missing`, `invalid`, `revoked`, `expired`, `unchecked`,
    /// `ip_not_allowed`, `scope`, `project`.
    Auth(&'static str),
    /// The provider failed: `connect`, `timeout`, `failed`.
    Upstream {
        provider: String,
        kind: &'static str,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    provider: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    project: String,
    model: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    project: String,
    model: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// One (project, model) pair's token and cost counters, shared with their families.
#[derive(Debug)]
struct UsageSeries {
    /// Input, cached input, output and reasoning tokens.
    tokens: [Counter; 4],
    cost: Counter<f64, AtomicU64>,
}

/// A (project, model) pair looked up without owning it; hashes as `(String, String)` does.
struct PairRef<'a>(&'a str, &'a str);

impl Hash for PairRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl hashbrown::Equivalent<(String, String)> for PairRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

/// Token kinds, in [`UsageSeries::tokens`]' order.
const TOKEN_KINDS: [&str; 4] = ["input", "cached_input", "output", "reasoning"];

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~65 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 18))
}

fn overhead_histogram() -> Histogram {
    // 25 µs to ~0.8 s.
    Histogram::new(exponential_buckets(0.000_025, 2.0, 16))
}

/// The gauges read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readings {
    pub keys: i64,
    pub body_bytes_held: i64,
    pub usage_spool_bytes: i64,
    pub usage_queue_events: i64,
    /// `None`: this server shares no state through Redis.
    pub redis_up: Option<bool>,
    pub connections_open: i64,
}

/// Every metric the gateway keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<RouteLabels>,
    overhead: Histograms<RouteLabels>,
    upstream_duration: Histograms<ProviderLabels>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    limit_refusals: Family<ReasonLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    /// The counters of each (project, model) pair tokens and cost are kept for, found without
    /// hashing or cloning a label set per event.
    usage_series: std::sync::RwLock<hashbrown::HashMap<(String, String), Arc<UsageSeries>>>,
    usage_stored: Counter,
    usage_write_failures: Counter,
    usage_writer_lag: Gauge<f64, AtomicU64>,
    keys: Gauge,
    body_bytes_held: Gauge,
    usage_spool_bytes: Gauge,
    usage_queue_events: Gauge,
    redis_up: Gauge,
    connections_open: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "tollgate_requests",
            "Requests answered, by route and HTTP status",
            requests.clone(),
        );
        let duration: Histograms<RouteLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "tollgate_request_duration_seconds",
            "Time from a request's head to its response's head (a stream's first byte), by route",
            duration.clone(),
        );
        let overhead: Histograms<RouteLabels> = Family::new_with_constructor(overhead_histogram);
        registry.register(
            "tollgate_overhead_seconds",
            "Tollgate's own time in a forwarded request: its duration less the provider's wait for the response head (includes reading the client's body)",
            overhead.clone(),
        );
        let upstream_duration: Histograms<ProviderLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "tollgate_upstream_duration_seconds",
            "Time a provider took to answer a request's head, by provider",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "tollgate_upstream_errors",
            "Requests a provider failed: connect, timeout, failed (no answer), status_5xx, status_429",
            upstream_errors.clone(),
        );
        let limit_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tollgate_limit_refusals",
            "Requests refused by a limit: requests, tokens, budget, shared_state_unavailable, server_busy",
            limit_refusals.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "tollgate_auth_failures",
            "Requests refused for their key: missing, invalid, revoked, expired, unchecked, ip_not_allowed, scope, project",
            auth_failures.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tollgate_tokens",
            "Tokens metered, by project, model served and type (input, cached_input, output, reasoning)",
            tokens.clone(),
        );
        let cost = Family::<CostLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "tollgate_cost_usd",
            "Cost metered in US dollars, by project and model served",
            cost.clone(),
        );
        let usage_stored = Counter::default();
        registry.register(
            "tollgate_usage_events_stored",
            "Usage events written to the database",
            usage_stored.clone(),
        );
        let usage_write_failures = Counter::default();
        registry.register(
            "tollgate_usage_write_failures",
            "Failed attempts to write a batch of usage events (retried; the events are spooled)",
            usage_write_failures.clone(),
        );
        let usage_writer_lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "tollgate_usage_writer_lag_seconds",
            "Age of the oldest usage event the writer is storing (0 when it is idle)",
            usage_writer_lag.clone(),
        );
        let keys = Gauge::default();
        registry.register(
            "tollgate_keys",
            "Keys in this server's key table",
            keys.clone(),
        );
        let body_bytes_held = Gauge::default();
        registry.register(
            "tollgate_body_bytes_held",
            "Request-body bytes held in memory (against max_body_bytes_in_flight)",
            body_bytes_held.clone(),
        );
        let usage_spool_bytes = Gauge::default();
        registry.register(
            "tollgate_usage_spool_bytes",
            "Bytes of usage events spooled and not yet stored (against metering.max_spool_bytes)",
            usage_spool_bytes.clone(),
        );
        let usage_queue_events = Gauge::default();
        registry.register(
            "tollgate_usage_queue_events",
            "Usage events queued for the writer",
            usage_queue_events.clone(),
        );
        let redis_up = Gauge::default();
        registry.register(
            "tollgate_redis_up",
            "1 while Redis answers, 0 while it does not (-1: this server uses no Redis)",
            redis_up.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "tollgate_connections_open",
            "Client connections open",
            connections_open.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            overhead,
            upstream_duration,
            upstream_errors,
            limit_refusals,
            auth_failures,
            tokens,
            cost,
            usage_series: Default::default(),
            usage_stored,
            usage_write_failures,
            usage_writer_lag,
            keys,
            body_bytes_held,
            usage_spool_bytes,
            usage_queue_events,
            redis_up,
            connections_open,
        }
    }

    /// Records an answered request from its response's marks.
    pub fn request(
        &self,
        code: u16,
        elapsed: Duration,
        served: Option<Served>,
        forwarded: Option<&Forwarded>,
        refusal: Option<&Refusal>,
    ) {
        let route = served.map_or("other", |s| s.0);
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        let labels = RouteLabels { route };
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(forwarded) = forwarded {
            self.overhead
                .get_or_create(&labels)
                .observe(elapsed.saturating_sub(forwarded.wait).as_secs_f64());
            self.upstream_duration
                .get_or_create(&ProviderLabels {
                    provider: forwarded.provider.clone(),
                })
                .observe(forwarded.wait.as_secs_f64());
            let kind = match code {
                429 => Some("status_429"),
                500..=599 => Some("status_5xx"),
                _ => None,
            };
            if let Some(kind) = kind {
                self.upstream_error(&forwarded.provider, kind);
            }
        }
        match refusal {
            Some(&Refusal::Limit(reason)) => {
                self.limit_refusals
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            Some(&Refusal::Auth(reason)) => {
                self.auth_failures
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            Some(Refusal::Upstream { provider, kind }) => self.upstream_error(provider, kind),
            None => {}
        }
    }

    /// Records a provider that could not be reached or did not answer.
    pub fn upstream_error(&self, provider: &str, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                provider: provider.to_owned(),
                kind,
            })
            .inc();
    }

    /// Records a usage event's tokens and cost. An event with neither (a refused or failed
    /// request, a pass-through call) makes no series: made-up model names cannot use up the
    /// bound without being billed.
    pub fn usage(&self, event: &UsageEvent) {
        let billed = event.input_tokens > 0
            || event.output_tokens > 0
            || event.cached_input_tokens > 0
            || event.reasoning_tokens > 0
            || event.cost.0 > 0;
        if !billed {
            return;
        }
        let series = self.usage_series(event.project_id.as_str(), &event.model_served);
        let counts = [
            event.input_tokens,
            event.cached_input_tokens,
            event.output_tokens,
            event.reasoning_tokens,
        ];
        for (counter, count) in series.tokens.iter().zip(counts) {
            if count > 0 {
                counter.inc_by(count as u64);
            }
        }
        if event.cost.0 > 0 {
            series.cost.inc_by(event.cost.0 as f64 / 1_000_000.0);
        }
    }

    /// The counters for a pair: its own, or its project's `other` once the bound of pairs is
    /// reached by others. A pair's series (cost and every token kind, at 0 until counted) exist
    /// from its first billed event.
    fn usage_series(&self, project: &str, model: &str) -> Arc<UsageSeries> {
        {
            // Past the bound, a pair not seen before is its project's `other`: found under the
            // read lock too, so that a provider making up model names does not take the write
            // lock for every event.
            let all = self
                .usage_series
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let found = all.get(&PairRef(project, model)).or_else(|| {
                (all.len() >= MAX_USAGE_SERIES)
                    .then(|| all.get(&PairRef(project, "other")))
                    .flatten()
            });
            if let Some(series) = found {
                return Arc::clone(series);
            }
        }
        let mut all = self
            .usage_series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(series) = all.get(&PairRef(project, model)) {
            return Arc::clone(series);
        }
        // Past the bound: one more `other` series for each project, as the projects are.
        let model = if all.len() < MAX_USAGE_SERIES {
            model
        } else {
            "other"
        };
        if let Some(series) = all.get(&PairRef(project, model)) {
            return Arc::clone(series);
        }
        let key = (project.to_owned(), model.to_owned());
        if let Some(series) = all.get(&key) {
            return Arc::clone(series);
        }
        let tokens = TOKEN_KINDS.map(|kind| {
            self.tokens
                .get_or_create(&TokenLabels {
                    project: key.0.clone(),
                    model: key.1.clone(),
                    r#type: kind,
                })
                .clone()
        });
        let cost = self
            .cost
            .get_or_create(&CostLabels {
                project: key.0.clone(),
                model: key.1.clone(),
            })
            .clone();
        let series = Arc::new(UsageSeries { tokens, cost });
        all.insert(key, Arc::clone(&series));
        series
    }

    /// Records a batch of usage events stored.
    pub fn usage_stored(&self, events: usize) {
        self.usage_stored.inc_by(events as u64);
    }

    /// Records a failed attempt to store a batch of events, the oldest `lag` old.
    pub fn usage_write_failed(&self, lag: Duration) {
        self.usage_write_failures.inc();
        self.usage_writer_lag.set(lag.as_secs_f64());
    }

    /// Sets the writer's lag (zero once it has stored what it held).
    pub fn usage_writer_lag(&self, lag: Duration) {
        self.usage_writer_lag.set(lag.as_secs_f64());
    }

    /// The exposition, with the gauges set from `readings`.
    pub fn encode(&self, readings: Readings) -> String {
        self.keys.set(readings.keys);
        self.body_bytes_held.set(readings.body_bytes_held);
        self.usage_spool_bytes.set(readings.usage_spool_bytes);
        self.usage_queue_events.set(readings.usage_queue_events);
        self.redis_up.set(match readings.redis_up {
            None => -1,
            Some(up) => i64::from(up),
        });
        self.connections_open.set(readings.connections_open);
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{KeyId, MicroUsd, OrgId, ProjectId, UnixTime};

    fn event(model: &str, input: i64, output: i64, cost: i64) -> UsageEvent {
        UsageEvent {
            request_id: "req_1".into(),
            org_id: OrgId::from_trusted("org-test".into()),
            project_id: ProjectId::from_trusted("proj_a".into()),
            key_id: KeyId::from_trusted("key_test".into()),
            model_requested: model.into(),
            model_served: model.into(),
            endpoint: "/v1/chat/completions".into(),
            input_tokens: input,
            cached_input_tokens: 0,
            output_tokens: output,
            reasoning_tokens: 0,
            cost: MicroUsd(cost),
            status: 200,
            latency_ms: 1,
            client_ip: None,
            created_at: UnixTime(0),
            objects: Vec::new(),
        }
    }

    fn line<'a>(text: &'a str, starts: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(starts))
    }

    #[test]
    fn requests_refusals_and_upstream_errors_are_counted_by_their_labels() {
        let metrics = Metrics::new();
        let forwarded = Forwarded {
            provider: "openai".into(),
            wait: Duration::from_millis(30),
        };
        metrics.request(
            200,
            Duration::from_millis(31),
            Some(Served("chat.completions")),
            Some(&forwarded),
            None,
        );
        metrics.request(
            502,
            Duration::from_millis(5),
            Some(Served("chat.completions")),
            Some(&forwarded),
            None,
        );
        metrics.request(
            429,
            Duration::from_micros(80),
            Some(Served("chat.completions")),
            None,
            Some(&Refusal::Limit("requests")),
        );
        metrics.request(
            401,
            Duration::from_micros(20),
            None,
            None,
            Some(&Refusal::Auth("invalid")),
        );
        let text = metrics.encode(Readings::default());
        assert_eq!(
            line(
                &text,
                r#"tollgate_requests_total{route="chat.completions",code="200"}"#
            ),
            Some(r#"tollgate_requests_total{route="chat.completions",code="200"} 1"#)
        );
        assert!(text.contains(r#"tollgate_requests_total{route="other",code="401"} 1"#));
        assert!(text.contains(r#"tollgate_limit_refusals_total{reason="requests"} 1"#));
        assert!(text.contains(r#"tollgate_auth_failures_total{reason="invalid"} 1"#));
        assert!(text
            .contains(r#"tollgate_upstream_errors_total{provider="openai",kind="status_5xx"} 1"#));
        // The overhead of the forwarded request is its duration less the provider's wait.
        assert!(text.contains(r#"tollgate_overhead_seconds_count{route="chat.completions"} 2"#));
        let sum = line(
            &text,
            r#"tollgate_overhead_seconds_sum{route="chat.completions"}"#,
        )
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
        assert!(sum.is_some_and(|s| (s - 0.001).abs() < 1e-9), "{sum:?}");
        assert!(text.contains("tollgate_redis_up -1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn tokens_and_cost_are_kept_per_project_and_model_and_bounded() {
        let metrics = Metrics::new();
        metrics.usage(&event("gpt-4o", 10, 5, 1_500));
        metrics.usage(&event("gpt-4o", 1, 1, 500));
        metrics.usage(&event("unbilled-made-up", 0, 0, 0));
        let text = metrics.encode(Readings::default());
        assert!(
            !text.contains("unbilled-made-up"),
            "no series without tokens or cost"
        );
        assert!(text
            .contains(r#"tollgate_tokens_total{project="proj_a",model="gpt-4o",type="input"} 11"#));
        assert!(text
            .contains(r#"tollgate_tokens_total{project="proj_a",model="gpt-4o",type="output"} 6"#));
        assert!(text.contains(r#"tollgate_cost_usd_total{project="proj_a",model="gpt-4o"} 0.002"#));
        for n in 0..MAX_USAGE_SERIES + 50 {
            metrics.usage(&event(&format!("made-up-{n}"), 1, 0, 0));
        }
        let text = metrics.encode(Readings::default());
        let series = text
            .lines()
            .filter(|l| l.starts_with("tollgate_cost_usd_total{"))
            .count();
        assert_eq!(
            series,
            MAX_USAGE_SERIES + 1,
            "the pairs past the bound fold into `other`"
        );
        assert!(text
            .contains(r#"tollgate_tokens_total{project="proj_a",model="other",type="input"} 51"#));
        // A pair seen before the bound keeps its own series after it.
        metrics.usage(&event("gpt-4o", 2, 0, 0));
        let text = metrics.encode(Readings::default());
        assert!(text
            .contains(r#"tollgate_tokens_total{project="proj_a",model="gpt-4o",type="input"} 13"#));
        assert!(text
            .contains(r#"tollgate_tokens_total{project="proj_a",model="other",type="input"} 51"#));
    }
}
