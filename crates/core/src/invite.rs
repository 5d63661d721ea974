//! Invitations: the one-time token an invite link carries, what an invite's state is at an
//! instant, and the e-mail addresses people are invited and known by.

use crate::secret::{KeyHash, KeyHasher};
use crate::UnixTime;
use std::fmt;

/// What an invite token starts with, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "tgi_";

/// How long an invite can be accepted: seven days, as GitHub's organization invitations.
pub const INVITE_LIFETIME_SECS: i64 = 7 * 24 * 3600;

/// The secret an invite link carries. Shown once, to whoever made the invite; the store keeps
/// only its keyed hash. Prints as `tgi_*****`.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteToken(String);

impl InviteToken {
    /// A fresh token: 43 base62 characters (~256 bits) after the prefix.
    pub fn generate() -> InviteToken {
        InviteToken(format!("{TOKEN_PREFIX}{}", crate::ids::random_base62(43)))
    }

    /// A token as presented (from a link or a form); `None` if it cannot be one.
    pub fn parse(text: &str) -> Option<InviteToken> {
        let rest = text.trim().strip_prefix(TOKEN_PREFIX)?;
        (rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| InviteToken(text.trim().to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The keyed hash the store looks the invite up by (under a label of its own, so it can
    /// never equal an API key's hash).
    pub fn hash(&self, hasher: &KeyHasher) -> KeyHash {
        hasher.hash_labelled(b"invite token v1", self.0.as_bytes())
    }
}

impl fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TOKEN_PREFIX}*****")
    }
}

/// Where an invite stands, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteStatus {
    Pending,
    Accepted,
    Expired,
}

impl InviteStatus {
    /// The status at `now`: accepted once accepted (whenever that was), expired from its
    /// expiry on, pending before.
    pub fn at(accepted_at: Option<UnixTime>, expires_at: UnixTime, now: UnixTime) -> InviteStatus {
        match accepted_at {
            Some(_) => InviteStatus::Accepted,
            None if now >= expires_at => InviteStatus::Expired,
            None => InviteStatus::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InviteStatus::Pending => "pending",
            InviteStatus::Accepted => "accepted",
            InviteStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an e-mail address")]
pub struct NotAnEmail(String);

/// An e-mail address as Tollgate keeps it: trimmed and lower-cased (people type
/// `Ada@Example.com` and `ada@example.com` for one mailbox), at most 254 characters, one `@`
/// with text on both sides, no spaces or control characters.
pub fn normalize_email(text: &str) -> Result<String, NotAnEmail> {
    let email = text.trim().to_lowercase();
    let refuse = || NotAnEmail(text.chars().take(80).collect());
    let (local, domain) = email.split_once('@').ok_or_else(refuse)?;
    let plain = email.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || email.len() > 254
        || !plain
    {
        return Err(refuse());
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ServerSecret;

    #[test]
    fn tokens_parse_back_and_never_print() {
        let token = InviteToken::generate();
        assert!(token.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(InviteToken::parse(token.expose()), Some(token.clone()));
        assert_eq!(
            InviteToken::parse(&format!(" {} ", token.expose())),
            Some(token.clone())
        );
        assert!(!format!("{token:?}").contains(&token.expose()[6..]));
        for bad in [
            "",
            "tgi_",
            "tgi_short",
            &token.expose()[1..],
            &format!("{}!", &token.expose()[..46]),
        ] {
            assert_eq!(InviteToken::parse(bad), None, "{bad}");
        }
        assert_ne!(InviteToken::generate(), token);
    }

    #[test]
    fn a_token_s_hash_is_keyed_and_differs_from_a_key_s() {
        let hasher =
            |b| KeyHasher::new(ServerSecret::new(vec![b; 32]).unwrap_or_else(|_| unreachable!()));
        let token = InviteToken::generate();
        assert_eq!(token.hash(&hasher(1)), token.hash(&hasher(1)));
        assert_ne!(token.hash(&hasher(1)), token.hash(&hasher(2)));
        assert_ne!(
            token.hash(&hasher(1)),
            InviteToken::generate().hash(&hasher(1))
        );
    }

    #[test]
    fn status_follows_acceptance_then_expiry() {
        let expires = UnixTime(1000);
        assert_eq!(
            InviteStatus::at(None, expires, UnixTime(999)),
            InviteStatus::Pending
        );
        assert_eq!(
            InviteStatus::at(None, expires, UnixTime(1000)),
            InviteStatus::Expired
        );
        assert_eq!(
            InviteStatus::at(Some(UnixTime(10)), expires, UnixTime(5000)),
            InviteStatus::Accepted
        );
    }

    #[test]
    fn emails_are_trimmed_lower_cased_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").as_deref(),
            Ok("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a@b@c",
            "ada @example.com",
            "ada@.com",
            "ada@com.",
            "a\u{0}@b.c",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
