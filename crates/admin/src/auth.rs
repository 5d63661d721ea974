//! Who is calling: every admin endpoint takes an active admin key (`sk-admin-…`) as a bearer
//! token. An admin key with permissions `all` is an owner (reads and changes), one with
//! `read-only` a reader (lists and reads: anything else is 403). Project and service account
//! keys are refused here (403), as admin keys are on the data plane.

use crate::error::AdminError;
use crate::AdminState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;
use tollgate_core::lifecycle::KeyStatus;
use tollgate_core::standing::{ClientAddress, KeyShown};
use tollgate_core::{KeyKind, Permissions};
use tollgate_store::{Actor, KeyRecord, Role};

/// An authenticated admin key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: KeyRecord,
    pub role: Role,
}

impl Caller {
    /// The actor audit entries name for what this key does.
    pub fn actor(&self) -> Actor {
        Actor {
            kind: "api_key".into(),
            id: self.key.id.as_str().to_owned(),
        }
    }

    /// The caller, if it may change things.
    pub fn owner(&self) -> Result<&Caller, AdminError> {
        match self.role {
            Role::Owner => Ok(self),
            Role::Reader => Err(AdminError::ReaderKey),
        }
    }
}

/// How fresh an admin key's `last_used_at` is kept.
const LAST_USE_RESOLUTION_SECS: i64 = 60;

impl FromRequestParts<AdminState> for Caller {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Caller, AdminError> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(AdminError::MissingKey)?;
        let invalid = || AdminError::InvalidKey {
            shown: tollgate_core::key::mask_presented(presented),
        };
        // Format and checksum first: junk costs no hashing and no lookup.
        let parsed = state
            .control
            .key_format()
            .parse(presented)
            .map_err(|_| invalid())?;
        let id = parsed.secret.id();
        let key = match state.control.key(id.as_str()).await {
            Ok(key) => key,
            Err(err) if err.class() == tollgate_control::ErrorClass::NotFound => {
                return Err(invalid())
            }
            Err(err) => return Err(err.into()),
        };
        let hash = state.control.hasher().hash(&parsed.secret);
        let same: bool = key.hash.0.ct_eq(&hash.0).into();
        if !same || key.status(state.control.now()) != KeyStatus::Active {
            return Err(invalid());
        }
        if key.kind != KeyKind::Admin {
            return Err(AdminError::NotAdminKey);
        }
        // Every handler acts on the organization this deployment serves: a key of any other
        // (a database holding more than one) is no key here.
        if key.org_id != state.control.organization().await?.id {
            return Err(invalid());
        }
        // An admin key's own IP allow-list, with the address the gateway worked out (trusted
        // proxies' headers applied); an address nobody could name passes only an open list.
        let client = parts.extensions.get::<ClientAddress>().and_then(|c| c.0);
        let admitted = match client {
            Some(ip) => key.allowed_ips.allows(ip),
            None => key.allowed_ips.is_empty(),
        };
        if !admitted {
            tracing::warn!(key_id = %key.id, client_ip = ?client, "admin key used from an address outside its IP allow-list");
            return Err(AdminError::IpNotAuthorized);
        }
        let role = match key.permissions {
            Permissions::All => Role::Owner,
            Permissions::ReadOnly | Permissions::Restricted { .. } => Role::Reader,
        };
        // `last_used_at`, as the admin key list shows it, to the minute: a key busy with many
        // calls writes once a minute, not once a call (every write takes the database's write
        // lock). A failure only leaves the time older.
        let now = state.control.now();
        let stale = key
            .last_used_at
            .is_none_or(|at| now.seconds() - at.seconds() >= LAST_USE_RESOLUTION_SECS);
        if stale {
            if let Err(err) = state
                .control
                .store()
                .touch_keys(&[(key.id.clone(), now)])
                .await
            {
                tracing::warn!(error = %err, "could not record an admin key's use");
            }
        }
        // Tells the connection a valid key was shown (see the gateway's `trust`).
        if let Some(shown) = parts.extensions.get::<KeyShown>() {
            shown.set();
        }
        Ok(Caller { key, role })
    }
}
