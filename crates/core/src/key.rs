//! The secret-key format.
//!
//! ```text
//! sk-proj-<43 base62: 256 random bits><6 base62: CRC32 of everything before it>
//! ```
//!
//! * The type prefix says what the key is (`sk-proj-`, `sk-svcacct-`, `sk-admin-`); a deployment
//!   may replace `sk` with its own word (see [`KeyFormat`]).
//! * The body is 32 bytes from the OS CSPRNG written as exactly 43 base62 digits.
//! * The checksum covers prefix and body, so the gateway or a secret scanner can tell a real key
//!   from a typo without a database. CRC32 catches every single-character change, because one
//!   changed byte is a burst error shorter than 32 bits.
//! * The key never contains OpenAI's `T3BlbkFJ` marker, so scanners will not mistake it for an
//!   OpenAI key and send it to OpenAI to verify.

use crate::base62;
use crate::ids::{fill_random, KeyId};
use sha2::{Digest, Sha256};
use std::fmt;

/// Number of base62 digits holding the 256 random bits.
pub const BODY_LEN: usize = 43;
/// Number of base62 digits holding the CRC32 checksum.
pub const CHECKSUM_LEN: usize = 6;
/// The longest deployment prefix accepted.
pub const MAX_PREFIX_LEN: usize = 16;

/// What a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A project key owned by a person.
    Project,
    /// A project key owned by a service account (a bot identity).
    ServiceAccount,
    /// An organization-level key for the admin API; it cannot call models.
    Admin,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::Project, KeyKind::ServiceAccount, KeyKind::Admin];

    /// The word between the deployment prefix and the body: `proj`, `svcacct`, `admin`.
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::Project => "proj",
            KeyKind::ServiceAccount => "svcacct",
            KeyKind::Admin => "admin",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Project => "project",
            KeyKind::ServiceAccount => "service_account",
            KeyKind::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<KeyKind> {
        KeyKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key prefix `{0}` is not valid: use 1 to 16 lowercase letters or digits, such as `sk` or `acme`")]
    BadPrefix(String),
}

/// Why a presented string is not a key of this deployment. The variants exist for logs and
/// metrics; clients get the same 401 for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error("no known key prefix")]
    UnknownPrefix,
    #[error("wrong length")]
    WrongLength,
    #[error("character outside base62")]
    BadCharacter,
    #[error("checksum mismatch")]
    BadChecksum,
}

/// The deployment's key prefix, `sk` unless configured otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefix: String,
}

impl Default for KeyFormat {
    fn default() -> Self {
        KeyFormat {
            prefix: "sk".to_owned(),
        }
    }
}

