//! The gateway as a proxy, over real HTTP: every metered endpoint streamed and not, usage events
//! with the right tokens and cost, pass-through, provider failures, client disconnects and
//! shutdown with requests in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use support::{TestApp, PROVIDER_KEY};
use tollgate_core::pricing::PricingTable;
use tollgate_core::usage::TokenUsage;
use tollgate_core::Permissions;
use tollgate_gateway::UnpricedPolicy;

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello"}]})
}

/// The cost the shipped price list gives `usage` on `model`.
fn expected_cost(model: &str, usage: TokenUsage) -> i64 {
    PricingTable::shipped()
        .unwrap()
        .price(model)
        .unwrap()
        .cost(&usage)
        .0
}

/// Reads a streamed response to the end; returns the `data:` payloads.
async fn read_sse(response: reqwest::Response) -> Vec<String> {
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn chat_completions_go_upstream_with_the_provider_key_and_are_metered() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let reply = app
        .post(
            "/v1/chat/completions",
            key.secret.expose(),
            chat("gpt-4o-mini"),
            &[("x-stainless-lang", "python")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["object"], "chat.completion");
    assert!(reply.body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .starts_with("[simulated]"));
    assert!(reply.headers["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    assert!(reply.headers.contains_key("openai-processing-ms"));
    assert_eq!(reply.headers["openai-organization"], app.org_id.as_str());
    assert_eq!(reply.headers["openai-project"], app.project_id.as_str());
    assert_eq!(
        reply.headers["x-tollgate-simulated"], "true",
        "provider headers pass through"
    );
    // An unchanged body keeps the provider's length, as OpenAI sends it: not chunked.
    let length: usize = reply.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, reply.body.to_string().len());
    assert!(!reply.headers.contains_key("transfer-encoding"));

    let seen = app.mock.requests();
    let upstream = &seen.last().unwrap().headers;
    assert_eq!(
        upstream["authorization"],
        format!("Bearer {PROVIDER_KEY}").as_str(),
        "the provider key is added server-side"
    );
    assert!(
        !upstream
            .values()
            .any(|v| v.to_str().unwrap_or("").contains(key.secret.expose())),
        "the client's key never reaches the provider"
    );
    assert_eq!(
        upstream["x-stainless-lang"], "python",
        "ordinary client headers pass"
    );
    assert_eq!(upstream["x-provider-header"], "from-config");

    let usage = TokenUsage::from_usage(&reply.body["usage"]).unwrap();
    let event = &app.usage_events(1).await[0];
    assert_eq!(
        event.request_id,
        reply.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(
        (event.input_tokens, event.output_tokens),
        (usage.input, usage.output)
    );
    assert!(usage.input > 0 && usage.output > 0);
    assert_eq!(event.cost.0, expected_cost("gpt-4o-mini", usage));
    assert_eq!(
        (event.model_requested.as_str(), event.model_served.as_str()),
        ("gpt-4o-mini", "gpt-4o-mini")
    );
    assert_eq!(event.endpoint, "/v1/chat/completions");
    assert_eq!(event.status, 200);
    assert_eq!(event.key_id, key.record.id);
    assert_eq!(event.client_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn streaming_learns_usage_without_showing_it_unless_asked() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let mut body = chat("gpt-4o");
    body["stream"] = json!(true);
    let response = app
        .post_raw("/v1/chat/completions", key.secret.expose(), &body)
        .await;
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert!(
        !response.headers().contains_key("content-length"),
        "a stream Tollgate edits has no length to pass on"
    );
    let events = read_sse(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "no usage-only chunk for a client that did not ask"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("[simulated]"));
    let sent = app.mock.requests().last().unwrap().body.clone();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "Tollgate asked the provider for usage"
    );
    let event = &app.usage_events(1).await[0];
    assert!(
        event.output_tokens > 10 && event.input_tokens > 0,
        "{event:?}"
    );
    assert_eq!(
        event.cost.0,
        expected_cost(
            "gpt-4o",
            TokenUsage {
                input: event.input_tokens,
                cached_input: 0,
                output: event.output_tokens,
                reasoning: 0
            }
        )
    );

    body["stream_options"] = json!({"include_usage": true});
    let response = app
        .post_raw("/v1/chat/completions", key.secret.expose(), &body)
        .await;
    let events = read_sse(response).await;
    let usage_chunk: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let events_stored = app.usage_events(2).await;
    assert_eq!(
        usage_chunk["usage"]["completion_tokens"].as_i64(),
        Some(events_stored[0].output_tokens)
    );
}

#[tokio::test]
async fn responses_completions_and_embeddings_are_metered_too() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();

    let reply = app
        .post(
            "/v1/responses",
            secret,
            json!({"model": "gpt-4.1-mini", "input": "Hi there"}),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["object"], "response");
    let stream = app
        .post_raw(
            "/v1/responses",
            secret,
            &json!({"model": "gpt-4.1-mini", "input": "Hi there", "stream": true}),
        )
        .await;
    let events = read_sse(stream).await;
    let completed: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(completed["type"], "response.completed");

    let completion = app
        .post(
            "/v1/completions",
            secret,
            json!({"model": "gpt-4o-mini", "prompt": "Once upon", "max_tokens": 4}),
            &[],
        )
        .await;
    assert_eq!(completion.body["object"], "text_completion");
    let embedding = app
        .post(
            "/v1/embeddings",
            secret,
            json!({"model": "text-embedding-3-small", "input": ["one", "two words"]}),
            &[],
        )
        .await;
    assert_eq!(embedding.body["data"].as_array().unwrap().len(), 2);

    let events = app.usage_events(4).await;
    let by_endpoint = |path: &str| {
        events
            .iter()
            .filter(|e| e.endpoint == path)
            .cloned()
            .collect::<Vec<_>>()
    };
    let responses = by_endpoint("/v1/responses");
    assert_eq!(responses.len(), 2);
    assert!(
        responses.iter().all(|e| e.output_tokens
            == completed["response"]["usage"]["output_tokens"]
                .as_i64()
                .unwrap()),
        "streamed and not, same usage"
    );
    assert_eq!(
        responses[0].model_served, "gpt-4.1-mini",
        "a pattern route serves it, priced as its family"
    );
    assert_eq!(
        responses[0].cost.0,
        expected_cost(
            "gpt-4.1-mini",
            TokenUsage {
                input: responses[0].input_tokens,
                cached_input: 0,
                output: responses[0].output_tokens,
                reasoning: 0
            }
        )
    );
    let completions = by_endpoint("/v1/completions");
    assert_eq!(
        completions[0].output_tokens,
        completion.body["usage"]["completion_tokens"]
            .as_i64()
            .unwrap()
    );
    let embeddings = by_endpoint("/v1/embeddings");
    assert_eq!(embeddings[0].input_tokens, 3, "one + two words");
    assert_eq!(embeddings[0].output_tokens, 0);
    assert_eq!(
        embeddings[0].cost.0, 1,
        "3 tokens at $0.02/1M round up to one micro-dollar"
    );
}

#[tokio::test]
async fn aliases_pass_through_and_the_daily_roll_up() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let reply = app
        .post(
            "/v1/chat/completions",
            key.secret.expose(),
            chat("fast"),
            &[],
        )
        .await;
    assert_eq!(reply.body["model"], "gpt-4o-mini");
    assert_eq!(
        app.mock.requests().last().unwrap().body["model"],
        "gpt-4o-mini",
        "the alias is resolved before the provider sees it"
    );

    let upload = app
        .http
        .post(format!(
            "{}/v1/audio/transcriptions?purpose=batch",
            app.base
        ))
        .bearer_auth(key.secret.expose())
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    let echoed: Value = upload.json().await.unwrap();
    assert_eq!(
        echoed["received"]["bytes"], 100_000,
        "the body was streamed through whole"
    );
    assert_eq!(echoed["received"]["query"], "purpose=batch");

    // A body of unknown length (sent chunked) is streamed through chunked.
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1u8; 10_000]),
        Ok(vec![2u8; 1]),
        Ok(vec![3u8; 50_000]),
    ];
    let chunked = app
        .http
        .post(format!("{}/v1/audio/translations", app.base))
        .bearer_auth(key.secret.expose())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::OK);
    let echoed: Value = chunked.json().await.unwrap();
    assert_eq!(echoed["received"]["bytes"], 60_001);
    let seen = app.mock.requests();
    let part = seen
        .iter()
        .find(|r| r.path.ends_with("/audio/translations"))
        .unwrap();
    assert_eq!(
        part.headers
            .get("transfer-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("chunked")
    );

    let events = app.usage_events(3).await;
    assert_eq!(events[2].model_requested, "fast");
    assert_eq!(events[1].endpoint, "/v1/audio/transcriptions");
    assert_eq!(events[0].endpoint, "/v1/audio/translations");
    let org = app.control.organization().await.unwrap();
    let today = app.clock_now();
    let report = app
        .store
        .usage_report(&org.id, tollgate_store::UsageGrouping::Model, today, today)
        .await
        .unwrap();
    assert!(report
        .iter()
        .any(|r| r.group == "gpt-4o-mini" && r.requests == 1));
}

