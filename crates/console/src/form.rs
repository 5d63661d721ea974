//! A posted form (`application/x-www-form-urlencoded`), read whole up to a bound; fields may
//! repeat (checkboxes).

use crate::error::ConsoleError;
use axum::extract::{FromRequest, Request};
use tollgate_core::limit_rules::RateLimits;

/// The largest form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(bytes: &[u8]) -> Fields {
        Fields(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a field, trimmed; "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// The value as typed (not trimmed): passwords.
    pub fn raw(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A whole number above 0, or `None` when the field is empty.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ConsoleError> {
        match self.get(name) {
            "" => Ok(None),
            text => text
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| {
                    ConsoleError::Invalid(format!(
                        "{name}: give a whole number above 0, not “{text}”."
                    ))
                }),
        }
    }

    /// The rate-limit fields (`rpm`, `rpd`, `tpm`, `tpd`, `concurrency`); empty ones unset.
    pub fn rate_limits(&self) -> Result<RateLimits, ConsoleError> {
        Ok(RateLimits {
            rpm: self.number("rpm")?,
            rpd: self.number("rpd")?,
            tpm: self.number("tpm")?,
            tpd: self.number("tpd")?,
            concurrent: self.number("concurrency")?,
        })
    }

    /// A field holding a list, one item a line or comma-separated.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split(['\n', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, _state: &S) -> Result<Fields, ConsoleError> {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                ConsoleError::Invalid(format!(
                    "The form could not be read, or is larger than {} KiB.",
                    MAX_FORM_BYTES / 1024
                ))
            })?;
        Ok(Fields::parse(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_trim_and_split_and_the_first_counts() {
        let f = Fields::parse(b"name=+My+key+&name=second&ips=10.0.0.0%2F8%0A1.2.3.4,+::1&pw=+x+");
        assert_eq!(f.get("name"), "My key");
        assert_eq!(f.get("missing"), "");
        assert_eq!(f.list("ips"), ["10.0.0.0/8", "1.2.3.4", "::1"]);
        assert_eq!(f.raw("pw"), " x ");
    }
}
