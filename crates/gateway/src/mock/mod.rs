//! The demo provider: a simulated OpenAI-compatible server that Tollgate runs on a loopback port
//! inside its own process (`tollgate serve --demo`, or a provider with `type = "mock"`). Replies
//! are deterministic text marked `[simulated]`, usage is counted with the real tokenizer, and
//! streams send one word per event with a configurable delay. A request with `tools` gets a call
//! of its first function. `/v1/realtime` holds text-only Realtime sessions (`realtime`).
//!
//! With the `test-hooks` cargo feature (tests and the SDK suites build with it; release builds
//! do not), it is also the tests' fake upstream: it keeps the last 1,000 requests it received
//! ([`MockProvider::requests`]), the `x-mock-fail` request header
//! makes it answer with an error (`500`, `429`) or hang (`slow`); a last message containing
//! `litellm-usage` gets the usage chunk in LiteLLM's shape (`choices: [{"index":0,"delta":{}}]`)
//! and one containing `linger-after-done` keeps the stream open a second after `[DONE]`; one
//! containing `endless-event` streams a single event that never ends (64 KiB pieces, at most
//! 256 MiB), as a broken or hostile provider would; `x-mock-omit-id` makes any other path's
//! answer an object without an `id`.

mod objects;
mod realtime;

use crate::tokens;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use objects::Objects;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
#[cfg(feature = "test-hooks")]
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tollgate_core::objects::ObjectKind;

/// The models the demo provider serves unless told otherwise.
pub const DEMO_MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o4-mini",
    "text-embedding-3-small",
    "gpt-realtime",
];

#[derive(Debug, Clone)]
pub struct MockSettings {
    pub models: Vec<String>,
    /// Pause between two streamed words.
    pub token_delay: Duration,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            models: DEMO_MODELS.iter().map(|m| m.to_string()).collect(),
            token_delay: Duration::from_millis(20),
        }
    }
}

/// A request the mock received, for tests to inspect.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
struct MockState {
    settings: Arc<MockSettings>,
    #[cfg(feature = "test-hooks")]
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    cut_off: Arc<AtomicUsize>,
    objects: Arc<Objects>,
}

/// Counts a stream that was dropped before its last event (the caller went away).
struct StreamGuard {
    finished: bool,
    cut_off: Arc<AtomicUsize>,
}

