//! Forwarding to providers: the metered endpoints (chat completions, responses, completions,
//! embeddings) and the pass-through of every other `/v1/*` path, both streamed.

use crate::admission::{Admission, Ask};
use crate::error::GatewayError;
use crate::request::auth::{identified, Principal};
use crate::request::sse::SseMeter;
use crate::serve::connection::RequestId;
use crate::settings::UnpricedPolicy;
use crate::state::AppState;
use crate::tokens;
use crate::upstream::{client_headers, RequestBody, Upstream};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Instant;
use tollgate_core::pricing::Price;
use tollgate_core::usage::TokenUsage;
use tollgate_core::{Access, MicroUsd, Scope};
use tollgate_store::UsageEvent;

/// Largest non-streamed response body kept to read its usage; larger ones pass through unread.
const MAX_METERED_BODY: usize = 16 * 1024 * 1024;

/// An endpoint that bills tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    ChatCompletions,
    Responses,
    Completions,
    Embeddings,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::Completions,
        Endpoint::Embeddings,
    ];

    /// The endpoint a path names.
    pub(crate) fn at(path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    fn scope(self) -> Scope {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions => Scope::ChatCompletions,
            Endpoint::Responses => Scope::Responses,
            Endpoint::Embeddings => Scope::Embeddings,
        }
    }

    /// Whether the endpoint takes `stream_options.include_usage`.
    fn takes_stream_options(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }
}

/// The few request fields routing and metering need; everything else is left unparsed.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
}

/// The request as it will be sent: the body (rewritten only when it must be) and what the
/// client asked for.
struct Prepared {
    body: Bytes,
    model: String,
    stream: bool,
    client_wants_usage: bool,
    /// The most output tokens the request allows, when it says.
    max_output: Option<u64>,
}

fn prepare(
    endpoint: Endpoint,
    raw: &Bytes,
    served_model: impl FnOnce(&str) -> Result<String, GatewayError>,
) -> Result<Prepared, GatewayError> {
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(GatewayError::InvalidJson(
            "the body must be a JSON object".into(),
        ));
    }
    let head: Head =
        serde_json::from_slice(raw).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let model: String = head
        .model
        .and_then(|m| serde_json::from_str::<String>(m.get()).ok())
        .filter(|m| !m.is_empty())
        .ok_or(GatewayError::MissingModel)?;
    let served = served_model(&model)?;
    let stream = head.stream.unwrap_or(false);
    let options: serde_json::Map<String, serde_json::Value> = head
        .stream_options
        .and_then(|o| serde_json::from_str(o.get()).ok())
        .unwrap_or_default();
    let client_wants_usage = options
        .get("include_usage")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let max_output = [
        head.max_completion_tokens,
        head.max_tokens,
        head.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .find_map(|v| serde_json::from_str::<u64>(v.get()).ok());
    let add_usage = stream && endpoint.takes_stream_options() && !client_wants_usage;
    if served == model && !add_usage {
        return Ok(Prepared {
            body: raw.clone(),
            model: served,
            stream,
            client_wants_usage,
            max_output,
        });
    }
    let mut fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(raw).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    let to_raw = |v: &serde_json::Value| {
        RawValue::from_string(v.to_string()).map_err(|e| GatewayError::InvalidJson(e.to_string()))
    };
    fields.insert(
        "model".into(),
        to_raw(&serde_json::Value::String(served.clone()))?,
    );
    if add_usage {
        let mut options = options;
        options.insert("include_usage".into(), serde_json::Value::Bool(true));
        fields.insert(
            "stream_options".into(),
            to_raw(&serde_json::Value::Object(options))?,
        );
    }
    let body = serde_json::to_vec(&fields).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    Ok(Prepared {
        body: Bytes::from(body),
        model: served,
        stream,
        client_wants_usage,
        max_output,
    })
}

/// Reads a request body up to the configured limit.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| GatewayError::BodyTooLarge { limit })
}

/// A request's usage event in the making.
struct Meter {
    state: AppState,
    event: UsageEvent,
    price: Price,
    started: Instant,
    request: Bytes,
    /// The request's reservations against rate limits and budgets, settled with the usage.
    admission: Admission,
}

impl Meter {
    fn event(mut self, usage: TokenUsage, status: u16) -> (AppState, UsageEvent) {
        self.event.input_tokens = usage.input;
        self.event.cached_input_tokens = usage.cached_input;
        self.event.output_tokens = usage.output;
        self.event.reasoning_tokens = usage.reasoning;
        self.event.cost = self.price.cost(&usage);
        let tokens = usage.input.max(0).saturating_add(usage.output.max(0));
        std::mem::take(&mut self.admission).settle(tokens as u64, self.event.cost);
        self.event.status = status;
        self.event.latency_ms = self.started.elapsed().as_millis() as i64;
        (self.state, self.event)
    }

