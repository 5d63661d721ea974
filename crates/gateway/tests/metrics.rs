//! `GET /metrics`: the counters move with traffic (answered requests by route and status,
//! refusals by reason, provider errors, tokens and cost by project and model, usage events
//! stored), and only the addresses `metrics.allow_from` holds may read them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::json;
use std::collections::HashMap;
use support::TestApp;
use tollgate_control::HolderRequest;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::network::Cidr;

/// Every sample of a scrape, by its series (`name{labels}`).
async fn scrape(app: &TestApp, headers: &[(&str, &str)]) -> HashMap<String, f64> {
    let mut request = app.http.get(format!("{}/metrics", app.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/openmetrics-text")));
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "a whole exposition");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]})
}

#[tokio::test]
async fn counters_move_with_traffic() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    let before = scrape(&app, &[]).await;
    assert!(
        value(&before, "tollgate_keys") >= 1.0,
        "the key table's size"
    );
    assert_eq!(value(&before, "tollgate_redis_up"), -1.0, "no Redis here");

    let mut input = 0;
    let mut output = 0;
    for _ in 0..3 {
        let reply = app.post("/v1/chat/completions", secret, chat(), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        input += reply.body["usage"]["prompt_tokens"].as_u64().unwrap();
        output += reply.body["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let failed = app
        .post(
            "/v1/chat/completions",
            secret,
            chat(),
            &[("x-mock-fail", "500")],
        )
        .await;
    assert_eq!(failed.status, 500);
    let stranger = app
        .post("/v1/chat/completions", "sk-not-a-key", chat(), &[])
        .await;
    assert_eq!(stranger.status, 401);
    app.limits_change(app.control.set_limits(
        &TestApp::actor(),
        &HolderRequest::Project(app.project_id.clone()),
        "*",
        RateLimits {
            rpm: Some(1),
            ..RateLimits::default()
        },
    ))
    .await
    .unwrap();
    let first = app.post("/v1/chat/completions", secret, chat(), &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    input += first.body["usage"]["prompt_tokens"].as_u64().unwrap();
    output += first.body["usage"]["completion_tokens"].as_u64().unwrap();
    let limited = app.post("/v1/chat/completions", secret, chat(), &[]).await;
    assert_eq!(limited.status, 429);
    // Five reached the provider (one failed there); every one has its usage event.
    let events = app.usage_events(5).await;
    let model = &events[0].model_served;

    let after = scrape(&app, &[]).await;
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        moved(r#"tollgate_requests_total{route="chat.completions",code="200"}"#),
        4.0
    );
    assert_eq!(
        moved(r#"tollgate_requests_total{route="chat.completions",code="500"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"tollgate_requests_total{route="chat.completions",code="429"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"tollgate_requests_total{route="v1",code="401"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"tollgate_auth_failures_total{reason="invalid"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"tollgate_limit_refusals_total{reason="requests"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"tollgate_upstream_errors_total{provider="mock",kind="status_5xx"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"tollgate_request_duration_seconds_count{route="chat.completions"}"#),
        6.0
    );
    assert_eq!(
        moved(r#"tollgate_overhead_seconds_count{route="chat.completions"}"#),
        5.0,
        "only forwarded requests have an overhead"
    );
    let project = &app.project_id;
    assert_eq!(
        moved(&format!(
            r#"tollgate_tokens_total{{project="{project}",model="{model}",type="input"}}"#
        )),
        input as f64
    );
    assert_eq!(
        moved(&format!(
            r#"tollgate_tokens_total{{project="{project}",model="{model}",type="output"}}"#
        )),
        output as f64
    );
    let cost: i64 = events.iter().map(|e| e.cost.0).sum();
    assert!(cost > 0);
    let metered = moved(&format!(
        r#"tollgate_cost_usd_total{{project="{project}",model="{model}"}}"#
    ));
    assert!(
        (metered - cost as f64 / 1e6).abs() < 1e-9,
        "{metered} dollars against {cost} micro-dollars stored"
    );
    assert!(moved("tollgate_usage_events_stored_total") >= 5.0);
}

#[tokio::test]
async fn only_the_allowed_addresses_may_scrape() {
    let only = |range: &str| vec![Cidr::parse(range).unwrap()];
    let app = TestApp::spawn_with(|settings| {
        settings.metrics.allow_from = only("10.1.2.3/32");
    })
    .await;
    let reply = app.get("/metrics", None, &[]).await;
    reply.assert_error(404, None, "Invalid URL (GET /metrics)");
    // A client's own forwarding header counts for nothing without a trusted proxy.
    let reply = app
        .get("/metrics", None, &[("x-forwarded-for", "10.1.2.3")])
        .await;
    assert_eq!(reply.status, 404);

    let app = TestApp::spawn_with(|settings| {
        settings.metrics.allow_from = only("10.1.2.3/32");
        settings.trusted_proxies = only("127.0.0.1/32");
    })
    .await;
    scrape(&app, &[("x-forwarded-for", "10.1.2.3")]).await;
    let reply = app
        .get("/metrics", None, &[("x-forwarded-for", "10.9.9.9")])
        .await;
    assert_eq!(reply.status, 404);

    let app = TestApp::spawn_with(|settings| settings.metrics.enabled = false).await;
    assert_eq!(app.get("/metrics", None, &[]).await.status, 404);
}
