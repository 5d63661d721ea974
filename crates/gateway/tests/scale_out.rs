//! Replicas on one PostgreSQL database and one Redis, both really running: a key's request
//! and token rates hold across replicas as on one server, a revocation through one replica
//! reaches the other, every usage event lands once, and Redis going away (and coming back)
//! neither hangs a request nor lifts the limits. Each test writes under its own Redis key
//! prefix and removes it at the end; Redis is `TOLLGATE_TEST_REDIS` (default
//! redis://127.0.0.1:6379).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use reqwest::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TestApp;
use tollgate_control::{KeyOwnerRequest, NewKey};
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::Permissions;
use tollgate_gateway::shared_limits::WhenUnreachable;
use tollgate_gateway::SharedLimitsSettings;

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix of this test's own, removed from Redis when dropped.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        let mut bytes = [0u8; 8];
        tollgate_core::ids::fill_random(&mut bytes);
        let tag: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Prefix(format!("tollgate-test:{tag}:"))
    }

    /// Shared limits under this prefix. Counting tests give Redis a generous wait (a loaded
    /// test machine must not fall back to local shares); outage tests a short one.
    fn settings(&self, url: &str, when_unreachable: WhenUnreachable) -> SharedLimitsSettings {
        let timeout = match url == redis_url() {
            true => Duration::from_secs(2),
            false => Duration::from_millis(200),
        };
        SharedLimitsSettings {
            url: url.to_owned(),
            prefix: self.0.clone(),
            timeout,
            when_unreachable,
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.0);
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        if let Ok(mut conn) = client.get_connection() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}

