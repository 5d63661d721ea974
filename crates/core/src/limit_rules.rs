//! Rate-limit rules as people set them: at a level (organization, project, key), for a model
//! or a `*` pattern, any of requests and tokens per minute and per day and concurrent requests.
//!
//! Every rule that applies to a request is checked and the tightest decides. A rule counts all
//! the requests its pattern matches together (`gpt-4o*` at 100 RPM is 100 requests a minute
//! across every gpt-4o model); a rule for `*` also counts requests that name no model.

use crate::holder::Holder;
use crate::limits::{go_duration, Rate};
use crate::routing::ModelPattern;
use std::time::Duration;

/// One kind of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    RequestsPerMinute,
    RequestsPerDay,
    TokensPerMinute,
    TokensPerDay,
    Concurrent,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::RequestsPerMinute,
        Metric::RequestsPerDay,
        Metric::TokensPerMinute,
        Metric::TokensPerDay,
        Metric::Concurrent,
    ];

    /// As OpenAI's messages say it.
    pub fn label(self) -> &'static str {
        match self {
            Metric::RequestsPerMinute => "requests per min (RPM)",
            Metric::RequestsPerDay => "requests per day (RPD)",
            Metric::TokensPerMinute => "tokens per min (TPM)",
            Metric::TokensPerDay => "tokens per day (TPD)",
            Metric::Concurrent => "concurrent requests",
        }
    }

    /// The short name used in the CLI and config: `rpm`, `rpd`, `tpm`, `tpd`, `concurrency`.
    pub fn short(self) -> &'static str {
        match self {
            Metric::RequestsPerMinute => "rpm",
            Metric::RequestsPerDay => "rpd",
            Metric::TokensPerMinute => "tpm",
            Metric::TokensPerDay => "tpd",
            Metric::Concurrent => "concurrency",
        }
    }

    pub fn counts_tokens(self) -> bool {
        matches!(self, Metric::TokensPerMinute | Metric::TokensPerDay)
    }

    /// The refill rate of a limit of this kind; `None` for concurrency, which does not refill.
    pub fn rate(self, limit: u64) -> Option<Rate> {
        match self {
            Metric::RequestsPerMinute | Metric::TokensPerMinute => Some(Rate::per_minute(limit)),
            Metric::RequestsPerDay | Metric::TokensPerDay => Some(Rate::per_day(limit)),
            Metric::Concurrent => None,
        }
    }
}

/// The limits of one rule; `None` is "not limited here".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub rpm: Option<u64>,
    pub rpd: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrent: Option<u64>,
}

impl RateLimits {
    pub fn get(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::RequestsPerMinute => self.rpm,
            Metric::RequestsPerDay => self.rpd,
            Metric::TokensPerMinute => self.tpm,
            Metric::TokensPerDay => self.tpd,
            Metric::Concurrent => self.concurrent,
        }
    }

    /// The limits that are set, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (Metric, u64)> + '_ {
        Metric::ALL
            .into_iter()
            .filter_map(|m| self.get(m).map(|limit| (m, limit)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Limits `metric` to `limit` here.
    pub fn set(&mut self, metric: Metric, limit: u64) {
        *self.slot(metric) = Some(limit);
    }

    /// Stops limiting `metric` here.
    pub fn clear(&mut self, metric: Metric) {
        *self.slot(metric) = None;
    }

    fn slot(&mut self, metric: Metric) -> &mut Option<u64> {
        match metric {
            Metric::RequestsPerMinute => &mut self.rpm,
            Metric::RequestsPerDay => &mut self.rpd,
            Metric::TokensPerMinute => &mut self.tpm,
            Metric::TokensPerDay => &mut self.tpd,
            Metric::Concurrent => &mut self.concurrent,
        }
    }

    /// These limits with every limit `other` sets replacing this one's.
    pub fn overlaid(&self, other: &RateLimits) -> RateLimits {
        RateLimits {
            rpm: other.rpm.or(self.rpm),
            rpd: other.rpd.or(self.rpd),
            tpm: other.tpm.or(self.tpm),
            tpd: other.tpd.or(self.tpd),
            concurrent: other.concurrent.or(self.concurrent),
        }
    }

    pub fn counts_tokens(&self) -> bool {
        self.tpm.is_some() || self.tpd.is_some()
    }
}

/// As JSON: the limits that are set, by short name (`{"rpm": 60, "tpm": 200000}`).
impl serde::Serialize for RateLimits {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter().map(|(metric, limit)| (metric.short(), limit)))
    }
}