impl KeyFormat {
    pub fn new(prefix: &str) -> Result<KeyFormat, KeyFormatError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(KeyFormat {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(KeyFormatError::BadPrefix(prefix.to_owned()))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `sk-proj-`, `sk-svcacct-` or `sk-admin-` for this deployment.
    pub fn kind_prefix(&self, kind: KeyKind) -> String {
        format!("{}-{}-", self.prefix, kind.tag())
    }

    /// A new key of `kind` with 256 bits from the OS CSPRNG.
    pub fn generate(&self, kind: KeyKind) -> SecretKey {
        let mut random = [0u8; 32];
        fill_random(&mut random);
        self.from_random(kind, &random)
    }

    /// The key whose body encodes `random`. Exposed so tests can build known keys.
    pub fn from_random(&self, kind: KeyKind, random: &[u8; 32]) -> SecretKey {
        let mut text = self.kind_prefix(kind);
        text.push_str(&base62::encode_fixed(random, BODY_LEN));
        let checksum = crc32fast::hash(text.as_bytes());
        text.push_str(&base62::encode_u32(checksum));
        SecretKey(text)
    }

    /// Checks format and checksum, with no I/O. Only a string that passes is worth hashing
    /// and looking up.
    pub fn parse(&self, presented: &str) -> Result<ParsedKey, KeyParseError> {
        let kind = KeyKind::ALL
            .into_iter()
            .find(|kind| {
                presented
                    .strip_prefix(self.prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .and_then(|rest| rest.strip_prefix(kind.tag()))
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .ok_or(KeyParseError::UnknownPrefix)?;
        let prefix_len = self.prefix.len() + kind.tag().len() + 2;
        if presented.len() != prefix_len + BODY_LEN + CHECKSUM_LEN {
            return Err(KeyParseError::WrongLength);
        }
        let tail = &presented.as_bytes()[prefix_len..];
        if !tail.iter().all(|b| base62::digit_value(*b).is_some()) {
            return Err(KeyParseError::BadCharacter);
        }
        let (signed, checksum) = presented.split_at(prefix_len + BODY_LEN);
        let expected = u64::from(crc32fast::hash(signed.as_bytes()));
        if base62::decode_u64(checksum) != Some(expected) {
            return Err(KeyParseError::BadChecksum);
        }
        Ok(ParsedKey {
            kind,
            secret: SecretKey(presented.to_owned()),
        })
    }
}

/// A key that passed [`KeyFormat::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub kind: KeyKind,
    pub secret: SecretKey,
}

/// A whole secret key. `Debug` and `Display` print `*****`; the text is reachable only through
/// [`SecretKey::expose`], which makes every place that reveals it easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wraps text this crate checked or made (a client token, see `client_token`).
    pub(crate) fn from_checked(text: String) -> SecretKey {
        SecretKey(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The non-secret id: `key_` and 20 base62 digits of SHA-256 over a label and the key.
    /// Anyone holding the key can compute it; nobody can go back from it to the key.
    pub fn id(&self) -> KeyId {
        let mut hasher = Sha256::new();
        hasher.update(b"tollgate key id v1\0");
        hasher.update(self.0.as_bytes());
        let digest = hasher.finalize();
        let mut first = [0u8; 14];
        first.copy_from_slice(&digest[..14]);
        KeyId::from_trusted(format!(
            "{}{}",
            KeyId::PREFIX,
            base62::encode_fixed(&first, 20)
        ))
    }

    /// `sk-proj-...abcd`: the type prefix and the last four characters.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(*****)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// Display form of a key: everything up to the last `-` of its type prefix, `...`, and the
/// last four characters (`sk-proj-...abcd`).
pub fn redact(key: &str) -> String {
    let head_end = key
        .char_indices()
        .filter(|(_, c)| *c == '-')
        .map(|(i, _)| i + 1)
        .take(3)
        .last()
        .filter(|end| *end <= MAX_PREFIX_LEN + 10)
        .unwrap_or(0);
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return "*****".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{}...{tail}", &key[..head_end])
}

/// How a presented credential that is not a valid key is quoted back in a 401 message, the way
/// OpenAI does: the first 8 and last 4 characters around a run of `*`. Short or non-ASCII input
/// is not quoted at all, so no secret-sized fragment is ever echoed.
pub fn mask_presented(presented: &str) -> String {
    if presented.len() < 24 || !presented.is_ascii() || presented.len() > 512 {
        return "*****".to_owned();
    }
    let stars = "*".repeat((presented.len() - 12).min(40));
    format!(
        "{}{stars}{}",
        &presented[..8],
        &presented[presented.len() - 4..]
    )
}

/// A request path as logs may show it: a segment that could be a secret pasted where an id
/// goes (it starts with `sk-`, or is longer than any id, percent-decoded) is masked as
/// [`mask_presented`] does. Everything else is kept, so logs still say what was asked.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Undecodable text is judged as it stands.
    let decoded =
        |segment: &str| crate::path::percent_decode(segment).unwrap_or_else(|| segment.to_owned());
    let suspicious = |segment: &str| {
        let decoded = decoded(segment);
        decoded.starts_with("sk-") || decoded.len() > 48
    };
    if !path.split('/').any(suspicious) {
        return std::borrow::Cow::Borrowed(path);
    }
    std::borrow::Cow::Owned(
        path.split('/')
            .map(|segment| {
                if suspicious(segment) {
                    mask_presented(&decoded(segment))
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// `text` with every word that could be a secret key masked as [`mask_presented`] does: a run
/// of letters, digits, `-` and `_` that starts with `sk-` and is at least 24 long, or that is
/// longer than 48 (a key with another prefix). Ids, model names and masked keys are kept.
pub fn mask_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let secret = |w: &str| (w.starts_with("sk-") && w.len() >= 24) || w.len() > 48;
    let mut words = text.split(|c: char| !word(c));
    if !words.any(secret) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut start = None;
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (word(c) && i < text.len(), start) {
            (true, None) => start = Some(i),
            (true, Some(_)) => {}
            (false, Some(from)) => {
                let w = &text[from..i];
                out.push_str(&if secret(w) {
                    mask_presented(w)
                } else {
                    w.to_owned()
                });
                start = None;
                if i < text.len() {
                    out.push(c);
                }
            }
            (false, None) => {
                if i < text.len() {
                    out.push(c);
                }
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::fill_random;

    #[test]
    fn error_messages_never_quote_a_secret() {
        let secret = KeyFormat::default().generate(KeyKind::Project);
        let secret = secret.expose();
        for message in [
            format!("project {secret} was not found"),
            format!("Invalid 'after': no object with id '{secret}' is in this list."),
            format!("The model `{secret}` does not exist"),
            secret.to_string(),
        ] {
            let masked = mask_secrets(&message);
            assert!(!masked.contains(&secret[12..]), "{masked}");
            assert!(masked.contains(&secret[..8]), "{masked}");
        }
        for kept in [
            "Incorrect API key provided: sk-proj-****************XzdX.",
            "key key_0SIdOOGWArs4RaOEPZcf (sk-proj-...77vr) is revoked",
            "The model `text-embedding-3-small` does not exist in proj_xtF7SpboNoh9uTfeTTmuEPKL",
            "ünïcode, punctuation: fine!",
        ] {
            assert_eq!(mask_secrets(kept), kept);
        }
    }

    #[test]
    fn paths_in_logs_never_carry_a_pasted_secret() {
        let format = KeyFormat::default();
        for kind in KeyKind::ALL {
            let secret = format.generate(kind);
            let secret = secret.expose();
            for path in [
                format!("/v1/organization/x-tollgate/keys/{secret}"),
                format!("/v1/organization/x-tollgate/keys/{secret}/revoke"),
                format!("/v1/organization/x-tollgate/keys/%73{}", &secret[1..]),
            ] {
                let logged = loggable_path(&path);
                assert!(!logged.contains(&secret[12..]), "{logged}");
                assert!(logged.starts_with("/v1/organization/x-tollgate/keys/"));
            }
        }
        let plain = "/v1/organization/projects/proj_abc/rate_limits/rl-gpt-4o";
        assert_eq!(loggable_path(plain), plain);
        assert_eq!(
            loggable_path("/v1/chat/completions"),
            "/v1/chat/completions"
        );
    }

    fn fixed_key(kind: KeyKind) -> SecretKey {
        KeyFormat::default().from_random(kind, &[7u8; 32])
    }

    #[test]
    fn round_trip_for_every_kind() {
        let format = KeyFormat::default();
        for kind in KeyKind::ALL {
            let key = format.generate(kind);
            let parsed = format.parse(key.expose());
            assert_eq!(parsed.as_ref().map(|p| p.kind), Ok(kind));
            assert_eq!(parsed.map(|p| p.secret), Ok(key.clone()));
            assert!(key.expose().starts_with(&format!("sk-{}-", kind.tag())));
            assert!(!key.expose().contains("T3BlbkFJ"));
        }
    }

    #[test]
    fn length_is_prefix_plus_43_plus_6() {
        let key = fixed_key(KeyKind::Project);
        assert_eq!(key.expose().len(), "sk-proj-".len() + 43 + 6);
    }

    #[test]
    fn checksum_rejects_every_single_character_change() {
        let format = KeyFormat::default();
        for kind in KeyKind::ALL {
            let key = format.generate(kind);
            let original = key.expose().as_bytes().to_vec();
            let replacements: Vec<u8> = base62::ALPHABET
                .iter()
                .copied()
                .chain(*b"-_.+/=~ ")
                .collect();
            let mut tried = 0;
            for position in 0..original.len() {
                for &replacement in &replacements {
                    if replacement == original[position] {
                        continue;
                    }
                    let mut changed = original.clone();
                    changed[position] = replacement;
                    let text = String::from_utf8(changed).unwrap_or_default();
                    tried += 1;
                    assert!(
                        format.parse(&text).is_err(),
                        "a change at position {position} to {:?} was accepted",
                        char::from(replacement)
                    );
                }
            }
            assert!(tried > 3_000);
        }
    }

    #[test]
    fn checksum_rejects_dropped_and_added_characters() {
        let format = KeyFormat::default();
        let key = format.generate(KeyKind::Project);
        let text = key.expose();
        assert_eq!(
            format.parse(&text[..text.len() - 1]),
            Err(KeyParseError::WrongLength)
        );
        assert_eq!(
            format.parse(&format!("{text}a")),
            Err(KeyParseError::WrongLength)
        );
        assert_eq!(format.parse(""), Err(KeyParseError::UnknownPrefix));
        assert_eq!(
            format.parse("sk-proj-ÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿÿ"),
            Err(KeyParseError::WrongLength)
        );
    }

    #[test]
    fn other_deployment_prefixes_are_foreign() {
        let acme = KeyFormat::new("acme").unwrap_or_default();
        let key = acme.generate(KeyKind::ServiceAccount);
        assert!(key.expose().starts_with("acme-svcacct-"));
        assert!(acme.parse(key.expose()).is_ok());
        assert_eq!(
            KeyFormat::default().parse(key.expose()),
            Err(KeyParseError::UnknownPrefix)
        );
        assert!(KeyFormat::new("Bad-Prefix").is_err());
        assert!(KeyFormat::new("").is_err());
    }

    #[test]
    fn redaction_keeps_only_prefix_and_last_four() {
        let key = fixed_key(KeyKind::ServiceAccount);
        let text = key.expose();
        let redacted = key.redacted();
        assert_eq!(
            redacted,
            format!("sk-svcacct-...{}", &text[text.len() - 4..])
        );
        assert_eq!(format!("{key}"), "*****");
        assert_eq!(format!("{key:?}"), "SecretKey(*****)");
        assert_eq!(redact("short"), "*****");
    }

    #[test]
    fn masking_a_presented_credential_echoes_at_most_twelve_characters() {
        let presented = "sk-proj-abcdefghijklmnopqrstuvwxyz0123";
        let masked = mask_presented(presented);
        assert!(masked.starts_with("sk-proj-*"));
        assert!(masked.ends_with("0123"));
        assert_eq!(masked.chars().filter(|c| *c != '*').count(), 12);
        assert_eq!(mask_presented("tiny"), "*****");
    }

    #[test]
    fn key_id_is_stable_distinct_and_not_the_key() {
        let a = fixed_key(KeyKind::Project);
        let b = KeyFormat::default().from_random(KeyKind::Project, &[8u8; 32]);
        assert_eq!(a.id(), a.clone().id());
        assert_ne!(a.id(), b.id());
        assert!(KeyId::parse(a.id().as_str()).is_ok());
        assert!(!a.expose().contains(&a.id().as_str()[4..]));
    }

    #[test]
    fn entropy_source_gives_distinct_balanced_bits() {
        // 2,000 draws of 256 bits: all distinct, and the share of one-bits within 1% of half.
        let mut seen = std::collections::HashSet::new();
        let mut ones = 0u64;
        for _ in 0..2_000 {
            let mut random = [0u8; 32];
            fill_random(&mut random);
            ones += random
                .iter()
                .map(|b| u64::from(b.count_ones()))
                .sum::<u64>();
            assert!(seen.insert(random), "a 256-bit draw repeated");
        }
        let share = ones as f64 / (2_000.0 * 256.0);
        assert!((share - 0.5).abs() < 0.01, "one-bit share {share}");
        let keys: std::collections::HashSet<String> = (0..500)
            .map(|_| {
                KeyFormat::default()
                    .generate(KeyKind::Project)
                    .expose()
                    .to_owned()
            })
            .collect();
        assert_eq!(keys.len(), 500);
    }
}
