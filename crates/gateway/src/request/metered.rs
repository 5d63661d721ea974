//! A metered endpoint (chat completions, responses, completions, embeddings): the head
//! admitted against the limits it can decide (request rates, concurrency), the body read
//! (bounded, and held against the gateway's body budget) and its few routing fields parsed,
//! the model routed and checked against the key's allow-lists, the rest of admission (token
//! limits, budgets), then forwarded and metered.

use crate::body_budget::{BodyBudget, BodyBytes};
use crate::error::GatewayError;
use crate::request::call::Call;
use crate::request::forward::{forward, metered_reading, Outgoing};
use crate::request::meter::Meter;
use crate::request::tenancy::Tenant;
use crate::settings::UnpricedPolicy;
use crate::tokens;
use crate::upstream::{RequestBody, Upstream};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Instant;
use tollgate_core::endpoints::Endpoint;
use tollgate_core::objects::{self, ObjectKind};
use tollgate_core::usage::TokenUsage;
use tollgate_core::Access;

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
    /// Whether the provider keeps the answer (`store`; responses do unless told not to).
    #[serde(default)]
    store: Option<bool>,
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
    /// The request's `store`, when it says.
    store: Option<bool>,
}

/// `end_user`: a client token's end-user id, sent as the request's `user` (replacing the
/// client's own: the minting server, not the browser, says who the user is).
fn prepare(
    endpoint: Endpoint,
    raw: &Bytes,
    end_user: Option<&str>,
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
    if served == model && !add_usage && end_user.is_none() {
        return Ok(Prepared {
            body: raw.clone(),
            model: served,
            stream,
            client_wants_usage,
            max_output,
            store: head.store,
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
    if let Some(user) = end_user {
        fields.insert(
            "user".into(),
            to_raw(&serde_json::Value::String(user.to_owned()))?,
        );
    }
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
        store: head.store,
    })
}

/// Largest declared body read to name the model in a refusal decided on the request's head.
const NAMED_REFUSAL_BYTES: usize = 64 * 1024;

/// How long such a body may take to arrive before the refusal goes out without the name.
const NAMED_REFUSAL_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A request body, read or not yet.
enum MaybeRead {
    Unread(Body),
    Read((Bytes, BodyBytes)),
}
use MaybeRead::{Read, Unread};

/// The body length a request declares.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// The model a body names, if it is a JSON object that names one.
fn requested_model(raw: &[u8]) -> Option<String> {
    let head: Head = serde_json::from_slice(raw).ok()?;
    serde_json::from_str::<String>(head.model?.get())
        .ok()
        .filter(|m| !m.is_empty())
}

/// The request prepared, with the model it asked for and the provider it is routed to.
fn routed(
    endpoint: Endpoint,
    raw: &Bytes,
    end_user: Option<&str>,
    routes: &tollgate_core::routing::RouteTable,
) -> Result<(Prepared, String, usize), GatewayError> {
    let mut provider = 0;
    let mut requested = String::new();
    let prepared = prepare(endpoint, raw, end_user, |model| {
        requested = model.to_owned();
        let resolved = routes
            .resolve(model)
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_owned()))?;
        provider = resolved.provider;
        Ok(resolved.model)
    })?;
    Ok((prepared, requested, provider))
}

/// Room taken from the body budget at a time for a body without a declared length.
const BODY_STEP: usize = 64 * 1024;

