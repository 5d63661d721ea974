//! Tollgate's records in the shapes of OpenAI's admin API objects (field names, `object`
//! names, which fields are always present), as its OpenAPI document and SDKs define them.

use crate::list::Listed;
use serde::Serialize;
use serde_json::{json, Value};
use tollgate_core::UnixTime;
use tollgate_store::{
    AuditEntry, Invite, KeyOwner, KeyRecord, Member, Project, ProjectMember, ServiceAccount,
};
use utoipa::ToSchema;

/// `organization.project`
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub status: &'static str,
}

impl From<&Project> for ProjectObject {
    fn from(p: &Project) -> Self {
        ProjectObject {
            id: p.id.as_str().to_owned(),
            object: "organization.project",
            name: p.name.clone(),
            created_at: p.created_at.seconds(),
            archived_at: p.archived_at.map(UnixTime::seconds),
            status: p.status.as_str(),
        }
    }
}

/// `organization.project.service_account`
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub role: String,
    pub created_at: i64,
}

impl From<&ServiceAccount> for ServiceAccountObject {
    fn from(a: &ServiceAccount) -> Self {
        ServiceAccountObject {
            id: a.id.as_str().to_owned(),
            object: "organization.project.service_account",
            name: a.name.clone(),
            role: a.role.clone(),
            created_at: a.created_at.seconds(),
        }
    }
}

/// `organization.project.service_account.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountDeleted {
    pub object: &'static str,
    pub id: String,
    pub deleted: bool,
}

/// A service account just made, with its first key: the secret is in `api_key.value`, here
/// and nowhere else.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountCreated {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub api_key: ServiceAccountKeyCreated,
}

/// `organization.project.service_account.api_key`, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountKeyCreated {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub value: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// `organization.project.api_key.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyDeleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

/// `{object: "page", data: [bucket...], has_more, next_page}`: a usage or costs report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePage {
    pub object: &'static str,
    pub data: Vec<UsageBucket>,
    pub has_more: bool,
    /// The `page` to ask for next, while `has_more`.
    pub next_page: Option<String>,
}

/// One time bucket of a usage or costs report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageBucket {
    pub object: &'static str,
    pub start_time: i64,
    pub end_time: i64,
    /// `organization.usage.completions.result`, `organization.usage.embeddings.result` or
    /// `organization.costs.result` objects, one per group.
    pub results: Vec<Value>,
}

/// `organization.project.api_key`, with its owner as OpenAI shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectApiKeyObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub redacted_value: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub owner: Value,
    pub owner_project_access: &'static str,
}

/// Who owns keys, looked up once per response.
pub struct Owners<'a> {
    pub members: &'a [Member],
    pub accounts: &'a [ServiceAccount],
}

impl Owners<'_> {
    fn of(&self, key: &KeyRecord) -> Value {
        match &key.owner {
            KeyOwner::User(id) => {
                let member = self.members.iter().find(|m| &m.user.id == id);
                json!({
                    "type": "user",
                    "user": {
                        "object": "organization.project.user",
                        "id": id.as_str(),
                        "name": member.map_or("", |m| m.user.name.as_str()),
                        "email": member.map_or("", |m| m.user.email.as_str()),
                        "role": if member.is_some_and(|m| m.role == tollgate_store::Role::Owner) { "owner" } else { "member" },
                        "created_at": member.map_or(0, |m| m.user.created_at.seconds()),
                        "added_at": member.map_or(0, |m| m.added_at.seconds()),
                    }
                })
            }
            KeyOwner::ServiceAccount(id) => {
                let account = self.accounts.iter().find(|a| &a.id == id);
                json!({
                    "type": "service_account",
                    "service_account": {
                        "object": "organization.project.service_account",
                        "id": id.as_str(),
                        "name": account.map_or("", |a| a.name.as_str()),
                        "role": account.map_or("member", |a| a.role.as_str()),
                        "created_at": account.map_or(0, |a| a.created_at.seconds()),
                    }
                })
            }
        }
    }

    pub fn project_key(&self, key: &KeyRecord, project_active: bool) -> ProjectApiKeyObject {
        ProjectApiKeyObject {
            id: key.id.as_str().to_owned(),
            object: "organization.project.api_key",
            name: key.name.clone(),
            redacted_value: key.redacted.clone(),
            created_at: key.created_at.seconds(),
            last_used_at: key.last_used_at.map(UnixTime::seconds),
            expires_at: key.expires_at.map(UnixTime::seconds),
            owner: self.of(key),
            owner_project_access: if project_active { "active" } else { "inactive" },
        }
    }

    pub fn admin_key(&self, key: &KeyRecord) -> AdminKeyObject {
        let member = match &key.owner {
            KeyOwner::User(id) => self.members.iter().find(|m| &m.user.id == id),
            KeyOwner::ServiceAccount(_) => None,
        };
        AdminKeyObject {
            id: key.id.as_str().to_owned(),
            object: "organization.admin_api_key",
            name: key.name.clone(),
            redacted_value: key.redacted.clone(),
            created_at: key.created_at.seconds(),
            last_used_at: key.last_used_at.map(UnixTime::seconds),
            expires_at: key.expires_at.map(UnixTime::seconds),
            owner: json!({
                "type": "user",
                "object": "organization.user",
                "id": member.map(|m| m.user.id.as_str()),
                "name": member.map(|m| m.user.name.as_str()),
                "created_at": member.map(|m| m.user.created_at.seconds()),
                "role": member.map(|m| m.role.as_str()),
            }),
        }
    }
}

/// `organization.admin_api_key`
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminKeyObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub redacted_value: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub owner: Value,
}

