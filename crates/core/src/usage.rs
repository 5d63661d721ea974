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
        // A count that is not an integer reads as absent, as in `from_body`.
        let int = |v: &Value| v.as_i64();
        let (input, output, input_details, output_details) =
            if let Some(input) = int(&usage["prompt_tokens"]) {
                (
                    input,
                    int(&usage["completion_tokens"]).unwrap_or(0),
                    "prompt_tokens_details",
                    "completion_tokens_details",
                )
            } else if let Some(input) = int(&usage["input_tokens"]) {
                (
                    input,
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

/// A `usage` object as it appears in a response body. A count that is not an integer reads as
/// absent, and a details value that is not an object as empty, rather than failing the whole.
#[derive(Deserialize)]
struct UsageFields {
    #[serde(default, deserialize_with = "lenient_int")]
    prompt_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lenient_int")]
    completion_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lenient_details")]
    prompt_tokens_details: Option<DetailFields>,
    #[serde(default, deserialize_with = "lenient_details")]
    completion_tokens_details: Option<DetailFields>,
    #[serde(default, deserialize_with = "lenient_int")]
    input_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lenient_int")]
    output_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lenient_details")]
    input_tokens_details: Option<DetailFields>,
    #[serde(default, deserialize_with = "lenient_details")]
    output_tokens_details: Option<DetailFields>,
}

#[derive(Deserialize)]
struct DetailFields {
    #[serde(default, deserialize_with = "lenient_int")]
    cached_tokens: Option<i64>,
    #[serde(default, deserialize_with = "lenient_int")]
    reasoning_tokens: Option<i64>,
}

/// Any JSON value: an integer (that fits `i64`) as itself, anything else skipped as `None`.
fn lenient_int<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<i64>, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Int;
    impl<'de> Visitor<'de> for Int {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_i64<E>(self, v: i64) -> Result<Option<i64>, E> {
            Ok(Some(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Option<i64>, E> {
            Ok(i64::try_from(v).ok())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<i64>, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<i64>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    value.deserialize_any(Int)
}

/// Any JSON value: an object as token details, anything else skipped as `None`. (Borrowing the
/// details as raw JSON and parsing them again cost ~1.8k more instructions per request.)
fn lenient_details<'de, D: serde::Deserializer<'de>>(
    value: D,
) -> Result<Option<DetailFields>, D::Error> {
    use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Details;
    impl<'de> Visitor<'de> for Details {
        type Value = Option<DetailFields>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            DetailFields::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    value.deserialize_any(Details)
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
                // Strings are most of a body: jump to the next quote or escape.
                loop {
                    end += memchr::memchr2(b'"', b'\\', body.get(end..)?)?;
                    if body[end] == b'"' {
                        break;
                    }
                    end += 2;
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
        let cached = |d: Option<DetailFields>| d.and_then(|d| d.cached_tokens).unwrap_or(0);
        let reasoning = |d: Option<DetailFields>| d.and_then(|d| d.reasoning_tokens).unwrap_or(0);
        if let Some(input) = usage.prompt_tokens {
            Some(TokenUsage {
                input,
                cached_input: cached(usage.prompt_tokens_details),
                output: usage.completion_tokens.unwrap_or(0),
                reasoning: reasoning(usage.completion_tokens_details),
            })
        } else {
            usage.input_tokens.map(|input| TokenUsage {
                input,
                cached_input: cached(usage.input_tokens_details),
                output: usage.output_tokens.unwrap_or(0),
                reasoning: reasoning(usage.output_tokens_details),
            })
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
            json!({"usage": {"prompt_tokens": 9, "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": "3", "extra": {"deep": [1, {"x": 2}]}},
                "completion_tokens_details": [1, 2]}}),
            json!({"usage": {"input_tokens": 5, "output_tokens": {"n": 1},
                "input_tokens_details": 7, "output_tokens_details": {"reasoning_tokens": 2}}}),
            json!({"usage": {"prompt_tokens": -2, "completion_tokens": 18_446_744_073_709_551_615_u64}}),
            json!({"usage": {"prompt_tokens": [1], "input_tokens": 4}}),
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
