//! OpenAI's `x-ratelimit-*` headers for a request: the tightest request limit and the tightest
//! token limit that applied. A leaf (admission fills them; errors and answers carry them).

use axum::http::{HeaderMap, HeaderValue};
use std::time::Duration;
use tollgate_core::limit_rules::Metric;
use tollgate_core::limits::{go_duration, Verdict};

/// `x-ratelimit-*` values: the tightest request limit and the tightest token limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub(crate) requests: Option<Shown>,
    pub(crate) tokens: Option<Shown>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    pub(crate) reset: Duration,
}

impl RateHeaders {
    pub(crate) fn offer(slot: &mut Option<Shown>, shown: Shown) {
        let tighter = match slot {
            None => true,
            Some(current) => {
                (shown.remaining, std::cmp::Reverse(shown.reset))
                    < (current.remaining, std::cmp::Reverse(current.reset))
            }
        };
        if tighter {
            *slot = Some(shown);
        }
    }

    pub(crate) fn add(&mut self, metric: Metric, limit: u64, verdict: &Verdict) {
        let shown = Shown {
            limit,
            remaining: verdict.remaining,
            reset: verdict.reset_after,
        };
        match metric {
            Metric::RequestsPerMinute | Metric::RequestsPerDay => {
                Self::offer(&mut self.requests, shown)
            }
            Metric::TokensPerMinute | Metric::TokensPerDay => Self::offer(&mut self.tokens, shown),
            Metric::Concurrent => {}
        }
    }

    /// Sets the headers OpenAI sends: limit, remaining and reset, for requests and tokens.
    pub fn apply(&self, headers: &mut HeaderMap) {
        use crate::headers::{RATE_LIMIT_REQUESTS, RATE_LIMIT_TOKENS};
        for (names, shown) in [
            (RATE_LIMIT_REQUESTS, self.requests),
            (RATE_LIMIT_TOKENS, self.tokens),
        ] {
            let Some(shown) = shown else { continue };
            let [limit, remaining, reset] = names;
            headers.insert(limit, HeaderValue::from(shown.limit));
            headers.insert(remaining, HeaderValue::from(shown.remaining));
            if let Ok(value) = HeaderValue::from_str(&go_duration(shown.reset)) {
                headers.insert(reset, value);
            }
        }
    }
}