impl StreamGuard {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.cut_off.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A running demo provider.
#[derive(Debug)]
pub struct MockProvider {
    addr: SocketAddr,
    #[cfg(feature = "test-hooks")]
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    cut_off: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

impl MockProvider {
    /// Starts serving on `127.0.0.1` at a free port.
    pub async fn start(settings: MockSettings) -> std::io::Result<MockProvider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        #[cfg(feature = "test-hooks")]
        let seen = Arc::new(Mutex::new(Vec::new()));
        let cut_off = Arc::new(AtomicUsize::new(0));
        let state = MockState {
            settings: Arc::new(settings),
            #[cfg(feature = "test-hooks")]
            seen: seen.clone(),
            cut_off: cut_off.clone(),
            objects: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat).get(echo))
            .route("/v1/completions", post(completions))
            .route("/v1/responses", post(responses))
            .route("/v1/responses/compact", post(compact))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/realtime", get(realtime::realtime))
            .fallback(echo)
            .with_state(state);
        let (stop, mut stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.changed().await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %err, "the demo provider stopped");
            }
        });
        Ok(MockProvider {
            addr,
            #[cfg(feature = "test-hooks")]
            seen,
            cut_off,
            stop,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many streamed answers were cut off because the caller went away.
    pub fn streams_cut_off(&self) -> usize {
        self.cut_off.load(Ordering::SeqCst)
    }

    /// The requests received so far (the last 1,000).
    #[cfg(feature = "test-hooks")]
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn remember(state: &MockState, uri: &Uri, headers: &HeaderMap, body: &Value) {
    remember_call(state, "POST", uri, headers, body);
}

#[cfg(not(feature = "test-hooks"))]
fn remember_call(_: &MockState, _: &str, _: &Uri, _: &HeaderMap, _: &Value) {}

#[cfg(feature = "test-hooks")]
fn remember_call(state: &MockState, method: &str, uri: &Uri, headers: &HeaderMap, body: &Value) {
    if let Ok(mut seen) = state.seen.lock() {
        if seen.len() >= 1_000 {
            seen.remove(0);
        }
        seen.push(SeenRequest {
            method: method.to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: headers.clone(),
            body: body.clone(),
        });
    }
}

/// Whether a test asked for an answer without an object id (`x-mock-omit-id`), as a broken
/// provider might give to a create call: never, without the test hooks.
#[cfg(not(feature = "test-hooks"))]
fn omits_id(_: &HeaderMap) -> bool {
    false
}

#[cfg(feature = "test-hooks")]
fn omits_id(headers: &HeaderMap) -> bool {
    headers.contains_key("x-mock-omit-id")
}

/// The failure a test asked for: never, without the test hooks.
#[cfg(not(feature = "test-hooks"))]
async fn injected_failure(_: &HeaderMap) -> Option<Response> {
    None
}

/// The failure a test asked for, if any.
#[cfg(feature = "test-hooks")]
async fn injected_failure(headers: &HeaderMap) -> Option<Response> {
    match headers.get("x-mock-fail").and_then(|v| v.to_str().ok())? {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            None
        }
        "429" => Some(
            (axum::http::StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7"), ("x-ratelimit-limit-requests", "3")], Json(json!({"error": {"message": "Rate limit reached for demo on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})))
                .into_response(),
        ),
        _ => Some((axum::http::StatusCode::INTERNAL_SERVER_ERROR, [("retry-after", "1")], Json(json!({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": null, "code": null}}))).into_response()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn id(prefix: &str) -> String {
    format!("{prefix}{}", tollgate_core::ids::random_base62(24))
}

/// The simulated reply, cut to `max_tokens` words.
fn reply_words(body: &Value) -> Vec<String> {
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].clone())
        .or_else(|| Some(body["input"].clone()))
        .unwrap_or(Value::Null);
    let prompt = match &prompt {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let shown: String = prompt.chars().take(40).collect();
    let text = format!("[simulated] This is Tollgate's demo provider answering \"{shown}\". No model was called; the text and token counts are produced locally so you can see the whole flow.");
    let limit = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .find_map(|k| body[*k].as_u64())
        .unwrap_or(u64::MAX) as usize;
    text.split(' ')
        .take(limit.max(1))
        .map(str::to_owned)
        .collect()
}

fn model_of(body: &Value) -> String {
    body["model"].as_str().unwrap_or("gpt-4o-mini").to_owned()
}

fn chat_usage(prompt: i64, completion: i64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
}

/// An event stream of `events` (then `data: [DONE]` when `done`), one every `token_delay`; the
/// body ends `linger` after the last event.
fn sse(
    state: &MockState,
    events: Vec<(Option<&'static str>, Value)>,
    done: bool,
    linger: Duration,
) -> Response {
    let delay = state.settings.token_delay;
    let guard = StreamGuard {
        finished: false,
        cut_off: state.cut_off.clone(),
    };
    let stream = futures_util::stream::unfold(
        (events.into_iter(), false, done, guard),
        move |(mut events, started, done, guard)| async move {
            if started {
                tokio::time::sleep(delay).await;
            }
            match events.next() {
                Some((name, data)) => {
                    let text = match name {
                        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
                        None => format!("data: {data}\n\n"),
                    };
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(text)),
                        (events, true, done, guard),
                    ))
                }
                None if done => Some((
                    Ok(Bytes::from_static(b"data: [DONE]\n\n")),
                    (events, true, false, guard),
                )),
                None => {
                    tokio::time::sleep(linger).await;
                    guard.finish();
                    None
                }
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    response.headers_mut().insert(
        "x-tollgate-simulated",
        axum::http::HeaderValue::from_static("true"),
    );
    response
}

fn simulated(value: Value) -> Response {
    let mut response = Json(value).into_response();
    response.headers_mut().insert(
        "x-tollgate-simulated",
        axum::http::HeaderValue::from_static("true"),
    );
    response
}

async fn models(State(state): State<MockState>, uri: Uri, headers: HeaderMap) -> Response {
    remember_call(&state, "GET", &uri, &headers, &Value::Null);
    let data: Vec<Value> = state.settings.models.iter().map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "tollgate-demo"})).collect();
    simulated(json!({"object": "list", "data": data}))
}

async fn chat(
    State(state): State<MockState>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    remember(&state, &uri, &headers, &body);
    if let Some(failure) = injected_failure(&headers).await {
        return failure;
    }
    let words = reply_words(&body);
    let call = tool_call(&body);
    let text = match &call {
        Some(_) => String::new(),
        None => words.join(" "),
    };
    let prompt = tokens::count_request(&serde_json::to_vec(&body).unwrap_or_default());
    let completion = match &call {
        Some((name, arguments)) => tokens::count(name) + tokens::count(arguments),
        None => tokens::count(&text),
    };
    let (id, created, model) = (id("chatcmpl-"), now(), model_of(&body));
    if body["store"].as_bool() == Some(true) {
        state.objects.keep(
            ObjectKind::ChatCompletion,
            json!({"id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "metadata": body.get("metadata").cloned().unwrap_or(json!({}))}),
        );
    }
    let call_id = id_for_call();
    let finish = if call.is_some() { "tool_calls" } else { "stop" };
    if body["stream"].as_bool() != Some(true) {
        let message = match &call {
            Some((name, arguments)) => {
                json!({"role": "assistant", "content": null, "refusal": null, "annotations": [],
                "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]})
            }
            None => {
                json!({"role": "assistant", "content": text, "refusal": null, "annotations": []})
            }
        };
        return simulated(
            json!({"id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": chat_usage(prompt, completion), "service_tier": "default", "system_fingerprint": "tollgate-demo"}),
        );
    }
    if asks_for(&body, "endless-event") {
        return endless_event(&state);
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "service_tier": "default", "system_fingerprint": "tollgate-demo",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        (None, c)
    };
    let mut events = Vec::new();
    match &call {
        Some((name, arguments)) => {
            events.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for piece in pieces(arguments) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    Value::Null,
                ));
            }
        }
        None => {
            events.push(chunk(
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            ));
            for (i, word) in words.iter().enumerate() {
                let piece = if i == 0 {
                    word.clone()
                } else {
                    format!(" {word}")
                };
                events.push(chunk(json!({"content": piece}), Value::Null));
            }
        }
    }
    events.push(chunk(json!({}), json!(finish)));
    if include_usage {
        // LiteLLM writes the usage chunk with a choice holding an empty delta.
        let choices = if asks_for(&body, "litellm-usage") {
            json!([{"index": 0, "delta": {}}])
        } else {
            json!([])
        };
        events.push((None, json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "service_tier": "default", "system_fingerprint": "tollgate-demo", "choices": choices, "usage": chat_usage(prompt, completion)})));
    }
    let linger = if asks_for(&body, "linger-after-done") {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    sse(&state, events, true, linger)
}

/// One server-sent event that never ends: `data: ` and then 64 KiB pieces of `x` with no blank
/// line, up to 256 MiB.
fn endless_event(state: &MockState) -> Response {
    use futures_util::StreamExt;
    let guard = StreamGuard {
        finished: false,
        cut_off: state.cut_off.clone(),
    };
    let piece = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::iter(
        std::iter::once(Bytes::from_static(b"data: "))
            .chain(std::iter::repeat_n(piece, 4 * 1024))
            .map(Ok::<Bytes, std::io::Error>),
    )
    .chain(futures_util::stream::once(async move {
        guard.finish();
        Ok(Bytes::new())
    }));
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Whether the last message (or input) mentions `word`: the demo's test triggers (never,
/// without the test hooks).
#[cfg(not(feature = "test-hooks"))]
fn asks_for(_: &Value, _: &str) -> bool {
    false
}

/// Whether the last message (or input) mentions `word`: the demo's test triggers.
#[cfg(feature = "test-hooks")]
fn asks_for(body: &Value, word: &str) -> bool {
    let last = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["content"].to_string())
        .unwrap_or_else(|| body["input"].to_string());
    last.contains(word)
}

/// The call the demo makes when a request offers tools (and does not forbid them): its first
/// function, with the prompt's first words as the argument.
fn tool_call(body: &Value) -> Option<(String, String)> {
    if body["tool_choice"] == "none" {
        return None;
    }
    let tool = body["tools"].as_array()?.first()?;
    let name = tool["function"]["name"]
        .as_str()
        .or_else(|| tool["name"].as_str())?
        .to_owned();
    let words = reply_words(body);
    let argument: Vec<&str> = words.iter().skip(1).take(6).map(String::as_str).collect();
    let arguments = json!({"input": argument.join(" ")}).to_string();
    Some((name, arguments))
}

/// A streamed string in pieces of a few characters, as models stream tool arguments.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(6).map(|c| c.iter().collect()).collect()
}