/// Reads a request body up to `limit` bytes into one buffer, holding it against `budget`: its
/// declared length up front, or room in growing steps as it comes (chunked, HTTP/2). Every
/// piece is copied as it arrives: pieces are never kept, since each may pin a block of the
/// connection's read buffer however small it is (a body of 1-byte chunks would otherwise hold
/// many times its size). Each piece must arrive within `stall`.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    budget: &std::sync::Arc<BodyBudget>,
    stall: std::time::Duration,
) -> Result<(Bytes, BodyBytes), GatewayError> {
    let declared = declared_length(headers);
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let mut held = budget.hold();
    held.grow(declared.unwrap_or(0))
        .map_err(|_| GatewayError::BodiesOverBudget)?;
    let mut whole = bytes::BytesMut::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    loop {
        let next = tokio::time::timeout(stall, stream.next())
            .await
            .map_err(|_| GatewayError::BodyStalled {
                seconds: stall.as_secs(),
            })?;
        let Some(data) = next else {
            break;
        };
        let data = data.map_err(|_| GatewayError::BodyUnreadable)?;
        let length = whole.len() + data.len();
        if length > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        if length > whole.capacity() {
            // Room in steps (doubling, at least 64 KiB), each held against the budget first.
            let room = length
                .max(whole.capacity().saturating_mul(2))
                .max(BODY_STEP)
                .min(limit);
            held.grow(room.saturating_sub(held.bytes()))
                .map_err(|_| GatewayError::BodiesOverBudget)?;
            whole.reserve(room - whole.len());
        }
        whole.extend_from_slice(&data);
    }
    Ok((whole.freeze(), held))
}

