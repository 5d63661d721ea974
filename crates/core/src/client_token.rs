//! Short-lived client tokens: what a server holding a project key hands to a browser or a mobile
//! app instead of the key (OpenAI's `ek_` client secrets, `POST /v1/realtime/client_secrets`).
//!
//! ```text
//! ek_<43 base62: 256 random bits><6 base62: CRC32 of everything before it>
//! ```
//!
//! A token acts for the key that minted it (its use is metered, limited and budgeted as that
//! key's), narrowed by its grant: a subset of the key's scopes, optionally of its models, an
//! end-user id, caps on requests and tokens, the browser origins it may be used from, and a
//! lifetime of 10 seconds to 24 hours (10 minutes unless asked). It dies with its key: a revoked,
//! expired or suspended key's tokens are refused too.

use crate::base62;
use crate::ids::fill_random;
use crate::key::{KeyParseError, SecretKey, BODY_LEN, CHECKSUM_LEN};
use crate::permissions::{Access, Permissions, Scope};
use crate::routing::ModelAllowList;
use crate::UnixTime;
use std::collections::BTreeMap;

/// What every client token starts with (OpenAI's ephemeral keys have it too).
pub const PREFIX: &str = "ek_";
/// A token's lifetime when none is asked for: ten minutes.
pub const DEFAULT_LIFETIME_SECONDS: i64 = 600;
/// The shortest lifetime (OpenAI's floor).
pub const MIN_LIFETIME_SECONDS: i64 = 10;
/// The longest lifetime: a day.
pub const MAX_LIFETIME_SECONDS: i64 = 86_400;
/// The most origins, models and scopes one grant names.
pub const MAX_LIST: usize = 32;
/// The longest end-user id (OpenAI's `safety_identifier` bound).
pub const MAX_USER_LEN: usize = 64;
/// The longest origin.
const MAX_ORIGIN_LEN: usize = 253 + "https://".len() + ":65535".len();

/// The scopes a token gets when its minter names none: calling models and listing them (each
/// still capped by the key's own access). Whatever its scopes, a token reaches only the metered
/// endpoints, the Realtime API and the model list: never stored objects, files or the
/// endpoints passed through to the provider unmetered.
pub const DEFAULT_SCOPES: [(Scope, Access); 4] = [
    (Scope::ChatCompletions, Access::Write),
    (Scope::Responses, Access::Write),
    (Scope::Realtime, Access::Write),
    (Scope::Models, Access::Read),
];

/// A new token from the OS CSPRNG.
pub fn generate() -> SecretKey {
    let mut random = [0u8; 32];
    fill_random(&mut random);
    let mut text = PREFIX.to_owned();
    text.push_str(&base62::encode_fixed(&random, BODY_LEN));
    let checksum = crc32fast::hash(text.as_bytes());
    text.push_str(&base62::encode_u32(checksum));
    SecretKey::from_checked(text)
}

/// Whether a presented bearer token is meant as a client token (then [`parse`] decides).
pub fn is_client_token(presented: &str) -> bool {
    presented.starts_with(PREFIX)
}

/// Checks a presented token's format and checksum, with no I/O.
pub fn parse(presented: &str) -> Result<SecretKey, KeyParseError> {
    let rest = presented
        .strip_prefix(PREFIX)
        .ok_or(KeyParseError::UnknownPrefix)?;
    if rest.len() != BODY_LEN + CHECKSUM_LEN {
        return Err(KeyParseError::WrongLength);
    }
    if !rest.bytes().all(|b| base62::digit_value(b).is_some()) {
        return Err(KeyParseError::BadCharacter);
    }
    let (signed, checksum) = presented.split_at(PREFIX.len() + BODY_LEN);
    if base62::decode_u64(checksum) != Some(u64::from(crc32fast::hash(signed.as_bytes()))) {
        return Err(KeyParseError::BadChecksum);
    }
    Ok(SecretKey::from_checked(presented.to_owned()))
}

/// How a token is shown: `ek_...` and its last four characters.
pub fn redact(token: &str) -> String {
    let tail: String = token
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{PREFIX}...{tail}")
}