/// Fails loudly when Redis is not there: these tests never skip.
async fn require_redis() {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis at {} cannot be reached ({e}); these tests need it running (set TOLLGATE_TEST_REDIS)", redis_url()));
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// Two gateways on one scratch PostgreSQL database sharing limits as `shared` says, and their
/// base URLs.
async fn two_replicas(
    shared: &SharedLimitsSettings,
) -> (TestApp, tollgate_gateway::RunningGateway, [String; 2]) {
    let app = TestApp::spawn_on_postgres(|s| s.shared_limits = Some(shared.clone())).await;
    let b = app
        .replica(|s| s.shared_limits = Some(shared.clone()))
        .await;
    let bases = [app.base.clone(), format!("http://{}", b.addr())];
    (app, b, bases)
}

async fn key_with(app: &TestApp, limits: RateLimits) -> String {
    key_with_budget(app, limits, None).await
}

async fn key_with_budget(
    app: &TestApp,
    limits: RateLimits,
    budget: Option<tollgate_control::BudgetRequest>,
) -> String {
    app.control
        .create_key(
            &TestApp::actor(),
            NewKey {
                name: "shared".into(),
                owner: KeyOwnerRequest::Project(None),
                permissions: Permissions::All,
                expires_in: None,
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits,
                budget,
            },
        )
        .await
        .unwrap()
        .secret
        .expose()
        .to_owned()
}

async fn chat(http: &reqwest::Client, base: &str, key: &str, max_tokens: u64) -> (StatusCode, u64) {
    let reply = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "gpt-4o-mini",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Say hello"}],
        }))
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: serde_json::Value = reply.json().await.unwrap_or_default();
    (status, body["usage"]["total_tokens"].as_u64().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_rate_holds_across_replicas_and_every_event_lands_once() {
    require_redis().await;
    let prefix = Prefix::new();
    let shared = prefix.settings(&redis_url(), WhenUnreachable::LimitLocally);
    let (app, b, bases) = two_replicas(&shared).await;
    let key = key_with(
        &app,
        RateLimits {
            rpm: Some(20),
            ..RateLimits::default()
        },
    )
    .await;

    // Twice the limit, split over both replicas, half of it at once.
    let http = reqwest::Client::new();
    let mut admitted = 0;
    let mut refused = 0;
    for round in 0..2 {
        let calls = (0..20).map(|i| {
            let (http, base, key) = (http.clone(), bases[(i + round) % 2].clone(), key.clone());
            async move { chat(&http, &base, &key, 16).await.0 }
        });
        for status in futures_util::future::join_all(calls).await {
            match status {
                StatusCode::OK => admitted += 1,
                StatusCode::TOO_MANY_REQUESTS => refused += 1,
                other => panic!("unexpected {other}"),
            }
        }
    }
    // 20 a minute: 20 at once, and one more refilled every 3 s.
    assert!(
        (19..=21).contains(&admitted),
        "admitted {admitted} of 40 (refused {refused})"
    );

    // Both replicas' metering writers put every event in the one database, once.
    let events = app.usage_events(admitted).await;
    assert_eq!(events.len(), admitted);
    let mut ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), admitted, "each event once");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rate_holds_across_replicas() {
    require_redis().await;
    let prefix = Prefix::new();
    let shared = prefix.settings(&redis_url(), WhenUnreachable::LimitLocally);
    let (app, b, bases) = two_replicas(&shared).await;
    let key = key_with(
        &app,
        RateLimits {
            tpm: Some(1_000),
            ..RateLimits::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let mut used = 0;
    let mut admitted = 0;
    for i in 0..40 {
        let (status, tokens) = chat(&http, &bases[i % 2], &key, 50).await;
        if status == StatusCode::OK {
            admitted += 1;
            used += tokens;
        }
    }
    // Each request reserves its prompt and its 50 output tokens and settles to what it used;
    // both replicas together stay within the minute's 1,000 (plus at most one request).
    assert!(
        used <= 1_000 + 100,
        "used {used} tokens in {admitted} requests"
    );
    assert!(
        used >= 600,
        "used only {used} tokens in {admitted} requests"
    );
    assert!(admitted < 40, "the limit refused nothing");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_holds_across_replicas_and_slots_come_back() {
    require_redis().await;
    let prefix = Prefix::new();
    let shared = prefix.settings(&redis_url(), WhenUnreachable::LimitLocally);
    let (app, b, bases) = two_replicas(&shared).await;
    let key = key_with(
        &app,
        RateLimits {
            concurrent: Some(2),
            ..RateLimits::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    // Two requests the provider holds (until the replicas' 2 s provider timeout), one on each
    // replica: each replica alone would still have a slot free.
    let held: Vec<_> = bases
        .iter()
        .map(|base| {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .header("x-mock-fail", "slow")
                    .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hold"}]}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let asked = Instant::now();
    while app.mock.requests().len() < 2 {
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "the held requests never reached the provider"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for base in &bases {
        let reply = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "third"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS, "{base}");
        assert_eq!(reply.headers()["retry-after"], "1");
        let body: serde_json::Value = reply.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("on concurrent requests: Limit 2, Used 2, Requested 1"),
            "{message}"
        );
    }
    assert_eq!(
        app.mock.requests().len(),
        2,
        "a refused request reached the provider"
    );
    assert_eq!(
        app.gateway
            .as_ref()
            .unwrap()
            .limits()
            .shared()
            .unwrap()
            .leases(),
        1
    );
    assert_eq!(b.limits().shared().unwrap().leases(), 1);

    // The held requests end (the provider timed out): their slots come back on both replicas.
    for request in held {
        assert_eq!(request.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    }
    let ended = Instant::now();
    for base in &bases {
        loop {
            let (status, _) = chat(&http, base, &key, 4).await;
            if status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert!(
                ended.elapsed() < Duration::from_secs(2),
                "the slots were never given back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The last requests' own leases are given back by a task of their own as their answers
    // end (the client may read the answer a moment before): both replicas get to none.
    let a = app.gateway.as_ref().unwrap().limits().shared().unwrap();
    let b_shared = b.limits().shared().unwrap();
    while a.leases() + b_shared.leases() > 0 {
        assert!(
            ended.elapsed() < Duration::from_secs(3),
            "leases still held: {} and {}",
            a.leases(),
            b_shared.leases()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Nothing is left in Redis either.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let sets: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}cc:*", prefix.0))
        .query_async(&mut conn)
        .await
        .unwrap();
    // Released after the local count drops (the release is in flight a moment longer).
    for set in sets {
        loop {
            let held: u64 = redis::cmd("ZCARD")
                .arg(&set)
                .query_async(&mut conn)
                .await
                .unwrap();
            if held == 0 {
                break;
            }
            assert!(
                ended.elapsed() < Duration::from_secs(3),
                "{set} still holds {held} leases"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_replica_is_refused_by_the_other_within_a_second() {
    let app = TestApp::spawn_on_postgres(|_| {}).await;
    let b = app.replica(|_| {}).await;
    let b_base = format!("http://{}", b.addr());
    let created = app.project_key().await;
    let key = created.secret.expose().to_owned();
    let http = reqwest::Client::new();
    assert_eq!(chat(&http, &b_base, &key, 8).await.0, StatusCode::OK);
    app.control
        .revoke_key(&TestApp::actor(), created.record.id.as_str())
        .await
        .unwrap();
    let revoked = Instant::now();
    loop {
        let (status, _) = chat(&http, &b_base, &key, 8).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "replica B still takes the key a second after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.shutdown().await;
}

/// A TCP relay to Redis that can be cut (every connection closed, new ones refused) and
/// restored: Redis going away and coming back, as replicas see it.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    /// A relay to Redis.
    async fn start() -> Relay {
        let target = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        Relay::to(target).await
    }

    /// A relay to `target` (host:port).
    async fn to(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (up_, cut_) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up_.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let mut cuts = cut_.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Relay { addr, up, cut }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_replica_limits_with_its_share_and_nothing_hangs() {
    require_redis().await;
    let relay = Relay::start().await;
    let prefix = Prefix::new();
    let shared = prefix.settings(&relay.url(), WhenUnreachable::LimitLocally);
    let (app, b, [_, b_base]) = two_replicas(&shared).await;
    let key = key_with(
        &app,
        RateLimits {
            rpm: Some(20),
            ..RateLimits::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    // Both replicas are seen alive (their heartbeats) before Redis goes away.
    let limits = app.gateway.as_ref().unwrap().limits();
    let seen = Instant::now();
    while limits.shared().unwrap().replicas() < 2 {
        assert!(
            seen.elapsed() < Duration::from_secs(3),
            "replicas never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chat(&http, &app.base, &key, 8).await.0, StatusCode::OK);

    relay.cut();
    let mut admitted = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let (status, _) = chat(&http, &b_base, &key, 8).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited {:?} on Redis",
            started.elapsed()
        );
        if status == StatusCode::OK {
            admitted += 1;
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        }
    }
    // Replica B alone, with its share: 20 / 2 replicas.
    assert_eq!(
        admitted, 10,
        "replica B admitted {admitted} with Redis away"
    );
    assert!(!limits.shared().unwrap().reachable() || !b.limits().shared().unwrap().reachable());

    // Redis back: the shared counter decides again (it already holds the one request made
    // before the cut), noticed within the heartbeat's second.
    relay.restore();
    let back = Instant::now();
    while !b.limits().shared().unwrap().reachable() {
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "Redis never noticed back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = chat(&http, &b_base, &key, 8).await;
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_fail_closed_replica_answers_503_at_once() {
    let relay = Relay::start().await;
    relay.cut();
    let prefix = Prefix::new();
    let shared = prefix.settings(&relay.url(), WhenUnreachable::Refuse);
    let app = TestApp::spawn_on_postgres(|s| s.shared_limits = Some(shared.clone())).await;
    let key = key_with(
        &app,
        RateLimits {
            rpm: Some(100),
            ..RateLimits::default()
        },
    )
    .await;
    let started = Instant::now();
    let reply = app
        .post(
            "/v1/chat/completions",
            &key,
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            &[],
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    reply.assert_error(503, None, "rate limits");
    assert_eq!(reply.headers["retry-after"], "1");
    // Operators see why: Redis down, and the refusal it caused.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "tollgate_redis_up 0"),
        "{metrics}"
    );
    assert!(metrics
        .lines()
        .any(|l| l == r#"tollgate_limit_refusals_total{reason="shared_state_unavailable"} 1"#));
    // A key without rate limits never needs Redis.
    let free = app.project_key().await;
    let reply = app
        .post(
            "/v1/chat/completions",
            free.secret.expose(),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_stops_fifty_requests_split_across_replicas_within_one_request_s_cost() {
    require_redis().await;
    let prefix = Prefix::new();
    let shared = prefix.settings(&redis_url(), WhenUnreachable::LimitLocally);
    let (app, b, bases) = two_replicas(&shared).await;
    let limit = 300; // micro-USD: about ten requests of gpt-4o-mini with 50 output tokens
    let key = key_with_budget(
        &app,
        RateLimits::default(),
        Some(tollgate_control::BudgetRequest {
            limit: tollgate_core::MicroUsd(limit),
            period: tollgate_core::budget::BudgetPeriod::Day,
            utc_offset_secs: 0,
            alerts_permille: Vec::new(),
        }),
    )
    .await;
    // Both replicas know the budget (their followers reload limits) before the rush.
    for gateway in [app.gateway.as_ref().unwrap().limits(), b.limits()] {
        let seen = Instant::now();
        while gateway.reloads() < 2 {
            assert!(
                seen.elapsed() < Duration::from_secs(3),
                "the budget never loaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let http = reqwest::Client::new();
    let calls = (0..50).map(|i| {
        let (http, base, key) = (http.clone(), bases[i % 2].clone(), key.clone());
        async move { chat(&http, &base, &key, 50).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let events = app.usage_events(admitted).await;
    let spent: i64 = events.iter().map(|e| e.cost.0).sum();
    let most = events.iter().map(|e| e.cost.0).max().unwrap_or(0);
    // One request may take spend past the limit (it was admitted with something left), and
    // no more: a request's most possible cost here is under 40 micro-USD.
    assert!(
        spent <= limit + 40,
        "spent {spent} of {limit} in {admitted} requests (most {most})"
    );
    // Requests are held at their most possible cost while running, so a rush admits at least
    // the limit over that.
    assert!(
        admitted >= (limit / 40) as usize,
        "admitted only {admitted} (spent {spent})"
    );
    assert!(admitted < 50, "the budget stopped nothing");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_postgres_serves_warm_keys_spools_usage_and_is_not_ready() {
    let app = TestApp::spawn_on_postgres(|_| {}).await;
    let url = app._scratch.as_ref().unwrap().url().to_owned();
    let server = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(host, _)| host.to_owned())
        .unwrap();
    let relay = Relay::to(server.clone()).await;
    let through_relay = url.replacen(&server, &relay.addr.to_string(), 1);
    let location = tollgate_store::DatabaseLocation::parse(&through_relay).unwrap();
    let spool = tempfile::tempdir().unwrap();
    let b = app
        .replica_at(&location, |s| {
            s.metering.spool_dir = Some(spool.path().to_owned());
        })
        .await;
    let b_base = format!("http://{}", b.addr());
    let http = reqwest::Client::new();
    let ready = |http: reqwest::Client, base: String| async move {
        let reply = http.get(format!("{base}/readyz")).send().await.unwrap();
        let status = reply.status();
        (status, reply.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = ready(http.clone(), b_base.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["store"], "ok");
    assert_eq!(body["redis"], "off");

    let key = app.project_key().await.secret.expose().to_owned();
    assert_eq!(
        chat(&http, &b_base, &key, 8).await.0,
        StatusCode::OK,
        "the key warms up on B"
    );

    relay.cut();
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(chat(&http, &b_base, &key, 8).await.0, StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    let (status, body) = ready(http.clone(), b_base.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not_ready");
    // A key B has never seen cannot be checked: a clear, retryable 503, without hanging.
    let unknown = app.project_key().await.secret.expose().to_owned();
    let started = Instant::now();
    let reply = http
        .post(format!("{b_base}/v1/chat/completions"))
        .bearer_auth(&unknown)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let body: serde_json::Value = reply.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be checked"),
        "{body}"
    );

    relay.restore();
    // The six requests' events, spooled while the database was away, land once (the writer
    // retries with a growing pause, up to 5 s).
    let org = app.control.organization().await.unwrap();
    let back = Instant::now();
    loop {
        let events = app.store.recent_usage(&org.id, 100).await.unwrap();
        if events.len() >= 6 {
            assert_eq!(events.len(), 6, "each event once");
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "only {} events landed",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = Instant::now();
    loop {
        let (status, _) = ready(http.clone(), b_base.clone()).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "B never ready again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.shutdown().await;
    assert_eq!(
        app.usage_events(6).await.len(),
        6,
        "still once after B stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_s_concurrency_leases_lapse_and_stop_counting() {
    use tollgate_gateway::shared_limits::{SharedLimits, SharedSlots, LEASE_LASTS};
    require_redis().await;
    let prefix = Prefix::new();
    let shared = SharedLimits::new(
        &redis_url(),
        &prefix.0,
        Duration::from_secs(2),
        WhenUnreachable::Refuse,
    )
    .unwrap();
    let set = SharedSlots {
        name: "cc:key:k1:*:concurrent".into(),
        limit: 2,
    };
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let full = format!("{}{}", prefix.0, set.name);
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    // A replica that died holding both slots: one lease lapsed a moment ago, one lapses later.
    let _: () = redis::cmd("ZADD")
        .arg(&full)
        .arg(now_ms - 1)
        .arg("dead:1")
        .arg(now_ms + 60_000)
        .arg("dead:2")
        .query_async(&mut conn)
        .await
        .unwrap();

    let first = shared
        .admit(&[], std::slice::from_ref(&set), &[])
        .await
        .unwrap();
    assert!(first.admitted, "the lapsed lease still counted");
    assert_eq!(first.in_use, vec![1]);
    let lease = first.lease.expect("a lease");
    // Its lease lapses LEASE_LASTS from now unless renewed.
    let member = lease_member(&mut conn, &full).await;
    let lapses = |conn: &mut redis::aio::MultiplexedConnection| {
        let (full, member) = (full.clone(), member.clone());
        let mut conn = conn.clone();
        async move {
            let score: f64 = redis::cmd("ZSCORE")
                .arg(&full)
                .arg(&member)
                .query_async(&mut conn)
                .await
                .unwrap();
            score as u64
        }
    };
    let lasts = LEASE_LASTS.as_millis() as u64;
    let ahead = lapses(&mut conn).await - now_ms;
    assert!(
        (lasts - 1_000..=lasts + 1_000).contains(&ahead),
        "lease lapses {ahead} ms ahead"
    );
    // Renewal pushes a lease about to lapse a whole LEASE_LASTS ahead again.
    let _: () = redis::cmd("ZADD")
        .arg(&full)
        .arg("XX")
        .arg(now_ms + 10)
        .arg(&member)
        .query_async(&mut conn)
        .await
        .unwrap();
    shared.renew_leases().await;
    let ahead = lapses(&mut conn).await - now_ms;
    assert!(
        (lasts - 1_000..=lasts + 1_000).contains(&ahead),
        "renewed lease lapses {ahead} ms ahead"
    );
    let second = shared
        .admit(&[], std::slice::from_ref(&set), &[])
        .await
        .unwrap();
    assert!(!second.admitted);
    assert_eq!(second.in_use, vec![2]);
    assert!(second.lease.is_none());
    assert_eq!(shared.leases(), 1);

    shared.release(vec![lease]).await.unwrap();
    assert_eq!(shared.leases(), 0);
    let third = shared
        .admit(&[], std::slice::from_ref(&set), &[])
        .await
        .unwrap();
    assert!(third.admitted);
    assert_eq!(
        third.in_use,
        vec![1],
        "only the dead replica's live lease counts"
    );
}

/// The one lease in `set` that is not the dead replica's.
async fn lease_member(conn: &mut redis::aio::MultiplexedConnection, set: &str) -> String {
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(set)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap();
    members
        .into_iter()
        .find(|m| !m.starts_with("dead:"))
        .expect("this replica's lease")
}