/// An admin key just made: the object and, once, its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminKeyCreated {
    #[serde(flatten)]
    pub key: AdminKeyObject,
    pub value: String,
}

/// `organization.admin_api_key.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminKeyDeleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

/// `organization.user`
#[derive(Debug, Serialize, ToSchema)]
pub struct UserObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub added_at: i64,
}

impl From<&Member> for UserObject {
    fn from(m: &Member) -> Self {
        UserObject {
            id: m.user.id.as_str().to_owned(),
            object: "organization.user",
            name: m.user.name.clone(),
            email: m.user.email.clone(),
            role: m.role.as_str(),
            added_at: m.added_at.seconds(),
        }
    }
}

/// `organization.project.user`
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectUserObject {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    pub email: String,
    /// `owner` or `member`.
    pub role: &'static str,
    pub added_at: i64,
}

impl From<&ProjectMember> for ProjectUserObject {
    fn from(m: &ProjectMember) -> Self {
        ProjectUserObject {
            id: m.user.id.as_str().to_owned(),
            object: "organization.project.user",
            name: m.user.name.clone(),
            email: m.user.email.clone(),
            role: m.role.as_str(),
            added_at: m.added_at.seconds(),
        }
    }
}

/// `organization.project.user.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectUserDeleted {
    pub object: &'static str,
    pub id: String,
    pub deleted: bool,
}

/// A project an invitee joins, and their role there.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitedProjectObject {
    pub id: String,
    /// `member` or `owner`.
    pub role: &'static str,
}

/// `organization.invite`
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteObject {
    pub object: &'static str,
    pub id: String,
    pub email: String,
    /// `owner` or `reader`.
    pub role: &'static str,
    /// `pending`, `accepted` or `expired`.
    pub status: &'static str,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub accepted_at: Option<i64>,
    pub projects: Vec<InvitedProjectObject>,
}

impl InviteObject {
    pub fn new(invite: &Invite, now: UnixTime) -> InviteObject {
        InviteObject {
            object: "organization.invite",
            id: invite.id.as_str().to_owned(),
            email: invite.email.clone(),
            role: invite.role.as_str(),
            status: invite.status(now).as_str(),
            created_at: invite.created_at.seconds(),
            expires_at: Some(invite.expires_at.seconds()),
            accepted_at: invite.accepted_at.map(UnixTime::seconds),
            projects: invite
                .projects
                .iter()
                .map(|p| InvitedProjectObject {
                    id: p.id.as_str().to_owned(),
                    role: p.role.as_str(),
                })
                .collect(),
        }
    }
}

/// A new invite, with the one-time token of its link (Tollgate's field: Tollgate sends no
/// e-mail, so whoever invites passes the link on). Shown here only.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteCreated {
    #[serde(flatten)]
    pub invite: InviteObject,
    /// `tgi_...`: the invitee opens the console's invite page with it to join.
    pub accept_token: String,
}

/// `organization.invite.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteDeleted {
    pub object: &'static str,
    pub id: String,
    pub deleted: bool,
}

/// An audit log entry: `{id, type, effective_at, project, actor, "<type>": {...}}`, the
/// event's details under its own type's name as OpenAI writes them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogObject {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub effective_at: i64,
    /// Absent for actions not scoped to a project, as OpenAI writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<Value>,
    pub actor: Value,
    /// The event's details, under the event type's name (`"project.created": {...}`), and
    /// Tollgate's own type of the event as `tollgate_type`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, Value>,
}

impl AuditLogObject {
    pub fn new(entry: &AuditEntry, members: &[Member]) -> AuditLogObject {
        let actor = match entry.actor.kind.as_str() {
            "api_key" => json!({
                "type": "api_key",
                "api_key": {"id": entry.actor.id, "type": "user"},
            }),
            // The CLI's operator, the system itself, or a console user: a session.
            _ => {
                // Fields Tollgate does not know (the address, an email) are left out: OpenAI's
                // schema has them as strings when present.
                let mut user = serde_json::Map::new();
                user.insert("id".into(), json!(entry.actor.id));
                if let Some(member) = members.iter().find(|m| {
                    m.user.email == entry.actor.id || m.user.id.as_str() == entry.actor.id
                }) {
                    user.insert("email".into(), json!(member.user.email));
                }
                json!({
                    "type": "session",
                    "session": {"user": user, "tollgate_actor": entry.actor.kind},
                })
            }
        };
        let mut detail = serde_json::Map::new();
        if let Some(id) = &entry.resource_id {
            detail.insert("id".into(), Value::String(id.clone()));
        }
        if let Value::Object(data) = &entry.data {
            match data.get("changes_requested") {
                Some(changes @ Value::Object(_)) => {
                    detail.insert("changes_requested".into(), changes.clone());
                }
                _ => {
                    detail.insert("data".into(), Value::Object(data.clone()));
                }
            }
        }
        let mut details = serde_json::Map::new();
        details.insert(entry.event_type.clone(), Value::Object(detail));
        AuditLogObject {
            id: entry.id.as_str().to_owned(),
            kind: entry.event_type.clone(),
            effective_at: entry.created_at.seconds(),
            project: entry.project_id.as_ref().map(|p| json!({"id": p.as_str()})),
            actor,
            details,
        }
    }
}

macro_rules! listed {
    ($($t:ty),*) => {$(
        impl Listed for $t {
            fn id(&self) -> &str {
                &self.id
            }
        }
    )*};
}
listed!(
    ProjectObject,
    ServiceAccountObject,
    ProjectApiKeyObject,
    AdminKeyObject,
    UserObject,
    AuditLogObject,
    ProjectUserObject,
    InviteObject
);
