//! Money as integer micro-dollars (1 USD = 1,000,000), never floats.

use std::fmt;

#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct MicroUsd(pub i64);

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);

    pub fn saturating_add(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_add(other.0))
    }

    /// Parses a dollar amount as people type it: `10`, `12.5`, `.5`, `$0.25`, `1,000`. At most
    /// six decimals; never negative. (The price list's parser, more lenient about the writing.)
    pub fn parse_dollars(text: &str) -> Option<MicroUsd> {
        let cleaned: String = text
            .trim()
            .trim_start_matches('$')
            .chars()
            .filter(|c| *c != ',' && *c != '_')
            .collect();
        let cleaned = if cleaned.starts_with('.') && cleaned.len() > 1 {
            format!("0{cleaned}")
        } else {
            cleaned
        };
        crate::pricing::parse_dollars(&cleaned).ok().map(MicroUsd)
    }
}

impl fmt::Display for MicroUsd {
    /// `$1.234567`: dollars with all six decimals, so no amount is rounded away.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}${}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_dollars_exactly() {
        assert_eq!(MicroUsd(0).to_string(), "$0.000000");
        assert_eq!(MicroUsd(1_234_567).to_string(), "$1.234567");
        assert_eq!(MicroUsd(-5).to_string(), "-$0.000005");
    }

    #[test]
    fn parses_dollars_as_typed() {
        assert_eq!(MicroUsd::parse_dollars("10"), Some(MicroUsd(10_000_000)));
        assert_eq!(MicroUsd::parse_dollars("$12.5"), Some(MicroUsd(12_500_000)));
        assert_eq!(MicroUsd::parse_dollars("0.000001"), Some(MicroUsd(1)));
        assert_eq!(
            MicroUsd::parse_dollars("1,000"),
            Some(MicroUsd(1_000_000_000))
        );
        for bad in ["", "-1", "1.0000001", "ten", "1.2.3", "."] {
            assert_eq!(MicroUsd::parse_dollars(bad), None, "{bad}");
        }
    }
}
