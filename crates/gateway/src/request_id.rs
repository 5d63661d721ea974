use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

/// The request's id, for handlers (from the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A fresh request id, `req_` and 32 hex digits, as OpenAI's.
pub(crate) fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    tollgate_core::ids::fill_random(&mut bytes);
    let mut id = String::with_capacity(36);
    id.push_str("req_");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Gives every request an id (in its log span and the `x-request-id` header) and reports its
/// processing time in `openai-processing-ms`.
pub(crate) async fn tag(mut request: Request, next: Next) -> Response {
    let id = new_request_id();
    request.extensions_mut().insert(RequestId(id.clone()));
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        key_id = tracing::field::Empty,
    );
    async move {
        let mut response = next.run(request).await;
        let elapsed = started.elapsed();
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&id) {
            headers.insert("x-request-id", value);
        }
        headers.insert(
            "openai-processing-ms",
            HeaderValue::from(elapsed.as_millis() as u64),
        );
        tracing::info!(
            status = response.status().as_u16(),
            latency_us = elapsed.as_micros() as u64,
            "request finished"
        );
        response
    }
    .instrument(span)
    .await
}
