//! The Realtime API: `GET /v1/realtime?model=...` upgraded to a WebSocket and proxied to the
//! model's provider, authenticated with a key (`Authorization`) or a client token (also as the
//! `openai-insecure-api-key.<token>` subprotocol browsers use).
//!
//! A session is admitted as a request when it opens (request rates, and concurrency, which it
//! holds while open; token limits and budgets are checked then too), and the provider's
//! WebSocket is opened before the client's is accepted, so a refusal or a provider that cannot
//! be reached is an ordinary HTTP error. Each response is then admitted when the provider starts
//! it (`response.created`) against token limits and budgets, reserving the default output as an
//! HTTP call does; a refused one is cancelled at the provider and the client gets an `error`
//! event. Each `response.done` is metered from its `usage` as a usage event of its own (the
//! session's request id and the response's number, endpoint `/v1/realtime`) and settles its
//! admission. A client that leaves mid-response has it cancelled, and its `response.done`
//! (what the provider billed) is still awaited for a few seconds and metered.
//!
//! The session's key is checked again every few seconds and at each response: a key revoked,
//! expired or suspended, an archived project, or a client token past its token cap ends the
//! session (an `error` event and the client's side closed; a response under way is cancelled
//! and metered before the provider's side is closed). So does the server stopping
//! (`server_shutting_down`) and the session's hour. Frames go through unchanged, bounded in
//! size; a side that takes no frame for long ends the session; a session lasts at most an hour
//! (OpenAI's own limit).
//!
//! A client token's session configuration (`session` at minting) is sent to the provider as the
//! session's first `session.update`. An API key is refused on a handshake from a browser page
//! (one with an `Origin`): pages use client tokens.

use crate::admission::Admission;
use crate::error::GatewayError;
use crate::request::call::Call;
use crate::settings::UnpricedPolicy;
use crate::state::Counted;
use crate::upstream::websocket::ProviderSocket;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, UPGRADE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tollgate_core::pricing::Price;
use tollgate_core::usage::TokenUsage;
use tollgate_core::{Access, MicroUsd, Scope};
use tollgate_store::UsageEvent;