#[tokio::test]
async fn tollgate_rejects_with_openai_errors() {
    let app = TestApp::spawn_with(|s| s.max_body_bytes = 2_048).await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    app.post("/v1/chat/completions", secret, chat("gpt-5-imaginary"), &[])
        .await
        .assert_error(
            404,
            Some("model_not_found"),
            "The model `gpt-5-imaginary` does not exist",
        );
    let raw = app
        .http
        .post(format!("{}/v1/chat/completions", app.base))
        .bearer_auth(secret)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    support::Reply::read(raw)
        .await
        .assert_error(400, None, "We could not parse the JSON body");
    let missing = app
        .post("/v1/chat/completions", secret, json!({"messages": []}), &[])
        .await;
    assert_eq!(missing.status.as_u16(), 400);
    assert_eq!(missing.body["error"]["param"], "model");
    assert_eq!(
        missing.body["error"]["message"],
        "you must provide a model parameter"
    );
    let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(5_000)}]});
    let too_big = app.post("/v1/chat/completions", secret, big, &[]).await;
    assert_eq!(too_big.status.as_u16(), 413);
    assert_eq!(too_big.body["error"]["code"], "request_too_large");
    app.post("/v1/chat/completions", secret, chat("unpriced-model"), &[])
        .await
        .assert_error(403, Some("model_not_priced"), "has no price configured");
    assert!(
        app.mock.requests().is_empty(),
        "none of these reached the provider"
    );

    let embed_only = Permissions::from_parts("restricted", &["embeddings:write".into()]).unwrap();
    let restricted = app
        .create_key(
            "embed",
            tollgate_control::KeyOwnerRequest::Project(None),
            embed_only,
        )
        .await;
    app.post(
        "/v1/chat/completions",
        restricted.secret.expose(),
        chat("gpt-4o-mini"),
        &[],
    )
    .await
    .assert_error(401, None, "Missing scopes: model.request");
}