    async fn finish(self, usage: TokenUsage, status: u16) {
        let (state, event) = self.event(usage, status);
        state.usage.record(event).await;
    }

    /// For a response the client abandoned: bill what was produced, counted locally.
    fn abandon(self, delivered: &str) {
        let usage = TokenUsage {
            input: tokens::count_request(&self.request),
            cached_input: 0,
            output: tokens::count(delivered),
            reasoning: 0,
        };
        let (state, event) = self.event(usage, 499);
        tracing::info!(request_id = %event.request_id, output_tokens = event.output_tokens, "client disconnected; billed the delivered part");
        state.usage.record_detached(event);
    }
}

/// The response body: the provider's body passed through piece by piece, read on the way.
struct Relay {
    upstream: BoxStream<'static, std::io::Result<Bytes>>,
    sse: Option<SseMeter>,
    /// Copy of a non-streamed body, to read its usage at the end.
    copy: Option<BodyCopy>,
    meter: Option<Meter>,
    status: u16,
    /// Bytes still to come when the client was given the body's length: the client's
    /// connection stops reading the body at that length, so the last piece ends the metering.
    remaining: Option<u64>,
}

impl Relay {
    fn usage(&self) -> Option<TokenUsage> {
        if let Some(sse) = &self.sse {
            return sse.usage;
        }
        TokenUsage::from_body(self.copy.as_ref()?.bytes())
    }

    async fn end(&mut self) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        let usage = if self.status >= 400 {
            TokenUsage::default()
        } else {
            self.usage().unwrap_or_else(|| {
                let text = self.sse.as_ref().map(|s| s.text.as_str()).unwrap_or("");
                TokenUsage {
                    input: tokens::count_request(&meter.request),
                    cached_input: 0,
                    output: tokens::count(text),
                    reasoning: 0,
                }
            })
        };
        meter.finish(usage, self.status).await;
    }
}

/// A non-streamed body kept to read its usage: a body that arrives in one piece (the usual
/// case) is kept as that piece, shared with the client's copy; only one in several pieces is
/// gathered into a buffer of its own.
#[derive(Default)]
enum BodyCopy {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl BodyCopy {
    /// Adds a piece; false when the body would grow past [`MAX_METERED_BODY`].
    fn push(&mut self, chunk: &Bytes) -> bool {
        if self.bytes().len() + chunk.len() > MAX_METERED_BODY {
            return false;
        }
        *self = match std::mem::take(self) {
            BodyCopy::Empty => BodyCopy::One(chunk.clone()),
            BodyCopy::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + chunk.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(chunk);
                BodyCopy::Many(all)
            }
            BodyCopy::Many(mut all) => {
                all.extend_from_slice(chunk);
                BodyCopy::Many(all)
            }
        };
        true
    }

    fn bytes(&self) -> &[u8] {
        match self {
            BodyCopy::Empty => &[],
            BodyCopy::One(bytes) => bytes,
            BodyCopy::Many(bytes) => bytes,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            let text = self
                .sse
                .as_ref()
                .map(|s| s.text.clone())
                .unwrap_or_default();
            meter.abandon(&text);
        }
    }
}

fn relay_body(relay: Relay) -> Body {
    let relay_length = relay.remaining;
    let stream = futures_util::stream::unfold(Some(relay), |state| async move {
        let mut relay = state?;
        loop {
            match relay.upstream.next().await {
                Some(Ok(chunk)) => {
                    let out = match relay.sse.as_mut() {
                        Some(sse) => sse.push(&chunk),
                        None => {
                            if let Some(copy) = relay.copy.as_mut() {
                                if !copy.push(&chunk) {
                                    relay.copy = None;
                                }
                            }
                            chunk
                        }
                    };
                    if let Some(left) = relay.remaining.as_mut() {
                        *left = left.saturating_sub(out.len() as u64);
                        if *left == 0 {
                            relay.end().await;
                            return Some((Ok(out), None));
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out), Some(relay)));
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "the provider's response broke off");
                    relay.end().await;
                    return Some((Err(err), None));
                }
                None => {
                    let rest = relay.sse.as_mut().map(SseMeter::finish).unwrap_or_default();
                    relay.end().await;
                    return if rest.is_empty() {
                        None
                    } else {
                        Some((Ok(rest), None))
                    };
                }
            }
        }
    });
    Body::new(RelayBody {
        length: relay_length,
        stream: Box::pin(stream),
    })
}

