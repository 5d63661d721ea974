use crate::headers::{OPENAI_PROCESSING_MS, X_REQUEST_ID};
use crate::serve::dispatch::Dispatch;
use axum::http::{HeaderValue, Request};
use axum::response::Response;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::Instrument;

/// The request's id, for handlers (from the request's extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A fresh request id: `req_` and 32 hex digits, as OpenAI's. The first 12 digits are the
/// Unix time in milliseconds, so ids sort by time and the usage table's index grows at its end
/// instead of being rewritten all over; the other 20 come from a per-thread generator seeded
/// once from the OS (ids are not secrets, but stay unguessable enough not to collide).
pub(crate) fn new_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            tollgate_core::ids::fill_random(&mut seed);
            u64::from_le_bytes(seed) | 1
        });
    }
    // splitmix64: two outputs give 128 bits, of which 80 are used.
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Written digit by digit: `format!` costs more than the rest of the id together.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    id.push_str("req_");
    for (value, digits) in [(millis, 12), (next(), 16), (next(), 4)] {
        for shift in (0..digits).rev() {
            id.push(char::from(HEX[((value >> (shift * 4)) & 0xf) as usize]));
        }
    }
    id
}

/// Serves one request through `app`, giving it an id (in its log span and the
/// `x-request-id` header) and reporting its processing time in `openai-processing-ms`. Called
/// by the connection for every request, in front of the router rather than as a middleware
/// layer inside it: one boxed future and one service clone less per request.
pub(crate) async fn tag(
    app: Dispatch,
    peer: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response, Infallible> {
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
        let mut response = app.serve(request, peer).await;
        let elapsed = started.elapsed();
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
