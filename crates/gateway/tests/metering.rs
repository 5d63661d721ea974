//! Every request that reaches a provider ends in exactly one usage event, whatever the client
//! does: read a stream to its final event and hang up (as the OpenAI SDKs do), hang up in the
//! middle, or hang up before the answer's head arrives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use support::TestApp;
use tollgate_control::{KeyOwnerRequest, NewKey};
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::Permissions;

const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"input":{"type":"string"}}}}}]"#;
const RESPONSE_TOOLS: &str = r#"[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"input":{"type":"string"}}}}]"#;

fn chat(text: &str, tools: bool, include_usage: bool) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": text}]});
    if tools {
        body["tools"] = serde_json::from_str(TOOLS).unwrap();
    }
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn responses(text: &str, tools: bool) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "stream": true, "input": text});
    if tools {
        body["tools"] = serde_json::from_str(RESPONSE_TOOLS).unwrap();
    }
    body
}

/// The `data:` payloads of a stream, read until `last` says the stream is over; then the
/// connection is dropped, as the OpenAI SDKs do, without waiting for the end of the body.
async fn read_until(response: reqwest::Response, last: impl Fn(&str) -> bool) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    loop {
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let done = last(data);
                events.push(serde_json::from_str(data).unwrap_or(Value::String(data.into())));
                if done {
                    return events;
                }
            }
        }
        let piece = stream
            .next()
            .await
            .expect("the stream ended before its final event");
        text.push_str(&String::from_utf8_lossy(&piece.unwrap()));
    }
}

fn chat_done(data: &str) -> bool {
    data == "[DONE]"
}

fn response_done(data: &str) -> bool {
    data.contains("\"type\":\"response.completed\"")
}

#[tokio::test]
async fn a_stream_read_to_its_final_event_is_delivered_with_the_provider_s_usage() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    let mut expected = Vec::new();
    for tools in [false, true] {
        // The provider holds the connection a second after its final event; the client leaves
        // as soon as it has read it.
        let asked = read_until(
            app.post_raw(
                "/v1/chat/completions",
                secret,
                &chat("linger-after-done", tools, true),
            )
            .await,
            chat_done,
        )
        .await;
        let reported = asked.iter().find(|e| e["usage"].is_object()).unwrap()["usage"].clone();
        expected.push((
            reported["prompt_tokens"].as_i64(),
            reported["completion_tokens"].as_i64(),
        ));
        let quiet = read_until(
            app.post_raw(
                "/v1/chat/completions",
                secret,
                &chat("linger-after-done", tools, false),
            )
            .await,
            chat_done,
        )
        .await;
        // (`"usage": null` on every chunk is what OpenAI sends too once usage is asked for.)
        let shown: Vec<&Value> = quiet.iter().filter(|e| e["usage"].is_object()).collect();
        assert!(
            shown.is_empty(),
            "usage shown to a client that did not ask: {shown:?}"
        );
        if tools {
            let arguments: String = quiet
                .iter()
                .filter_map(|e| {
                    e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
                })
                .collect();
            assert!(arguments.starts_with("{\"input\":"), "{arguments}");
        }
        expected.push(expected[expected.len() - 1]);
        let completed = read_until(
            app.post_raw(
                "/v1/responses",
                secret,
                &responses("linger-after-done", tools),
            )
            .await,
            response_done,
        )
        .await;
        let usage = &completed.last().unwrap()["response"]["usage"];
        expected.push((
            usage["input_tokens"].as_i64(),
            usage["output_tokens"].as_i64(),
        ));
    }
    let events = app.usage_events(6).await;
    assert_eq!(events.len(), 6, "one event per request");
    let mut got: Vec<(Option<i64>, Option<i64>)> = events
        .iter()
        .rev()
        .map(|e| (Some(e.input_tokens), Some(e.output_tokens)))
        .collect();
    assert!(
        events.iter().all(|e| e.status == 200),
        "read to the final event is delivered, not abandoned: {:?}",
        events.iter().map(|e| e.status).collect::<Vec<_>>()
    );
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "the provider's own counts, not estimates");
}

#[tokio::test]
async fn a_usage_chunk_in_litellm_s_shape_is_withheld_and_still_metered() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let events = read_until(
        app.post_raw(
            "/v1/chat/completions",
            key.secret.expose(),
            &chat("litellm-usage please", false, false),
        )
        .await,
        chat_done,
    )
    .await;
    assert!(events.len() > 3);
    let shown: Vec<&Value> = events.iter().filter(|e| e["usage"].is_object()).collect();
    assert!(shown.is_empty(), "the usage chunk was shown: {shown:?}");
    let event = &app.usage_events(1).await[0];
    assert_eq!(event.status, 200);
    assert!(
        event.input_tokens > 0 && event.output_tokens > 0,
        "{event:?}"
    );
}

#[tokio::test]
async fn a_tool_call_cut_off_mid_stream_is_billed_for_its_arguments() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let response = app
        .post_raw(
            "/v1/chat/completions",
            key.secret.expose(),
            &chat(
                "Please look up the weather in Paris and Rome today",
                true,
                false,
            ),
        )
        .await;
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    while received.matches("\"arguments\"").count() < 4 {
        received.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);
    let event = &app.usage_events(1).await[0];
    assert_eq!(event.status, 499);
    assert!(event.input_tokens > 0);
    assert!(
        event.output_tokens > 0,
        "the tool name and arguments delivered are output: {event:?}"
    );
}

