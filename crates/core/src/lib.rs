//! Tollgate's domain: identifiers, the secret-key format, permissions, key lifecycle rules and
//! the clock. Nothing in this crate performs I/O; every rule here is a plain function or type
//! with unit tests beside it.

pub mod anomaly;
pub mod base62;
pub mod budget;
pub mod client_token;
pub mod clock;
pub mod duration;
pub mod endpoints;
pub mod error;
pub mod holder;
pub mod ids;
pub mod invite;
pub mod key;
pub mod lifecycle;
pub mod limit_rules;
pub mod limits;
pub mod money;
pub mod network;
pub mod objects;
pub mod password;
pub mod path;
pub mod permissions;
pub mod pricing;
pub mod routing;
pub mod secret;
pub mod sign_in;
pub mod signature;
pub mod standing;
pub mod usage;

pub use clock::{Clock, ManualClock, SystemClock, UnixTime};
pub use error::{ErrorKind, OpenAiError};
pub use ids::{
    AuditId, ClientTokenId, InviteId, KeyId, OrgId, ProjectId, ServiceAccountId, UserId,
};
pub use key::{KeyFormat, KeyKind, ParsedKey, SecretKey};
pub use money::MicroUsd;
pub use permissions::{Access, Permissions, Scope};
pub use secret::{KeyHash, KeyHasher, ServerSecret};
