//! Token counts as the OpenAI API reports them, read from the response's `usage` object of any
//! endpoint's shape.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Tokens of one request. `cached_input` is part of `input`; `reasoning` is part of `output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: i64,
    pub cached_input: i64,
    pub output: i64,
    pub reasoning: i64,
}

impl TokenUsage {
    /// Reads a `usage` object: Chat Completions and Completions (`prompt_tokens`,
    /// `completion_tokens`, `*_details`), Responses (`input_tokens`, `output_tokens`,
    /// `*_details`) and Embeddings (`prompt_tokens` only). `None` when it is not one.
    pub fn from_usage(usage: &Value) -> Option<TokenUsage> {
        let int = |v: &Value| v.as_i64();
        let obj = usage.as_object()?;
        let (input, output, input_details, output_details) = if obj.contains_key("prompt_tokens") {
            (
                int(&usage["prompt_tokens"])?,
                int(&usage["completion_tokens"]).unwrap_or(0),
                "prompt_tokens_details",
                "completion_tokens_details",
            )
        } else if obj.contains_key("input_tokens") {
            (
                int(&usage["input_tokens"])?,
                int(&usage["output_tokens"]).unwrap_or(0),
                "input_tokens_details",
                "output_tokens_details",
            )
        } else {
            return None;
        };
        Some(TokenUsage {
            input,
            cached_input: int(&usage[input_details]["cached_tokens"]).unwrap_or(0),
            output,
            reasoning: int(&usage[output_details]["reasoning_tokens"]).unwrap_or(0),
        })
    }
}

/// A `usage` object as it appears in a response body, with every field borrowed unread.
#[derive(Deserialize)]
struct UsageFields<'a> {
    #[serde(borrow, default)]
    prompt_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt_tokens_details: Option<&'a RawValue>,
    #[serde(borrow, default)]
    completion_tokens_details: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_tokens_details: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_tokens_details: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DetailFields<'a> {
    #[serde(borrow, default)]
    cached_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_tokens: Option<&'a RawValue>,
}

/// A JSON body's top-level `usage`, everything else skipped over unread.
#[derive(Deserialize)]
struct BodyFields<'a> {
    #[serde(borrow, default)]
    usage: Option<&'a RawValue>,
}