#[tokio::test]
async fn a_client_gone_before_the_answer_s_head_is_metered_once_and_its_reservation_settles() {
    let mut app = TestApp::spawn().await;
    let created = app
        .limits_change(app.control.create_key(
            &TestApp::actor(),
            NewKey {
                name: "one at a time".into(),
                owner: KeyOwnerRequest::Project(None),
                permissions: Permissions::All,
                expires_in: None,
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits: RateLimits {
                    concurrent: Some(1),
                    tpm: Some(100_000),
                    ..RateLimits::default()
                },
                budget: None,
            },
        ))
        .await
        .unwrap();
    let secret = created.secret.expose();
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 50_000, "messages": [{"role": "user", "content": "a long question"}]});
    // The provider never answers; the client gives up after 300 ms.
    let gave_up = app
        .http
        .post(format!("{}/v1/chat/completions", app.base))
        .bearer_auth(secret)
        .header("x-mock-fail", "slow")
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(gave_up.is_err(), "the provider hung");
    let events = app.usage_events(1).await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.status, 499, "{event:?}");
    assert!(event.input_tokens > 0, "the prompt was sent: {event:?}");
    assert_eq!(event.output_tokens, 0);
    // The slot is free again, and the 50,000-token reservation settled to the estimate.
    let next = app
        .post("/v1/chat/completions", secret, json!({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}), &[])
        .await;
    assert_eq!(next.status, 200, "{}", next.body);
    let remaining: i64 = next.headers["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        remaining > 100_000 - 1_000,
        "only the estimate is charged, not the reservation: {remaining} left"
    );
    // Shutdown stores every pending event: exactly two, one per request.
    app.gateway.take().unwrap().shutdown().await;
    let org = app.control.organization().await.unwrap();
    let stored = app.store.recent_usage(&org.id, 100).await.unwrap();
    assert_eq!(
        stored.len(),
        2,
        "exactly one event for the abandoned request"
    );
}

#[tokio::test]
async fn compaction_runs_a_model_and_is_metered_like_a_response() {
    let app = TestApp::spawn().await;
    let mini_only = app.key_for_models(&["gpt-4o-mini"]).await;
    let secret = mini_only.secret.expose();
    let body = json!({"model": "gpt-4o-mini", "input": [{"role": "user", "content": "a long chat to compact"}]});
    let reply = app.post("/v1/responses/compact", secret, body, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["object"], "response.compaction");
    let event = &app.usage_events(1).await[0];
    assert_eq!(event.endpoint, "/v1/responses/compact");
    assert_eq!(event.status, 200);
    assert_eq!(
        (event.input_tokens, event.output_tokens),
        (
            reply.body["usage"]["input_tokens"].as_i64().unwrap(),
            reply.body["usage"]["output_tokens"].as_i64().unwrap()
        )
    );
    assert!(event.cost.0 > 0);
    let other = json!({"model": "gpt-4o", "input": "compact this"});
    app.post("/v1/responses/compact", secret, other, &[])
        .await
        .assert_error(
            403,
            Some("model_not_found"),
            "does not have access to model `gpt-4o`",
        );
}

#[tokio::test]
async fn a_provider_event_that_never_ends_is_cut_with_an_error_event_and_metered() {
    let app = TestApp::spawn_with(|s| s.max_stream_event_bytes = 256 * 1024).await;
    let key = app.project_key().await;
    let response = app
        .post_raw(
            "/v1/chat/completions",
            key.secret.expose(),
            &chat("endless-event please", false, false),
        )
        .await;
    assert_eq!(response.status(), 200);
    // The whole body the client gets: bounded, and ending in OpenAI's error envelope.
    let body = tokio::time::timeout(Duration::from_secs(10), response.text())
        .await
        .expect("the stream was cut")
        .unwrap();
    assert!(
        body.len() < 1024,
        "nothing of the oversize event reaches the client: {} bytes",
        body.len()
    );
    let error: Value = serde_json::from_str(body.trim().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(error["error"]["code"], "stream_event_too_large");
    assert_eq!(error["error"]["type"], "server_error");
    let event = &app.usage_events(1).await[0];
    assert_eq!(event.status, 502);
    assert!(event.input_tokens > 0, "{event:?}");
    // The provider's stream was dropped, not read to its 256 MiB end.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.mock.streams_cut_off() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the provider's stream was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn events_past_their_retention_are_deleted_and_their_daily_sums_kept() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let reply = app
        .post(
            "/v1/chat/completions",
            key.secret.expose(),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200);
    let served = app.usage_events(1).await.remove(0);
    let now = app.clock_now().seconds();
    let aged = |id: &str, days: i64| {
        let mut event = served.clone();
        event.request_id = id.into();
        event.created_at = tollgate_core::UnixTime(now - days * 86_400);
        event
    };
    app.store
        .record_usage(&[
            aged("req_old_1", 50),
            aged("req_old_2", 50),
            aged("req_recent", 10),
        ])
        .await
        .unwrap();
    let old_day = tollgate_core::UnixTime(now - 50 * 86_400);
    let org = app.control.organization().await.unwrap().id;
    let by_day = || {
        app.store
            .usage_report(&org, tollgate_store::UsageGrouping::Day, old_day, old_day)
    };
    let before = by_day().await.unwrap();
    assert_eq!(before[0].requests, 2);

    let replica = app
        .replica(|s| s.usage_retention = Some(Duration::from_secs(40 * 86_400)))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left: Vec<String> = app
            .store
            .recent_usage(&org, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        if left.len() == 2 || std::time::Instant::now() > deadline {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(left, [served.request_id.clone(), "req_recent".to_owned()]);
    assert_eq!(by_day().await.unwrap(), before, "the daily roll-up stays");
    replica.shutdown().await;
}
