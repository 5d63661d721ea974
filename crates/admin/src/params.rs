//! Query parameters as OpenAI's SDKs send them: `key=value`, lists as repeated `key[]=value`
//! (or `key=value`). Each malformed value is a 400 that names its parameter.

use crate::error::AdminError;

/// A request's query parameters.
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value given for `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list parameter (`name[]=a&name[]=b`, or `name=a&name=b`), empty ones
    /// left out.
    pub fn many(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| {
                !v.is_empty() && (k == name || k.strip_suffix("[]").is_some_and(|k| k == name))
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, AdminError> {
        match self.one(name) {
            None => Ok(None),
            Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
                AdminError::param(
                    name,
                    format!("Invalid '{name}': '{text}' is not an integer."),
                )
            }),
        }
    }

    pub fn bool(&self, name: &str) -> Result<bool, AdminError> {
        match self.one(name) {
            None => Ok(false),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(text) => Err(AdminError::param(
                name,
                format!("Invalid '{name}': '{text}' is not a boolean (true or false)."),
            )),
        }
    }

    /// `limit` for cursor lists: OpenAI's range is 1 to 100 and its default 20; values outside
    /// the range are clamped to it.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, AdminError> {
        Ok(self.int("limit")?.unwrap_or(default).clamp(1, max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_come_with_or_without_brackets_and_bad_numbers_name_their_parameter() {
        let p = Params::parse(Some(
            "event_types%5B%5D=project.created&event_types[]=api_key.created&models=gpt-4o&limit=500&after=",
        ));
        assert_eq!(
            p.many("event_types"),
            ["project.created", "api_key.created"]
        );
        assert_eq!(p.many("models"), ["gpt-4o"]);
        assert_eq!(p.limit(20, 100).ok(), Some(100));
        assert_eq!(Params::parse(Some("limit=0")).limit(20, 100).ok(), Some(1));
        assert_eq!(Params::parse(None).limit(20, 100).ok(), Some(20));
        match Params::parse(Some("limit=ten")).limit(20, 100) {
            Err(AdminError::BadParam { param, .. }) => assert_eq!(param, "limit"),
            other => panic!("{other:?}"),
        }
        assert!(Params::parse(Some("include_archived=maybe"))
            .bool("include_archived")
            .is_err());
    }
}
