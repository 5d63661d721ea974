//! What a key may do, as OpenAI's restricted keys express it: all, read-only, or restricted
//! with an access level per endpoint group.

use std::collections::BTreeMap;
use std::fmt;

/// An endpoint group a restricted key can be granted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Scope {
    #[serde(rename = "models")]
    Models,
    #[serde(rename = "chat.completions")]
    ChatCompletions,
    #[serde(rename = "responses")]
    Responses,
    #[serde(rename = "embeddings")]
    Embeddings,
    #[serde(rename = "files")]
    Files,
    #[serde(rename = "images")]
    Images,
    #[serde(rename = "audio")]
    Audio,
    #[serde(rename = "moderations")]
    Moderations,
    #[serde(rename = "batches")]
    Batches,
    #[serde(rename = "fine_tuning")]
    FineTuning,
    #[serde(rename = "realtime")]
    Realtime,
}

impl Scope {
    pub const ALL: [Scope; 11] = [
        Scope::Models,
        Scope::ChatCompletions,
        Scope::Responses,
        Scope::Embeddings,
        Scope::Files,
        Scope::Images,
        Scope::Audio,
        Scope::Moderations,
        Scope::Batches,
        Scope::FineTuning,
        Scope::Realtime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Models => "models",
            Scope::ChatCompletions => "chat.completions",
            Scope::Responses => "responses",
            Scope::Embeddings => "embeddings",
            Scope::Files => "files",
            Scope::Images => "images",
            Scope::Audio => "audio",
            Scope::Moderations => "moderations",
            Scope::Batches => "batches",
            Scope::FineTuning => "fine_tuning",
            Scope::Realtime => "realtime",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The scope string OpenAI names in "Missing scopes: …" for this group and access level.
    pub fn openai_name(self, access: Access) -> &'static str {
        let write = access == Access::Write;
        match (self, write) {
            (Scope::Models, _) => "api.model.read",
            (Scope::ChatCompletions | Scope::Embeddings | Scope::Moderations, _) => "model.request",
            (Scope::Responses, true) => "api.responses.write",
            (Scope::Responses, false) => "api.responses.read",
            (Scope::Images, _) => "api.model.images.request",
            (Scope::Audio, _) => "api.model.audio.request",
            (Scope::Files, true) => "api.files.write",
            (Scope::Files, false) => "api.files.read",
            (Scope::Batches, true) => "api.batch.write",
            (Scope::Batches, false) => "api.batch.read",
            (Scope::FineTuning, true) => "api.fine_tuning.jobs.write",
            (Scope::FineTuning, false) => "api.fine_tuning.jobs.read",
            (Scope::Realtime, _) => "api.model.realtime.request",
        }
    }
}

/// Access to one scope; `Write` includes `Read`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    None,
    Read,
    Write,
}

impl Access {
    pub fn parse(text: &str) -> Option<Access> {
        match text {
            "none" => Some(Access::None),
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::None => "none",
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionsError {
    #[error("`{0}` is not a scope: write SCOPE:ACCESS, where SCOPE is one of {scopes} and ACCESS is none, read or write", scopes = Scope::ALL.map(Scope::as_str).join(", "))]
    BadScope(String),
    #[error("`{0}` is not a permission level: use all, read-only or restricted")]
    BadMode(String),
    #[error("scopes can only be given with --permissions restricted")]
    ScopesWithoutRestricted,
}

/// A key's permissions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Permissions {
    All,
    ReadOnly,
    Restricted { scopes: BTreeMap<Scope, Access> },
}

impl Permissions {
    /// Builds permissions from a level (`all`, `read-only`, `restricted`) and `SCOPE:ACCESS`
    /// grants, the way the CLI and admin API take them.
    pub fn from_parts(mode: &str, grants: &[String]) -> Result<Permissions, PermissionsError> {
        match mode {
            "all" | "read-only" | "read_only" if !grants.is_empty() => {
                Err(PermissionsError::ScopesWithoutRestricted)
            }
            "all" => Ok(Permissions::All),
            "read-only" | "read_only" => Ok(Permissions::ReadOnly),
            "restricted" => {
                let mut scopes = BTreeMap::new();
                for grant in grants {
                    let (scope, access) = grant
                        .split_once(':')
                        .and_then(|(s, a)| Some((Scope::parse(s)?, Access::parse(a)?)))
                        .ok_or_else(|| PermissionsError::BadScope(grant.clone()))?;
                    scopes.insert(scope, access);
                }
                Ok(Permissions::Restricted { scopes })
            }
            other => Err(PermissionsError::BadMode(other.to_owned())),
        }
    }

    /// The access this key has to `scope`.
    pub fn access(&self, scope: Scope) -> Access {
        match self {
            Permissions::All => Access::Write,
            Permissions::ReadOnly => Access::Read,
            Permissions::Restricted { scopes } => {
                scopes.get(&scope).copied().unwrap_or(Access::None)
            }
        }
    }

    pub fn allows(&self, scope: Scope, needed: Access) -> bool {
        self.access(scope) >= needed
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"mode":"read_only"}"#.to_owned())
    }

    /// Parses the stored form. Anything unreadable becomes read-only: never more than intended.
    pub fn from_json(text: &str) -> Permissions {
        serde_json::from_str(text).unwrap_or(Permissions::ReadOnly)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permissions::All => f.write_str("all"),
            Permissions::ReadOnly => f.write_str("read-only"),
            Permissions::Restricted { scopes } => {
                let granted: Vec<String> = scopes
                    .iter()
                    .filter(|(_, a)| **a != Access::None)
                    .map(|(s, a)| format!("{}:{}", s.as_str(), a.as_str()))
                    .collect();
                write!(f, "restricted({})", granted.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_grant_what_they_say() {
        assert!(Permissions::All.allows(Scope::ChatCompletions, Access::Write));
        assert!(Permissions::ReadOnly.allows(Scope::Models, Access::Read));
        assert!(!Permissions::ReadOnly.allows(Scope::ChatCompletions, Access::Write));
        let restricted = Permissions::from_parts(
            "restricted",
            &["models:read".into(), "embeddings:write".into()],
        );
        let restricted = restricted.unwrap_or(Permissions::ReadOnly);
        assert!(restricted.allows(Scope::Embeddings, Access::Write));
        assert!(restricted.allows(Scope::Models, Access::Read));
        assert!(!restricted.allows(Scope::Models, Access::Write));
        assert!(!restricted.allows(Scope::Files, Access::Read));
    }

    #[test]
    fn stored_form_round_trips_and_unreadable_is_read_only() {
        let restricted = Permissions::from_parts("restricted", &["chat.completions:write".into()])
            .unwrap_or(Permissions::All);
        assert_eq!(Permissions::from_json(&restricted.to_json()), restricted);
        assert_eq!(
            Permissions::from_json(&Permissions::All.to_json()),
            Permissions::All
        );
        assert_eq!(Permissions::from_json("garbage"), Permissions::ReadOnly);
        assert_eq!(restricted.to_string(), "restricted(chat.completions:write)");
    }

    #[test]
    fn bad_input_is_explained() {
        let err = Permissions::from_parts("restricted", &["chat:write".into()]);
        assert!(matches!(err, Err(PermissionsError::BadScope(_))));
        assert!(Permissions::from_parts("everything", &[]).is_err());
        assert_eq!(
            Permissions::from_parts("all", &["models:read".into()]),
            Err(PermissionsError::ScopesWithoutRestricted)
        );
    }
}