/// Where the value of the top-level `"usage"` key of a JSON object starts, found by one pass
/// over the bytes that tracks only strings and nesting (an OpenAI response body is mostly
/// content and choices, which need not be parsed to be skipped). `None` when the body is not
/// an object or has no such key written without escapes.
fn top_level_usage(body: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                let start = at + 1;
                let mut end = start;
                loop {
                    match body.get(end)? {
                        b'\\' => end += 2,
                        b'"' => break,
                        _ => end += 1,
                    }
                }
                at = end + 1;
                if depth == 1 && &body[start..end] == b"usage" {
                    while body.get(at).is_some_and(u8::is_ascii_whitespace) {
                        at += 1;
                    }
                    if body.get(at) == Some(&b':') {
                        return Some(at + 1);
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        at += 1;
    }
    None
}

impl TokenUsage {
    /// [`TokenUsage::from_usage`] for a whole response body (`{..., "usage": {...}}`), read
    /// without building the JSON tree: this runs once per metered response. A body cut off
    /// after its `usage` still yields it (the provider's own count).
    pub fn from_body(body: &[u8]) -> Option<TokenUsage> {
        let usage: UsageFields = match top_level_usage(body) {
            // Only the usage object is parsed; the rest of the body was only scanned.
            Some(at) => {
                let mut value = serde_json::Deserializer::from_slice(&body[at..]);
                UsageFields::deserialize(&mut value).ok()?
            }
            // No plainly written top-level key (none at all, or one spelled with escapes):
            // the whole body goes through the JSON parser.
            None => {
                let body: BodyFields = serde_json::from_slice(body).ok()?;
                serde_json::from_str(body.usage?.get()).ok()?
            }
        };
        let int = |v: Option<&RawValue>| v.and_then(|v| serde_json::from_str::<i64>(v.get()).ok());
        // `cached_tokens` of an input details object, `reasoning_tokens` of an output one.
        let detail = |v: Option<&RawValue>, cached: bool| {
            v.and_then(|v| serde_json::from_str::<DetailFields>(v.get()).ok())
                .and_then(|d| {
                    int(if cached {
                        d.cached_tokens
                    } else {
                        d.reasoning_tokens
                    })
                })
                .unwrap_or(0)
        };
        if usage.prompt_tokens.is_some() {
            Some(TokenUsage {
                input: int(usage.prompt_tokens)?,
                cached_input: detail(usage.prompt_tokens_details, true),
                output: int(usage.completion_tokens).unwrap_or(0),
                reasoning: detail(usage.completion_tokens_details, false),
            })
        } else if usage.input_tokens.is_some() {
            Some(TokenUsage {
                input: int(usage.input_tokens)?,
                cached_input: detail(usage.input_tokens_details, true),
                output: int(usage.output_tokens).unwrap_or(0),
                reasoning: detail(usage.output_tokens_details, false),
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_endpoint_shape() {
        let chat = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}});
        assert_eq!(
            TokenUsage::from_usage(&chat),
            Some(TokenUsage {
                input: 10,
                cached_input: 4,
                output: 5,
                reasoning: 2
            })
        );
        let responses = json!({"input_tokens": 7, "output_tokens": 3, "total_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 1}});
        assert_eq!(
            TokenUsage::from_usage(&responses),
            Some(TokenUsage {
                input: 7,
                cached_input: 0,
                output: 3,
                reasoning: 1
            })
        );
        let embeddings = json!({"prompt_tokens": 8, "total_tokens": 8});
        assert_eq!(
            TokenUsage::from_usage(&embeddings),
            Some(TokenUsage {
                input: 8,
                cached_input: 0,
                output: 0,
                reasoning: 0
            })
        );
        assert_eq!(TokenUsage::from_usage(&Value::Null), None);
        assert_eq!(TokenUsage::from_usage(&json!({"tokens": 3})), None);
    }

    #[test]
    fn reads_a_whole_body_as_the_tree_reader_does() {
        let bodies = [
            json!({"id": "x", "choices": [{"message": {"content": "usage: {\"prompt_tokens\": 99}"}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 2}}}),
            json!({"object": "response", "usage": {"input_tokens": 7, "output_tokens": 3,
                "input_tokens_details": {"cached_tokens": 1}, "output_tokens_details": {"reasoning_tokens": 1}}}),
            json!({"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
            json!({"usage": {"prompt_tokens": 3, "completion_tokens": "many", "prompt_tokens_details": null}}),
            json!({"usage": {"prompt_tokens": 2.5}}),
            json!({"usage": {"total_tokens": 4}}),
            json!({"usage": null}),
            json!({"usage": 3}),
            json!({"data": []}),
            json!({"choices": [{"usage": {"prompt_tokens": 50}}], "usage": {"prompt_tokens": 5}}),
            json!({"choices": [{"usage": {"prompt_tokens": 50}}]}),
            json!({"nested": {"usage": {"prompt_tokens": 50}}, "x\\\"usage": 1, "usage": {"input_tokens": 6}}),
            json!({"text": "\\", "usage": {"prompt_tokens": 3}}),
        ];
        for body in bodies {
            let text = serde_json::to_vec(&body).unwrap();
            assert_eq!(
                TokenUsage::from_body(&text),
                TokenUsage::from_usage(&body["usage"]),
                "{body}"
            );
        }
        assert_eq!(
            TokenUsage::from_body(br#"{"usage": {"prompt_tokens": 10, "completion_tokens": 5}}"#),
            Some(TokenUsage {
                input: 10,
                cached_input: 0,
                output: 5,
                reasoning: 0
            })
        );
        assert_eq!(TokenUsage::from_body(b"not json"), None);
        assert_eq!(
            TokenUsage::from_body(br#"{"us\u0061ge": {"prompt_tokens": 4}}"#).map(|u| u.input),
            Some(4),
            "a key spelled with escapes is still found (by the full parser)"
        );
        assert_eq!(
            TokenUsage::from_body(br#"{"usage" : {"prompt_tokens": 4}, "id": "x"}"#)
                .map(|u| u.input),
            Some(4)
        );
        assert_eq!(
            TokenUsage::from_body(br#"["usage", {"prompt_tokens": 4}]"#),
            None
        );
        assert_eq!(TokenUsage::from_body(br#"{"a": "unterminated"#), None);
        assert_eq!(
            TokenUsage::from_body(br#"{"usage": {"prompt_tokens": 1}, "id": "cut o"#)
                .map(|u| u.input),
            Some(1),
            "a body cut off after its usage still has the provider's count"
        );
        assert_eq!(
            TokenUsage::from_body(br#"{"usage": {"prompt_tokens": 1"#),
            None,
            "cut off inside it"
        );
    }
}
