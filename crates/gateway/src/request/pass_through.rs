//! Every other group of OpenAI's API (files, batches, images, stored responses, ...): forwarded
//! to the default provider at its canonical path, both bodies streamed, with a usage event that
//! bills no tokens. Through a credential several projects share, the `tenancy` step checks
//! the objects the request names first, and reads what the answer makes or lists.

use crate::error::GatewayError;
use crate::request::call::Call;
use crate::request::forward::{forward, Outgoing};
use crate::request::meter::{BodyCopy, Meter, Reading};
use crate::request::metered::read_body;
use crate::request::tenancy::{is_json, ListRequest, Tenant};
use crate::upstream::RequestBody;
use axum::body::Body;
use axum::http::request::Parts;
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{StreamExt, TryStreamExt};
use std::time::Instant;
use tollgate_core::objects;
use tollgate_core::pricing::Price;

/// Forwards a request for `path` (canonical) that the endpoint table admitted.
pub(crate) async fn serve(
    call: Call,
    path: &str,
    parts: Parts,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let state = call.state.clone();
    let upstream = state
        .upstreams
        .first()
        .ok_or_else(|| GatewayError::UnknownRoute {
            method: parts.method.to_string(),
            path: path.to_owned(),
        })?;
    let project = call.principal.key.project_id();
    let query = parts.uri.query();
    let tenant = Tenant::of(&call.principal, upstream, &state.ledger)?;
    let plan = match &tenant {
        Some(_) => objects::plan(parts.method.as_str(), path, query)
            .map_err(GatewayError::MalformedObjectId)?,
        None => objects::Plan::default(),
    };
    let admission = call.admit(path).await?;
    if let Some(tenant) = &tenant {
        tenant.check(&plan.named).await?;
    }
    // An answer read here (a list to filter, what a call made) comes unencoded.
    let reads_answer = tenant.is_some() && !plan.is_stateless();
    let headers = upstream.headers(&parts.headers, reads_answer, project);
    // Exactly the canonical path, with the client's query; a filtered list asks for the
    // provider's largest pages.
    let path_and_query = match (query, plan.lists) {
        (query, Some(_)) => ListRequest::first(path, query),
        (Some(query), None) => format!("{path}?{query}"),
        (None, None) => path.to_owned(),
    };
    // The body as the client framed it: nothing, a known length, or a stream (chunked, or
    // HTTP/2 without a length). A JSON body through a shared credential is read first, to
    // check the objects it names.
    let has_body = !axum::body::HttpBody::is_end_stream(&body);
    let length = axum::body::HttpBody::size_hint(&body).exact();
    let mut held = None;
    let body = match &tenant {
        Some(tenant) if has_body && is_json(&parts.headers) => {
            let settings = &state.settings;
            let (raw, budget) = read_body(
                body,
                &parts.headers,
                settings.max_body_bytes,
                &state.body_budget,
                settings.connections.head_timeout,
            )
            .await?;
            tenant.check_body(&raw).await?;
            held = Some(budget);
            RequestBody::Full(raw)
        }
        _ if has_body => RequestBody::Stream {
            length,
            stream: body
                .into_data_stream()
                .map_err(std::io::Error::other)
                .boxed(),
        },
        _ => RequestBody::Empty,
    };
    let request = Outgoing {
        method: parts.method.clone(),
        path_and_query: &path_and_query,
        headers: headers.clone(),
        body,
    };
    let makes = tenant.as_ref().and_then(|t| t.makes(&plan));
    let mut meter = Meter::new(
        state.clone(),
        call.event(path, "", ""),
        Price {
            input: 0,
            cached_input: 0,
            output: 0,
        },
        started,
        Bytes::new(),
        admission,
    )
    .making(makes.clone());
    if let Some(held) = held {
        meter = meter.with_body(None, held);
    }
    let reply = forward(upstream, request, meter, |_| match makes {
        Some(_) => Reading::Kept(BodyCopy::default()),
        None => Reading::Skipped,
    })
    .await?;
    match &tenant {
        Some(tenant) => {
            let list = ListRequest {
                upstream,
                path,
                query,
                headers,
            };
            tenant.answered(&plan, list, reply).await
        }
        None => Ok(reply),
    }
}
