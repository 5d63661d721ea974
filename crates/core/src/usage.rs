//! Token counts as the OpenAI API reports them, read from the response's `usage` object of any
//! endpoint's shape.

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
}
