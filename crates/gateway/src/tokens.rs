//! Token counts Tollgate works out itself, when a response ends before the provider said how
//! many tokens it used (a client that hung up mid-stream).

use serde_json::Value;

/// Tokens in `text` with the o200k encoding (gpt-4o, gpt-4.1, o-series).
pub fn count(text: &str) -> i64 {
    if text.is_empty() {
        return 0;
    }
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as i64
}

/// An estimate of a request's input tokens: the text of its messages, prompt or input, plus
/// OpenAI's per-message overhead for chat.
pub fn count_request(body: &[u8]) -> i64 {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    let mut pieces = Vec::new();
    let mut overhead = 0;
    if let Some(messages) = value["messages"].as_array() {
        overhead = 3 + 4 * messages.len() as i64;
        for message in messages {
            collect_text(&message["content"], &mut pieces);
        }
    }
    for field in ["prompt", "input", "instructions"] {
        collect_text(&value[field], &mut pieces);
    }
    pieces.iter().map(|p| count(p)).sum::<i64>() + overhead
}

/// Every string of a content value (plain text, or the text parts of a parts array).
fn collect_text<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => {
            for key in ["text", "content", "input_text"] {
                if let Some(v) = map.get(key) {
                    collect_text(v, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_tiktoken() {
        assert_eq!(count(""), 0);
        assert_eq!(count("hello world"), 2);
        let chat = br#"{"model":"m","messages":[{"role":"user","content":"hello world"},{"role":"user","content":[{"type":"text","text":"hello world"}]}]}"#;
        assert_eq!(count_request(chat), 4 + 3 + 8);
        assert_eq!(count_request(br#"{"model":"m","input":"hello world"}"#), 2);
        assert_eq!(count_request(b"not json"), 0);
    }
}
