//! Server-sent events passed through as they arrive, read on the way for metering: the usage
//! the provider reports, whether the stream reached its final event, and the text delivered
//! (to count it if the provider never reports usage). Events are forwarded byte for byte; the
//! only change ever made is to keep the usage Tollgate asked for away from a client that did
//! not ask for it.

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_core::usage::TokenUsage;

/// The events of the Responses API that end a stream.
const FINAL_RESPONSE_EVENTS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

#[derive(Debug, Default)]
pub struct SseMeter {
    pending: BytesMut,
    /// Keep the usage Tollgate asked for (`stream_options.include_usage`) from the client.
    withhold_usage: bool,
    pub usage: Option<TokenUsage>,
    /// Whether the stream's final event (`data: [DONE]`, `response.completed`, ...) has been
    /// passed on: the answer was delivered, whether or not the client stays for the end of the
    /// body.
    pub complete: bool,
    /// What the model produced so far, as text: content, refusals, reasoning and tool-call
    /// arguments.
    pub text: String,
}

/// What to do with one event.
enum Verdict {
    Forward,
    Withhold,
    /// Forward this instead (the event without its `usage`).
    Replace(Bytes),
}

impl SseMeter {
    pub fn new(withhold_usage: bool) -> SseMeter {
        SseMeter {
            withhold_usage,
            ..SseMeter::default()
        }
    }

    /// Takes a piece of the upstream body; returns what to send the client now: every complete
    /// event in it (minus withheld ones). An incomplete event waits for its end.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end).freeze();
            match self.inspect(&event) {
                Verdict::Forward => out.extend_from_slice(&event),
                Verdict::Withhold => {}
                Verdict::Replace(other) => out.extend_from_slice(&other),
            }
        }
        out.freeze()
    }

    /// The rest, when the upstream body has ended.
    pub fn finish(&mut self) -> Bytes {
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
        for line in text.lines() {
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
                    self.text.push_str(delta);
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
                self.text.push_str(s);
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

/// The end (exclusive) of the first complete event: after a blank line.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
        let mut out = meter.push(stream.as_bytes()).to_vec();
        out.extend_from_slice(&meter.finish());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn forwards_events_whole_however_they_are_split() {
        let stream = [CHUNK, CHUNK2, STOP, USAGE, DONE].concat();
        for cut in [1, 7, 30, stream.len() - 3] {
            let mut meter = SseMeter::new(false);
            let mut out = Vec::new();
            out.extend_from_slice(&meter.push(&stream.as_bytes()[..cut]));
            assert!(!meter.complete || cut > stream.len() - DONE.len());
            out.extend_from_slice(&meter.push(&stream.as_bytes()[cut..]));
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
        let mut meter = SseMeter::new(false);
        assert!(
            meter.push(&CHUNK.as_bytes()[..20]).is_empty(),
            "half an event waits"
        );
    }

    #[test]
    fn withholds_the_usage_chunk_the_client_did_not_ask_for_in_any_shape() {
        for usage in [USAGE, LITELLM_USAGE] {
            let mut meter = SseMeter::new(true);
            let out = run(&mut meter, &[CHUNK, STOP, usage, DONE].concat());
            assert_eq!(out, [CHUNK, STOP, DONE].concat());
            assert_eq!(
                meter.usage.map(|u| u.input),
                Some(9),
                "usage is still learned"
            );
            let mut asked = SseMeter::new(false);
            let all = [CHUNK, STOP, usage, DONE].concat();
            assert_eq!(run(&mut asked, &all), all, "a client that asked gets it");
        }
    }

    #[test]
    fn usage_riding_on_a_chunk_with_content_is_taken_off_it() {
        let merged = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":1}}\n\n";
        let mut meter = SseMeter::new(true);
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
        let mut meter = SseMeter::new(true);
        assert_eq!(run(&mut meter, &events), events);
        assert_eq!(meter.text, "get_weather{\"city\":\"Paris\"}No.Hmm");
        assert!(!meter.complete, "no final event yet");
    }

    #[test]
    fn reads_responses_events_and_crlf_framing() {
        let mut meter = SseMeter::new(true);
        let events = "event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r\n\r\n\
                      event: response.function_call_arguments.delta\r\ndata: {\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{}\"}\r\n\r\n\
                      event: response.audio.delta\r\ndata: {\"type\":\"response.audio.delta\",\"delta\":\"AAAAAAAA\"}\r\n\r\n";
        let out = meter.push(events.as_bytes());
        assert_eq!(out.len(), events.len());
        assert_eq!(meter.text, "Hi{}");
        assert!(!meter.complete);
        for last in FINAL_RESPONSE_EVENTS {
            let mut meter = SseMeter::new(true);
            let done = format!("event: {last}\ndata: {{\"type\":\"{last}\",\"response\":{{\"usage\":{{\"input_tokens\":4,\"output_tokens\":1}}}}}}\n\n");
            assert_eq!(run(&mut meter, &done), done);
            assert!(meter.complete, "{last} ends the stream");
            assert_eq!(meter.usage.map(|u| (u.input, u.output)), Some((4, 1)));
        }
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
                let mut meter = SseMeter::new(withhold);
                let mut out = Vec::new();
                let mut from = 0;
                for point in points.into_iter().chain([stream.len()]) {
                    out.extend_from_slice(&meter.push(&stream.as_bytes()[from..point]));
                    from = point;
                }
                out.extend_from_slice(&meter.finish());
                let mut whole = SseMeter::new(withhold);
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