/// From the same map: `{"rpm": 60, "tpm": 200000}`.
impl<'de> serde::Deserialize<'de> for RateLimits {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            rpm: Option<u64>,
            rpd: Option<u64>,
            tpm: Option<u64>,
            tpd: Option<u64>,
            concurrency: Option<u64>,
        }
        let n = Named::deserialize(deserializer)?;
        Ok(RateLimits {
            rpm: n.rpm,
            rpd: n.rpd,
            tpm: n.tpm,
            tpd: n.tpd,
            concurrent: n.concurrency,
        })
    }
}

/// One rule: these limits, for this holder, on the models a pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRule {
    pub holder: Holder,
    pub model: ModelPattern,
    pub limits: RateLimits,
}

impl LimitRule {
    /// Whether the rule counts a request for `model` (its names as requested and as served),
    /// or, for a request that names no model, whether the rule is for every model.
    pub fn applies_to(&self, model: Option<(&str, &str)>) -> bool {
        match model {
            Some((requested, served)) => {
                self.model.matches(requested) || self.model.matches(served)
            }
            None => self.model.as_str() == "*",
        }
    }
}

/// OpenAI's 429 message: "Rate limit reached for gpt-4o in organization org-… on tokens per
/// min (TPM): Limit 30000, Used 29826, Requested 1185. Please try again in 2.022s."; for a
/// request that alone is over the limit (`retry_after` is `None`), OpenAI's "Request too large
/// for gpt-4o in organization org-… on tokens per min (TPM): Limit 30000, Requested 34307. The
/// input or output tokens must be reduced in order to run successfully."
pub fn rate_limit_message(
    subject: &str,
    holder: &Holder,
    metric: Metric,
    limit: u64,
    used: u64,
    requested: u64,
    retry_after: Option<Duration>,
) -> String {
    let label = metric.label();
    match (metric, retry_after) {
        (Metric::Concurrent, _) => format!(
            "Rate limit reached for {subject} in {holder} on {label}: Limit {limit}, Used {used}, Requested {requested}. Please try again when one of the requests in flight has finished."
        ),
        (_, Some(wait)) => format!(
            "Rate limit reached for {subject} in {holder} on {label}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}.",
            go_duration(wait)
        ),
        (_, None) if metric.counts_tokens() => format!(
            "Request too large for {subject} in {holder} on {label}: Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run successfully."
        ),
        (_, None) => format!(
            "Rate limit reached for {subject} in {holder} on {label}: Limit {limit}, Used {used}, Requested {requested}. This limit admits no requests; ask an administrator to raise it."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holder::Level;

    fn rule(model: &str) -> LimitRule {
        LimitRule {
            holder: Holder::new(Level::Key, "key_x"),
            model: ModelPattern::new(model),
            limits: RateLimits {
                rpm: Some(10),
                ..RateLimits::default()
            },
        }
    }

    #[test]
    fn rules_match_either_model_name_and_star_rules_match_requests_without_one() {
        assert!(rule("gpt-4o*").applies_to(Some(("fast", "gpt-4o-mini"))));
        assert!(rule("fast").applies_to(Some(("fast", "gpt-4o-mini"))));
        assert!(!rule("o3*").applies_to(Some(("fast", "gpt-4o-mini"))));
        assert!(rule("*").applies_to(None));
        assert!(!rule("gpt-4o*").applies_to(None));
    }

    #[test]
    fn overlaying_keeps_what_is_not_replaced() {
        let base = RateLimits {
            rpm: Some(10),
            tpm: Some(1_000),
            ..RateLimits::default()
        };
        let change = RateLimits {
            tpm: Some(500),
            concurrent: Some(2),
            ..RateLimits::default()
        };
        let merged = base.overlaid(&change);
        assert_eq!(
            merged.iter().collect::<Vec<_>>(),
            [
                (Metric::RequestsPerMinute, 10),
                (Metric::TokensPerMinute, 500),
                (Metric::Concurrent, 2)
            ]
        );
        assert!(merged.counts_tokens());
        assert!(RateLimits::default().is_empty());
    }

    #[test]
    fn messages_read_like_openai_s() {
        let holder = Holder::new(Level::Organization, "org-abc");
        assert_eq!(
            rate_limit_message(
                "gpt-4o",
                &holder,
                Metric::TokensPerMinute,
                30_000,
                29_826,
                1_185,
                Some(Duration::from_millis(2_022))
            ),
            "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29826, Requested 1185. Please try again in 2.022s."
        );
        let over = rate_limit_message(
            "gpt-4o",
            &holder,
            Metric::TokensPerMinute,
            100,
            0,
            500,
            None,
        );
        assert_eq!(
            over,
            "Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit 100, Requested 500. The input or output tokens must be reduced in order to run successfully."
        );
    }
}
