//! The records the store reads and writes.

use serde::Serialize;
use tollgate_core::invite::InviteStatus;
use tollgate_core::lifecycle::{KeyState, KeyStatus};
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{
    AuditId, InviteId, KeyHash, KeyId, KeyKind, MicroUsd, OrgId, Permissions, ProjectId,
    ServiceAccountId, UnixTime, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Reader => "reader",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "owner" => Some(Role::Owner),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }
}

/// A user's role in one project, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectRole {
    Owner,
    Member,
}

impl ProjectRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Owner => "owner",
            ProjectRole::Member => "member",
        }
    }

    pub fn parse(text: &str) -> Option<ProjectRole> {
        match text {
            "owner" => Some(ProjectRole::Owner),
            "member" => Some(ProjectRole::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatus {
    Active,
    Archived,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Active => "active",
            ProjectStatus::Archived => "archived",
        }
    }

    pub(crate) fn from_db(text: &str) -> ProjectStatus {
        if text == "active" {
            ProjectStatus::Active
        } else {
            ProjectStatus::Archived
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub id: ProjectId,
    pub org_id: OrgId,
    pub name: String,
    pub status: ProjectStatus,
    pub is_default: bool,
    pub created_at: UnixTime,
    pub archived_at: Option<UnixTime>,
    /// Addresses the project's keys may be used from (empty: any).
    pub allowed_ips: IpAllowList,
    /// Models the project's keys may use (empty: any).
    pub allowed_models: ModelAllowList,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceAccount {
    pub id: ServiceAccountId,
    pub project_id: ProjectId,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_at: UnixTime,
}

/// Who owns a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum KeyOwner {
    User(UserId),
    ServiceAccount(ServiceAccountId),
}

/// One API key as stored: never the secret, only its keyed hash and redacted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub org_id: OrgId,
    pub project_id: Option<ProjectId>,
    pub kind: KeyKind,
    pub name: String,
    pub hash: KeyHash,
    pub hash_version: i64,
    pub redacted: String,
    pub owner: KeyOwner,
    pub permissions: Permissions,
    pub created_by: String,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub rotated_from: Option<KeyId>,
    pub rotated_to: Option<KeyId>,
    /// Addresses the key may be used from (empty: any).
    pub allowed_ips: IpAllowList,
    /// Models the key may use (empty: any).
    pub allowed_models: ModelAllowList,
}

impl KeyRecord {
    pub fn state(&self) -> KeyState {
        KeyState {
            revoked_at: self.revoked_at,
            expires_at: self.expires_at,
            rotated_to: self.rotated_to.clone(),
        }
    }

    pub fn status(&self, now: UnixTime) -> KeyStatus {
        self.state().status(now)
    }
}

/// A key with what authentication needs to know about its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKey {
    pub key: KeyRecord,
    /// Set while the key is suspended after suspicious use.
    pub suspension: Option<Suspension>,
    pub project_status: Option<ProjectStatus>,
    /// The project's allow-list (empty for admin keys and open projects).
    pub project_allowed_ips: IpAllowList,
    /// The project's model allow-list.
    pub project_allowed_models: ModelAllowList,
}

/// Why and since when a key is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspension {
    /// What was noticed (`request_spike`, `new_address`, ...).
    pub kind: String,
    /// The finding, in a sentence.
    pub reason: String,
    pub at: UnixTime,
}

/// Which keys to list.
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub project_id: Option<ProjectId>,
    pub kind: Option<KeyKind>,
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Actor {
    /// `system`, `cli`, `user` or `api_key`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            kind: "system".into(),
            id: "tollgate".into(),
        }
    }

    /// The local operator running the CLI against the database.
    pub fn cli(user: &str) -> Actor {
        Actor {
            kind: "cli".into(),
            id: user.into(),
        }
    }

    /// The `created_by` text for records: `type:id`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.kind, self.id)
    }
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AuditEntry {
    pub id: AuditId,
    pub org_id: OrgId,
    pub event_type: String,
    pub actor: Actor,
    pub project_id: Option<ProjectId>,
    pub resource_id: Option<String>,
    pub data: serde_json::Value,
    pub created_at: UnixTime,
}