/// The relayed body as the client receives it: with the provider's length when the body passes
/// unchanged, so the client gets a `content-length` (as OpenAI sends) instead of a chunked body.
struct RelayBody {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<Bytes>> + Send>>,
    length: Option<u64>,
}

impl hyper::body::Body for RelayBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.stream
            .as_mut()
            .poll_next(cx)
            .map(|chunk| chunk.map(|chunk| chunk.map(hyper::body::Frame::data)))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.length
            .map(hyper::body::SizeHint::with_exact)
            .unwrap_or_default()
    }
}

/// The length a provider's response declares for its body, when it is framed by one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    if headers.contains_key(axum::http::header::TRANSFER_ENCODING) {
        return None;
    }
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// What to send a provider.
struct Outgoing<'a> {
    method: Method,
    path_and_query: &'a str,
    headers: HeaderMap,
    body: RequestBody,
}

/// Sends `request` and relays the provider's answer, metering it whatever happens. `reading`
/// says, from whether the answer is an event stream, how to read it on the way: an SSE meter,
/// and whether to keep a copy of the body for its usage.
async fn forward(
    upstream: &Upstream,
    request: Outgoing<'_>,
    meter: Meter,
    reading: impl FnOnce(bool) -> (Option<SseMeter>, bool),
) -> Result<Response, GatewayError> {
    // A body the client will not get (HEAD) or that Tollgate rewrites (SSE) has no length to
    // pass on.
    let is_head = request.method == Method::HEAD;
    let response = match upstream
        .send(
            request.method,
            request.path_and_query,
            request.headers,
            request.body,
        )
        .await
    {
        Ok(response) => response,
        Err(err) => {
            meter.finish(TokenUsage::default(), 502).await;
            return Err(err.into());
        }
    };
    let status = response.status;
    let is_sse = response
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let (sse, copy) = reading(is_sse);
    // An empty body stays unframed: the client's connection would never ask for it, and the
    // metering runs when the body is read to its end.
    let length = if sse.is_none() && !is_head {
        declared_length(&response.headers).filter(|&length| length > 0)
    } else {
        None
    };
    let mut headers = client_headers(response.headers);
    meter.admission.headers().apply(&mut headers);
    let relay = Relay {
        upstream: response.body,
        sse,
        copy: copy.then(BodyCopy::default),
        meter: Some(meter),
        status: status.as_u16(),
        remaining: length,
    };
    let mut reply = Response::new(relay_body(relay));
    *reply.status_mut() = status;
    *reply.headers_mut() = headers;
    Ok(reply)
}

pub(crate) struct Call {
    pub state: AppState,
    pub principal: Principal,
    pub request_id: RequestId,
}

impl Call {
    /// The call of an authenticated request; its id is moved out of the request's extensions,
    /// where the connection put it.
    fn new(state: AppState, principal: Principal, extensions: &mut axum::http::Extensions) -> Call {
        let request_id = extensions
            .remove::<RequestId>()
            .unwrap_or_else(|| RequestId(crate::serve::connection::new_request_id()));
        Call {
            state,
            principal,
            request_id,
        }
    }

    /// Checks the request against every rate limit and budget that applies. `estimate` gives
    /// the tokens to reserve and the most the request can cost; it is only worked out (the
    /// prompt counted) when a token limit or a budget applies.
    fn admit(
        &self,
        model: Option<(&str, &str)>,
        subject: &str,
        estimate: impl FnOnce() -> (u64, MicroUsd),
    ) -> Result<Admission, GatewayError> {
        let key = &self.principal.key.key;
        let plan = self.state.limits.plan(&Ask {
            org: key.org_id.as_str(),
            project: key.project_id.as_ref().map(|p| p.as_str()),
            key: key.id.as_str(),
            model,
        });
        if plan.is_empty() {
            return Ok(Admission::default());
        }
        let (tokens, most) = if plan.needs_estimate() {
            estimate()
        } else {
            (0, MicroUsd::ZERO)
        };
        self.state.limits.admit(plan, tokens, most, subject)
    }

    fn event(&self, endpoint: &str, requested: &str, served: &str) -> UsageEvent {
        let key = &self.principal.key.key;
        UsageEvent {
            request_id: self.request_id.0.clone(),
            org_id: key.org_id.clone(),
            project_id: key
                .project_id
                .clone()
                .unwrap_or_else(|| tollgate_core::ProjectId::from_trusted(String::new())),
            key_id: key.id.clone(),
            model_requested: requested.to_owned(),
            model_served: served.to_owned(),
            endpoint: endpoint.to_owned(),
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost: tollgate_core::MicroUsd::ZERO,
            status: 0,
            latency_ms: 0,
            client_ip: Some(tollgate_core::network::ip_text(self.principal.client_ip)),
            created_at: self.state.clock.now(),
        }
    }
}

