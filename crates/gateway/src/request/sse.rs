//! Server-sent events passed through as they arrive, read on the way for metering: the usage
//! the provider reports, whether the stream reached its final event, and the text delivered
//! (to count it if the provider never reports usage). Events are forwarded byte for byte; the
//! only change ever made is to keep the usage Tollgate asked for away from a client that did
//! not ask for it.
//!
//! Bounded: each byte is scanned once for the blank line that ends an event (LF, CRLF or CR
//! line ends, as the SSE format allows), an unfinished event is held up to a size limit (a
//! provider that goes past it gets its stream cut, see [`Oversized`]), and the text kept for
//! estimates is capped (the rest is counted in bytes).

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_core::usage::TokenUsage;

/// The events of the Responses API that end a stream.
const FINAL_RESPONSE_EVENTS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// Most output text kept to count locally; beyond it, bytes are counted (four to a token).
const MAX_TEXT: usize = 4 * 1024 * 1024;

/// An event grew past the limit without ending: the provider is broken or hostile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized {
    pub limit: usize,
}

#[derive(Debug, Default)]
pub struct SseMeter {
    /// The unfinished event.
    pending: BytesMut,
    /// Largest event held before the stream is cut.
    max_event: usize,
    /// How far `pending` has been scanned for the event's end, and the scan's state there.
    scanned: usize,
    line_has_bytes: bool,
    after_cr: bool,
    /// The LF of a CRLF that ended the last event arrived after it: it goes (or is kept back)
    /// the way that event went.
    stray_lf: bool,
    last_forwarded_as_is: bool,
    /// Keep the usage Tollgate asked for (`stream_options.include_usage`) from the client.
    withhold_usage: bool,
    pub usage: Option<TokenUsage>,
    /// Whether the stream's final event (`data: [DONE]`, `response.completed`, ...) has been
    /// passed on: the answer was delivered, whether or not the client stays for the end of the
    /// body.
    pub complete: bool,
    /// What the model produced so far, as text: content, refusals, reasoning and tool-call
    /// arguments (the first [`MAX_TEXT`] bytes).
    pub text: String,
    /// Bytes of such text past [`MAX_TEXT`].
    pub text_beyond: usize,
    /// The id of what the stream answers (a chat completion's `id`, a response's
    /// `response.id`), from the first event that has one.
    pub answer_id: Option<String>,
}

/// What to do with one event.
enum Verdict {
    Forward,
    Withhold,
    /// Forward this instead (the event without its `usage`).
    Replace(Bytes),
}

impl SseMeter {
    /// A meter holding events of up to `max_event` bytes.
    pub fn new(withhold_usage: bool, max_event: usize) -> SseMeter {
        SseMeter {
            withhold_usage,
            max_event,
            ..SseMeter::default()
        }
    }

