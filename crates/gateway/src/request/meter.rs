//! A request's usage event, from the moment the request is on its way to a provider until it
//! is recorded. [`Meter`] is a guard: whatever ends the request (the answer read to its end,
//! the provider failing, the client hanging up before the answer's head or in the middle of a
//! stream, a serving thread stopping), exactly one usage event is recorded and the request's
//! rate-limit and budget reservations settle. Code paths that know how the request ended call
//! [`Meter::finish`]; any other way out is the guard's `Drop`, which records what is known then
//! (a client that left: status 499).

use crate::admission::Admission;
use crate::body_budget::BodyBytes;
use crate::request::sse::SseMeter;
use crate::state::AppState;
use crate::tokens;
use bytes::{Bytes, BytesMut};
use std::time::Instant;
use tollgate_core::objects::{is_object_id, yielded_files, ObjectKind};
use tollgate_core::pricing::Price;
use tollgate_core::usage::TokenUsage;
use tollgate_store::{CreatedObject, UsageEvent};

/// Largest non-streamed response body kept to read its usage; larger ones pass through unread.
const MAX_METERED_BODY: usize = 16 * 1024 * 1024;

/// The status recorded for a request whose client went away before it was answered.
pub(crate) const CLIENT_CLOSED: u16 = 499;

/// How the answer is read on its way to the client.
pub(crate) enum Reading {
    /// Not read (pass-through bodies, errors).
    Skipped,
    /// An event stream, metered event by event.
    Events(SseMeter),
    /// A whole body, kept to read its usage at the end.
    Body(BodyCopy),
    /// A whole body kept to read the objects it names, billing no tokens (pass-through).
    Kept(BodyCopy),
}

/// What a request's answer may make at the provider, to record in the ownership ledger under
/// the request's project (see `tenancy`).
#[derive(Debug, Clone)]
pub(crate) struct Makes {
    /// The provider's name.
    pub provider: String,
    /// The answer's `id` is an object of this kind.
    pub creates: Option<ObjectKind>,
    /// The answer names files the provider made (a batch's output, ...).
    pub yields_files: bool,
}

impl Makes {
    /// The objects in a successful answer (its body, or its event stream's id).
    fn objects(&self, reading: &Reading) -> Vec<CreatedObject> {
        let mut made = Vec::new();
        let value = match reading {
            Reading::Body(copy) | Reading::Kept(copy) => {
                serde_json::from_slice::<serde_json::Value>(copy.bytes()).unwrap_or_default()
            }
            Reading::Events(sse) => {
                serde_json::json!({ "id": sse.answer_id })
            }
            Reading::Skipped => serde_json::Value::Null,
        };
        if let Some(kind) = self.creates {
            match value["id"].as_str().filter(|id| is_object_id(id)) {
                Some(id) => made.push(self.object(kind, id)),
                None => tracing::error!(
                    provider = %self.provider,
                    kind = %kind,
                    "the provider answered a create call without an object id; the object cannot be recorded, so no key reaches it through Tollgate"
                ),
            }
        }
        if self.yields_files {
            for id in yielded_files(&value) {
                made.push(self.object(ObjectKind::File, &id));
            }
        }
        made
    }

    fn object(&self, kind: ObjectKind, id: &str) -> CreatedObject {
        CreatedObject {
            provider: self.provider.clone(),
            kind,
            id: id.to_owned(),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The provider's answer was read to its end.
    Delivered,
    /// The provider's answer broke off.
    Broken,
    /// Nobody finished the request: the client went away (or the server stopped serving it).
    Abandoned,
}

/// A request's usage event in the making; see the module's documentation.
pub(crate) struct Meter {
    state: AppState,
    /// Taken when the event is recorded.
    event: Option<UsageEvent>,
    price: Price,
    started: Instant,
    /// The request body, to count its tokens when the provider reports none.
    request: Bytes,
    /// The request's input tokens, when admission counted them.
    input_tokens: Option<i64>,
    /// The request body's share of the body budget, given back when the request ends.
    _held: BodyBytes,
    /// The request's reservations against rate limits and budgets.
    admission: Admission,
    /// The provider's status, once its answer's head has arrived.
    status: Option<u16>,
    pub(crate) reading: Reading,
    /// The provider got the request but gave no usable answer (see [`Meter::fail`]).
    failed_after_sending: bool,
    /// What the answer may make, to record in the ownership ledger.
    makes: Option<Makes>,
    /// A metered model call's span (OpenTelemetry's GenAI client span, when traces are
    /// exported), a child of the request's: it lasts until the meter closes (a stream's end)
    /// and gets the attributes of what was metered.
    span: tracing::Span,
    /// The client token the request came with, whose token count it adds to.
    client_token: Option<tollgate_core::ClientTokenId>,
}

/// The GenAI semantic conventions' operation for a metered endpoint.
fn operation(endpoint: &str) -> Option<&'static str> {
    match endpoint {
        "/v1/chat/completions" | "/v1/responses" | "/v1/responses/compact" => Some("chat"),
        "/v1/completions" => Some("text_completion"),
        "/v1/embeddings" => Some("embeddings"),
        _ => None,
    }
}

impl Meter {
    pub(crate) fn new(
        state: AppState,
        event: UsageEvent,
        price: Price,
        started: Instant,
        request: Bytes,
        admission: Admission,
    ) -> Meter {
        let span = match operation(&event.endpoint) {
            Some(operation) => tracing::info_span!(
                "gen_ai",
                otel.name = %format_args!("{operation} {}", event.model_requested),
                otel.kind = "client",
                gen_ai.operation.name = operation,
                gen_ai.request.model = %event.model_requested,
                gen_ai.provider.name = tracing::field::Empty,
                gen_ai.response.model = tracing::field::Empty,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
                tollgate.project_id = %event.project_id,
                tollgate.cost_usd = tracing::field::Empty,
                tollgate.status = tracing::field::Empty,
            ),
            None => tracing::Span::none(),
        };
        Meter {
            state,
            event: Some(event),
            price,
            started,
            request,
            input_tokens: None,
            _held: BodyBytes::default(),
            admission,
            status: None,
            reading: Reading::Skipped,
            failed_after_sending: false,
            makes: None,
            span,
            client_token: None,
        }
    }

