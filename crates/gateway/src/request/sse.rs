//! Server-sent events passed through as they arrive, read on the way for metering: the usage
//! the provider reports, and the text delivered (to count it if the stream is cut short).
//! Events are forwarded byte for byte; the only one ever withheld is the usage-only chunk that
//! Tollgate asked for and the client did not.

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tollgate_core::usage::TokenUsage;

#[derive(Debug, Default)]
pub struct SseMeter {
    pending: BytesMut,
    /// Withhold the final `choices: []` usage chunk (the client did not ask for usage).
    withhold_usage_chunk: bool,
    pub usage: Option<TokenUsage>,
    /// Output text delivered so far.
    pub text: String,
}

impl SseMeter {
    pub fn new(withhold_usage_chunk: bool) -> SseMeter {
        SseMeter {
            withhold_usage_chunk,
            ..SseMeter::default()
        }
    }

    /// Takes a piece of the upstream body; returns what to send the client now: every complete
    /// event in it (minus a withheld one). An incomplete event waits for its end.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end).freeze();
            if self.inspect(&event) {
                out.extend_from_slice(&event);
            }
        }
        out.freeze()
    }

    /// The rest, when the upstream body has ended.
    pub fn finish(&mut self) -> Bytes {
        let rest = self.pending.split().freeze();
        if !rest.is_empty() && !self.inspect(&rest) {
            return Bytes::new();
        }
        rest
    }

    /// Reads one event; returns whether to forward it.
    fn inspect(&mut self, event: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(event) else {
            return true;
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
        if data.is_empty() || data == "[DONE]" {
            return true;
        }
        let Ok(value) = serde_json::from_str::<Value>(&data) else {
            return true;
        };
        let usage = if value["usage"].is_object() {
            &value["usage"]
        } else {
            &value["response"]["usage"]
        };
        if let Some(usage) = TokenUsage::from_usage(usage) {
            self.usage = Some(usage);
        }
        if let Some(choices) = value["choices"].as_array() {
            for choice in choices {
                if let Some(s) = choice["delta"]["content"]
                    .as_str()
                    .or_else(|| choice["text"].as_str())
                {
                    self.text.push_str(s);
                }
            }
            if self.withhold_usage_chunk && choices.is_empty() && value["usage"].is_object() {
                return false;
            }
        }
        if value["type"] == "response.output_text.delta" {
            if let Some(delta) = value["delta"].as_str() {
                self.text.push_str(delta);
            }
        }
        true
    }
}

/// The end (exclusive) of the first complete event: after a blank line.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n";
    const CHUNK2: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n";
    const USAGE: &str =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    #[test]
    fn forwards_events_whole_however_they_are_split() {
        let stream = [CHUNK, CHUNK2, USAGE, DONE].concat();
        for cut in [1, 7, 30, stream.len() - 3] {
            let mut meter = SseMeter::new(false);
            let mut out = Vec::new();
            out.extend_from_slice(&meter.push(&stream.as_bytes()[..cut]));
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
        }
        let mut meter = SseMeter::new(false);
        assert!(
            meter.push(&CHUNK.as_bytes()[..20]).is_empty(),
            "half an event waits"
        );
    }

    #[test]
    fn withholds_only_the_usage_chunk_the_client_did_not_ask_for() {
        let mut meter = SseMeter::new(true);
        let out = meter.push([CHUNK, USAGE, DONE].concat().as_bytes());
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap_or_default(),
            [CHUNK, DONE].concat()
        );
        assert_eq!(
            meter.usage.map(|u| u.input),
            Some(9),
            "usage is still learned"
        );
    }

    #[test]
    fn reads_responses_events_and_crlf_framing() {
        let mut meter = SseMeter::new(true);
        let events = "event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\r\n\r\n\
                      event: response.completed\r\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\r\n\r\n";
        let out = meter.push(events.as_bytes());
        assert_eq!(out.len(), events.len());
        assert_eq!(meter.text, "Hi");
        assert_eq!(meter.usage.map(|u| (u.input, u.output)), Some((4, 1)));
    }
}