    /// Takes a piece of the upstream body; returns what to send the client now: every complete
    /// event in it (minus withheld ones). An incomplete event waits for its end, unless it
    /// grows past the limit: then the complete events come with the error, and the stream is
    /// to be cut.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, (Bytes, Oversized)> {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = self.event_end() {
            let event = self.pending.split_to(end).freeze();
            if std::mem::take(&mut self.stray_lf) {
                if self.last_forwarded_as_is {
                    out.extend_from_slice(&event);
                }
                continue;
            }
            let verdict = self.inspect(&event);
            self.last_forwarded_as_is = matches!(verdict, Verdict::Forward);
            match verdict {
                Verdict::Forward => out.extend_from_slice(&event),
                Verdict::Withhold => {}
                Verdict::Replace(other) => out.extend_from_slice(&other),
            }
        }
        if self.pending.len() > self.max_event {
            self.pending = BytesMut::new();
            self.scanned = 0;
            return Err((
                out.freeze(),
                Oversized {
                    limit: self.max_event,
                },
            ));
        }
        Ok(out.freeze())
    }

    /// The end (exclusive) of the event in `pending`, when its blank line has arrived; scans
    /// only the bytes not scanned before.
    fn event_end(&mut self) -> Option<usize> {
        let bytes = &self.pending[..];
        let mut at = self.scanned;
        while at < bytes.len() {
            let byte = bytes[at];
            at += 1;
            match byte {
                // The LF of a CRLF: the CR ended the line. If that CR ended the previous event
                // (its LF had not arrived yet), the LF is passed on by itself.
                b'\n' if self.after_cr => {
                    self.after_cr = false;
                    if at == 1 {
                        self.stray_lf = true;
                        return Some(1);
                    }
                }
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    if !self.line_has_bytes {
                        // A blank line: the event ends here (with the LF of a CRLF, if here).
                        if self.after_cr && bytes.get(at) == Some(&b'\n') {
                            at += 1;
                            self.after_cr = false;
                        }
                        self.scanned = 0;
                        return Some(at);
                    }
                    self.line_has_bytes = false;
                }
                _ => {
                    self.after_cr = false;
                    self.line_has_bytes = true;
                }
            }
        }
        self.scanned = at;
        None
    }

    /// The rest, when the upstream body has ended.
    pub fn finish(&mut self) -> Bytes {
        self.scanned = 0;
        let rest = self.pending.split().freeze();
        if rest.is_empty() {
            return rest;
        }
        match self.inspect(&rest) {
            Verdict::Forward => rest,
            Verdict::Withhold => Bytes::new(),
            Verdict::Replace(other) => other,
        }
    }

    /// Reads one event.
    fn inspect(&mut self, event: &[u8]) -> Verdict {
        let Ok(text) = std::str::from_utf8(event) else {
            return Verdict::Forward;
        };
        let mut data = String::new();
        for line in text.split(['\n', '\r']) {
            if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
        }
        if data.trim() == "[DONE]" {
            self.complete = true;
            return Verdict::Forward;
        }
        if data.is_empty() {
            return Verdict::Forward;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            return Verdict::Forward;
        };
        if self.answer_id.is_none() {
            self.answer_id = value["response"]["id"]
                .as_str()
                .or_else(|| value["id"].as_str())
                .map(str::to_owned);
        }
        let usage = if value["usage"].is_object() {
            &value["usage"]
        } else {
            &value["response"]["usage"]
        };
        if let Some(usage) = TokenUsage::from_usage(usage) {
            self.usage = Some(usage);
        }
        if let Some(kind) = value["type"].as_str() {
            if FINAL_RESPONSE_EVENTS.contains(&kind) {
                self.complete = true;
            }
            // Text, refusal, reasoning and tool-argument deltas; audio deltas are base64 audio.
            if kind.ends_with(".delta") && kind != "response.audio.delta" {
                if let Some(delta) = value["delta"].as_str() {
                    self.keep_text(delta);
                }
            }
        }
        let mut carries = false;
        if let Some(choices) = value["choices"].as_array() {
            for choice in choices {
                self.read_choice(choice);
                carries |= carries_anything(choice);
            }
        }
        if !self.withhold_usage || !value["usage"].is_object() {
            return Verdict::Forward;
        }
        // A chunk Tollgate's `include_usage` made: whatever its `choices` look like (`[]` as
        // OpenAI writes it, `[{"index":0,"delta":{}}]` as LiteLLM does), it is withheld when
        // its choices carry nothing, and passed on without its `usage` when they carry anything
        // (content, a role, a finish reason, a field Tollgate does not know).
        if !carries {
            return Verdict::Withhold;
        }
        if let Some(fields) = value.as_object_mut() {
            fields.remove("usage");
        }
        let mut out = b"data: ".to_vec();
        if serde_json::to_writer(&mut out, &value).is_err() {
            return Verdict::Forward;
        }
        out.extend_from_slice(b"\n\n");
        Verdict::Replace(Bytes::from(out))
    }

    /// Gathers a choice's output text: content, refusals, reasoning (as vLLM and DeepSeek send
    /// it), completions' text, and tool or function names and arguments.
    fn read_choice(&mut self, choice: &Value) {
        let delta = &choice["delta"];
        let mut text = |value: &Value| {
            if let Some(s) = value.as_str() {
                self.keep_text(s);
            }
        };
        text(&delta["content"]);
        text(&delta["refusal"]);
        text(&delta["reasoning_content"]);
        text(&delta["reasoning"]);
        text(&choice["text"]);
        text(&delta["function_call"]["name"]);
        text(&delta["function_call"]["arguments"]);
        if let Some(calls) = delta["tool_calls"].as_array() {
            for call in calls {
                text(&call["function"]["name"]);
                text(&call["function"]["arguments"]);
            }
        }
    }
}

