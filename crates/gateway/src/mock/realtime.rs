//! The demo provider's Realtime API (`GET /v1/realtime` upgraded to a WebSocket), text only:
//! `session.created` on connect; `session.update` answered with `session.updated`;
//! `conversation.item.create` (text content) added to the conversation; each `response.create`
//! answered with `response.created`, the reply word by word (`response.output_text.delta`),
//! `response.output_text.done` and `response.done` with usage counted by the tokenizer (input:
//! instructions and conversation so far; output: the reply). Enough for OpenAI's SDKs to hold a
//! session through Tollgate, and for Tollgate to meter it.

use super::{id, reply_words};
use crate::tokens;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The most text the conversation keeps (older turns are dropped first).
const MAX_CONVERSATION: usize = 64 * 1024;

pub(super) async fn realtime(mut request: Request) -> Response {
    let key = request
        .headers()
        .get(axum::http::header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>();
    let (Some(accept), Some(upgrade)) = (key, upgrade) else {
        let error = json!({"error": {"message": "The Realtime API is a WebSocket.", "type": "invalid_request_error", "param": null, "code": null}});
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    };
    let model = request
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "model")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "gpt-realtime".to_owned());
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default().max_message_size(Some(16 << 20));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        session(socket, model).await;
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    headers.insert(
        axum::http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(axum::http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The text of a conversation item's content parts.
fn item_text(item: &Value) -> String {
    item["content"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str().or(p["transcript"].as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

async fn session<S>(mut socket: WebSocketStream<S>, model: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut session = json!({"id": id("sess_"), "object": "realtime.session", "type": "realtime",
        "model": model, "instructions": "", "output_modalities": ["text"]});
    let mut conversation: Vec<String> = Vec::new();
    let event = |kind: &str, mut body: Value| {
        body["type"] = json!(kind);
        body["event_id"] = json!(id("event_"));
        Message::text(body.to_string())
    };
    if socket
        .send(event("session.created", json!({"session": session})))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(client) = serde_json::from_str::<Value>(text.as_str()) else {
            let error = json!({"error": {"type": "invalid_request_error", "code": "invalid_json", "message": "The event is not JSON."}});
            let _ = socket.send(event("error", error)).await;
            continue;
        };
        let mut replies = Vec::new();
        match client["type"].as_str().unwrap_or_default() {
            "session.update" => {
                if let (Some(into), Some(from)) =
                    (session.as_object_mut(), client["session"].as_object())
                {
                    for (k, v) in from {
                        into.insert(k.clone(), v.clone());
                    }
                }
                replies.push(event("session.updated", json!({"session": session})));
            }
            "conversation.item.create" => {
                let mut item = client["item"].clone();
                if item["id"].is_null() {
                    item["id"] = json!(id("item_"));
                }
                conversation.push(item_text(&item));
                replies.push(event(
                    "conversation.item.created",
                    json!({"previous_item_id": null, "item": item}),
                ));
            }
            "response.create" => {
                let response_id = id("resp_");
                let item_id = id("item_");
                let last = conversation.last().cloned().unwrap_or_default();
                let words = reply_words(&json!({"input": last}));
                let reply = words.join(" ");
                let prompt = format!(
                    "{} {}",
                    session["instructions"].as_str().unwrap_or_default(),
                    conversation.join(" ")
                );
                let input = tokens::count(&prompt);
                let output = tokens::count(&reply);
                replies.push(event("response.created", json!({"response": {"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}})));
                for (i, word) in words.iter().enumerate() {
                    let delta = if i == 0 {
                        word.clone()
                    } else {
                        format!(" {word}")
                    };
                    replies.push(event("response.output_text.delta", json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta})));
                }
                replies.push(event("response.output_text.done", json!({"response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "text": reply})));
                replies.push(event("response.done", json!({"response": {"id": response_id, "object": "realtime.response", "status": "completed",
                    "output": [{"id": item_id, "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": reply}]}],
                    "usage": {"total_tokens": input + output, "input_tokens": input, "output_tokens": output,
                        "input_token_details": {"cached_tokens": 0, "text_tokens": input, "audio_tokens": 0},
                        "output_token_details": {"text_tokens": output, "audio_tokens": 0}}}})));
                conversation.push(reply);
                while conversation.iter().map(String::len).sum::<usize>() > MAX_CONVERSATION
                    && !conversation.is_empty()
                {
                    conversation.remove(0);
                }
            }
            other => {
                let error = json!({"error": {"type": "invalid_request_error", "code": "unknown_event", "message": format!("The demo provider does not simulate `{}` events.", other.chars().take(60).collect::<String>())}});
                replies.push(event("error", error));
            }
        }
        for reply in replies {
            if socket.send(reply).await.is_err() {
                return;
            }
        }
    }
}
