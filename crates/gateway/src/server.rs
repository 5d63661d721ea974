use crate::admission::Limits;
use crate::background::catalog::Catalog;
use crate::background::denials::IpDenials;
use crate::background::follower::Follower;
use crate::background::key_lookup::KeyLookups;
use crate::background::key_table::KeyTable;
use crate::background::last_used::LastUsed;
use crate::background::spool::Spool;
use crate::background::{budget_alerts, metering};
use crate::error::GatewayError;
use crate::serve::dispatch::Dispatch;
use crate::serve::workers::{self, Workers};
use crate::settings::GatewaySettings;
use crate::state::{AppState, Shared};
use crate::upstream::Upstream;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_core::{Clock, KeyFormat, KeyHasher};
use tollgate_store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not load the keys: {0}")]
    Store(#[from] StoreError),
    #[error("could not listen on {addr}: {source}. Is another server using that port? Pick another with --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("this database has not been set up yet: run `tollgate init` first")]
    NotInitialized,
    #[error("could not start the serving threads: {0}")]
    Workers(std::io::Error),
    #[error("could not set up the HTTP client for provider {provider}: {reason}")]
    Client { provider: String, reason: String },
    #[error(transparent)]
    Spool(#[from] crate::background::spool::SpoolError),
    #[error("the Redis URL for shared rate limits cannot be used: {0}")]
    SharedLimits(String),
}

/// The data plane, ready to start.
#[derive(Debug)]
pub struct Gateway {
    pub settings: GatewaySettings,
    pub store: Store,
    pub hasher: KeyHasher,
    pub format: KeyFormat,
    pub clock: Arc<dyn Clock>,
    /// The admin API (`/v1/organization/...`), served beside the data plane when given; it
    /// authenticates its own callers (admin keys).
    pub admin: Option<Router>,
    /// The web console (`/` and `/console/...`), served beside the data plane when given; it
    /// authenticates its own visitors (sessions).
    pub console: Option<Router>,
}

/// A gateway serving requests in the background.
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    keys: Arc<KeyTable>,
    key_lookups: Arc<KeyLookups>,
    limits: Arc<Limits>,
    metering: JoinHandle<()>,
    /// With a spool: how long shutdown waits for the store to take the last usage events.
    metering_grace: Option<std::time::Duration>,
    alerts: JoinHandle<()>,
    alerts_stop: watch::Sender<bool>,
    expiry_looks: Arc<std::sync::atomic::AtomicU64>,
    anomalies: crate::background::anomalies::Observer,
    client_tokens: Arc<crate::background::client_tokens::ClientTokens>,
}