/// The endpoint sessions are metered under.
const ENDPOINT: &str = "/v1/realtime";
/// The longest message either side may send (a second of 24 kHz PCM16 audio in base64 is
/// 64 KiB; OpenAI bounds an audio append at 15 MiB).
const MAX_MESSAGE: usize = 16 << 20;
/// The longest session.
const MAX_SESSION: Duration = Duration::from_secs(60 * 60);
/// How often an open session's key is checked again.
const RECHECK: Duration = Duration::from_secs(5);
/// The longest wait for one side to take a frame.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cancelled response's `response.done` is awaited after its client left.
const DRAIN: Duration = Duration::from_secs(5);

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Checks the handshake, admits the session, opens the provider's socket and answers `101`;
/// the session then runs on a task of its own.
pub(crate) async fn serve(
    call: Call,
    query: Option<&str>,
    mut parts: Parts,
) -> Result<Response, GatewayError> {
    call.principal.require(Scope::Realtime, Access::Write)?;
    let headers = &parts.headers;
    let accept = handshake_accept(headers)?;
    if call.principal.token.is_none() && headers.contains_key(axum::http::header::ORIGIN) {
        return Err(GatewayError::KeyInBrowser);
    }
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| GatewayError::InvalidRequest {
            message: "This connection cannot be upgraded to a WebSocket (HTTP/1.1 only).".into(),
            param: None,
        })?;
    let session_config = call
        .principal
        .token
        .as_ref()
        .and_then(|t| t.session.clone());
    let requested = query_model(query)
        .or_else(|| {
            let session: serde_json::Value =
                serde_json::from_str(session_config.as_deref()?).ok()?;
            session["model"].as_str().map(str::to_owned)
        })
        .ok_or(GatewayError::MissingModel)?;
    let routes = call.state.catalog.routes();
    let resolved = routes
        .resolve(&requested)
        .ok_or_else(|| GatewayError::ModelNotFound(requested.clone()))?;
    let served = resolved.model;
    call.principal.check_model(&requested, &served)?;
    let price = match (
        call.state.settings.pricing.price(&served),
        call.state.settings.unpriced,
    ) {
        (Some(price), _) => price,
        (None, UnpricedPolicy::Fallback(price)) => price,
        (None, UnpricedPolicy::Refuse) => return Err(GatewayError::ModelNotPriced(served)),
    };
    let upstream = call
        .state
        .upstreams
        .get(resolved.provider)
        .ok_or_else(|| GatewayError::ModelNotFound(requested.clone()))?
        .clone();
    // The session's own admission (request rates, concurrency), held while it is open; token
    // limits and budgets are asked now too, so a session over them never opens.
    let session_admission = call.admit_head(ENDPOINT).await?;
    let mut meter = SessionMeter {
        template: call.event(ENDPOINT, &requested, &served),
        call,
        requested,
        served: served.clone(),
        price,
        session_admission: Some(session_admission),
        responses: std::collections::VecDeque::new(),
        metered: 0,
        in_progress: false,
        response_started: Instant::now(),
    };
    // Refused here, the session's admission is dropped unjoined: its request is given back.
    let first = meter.admit_response().await?;
    // Nothing is reserved until a response starts.
    first.settle(0, MicroUsd::ZERO);
    let mut forwarded = Vec::new();
    if let Some(beta) = headers.get("openai-beta") {
        forwarded.push(("openai-beta", beta.clone()));
    }
    let model: String = form_urlencoded::byte_serialize(served.as_bytes()).collect();
    let mut provider = upstream
        .websocket(
            &format!("{ENDPOINT}?model={model}"),
            &forwarded,
            meter.call.principal.key.project_id(),
            config(),
        )
        .await?;
    if let Some(session) = session_config {
        let update = format!(r#"{{"type":"session.update","session":{session}}}"#);
        provider
            .send(Message::text(update))
            .await
            .map_err(|e| upstream_failed(&upstream.settings.name, e))?;
    }
    let offered_realtime = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "realtime");
    tracing::info!(model = %served, provider = %upstream.settings.name, "realtime session opened");
    // The connection is hyper's no longer once upgraded: the session counts it.
    let counted = Counted::new(meter.call.state.connections_open.clone());
    let open = meter.call.state.sessions.open();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let _counted = counted;
            let _open = open;
            let client = match on_upgrade.await {
                Ok(upgraded) => {
                    WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(config()),
                    )
                    .await
                }
                Err(err) => {
                    tracing::info!(error = %err, "the client left before its WebSocket opened");
                    meter.close();
                    return;
                }
            };
            run(client, provider, meter).await;
        },
        tracing::Span::current(),
    ));
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        out.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if offered_realtime {
        out.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("realtime"));
    }
    Ok(response)
}

fn upstream_failed(provider: &str, err: impl std::fmt::Display) -> GatewayError {
    GatewayError::Upstream(crate::upstream::UpstreamError::Failed {
        provider: provider.to_owned(),
        reason: err.to_string(),
    })
}

/// The `Sec-WebSocket-Accept` for a valid handshake, or why it is not one.
fn handshake_accept(headers: &HeaderMap) -> Result<String, GatewayError> {
    let has = |name, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    let key = headers
        .get(axum::http::header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.len() == 24);
    match key {
        Some(key) if has(UPGRADE, "websocket") && has(CONNECTION, "upgrade") => {
            if headers
                .get(axum::http::header::SEC_WEBSOCKET_VERSION)
                .is_none_or(|v| v != "13")
            {
                return Err(GatewayError::InvalidRequest {
                    message: "Only WebSocket version 13 is spoken here (`Sec-WebSocket-Version: 13`).".into(),
                    param: None,
                });
            }
            Ok(derive_accept_key(key.as_bytes()))
        }
        _ => Err(GatewayError::InvalidRequest {
            message: "The Realtime API is a WebSocket: connect to wss://.../v1/realtime?model=... with a WebSocket client.".into(),
            param: None,
        }),
    }
}