/// Why a grant cannot be made as asked; each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("`expires_after.seconds` must be between {MIN_LIFETIME_SECONDS} and {MAX_LIFETIME_SECONDS} (24 hours); got {0}")]
    Lifetime(i64),
    #[error("`expires_after.anchor` must be `created_at`; got `{0}`")]
    Anchor(String),
    #[error("`{0}` is not an origin: write it as a browser sends it, scheme, host and port only, such as `https://app.example.com` or `http://localhost:5173`")]
    Origin(String),
    #[error("`{0}` is not a scope: use one of {scopes}, optionally with `:read` or `:write`", scopes = Scope::ALL.map(Scope::as_str).join(", "))]
    Scope(String),
    #[error("this key does not grant `{0}`: a client token gets a subset of its key's scopes")]
    ScopeBeyondKey(String),
    #[error("the model `{0}` is not allowed for this key: a client token gets a subset of its key's models")]
    ModelBeyondKey(String),
    #[error("`{field}` names {count} entries; at most {MAX_LIST} are accepted")]
    TooMany { field: &'static str, count: usize },
    #[error("`user` must be 1 to {MAX_USER_LEN} printable characters")]
    User,
    #[error("`{0}` must be a positive whole number")]
    Cap(&'static str),
    #[error("`models` entries must be non-empty model names")]
    Model,
}

impl GrantError {
    /// The request field the error is about, as OpenAI's errors name it in `param`.
    pub fn param(&self) -> &'static str {
        match self {
            GrantError::Lifetime(_) => "expires_after.seconds",
            GrantError::Anchor(_) => "expires_after.anchor",
            GrantError::Origin(_) => "allowed_origins",
            GrantError::Scope(_) | GrantError::ScopeBeyondKey(_) => "scopes",
            GrantError::ModelBeyondKey(_) | GrantError::Model => "models",
            GrantError::TooMany { field, .. } => field,
            GrantError::User => "user",
            GrantError::Cap(field) => field,
        }
    }
}

/// What the minting server asks for, before it is checked against its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantAsk {
    pub seconds: Option<i64>,
    /// `SCOPE` (write) or `SCOPE:ACCESS`; `None` for [`DEFAULT_SCOPES`].
    pub scopes: Option<Vec<String>>,
    pub models: Vec<String>,
    pub user: Option<String>,
    pub max_requests: Option<i64>,
    pub max_tokens: Option<i64>,
    pub allowed_origins: Vec<String>,
}

/// What a client token may do, as minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Scopes and access, never beyond the key's.
    pub scopes: BTreeMap<Scope, Access>,
    /// Models (names or `prefix*` patterns) the token may call; empty for all the key may.
    pub models: Vec<String>,
    pub user: Option<String>,
    pub max_requests: Option<i64>,
    pub max_tokens: Option<i64>,
    /// Normalized origins (`https://app.example.com`) browsers may use it from.
    pub allowed_origins: Vec<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

impl GrantAsk {
    /// Checks the ask against the minting key's permissions and model allow-list.
    pub fn grant(
        &self,
        key: &Permissions,
        key_models: &ModelAllowList,
        now: UnixTime,
    ) -> Result<Grant, GrantError> {
        let seconds = self.seconds.unwrap_or(DEFAULT_LIFETIME_SECONDS);
        if !(MIN_LIFETIME_SECONDS..=MAX_LIFETIME_SECONDS).contains(&seconds) {
            return Err(GrantError::Lifetime(seconds));
        }
        let scopes = match &self.scopes {
            None => DEFAULT_SCOPES
                .iter()
                .map(|(scope, access)| (*scope, (*access).min(key.access(*scope))))
                .filter(|(_, access)| *access != Access::None)
                .collect(),
            Some(asked) => {
                bounded("scopes", asked.len())?;
                let mut scopes = BTreeMap::new();
                for text in asked {
                    let (scope, access) = parse_scope(text)?;
                    if key.access(scope) < access {
                        return Err(GrantError::ScopeBeyondKey(text.trim().to_owned()));
                    }
                    let entry = scopes.entry(scope).or_insert(Access::None);
                    *entry = (*entry).max(access);
                }
                scopes
            }
        };
        bounded("models", self.models.len())?;
        let mut models = Vec::new();
        for model in &self.models {
            let model = model.trim();
            if model.is_empty() || model.len() > 256 {
                return Err(GrantError::Model);
            }
            // A pattern is checked by its stem: `gpt-4o*` needs a key allowing `gpt-4o...`.
            if !key_models.allows(model.trim_end_matches('*')) {
                return Err(GrantError::ModelBeyondKey(model.to_owned()));
            }
            if !models.iter().any(|m| m == model) {
                models.push(model.to_owned());
            }
        }
        let user = match &self.user {
            None => None,
            Some(user) => {
                let ok = !user.is_empty()
                    && user.chars().count() <= MAX_USER_LEN
                    && !user.chars().any(char::is_control);
                if !ok {
                    return Err(GrantError::User);
                }
                Some(user.clone())
            }
        };
        for (field, cap) in [
            ("max_requests", self.max_requests),
            ("max_tokens", self.max_tokens),
        ] {
            if cap.is_some_and(|n| n < 1) {
                return Err(GrantError::Cap(field));
            }
        }
        bounded("allowed_origins", self.allowed_origins.len())?;
        let mut allowed_origins = Vec::new();
        for origin in &self.allowed_origins {
            let origin = normalize_origin(origin)?;
            if !allowed_origins.contains(&origin) {
                allowed_origins.push(origin);
            }
        }
        Ok(Grant {
            scopes,
            models,
            user,
            max_requests: self.max_requests,
            max_tokens: self.max_tokens,
            allowed_origins,
            created_at: now,
            expires_at: now.plus_seconds(seconds),
        })
    }
}

