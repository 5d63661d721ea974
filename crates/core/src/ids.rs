//! Identifiers. Each is a newtype over its text form, with the prefix OpenAI uses for the same
//! kind of object (`org-`, `proj_`, `user-`, `svc_acct_`, `key_`), a `generate` constructor fed
//! by the OS CSPRNG, and a `parse` constructor that rejects anything malformed.

use crate::base62;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a valid {what} id: expected `{prefix}` followed by {len} letters or digits"
)]
pub struct IdError {
    input: String,
    what: &'static str,
    prefix: &'static str,
    len: usize,
}

/// Random base62 text of `len` characters from the OS CSPRNG.
pub fn random_base62(len: usize) -> String {
    // 6 bits of each byte index 0..62 with rejection, so every digit is uniform.
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        fill_random(&mut buf);
        for byte in buf {
            let six = byte & 0x3f;
            if six < 62 && out.len() < len {
                out.push(char::from(base62::ALPHABET[six as usize]));
            }
        }
    }
    out
}

/// Fills `buf` from the operating system's CSPRNG. A machine without one cannot issue keys
/// safely, so this is the one place that stops the process rather than continue.
pub fn fill_random(buf: &mut [u8]) {
    if let Err(err) = getrandom::fill(buf) {
        #[expect(
            clippy::panic,
            reason = "no OS randomness means no safe keys can exist"
        )]
        {
            panic!("the operating system's random number generator failed: {err}");
        }
    }
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $len:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        // Shared text: ids are copied into every usage event and cache entry, and a clone is
        // a reference count, not an allocation.
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, random_base62($len)).into())
            }

            pub fn parse(text: &str) -> Result<Self, IdError> {
                let valid = text
                    .strip_prefix($prefix)
                    .is_some_and(|rest| rest.len() == $len && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
                if valid {
                    Ok($name(text.into()))
                } else {
                    Err(IdError { input: text.chars().take(80).collect(), what: $what, prefix: $prefix, len: $len })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps text read back from the store, which only ever holds ids this code wrote.
            pub fn from_trusted(text: String) -> Self {
                $name(text.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

define_id!(
    /// An organization, `org-…`.
    OrgId, "org-", 24, "organization"
);
define_id!(
    /// A project, `proj_…`.
    ProjectId, "proj_", 24, "project"
);
define_id!(
    /// A person's account, `user-…`.
    UserId, "user-", 24, "user"
);
define_id!(
    /// A service account (a bot identity inside a project), `svc_acct_…`.
    ServiceAccountId, "svc_acct_", 24, "service account"
);
define_id!(
    /// An API key's public identifier, `key_…`. Derived from the secret (see
    /// [`crate::key::SecretKey::id`]), so it can be logged and computed from a leaked key.
    KeyId, "key_", 20, "API key"
);
define_id!(
    /// An invitation to an organization, `invite-…`.
    InviteId, "invite-", 24, "invite"
);
define_id!(
    /// A short-lived client token (`ek_…`), by its public id `ekid_…`.
    ClientTokenId, "ekid_", 24, "client token"
);
define_id!(
    /// An audit-log entry, `audit_log-…`.
    AuditId, "audit_log-", 24, "audit log entry"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = ProjectId::generate();
        assert!(id.as_str().starts_with("proj_"));
        assert_eq!(ProjectId::parse(id.as_str()), Ok(id));
        assert!(OrgId::parse(OrgId::generate().as_str()).is_ok());
        assert!(ServiceAccountId::parse(ServiceAccountId::generate().as_str()).is_ok());
    }

    #[test]
    fn malformed_ids_are_rejected_with_a_clear_message() {
        let err = KeyId::parse("key_short")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not a valid API key id"), "{err}");
        assert!(ProjectId::parse("org-aaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(ProjectId::parse("proj_aaaaaaaaaaaaaaaaaaaaaa-a").is_err());
    }

    #[test]
    fn random_text_is_uniformish_and_distinct() {
        let a = random_base62(4_000);
        assert_eq!(a.len(), 4_000);
        let distinct: std::collections::HashSet<char> = a.chars().collect();
        assert_eq!(
            distinct.len(),
            62,
            "every digit should appear in 4000 draws"
        );
        assert_ne!(random_base62(24), random_base62(24));
    }
}