/// The `model` of a query string.
fn query_model(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == "model")
        .map(|(_, model)| model.into_owned())
        .filter(|m| !m.is_empty())
}

/// What a session has used, metered response by response.
struct SessionMeter {
    call: Call,
    requested: String,
    served: String,
    /// The session's usage event as it started: each response's event is a copy.
    template: UsageEvent,
    price: Price,
    /// The session's admission (request counts, its concurrency slot), settled when it ends.
    session_admission: Option<Admission>,
    /// The admissions of responses under way, oldest first (`None`: refused, being cancelled).
    responses: std::collections::VecDeque<Option<Admission>>,
    metered: u64,
    /// A response has started and not ended.
    in_progress: bool,
    response_started: Instant,
}

/// Why a session ends early: the message the client's `error` event carries.
struct Ending {
    code: &'static str,
    message: String,
}

/// What one of the provider's events asks of the session.
enum Seen {
    Nothing,
    /// A response started and was refused: cancel it, tell the client.
    Refused {
        response_id: String,
        error: GatewayError,
    },
    /// A response ended: is the session still allowed to go on?
    Ended,
}

impl SessionMeter {
    /// Admits one response against token limits and budgets, reserving the default output.
    async fn admit_response(&self) -> Result<Admission, GatewayError> {
        let output = self.call.state.settings.default_max_output_tokens;
        let price = self.price;
        self.call
            .admit_body(
                Admission::default(),
                (&self.requested, &self.served),
                &self.served,
                || async move {
                    let most = price.cost(&TokenUsage {
                        input: 0,
                        cached_input: 0,
                        output: i64::try_from(output).unwrap_or(i64::MAX),
                        reasoning: 0,
                    });
                    (0, output, most)
                },
            )
            .await
            .map(|(admission, _)| admission)
    }