impl Gateway {
    /// Loads the keys, binds the listener and starts serving, following the change log and
    /// flushing last-used times in the background.
    pub async fn start(self) -> Result<RunningGateway, StartError> {
        let keys = Arc::new(KeyTable::load(&self.store).await?);
        let org = self
            .store
            .default_organization()
            .await?
            .map(|o| o.id)
            .ok_or(StartError::NotInitialized)?;
        // What a process that died left in the spool is stored first: budgets read their
        // spend from the store just below.
        let spool = match &self.settings.metering.spool_dir {
            Some(dir) => {
                let (spool, leftover) = Spool::open(dir, self.settings.metering.max_spool_bytes)?;
                let leftover =
                    metering::replay(&self.store, &spool, leftover, self.settings.metering.batch)
                        .await;
                Some((Arc::new(spool), leftover))
            }
            None => None,
        };
        let (limits, alerts) =
            Limits::new(self.settings.default_limits.clone(), self.clock.clone());
        limits.reload(&self.store, &org).await?;
        let shared = match &self.settings.shared_limits {
            Some(shared) => {
                let limits_shared = crate::shared_limits::SharedLimits::new(
                    &shared.url,
                    &shared.prefix,
                    shared.timeout,
                    shared.when_unreachable,
                )
                .map_err(|err| StartError::SharedLimits(err.to_string()))?;
                let limits_shared = Arc::new(limits_shared);
                limits_shared.warm_up().await;
                limits.share_through(limits_shared.clone());
                tracing::info!(prefix = %shared.prefix, "rate limits are shared with every replica through Redis");
                Some(limits_shared)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(self.settings.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.settings.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.settings.listen,
            source,
        })?;
        let upstreams = self
            .settings
            .providers
            .iter()
            .map(|p| {
                Upstream::new(p.clone(), self.settings.workers).map_err(|e| StartError::Client {
                    provider: p.name.clone(),
                    reason: e,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upstreams = Arc::new(upstreams);
        let catalog = Arc::new(Catalog::new(self.settings.routes.clone()));
        catalog.refresh(&upstreams).await;
        let (stop, stop_rx) = watch::channel(false);
        let follower = Arc::new(Follower::new(
            keys.clone(),
            limits.clone(),
            org.clone(),
            self.store.clone(),
        ));
        let last_used = Arc::new(LastUsed::default());
        let metering_grace = spool.as_ref().map(|_| self.settings.shutdown_grace);
        let ledger = Arc::new(crate::ledger::Ledger::new(
            self.store.clone(),
            self.settings.unknown_objects.clone(),
        ));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (usage, metering) = metering::start(
            self.store.clone(),
            self.settings.metering.capacity,
            self.settings.metering.batch,
            self.settings.metering.linger,
            spool,
            Some(ledger.clone()),
            metrics.clone(),
        );
        let background = vec![
            tokio::spawn(
                follower
                    .clone()
                    .run(self.settings.follow_interval, stop_rx.clone()),
            ),
            tokio::spawn(last_used.clone().run(
                self.store.clone(),
                self.settings.last_used_flush,
                stop_rx.clone(),
            )),
            tokio::spawn(catalog.clone().run(
                upstreams.clone(),
                self.settings.model_refresh,
                stop_rx.clone(),
            )),
        ];
        let mut background = background;
        if let Some(shared) = shared {
            background.push(tokio::spawn(shared.keep_heartbeat(stop_rx.clone())));
        }
        let anomalies = match self.settings.anomalies.clone() {
            Some(thresholds) => {
                let (observer, task) = crate::background::anomalies::start(
                    thresholds,
                    self.settings.anomaly_suspend.clone(),
                    keys.clone(),
                    self.store.clone(),
                    org.clone(),
                    self.clock.clone(),
                    self.settings.alerts.clone(),
                    stop_rx.clone(),
                );
                background.push(task);
                observer
            }
            None => Default::default(),
        };
        let expiry_looks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        if let Some(warn_before) = self.settings.key_expiry_warning {
            let alerts = crate::background::expiry_alerts::ExpiryAlerts {
                store: self.store.clone(),
                keys: keys.clone(),
                org: org.clone(),
                clock: self.clock.clone(),
                alerts: self.settings.alerts.clone(),
                warn_before,
                every: self.settings.key_expiry_check,
                looks: expiry_looks.clone(),
            };
            background.push(tokio::spawn(alerts.run(stop_rx.clone())));
        }
        if let Some(keep) = self.settings.usage_retention {
            background.push(tokio::spawn(crate::background::retention::run(
                self.store.clone(),
                self.clock.clone(),
                keep,
                stop_rx.clone(),
            )));
        }
        // Alerts stop last, after the requests that may still raise them have finished.
        let (alerts_stop, alerts_stop_rx) = watch::channel(false);
        let alerts = budget_alerts::start(
            self.store.clone(),
            org,
            self.settings.alerts.clone(),
            self.clock.clone(),
            alerts,
            alerts_stop_rx,
        );
        let grace = self.settings.shutdown_grace;
        let worker_count = self.settings.workers;
        let connections = self.settings.connections;
        let key_lookups = Arc::new(KeyLookups::new(
            follower,
            self.settings.key_lookups_per_second,
        ));
        let body_budget = self
            .settings
            .max_body_bytes_in_flight
            .max(self.settings.max_body_bytes);
        let client_tokens = Arc::new(crate::background::client_tokens::ClientTokens::default());
        let state = AppState(Arc::new(Shared {
            keys: keys.clone(),
            key_lookups: key_lookups.clone(),
            hasher: self.hasher,
            format: self.format,
            started_at: self.clock.now(),
            clock: self.clock,
            last_used,
            settings: Arc::new(self.settings),
            catalog,
            upstreams,
            usage,
            store: self.store.clone(),
            ip_denials: Arc::new(IpDenials::new()),
            limits: limits.clone(),
            body_budget: crate::body_budget::BodyBudget::new(body_budget),
            ledger,
            metrics,
            published_keys: Default::default(),
            anomalies: anomalies.clone(),
            client_tokens: client_tokens.clone(),
            live_origins: Arc::default(),
            connections_open: Arc::default(),
            stopping: stop_rx.clone(),
            sessions: Arc::default(),
        }));
        let app = Dispatch::new(router(state.clone()), self.admin, self.console, state);
        let workers = Workers::start(worker_count).map_err(StartError::Workers)?;
        let server = tokio::spawn(workers::serve(
            listener,
            app,
            workers,
            connections,
            stop_rx,
            grace,
        ));
        tracing::info!(%addr, keys = keys.len(), "gateway listening");
        Ok(RunningGateway {
            addr,
            stop,
            server,
            background,
            keys,
            key_lookups,
            limits,
            metering,
            metering_grace,
            alerts,
            alerts_stop,
            expiry_looks,
            anomalies,
            client_tokens,
        })
    }
}

impl RunningGateway {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The in-memory key table (for tests and diagnostics).
    pub fn keys(&self) -> &Arc<KeyTable> {
        &self.keys
    }

    /// How many times keys new to this server were looked up in the store (for tests and
    /// diagnostics).
    pub fn key_lookups_made(&self) -> u64 {
        self.key_lookups.made()
    }

    /// Store lookups of client tokens new to this server so far.
    pub fn client_token_lookups_made(&self) -> u64 {
        self.client_tokens.lookups_made()
    }

    /// The live rate limits and budgets (for tests and diagnostics).
    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// Requests the suspicious-use detector has judged.
    pub fn anomalies_judged(&self) -> u64 {
        self.anomalies.judged()
    }

    /// How many times keys nearing expiry were looked for.
    pub fn expiry_looks(&self) -> u64 {
        self.expiry_looks.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), then writes
    /// every pending usage event and last-used time before returning.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Bounded by the grace period: connections still open then are dropped.
        let _ = self.server.await;
        for task in self.background {
            let _ = task.await;
        }
        // The writer ends once the last request holding a usage sink has finished (bounded when
        // the events are spooled: see `metering::drain`).
        metering::drain(self.metering, self.metering_grace).await;
        let _ = self.alerts_stop.send(true);
        let _ = self.alerts.await;
    }
}

/// Everything outside `/v1` (the data plane's door, see `dispatch`).
fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/secret-scanning/github",
            axum::routing::post(crate::secret_scanning::github),
        )
        .fallback(unknown_route)
        .with_state(state)
}

/// Liveness, with the gauges an operator watches under load: request-body bytes held in
/// memory (against `max_body_bytes_in_flight`) and usage events spooled but not yet stored
/// (against `[metering] max_spool_bytes`).
async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "body_bytes_held": state.body_budget.held(),
        "usage_spool_bytes": state.usage.spooled_bytes(),
    }))
}