fn bounded(field: &'static str, count: usize) -> Result<(), GrantError> {
    if count > MAX_LIST {
        return Err(GrantError::TooMany { field, count });
    }
    Ok(())
}

fn parse_scope(text: &str) -> Result<(Scope, Access), GrantError> {
    let text = text.trim();
    let (scope, access) = match text.split_once(':') {
        Some((scope, access)) => (scope, Access::parse(access)),
        None => (text, Some(Access::Write)),
    };
    match (Scope::parse(scope), access) {
        (Some(scope), Some(access)) if access != Access::None => Ok((scope, access)),
        _ => Err(GrantError::Scope(text.to_owned())),
    }
}

impl Grant {
    /// Whether the token grants `access` to `scope`.
    pub fn allows(&self, scope: Scope, access: Access) -> bool {
        self.scopes.get(&scope).is_some_and(|a| *a >= access)
    }

    /// Whether the token may call a model (by its requested or served name).
    pub fn allows_model(&self, requested: &str, served: &str) -> bool {
        let list = ModelAllowList::new(&self.models);
        list.allows(requested) || list.allows(served)
    }

    /// Whether a request's `Origin` header admits the token: absent (a mobile app or a server,
    /// which no origin list can bind), or one of the allowed origins.
    pub fn admits_origin(&self, origin: Option<&str>) -> bool {
        match origin {
            None => true,
            Some(origin) => {
                normalize_origin(origin).is_ok_and(|origin| self.allowed_origins.contains(&origin))
            }
        }
    }