    /// Looks at one of the provider's events: a response's start and its end, with its usage.
    async fn observe(&mut self, text: &str) -> Seen {
        let created = text.contains("\"response.created\"");
        if !created && !text.contains("\"response.done\"") {
            return Seen::Nothing;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(text) else {
            return Seen::Nothing;
        };
        match event["type"].as_str() {
            Some("response.created") => {
                self.in_progress = true;
                self.response_started = Instant::now();
                match self.admit_response().await {
                    Ok(admission) => {
                        self.responses.push_back(Some(admission));
                        Seen::Nothing
                    }
                    Err(error) => {
                        self.responses.push_back(None);
                        let response_id = event["response"]["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        Seen::Refused { response_id, error }
                    }
                }
            }
            Some("response.done") => {
                self.in_progress = false;
                self.meter(&event["response"]["usage"]).await;
                Seen::Ended
            }
            _ => Seen::Nothing,
        }
    }

    /// Meters one response's usage and settles its admission.
    async fn meter(&mut self, usage: &serde_json::Value) {
        let int = |v: &serde_json::Value| v.as_i64().unwrap_or(0).max(0);
        let used = TokenUsage {
            input: int(&usage["input_tokens"]),
            cached_input: int(&usage["input_token_details"]["cached_tokens"]),
            output: int(&usage["output_tokens"]),
            reasoning: 0,
        };
        self.metered += 1;
        let cost = self.price.cost(&used);
        let tokens = used.input.saturating_add(used.output);
        if let Some(Some(admission)) = self.responses.pop_front() {
            admission.settle(u64::try_from(tokens).unwrap_or(0), cost);
        }
        let mut record = self.template.clone();
        record.request_id = format!("{}-{}", self.template.request_id, self.metered);
        record.input_tokens = used.input;
        record.cached_input_tokens = used.cached_input;
        record.output_tokens = used.output;
        record.cost = cost;
        record.status = 200;
        record.latency_ms =
            i64::try_from(self.response_started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let state = &self.call.state;
        record.created_at = state.clock.now();
        tracing::info!(
            response = self.metered,
            input_tokens = used.input,
            output_tokens = used.output,
            "realtime response metered"
        );
        state
            .anomalies
            .used(&record, self.call.principal.token.is_some());
        state.usage.record(record).await;
        if let Some(token) = &self.call.principal.token {
            match state.store.add_client_token_tokens(&token.id, tokens).await {
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "a client token's tokens could not be counted")
                }
            }
        }
    }

    /// Whether the session may go on: its key still good, its client token within its cap.
    async fn may_go_on(&self) -> Result<(), Ending> {
        let state = &self.call.state;
        let principal = &self.call.principal;
        let now = state.clock.now();
        let key = state.keys.get(&principal.key.hash);
        let refusal = match key.as_deref() {
            None => Some("the API key was deleted"),
            Some(key) if key.status(now) != tollgate_core::lifecycle::KeyStatus::Active => {
                Some("the API key was revoked or expired")
            }
            Some(key) if key.suspended.is_some() => Some("the API key was suspended"),
            Some(key)
                if key
                    .project
                    .as_deref()
                    .is_some_and(|p| p.status == Some(tollgate_store::ProjectStatus::Archived)) =>
            {
                Some("the project was archived")
            }
            Some(_) => None,
        };
        if let Some(why) = refusal {
            return Err(Ending {
                code: "session_key_invalid",
                message: format!("This session ended: {why}."),
            });
        }
        if let Some(token) = &principal.token {
            if let Some(cap) = token.grant.max_tokens {
                // One read of the count other sessions and requests share.
                let used = state.store.client_token_tokens_used(&token.id).await;
                if used.is_ok_and(|used| used.is_some_and(|used| used >= cap)) {
                    return Err(Ending {
                        code: "client_token_exhausted",
                        message: format!(
                            "This session ended: the client token {} has used its {cap} tokens.",
                            token.redacted
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The session ended: its admission is settled (its request counted, its slot given back).
    fn close(&mut self) {
        if let Some(admission) = self.session_admission.take() {
            admission.settle(0, MicroUsd::ZERO);
        }
        self.responses.clear();
        tracing::info!(responses = self.metered, "realtime session closed");
    }
}

/// An `error` event in the Realtime API's shape.
fn error_event(code: &str, message: &str, kind: &str) -> Message {
    Message::text(
        serde_json::json!({"type": "error", "event_id": format!("event_tollgate_{code}"),
            "error": {"type": kind, "code": code, "message": message, "param": null, "event_id": null}})
        .to_string(),
    )
}

/// Sends one message, bounded in time.
async fn send<S>(socket: &mut WebSocketStream<S>, message: Message) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// Relays frames both ways until either side closes, the session's hour is up, a side stops
/// taking frames, or the session may not go on.
async fn run(
    mut client: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    mut provider: ProviderSocket,
    mut meter: SessionMeter,
) {
    let deadline = tokio::time::sleep(MAX_SESSION);
    tokio::pin!(deadline);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    let mut stopping = meter.call.state.stopping.clone();
    // The client left, or was sent away: a response under way is cancelled and metered.
    let mut client_gone = false;
    loop {
        tokio::select! {
            from_client = client.next() => match from_client {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if !send(&mut provider, message).await {
                        let _ = send(&mut client, Message::Close(None)).await;
                        break;
                    }
                }
                // Pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    client_gone = true;
                    break;
                }
            },
            from_provider = provider.next() => match from_provider {
                Some(Ok(Message::Text(text))) => {
                    let seen = meter.observe(text.as_str()).await;
                    if !send(&mut client, Message::Text(text)).await {
                        client_gone = true;
                        break;
                    }
                    match seen {
                        Seen::Nothing => {}
                        Seen::Refused { response_id, error } => {
                            let cancel = serde_json::json!({"type": "response.cancel", "response_id": response_id});
                            let _ = send(&mut provider, Message::text(cancel.to_string())).await;
                            let openai = error.to_openai();
                            let code = openai.code.unwrap_or("rate_limit_exceeded");
                            let _ = send(&mut client, error_event(code, &openai.message, openai.kind.type_name())).await;
                        }
                        Seen::Ended => {
                            if let Err(ending) = meter.may_go_on().await {
                                tell(&mut client, ending).await;
                                client_gone = true;
                                break;
                            }
                        }
                    }
                }
                Some(Ok(message @ Message::Binary(_))) => {
                    if !send(&mut client, message).await {
                        client_gone = true;
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = send(&mut client, Message::Close(frame)).await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "the provider's WebSocket failed");
                    let _ = send(&mut client, Message::Close(None)).await;
                    break;
                }
                None => {
                    let _ = send(&mut client, Message::Close(None)).await;
                    break;
                }
            },
            _ = recheck.tick() => {
                if let Err(ending) = meter.may_go_on().await {
                    tell(&mut client, ending).await;
                    client_gone = true;
                    break;
                }
            }
            // The server is stopping: the session ends now, its response in progress cancelled
            // and metered, before the usage writer's last batch.
            true = async { stopping.wait_for(|stop| *stop).await.is_ok() } => {
                tell(&mut client, Ending {
                    code: "server_shutting_down",
                    message: "This session ended: the server is restarting. Reconnect to continue.".into(),
                }).await;
                client_gone = true;
                break;
            }
            () = &mut deadline => {
                tracing::info!("realtime session reached its hour");
                tell(&mut client, Ending {
                    code: "session_expired",
                    message: "This session reached its maximum duration of 60 minutes.".into(),
                }).await;
                client_gone = true;
                break;
            }
        }
    }
    if client_gone && meter.in_progress {
        drain(&mut provider, &mut meter).await;
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, provider.close(None)).await;
    meter.close();
}

/// Tells the client why its session ends, and closes its side.
async fn tell<S>(client: &mut WebSocketStream<S>, ending: Ending)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tracing::info!(code = ending.code, "realtime session ended early");
    let _ = send(
        client,
        error_event(ending.code, &ending.message, "invalid_request_error"),
    )
    .await;
    let _ = send(client, Message::Close(None)).await;
}

/// The client left (or was sent away) mid-response: the response is cancelled and its
/// `response.done` (what the provider billed for it) awaited a few seconds and metered.
async fn drain(provider: &mut ProviderSocket, meter: &mut SessionMeter) {
    let cancel = serde_json::json!({"type": "response.cancel"}).to_string();
    let _ = send(provider, Message::text(cancel)).await;
    let waited = tokio::time::timeout(DRAIN, async {
        while let Some(Ok(message)) = provider.next().await {
            if let Message::Text(text) = message {
                if let Seen::Ended = meter.observe(text.as_str()).await {
                    return;
                }
            }
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(
            "a response its client left was not reported done by the provider; it is not metered"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_websocket_handshakes_are_accepted() {
        let mut headers = HeaderMap::new();
        assert!(handshake_accept(&headers).is_err());
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(
            axum::http::header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert!(handshake_accept(&headers).is_err(), "no version");
        headers.insert(
            axum::http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        // RFC 6455's own example.
        assert_eq!(
            handshake_accept(&headers).ok().as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }

    #[test]
    fn the_model_comes_from_the_query() {
        assert_eq!(
            query_model(Some("model=gpt-realtime&x=1")).as_deref(),
            Some("gpt-realtime")
        );
        assert_eq!(query_model(Some("model=a%2Fb")).as_deref(), Some("a/b"));
        assert_eq!(query_model(Some("model=")), None);
        assert_eq!(query_model(None), None);
    }
}
