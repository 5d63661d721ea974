//! The server secret and the keyed hash that is all the store keeps of a key.
//!
//! Keys are stored as HMAC-SHA-256 under a secret that lives outside the database, so a stolen
//! database can neither be used to authenticate nor be checked against candidate keys.

use crate::key::SecretKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The version of the hashing scheme written beside every stored hash, so the secret can be
/// rotated later without invalidating keys at once.
pub const HASH_VERSION: i64 = 1;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server secret is {0} bytes long; it must be at least {MIN_SECRET_LEN} bytes (for example 64 hex characters from `openssl rand -hex 32`)")]
pub struct SecretTooShort(usize);

/// The server's HMAC secret. Prints as `*****`.
#[derive(Clone)]
pub struct ServerSecret(Vec<u8>);

impl ServerSecret {
    pub fn new(bytes: Vec<u8>) -> Result<ServerSecret, SecretTooShort> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretTooShort(bytes.len()));
        }
        Ok(ServerSecret(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(*****)")
    }
}

/// HMAC-SHA-256 of a key under the server secret: the lookup value and the only thing stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(*****)")
    }
}

/// Hashes keys under the server secret.
#[derive(Clone)]
pub struct KeyHasher {
    /// HMAC keyed with the server secret once: hashing a key then starts from a copy of it
    /// instead of deriving the keyed state again (two SHA-256 blocks fewer per request).
    keyed: HmacSha256,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(*****)")
    }
}

impl KeyHasher {
    pub fn new(secret: ServerSecret) -> KeyHasher {
        let keyed = HmacSha256::new_from_slice(secret.expose())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        KeyHasher { keyed }
    }

    pub fn hash(&self, key: &SecretKey) -> KeyHash {
        KeyHash(self.mac(key.expose().as_bytes()))
    }

    /// A value derived from the secret that proves, at start-up, that the secret in hand is the
    /// one the database was created with; it reveals nothing about the secret.
    pub fn fingerprint(&self) -> String {
        self.mac(b"tollgate secret fingerprint v1")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The keyed hash of another secret (an invite token, a session), under a label of its own
    /// so that it can never equal a key's hash or another kind's.
    pub fn hash_labelled(&self, label: &[u8], secret: &[u8]) -> KeyHash {
        let mut mac = self.keyed.clone();
        mac.update(label);
        mac.update(&[0]);
        mac.update(secret);
        KeyHash(mac.finalize().into_bytes().into())
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyFormat, KeyKind};

    fn hasher(byte: u8) -> KeyHasher {
        KeyHasher::new(ServerSecret::new(vec![byte; 32]).unwrap_or_else(|_| ServerSecret(vec![])))
    }

    #[test]
    fn hmac_is_stable_and_keyed() {
        let key = KeyFormat::default().from_random(KeyKind::Project, &[1u8; 32]);
        let first = hasher(1).hash(&key);
        assert_eq!(first, hasher(1).hash(&key), "same secret, same hash");
        assert_ne!(first, hasher(2).hash(&key), "another secret, another hash");
        let other = KeyFormat::default().from_random(KeyKind::Project, &[2u8; 32]);
        assert_ne!(first, hasher(1).hash(&other));
        assert_ne!(hasher(1).fingerprint(), hasher(2).fingerprint());
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector() {
        // RFC 4231 test case 2 proves the primitive is HMAC-SHA-256, not a homemade mix.
        let mut mac = match HmacSha256::new_from_slice(b"Jefe") {
            Ok(mac) => mac,
            Err(_) => return,
        };
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_do_not_print() {
        assert!(ServerSecret::new(vec![0; 31]).is_err());
        let secret = ServerSecret::new(vec![b'x'; 40]);
        assert_eq!(
            secret.map(|s| format!("{s:?}")).unwrap_or_default(),
            "ServerSecret(*****)"
        );
        assert_eq!(format!("{:?}", KeyHash([9; 32])), "KeyHash(*****)");
    }
}
