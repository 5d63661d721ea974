//! A metered endpoint (chat completions, responses, completions, embeddings): the body read
//! (bounded) and its few routing fields parsed, the model routed and checked against the
//! key's allow-lists, the request admitted against limits and budgets, then forwarded and
//! metered.

use crate::error::GatewayError;
use crate::request::call::Call;
use crate::request::forward::{forward, metered_reading, Outgoing};
use crate::request::meter::Meter;
use crate::settings::UnpricedPolicy;
use crate::tokens;
use crate::upstream::{RequestBody, Upstream};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Instant;
use tollgate_core::endpoints::Endpoint;
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
    let meter = Meter::new(
        call.state.clone(),
        call.event(endpoint.path(), &requested, &prepared.model),
        price,
        started,
        raw,
        admission,
    );
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
