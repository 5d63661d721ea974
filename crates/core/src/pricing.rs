//! What tokens cost. Prices are integer micro-dollars per million tokens, so a request's cost is
//! exact integer arithmetic, rounded up to the next micro-dollar (never silently free).

use crate::money::MicroUsd;
use crate::usage::TokenUsage;
use std::collections::HashMap;

/// The price list shipped with Tollgate.
pub const SHIPPED: &str = include_str!("../data/pricing.toml");

/// Prices of one model, micro-dollars per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub input: i64,
    pub cached_input: i64,
    pub output: i64,
}

impl Price {
    /// The cost of `usage`: uncached input, cached input and output (reasoning tokens are part
    /// of output, as OpenAI bills them), rounded up to a whole micro-dollar.
    pub fn cost(&self, usage: &TokenUsage) -> MicroUsd {
        let cached = usage.cached_input.clamp(0, usage.input.max(0));
        let uncached = usage.input.max(0) - cached;
        let total = i128::from(uncached) * i128::from(self.input)
            + i128::from(cached) * i128::from(self.cached_input)
            + i128::from(usage.output.max(0)) * i128::from(self.output);
        let micros = (total + 999_999) / 1_000_000;
        MicroUsd(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("`{0}` is not a price: write dollars per million tokens with at most 6 decimals, such as \"2.50\"")]
    BadAmount(String),
    #[error("the price list is not valid: {0}")]
    BadList(String),
}

/// Parses a dollar amount (`"2.50"`, `"0.075"`, `3`) into micro-dollars, exactly.
pub fn parse_dollars(text: &str) -> Result<i64, PriceError> {
    let bad = || PriceError::BadAmount(text.to_owned());
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)
}

/// Model name to price, with the date the list was taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PricingTable {
    pub taken: String,
    prices: HashMap<String, Price>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    taken: String,
    models: HashMap<String, PriceFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    input: String,
    cached_input: String,
    output: String,
}

impl PricingTable {
    /// The list shipped with Tollgate.
    pub fn shipped() -> Result<PricingTable, PriceError> {
        PricingTable::parse(SHIPPED)
    }

    pub fn parse(text: &str) -> Result<PricingTable, PriceError> {
        let file: ListFile =
            toml::from_str(text).map_err(|e| PriceError::BadList(e.to_string()))?;
        let mut table = PricingTable {
            taken: file.taken,
            prices: HashMap::new(),
        };
        for (model, price) in file.models {
            table.set(
                &model,
                Price {
                    input: parse_dollars(&price.input)?,
                    cached_input: parse_dollars(&price.cached_input)?,
                    output: parse_dollars(&price.output)?,
                },
            );
        }
        Ok(table)
    }

    pub fn set(&mut self, model: &str, price: Price) {
        self.prices.insert(model.to_owned(), price);
    }

    /// The price of `model`: listed itself, or as the longest listed name it extends at a `-`
    /// (so `gpt-4o-2024-08-06` is priced as `gpt-4o`, and `gpt-4o-mini-2024-07-18` as
    /// `gpt-4o-mini`, never as `gpt-4o`).
    pub fn price(&self, model: &str) -> Option<Price> {
        if let Some(price) = self.prices.get(model) {
            return Some(*price);
        }
        let mut end = model.len();
        while let Some(dash) = model[..end].rfind('-') {
            if let Some(price) = self.prices.get(&model[..dash]) {
                return Some(*price);
            }
            end = dash;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(parse_dollars("2.50"), Ok(2_500_000));
        assert_eq!(parse_dollars("0.075"), Ok(75_000));
        assert_eq!(parse_dollars("10"), Ok(10_000_000));
        assert_eq!(parse_dollars("0.000001"), Ok(1));
        for bad in ["", "-1", "1.0000001", "1,5", "$2", ".5", "1e3"] {
            assert!(parse_dollars(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shipped_list_prices_the_families_it_names() {
        let table = PricingTable::shipped().unwrap_or_default();
        assert!(!table.taken.is_empty());
        for model in [
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4o",
            "gpt-4o-mini",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "text-embedding-3-small",
        ] {
            assert!(table.price(model).is_some(), "{model} is not priced");
        }
        let mini = table.price("gpt-4o-mini-2024-07-18");
        assert_eq!(
            mini,
            table.price("gpt-4o-mini"),
            "a snapshot takes its own family's price"
        );
        assert_ne!(mini, table.price("gpt-4o"));
        assert_eq!(table.price("gpt-4o-2024-08-06"), table.price("gpt-4o"));
        assert_eq!(table.price("llama-3"), None);
    }

    #[test]
    fn cost_is_exact_and_rounds_up() {
        // gpt-4o: $2.50 in, $1.25 cached, $10 out per 1M.
        let price = Price {
            input: 2_500_000,
            cached_input: 1_250_000,
            output: 10_000_000,
        };
        let usage = TokenUsage {
            input: 1_000,
            cached_input: 400,
            output: 500,
            reasoning: 0,
        };
        // 600 * 2.5 + 400 * 1.25 + 500 * 10 = 1500 + 500 + 5000 micro-dollars
        assert_eq!(price.cost(&usage), MicroUsd(7_000));
        let one_token = TokenUsage {
            input: 1,
            cached_input: 0,
            output: 0,
            reasoning: 0,
        };
        assert_eq!(
            price.cost(&one_token),
            MicroUsd(3),
            "2.5 micro-dollars round up to 3"
        );
        let odd = TokenUsage {
            input: 5,
            cached_input: 9,
            output: 0,
            reasoning: 0,
        };
        assert_eq!(
            price.cost(&odd),
            MicroUsd(7),
            "cached tokens never exceed input tokens"
        );
        assert_eq!(price.cost(&TokenUsage::default()), MicroUsd(0));
    }
}