#[tokio::test]
async fn an_unpriced_model_is_metered_at_the_fallback_price_when_configured() {
    let app = TestApp::spawn_with(|s| {
        s.unpriced = UnpricedPolicy::Fallback(tollgate_core::pricing::Price {
            input: 1_000_000,
            cached_input: 1_000_000,
            output: 2_000_000,
        })
    })
    .await;
    let key = app.project_key().await;
    let reply = app
        .post(
            "/v1/chat/completions",
            key.secret.expose(),
            chat("unpriced-model"),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let event = &app.usage_events(1).await[0];
    assert_eq!(event.cost.0, event.input_tokens + 2 * event.output_tokens);
}

#[tokio::test]
async fn provider_failures_pass_through_or_become_502_and_504() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();

    let failed = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini"),
            &[("x-mock-fail", "500")],
        )
        .await;
    assert_eq!(failed.status.as_u16(), 500);
    assert_eq!(
        failed.body["error"]["message"],
        "The server had an error while processing your request. Sorry about that!"
    );
    assert_eq!(
        failed.headers["retry-after"], "1",
        "retry-after passes through"
    );
    let limited = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini"),
            &[("x-mock-fail", "429")],
        )
        .await;
    assert_eq!(limited.status.as_u16(), 429);
    assert_eq!(limited.body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(limited.headers["retry-after"], "7");

    let refused = app
        .post("/v1/chat/completions", secret, chat("o3-mini"), &[])
        .await;
    refused.assert_error(502, None, "could not connect to provider dead");
    assert_eq!(refused.body["error"]["type"], "server_error");

    let started = std::time::Instant::now();
    let slow = app
        .post(
            "/v1/chat/completions",
            secret,
            chat("gpt-4o-mini"),
            &[("x-mock-fail", "slow")],
        )
        .await;
    assert_eq!(slow.status.as_u16(), 504, "{}", slow.body);
    assert!(slow.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not answer within 2 s"));
    assert!(started.elapsed() < Duration::from_secs(4));

    let events = app.usage_events(4).await;
    let mut statuses: Vec<u16> = events.iter().map(|e| e.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [429, 500, 502, 504],
        "every request is metered with its status"
    );
    for event in &events {
        match event.status {
            // The provider had the prompt and never answered: it may have run it.
            504 => assert!(
                event.input_tokens > 0 && event.output_tokens == 0,
                "{event:?}"
            ),
            // Refused by the provider, or never reached it: nothing to bill.
            _ => assert_eq!((event.input_tokens, event.cost.0), (0, 0), "{event:?}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_is_billed_for_what_it_received() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let mut body = chat("gpt-4o-mini");
    body["stream"] = json!(true);
    let response = app
        .post_raw("/v1/chat/completions", key.secret.expose(), &body)
        .await;
    let mut stream = response.bytes_stream();
    let mut received = String::new();
    while received.matches("data: ").count() < 4 {
        received.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);
    let event = &app.usage_events(1).await[0];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while app.mock.streams_cut_off() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the provider's stream was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(event.status, 499, "client closed request");
    assert!(event.input_tokens > 0);
    assert!(
        event.output_tokens >= 2 && event.output_tokens < 15,
        "billed for the delivered words only: {event:?}"
    );
    assert!(event.cost.0 > 0);
}

#[tokio::test]
async fn shutdown_finishes_streams_in_flight_and_stores_every_event() {
    let mut app = TestApp::spawn().await;
    let key = app.project_key().await;
    let mut body = chat("gpt-4o-mini");
    body["stream"] = json!(true);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let request = app
            .http
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(key.secret.expose())
            .json(&body);
        clients.push(tokio::spawn(async move {
            read_sse(request.send().await.unwrap()).await
        }));
    }
    // Let the streams start, then shut down while they are running (~30 words x 5 ms each).
    tokio::time::sleep(Duration::from_millis(60)).await;
    app.gateway.take().unwrap().shutdown().await;
    for client in clients {
        assert_eq!(
            client.await.unwrap().last().map(String::as_str),
            Some("[DONE]"),
            "every stream finished"
        );
    }
    let org = app.control.organization().await.unwrap();
    let events = app.store.recent_usage(&org.id, 100).await.unwrap();
    assert_eq!(events.len(), 20, "no usage event lost at shutdown");
    assert!(events
        .iter()
        .all(|e| e.status == 200 && e.output_tokens > 10));
}

#[tokio::test]
async fn a_provider_without_routes_serves_the_models_it_lists() {
    use std::collections::HashMap;
    use tollgate_core::routing::{ModelPattern, RouteTable};
    let app = TestApp::spawn_with(|s| {
        s.routes = RouteTable::new(2, vec![(ModelPattern::new("o3-mini"), 1)], HashMap::new())
    })
    .await;
    let key = app.project_key().await;
    let listed = app.models(key.secret.expose()).await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for model in tollgate_gateway::mock::DEMO_MODELS {
        assert!(
            ids.contains(model),
            "{model} was discovered from the provider's /models"
        );
    }
    assert_eq!(
        app.post(
            "/v1/chat/completions",
            key.secret.expose(),
            chat("gpt-4.1"),
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let unknown = app
        .post(
            "/v1/chat/completions",
            key.secret.expose(),
            chat("llama-3-70b"),
            &[],
        )
        .await;
    unknown.assert_error(404, Some("model_not_found"), "llama-3-70b");
    assert_eq!(
        app.mock
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .count(),
        1,
        "the unknown model was refused without asking the provider"
    );
}

#[tokio::test]
async fn model_allow_lists_on_keys_and_projects() {
    let app = TestApp::spawn().await;
    let mini_only = app.key_for_models(&["gpt-4o-mini"]).await;
    let secret = mini_only.secret.expose();
    assert_eq!(
        app.post("/v1/chat/completions", secret, chat("gpt-4o-mini"), &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.post("/v1/chat/completions", secret, chat("fast"), &[])
            .await
            .status,
        StatusCode::OK,
        "an alias of an allowed model"
    );
    let refused = app
        .post("/v1/chat/completions", secret, chat("gpt-4o"), &[])
        .await;
    assert_eq!(refused.status.as_u16(), 403);
    assert_eq!(refused.body["error"]["code"], "model_not_found");
    assert_eq!(
        refused.body["error"]["message"],
        "This API key does not have access to model `gpt-4o`"
    );
    let listed = app.models(secret).await;
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["gpt-4o-mini", "fast"],
        "a key lists only the models it may use"
    );

    let any = app.project_key().await;
    let list = tollgate_core::routing::ModelAllowList::new(&["gpt-4o*".into()]);
    app.control
        .set_project_allowed_models(&support::TestApp::actor(), "Default project", list)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let reply = app
            .post(
                "/v1/chat/completions",
                any.secret.expose(),
                chat("o4-mini"),
                &[],
            )
            .await;
        if reply.status.as_u16() == 403 {
            assert_eq!(
                reply.body["error"]["message"],
                format!(
                    "Project `{}` does not have access to model `o4-mini`",
                    app.project_id
                )
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the project's list never applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        app.post(
            "/v1/chat/completions",
            any.secret.expose(),
            chat("gpt-4o"),
            &[]
        )
        .await
        .status,
        StatusCode::OK
    );
    let before = app.mock.requests().len();
    let refused = app
        .post(
            "/v1/chat/completions",
            any.secret.expose(),
            chat("o4-mini"),
            &[],
        )
        .await;
    assert_eq!(refused.status.as_u16(), 403);
    assert_eq!(
        app.mock.requests().len(),
        before,
        "a refused model never reaches the provider"
    );
}
