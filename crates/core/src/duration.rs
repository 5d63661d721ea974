//! Human durations as people type them: `30s`, `90m`, `1h`, `24h`, `7d`, `immediate`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: use a whole number followed by s, m, h or d (for example 30m, 24h, 7d){extra}")]
pub struct DurationError {
    input: String,
    extra: &'static str,
}

/// A non-negative span of whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub i64);

impl Span {
    pub fn seconds(self) -> i64 {
        self.0
    }

    /// Parses `immediate`/`now`/`0`, or a whole number with a unit `s`, `m`, `h`, `d`.
    pub fn parse(text: &str) -> Result<Span, DurationError> {
        let trimmed = text.trim();
        let err = |extra| DurationError {
            input: text.to_owned(),
            extra,
        };
        if matches!(trimmed, "immediate" | "now" | "0") {
            return Ok(Span(0));
        }
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| err(""))?;
        let (number, unit) = trimmed.split_at(split);
        let number: i64 = number.parse().map_err(|_| err(""))?;
        let unit_seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(err("")),
        };
        number
            .checked_mul(unit_seconds)
            .map(Span)
            .ok_or_else(|| err(" (too large)"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s == 0 {
            f.write_str("immediate")
        } else if s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3_600 == 0 {
            write!(f, "{}h", s / 3_600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grace_choices() {
        assert_eq!(Span::parse("immediate"), Ok(Span(0)));
        assert_eq!(Span::parse("1h"), Ok(Span(3_600)));
        assert_eq!(Span::parse("24h"), Ok(Span(86_400)));
        assert_eq!(Span::parse("7d"), Ok(Span(604_800)));
        assert_eq!(Span::parse("90m").map(|s| s.to_string()), Ok("90m".into()));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in ["", "h", "1w", "-1h", "1.5h", "1 h", "99999999999999999999d"] {
            assert!(Span::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
