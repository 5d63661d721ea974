//! Passwords of console accounts, hashed with Argon2id (low-entropy secrets need a slow hash,
//! unlike API keys).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

#[derive(Debug, thiserror::Error)]
#[error("could not hash the password: {0}")]
pub struct PasswordError(String);

/// Argon2id PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    crate::ids::fill_random(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The shortest password an account may choose, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest, in characters (Argon2 reads all of it; a megabyte "password" is an attack).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Why a chosen password is refused, worded for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters long")]
    TooShort,
    #[error("the password must be at most {MAX_PASSWORD_CHARS} characters long")]
    TooLong,
    #[error("the password must not be one character repeated")]
    Repeated,
}

/// Checks a password someone chooses (an invite's acceptance, a change, a reset).
pub fn check_new_password(password: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(WeakPassword::TooLong);
    }
    let mut all = password.chars();
    let first = all.next();
    if all.all(|c| Some(c) == first) {
        return Err(WeakPassword::Repeated);
    }
    Ok(())
}

/// A random initial password: 24 base62 characters (~143 bits).
pub fn generate_password() -> String {
    crate::ids::random_base62(24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_passwords_are_long_enough_bounded_and_not_one_character() {
        assert_eq!(check_new_password("short"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_new_password("ééééééééééé"),
            Err(WeakPassword::TooShort)
        );
        assert_eq!(
            check_new_password(&"a".repeat(20)),
            Err(WeakPassword::Repeated)
        );
        assert_eq!(
            check_new_password(&"ab".repeat(200)),
            Err(WeakPassword::TooLong)
        );
        assert_eq!(check_new_password("correct horse battery"), Ok(()));
        assert_eq!(check_new_password(&generate_password()), Ok(()));
    }

    #[test]
    fn hashes_verify_and_do_not_contain_the_password() {
        let password = generate_password();
        let stored = hash_password(&password).unwrap_or_default();
        assert!(stored.starts_with("$argon2id$"));
        assert!(!stored.contains(&password));
        assert!(verify_password(&password, &stored));
        assert!(!verify_password("wrong", &stored));
        assert!(!verify_password(&password, "not a hash"));
    }
}
