//! Rate limits and budgets over HTTP: each limit type at each level, OpenAI's headers and 429
//! bodies, token reservations settling to actual use, the budget hard stop under concurrency,
//! and budget alerts delivered once per threshold to a signed webhook.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Reply, TestApp, START};
use tollgate_control::{BudgetRequest, HolderRequest, KeyOwnerRequest, NewKey};
use tollgate_core::budget::BudgetPeriod;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::pricing::Price;
use tollgate_core::{MicroUsd, Permissions};

fn chat(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

/// A short chat request: five tokens at most.
async fn small_chat(app: &TestApp, secret: &str) -> Reply {
    app.post("/v1/chat/completions", secret, chat("gpt-4o-mini", 5), &[])
        .await
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

fn assert_rate_limited(reply: &Reply, kind: &str, message: &str) {
    assert_eq!(reply.status.as_u16(), 429, "{}", reply.body);
    let error = &reply.body["error"];
    assert_eq!(error["type"], kind, "{}", reply.body);
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(error["param"].is_null());
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains(message),
        "{text:?} should contain {message:?}"
    );
}

/// A project key in the default project with its own limits.
fn key_request(name: &str, limits: RateLimits) -> NewKey {
    NewKey {
        name: name.into(),
        owner: KeyOwnerRequest::Project(None),
        permissions: Permissions::All,
        expires_in: None,
        allowed_ips: Default::default(),
        allowed_models: Default::default(),
        limits,
        budget: None,
    }
}

async fn limited_key(
    app: &TestApp,
    name: &str,
    limits: RateLimits,
) -> tollgate_control::CreatedKey {
    let created = app
        .limits_change(
            app.control
                .create_key(&TestApp::actor(), key_request(name, limits)),
        )
        .await
        .unwrap();
    created
}

#[tokio::test]
async fn a_key_s_requests_per_minute_get_openai_s_headers_429_and_retry_after() {
    let app = TestApp::spawn().await;
    let key = limited_key(
        &app,
        "rpm",
        RateLimits {
            rpm: Some(2),
            ..RateLimits::default()
        },
    )
    .await;
    let secret = key.secret.expose();

    let first = small_chat(&app, secret).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(header(&first, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&first, "x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(header(&first, "x-ratelimit-reset-requests"), Some("30s"));
    assert_eq!(
        header(&first, "x-ratelimit-limit-tokens"),
        None,
        "no token limit is set"
    );

    let second = small_chat(&app, secret).await;
    assert_eq!(second.status, 200);
    assert_eq!(header(&second, "x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(header(&second, "x-ratelimit-reset-requests"), Some("1m0s"));

    let refused = small_chat(&app, secret).await;
    assert_rate_limited(&refused, "requests", "");
    assert_eq!(
        refused.body["error"]["message"],
        format!(
            "Rate limit reached for gpt-4o-mini in API key {} on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in 30s.",
            key.record.id
        )
    );
    assert_eq!(header(&refused, "retry-after"), Some("30"));
    assert_eq!(header(&refused, "retry-after-ms"), Some("30000"));
    assert_eq!(
        header(&refused, "x-ratelimit-remaining-requests"),
        Some("0")
    );
    assert_eq!(
        header(&refused, "openai-project"),
        Some(app.project_id.as_str()),
        "errors after authentication name the project, as OpenAI's do"
    );
    assert_eq!(
        header(&refused, "openai-organization"),
        Some(app.org_id.as_str())
    );
    assert_eq!(
        app.mock.requests().len(),
        2,
        "a refused request never reaches the provider"
    );

    // One request refills every 30 s.
    app.clock.advance(29);
    let early = small_chat(&app, secret).await;
    assert_rate_limited(&early, "requests", "Please try again in 1s.");
    app.clock.advance(1);
    let later = small_chat(&app, secret).await;
    assert_eq!(later.status, 200, "{}", later.body);

    // Requests that name no model count against a limit on every model, with the same headers.
    app.clock.advance(60);
    let files = app.get("/v1/files", Some(secret), &[]).await;
    assert_eq!(header(&files, "x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(header(&files, "x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(
        app.usage_events(4).await.len(),
        4,
        "refused requests are not metered"
    );
}

#[tokio::test]
async fn token_limits_reserve_the_estimate_and_settle_to_what_was_used() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    app.limits_change(app.control.set_limits(
        &TestApp::actor(),
        &HolderRequest::Project(app.project_id.clone()),
        "*",
        RateLimits {
            tpm: Some(300),
            ..RateLimits::default()
        },
    ))
    .await
    .unwrap();

    let a = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini", 200),
            &[],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(header(&a, "x-ratelimit-limit-tokens"), Some("300"));
    let estimate = 300
        - header(&a, "x-ratelimit-remaining-tokens")
            .unwrap()
            .parse::<u64>()
            .unwrap();
    assert!(estimate > 200, "prompt tokens plus max_tokens: {estimate}");
    let used_a = a.body["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used_a < estimate, "the reply is shorter than max_tokens");

    // Without settlement only 300 - estimate would be left and B (the same request) would not fit.
    let b = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini", 200),
            &[],
        )
        .await;
    assert_eq!(b.status, 200, "{}", b.body);
    let remaining_b: u64 = header(&b, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        remaining_b,
        300 - used_a - estimate,
        "A settled to its real use, B holds its estimate"
    );

    // A request bigger than the whole limit: no wait helps, and the SDKs are told not to retry.
    let huge = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini", 1_000),
            &[],
        )
        .await;
    assert_rate_limited(
        &huge,
        "tokens",
        &format!(
            "Request too large for gpt-4o-mini in project {} on tokens per min (TPM): Limit 300, Requested",
            app.project_id
        ),
    );
    assert!(huge.body["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("The input or output tokens must be reduced in order to run successfully."));
    assert_eq!(header(&huge, "retry-after"), None);
    assert_eq!(header(&huge, "x-should-retry"), Some("false"));

    // A request that fits the limit but not what is left now: told how long to wait.
    let wait = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini", 250),
            &[],
        )
        .await;
    assert_rate_limited(&wait, "tokens", "Please try again in");
    assert!(header(&wait, "retry-after").is_some());
    let left: u64 = header(&wait, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    let used_b = b.body["usage"]["total_tokens"].as_u64().unwrap();
    assert_eq!(
        left,
        300 - used_a - used_b,
        "a refused request's headers show what is left (both settled), nothing charged"
    );
    assert_eq!(app.mock.requests().len(), 2);
}

#[tokio::test]
async fn an_organization_limit_on_a_pattern_counts_only_the_models_it_matches() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    app.limits_change(app.control.set_limits(
        &TestApp::actor(),
        &HolderRequest::Organization,
        "gpt-4o*",
        RateLimits {
            rpd: Some(1),
            ..RateLimits::default()
        },
    ))
    .await
    .unwrap();

    let mini = small_chat(&app, secret).await;
    assert_eq!(mini.status, 200);
    assert_eq!(header(&mini, "x-ratelimit-limit-requests"), Some("1"));
    let big = app
        .post("/v1/chat/completions", secret, chat("gpt-4o", 5), &[])
        .await;
    assert_rate_limited(
        &big,
        "requests",
        &format!("Rate limit reached for gpt-4o in organization {} on requests per day (RPD): Limit 1, Used 1, Requested 1. Please try again in 24h0m0s.", app.org_id),
    );
    assert_eq!(header(&big, "retry-after"), Some("86400"));
    let other = app
        .post("/v1/chat/completions", secret, chat("o4-mini", 5), &[])
        .await;
    assert_eq!(other.status, 200, "o4-mini is not limited");
    assert_eq!(header(&other, "x-ratelimit-limit-requests"), None);

    // Removing the rule lifts it on the running server.
    app.limits_change(app.control.remove_limits(
        &TestApp::actor(),
        &HolderRequest::Organization,
        "gpt-4o*",
    ))
    .await
    .unwrap();
    let again = app
        .post("/v1/chat/completions", secret, chat("gpt-4o", 5), &[])
        .await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn every_level_applies_and_the_tightest_decides() {
    let app = TestApp::spawn().await;
    let actor = TestApp::actor();
    let rpm = |n| RateLimits {
        rpm: Some(n),
        ..RateLimits::default()
    };
    app.limits_change(
        app.control
            .set_limits(&actor, &HolderRequest::Organization, "*", rpm(100)),
    )
    .await
    .unwrap();
    app.limits_change(app.control.set_limits(
        &actor,
        &HolderRequest::Project(app.project_id.clone()),
        "*",
        rpm(5),
    ))
    .await
    .unwrap();
    let one = limited_key(&app, "one", rpm(3)).await;
    let two = app.project_key().await;

    for remaining in ["2", "1", "0"] {
        let ok = small_chat(&app, one.secret.expose()).await;
        assert_eq!(ok.status, 200);
        assert_eq!(
            header(&ok, "x-ratelimit-limit-requests"),
            Some("3"),
            "the key's limit is the tightest"
        );
        assert_eq!(
            header(&ok, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
    }
    let refused = small_chat(&app, one.secret.expose()).await;
    assert_rate_limited(
        &refused,
        "requests",
        &format!("in API key {}", one.record.id),
    );

    // The other key shares the project's 5: two are left.
    for remaining in ["1", "0"] {
        let ok = small_chat(&app, two.secret.expose()).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(header(&ok, "x-ratelimit-limit-requests"), Some("5"));
        assert_eq!(
            header(&ok, "x-ratelimit-remaining-requests"),
            Some(remaining)
        );
    }
    let refused = small_chat(&app, two.secret.expose()).await;
    assert_rate_limited(
        &refused,
        "requests",
        &format!("in project {}", app.project_id),
    );
    assert_eq!(app.mock.requests().len(), 5);
}

#[tokio::test]
async fn concurrent_requests_are_capped_while_a_stream_is_open() {
    let app = TestApp::spawn().await;
    let key = limited_key(
        &app,
        "one at a time",
        RateLimits {
            concurrent: Some(1),
            ..RateLimits::default()
        },
    )
    .await;
    let secret = key.secret.expose();
    let mut body = chat("gpt-4o-mini", 100);
    body["stream"] = json!(true);
    let open = app.post_raw("/v1/chat/completions", secret, &body).await;
    assert_eq!(open.status(), 200);
    let mut stream = open.bytes_stream();
    assert!(stream.next().await.is_some(), "the stream has started");

    let second = small_chat(&app, secret).await;
    assert_rate_limited(
        &second,
        "requests",
        "on concurrent requests: Limit 1, Used 1, Requested 1",
    );
    assert_eq!(header(&second, "retry-after"), Some("1"));

    while stream.next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let third = small_chat(&app, secret).await;
        if third.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never given back: {}",
            third.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Embeddings at a cent a token: a request's maximum cost is exactly its cost, so the test can
/// reason in whole requests.
async fn expensive_embeddings(
    adjust: impl FnOnce(&mut tollgate_gateway::GatewaySettings),
) -> TestApp {
    TestApp::spawn_with(|settings| {
        settings.pricing.set(
            "text-embedding-3-small",
            Price {
                input: 10_000_000_000,
                cached_input: 10_000_000_000,
                output: 0,
            },
        );
        adjust(settings);
    })
    .await
}

/// 20 tokens: $0.20 at a cent a token.
const TWENTY_TOKENS: &str = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";

fn embedding() -> Value {
    json!({"model": "text-embedding-3-small", "input": TWENTY_TOKENS})
}

#[tokio::test]
async fn fifty_concurrent_requests_cannot_overspend_a_nearly_exhausted_budget() {
    let app = expensive_embeddings(|_| {}).await;
    let key = app.project_key().await;
    let secret = key.secret.expose().to_owned();
    app.limits_change(app.control.set_budget(
        &TestApp::actor(),
        &HolderRequest::Key(key.record.id.to_string()),
        BudgetRequest {
            limit: MicroUsd(900_000),
            period: BudgetPeriod::Month,
            utc_offset_secs: 0,
            alerts_permille: vec![],
        },
    ))
    .await
    .unwrap();
    for _ in 0..4 {
        let ok = app.post("/v1/embeddings", &secret, embedding(), &[]).await;
        assert_eq!(ok.status, 200, "{}", ok.body);
    }
    let events = app.usage_events(4).await;
    let cost = events[0].cost;
    assert_eq!(cost, MicroUsd(200_000), "20 tokens at a cent each");

    // $0.80 of $0.90 spent; 50 requests of $0.20 each race for the last $0.10.
    let app = Arc::new(app);
    let racers: Vec<_> = (0..50)
        .map(|_| {
            let (app, secret) = (app.clone(), secret.clone());
            tokio::spawn(async move { app.post("/v1/embeddings", &secret, embedding(), &[]).await })
        })
        .collect();
    let mut admitted = 0;
    for racer in racers {
        let reply = racer.await.unwrap();
        if reply.status == 200 {
            admitted += 1;
            continue;
        }
        assert_eq!(reply.status.as_u16(), 429, "{}", reply.body);
        assert_eq!(reply.body["error"]["type"], "insufficient_quota");
        assert_eq!(reply.body["error"]["code"], "key_spend_limit_exceeded");
        assert!(reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("monthly spend limit of $0.90"));
        assert_eq!(header(&reply, "retry-after"), None, "waiting does not help");
        assert_eq!(header(&reply, "x-should-retry"), Some("false"));
    }
    assert_eq!(admitted, 1, "only one request fits while anything is left");
    let events = app.usage_events(5).await;
    let spent: i64 = events.iter().map(|e| e.cost.0).sum();
    assert!(
        spent <= 900_000 + cost.0,
        "spent {spent} is more than one request past the limit"
    );
    let refused = app.post("/v1/embeddings", &secret, embedding(), &[]).await;
    assert_eq!(refused.status.as_u16(), 429);
    assert_eq!(app.mock.requests().len(), 5);
}

/// A local webhook receiver: fails the first delivery it gets with 500, then records the rest.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    attempts: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let receiver = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let receiver = receiver.clone();
                async move {
                    let first = {
                        let mut attempts = receiver.attempts.lock().unwrap();
                        *attempts += 1;
                        *attempts == 1
                    };
                    if first {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    receiver.received.lock().unwrap().push((headers, body));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    async fn wait_for(&self, count: usize) -> Vec<(axum::http::HeaderMap, Value)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let received = self.received.lock().unwrap().clone();
            if received.len() >= count {
                return received
                    .into_iter()
                    .map(|(h, b)| (h, serde_json::from_str(&b).unwrap()))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} alerts arrived",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const HOOK_SECRET: &str = "whsec_test_0123456789abcdef";

#[tokio::test]
async fn budget_alerts_reach_a_signed_webhook_once_per_threshold() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let raw_bodies = receiver.received.clone();
    let app = expensive_embeddings(|settings| {
        settings.alerts = tollgate_gateway::AlertSettings {
            webhooks: vec![tollgate_gateway::WebhookSettings {
                url,
                secret: tollgate_gateway::WebhookSecret::new(HOOK_SECRET.into()),
            }],
            attempts: 5,
            first_retry: Duration::from_millis(50),
            timeout: Duration::from_secs(2),
        };
    })
    .await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    let budget = app
        .limits_change(app.control.set_budget(
            &TestApp::actor(),
            &HolderRequest::Project(app.project_id.clone()),
            BudgetRequest {
                limit: MicroUsd(1_000_000),
                period: BudgetPeriod::Month,
                utc_offset_secs: 0,
                alerts_permille: vec![500, 800, 1_000],
            },
        ))
        .await
        .unwrap();

    // $0.20 a request: 50% after the third, 80% and 100% after the fifth.
    for _ in 0..3 {
        assert_eq!(
            app.post("/v1/embeddings", secret, embedding(), &[])
                .await
                .status,
            200
        );
    }
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].1["data"]["threshold_percent"], 50.0);
    for _ in 0..2 {
        assert_eq!(
            app.post("/v1/embeddings", secret, embedding(), &[])
                .await
                .status,
            200
        );
    }
    let refused = app.post("/v1/embeddings", secret, embedding(), &[]).await;
    assert_eq!(
        refused.body["error"]["code"],
        "project_spend_limit_exceeded"
    );
    let alerts = receiver.wait_for(3).await;

    // Setting the budget again (a reload offers every crossed threshold again) sends nothing new.
    app.limits_change(app.control.set_budget(
        &TestApp::actor(),
        &HolderRequest::Project(app.project_id.clone()),
        BudgetRequest {
            limit: MicroUsd(1_000_000),
            period: BudgetPeriod::Month,
            utc_offset_secs: 0,
            alerts_permille: vec![500, 800, 1_000],
        },
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        raw_bodies.lock().unwrap().len(),
        3,
        "each threshold is delivered once"
    );

    let mut thresholds: Vec<f64> = alerts
        .iter()
        .map(|(_, b)| b["data"]["threshold_percent"].as_f64().unwrap())
        .collect();
    thresholds.sort_by(f64::total_cmp);
    assert_eq!(thresholds, [50.0, 80.0, 100.0]);
    let bodies = raw_bodies.lock().unwrap().clone();
    for ((headers, event), (_, raw)) in alerts.iter().zip(&bodies) {
        assert_eq!(event["type"], "budget.threshold_reached");
        assert_eq!(event["data"]["budget_id"], budget.id);
        assert_eq!(event["data"]["level"], "project");
        assert_eq!(event["data"]["holder_id"], app.project_id.as_str());
        assert_eq!(event["data"]["limit_usd"], "$1.00");
        assert_eq!(event["data"]["period_start"], "2027-01-01T00:00:00Z");
        let signature = headers["tollgate-signature"].to_str().unwrap();
        assert!(tollgate_core::signature::verify(
            HOOK_SECRET.as_bytes(),
            signature,
            raw.as_bytes(),
            START.seconds(),
            300
        ));
        assert!(!tollgate_core::signature::verify(
            b"wrong secret 0123456789",
            signature,
            raw.as_bytes(),
            START.seconds(),
            300
        ));
        assert_eq!(
            headers["tollgate-event-id"].to_str().unwrap(),
            event["id"].as_str().unwrap()
        );
    }
    // The first delivery failed with 500 and was retried with the same event id.
    assert_eq!(alerts[0].0["tollgate-delivery-attempt"], "2");
    assert_eq!(*receiver.attempts.lock().unwrap(), 4);

    let audit = app.control.audit(Some(&app.project_id), 50).await.unwrap();
    let fired = audit
        .iter()
        .filter(|e| e.event_type == "budget.threshold_reached")
        .count();
    assert_eq!(fired, 3, "every alert is in the audit log");
}

#[tokio::test]
async fn every_limit_type_binds_at_every_level() {
    use tollgate_core::limit_rules::Metric;
    for level in ["organization", "project", "key"] {
        for metric in Metric::ALL {
            let app = TestApp::spawn().await;
            let key = app.project_key().await;
            let secret = key.secret.expose();
            let holder = match level {
                "organization" => HolderRequest::Organization,
                "project" => HolderRequest::Project(app.project_id.clone()),
                _ => HolderRequest::Key(key.record.id.to_string()),
            };
            let named = match level {
                "organization" => format!("in organization {}", app.org_id),
                "project" => format!("in project {}", app.project_id),
                _ => format!("in API key {}", key.record.id),
            };
            // One request's worth: one request, or the tokens of one (about 13 reserved).
            let mut limits = RateLimits::default();
            match metric {
                Metric::RequestsPerMinute => limits.rpm = Some(1),
                Metric::RequestsPerDay => limits.rpd = Some(1),
                Metric::TokensPerMinute => limits.tpm = Some(15),
                Metric::TokensPerDay => limits.tpd = Some(15),
                Metric::Concurrent => limits.concurrent = Some(1),
            }
            app.limits_change(
                app.control
                    .set_limits(&TestApp::actor(), &holder, "*", limits),
            )
            .await
            .unwrap();
            let mut open_stream = None;
            if metric == Metric::Concurrent {
                let mut body = chat("gpt-4o-mini", 100);
                body["stream"] = json!(true);
                let response = app.post_raw("/v1/chat/completions", secret, &body).await;
                assert_eq!(response.status(), 200);
                let mut stream = response.bytes_stream();
                assert!(stream.next().await.is_some());
                open_stream = Some(stream);
            } else {
                let first = small_chat(&app, secret).await;
                assert_eq!(first.status, 200, "{level} {metric:?}: {}", first.body);
            }
            let refused = small_chat(&app, secret).await;
            let kind = if metric.counts_tokens() {
                "tokens"
            } else {
                "requests"
            };
            assert_rate_limited(&refused, kind, &format!("{named} on {}", metric.label()));
            drop(open_stream);
        }
    }
}

#[tokio::test]
async fn a_key_created_with_limits_is_never_usable_before_its_limits_are_loaded() {
    let app = TestApp::spawn().await;
    // A follower of our own, stepped by hand.
    let table = tollgate_gateway::KeyTable::load(&app.store).await.unwrap();
    let created = app
        .control
        .create_key(
            &TestApp::actor(),
            key_request(
                "limited from the start",
                RateLimits {
                    rpm: Some(1),
                    ..RateLimits::default()
                },
            ),
        )
        .await
        .unwrap();
    let hash = app.control.hasher().hash(&created.secret);
    let first = table.catch_up(&app.store).await.unwrap();
    assert!(first.limits_changed);
    assert!(
        table.get(&hash).is_none(),
        "the key waits until the limits are reloaded"
    );
    let second = table.catch_up(&app.store).await.unwrap();
    assert!(!second.limits_changed);
    assert!(table.get(&hash).is_some());

    // And the running gateway enforces the limit from the key's very first requests.
    assert_eq!(small_chat(&app, created.secret.expose()).await.status, 200);
    assert_rate_limited(
        &small_chat(&app, created.secret.expose()).await,
        "requests",
        "Limit 1, Used 1",
    );
}

/// Sends a request head for a JSON body of `length` bytes, and `sent` of them.
async fn partial_post(
    addr: std::net::SocketAddr,
    key: &str,
    length: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: tollgate\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let body = vec![b' '; sent];
    conn.write_all(&body).await.unwrap();
    conn
}

/// The status line and body of the answer on `conn`, within `within`.
async fn answer(conn: &mut tokio::net::TcpStream, within: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..at]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|l| l.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= at + 4 + length {
                            break;
                        }
                    }
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "no answer within {within:?}: {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

async fn body_bytes_held(app: &TestApp) -> u64 {
    let health = app.get("/healthz", None, &[]).await;
    health.body["body_bytes_held"].as_u64().unwrap()
}

#[tokio::test]
async fn a_request_over_its_concurrency_limit_is_refused_on_its_head_before_its_body() {
    let app = TestApp::spawn().await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let key = limited_key(
        &app,
        "one at a time",
        RateLimits {
            concurrent: Some(1),
            ..RateLimits::default()
        },
    )
    .await;
    let secret = key.secret.expose();
    // The one slot: a 30 MiB body on its way, slowly (1 KiB of it so far).
    let big = 30 * 1024 * 1024;
    let mut uploading = partial_post(addr, secret, big, 1024).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while body_bytes_held(&app).await == 0 {
        assert!(Instant::now() < deadline, "the first body was never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        body_bytes_held(&app).await,
        big as u64,
        "its declared length is held"
    );
    // Fifty more, each declaring 30 MiB and sending none of it: refused from the head alone.
    for _ in 0..50 {
        let mut conn = partial_post(addr, secret, big, 0).await;
        let reply = answer(&mut conn, Duration::from_secs(2)).await;
        assert!(reply.starts_with("HTTP/1.1 429 "), "{reply}");
        assert!(
            reply.contains("on concurrent requests: Limit 1, Used 1, Requested 1"),
            "{reply}"
        );
    }
    assert_eq!(
        body_bytes_held(&app).await,
        big as u64,
        "refused requests hold nothing"
    );
    {
        use tokio::io::AsyncWriteExt;
        drop(uploading.shutdown().await);
    }
    drop(uploading);
    let deadline = Instant::now() + Duration::from_secs(5);
    while body_bytes_held(&app).await != 0 {
        assert!(
            Instant::now() < deadline,
            "a body whose client left was never let go"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        app.mock.requests().is_empty(),
        "nothing reached the provider"
    );
}

#[tokio::test]
async fn bodies_past_the_gateway_s_body_budget_get_a_retryable_503() {
    let app = TestApp::spawn_with(|s| {
        s.max_body_bytes = 1024 * 1024;
        s.max_body_bytes_in_flight = 1024 * 1024;
    })
    .await;
    let addr = app.gateway.as_ref().unwrap().addr();
    let key = app.project_key().await;
    let secret = key.secret.expose();
    // One body takes the whole budget and waits with a part of it sent.
    let body = serde_json::to_vec(&chat("gpt-4o-mini", 10)).unwrap();
    let length = 1024 * 1024;
    let mut padded = body.clone();
    padded.resize(length, b' ');
    let mut first = partial_post(addr, secret, length, 0).await;
    {
        use tokio::io::AsyncWriteExt;
        first.write_all(&padded[..body.len()]).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while body_bytes_held(&app).await == 0 {
        assert!(Instant::now() < deadline, "the first body was never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another, small or declared large, does not fit.
    for declared in [200, length] {
        let mut conn = partial_post(addr, secret, declared, 0).await;
        let reply = answer(&mut conn, Duration::from_secs(2)).await;
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(reply.contains("\"code\":\"server_busy\""), "{reply}");
        assert!(reply.to_lowercase().contains("retry-after: 1"), "{reply}");
    }
    // A body without a declared length is held piece by piece, and refused the same way.
    {
        use tokio::io::AsyncWriteExt;
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let piece = r#"{"model":"gpt-4o-mini","messages":[]}"#;
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: tollgate\r\nauthorization: Bearer {secret}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{piece}\r\n",
            piece.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let reply = answer(&mut conn, Duration::from_secs(2)).await;
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    }
    // The first body arrives whole and is served; the budget is free again.
    {
        use tokio::io::AsyncWriteExt;
        first.write_all(&padded[body.len()..]).await.unwrap();
    }
    let reply = answer(&mut first, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while body_bytes_held(&app).await != 0 {
        assert!(Instant::now() < deadline, "the budget was not given back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let again = small_chat(&app, secret).await;
    assert_eq!(again.status, 200, "{}", again.body);
}