impl SseMeter {
    fn keep_text(&mut self, piece: &str) {
        if self.text.len() + piece.len() <= MAX_TEXT {
            self.text.push_str(piece);
        } else {
            self.text_beyond += piece.len();
        }
    }
}

/// Whether a choice holds anything but its index: a value that is not null, `""`, `[]`, or an
/// object of such values.
fn carries_anything(choice: &Value) -> bool {
    fn empty(value: &Value) -> bool {
        match value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Object(fields) => fields.values().all(empty),
            Value::Bool(_) | Value::Number(_) => false,
        }
    }
    match choice {
        Value::Object(fields) => fields
            .iter()
            .any(|(name, value)| name != "index" && !empty(value)),
        other => !empty(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHUNK: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n";
    const CHUNK2: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n";
    const STOP: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    const LITELLM_USAGE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn run(meter: &mut SseMeter, stream: &str) -> String {
        let mut out = meter.push(stream.as_bytes()).unwrap_or_default().to_vec();
        out.extend_from_slice(&meter.finish());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn forwards_events_whole_however_they_are_split() {
        let stream = [CHUNK, CHUNK2, STOP, USAGE, DONE].concat();
        for cut in [1, 7, 30, stream.len() - 3] {
            let mut meter = SseMeter::new(false, 1 << 20);
            let mut out = Vec::new();
            out.extend_from_slice(&meter.push(&stream.as_bytes()[..cut]).unwrap_or_default());
            assert!(!meter.complete || cut > stream.len() - DONE.len());
            out.extend_from_slice(&meter.push(&stream.as_bytes()[cut..]).unwrap_or_default());
            out.extend_from_slice(&meter.finish());
            assert_eq!(
                String::from_utf8(out).unwrap_or_default(),
                stream,
                "cut at {cut}"
            );
            assert_eq!(
                meter.usage,
                Some(TokenUsage {
                    input: 9,
                    cached_input: 0,
                    output: 2,
                    reasoning: 0
                })
            );
            assert_eq!(meter.text, "Hello");
            assert!(meter.complete, "[DONE] ends the stream");
        }
        let mut meter = SseMeter::new(false, 1 << 20);
        assert!(
            meter
                .push(&CHUNK.as_bytes()[..20])
                .unwrap_or_default()
                .is_empty(),
            "half an event waits"
        );
    }

    #[test]
    fn withholds_the_usage_chunk_the_client_did_not_ask_for_in_any_shape() {
        for usage in [USAGE, LITELLM_USAGE] {
            let mut meter = SseMeter::new(true, 1 << 20);
            let out = run(&mut meter, &[CHUNK, STOP, usage, DONE].concat());
            assert_eq!(out, [CHUNK, STOP, DONE].concat());
            assert_eq!(
                meter.usage.map(|u| u.input),
                Some(9),
                "usage is still learned"
            );
            let mut asked = SseMeter::new(false, 1 << 20);
            let all = [CHUNK, STOP, usage, DONE].concat();
            assert_eq!(run(&mut asked, &all), all, "a client that asked gets it");
        }
    }

    #[test]
    fn usage_riding_on_a_chunk_with_content_is_taken_off_it() {
        let merged = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n\n";
        let mut meter = SseMeter::new(true, 1 << 20);
        let out = run(&mut meter, &[merged, DONE].concat());
        let first = out.split("\n\n").next().unwrap_or_default();
        let value: Value =
            serde_json::from_str(first.trim_start_matches("data: ")).unwrap_or_default();
        assert_eq!(value["choices"][0]["delta"]["content"], "!");
        assert!(value.get("usage").is_none(), "{out}");
        assert!(out.ends_with(DONE));
        assert_eq!(meter.usage.map(|u| (u.input, u.output)), Some((4, 1)));
    }

    #[test]
    fn only_choices_that_carry_nothing_make_a_usage_chunk_withheld() {
        for choice in [
            json!({"index": 0, "delta": {}}),
            json!({"index": 0, "delta": {"content": ""}, "finish_reason": null, "logprobs": null}),
            json!({"index": 0, "delta": {"content": null, "tool_calls": []}}),
        ] {
            assert!(!carries_anything(&choice), "{choice}");
        }
        for choice in [
            json!({"index": 0, "delta": {"role": "assistant"}}),
            json!({"index": 0, "delta": {}, "finish_reason": "stop"}),
            json!({"index": 0, "delta": {"annotations": [{"type": "url_citation"}]}}),
            json!({"index": 0, "delta": {"reasoning_details": [{"text": "x"}]}}),
        ] {
            assert!(carries_anything(&choice), "{choice}");
        }
    }

    #[test]
    fn tool_calls_refusals_and_reasoning_count_as_delivered_text() {
        let events = [
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"No.\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"Hmm\"}}]}\n\n",
        ]
        .concat();
        let mut meter = SseMeter::new(true, 1 << 20);
        assert_eq!(run(&mut meter, &events), events);
        assert_eq!(meter.text, "get_weather{\"city\":\"Paris\"}No.Hmm");
        assert!(!meter.complete, "no final event yet");
    }

    #[test]
    fn reads_responses_events_and_crlf_framing() {
        let mut meter = SseMeter::new(true, 1 << 20);
        let events = "event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r\n\r\n\
                      event: response.function_call_arguments.delta\r\ndata: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{}\"}\r\n\r\n\
                      event: response.audio.delta\r\ndata: {\"type\":\"response.audio.delta\",\"delta\":\"AAAAAAAA\"}\r\n\r\n";
        let out = meter.push(events.as_bytes()).unwrap_or_default();
        assert_eq!(out.len(), events.len());
        assert_eq!(meter.text, "Hi{}");
        assert!(!meter.complete);
        for last in FINAL_RESPONSE_EVENTS {
            let mut meter = SseMeter::new(true, 1 << 20);
            let done = format!("event: {last}\ndata: {{\"type\":\"{last}\",\"response\":{{\"usage\":{{\"input_tokens\":4,\"output_tokens\":1}}}}}}\n\n");
            assert_eq!(run(&mut meter, &done), done);
            assert!(meter.complete, "{last} ends the stream");
            assert_eq!(meter.usage.map(|u| (u.input, u.output)), Some((4, 1)));
        }
    }

    #[test]
    fn every_line_ending_frames_events() {
        for (stream, events) in [
            ("data: a\n\ndata: b\n\n", 2),
            ("data: a\r\n\r\ndata: b\r\n\r\n", 2),
            ("data: a\r\rdata: b\r\r", 2),
            ("event: x\r\ndata: a\n\r\n", 1),
            (": comment\n\ndata: a\n\n", 1),
        ] {
            for cut in 0..stream.len() {
                let mut meter = SseMeter::new(false, 1 << 20);
                let mut out = meter
                    .push(&stream.as_bytes()[..cut])
                    .unwrap_or_default()
                    .to_vec();
                out.extend_from_slice(&meter.push(&stream.as_bytes()[cut..]).unwrap_or_default());
                let text = String::from_utf8(out).unwrap_or_default();
                assert_eq!(
                    text, stream,
                    "everything is forwarded once the events end ({cut})"
                );
                assert!(meter.pending.is_empty(), "{stream:?} cut at {cut}");
            }
            let mut meter = SseMeter::new(false, 1 << 20);
            let mut ends = 0;
            for byte in stream.as_bytes() {
                let out = meter.push(&[*byte]).unwrap_or_default();
                ends += usize::from(String::from_utf8_lossy(&out).contains("data:"));
            }
            assert_eq!(ends, events, "{stream:?} byte by byte");
        }
        let mut meter = SseMeter::new(false, 1 << 20);
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\r";
        let out = meter.push(event).unwrap_or_default();
        assert_eq!(out.as_ref(), event.as_slice());
        assert_eq!(meter.text, "Hi", "CR-only events are read too");
    }

    #[test]
    fn an_event_that_never_ends_is_cut_at_the_limit() {
        let mut meter = SseMeter::new(false, 64);
        let first = meter.push(CHUNK.as_bytes());
        assert_eq!(
            first.as_deref(),
            Ok(CHUNK.as_bytes()),
            "a small event passes"
        );
        assert!(meter.push(&[b'x'; 40]).is_ok(), "held, under the limit");
        let cut = meter.push(&[b'x'; 40]);
        assert_eq!(cut.map_err(|(_, e)| e), Err(Oversized { limit: 64 }));
        assert!(meter.pending.capacity() < 64, "the held bytes are let go");
        let mut endless = SseMeter::new(false, 1 << 20);
        let chunk = vec![b'y'; 64 * 1024];
        let mut pushes = 0;
        while endless.push(&chunk).is_ok() {
            pushes += 1;
            assert!(pushes <= 16, "never cut");
        }
        assert_eq!(pushes, 16, "cut once past 1 MiB");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn event() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z ]{0,12}".prop_map(|t| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n")),
                (0i64..10_000, 0i64..10_000).prop_map(|(i, o)| format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{i},\"completion_tokens\":{o}}}}}\n\n")),
                (0i64..10_000, 0i64..10_000).prop_map(|(i, o)| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{}}}}],\"usage\":{{\"prompt_tokens\":{i},\"completion_tokens\":{o}}}}}\r\n\r\n")),
                Just(": keep-alive\n\n".to_owned()),
                "[a-zA-Z ]{0,12}".prop_map(|t| format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}}}}]}}\r\r")),
                Just("data: [DONE]\n\n".to_owned()),
                "[a-z{}\\[\\]\":,]{0,20}".prop_map(|junk| format!("data: {junk}\n\n")),
            ]
        }

        proptest! {
            /// However a stream is cut into pieces, the meter learns the last usage it carries,
            /// sees its end, and passes every event but the usage-only ones, unchanged.
            #[test]
            fn pieces_never_change_what_is_read_or_forwarded(
                events in proptest::collection::vec(event(), 0..12),
                cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
                withhold in any::<bool>(),
            ) {
                let stream = events.concat();
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                points.sort_unstable();
                let mut meter = SseMeter::new(withhold, 1 << 20);
                let mut out = Vec::new();
                let mut from = 0;
                for point in points.into_iter().chain([stream.len()]) {
                    out.extend_from_slice(&meter.push(&stream.as_bytes()[from..point]).unwrap_or_default());
                    from = point;
                }
                out.extend_from_slice(&meter.finish());
                let mut whole = SseMeter::new(withhold, 1 << 20);
                let expected = run(&mut whole, &stream);
                prop_assert_eq!(String::from_utf8(out).unwrap_or_default(), expected.clone());
                prop_assert_eq!(meter.usage, whole.usage);
                prop_assert_eq!(meter.complete, stream.contains("data: [DONE]"));
                let last_usage = events.iter().rev().find_map(|e| {
                    let data = e.trim().strip_prefix("data: ")?;
                    TokenUsage::from_usage(&serde_json::from_str::<Value>(data).ok()?["usage"])
                });
                prop_assert_eq!(meter.usage, last_usage);
                let kept: String = events
                    .iter()
                    .filter(|e| !(withhold && e.contains("\"usage\":{")))
                    .cloned()
                    .collect();
                prop_assert_eq!(expected, kept);
            }
        }
    }
}
