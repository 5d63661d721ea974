//! How records are shown to people and scripts, the same through the CLI and the admin API.

use serde::Serialize;
use tollgate_core::network::IpAllowList;
use tollgate_core::UnixTime;
use tollgate_store::{KeyOwner, KeyRecord};

/// A key as the CLI (`--json`) and the admin API's extensions show it: everything Tollgate knows
/// about it but the secret, with OpenAI's field names where they exist.
#[derive(Debug, Serialize)]
pub struct KeyView<'a> {
    pub object: &'static str,
    pub id: &'a str,
    pub name: &'a str,
    pub kind: &'static str,
    pub redacted_value: &'a str,
    pub status: &'static str,
    pub project_id: Option<&'a str>,
    pub owner: &'a KeyOwner,
    pub permissions: String,
    pub created_by: &'a str,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rotated_from: Option<&'a str>,
    pub rotated_to: Option<&'a str>,
    pub allowed_ips: &'a IpAllowList,
    pub allowed_models: &'a tollgate_core::routing::ModelAllowList,
}

impl<'a> KeyView<'a> {
    pub fn new(key: &'a KeyRecord, now: UnixTime) -> KeyView<'a> {
        KeyView {
            object: match key.kind {
                tollgate_core::KeyKind::Admin => "organization.admin_api_key",
                tollgate_core::KeyKind::ServiceAccount => {
                    "organization.project.service_account.api_key"
                }
                tollgate_core::KeyKind::Project => "organization.project.api_key",
            },
            id: key.id.as_str(),
            name: &key.name,
            kind: key.kind.as_str(),
            redacted_value: &key.redacted,
            status: key.status(now).as_str(),
            project_id: key.project_id.as_ref().map(|p| p.as_str()),
            owner: &key.owner,
            permissions: key.permissions.to_string(),
            created_by: &key.created_by,
            created_at: key.created_at.seconds(),
            last_used_at: key.last_used_at.map(UnixTime::seconds),
            expires_at: key.expires_at.map(UnixTime::seconds),
            revoked_at: key.revoked_at.map(UnixTime::seconds),
            rotated_from: key.rotated_from.as_ref().map(|k| k.as_str()),
            rotated_to: key.rotated_to.as_ref().map(|k| k.as_str()),
            allowed_ips: &key.allowed_ips,
            allowed_models: &key.allowed_models,
        }
    }
}

/// A key with its secret: only ever printed right after it was made.
#[derive(Debug, Serialize)]
pub struct CreatedKeyView<'a> {
    #[serde(flatten)]
    pub key: KeyView<'a>,
    pub value: &'a str,
}