fn id_for_call() -> String {
    id("call_")
}

async fn completions(
    State(state): State<MockState>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    remember(&state, &uri, &headers, &body);
    if let Some(failure) = injected_failure(&headers).await {
        return failure;
    }
    let words = reply_words(&json!({"input": body["prompt"], "max_tokens": body["max_tokens"]}));
    let text = words.join(" ");
    let prompt = tokens::count_request(&serde_json::to_vec(&body).unwrap_or_default());
    let (id, created, model) = (id("cmpl-"), now(), model_of(&body));
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": tokens::count(&text), "total_tokens": prompt + tokens::count(&text)});
    if body["stream"].as_bool() != Some(true) {
        return simulated(
            json!({"id": id, "object": "text_completion", "created": created, "model": model, "system_fingerprint": "tollgate-demo",
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}], "usage": usage}),
        );
    }
    let include_usage = body["stream_options"]["include_usage"].as_bool() == Some(true);
    let mut events: Vec<(Option<&'static str>, Value)> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (None, json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": [{"text": if i == 0 { w.clone() } else { format!(" {w}") }, "index": 0, "logprobs": null, "finish_reason": null}]})))
        .collect();
    if include_usage {
        events.push((None, json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": [], "usage": usage})));
    }
    sse(&state, events, true, Duration::ZERO)
}

async fn responses(
    State(state): State<MockState>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    remember(&state, &uri, &headers, &body);
    if let Some(failure) = injected_failure(&headers).await {
        return failure;
    }
    let words = reply_words(&body);
    let call = tool_call(&body);
    let text = words.join(" ");
    let input = tokens::count_request(&serde_json::to_vec(&body).unwrap_or_default());
    let output = match &call {
        Some((name, arguments)) => tokens::count(name) + tokens::count(arguments),
        None => tokens::count(&text),
    };
    let (resp_id, item_id, created, model) = (
        id("resp_"),
        id(if call.is_some() { "fc_" } else { "msg_" }),
        now(),
        model_of(&body),
    );
    let call_id = id_for_call();
    // The finished output item, and the same item as it starts.
    let item = |done: bool| match &call {
        Some((name, arguments)) => {
            json!({"type": "function_call", "id": item_id, "call_id": call_id, "name": name,
            "arguments": if done { arguments.as_str() } else { "" }, "status": if done { "completed" } else { "in_progress" }})
        }
        None => {
            json!({"type": "message", "id": item_id, "status": if done { "completed" } else { "in_progress" }, "role": "assistant",
            "content": if done { json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]) } else { json!([]) }})
        }
    };
    let response = |status: &str, output_items: Value, usage: Value| {
        json!({"id": resp_id, "object": "response", "created_at": created, "status": status, "background": false, "error": null, "incomplete_details": null,
            "instructions": body.get("instructions").cloned().unwrap_or(Value::Null), "max_output_tokens": body.get("max_output_tokens").cloned().unwrap_or(Value::Null),
            "model": model, "output": output_items, "parallel_tool_calls": true, "previous_response_id": null, "reasoning": {"effort": null, "summary": null},
            "service_tier": "default", "store": true, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
            "tools": body.get("tools").cloned().unwrap_or(json!([])),
            "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": null, "metadata": {}})
    };
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output});
    if let Some(previous) = body["previous_response_id"].as_str() {
        if !state.objects.has(ObjectKind::Response, previous) {
            return objects::not_found(ObjectKind::Response, previous, "previous_response_id");
        }
    }
    if body["store"].as_bool() != Some(false) {
        let mut stored = response("completed", json!([item(true)]), usage.clone());
        stored["previous_response_id"] = body["previous_response_id"].clone();
        state.objects.keep(ObjectKind::Response, stored);
    }
    if body["stream"].as_bool() != Some(true) {
        return simulated(response("completed", json!([item(true)]), usage));
    }
    let mut seq = 0;
    let mut next = |name: &'static str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        (Some(name), data)
    };
    let mut events = vec![
        next(
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        next(
            "response.in_progress",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        next(
            "response.output_item.added",
            json!({"output_index": 0, "item": item(false)}),
        ),
    ];
    match &call {
        Some((_, arguments)) => {
            for piece in pieces(arguments) {
                events.push(next(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                ));
            }
            events.push(next(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": 0, "arguments": arguments}),
            ));
        }
        None => {
            events.push(next("response.content_part.added", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})));
            for (i, word) in words.iter().enumerate() {
                let piece = if i == 0 {
                    word.clone()
                } else {
                    format!(" {word}")
                };
                events.push(next("response.output_text.delta", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []})));
            }
            events.push(next("response.output_text.done", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []})));
            events.push(next("response.content_part.done", json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}})));
        }
    }
    events.push(next(
        "response.output_item.done",
        json!({"output_index": 0, "item": item(true)}),
    ));
    events.push(next(
        "response.completed",
        json!({"response": response("completed", json!([item(true)]), usage)}),
    ));
    let linger = if asks_for(&body, "linger-after-done") {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    sse(&state, events, false, linger)
}