/// Serves a metered endpoint's `POST`: route by model, forward, stream back, meter.
pub(crate) async fn serve(
    call: Call,
    endpoint: Endpoint,
    query: Option<&str>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    call.principal.require(endpoint.scope(), Access::Write)?;
    let routes = call.state.catalog.routes();
    let max_body = call.state.settings.max_body_bytes;
    let stall = call.state.settings.connections.head_timeout;
    let (head, body) = match call.admit_head(endpoint.path()).await {
        Ok(head) => (head, Unread(body)),
        // Refused on its head. A small body is read after all, for OpenAI's message, which
        // names the model ("Rate limit reached for gpt-4o in ..."), and for the connection,
        // which stays usable once its body is read; a large one is never read.
        Err(refused) if declared_length(&headers).is_some_and(|len| len <= NAMED_REFUSAL_BYTES) => {
            let read = tokio::time::timeout(
                NAMED_REFUSAL_WAIT,
                read_body(body, &headers, max_body, &call.state.body_budget, stall),
            )
            .await;
            let Ok(Ok(read)) = read else {
                return Err(refused);
            };
            let Some(model) = requested_model(&read.0) else {
                return Err(refused);
            };
            let served = routes.resolve(&model).map_or(model, |r| r.model);
            // Decided again, now with the model's name (a slot may have come free meanwhile).
            (call.admit_head(&served).await?, Read(read))
        }
        Err(refused) => return Err(refused),
    };
    let (raw, mut held) = match body {
        Read(read) => read,
        Unread(body) => read_body(body, &headers, max_body, &call.state.body_budget, stall).await?,
    };
    let end_user = call
        .principal
        .token
        .as_ref()
        .and_then(|t| t.grant.user.clone());
    // Parsing a large body takes milliseconds that the other connections of this serving
    // thread would wait (bench/abuse.py: /healthz beside a 29 MiB prompt, 15.3 ms worst parsed
    // here, 2.8 ms on the blocking pool): the blocking pool does it.
    let (prepared, requested, provider) = tokens::by_size(&raw, move |raw| {
        routed(endpoint, raw, end_user.as_deref(), &routes)
    })
    .await
    .ok_or_else(|| GatewayError::InvalidJson("the body could not be parsed".into()))??;
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
    // Through a credential projects share, the objects the body names must be the project's.
    let tenant = match Tenant::of(&call.principal, upstream, &call.state.ledger) {
        Ok(tenant) => tenant,
        Err(err) if objects::may_name_objects(&raw) => return Err(err),
        Err(_) => None,
    };
    if let Some(tenant) = &tenant {
        tenant.check_body(&raw).await?;
    }
    let stores = match endpoint {
        Endpoint::Responses => (prepared.store != Some(false)).then_some(ObjectKind::Response),
        Endpoint::ChatCompletions => {
            (prepared.store == Some(true)).then_some(ObjectKind::ChatCompletion)
        }
        _ => None,
    };
    let makes = tenant.as_ref().and_then(|tenant| {
        let plan = tollgate_core::objects::Plan {
            creates: stores,
            ..Default::default()
        };
        tenant.makes(&plan)
    });
    let mut outgoing_headers = upstream.headers(&headers, true, call.principal.key.project_id());
    outgoing_headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The endpoint's path, with the client's query (Azure's `api-version`, for one).
    let path_and_query = match query {
        Some(query) => std::borrow::Cow::Owned(format!("{}?{query}", endpoint.path())),
        None => std::borrow::Cow::Borrowed(endpoint.path()),
    };
    let request = Outgoing {
        method: Method::POST,
        path_and_query: &path_and_query,
        headers: outgoing_headers,
        body: RequestBody::Full(prepared.body.clone()),
    };
    if prepared.body.as_ptr() != raw.as_ptr() {
        // Rewritten: both copies are held until the request ends.
        held.grow(prepared.body.len())
            .map_err(|_| GatewayError::BodiesOverBudget)?;
    }
    let output = match endpoint {
        Endpoint::Embeddings => 0,
        _ => prepared
            .max_output
            .unwrap_or(call.state.settings.default_max_output_tokens),
    };
    let (admission, input_tokens) = call
        .admit_body(head, (&requested, &prepared.model), &prepared.model, || {
            let raw = raw.clone();
            async move {
                let input = tokens::count_request_off_thread(raw).await.max(0);
                let most = price.cost(&TokenUsage {
                    input,
                    cached_input: 0,
                    output: i64::try_from(output).unwrap_or(i64::MAX),
                    reasoning: 0,
                });
                (input, (input as u64).saturating_add(output), most)
            }
        })
        .await?;
    let meter = Meter::new(
        call.state.clone(),
        call.event(endpoint.path(), &requested, &prepared.model),
        price,
        started,
        raw,
        admission,
    )
    .with_body(input_tokens, held)
    .making(makes)
    .for_client_token(call.principal.token.as_ref().map(|t| t.id.clone()));
    let withhold = prepared.stream && !prepared.client_wants_usage;
    let max_event = call.state.settings.max_stream_event_bytes;
    forward(upstream, request, meter, |is_sse| {
        metered_reading(is_sse, withhold, max_event)
    })
    .await
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
    fn untouched_requests_are_forwarded_byte_for_byte() {
        let raw = Bytes::from_static(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],  "temperature":0.2}"#);
        let prepared = prepare(Endpoint::ChatCompletions, &raw, None, served)
            .ok()
            .map(|p| p.body);
        assert_eq!(prepared, Some(raw));
    }

    #[test]
    fn streaming_gets_include_usage_and_aliases_are_rewritten() {
        let raw = Bytes::from_static(br#"{"model":"fast","stream":true,"stream_options":{"include_obfuscation":false},"messages":[]}"#);
        let prepared = prepare(Endpoint::ChatCompletions, &raw, None, served)
            .unwrap_or_else(|_| unreachable!());
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
        let prepared = prepare(Endpoint::ChatCompletions, &asked, None, served)
            .unwrap_or_else(|_| unreachable!());
        assert!(prepared.client_wants_usage);
        assert_eq!(prepared.body, asked);
        let responses = Bytes::from_static(br#"{"model":"gpt-4o","stream":true,"input":"x"}"#);
        assert_eq!(
            prepare(Endpoint::Responses, &responses, None, served)
                .map(|p| p.body)
                .ok(),
            Some(responses),
            "responses takes no stream_options"
        );
    }

    #[test]
    fn a_client_tokens_end_user_replaces_the_clients() {
        let raw = Bytes::from_static(br#"{"model":"gpt-4o","user":"mallory","messages":[]}"#);
        let prepared = prepare(Endpoint::ChatCompletions, &raw, Some("user-42"), served)
            .unwrap_or_else(|_| unreachable!());
        let sent: serde_json::Value = serde_json::from_slice(&prepared.body).unwrap_or_default();
        assert_eq!(sent["user"], "user-42");
        assert_eq!(sent["messages"], serde_json::json!([]));
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
                None,
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
