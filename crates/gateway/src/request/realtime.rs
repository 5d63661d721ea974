//! The Realtime API: `GET /v1/realtime?model=...` upgraded to a WebSocket and proxied to the
//! model's provider, authenticated with a key (`Authorization`) or a client token (also as the
//! `openai-insecure-api-key.<token>` subprotocol browsers use).
//!
//! A session is admitted as one request when it opens (request rates, concurrency, which it
//! holds while open, token limits and budgets, with the default output reservation), and the
//! provider's WebSocket is opened before the client's is accepted, so a refusal or a provider
//! that cannot be reached is an ordinary HTTP error. Each `response.done` event the provider
//! sends is metered as a usage event of its own (the session's request id and the response's
//! number, endpoint `/v1/realtime`) from its `usage`; the session's admission is settled with
//! the sum when it ends. Frames go through unchanged, bounded in size; a session lasts at most
//! an hour (OpenAI's own limit), then both sides are closed.
//!
//! A client token's session configuration (`session` at minting) is sent to the provider as the
//! session's first `session.update`. An API key is refused on a handshake from a browser page
//! (one with an `Origin`): pages use client tokens.

use crate::admission::Admission;
use crate::error::GatewayError;
use crate::request::call::Call;
use crate::settings::UnpricedPolicy;
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
        .ok_or_else(|| GatewayError::ModelNotFound(requested.clone()))?;
    let head = call.admit_head(ENDPOINT).await?;
    let output = call.state.settings.default_max_output_tokens;
    let (admission, _) = call
        .admit_body(head, (&requested, &served), &served, || async move {
            let most = price.cost(&TokenUsage {
                input: 0,
                cached_input: 0,
                output: i64::try_from(output).unwrap_or(i64::MAX),
                reasoning: 0,
            });
            (0, output, most)
        })
        .await?;
    let mut forwarded = Vec::new();
    if let Some(beta) = headers.get("openai-beta") {
        forwarded.push(("openai-beta", beta.clone()));
    }
    let model: String = form_urlencoded::byte_serialize(served.as_bytes()).collect();
    let mut provider = upstream
        .websocket(
            &format!("{ENDPOINT}?model={model}"),
            &forwarded,
            call.principal.key.project_id(),
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
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| GatewayError::InvalidRequest {
            message: "This connection cannot be upgraded to a WebSocket (HTTP/1.1 only).".into(),
            param: None,
        })?;
    let offered_realtime = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "realtime");
    let meter = SessionMeter {
        template: call.event(ENDPOINT, &requested, &served),
        price,
        admission: Some(admission),
        responses: 0,
        tokens: 0,
        cost: MicroUsd::ZERO,
        response_started: Instant::now(),
        client_token: call.principal.token.as_ref().map(|t| t.id.clone()),
        state: call.state.clone(),
    };
    tracing::info!(model = %served, provider = %upstream.settings.name, "realtime session opened");
    tokio::spawn(tracing::Instrument::instrument(
        async move {
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
    state: crate::state::AppState,
    /// The session's usage event as it started: each response's event is a copy.
    template: UsageEvent,
    price: Price,
    admission: Option<Admission>,
    responses: u64,
    tokens: u64,
    cost: MicroUsd,
    response_started: Instant,
    client_token: Option<tollgate_core::ClientTokenId>,
}

impl SessionMeter {
    /// Looks at one of the provider's events: a response's start and its end, with its usage.
    async fn observe(&mut self, text: &str) {
        if text.contains("\"response.created\"") {
            self.response_started = Instant::now();
            return;
        }
        if !text.contains("\"response.done\"") {
            return;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        if event["type"] != "response.done" {
            return;
        }
        let usage = &event["response"]["usage"];
        let int = |v: &serde_json::Value| v.as_i64().unwrap_or(0).max(0);
        let used = TokenUsage {
            input: int(&usage["input_tokens"]),
            cached_input: int(&usage["input_token_details"]["cached_tokens"]),
            output: int(&usage["output_tokens"]),
            reasoning: 0,
        };
        self.responses += 1;
        let cost = self.price.cost(&used);
        let mut record = self.template.clone();
        record.request_id = format!("{}-{}", self.template.request_id, self.responses);
        record.input_tokens = used.input;
        record.cached_input_tokens = used.cached_input;
        record.output_tokens = used.output;
        record.cost = cost;
        record.status = 200;
        record.latency_ms =
            i64::try_from(self.response_started.elapsed().as_millis()).unwrap_or(i64::MAX);
        record.created_at = self.state.clock.now();
        let tokens = used.input.saturating_add(used.output);
        self.tokens = self.tokens.saturating_add(tokens as u64);
        self.cost = self.cost.saturating_add(cost);
        if let Some(token) = &self.client_token {
            if let Err(err) = self
                .state
                .store
                .add_client_token_tokens(token, tokens)
                .await
            {
                tracing::warn!(error = %err, "a client token's tokens could not be counted");
            }
        }
        tracing::info!(
            response = self.responses,
            input_tokens = used.input,
            output_tokens = used.output,
            "realtime response metered"
        );
        self.state.anomalies.used(&record);
        self.state.usage.record(record).await;
    }

    /// The session ended: its admission is settled with what it used.
    fn close(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.settle(self.tokens, self.cost);
        }
        tracing::info!(
            responses = self.responses,
            tokens = self.tokens,
            "realtime session closed"
        );
    }
}

/// Relays frames both ways until either side closes, the session's hour is up, or a side
/// breaks the protocol.
async fn run(
    mut client: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    mut provider: ProviderSocket,
    mut meter: SessionMeter,
) {
    let deadline = tokio::time::sleep(MAX_SESSION);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            from_client = client.next() => match from_client {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if provider.send(message).await.is_err() {
                        let _ = client.close(None).await;
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = provider.close(frame).await;
                    break;
                }
                // Pings are answered by the socket itself.
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::info!(error = %err, "the client's WebSocket failed");
                    let _ = provider.close(None).await;
                    break;
                }
                None => {
                    let _ = provider.close(None).await;
                    break;
                }
            },
            from_provider = provider.next() => match from_provider {
                Some(Ok(Message::Text(text))) => {
                    meter.observe(text.as_str()).await;
                    if client.send(Message::Text(text)).await.is_err() {
                        let _ = provider.close(None).await;
                        break;
                    }
                }
                Some(Ok(message @ Message::Binary(_))) => {
                    if client.send(message).await.is_err() {
                        let _ = provider.close(None).await;
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = client.close(frame).await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "the provider's WebSocket failed");
                    let _ = client.close(None).await;
                    break;
                }
                None => {
                    let _ = client.close(None).await;
                    break;
                }
            },
            () = &mut deadline => {
                tracing::info!("realtime session reached its hour");
                let _ = client.close(None).await;
                let _ = provider.close(None).await;
                break;
            }
        }
    }
    meter.close();
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