    /// The meter of a request made with a client token (`None`: with its key).
    pub(crate) fn for_client_token(mut self, token: Option<tollgate_core::ClientTokenId>) -> Meter {
        self.client_token = token;
        self
    }

    /// Adds what the request used to its client token's count, off the request's path.
    fn charge_client_token(&self, event: &UsageEvent) {
        let Some(token) = self.client_token.clone() else {
            return;
        };
        let tokens = event.input_tokens.saturating_add(event.output_tokens);
        if tokens <= 0 {
            return;
        }
        let store = self.state.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = store.add_client_token_tokens(&token, tokens).await {
                    tracing::warn!(error = %err, client_token = %token, "a client token's tokens could not be counted");
                }
            });
        }
    }

    /// The meter of a request whose answer may make objects at the provider.
    pub(crate) fn making(mut self, makes: Option<Makes>) -> Meter {
        self.makes = makes;
        self
    }

    /// The meter of a request whose input tokens admission counted (`Some`), holding its
    /// body's share of the body budget.
    pub(crate) fn with_body(mut self, input_tokens: Option<i64>, held: BodyBytes) -> Meter {
        self.input_tokens = input_tokens;
        self._held = held;
        self
    }

    /// The request goes to `provider` (for its trace).
    pub(crate) fn sent_to(&self, provider: &str) {
        self.span.record("gen_ai.provider.name", provider);
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The provider answered with `status`; its body will be read as `reading` says.
    pub(crate) fn answered(&mut self, status: u16, reading: Reading) {
        self.status = Some(status);
        self.reading = reading;
    }

    /// Records the request as ended, waiting for room in the metering queue if it is full.
    pub(crate) async fn finish(mut self, ending: Ending) {
        if let Some(event) = self.close(ending) {
            self.charge_client_token(&event);
            self.state
                .anomalies
                .used(&event, self.client_token.is_some());
            self.state.usage.record(event).await;
        }
    }

    /// Records a request that got no usable answer from the provider: `status` is the error
    /// the client gets. A request that reached the provider (it timed out, or answered
    /// garbage) may still have been run and billed there: its prompt is counted, as for a
    /// client that left; one that never reached it (`reached: false`) bills nothing.
    pub(crate) async fn fail(mut self, status: u16, reached: bool) {
        self.status = Some(status);
        self.failed_after_sending = reached;
        self.finish(Ending::Broken).await;
    }

    /// Records a stream Tollgate cut because the provider sent an event past the limit: a bad
    /// gateway, billed for the prompt and what was delivered (or what the provider reported).
    pub(crate) async fn cut(mut self) {
        self.status = Some(502);
        self.failed_after_sending = true;
        self.finish(Ending::Broken).await;
    }

    /// The event, with the tokens and status `ending` implies, once; settles the reservations.
    fn close(&mut self, ending: Ending) -> Option<UsageEvent> {
        let mut event = self.event.take()?;
        let (usage, status) = self.outcome(ending);
        event.input_tokens = usage.input;
        event.cached_input_tokens = usage.cached_input;
        event.output_tokens = usage.output;
        event.reasoning_tokens = usage.reasoning;
        event.cost = self.price.cost(&usage);
        event.status = status;
        event.latency_ms = self.started.elapsed().as_millis() as i64;
        if let Some(makes) = self.makes.take() {
            if (200..300).contains(&status) {
                event.objects = makes.objects(&self.reading);
                // Usable by the project at once, before the event is stored.
                self.state.ledger.made(&event.project_id, &event.objects);
            }
        }
        let tokens = usage.input.max(0).saturating_add(usage.output.max(0));
        std::mem::take(&mut self.admission).settle(tokens as u64, event.cost);
        if !self.span.is_none() {
            let span = &self.span;
            span.record("tollgate.status", i64::from(event.status));
            span.record("gen_ai.response.model", event.model_served.as_str());
            span.record("gen_ai.usage.input_tokens", event.input_tokens);
            span.record("gen_ai.usage.output_tokens", event.output_tokens);
            span.record("tollgate.cost_usd", event.cost.0 as f64 / 1_000_000.0);
        }
        Some(event)
    }

    /// The tokens to bill and the status to record. Usage the provider reported always wins;
    /// without it, the request's tokens are counted locally (with what was delivered of the
    /// answer). A stream that reached its final event was delivered, whoever hung up first.
    fn outcome(&self, ending: Ending) -> (TokenUsage, u16) {
        let Some(status) = self.status else {
            // The provider never answered this client: it may still have done the work.
            return (self.estimate("", 0), CLIENT_CLOSED);
        };
        let (reported, delivered, beyond, complete) = match &self.reading {
            Reading::Events(sse) => (sse.usage, sse.text.as_str(), sse.text_beyond, sse.complete),
            Reading::Body(copy) => (
                TokenUsage::from_body(copy.bytes()),
                "",
                0,
                ending == Ending::Delivered,
            ),
            Reading::Skipped | Reading::Kept(_) => (None, "", 0, ending == Ending::Delivered),
        };
        if self.failed_after_sending {
            return (
                reported.unwrap_or_else(|| self.estimate(delivered, beyond)),
                status,
            );
        }
        if status >= 400 {
            return (TokenUsage::default(), status);
        }
        let status = if ending == Ending::Abandoned && !complete {
            CLIENT_CLOSED
        } else {
            status
        };
        let usage = match (&self.reading, reported) {
            (_, Some(usage)) => usage,
            // Pass-through answers bill no tokens.
            (Reading::Skipped | Reading::Kept(_), None) => TokenUsage::default(),
            (_, None) => self.estimate(delivered, beyond),
        };
        (usage, status)
    }

    /// The request's tokens counted locally, with `delivered` output text and `beyond` more
    /// bytes of it (four to a token).
    fn estimate(&self, delivered: &str, beyond: usize) -> TokenUsage {
        if self.request.is_empty() {
            return TokenUsage::default();
        }
        // Counted here, on the serving thread, only up to a size that takes a few
        // milliseconds; past it, four bytes to a token.
        TokenUsage {
            input: self
                .input_tokens
                .unwrap_or_else(|| tokens::count_request_inline(&self.request)),
            cached_input: 0,
            output: tokens::count_inline(delivered).saturating_add((beyond / 4) as i64),
            reasoning: 0,
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let Some(event) = self.close(Ending::Abandoned) else {
            return;
        };
        if event.status == CLIENT_CLOSED {
            tracing::info!(request_id = %event.request_id, input_tokens = event.input_tokens, output_tokens = event.output_tokens, "client went away; billed what the provider was asked and delivered");
        }
        self.charge_client_token(&event);
        self.state
            .anomalies
            .used(&event, self.client_token.is_some());
        self.state.usage.record_detached(event);
    }
}

/// A non-streamed body kept to read its usage: a body that arrives in one piece (the usual
/// case) is kept as that piece, shared with the client's copy; only one in several pieces is
/// gathered into a buffer of its own.
#[derive(Default)]
pub(crate) enum BodyCopy {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
    /// Grew past [`MAX_METERED_BODY`]: not kept.
    TooLarge,
}

impl BodyCopy {
    /// Adds a piece; a body that grows past [`MAX_METERED_BODY`] is let go.
    pub(crate) fn push(&mut self, chunk: &Bytes) {
        if self.bytes().len() + chunk.len() > MAX_METERED_BODY {
            *self = BodyCopy::TooLarge;
            return;
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
            BodyCopy::TooLarge => BodyCopy::TooLarge,
        };
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            BodyCopy::Empty | BodyCopy::TooLarge => &[],
            BodyCopy::One(bytes) => bytes,
            BodyCopy::Many(bytes) => bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_copy_keeps_one_piece_shared_and_gathers_several() {
        let mut copy = BodyCopy::default();
        let first = Bytes::from_static(br#"{"usage":"#);
        copy.push(&first);
        assert!(
            matches!(&copy, BodyCopy::One(piece) if piece.as_ptr() == first.as_ptr()),
            "one piece is shared, not copied"
        );
        copy.push(&Bytes::from_static(br#"{"prompt_tokens":3}"#));
        copy.push(&Bytes::from_static(b"}"));
        assert_eq!(copy.bytes(), br#"{"usage":{"prompt_tokens":3}}"#);
        copy.push(&Bytes::from(vec![b' '; MAX_METERED_BODY]));
        assert!(
            matches!(copy, BodyCopy::TooLarge),
            "a body past the limit is not kept"
        );
        copy.push(&Bytes::from_static(b"{}"));
        assert!(copy.bytes().is_empty(), "nor is anything after it");
    }
}
