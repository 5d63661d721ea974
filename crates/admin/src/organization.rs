//! `/v1/organization/users`, `/admin_api_keys` and `/audit_logs`.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::List;
use crate::objects::{
    AdminKeyCreated, AdminKeyDeleted, AdminKeyObject, AuditLogObject, Owners, UserObject,
};
use crate::params::Params;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use tollgate_control::{KeyOwnerRequest, NewKey};
use tollgate_core::duration::Span;
use tollgate_core::{KeyKind, Permissions, UnixTime};
use tollgate_store::AuditQuery;

type Answer<T> = Result<Json<T>, AdminError>;

#[utoipa::path(
    get,
    path = "/v1/organization/users",
    tag = "Users",
    summary = "List the organization's users",
    params(
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
        ("emails" = Option<Vec<String>>, Query, description = "Only users with these emails."),
    ),
    responses((status = 200, body = List<UserObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn users(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer<List<UserObject>> {
    let params = Params::parse(query.as_deref());
    let emails = params.many("emails");
    let users = state
        .control
        .members()
        .await?
        .iter()
        .filter(|m| emails.is_empty() || emails.contains(&m.user.email))
        .map(UserObject::from)
        .collect();
    List::page(users, &params)
}

#[utoipa::path(
    get,
    path = "/v1/organization/users/{user_id}",
    tag = "Users",
    summary = "Retrieve a user",
    params(
        ("user_id" = String, Path, description = "The user's id."),
    ),
    responses((status = 200, body = UserObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn user(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Answer<UserObject> {
    state
        .control
        .members()
        .await?
        .iter()
        .find(|m| m.user.id.as_str() == id)
        .map(|m| Json(UserObject::from(m)))
        .ok_or(AdminError::NotFound { what: "user", id })
}

/// A user's new role.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRoleBody {
    /// `owner` or `reader`.
    role: Option<String>,
    /// OpenAI's custom roles: not in Tollgate (only null).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    role_id: Option<serde_json::Value>,
    /// OpenAI's profile metadata: not kept by Tollgate (taken and ignored).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    technical_level: Option<serde_json::Value>,
    /// OpenAI's profile metadata: not kept by Tollgate (taken and ignored).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    developer_persona: Option<serde_json::Value>,
}

/// The member a path names, or 404 in OpenAI's words.
async fn member(state: &AdminState, id: &str) -> Result<tollgate_store::Member, AdminError> {
    match state.control.member(id).await {
        Ok(member) => Ok(member),
        Err(err) if err.class() == tollgate_control::ErrorClass::NotFound => {
            Err(AdminError::NotFound {
                what: "user",
                id: id.to_owned(),
            })
        }
        Err(err) => Err(err.into()),
    }
}

#[utoipa::path(
    post,
    path = "/v1/organization/users/{user_id}",
    tag = "Users",
    summary = "Change a user's role (the organization always keeps an owner)",
    params(("user_id" = String, Path, description = "The user's id.")),
    request_body = UserRoleBody,
    responses((status = 200, body = UserObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UserRoleBody>,
) -> Answer<UserObject> {
    let caller = caller.owner()?;
    if body.role_id.as_ref().is_some_and(|r| !r.is_null()) {
        return Err(AdminError::param(
            "role_id",
            "Tollgate has no custom roles; give 'role': 'owner' or 'reader'.",
        ));
    }
    let _ = (&body.technical_level, &body.developer_persona);
    let role = match body.role.as_deref().unwrap_or("") {
        "owner" => tollgate_store::Role::Owner,
        "reader" => tollgate_store::Role::Reader,
        other => {
            return Err(AdminError::param(
                "role",
                format!("Invalid 'role': '{other}'. Use 'owner' or 'reader'."),
            ))
        }
    };
    let member = member(&state, &id).await?;
    let updated = state
        .control
        .set_member_role(&caller.actor(), member.user.id.as_str(), role)
        .await?;
    Ok(Json(UserObject::from(&updated)))
}

/// `organization.user.deleted`
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserDeleted {
    pub object: &'static str,
    pub id: String,
    pub deleted: bool,
}

#[utoipa::path(
    delete,
    path = "/v1/organization/users/{user_id}",
    tag = "Users",
    summary = "Remove a user from the organization: every key they own is refused from the next request (never the last owner)",
    params(("user_id" = String, Path, description = "The user's id.")),
    responses((status = 200, body = UserDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete_user(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<UserDeleted> {
    let caller = caller.owner()?;
    let member = member(&state, &id).await?;
    state
        .control
        .remove_member(&caller.actor(), member.user.id.as_str())
        .await?;
    Ok(Json(UserDeleted {
        object: "organization.user.deleted",
        id: member.user.id.as_str().to_owned(),
        deleted: true,
    }))
}

async fn admin_keys_of(state: &AdminState) -> Result<Vec<AdminKeyObject>, AdminError> {
    let mut keys = state.control.keys(None, Some(KeyKind::Admin)).await?;
    keys.retain(|k| k.revoked_at.is_none());
    // The store lists the newest first; lists here go oldest first, as projects do.
    keys.reverse();
    let members = state.control.members().await?;
    let owners = Owners {
        members: &members,
        accounts: &[],
    };
    Ok(keys.iter().map(|k| owners.admin_key(k)).collect())
}

#[utoipa::path(
    get,
    path = "/v1/organization/admin_api_keys",
    tag = "Admin API keys",
    summary = "List admin API keys",
    params(
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = List<AdminKeyObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn admin_keys(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer<List<AdminKeyObject>> {
    let params = Params::parse(query.as_deref());
    List::page(admin_keys_of(&state).await?, &params)
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminKeyBody {
    name: String,
    /// Seconds until the key expires; leave out for a key that does not expire.
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    /// Tollgate's own field: `owner` (the default: reads and changes) or `reader` (lists and
    /// reads only).
    #[serde(default)]
    role: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/admin_api_keys",
    tag = "Admin API keys",
    summary = "Create an admin API key (its secret is in `value`, shown once)",
    request_body = AdminKeyBody,
    responses((status = 200, body = AdminKeyCreated), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create_admin_key(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<AdminKeyBody>,
) -> Answer<AdminKeyCreated> {
    let caller = caller.owner()?;
    let permissions = match body.role.as_deref() {
        None | Some("owner") => Permissions::All,
        Some("reader") => Permissions::ReadOnly,
        Some(other) => {
            return Err(AdminError::param(
                "role",
                format!("Invalid 'role': '{other}'. Use 'owner' or 'reader'."),
            ))
        }
    };
    let expires_in = match body.expires_in_seconds {
        None => None,
        Some(seconds) if seconds > 0 => Some(Span(seconds)),
        Some(_) => {
            return Err(AdminError::param(
                "expires_in_seconds",
                "Invalid 'expires_in_seconds': it must be a positive number of seconds.",
            ))
        }
    };
    let created = state
        .control
        .create_key(
            &caller.actor(),
            NewKey {
                name: body.name,
                owner: KeyOwnerRequest::Admin,
                permissions,
                expires_in,
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits: Default::default(),
                budget: None,
            },
        )
        .await?;
    let members = state.control.members().await?;
    let owners = Owners {
        members: &members,
        accounts: &[],
    };
    Ok(Json(AdminKeyCreated {
        key: owners.admin_key(&created.record),
        value: created.secret.expose().to_owned(),
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/organization/admin_api_keys/{key_id}",
    tag = "Admin API keys",
    summary = "Delete (revoke) an admin API key; the organization's last owner key cannot be deleted",
    params(("key_id" = String, Path, description = "The admin key's id.")),
    responses((status = 200, body = AdminKeyDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete_admin_key(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<AdminKeyDeleted> {
    let caller = caller.owner()?;
    // Any key the list shows (an expired one too); the control plane refuses to revoke the
    // organization's last owner key.
    let keys = state.control.keys(None, Some(KeyKind::Admin)).await?;
    let key = keys
        .iter()
        .find(|k| k.id.as_str() == id && k.revoked_at.is_none())
        .ok_or_else(|| AdminError::NotFound {
            what: "admin API key",
            id: id.clone(),
        })?;
    state
        .control
        .revoke_key(&caller.actor(), key.id.as_str())
        .await?;
    Ok(Json(AdminKeyDeleted {
        id: key.id.as_str().to_owned(),
        object: "organization.admin_api_key.deleted",
        deleted: true,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/organization/admin_api_keys/{key_id}",
    tag = "Admin API keys",
    summary = "Retrieve an admin API key",
    params(
        ("key_id" = String, Path, description = "The admin key's id."),
    ),
    responses((status = 200, body = AdminKeyObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn admin_key(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Answer<AdminKeyObject> {
    admin_keys_of(&state)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .map(Json)
        .ok_or(AdminError::NotFound {
            what: "admin API key",
            id,
        })
}

/// Tollgate's audit event types and the names OpenAI's audit log gives them. Tollgate's own
/// events that OpenAI has no name for (budgets, alerts, refused addresses) are listed only when
/// asked for by their own name, so that a client validating OpenAI's list of types never sees
/// a type it does not know; each entry also carries its exact type as `tollgate_type`.
const AS_OPENAI: &[(&str, &str)] = &[
    ("organization.created", "organization.updated"),
    ("organization.updated", "organization.updated"),
    ("user.added", "user.added"),
    ("user.updated", "user.updated"),
    ("user.deleted", "user.deleted"),
    ("project.created", "project.created"),
    ("project.updated", "project.updated"),
    ("project.archived", "project.archived"),
    ("api_key.created", "api_key.created"),
    ("api_key.updated", "api_key.updated"),
    ("api_key.rotated", "api_key.updated"),
    ("api_key.revoked", "api_key.deleted"),
    ("api_key.deleted", "api_key.deleted"),
    ("service_account.created", "service_account.created"),
    ("service_account.updated", "service_account.updated"),
    ("service_account.deleted", "service_account.deleted"),
    ("rate_limit.updated", "rate_limit.updated"),
    ("rate_limit.deleted", "rate_limit.deleted"),
    ("ip_allowlist.created", "ip_allowlist.created"),
    ("ip_allowlist.updated", "ip_allowlist.updated"),
    ("ip_allowlist.deleted", "ip_allowlist.deleted"),
    ("invite.sent", "invite.sent"),
    ("invite.accepted", "invite.accepted"),
    ("invite.deleted", "invite.deleted"),
    ("login.succeeded", "login.succeeded"),
    ("login.failed", "login.failed"),
    ("logout.succeeded", "logout.succeeded"),
];

/// The type an entry is listed under.
pub fn openai_type(tollgate: &str) -> &str {
    AS_OPENAI
        .iter()
        .find(|(t, _)| *t == tollgate)
        .map_or(tollgate, |(_, o)| *o)
}

/// The stored types a filter on `requested` (OpenAI's names, or Tollgate's own) selects.
fn stored_types(requested: &[String]) -> Vec<String> {
    if requested.is_empty() {
        return AS_OPENAI.iter().map(|(t, _)| (*t).to_owned()).collect();
    }
    let mut types: Vec<String> = Vec::new();
    for name in requested {
        types.push(name.clone());
        types.extend(
            AS_OPENAI
                .iter()
                .filter(|(_, o)| o == name)
                .map(|(t, _)| (*t).to_owned()),
        );
    }
    types.sort();
    types.dedup();
    types
}

#[utoipa::path(
    get,
    path = "/v1/organization/audit_logs",
    tag = "Audit logs",
    summary = "List audit log entries, newest first",
    params(
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the entries just newer than it."),
        ("effective_at[gt]" = Option<i64>, Query, description = "Entries after this Unix time."),
        ("effective_at[gte]" = Option<i64>, Query, description = "Entries at or after this Unix time."),
        ("effective_at[lt]" = Option<i64>, Query, description = "Entries before this Unix time."),
        ("effective_at[lte]" = Option<i64>, Query, description = "Entries at or before this Unix time."),
        ("project_ids[]" = Option<Vec<String>>, Query, description = "Only entries about these projects."),
        ("event_types[]" = Option<Vec<String>>, Query, description = "Only these event types (OpenAI's names, or Tollgate's own)."),
        ("actor_ids[]" = Option<Vec<String>>, Query, description = "Only entries by these actors."),
        ("actor_emails[]" = Option<Vec<String>>, Query, description = "Only entries by the users with these emails."),
        ("resource_ids[]" = Option<Vec<String>>, Query, description = "Only entries about these resources."),
    ),
    responses((status = 200, body = List<AuditLogObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn audit_logs(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer<List<AuditLogObject>> {
    let params = Params::parse(query.as_deref());
    let at = |op: &str| params.int(&format!("effective_at[{op}]"));
    let since = match (at("gt")?, at("gte")?) {
        (Some(gt), Some(gte)) => Some(gte.max(gt.saturating_add(1))),
        (Some(gt), None) => Some(gt.saturating_add(1)),
        (None, gte) => gte,
    };
    let until = match (at("lt")?, at("lte")?) {
        (Some(lt), Some(lte)) => Some(lte.min(lt.saturating_sub(1))),
        (Some(lt), None) => Some(lt.saturating_sub(1)),
        (None, lte) => lte,
    };
    let members = state.control.members().await?;
    let mut actor_ids = params.many("actor_ids");
    for email in params.many("actor_emails") {
        actor_ids.extend(
            members
                .iter()
                .filter(|m| m.user.email == email)
                .map(|m| m.user.id.as_str().to_owned()),
        );
        actor_ids.push(email);
    }
    if actor_ids.is_empty() && !params.many("actor_emails").is_empty() {
        return Ok(Json(List::of(Vec::new(), false)));
    }
    let limit = params.limit(20, 100)?;
    let query = AuditQuery {
        since: since.map(UnixTime),
        until: until.map(UnixTime),
        event_types: stored_types(&params.many("event_types")),
        project_ids: params.many("project_ids"),
        actor_ids,
        resource_ids: params.many("resource_ids"),
        after: params
            .one("after")
            .filter(|a| !a.is_empty())
            .map(str::to_owned),
        before: params
            .one("before")
            .filter(|b| !b.is_empty())
            .map(str::to_owned),
        limit,
    };
    if query.after.is_some() && query.before.is_some() {
        return Err(AdminError::param(
            "before",
            "Give 'after' or 'before', not both.",
        ));
    }
    let mut entries = state.control.audit_page(&query).await?;
    let has_more = entries.len() as i64 > limit;
    let extra = entries
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    if query.before.is_some() {
        // The one read past the page is the newest, first.
        entries.drain(..extra);
    } else {
        entries.truncate(entries.len() - extra);
    }
    let data = entries
        .iter()
        .map(|e| {
            let mut object = AuditLogObject::new(e, &members);
            let listed = openai_type(&e.event_type).to_owned();
            if listed != e.event_type {
                // The details sit under the name the entry is listed under.
                if let Some(detail) = object.details.remove(&e.event_type) {
                    object.details.insert(listed.clone(), detail);
                }
            }
            object.details.insert(
                "tollgate_type".into(),
                serde_json::Value::String(e.event_type.clone()),
            );
            object.kind = listed;
            object
        })
        .collect();
    Ok(Json(List::of(data, has_more)))
}