/// A metered endpoint: route by model, forward, stream back, meter.
pub(crate) async fn metered(
    call: Call,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    call.principal.require(endpoint.scope(), Access::Write)?;
    let raw = read_body(body, &headers, call.state.settings.max_body_bytes).await?;
    let routes = call.state.catalog.routes();
    let mut provider = 0;
    let mut requested = String::new();
    let prepared = prepare(endpoint, &raw, |model| {
        requested = model.to_owned();
        let resolved = routes
            .resolve(model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        provider = resolved.provider;
        Ok(resolved.model)
    })?;
    call.principal.check_model(&requested, &prepared.model)?;
    let price = match (
        call.state.settings.pricing.price(&prepared.model),
        call.state.settings.unpriced,
    ) {
        (Some(price), _) => price,
        (None, UnpricedPolicy::Fallback(price)) => price,
        (None, UnpricedPolicy::Refuse) => return Err(GatewayError::ModelNotPriced(prepared.model)),
    };
    let upstream: &Upstream = call
        .state
        .upstreams
        .get(provider)
        .ok_or_else(|| GatewayError::ModelNotFound(requested.clone()))?;
    let mut outgoing_headers = upstream.headers(&headers, true);
    outgoing_headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let request = Outgoing {
        method: Method::POST,
        path_and_query: endpoint.path(),
        headers: outgoing_headers,
        body: RequestBody::Full(prepared.body.clone()),
    };
    let admission = call.admit(Some((&requested, &prepared.model)), &prepared.model, || {
        let input = tokens::count_request(&raw).max(0) as u64;
        let output = match endpoint {
            Endpoint::Embeddings => 0,
            _ => prepared
                .max_output
                .unwrap_or(call.state.settings.default_max_output_tokens),
        };
        let most = price.cost(&TokenUsage {
            input: input as i64,
            cached_input: 0,
            output: i64::try_from(output).unwrap_or(i64::MAX),
            reasoning: 0,
        });
        (input.saturating_add(output), most)
    })?;
    let meter = Meter {
        state: call.state.clone(),
        event: call.event(endpoint.path(), &requested, &prepared.model),
        price,
        started,
        request: raw,
        admission,
    };
    let stream = prepared.stream;
    let withhold = !prepared.client_wants_usage;
    forward(upstream, request, meter, |is_sse| {
        ((is_sse && stream).then(|| SseMeter::new(withhold)), !is_sse)
    })
    .await
}

/// Any other `/v1/*` request: forwarded to the default provider with both bodies streamed.
pub(crate) async fn pass_through(call: Call, request: Request) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let scope = scope_of(parts.uri.path());
    let access = if parts.method == Method::GET || parts.method == Method::HEAD {
        Access::Read
    } else {
        Access::Write
    };
    call.principal.require(scope, access)?;
    let upstream = call
        .state
        .upstreams
        .first()
        .ok_or_else(|| GatewayError::UnknownRoute {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        })?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/v1");
    // The body as the client framed it: nothing, a known length, or a stream (chunked, or
    // HTTP/2 without a length).
    let has_body = !axum::body::HttpBody::is_end_stream(&body);
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let request = Outgoing {
        method: parts.method.clone(),
        path_and_query,
        headers: upstream.headers(&parts.headers, false),
        body: if has_body {
            RequestBody::Stream {
                length,
                stream: body
                    .into_data_stream()
                    .map_err(std::io::Error::other)
                    .boxed(),
            }
        } else {
            RequestBody::Empty
        },
    };
    let admission = call.admit(None, parts.uri.path(), || (0, MicroUsd::ZERO))?;
    let meter = Meter {
        state: call.state.clone(),
        admission,
        event: call.event(parts.uri.path(), "", ""),
        price: Price {
            input: 0,
            cached_input: 0,
            output: 0,
        },
        started,
        request: Bytes::new(),
    };
    forward(upstream, request, meter, |_| (None, false)).await
}

/// The permission group of a pass-through path.
fn scope_of(path: &str) -> Scope {
    let rest = path.trim_start_matches("/v1/");
    let first = rest.split('/').next().unwrap_or("");
    match first {
        "files" | "uploads" | "vector_stores" => Scope::Files,
        "images" => Scope::Images,
        "audio" => Scope::Audio,
        "moderations" => Scope::Moderations,
        "batches" => Scope::Batches,
        "fine_tuning" => Scope::FineTuning,
        "models" => Scope::Models,
        "responses" => Scope::Responses,
        "embeddings" => Scope::Embeddings,
        _ => Scope::ChatCompletions,
    }
}