    /// The scopes as `SCOPE:ACCESS` strings.
    pub fn scope_names(&self) -> Vec<String> {
        self.scopes
            .iter()
            .map(|(s, a)| format!("{}:{}", s.as_str(), a.as_str()))
            .collect()
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, the scheme `http` or `https`, the host
/// lower-cased, a default port dropped; a trailing `/` is forgiven. Paths, queries, user info
/// and wildcards are refused: an origin names exactly one site.
pub fn normalize_origin(text: &str) -> Result<String, GrantError> {
    let bad = || GrantError::Origin(text.chars().take(80).collect());
    let text = text.trim();
    if text.len() > MAX_ORIGIN_LEN {
        return Err(bad());
    }
    let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return Err(bad()),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal holds colons of its own: `[::1]:8080` or `[::1]`.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && (host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            || (host.starts_with('[')
                && host.ends_with(']')
                && host[1..host.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')));
    if !host_ok {
        return Err(bad());
    }
    let host = host.to_ascii_lowercase();
    match port {
        None => Ok(format!("{scheme}://{host}")),
        Some(port) => {
            let number: u16 = port
                .parse()
                .ok()
                .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(bad)?;
            if port == default_port {
                Ok(format!("{scheme}://{host}"))
            } else {
                Ok(format!("{scheme}://{host}:{number}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_all() -> (Permissions, ModelAllowList) {
        (Permissions::All, ModelAllowList::default())
    }

    #[test]
    fn tokens_parse_and_typos_do_not() {
        let token = generate();
        assert!(token.expose().starts_with("ek_"));
        assert_eq!(token.expose().len(), 3 + BODY_LEN + CHECKSUM_LEN);
        assert_eq!(parse(token.expose()).ok(), Some(token.clone()));
        let mut typo = token.expose().as_bytes().to_vec();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap_or_default();
        assert_eq!(parse(&typo), Err(KeyParseError::BadChecksum));
        assert_eq!(parse("ek_short"), Err(KeyParseError::WrongLength));
        assert_eq!(parse("sk-proj-x"), Err(KeyParseError::UnknownPrefix));
        assert!(is_client_token("ek_x") && !is_client_token("sk-proj-x"));
        assert_ne!(generate(), generate());
    }

    #[test]
    fn lifetime_defaults_to_ten_minutes_and_is_bounded() {
        let (key, models) = key_all();
        let now = UnixTime(1_000);
        let grant = GrantAsk::default().grant(&key, &models, now);
        assert_eq!(grant.map(|g| g.expires_at), Ok(UnixTime(1_600)));
        for (seconds, ok) in [(9, false), (10, true), (86_400, true), (86_401, false)] {
            let ask = GrantAsk {
                seconds: Some(seconds),
                ..GrantAsk::default()
            };
            assert_eq!(ask.grant(&key, &models, now).is_ok(), ok, "{seconds}");
        }
    }

    #[test]
    fn scopes_are_a_subset_of_the_keys() {
        let models = ModelAllowList::default();
        let key = Permissions::from_parts(
            "restricted",
            &["chat.completions:write".into(), "models:read".into()],
        )
        .unwrap_or(Permissions::All);
        // The default set, cut down to what the key has.
        let grant = GrantAsk::default().grant(&key, &models, UnixTime(0));
        assert_eq!(
            grant.map(|g| g.scope_names()),
            Ok(vec![
                "models:read".to_owned(),
                "chat.completions:write".to_owned()
            ])
        );
        let ask = |scopes: &[&str]| GrantAsk {
            scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
            ..GrantAsk::default()
        };
        let grant = ask(&["chat.completions"]).grant(&key, &models, UnixTime(0));
        let grant = grant.unwrap_or_else(|e| panic!("{e}"));
        assert!(grant.allows(Scope::ChatCompletions, Access::Write));
        assert!(!grant.allows(Scope::Models, Access::Read));
        assert_eq!(
            ask(&["files:read"]).grant(&key, &models, UnixTime(0)),
            Err(GrantError::ScopeBeyondKey("files:read".into()))
        );
        assert_eq!(
            ask(&["models:write"]).grant(&key, &models, UnixTime(0)),
            Err(GrantError::ScopeBeyondKey("models:write".into()))
        );
        assert!(matches!(
            ask(&["chat"]).grant(&key, &models, UnixTime(0)),
            Err(GrantError::Scope(_))
        ));
        assert!(matches!(
            ask(&["models:none"]).grant(&key, &models, UnixTime(0)),
            Err(GrantError::Scope(_))
        ));
    }

    #[test]
    fn models_are_a_subset_of_the_keys() {
        let key = Permissions::All;
        let key_models = ModelAllowList::new(&["gpt-4o*".to_owned()]);
        let ask = |models: &[&str]| GrantAsk {
            models: models.iter().map(|s| s.to_string()).collect(),
            ..GrantAsk::default()
        };
        let grant = ask(&["gpt-4o-mini"]).grant(&key, &key_models, UnixTime(0));
        let grant = grant.unwrap_or_else(|e| panic!("{e}"));
        assert!(grant.allows_model("gpt-4o-mini", "gpt-4o-mini"));
        assert!(!grant.allows_model("gpt-4o", "gpt-4o"));
        assert_eq!(
            ask(&["o3"]).grant(&key, &key_models, UnixTime(0)),
            Err(GrantError::ModelBeyondKey("o3".into()))
        );
        // No list: whatever the key allows (the key's own list is still checked).
        let open = GrantAsk::default().grant(&key, &key_models, UnixTime(0));
        assert!(open.is_ok_and(|g| g.allows_model("anything", "anything")));
    }

    #[test]
    fn origins_are_normalized_and_strict() {
        for (given, expected) in [
            ("https://App.Example.com", "https://app.example.com"),
            ("https://app.example.com:443/", "https://app.example.com"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ] {
            assert_eq!(normalize_origin(given).as_deref(), Ok(expected), "{given}");
        }
        for bad in [
            "app.example.com",
            "https://",
            "https://app.example.com/path",
            "https://*.example.com",
            "https://user@app.example.com",
            "ftp://app.example.com",
            "https://app.example.com:99999",
            "https://app.example.com:8x",
            "null",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_checks_admit_listed_origins_and_originless_clients() {
        let ask = GrantAsk {
            allowed_origins: vec!["http://localhost:5173".into()],
            ..GrantAsk::default()
        };
        let (key, models) = key_all();
        let grant = ask
            .grant(&key, &models, UnixTime(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(grant.admits_origin(Some("http://localhost:5173")));
        assert!(grant.admits_origin(None));
        assert!(!grant.admits_origin(Some("http://localhost:5174")));
        assert!(!grant.admits_origin(Some("null")));
        let closed = GrantAsk::default()
            .grant(&key, &models, UnixTime(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!closed.admits_origin(Some("http://localhost:5173")));
    }

    #[test]
    fn caps_users_and_list_sizes_are_checked() {
        let (key, models) = key_all();
        let zero = GrantAsk {
            max_requests: Some(0),
            ..GrantAsk::default()
        };
        assert_eq!(
            zero.grant(&key, &models, UnixTime(0)),
            Err(GrantError::Cap("max_requests"))
        );
        let long_user = GrantAsk {
            user: Some("u".repeat(65)),
            ..GrantAsk::default()
        };
        assert_eq!(
            long_user.grant(&key, &models, UnixTime(0)),
            Err(GrantError::User)
        );
        let many = GrantAsk {
            allowed_origins: (0..33).map(|i| format!("http://h{i}")).collect(),
            ..GrantAsk::default()
        };
        assert!(matches!(
            many.grant(&key, &models, UnixTime(0)),
            Err(GrantError::TooMany { .. })
        ));
    }
}
