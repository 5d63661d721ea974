//! Rules of a key's life: its status at a moment, what may be done to it, and the expiry a
//! rotation gives the old key.

use crate::clock::UnixTime;
use crate::duration::Span;
use crate::ids::KeyId;

/// The longest grace period a rotation may leave the old key.
pub const MAX_ROTATION_GRACE: Span = Span(30 * 86_400);
/// Longest accepted key name, in characters.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

/// The parts of a stored key that decide its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub revoked_at: Option<UnixTime>,
    pub expires_at: Option<UnixTime>,
    pub rotated_to: Option<KeyId>,
}

impl KeyState {
    pub fn status(&self, now: UnixTime) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "key {0} is revoked; a revoked key cannot be rotated or changed. Create a new key instead"
    )]
    Revoked(KeyId),
    #[error("key {0} has expired; an expired key cannot be rotated. Create a new key instead")]
    Expired(KeyId),
    #[error("key {0} was already rotated to {1}; rotate {1} instead")]
    AlreadyRotated(KeyId, KeyId),
    #[error("a grace period of {0} is too long: the most is {max}", max = MAX_ROTATION_GRACE)]
    GraceTooLong(Span),
    #[error("a key name must have 1 to {MAX_NAME_LEN} characters and no control characters")]
    BadName,
    #[error("the expiry must be in the future")]
    ExpiryInPast,
}

/// Checks that `id` in `state` may be rotated at `now`.
pub fn check_rotatable(id: &KeyId, state: &KeyState, now: UnixTime) -> Result<(), LifecycleError> {
    match state.status(now) {
        KeyStatus::Revoked => return Err(LifecycleError::Revoked(id.clone())),
        KeyStatus::Expired => return Err(LifecycleError::Expired(id.clone())),
        KeyStatus::Active => {}
    }
    match &state.rotated_to {
        Some(successor) => Err(LifecycleError::AlreadyRotated(
            id.clone(),
            successor.clone(),
        )),
        None => Ok(()),
    }
}

/// When the old key stops working after a rotation at `now` with `grace`: never later than the
/// expiry it already had.
pub fn rotation_expiry(
    now: UnixTime,
    grace: Span,
    current: Option<UnixTime>,
) -> Result<UnixTime, LifecycleError> {
    if grace > MAX_ROTATION_GRACE {
        return Err(LifecycleError::GraceTooLong(grace));
    }
    let end = now.plus_seconds(grace.seconds());
    Ok(current.map_or(end, |at| at.min(end)))
}

/// Checks and normalises a key, project or service-account name.
pub fn validate_name(name: &str) -> Result<String, LifecycleError> {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > MAX_NAME_LEN || trimmed.chars().any(char::is_control) {
        return Err(LifecycleError::BadName);
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> KeyId {
        KeyId::from_trusted("key_aaaaaaaaaaaaaaaaaaaa".into())
    }

    fn active() -> KeyState {
        KeyState {
            revoked_at: None,
            expires_at: None,
            rotated_to: None,
        }
    }

    #[test]
    fn status_follows_revocation_then_expiry() {
        let now = UnixTime(1_000);
        assert_eq!(active().status(now), KeyStatus::Active);
        let expiring = KeyState {
            expires_at: Some(UnixTime(1_000)),
            ..active()
        };
        assert_eq!(expiring.status(UnixTime(999)), KeyStatus::Active);
        assert_eq!(
            expiring.status(now),
            KeyStatus::Expired,
            "expiry is exclusive"
        );
        let revoked = KeyState {
            revoked_at: Some(UnixTime(5)),
            ..expiring
        };
        assert_eq!(revoked.status(UnixTime(0)), KeyStatus::Revoked);
    }

    #[test]
    fn only_live_unrotated_keys_rotate() {
        let now = UnixTime(1_000);
        assert!(check_rotatable(&id(), &active(), now).is_ok());
        let revoked = KeyState {
            revoked_at: Some(now),
            ..active()
        };
        assert!(matches!(
            check_rotatable(&id(), &revoked, now),
            Err(LifecycleError::Revoked(_))
        ));
        let expired = KeyState {
            expires_at: Some(now),
            ..active()
        };
        assert!(matches!(
            check_rotatable(&id(), &expired, now),
            Err(LifecycleError::Expired(_))
        ));
        let rotated = KeyState {
            rotated_to: Some(id()),
            expires_at: Some(UnixTime(2_000)),
            ..active()
        };
        assert!(matches!(
            check_rotatable(&id(), &rotated, now),
            Err(LifecycleError::AlreadyRotated(_, _))
        ));
    }

    #[test]
    fn grace_never_extends_a_key() {
        let now = UnixTime(10_000);
        assert_eq!(
            rotation_expiry(now, Span(3_600), None),
            Ok(UnixTime(13_600))
        );
        assert_eq!(rotation_expiry(now, Span(0), None), Ok(now));
        assert_eq!(
            rotation_expiry(now, Span(86_400), Some(UnixTime(11_000))),
            Ok(UnixTime(11_000))
        );
        assert!(rotation_expiry(now, Span(31 * 86_400), None).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            validate_name("  Project Alpha Dev "),
            Ok("Project Alpha Dev".into())
        );
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name(&"x".repeat(129)).is_err());
        assert!(validate_name(&"é".repeat(128)).is_ok());
    }
}
