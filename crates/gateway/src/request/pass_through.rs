//! Every other group of OpenAI's API (files, batches, images, stored responses, ...): forwarded
//! to the default provider at its canonical path, both bodies streamed, with a usage event that
//! bills no tokens.

use crate::error::GatewayError;
use crate::request::call::Call;
use crate::request::forward::{forward, Outgoing};
use crate::request::meter::{Meter, Reading};
use crate::upstream::RequestBody;
use axum::body::Body;
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{StreamExt, TryStreamExt};
use std::time::Instant;
use tollgate_core::pricing::Price;

/// Forwards a request for `path` (canonical) that the endpoint table admitted.
pub(crate) async fn serve(
    call: Call,
    path: &str,
    parts: Parts,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let upstream = call
        .state
        .upstreams
        .first()
        .ok_or_else(|| GatewayError::UnknownRoute {
            method: parts.method.to_string(),
            path: path.to_owned(),
        })?;
    // Exactly the canonical path, with the client's query.
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    // The body as the client framed it: nothing, a known length, or a stream (chunked, or
    // HTTP/2 without a length).
    let has_body = !axum::body::HttpBody::is_end_stream(&body);
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let request = Outgoing {
        method: parts.method.clone(),
        path_and_query: &path_and_query,
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
    let admission = call.admit(path)?;
    let meter = Meter::new(
        call.state.clone(),
        call.event(path, "", ""),
        Price {
            input: 0,
            cached_input: 0,
            output: 0,
        },
        started,
        Bytes::new(),
        admission,
    );
    forward(upstream, request, meter, |_| Reading::Skipped).await
}