/// Everything a first run creates, written in one transaction.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub organization: Organization,
    pub owner: User,
    pub owner_password_hash: String,
    pub project: Project,
    pub admin_key: KeyRecord,
    pub secret_fingerprint: String,
    /// The word this deployment's keys start with; fixed from the first run on.
    pub key_prefix: String,
    pub audit: Vec<AuditEntry>,
}

/// One change a running server must apply to its key table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub entity: ChangedEntity,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedEntity {
    Key(KeyId),
    Project(ProjectId),
    /// Some rate limit or budget was set or removed; servers reload them all.
    Limits,
}

/// One metered request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UsageEvent {
    pub request_id: String,
    pub org_id: OrgId,
    pub project_id: ProjectId,
    pub key_id: KeyId,
    pub model_requested: String,
    pub model_served: String,
    pub endpoint: String,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost: MicroUsd,
    pub status: u16,
    pub latency_ms: i64,
    pub client_ip: Option<String>,
    pub created_at: UnixTime,
    /// Objects the provider made for this request through a shared credential (the ownership
    /// ledger's entries, stored with the event and as durable as it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<CreatedObject>,
}

/// An object a provider made for a request: recorded in the ownership ledger under the
/// request's project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CreatedObject {
    /// The provider's name in the configuration.
    pub provider: String,
    pub kind: tollgate_core::objects::ObjectKind,
    pub id: String,
}

/// A user of an organization, with their role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user: User,
    pub role: Role,
    /// When they joined the organization.
    pub added_at: UnixTime,
}

/// A user of a project, with their role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectMember {
    pub user: User,
    pub role: ProjectRole,
    /// When they were added to the project.
    pub added_at: UnixTime,
}

/// A project an invitee joins on accepting, and their role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InvitedProject {
    pub id: ProjectId,
    pub role: ProjectRole,
}

/// An invitation to join an organization (never its token: the store keeps only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invite {
    pub id: InviteId,
    pub org_id: OrgId,
    /// Normalized (see [`tollgate_core::invite::normalize_email`]).
    pub email: String,
    pub role: Role,
    pub projects: Vec<InvitedProject>,
    pub created_by: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub accepted_at: Option<UnixTime>,
    /// Who accepted it.
    pub user_id: Option<UserId>,
}

impl Invite {
    pub fn status(&self, now: UnixTime) -> InviteStatus {
        InviteStatus::at(self.accepted_at, self.expires_at, now)
    }
}

/// Which audit entries to list (every filter that is set must hold), newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries at or after this instant.
    pub since: Option<UnixTime>,
    /// Entries at or before this instant.
    pub until: Option<UnixTime>,
    pub event_types: Vec<String>,
    pub project_ids: Vec<String>,
    pub actor_ids: Vec<String>,
    pub resource_ids: Vec<String>,
    /// Entries older than this one (its id), for the next page.
    pub after: Option<String>,
    /// Entries newer than this one (its id), for the previous page: the `limit` nearest it,
    /// still newest first, with one more (the newest, first) when there are more.
    pub before: Option<String>,
    pub limit: i64,
}

/// Usage summed over one time bucket and one (project, key, model, endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotal {
    /// Which bucket: 0 for the one that starts at the query's start.
    pub bucket: i64,
    pub project_id: ProjectId,
    pub key_id: KeyId,
    pub model: String,
    pub endpoint: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost: MicroUsd,
}

/// How a usage report groups its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    Day,
    Model,
    Key,
    Project,
}

/// One row of a usage report: `group` is the day, model, key id or project id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UsageRow {
    pub group: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost: MicroUsd,
}
