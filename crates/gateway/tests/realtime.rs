//! The Realtime API through a fake WebSocket provider: a session with two responses is metered
//! exactly (one usage event per `response.done`, on the key, priced), with the provider's key
//! and never the client's; a client token opens a session through the browser subprotocol, its
//! minted session configuration sent first; a revoked key, an API key from a browser page, a
//! wrong origin and a session over the key's concurrency limit are refused before any upgrade.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point
#![allow(clippy::result_large_err)] // tungstenite's handshake callback returns its own Response

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::TestApp;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::http::Request;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::pricing::Price;
use tollgate_core::routing::{ModelPattern, RouteTable};
use tollgate_core::Permissions;

const PROVIDER_KEY: &str = "sk-realtime-provider-key";
const PRICE: Price = Price {
    input: 4_000_000,
    cached_input: 400_000,
    output: 16_000_000,
};

/// What the fake provider saw: each handshake's target and `Authorization`, and every event.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<SeenLog>>);

/// Each handshake's target and `Authorization`; every event.
type SeenLog = (Vec<(String, Option<String>)>, Vec<Value>);

/// A Realtime provider: `session.update` gets `session.updated`; the n-th `response.create`
/// of a connection gets `response.created`, a text delta and `response.done` with usage
/// (100·n input tokens of which 10 cached, 20·n output tokens).
async fn fake_provider(seen: Seen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let handshakes = seen.clone();
                let callback =
                    move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          response| {
                        let auth = request
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned());
                        handshakes
                            .0
                            .lock()
                            .unwrap()
                            .0
                            .push((request.uri().to_string(), auth));
                        Ok(response)
                    };
                let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                else {
                    return;
                };
                let mut n = 0;
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        if let Message::Close(_) = message {
                            break;
                        }
                        continue;
                    };
                    let event: Value = serde_json::from_str(text.as_str()).unwrap();
                    seen.0.lock().unwrap().1.push(event.clone());
                    let replies = match event["type"].as_str() {
                        Some("session.update") => {
                            vec![json!({"type": "session.updated", "session": event["session"]})]
                        }
                        Some("response.create")
                            if event["response"]["metadata"]["hold"] == "yes" =>
                        {
                            // Started, and held until cancelled.
                            n += 1;
                            let id = format!("resp_{n}");
                            vec![
                                json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}),
                                json!({"type": "response.output_audio.delta", "response_id": id, "delta": "AAAA"}),
                            ]
                        }
                        Some("response.cancel") => {
                            let id = format!("resp_{n}");
                            vec![
                                json!({"type": "response.done", "response": {"id": id, "status": "cancelled",
                                "usage": {"total_tokens": 107, "input_tokens": 100, "output_tokens": 7,
                                    "input_token_details": {"cached_tokens": 0}, "output_token_details": {"audio_tokens": 7}}}}),
                            ]
                        }
                        Some("response.create") => {
                            n += 1;
                            let id = format!("resp_{n}");
                            vec![
                                json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}),
                                json!({"type": "response.output_text.delta", "response_id": id, "delta": "[simulated] hi"}),
                                json!({"type": "response.done", "response": {"id": id, "status": "completed",
                                    "usage": {"total_tokens": 120 * n, "input_tokens": 100 * n, "output_tokens": 20 * n,
                                        "input_token_details": {"cached_tokens": 10, "text_tokens": 100 * n - 10, "audio_tokens": 10},
                                        "output_token_details": {"text_tokens": 20 * n, "audio_tokens": 0}}}}),
                            ]
                        }
                        _ => vec![],
                    };
                    for reply in replies {
                        socket.send(Message::text(reply.to_string())).await.unwrap();
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

/// A gateway whose `gpt-realtime` goes to the fake provider (priced).
async fn app_with_realtime(seen: &Seen) -> TestApp {
    app_over(seen, false).await.0
}

/// The same, the provider reached over `wss://` (through a TLS front with its own CA, as a
/// provider's `ca_file` names it) when `tls`.
async fn app_over(
    seen: &Seen,
    tls: bool,
) -> (TestApp, Option<(support::TlsFront, tempfile::TempDir)>) {
    let base_url = fake_provider(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let front = match tls {
        true => {
            let addr: std::net::SocketAddr = base_url
                .trim_start_matches("http://")
                .trim_end_matches("/v1")
                .parse()
                .unwrap();
            Some(support::TlsFront::start(addr, dir.path()).await)
        }
        false => None,
    };
    let (base_url, ca_file) = match &front {
        Some(front) => (front.base_url.clone(), Some(front.ca_file.clone())),
        None => (base_url, None),
    };
    let app = TestApp::spawn_with(move |settings| {
        let mut realtime = settings.providers[0].clone();
        realtime.name = "realtime".into();
        realtime.base_url = base_url;
        realtime.ca_file = ca_file;
        realtime.api_key = Some(tollgate_gateway::ProviderKey::new(PROVIDER_KEY.into()));
        settings.providers.push(realtime);
        settings.routes = RouteTable::new(
            3,
            [
                (ModelPattern::new("gpt-realtime"), 2),
                (ModelPattern::new("gpt-4o-mini"), 0),
            ]
            .into_iter()
            .collect(),
            Default::default(),
        );
        settings.pricing.set("gpt-realtime", PRICE);
    })
    .await;
    (app, front.map(|front| (front, dir)))
}

type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens `/v1/realtime?model=...` on the gateway with extra handshake headers.
async fn connect(
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<(Client, Option<String>), WsError> {
    let addr = app.gateway.as_ref().unwrap().addr();
    let mut request = Request::builder()
        .uri(format!("ws://{addr}/v1/realtime{query}"))
        .header("host", addr.to_string())
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", generate_key());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (socket, response) =
        tokio_tungstenite::client_async(request.body(()).unwrap(), stream).await?;
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((socket, protocol))
}

/// The refusal of a handshake: its status and OpenAI's error code.
fn refused(result: Result<(Client, Option<String>), WsError>) -> (u16, Value) {
    match result {
        Err(WsError::Http(response)) => {
            let body: Value = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body["error"]["code"].clone())
        }
        Err(other) => panic!("not an HTTP refusal: {other}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

/// The next event, within 5 s (`None`: the socket closed).
async fn next_event(socket: &mut Client) -> Option<Value> {
    let message = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .expect("an event within 5 s")?;
    match message {
        Ok(Message::Text(text)) => Some(serde_json::from_str(text.as_str()).unwrap()),
        Ok(Message::Close(_)) | Err(_) => None,
        Ok(other) => panic!("unexpected frame {other:?}"),
    }
}

/// Sends `response.create` and reads events up to its `response.done`.
async fn one_response(socket: &mut Client) -> Vec<Value> {
    socket
        .send(Message::text(
            json!({"type": "response.create"}).to_string(),
        ))
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        let done = event["type"] == "response.done";
        events.push(event);
        if done {
            return events;
        }
    }
}

#[tokio::test]
async fn a_session_with_two_responses_is_metered_exactly_over_ws() {
    session_with_two_responses(false).await;
}

#[tokio::test]
async fn a_session_with_two_responses_is_metered_exactly_over_wss() {
    session_with_two_responses(true).await;
}

async fn session_with_two_responses(tls: bool) {
    let seen = Seen::default();
    let (app, _front) = app_over(&seen, tls).await;
    let key = app.project_key().await;
    let auth = format!("Bearer {}", key.secret.expose());
    let (mut socket, protocol) = connect(
        &app,
        "?model=gpt-realtime",
        &[
            ("authorization", &auth),
            ("sec-websocket-protocol", "realtime"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(protocol.as_deref(), Some("realtime"));
    let first = one_response(&mut socket).await;
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(first[1]["delta"], "[simulated] hi");
    one_response(&mut socket).await;
    socket.close(None).await.unwrap();

    let (handshakes, _) = seen.0.lock().unwrap().clone();
    assert_eq!(
        handshakes,
        vec![(
            "/v1/realtime?model=gpt-realtime".to_owned(),
            Some(format!("Bearer {PROVIDER_KEY}"))
        )],
        "the provider's key, never the client's"
    );
    let mut events = app.usage_events(2).await;
    events.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    assert_eq!(events.len(), 2);
    for (n, event) in (1..=2).zip(&events) {
        assert_eq!(event.key_id, key.record.id);
        assert_eq!(event.endpoint, "/v1/realtime");
        assert_eq!(event.model_served, "gpt-realtime");
        assert_eq!(event.status, 200);
        assert_eq!(event.input_tokens, 100 * n);
        assert_eq!(event.cached_input_tokens, 10);
        assert_eq!(event.output_tokens, 20 * n);
        assert!(
            event.request_id.ends_with(&format!("-{n}")),
            "{}",
            event.request_id
        );
        let cost = PRICE.cost(&tollgate_core::usage::TokenUsage {
            input: 100 * n,
            cached_input: 10,
            output: 20 * n,
            reasoning: 0,
        });
        assert_eq!(event.cost, cost);
    }
    assert_ne!(events[0].request_id, events[1].request_id);
}

#[tokio::test]
async fn a_client_token_opens_a_session_from_its_page_with_its_minted_configuration() {
    let seen = Seen::default();
    let app = app_with_realtime(&seen).await;
    let key = app.project_key().await;
    let minted = app
        .post(
            "/v1/realtime/client_secrets",
            key.secret.expose(),
            json!({"session": {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief."},
                   "allowed_origins": ["http://localhost:5173"]}),
            &[],
        )
        .await;
    let token = minted.body["value"].as_str().unwrap().to_owned();
    // A browser names the token as a subprotocol; the model comes from the minted session.
    let protocols = format!("realtime, openai-insecure-api-key.{token}");
    let (mut socket, protocol) = connect(
        &app,
        "",
        &[
            ("sec-websocket-protocol", &protocols),
            ("origin", "http://localhost:5173"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        protocol.as_deref(),
        Some("realtime"),
        "the credential is never echoed"
    );
    let updated = tokio::time::timeout(std::time::Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let updated: Value = serde_json::from_str(updated.to_text().unwrap()).unwrap();
    assert_eq!(updated["type"], "session.updated");
    assert_eq!(updated["session"]["instructions"], "Be brief.");
    one_response(&mut socket).await;
    socket.close(None).await.unwrap();
    let events = app.usage_events(1).await;
    assert_eq!(events[0].key_id, key.record.id, "metered to the key");
    assert_eq!(events[0].input_tokens, 100);

    // From a page the token does not name: refused before any upgrade.
    let (status, code) = refused(
        connect(
            &app,
            "",
            &[
                ("sec-websocket-protocol", &protocols),
                ("origin", "https://evil.example"),
            ],
        )
        .await,
    );
    assert_eq!((status, code), (403, json!("origin_not_allowed")));
    assert_eq!(
        seen.0.lock().unwrap().0.len(),
        1,
        "the provider saw one session"
    );
}

#[tokio::test]
async fn revoked_keys_browsers_with_keys_bad_handshakes_and_full_limits_are_refused() {
    let seen = Seen::default();
    let app = app_with_realtime(&seen).await;
    let limited = app
        .limits_change(app.control.create_key(
            &TestApp::actor(),
            tollgate_control::NewKey {
                name: "one at a time".into(),
                owner: tollgate_control::KeyOwnerRequest::Project(None),
                permissions: Permissions::All,
                expires_in: None,
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits: RateLimits {
                    concurrent: Some(1),
                    ..RateLimits::default()
                },
                budget: None,
            },
        ))
        .await
        .unwrap();
    let auth = format!("Bearer {}", limited.secret.expose());
    let headers = [("authorization", auth.as_str())];
    // A session holds its concurrency slot while open.
    let (mut open, _) = connect(&app, "?model=gpt-realtime", &headers)
        .await
        .unwrap();
    let (status, code) = refused(connect(&app, "?model=gpt-realtime", &headers).await);
    assert_eq!((status, code), (429, json!("rate_limit_exceeded")));
    one_response(&mut open).await;
    open.close(None).await.unwrap();
    // Given back as the session ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match connect(&app, "?model=gpt-realtime", &headers).await {
            Ok((mut again, _)) => {
                again.close(None).await.unwrap();
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(err) => panic!("the slot never came back: {err}"),
        }
    }

    // An API key from a browser page.
    let (status, code) = refused(
        connect(
            &app,
            "?model=gpt-realtime",
            &[
                ("authorization", &auth),
                ("origin", "http://localhost:5173"),
            ],
        )
        .await,
    );
    assert_eq!((status, code), (403, json!("api_key_in_browser")));
    // No model, a model not routed, no key.
    assert_eq!(refused(connect(&app, "", &headers).await).0, 400);
    assert_eq!(refused(connect(&app, "?model=nope", &headers).await).0, 404);
    assert_eq!(
        refused(connect(&app, "?model=gpt-realtime", &[]).await).0,
        401
    );
    // Not a WebSocket handshake at all.
    let plain = app
        .get(
            "/v1/realtime?model=gpt-realtime",
            Some(limited.secret.expose()),
            &[],
        )
        .await;
    assert_eq!(plain.status, 400);
    assert!(plain.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("WebSocket"));

    // A revoked key's session is refused.
    app.revoke(&limited.record.id).await;
    let (status, code) = refused(connect(&app, "?model=gpt-realtime", &headers).await);
    assert_eq!((status, code), (401, json!("invalid_api_key")));
    assert_eq!(
        seen.0.lock().unwrap().0.len(),
        2,
        "refused sessions never reach the provider"
    );
}

#[tokio::test]
async fn an_open_session_ends_when_its_key_is_revoked_or_its_token_spent() {
    let seen = Seen::default();
    let app = app_with_realtime(&seen).await;
    let key = app.project_key().await;
    let auth = format!("Bearer {}", key.secret.expose());
    let (mut socket, _) = connect(&app, "?model=gpt-realtime", &[("authorization", &auth)])
        .await
        .unwrap();
    one_response(&mut socket).await;
    // A token capped at 150 tokens: its second response (120 + 240) ends the session.
    let minted = app
        .post(
            "/v1/realtime/client_secrets",
            key.secret.expose(),
            json!({"max_tokens": 150}),
            &[],
        )
        .await;
    let token = format!("Bearer {}", minted.body["value"].as_str().unwrap());
    let (mut spent, _) = connect(&app, "?model=gpt-realtime", &[("authorization", &token)])
        .await
        .unwrap();
    one_response(&mut spent).await;
    one_response(&mut spent).await;
    let ended = next_event(&mut spent).await.unwrap();
    assert_eq!(ended["type"], "error");
    assert_eq!(ended["error"]["code"], "client_token_exhausted");
    assert!(next_event(&mut spent).await.is_none(), "then closed");
    // And no new session for it.
    let (status, code) =
        refused(connect(&app, "?model=gpt-realtime", &[("authorization", &token)]).await);
    assert_eq!((status, code), (429, json!("client_token_exhausted")));

    // The key revoked: its open session ends at its next response.
    app.revoke(&key.record.id).await;
    one_response(&mut socket).await;
    let ended = next_event(&mut socket).await.unwrap();
    assert_eq!(ended["error"]["code"], "session_key_invalid", "{ended}");
    assert!(next_event(&mut socket).await.is_none());
    // Every response the provider ran was metered: 2 on the key's session, 2 on the token's.
    assert_eq!(app.usage_events(4).await.len(), 4);
}

/// A session on a new key with a response started and held by the provider until cancelled.
async fn held_response(app: &TestApp) -> Client {
    let key = app.project_key().await;
    let auth = format!("Bearer {}", key.secret.expose());
    let (mut socket, _) = connect(app, "?model=gpt-realtime", &[("authorization", &auth)])
        .await
        .unwrap();
    let hold = json!({"type": "response.create", "response": {"metadata": {"hold": "yes"}}});
    socket.send(Message::text(hold.to_string())).await.unwrap();
    for expected in ["response.created", "response.output_audio.delta"] {
        assert_eq!(next_event(&mut socket).await.unwrap()["type"], expected);
    }
    socket
}

#[tokio::test]
async fn a_response_its_client_left_is_cancelled_and_still_metered() {
    let seen = Seen::default();
    let app = app_with_realtime(&seen).await;
    let socket = held_response(&app).await;
    // The client vanishes mid-response.
    drop(socket);
    let events = app.usage_events(1).await;
    assert_eq!(events[0].input_tokens, 100);
    assert_eq!(
        events[0].output_tokens, 7,
        "what the provider billed for the cancelled response"
    );
    let cancels = seen
        .0
        .lock()
        .unwrap()
        .1
        .iter()
        .filter(|e| e["type"] == "response.cancel")
        .count();
    assert_eq!(cancels, 1);
}

#[tokio::test]
async fn each_response_is_admitted_against_the_budget() {
    let seen = Seen::default();
    let app = app_with_realtime(&seen).await;
    let key = app.project_key().await;
    // The n-th response costs $0.00072·n; a response is admitted while the budget has anything
    // left.
    app.limits_change(app.control.set_budget(
        &TestApp::actor(),
        &tollgate_control::HolderRequest::Key(key.record.id.to_string()),
        tollgate_control::BudgetRequest {
            limit: tollgate_core::MicroUsd(2_000),
            period: tollgate_core::budget::BudgetPeriod::Month,
            utc_offset_secs: 0,
            alerts_permille: vec![],
        },
    ))
    .await
    .unwrap();
    let auth = format!("Bearer {}", key.secret.expose());
    let (mut socket, _) = connect(&app, "?model=gpt-realtime", &[("authorization", &auth)])
        .await
        .unwrap();
    // $0.00216 spent after two: the budget is spent, a third is refused.
    for _ in 0..2 {
        let events = one_response(&mut socket).await;
        assert!(events.iter().all(|e| e["type"] != "error"), "{events:?}");
    }
    let third = one_response(&mut socket).await;
    let refusal = third
        .iter()
        .find(|e| e["type"] == "error")
        .unwrap_or_else(|| panic!("an error event: {third:?}"));
    assert_eq!(refusal["error"]["type"], "insufficient_quota", "{refusal}");
    // The provider, told to stop, reports the cancelled response (and it is metered).
    loop {
        let event = next_event(&mut socket)
            .await
            .expect("the cancelled response");
        if event["type"] == "response.done" && event["response"]["status"] == "cancelled" {
            break;
        }
    }
    let cancelled = seen
        .0
        .lock()
        .unwrap()
        .1
        .iter()
        .filter(|e| e["type"] == "response.cancel")
        .count();
    assert_eq!(cancelled, 1, "the provider was told to stop");
    socket.close(None).await.unwrap();
    // A new session is refused outright.
    let (status, _) =
        refused(connect(&app, "?model=gpt-realtime", &[("authorization", &auth)]).await);
    assert_eq!(status, 429);
}

#[tokio::test]
async fn a_stopping_server_ends_its_sessions_and_meters_their_last_response() {
    let seen = Seen::default();
    let mut app = app_with_realtime(&seen).await;
    let mut socket = held_response(&app).await;
    // SIGTERM, as `tollgate serve` gets it: the session is told, its response cancelled and
    // metered, and the server stops (it does not wait out the session's hour).
    let stopping = tokio::spawn(app.gateway.take().unwrap().shutdown());
    let ended = next_event(&mut socket).await.unwrap();
    assert_eq!(ended["error"]["code"], "server_shutting_down", "{ended}");
    assert!(next_event(&mut socket).await.is_none());
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped")
        .unwrap();
    // Stored before the server finished stopping.
    let org = app.control.organization().await.unwrap();
    let events = app.store.recent_usage(&org.id, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].output_tokens, 7);
}