/// `POST /v1/responses/compact`: the input kept as one message, with a usage of its own.
async fn compact(
    State(state): State<MockState>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    remember(&state, &uri, &headers, &body);
    if let Some(failure) = injected_failure(&headers).await {
        return failure;
    }
    let words = reply_words(&body);
    let text = words.join(" ");
    let input = tokens::count_request(&serde_json::to_vec(&body).unwrap_or_default());
    let output = tokens::count(&text);
    simulated(
        json!({"id": id("resp_"), "object": "response.compaction", "created_at": now(),
        "output": [{"type": "message", "id": id("msg_"), "status": "completed", "role": "user", "content": [{"type": "input_text", "text": text}]}],
        "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output}}),
    )
}

async fn embeddings(
    State(state): State<MockState>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    remember(&state, &uri, &headers, &body);
    if let Some(failure) = injected_failure(&headers).await {
        return failure;
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect(),
        other => vec![other.to_string()],
    };
    let dims = body["dimensions"].as_u64().unwrap_or(256).clamp(1, 3_072) as usize;
    let base64 = body["encoding_format"].as_str() == Some("base64");
    let mut prompt = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            prompt += tokens::count(text);
            let vector = pseudo_embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    simulated(
        json!({"object": "list", "data": data, "model": model_of(&body), "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}),
    )
}

/// Any other path: an object collection's answer (see `objects`), or 200 with what was
/// received, so pass-through can be observed.
async fn echo(
    State(state): State<MockState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value = json!({"method": method.as_str(), "path": uri.path(), "query": uri.query(), "bytes": body.len()});
    remember_call(&state, method.as_str(), &uri, &headers, &value);
    if let Some(failure) = injected_failure(&headers).await {
        return failure;
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if omits_id(&headers) {
        return simulated(json!({"object": "unknown", "status": "created"}));
    }
    if let Some(answer) = state
        .objects
        .serve(&method, uri.path(), uri.query(), content_type, &body)
    {
        return answer;
    }
    simulated(json!({"object": "tollgate.mock.echo", "received": value}))
}

/// A unit vector that depends only on the text.
fn pseudo_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = pseudo_embedding("hello", 64);
        assert_eq!(a, pseudo_embedding("hello", 64));
        assert_ne!(a, pseudo_embedding("hellp", 64));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
