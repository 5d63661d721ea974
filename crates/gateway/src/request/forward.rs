//! Sending a request to a provider and relaying its answer to the client, piece by piece, with
//! the request's [`Meter`] reading the answer on the way.

use crate::error::GatewayError;
use crate::metrics::Forwarded;
use crate::request::meter::{BodyCopy, Ending, Meter, Reading};
use crate::request::sse::{Oversized, SseMeter};
use crate::upstream::{client_headers, RequestBody, Upstream, UpstreamError};
use axum::body::Body;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt};

/// What to send a provider.
pub(crate) struct Outgoing<'a> {
    pub method: Method,
    /// The canonical path, with the client's query when it has one.
    pub path_and_query: &'a str,
    pub headers: HeaderMap,
    pub body: RequestBody,
}

/// How a metered endpoint's answer is read: an event stream event by event, any other body
/// kept whole to read its usage. `withhold_usage`: the client did not ask for the usage chunk
/// Tollgate asked the provider for.
pub(crate) fn metered_reading(is_sse: bool, withhold_usage: bool, max_event: usize) -> Reading {
    if is_sse {
        Reading::Events(SseMeter::new(withhold_usage, max_event))
    } else {
        Reading::Body(BodyCopy::default())
    }
}

/// Sends `request` and relays the provider's answer, metering it whatever happens (see
/// [`Meter`]): the meter is dropped with the future if the client leaves before the answer's
/// head arrives, and records that.
pub(crate) async fn forward(
    upstream: &Upstream,
    request: Outgoing<'_>,
    mut meter: Meter,
    reading: impl FnOnce(bool) -> Reading,
) -> Result<Response, GatewayError> {
    meter.sent_to(&upstream.settings.name);
    let sent = std::time::Instant::now();
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
            let reached = !matches!(err, UpstreamError::Connect { .. });
            let err = GatewayError::from(err);
            meter.fail(err.to_openai().status(), reached).await;
            return Err(err);
        }
    };
    let status = response.status;
    let is_sse = response
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let reading = reading(is_sse);
    // A body passed through unchanged keeps the provider's length (as OpenAI sends it); an
    // event stream may be changed on the way. An empty body stays unframed: the client's
    // connection would never ask for it, and the metering runs when the body is read to its
    // end.
    let length = if matches!(reading, Reading::Events(_)) {
        None
    } else {
        declared_length(&response.headers).filter(|&length| length > 0)
    };
    let mut headers = client_headers(response.headers);
    meter.admission().headers().apply(&mut headers);
    meter.answered(status.as_u16(), reading);
    let relay = Relay {
        upstream: response.body,
        meter: Some(meter),
        remaining: length,
    };
    let mut reply = Response::new(relay_body(relay));
    *reply.status_mut() = status;
    *reply.headers_mut() = headers;
    reply.extensions_mut().insert(Forwarded {
        provider: upstream.settings.name.clone(),
        wait: sent.elapsed(),
    });
    Ok(reply)
}

/// The response body: the provider's body passed through piece by piece, read on the way.
struct Relay {
    upstream: BoxStream<'static, std::io::Result<Bytes>>,
    /// Taken when the body ends; dropped with the relay if the client leaves first.
    meter: Option<Meter>,
    /// Bytes still to come when the client was given the body's length: the client's
    /// connection stops reading the body at that length, so the last piece ends the metering.
    remaining: Option<u64>,
}

impl Relay {
    async fn end(&mut self, ending: Ending) {
        if let Some(meter) = self.meter.take() {
            meter.finish(ending).await;
        }
    }

    /// Reads a piece on its way to the client; returns what to send, or what to send last when
    /// the provider's event stream has to be cut.
    fn read(&mut self, chunk: Bytes) -> Result<Bytes, (Bytes, Oversized)> {
        let Some(meter) = self.meter.as_mut() else {
            return Ok(chunk);
        };
        match &mut meter.reading {
            Reading::Events(sse) => sse.push(&chunk),
            Reading::Body(copy) | Reading::Kept(copy) => {
                copy.push(&chunk);
                Ok(chunk)
            }
            Reading::Skipped => Ok(chunk),
        }
    }

    /// Whether the event stream's final event is in what was read: the answer is delivered.
    fn final_event_read(&self) -> bool {
        matches!(self.meter.as_ref().map(|m| &m.reading), Some(Reading::Events(sse)) if sse.complete)
    }

    /// What is left in the event reader when the provider's body ends.
    fn rest(&mut self) -> Bytes {
        match self.meter.as_mut().map(|m| &mut m.reading) {
            Some(Reading::Events(sse)) => sse.finish(),
            _ => Bytes::new(),
        }
    }
}

fn relay_body(relay: Relay) -> Body {
    let length = relay.remaining;
    let stream = futures_util::stream::unfold(Some(relay), |state| async move {
        let mut relay = state?;
        loop {
            match relay.upstream.next().await {
                Some(Ok(chunk)) => {
                    let mut out = match relay.read(chunk) {
                        Ok(out) => out,
                        Err((complete, oversized)) => {
                            tracing::warn!(limit = oversized.limit, "the provider sent a stream event past the limit; the stream was cut");
                            if let Some(meter) = relay.meter.take() {
                                meter.cut().await;
                            }
                            let mut last = BytesMut::from(&complete[..]);
                            last.extend_from_slice(&oversized_event(oversized));
                            return Some((Ok(last.freeze()), None));
                        }
                    };
                    // The usage event is recorded (spooled) before the final event goes out: a
                    // client that has `[DONE]` has a usage record, whatever happens next.
                    // What the reader holds of a next event goes out as it is, as would the
                    // rest of the body.
                    if relay.final_event_read() {
                        let rest = relay.rest();
                        relay.end(Ending::Delivered).await;
                        if !rest.is_empty() {
                            let mut all = BytesMut::from(&out[..]);
                            all.extend_from_slice(&rest);
                            out = all.freeze();
                        }
                    }
                    if let Some(left) = relay.remaining.as_mut() {
                        *left = left.saturating_sub(out.len() as u64);
                        if *left == 0 {
                            relay.end(Ending::Delivered).await;
                            return Some((Ok(out), None));
                        }
                    }
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out), Some(relay)));
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "the provider's response broke off");
                    relay.end(Ending::Broken).await;
                    return Some((Err(err), None));
                }
                None => {
                    let rest = relay.rest();
                    relay.end(Ending::Delivered).await;
                    return (!rest.is_empty()).then_some((Ok(rest), None));
                }
            }
        }
    });
    Body::new(RelayBody {
        length,
        stream: Box::pin(stream),
    })
}

/// The error event a client gets when the provider's stream is cut, in OpenAI's envelope (the
/// SDKs raise it as an `APIError`).
fn oversized_event(oversized: Oversized) -> Bytes {
    let error = tollgate_core::OpenAiError::new(
        tollgate_core::ErrorKind::BadGateway,
        format!(
            "The provider sent a stream event larger than {} bytes, so Tollgate cut the stream. Retry the request; if it happens again, the provider is misbehaving (the limit is max_stream_event_bytes in tollgate.toml).",
            oversized.limit
        ),
    )
    .with_code("stream_event_too_large");
    Bytes::from(format!("data: {}\n\n", error.to_json()))
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