/// A metered endpoint's `POST`, for an authenticated caller.
pub(crate) async fn serve_metered(
    state: AppState,
    principal: Principal,
    endpoint: Endpoint,
    request: Request,
) -> Response {
    let key = principal.key.clone();
    let (mut parts, body) = request.into_parts();
    let call = Call::new(state, principal, &mut parts.extensions);
    identified(&key, metered(call, endpoint, parts.headers, body).await)
}

pub(crate) async fn other(
    State(state): State<AppState>,
    principal: Principal,
    mut request: Request,
) -> Response {
    let key = principal.key.clone();
    let call = Call::new(state, principal, request.extensions_mut());
    identified(&key, pass_through(call, request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(model: &str) -> Result<String, GatewayError> {
        Ok(if model == "fast" {
            "gpt-4o-mini".into()
        } else {
            model.into()
        })
    }

    #[test]
    fn the_metered_endpoints_are_found_by_exact_path() {
        for endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::at(endpoint.path()), Some(endpoint));
        }
        for other in [
            "/v1/chat/completions/",
            "/v1/responses/resp_1",
            "/v1/models",
            "/v1",
            "/chat/completions",
        ] {
            assert_eq!(Endpoint::at(other), None, "{other}");
        }
    }

    #[test]
    fn a_body_copy_keeps_one_piece_shared_and_gathers_several() {
        let mut copy = BodyCopy::default();
        let first = Bytes::from_static(br#"{"usage":"#);
        assert!(copy.push(&first));
        assert!(
            matches!(&copy, BodyCopy::One(piece) if piece.as_ptr() == first.as_ptr()),
            "one piece is shared, not copied"
        );
        assert!(copy.push(&Bytes::from_static(br#"{"prompt_tokens":3}"#)));
        assert!(copy.push(&Bytes::from_static(b"}")));
        assert_eq!(copy.bytes(), br#"{"usage":{"prompt_tokens":3}}"#);
        let huge = Bytes::from(vec![b' '; MAX_METERED_BODY]);
        assert!(!copy.push(&huge), "a body past the limit is not kept");
    }

    #[test]
    fn untouched_requests_are_forwarded_byte_for_byte() {
        let raw = Bytes::from_static(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],  "temperature":0.2}"#);
        let prepared = prepare(Endpoint::ChatCompletions, &raw, served)
            .ok()
            .map(|p| p.body);
        assert_eq!(prepared, Some(raw));
    }

    #[test]
    fn streaming_gets_include_usage_and_aliases_are_rewritten() {
        let raw = Bytes::from_static(br#"{"model":"fast","stream":true,"stream_options":{"include_obfuscation":false},"messages":[]}"#);
        let prepared =
            prepare(Endpoint::ChatCompletions, &raw, served).unwrap_or_else(|_| unreachable!());
        let sent: serde_json::Value = serde_json::from_slice(&prepared.body).unwrap_or_default();
        assert_eq!(sent["model"], "gpt-4o-mini");
        assert_eq!(
            sent["stream_options"],
            serde_json::json!({"include_obfuscation": false, "include_usage": true})
        );
        assert!(!prepared.client_wants_usage);
        let asked = Bytes::from_static(
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}"#,
        );
        let prepared =
            prepare(Endpoint::ChatCompletions, &asked, served).unwrap_or_else(|_| unreachable!());
        assert!(prepared.client_wants_usage);
        assert_eq!(prepared.body, asked);
        let responses = Bytes::from_static(br#"{"model":"gpt-4o","stream":true,"input":"x"}"#);
        assert_eq!(
            prepare(Endpoint::Responses, &responses, served)
                .map(|p| p.body)
                .ok(),
            Some(responses),
            "responses takes no stream_options"
        );
    }

    #[test]
    fn bad_bodies_are_named() {
        for (raw, expected) in [
            (&b"{not json"[..], "InvalidJson"),
            (b"{\"messages\":[]}", "MissingModel"),
            (b"{\"model\":42}", "MissingModel"),
            (b"[]", "InvalidJson"),
        ] {
            let err = prepare(
                Endpoint::ChatCompletions,
                &Bytes::copy_from_slice(raw),
                served,
            )
            .err()
            .map(|e| format!("{e:?}"))
            .unwrap_or_default();
            assert!(
                err.starts_with(expected),
                "{err} for {}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