/// How long readiness waits for the database to answer.
const READY_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness, for a load balancer: `200` while this server can take traffic, `503` when it
/// cannot (the database does not answer, or Redis does not and the configuration says to
/// refuse without it). With `redis.when_unreachable = "limit-locally"` a replica whose Redis is
/// away stays ready: it limits with its share. The key table is loaded before the server
/// listens, so a server that answers has it.
async fn ready(State(state): State<AppState>) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    use crate::shared_limits::WhenUnreachable;
    let store = match tokio::time::timeout(READY_STORE_WAIT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(_)) => "unreachable",
        Err(_) => "timeout",
    };
    let (redis, redis_ok) = match state.limits.shared() {
        None => ("off", true),
        Some(shared) if shared.reachable() => ("ok", true),
        Some(shared) => match shared.when_unreachable {
            WhenUnreachable::LimitLocally => ("unreachable: limiting locally", true),
            WhenUnreachable::Refuse => ("unreachable", false),
        },
    };
    let is_ready = store == "ok" && redis_ok;
    let status = if is_ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "status": if is_ready { "ready" } else { "not_ready" },
            "store": store,
            "redis": redis,
            "keys": state.keys.len(),
        })),
    )
}

/// Prometheus metrics (see `metrics`), for callers whose address `metrics.allow_from` holds.
async fn metrics(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    let client = crate::request::auth::client_ip(&state, &headers, peer.ip());
    let allowed = state.settings.metrics.enabled
        && client.is_some_and(|ip| {
            tollgate_core::network::allowed(ip, &state.settings.metrics.allow_from)
        });
    if !allowed {
        // As if there were nothing here: the metrics are not advertised to the world.
        return unknown_route(method, uri).await.into_response();
    }
    let readings = crate::metrics::Readings {
        keys: state.keys.len() as i64,
        body_bytes_held: state.body_budget.held() as i64,
        usage_spool_bytes: state.usage.spooled_bytes() as i64,
        usage_queue_events: state.usage.queued() as i64,
        redis_up: state.limits.shared().map(|shared| shared.reachable()),
        connections_open: state
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed) as i64,
    };
    let mut response = state.metrics.encode(readings).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

async fn unknown_route(method: Method, uri: Uri) -> GatewayError {
    GatewayError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
