use crate::headers::{OPENAI_PROCESSING_MS, X_REQUEST_ID};
use crate::metrics::{Forwarded, Refusal, Served};
use crate::request_id::{new_request_id, RequestId};
use crate::serve::dispatch::Dispatch;
use crate::serve::trust::Trust;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::Instrument;

/// Serves one request through `app`, giving it an id (in its log span and the
/// `x-request-id` header) and reporting its processing time in `openai-processing-ms`. Called
/// by the connection for every request, in front of the router rather than as a middleware
/// layer inside it: one boxed future and one service clone less per request.
pub(crate) async fn tag(
    app: Dispatch,
    peer: SocketAddr,
    trust: Trust,
    mut request: Request<Incoming>,
) -> Result<Response, Infallible> {
    let id = new_request_id();
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(trust);
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %tollgate_core::key::loggable_path(request.uri().path()),
        key_id = tracing::field::Empty,
        client_token = tracing::field::Empty,
        // OpenTelemetry (when traces are exported): a server span named after the method,
        // with the response's status; a metered request's model call is its child (`Meter`).
        otel.kind = "server",
        otel.name = %request.method(),
        http.response.status_code = tracing::field::Empty,
    );
    async move {
        let metrics = app.state().metrics.clone();
        // Boxed: the request's future is large (every step of a metered request), and the
        // futures around it (this one, its span's, hyper's) would be copied whole each time
        // they move; `perf` had 1.2% of the process in those copies.
        let mut response = Box::pin(app.serve(request, peer)).await;
        let elapsed = started.elapsed();
        tracing::Span::current().record(
            "http.response.status_code",
            i64::from(response.status().as_u16()),
        );
        let marks = response.extensions();
        metrics.request(
            response.status().as_u16(),
            elapsed,
            marks.get::<Served>().copied(),
            marks.get::<Forwarded>(),
            marks.get::<Refusal>(),
        );
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert(X_REQUEST_ID, value);
        }
        headers.insert(
            OPENAI_PROCESSING_MS,
            HeaderValue::from(elapsed.as_millis() as u64),
        );
        tracing::info!(
            status = response.status().as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request finished"
        );
        Ok(response)
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_openai_shaped_distinct_and_time_ordered() {
        let ids: Vec<String> = (0..10_000).map(|_| new_request_id()).collect();
        assert!(ids.iter().all(|id| id.len() == 36
            && id.starts_with("req_")
            && id[4..].bytes().all(|b| b.is_ascii_hexdigit())));
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_request_id();
        assert!(
            ids.iter().all(|id| id[4..16] <= later[4..16]),
            "the time prefix never goes backwards"
        );
    }
}
