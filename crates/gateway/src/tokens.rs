//! Token counts Tollgate works out itself: a request's prompt, for token limits and budgets,
//! and a response's, when it ends before the provider said how many tokens it used (a client
//! that hung up mid-stream).
//!
//! Counting runs at roughly 20 MiB/s (o200k); a 29 MiB prompt takes 1.4 s. A serving thread
//! serves many connections, so it never counts more than [`INLINE_BYTES`]: a larger prompt is
//! counted on tokio's blocking pool (at most [`BIG_AT_ONCE`] large jobs at a time, parsing
//! large bodies included: [`off_thread`]), and where no waiting is possible (a request's end) a larger text is estimated at four bytes a token past that.

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::Semaphore;

/// Most bytes counted on a serving thread (about 3 ms of work).
pub const INLINE_BYTES: usize = 64 * 1024;

/// Most large prompts counted at once on the blocking pool.
const BIG_AT_ONCE: usize = 2;

static BIG: Semaphore = Semaphore::const_new(BIG_AT_ONCE);

/// A request's input tokens ([`count_request`]), counted off the serving thread when the
/// body is large.
pub async fn count_request_off_thread(body: Bytes) -> i64 {
    if body.len() <= INLINE_BYTES {
        return count_request(&body);
    }
    let estimate = (body.len() / 4) as i64;
    off_thread(move || count_request(&body))
        .await
        .unwrap_or(estimate)
}

/// Runs `work` on `body` here when the body is small, and on the blocking pool
/// ([`off_thread`]) when it is larger than [`INLINE_BYTES`]; `None` if the work panicked.
pub async fn by_size<T: Send + 'static>(
    body: &Bytes,
    work: impl FnOnce(&Bytes) -> T + Send + 'static,
) -> Option<T> {
    if body.len() <= INLINE_BYTES {
        return Some(work(body));
    }
    let body = body.clone();
    off_thread(move || work(&body)).await
}

/// Runs work on large input on the blocking pool, at most [`BIG_AT_ONCE`] at a time; the turn
/// is held by the work itself, so a caller that goes away (its client left) does not free it
/// while the work still runs. `None` if the work panicked.
pub async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let turn = BIG.acquire().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .ok()
}

/// [`count_request`] for a body of up to [`INLINE_BYTES`]; a larger one at four bytes a token.
pub fn count_request_inline(body: &[u8]) -> i64 {
    if body.len() <= INLINE_BYTES {
        count_request(body)
    } else {
        (body.len() / 4) as i64
    }
}

/// [`count`] of the first [`INLINE_BYTES`] of `text`, and four bytes a token past them.
pub fn count_inline(text: &str) -> i64 {
    if text.len() <= INLINE_BYTES {
        return count(text);
    }
    let mut cut = INLINE_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    count(&text[..cut]).saturating_add(((text.len() - cut) / 4) as i64)
}

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

    #[test]
    fn large_texts_are_estimated_past_the_inline_size() {
        let word = "hello ";
        let big = word.repeat(INLINE_BYTES / word.len() * 2);
        let inline = count_inline(&big);
        let exact = count(&big);
        assert!(
            inline > 0 && inline != exact,
            "past the inline size, an estimate"
        );
        assert_eq!(count_inline("hello world"), 2, "small texts are exact");
        let body = format!(r#"{{"model":"m","input":"{big}"}}"#);
        assert_eq!(
            count_request_inline(body.as_bytes()),
            (body.len() / 4) as i64
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_large_prompt_sent_to_the_blocking_pool_is_counted_exactly() {
        let big = "hello ".repeat(INLINE_BYTES / 3);
        let body = Bytes::from(format!(r#"{{"model":"m","input":"{big}"}}"#));
        assert!(body.len() > INLINE_BYTES);
        assert_eq!(
            count_request_off_thread(body.clone()).await,
            count_request(&body)
        );
    }
}
