//! `/v1/organization/projects` and what lives in a project: its service accounts and API keys.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::List;
use crate::objects::{
    KeyDeleted, Owners, ProjectApiKeyObject, ProjectObject, ServiceAccountCreated,
    ServiceAccountDeleted, ServiceAccountKeyCreated, ServiceAccountObject,
};
use crate::params::Params;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use tollgate_core::KeyKind;
use tollgate_store::{KeyRecord, Project, ProjectStatus};

type Answer<T> = Result<Json<T>, AdminError>;

#[utoipa::path(
    get,
    path = "/v1/organization/projects",
    tag = "Projects",
    summary = "List projects",
    params(
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
        ("include_archived" = Option<bool>, Query, description = "Whether archived projects are listed too; default false."),
    ),
    responses((status = 200, body = List<ProjectObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer<List<ProjectObject>> {
    let params = Params::parse(query.as_deref());
    let archived = params.bool("include_archived")?;
    // Oldest first, in the order they were made (the store's); archived ones hold the cursor's
    // place even when not listed.
    let projects = state.control.projects(true).await?;
    List::page_of(
        projects
            .iter()
            .map(|p| {
                (
                    ProjectObject::from(p),
                    archived || p.status == ProjectStatus::Active,
                )
            })
            .collect(),
        &params,
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectBody {
    name: String,
    /// OpenAI's data residency; Tollgate keeps data where it runs, so only null is taken.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    geography: Option<Value>,
    /// OpenAI's external encryption key; not taken (only null).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    external_key_id: Option<Value>,
}

impl ProjectBody {
    fn name(&self) -> Result<&str, AdminError> {
        if self.geography.as_ref().is_some_and(|g| !g.is_null()) {
            return Err(AdminError::param(
                "geography",
                "Tollgate keeps a project's data where Tollgate runs; 'geography' cannot be set.",
            ));
        }
        if self.external_key_id.as_ref().is_some_and(|g| !g.is_null()) {
            return Err(AdminError::param(
                "external_key_id",
                "Tollgate does not take external encryption keys; 'external_key_id' cannot be set.",
            ));
        }
        Ok(&self.name)
    }
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects",
    tag = "Projects",
    summary = "Create a project",
    request_body = ProjectBody,
    responses((status = 200, body = ProjectObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<ProjectBody>,
) -> Answer<ProjectObject> {
    let caller = caller.owner()?;
    let project = state
        .control
        .create_project(&caller.actor(), body.name()?)
        .await?;
    Ok(Json(ProjectObject::from(&project)))
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}",
    tag = "Projects",
    summary = "Retrieve a project",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
    ),
    responses((status = 200, body = ProjectObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn retrieve(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Answer<ProjectObject> {
    Ok(Json(ProjectObject::from(&project(&state, &id).await?)))
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}",
    tag = "Projects",
    summary = "Rename a project",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
    ),
    request_body = ProjectBody,
    responses((status = 200, body = ProjectObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProjectBody>,
) -> Answer<ProjectObject> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let renamed = state
        .control
        .rename_project(&caller.actor(), project.id.as_str(), body.name()?)
        .await?;
    Ok(Json(ProjectObject::from(&renamed)))
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/archive",
    tag = "Projects",
    summary = "Archive a project: its keys stop working",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
    ),
    responses((status = 200, body = ProjectObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn archive(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<ProjectObject> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let archived = state
        .control
        .archive_project(&caller.actor(), project.id.as_str())
        .await?;
    Ok(Json(ProjectObject::from(&archived)))
}

/// A project by id only (the CLI also takes names; OpenAI's paths take ids).
/// A change to an archived project is refused (409), as everywhere in Tollgate.
pub(crate) fn refuse_archived(project: &Project) -> Result<(), AdminError> {
    if project.status == ProjectStatus::Archived {
        return Err(tollgate_control::ControlError::Conflict(format!(
            "project {} ({}) is archived; archived projects cannot be used or changed",
            project.id, project.name
        ))
        .into());
    }
    Ok(())
}

pub(crate) async fn project(state: &AdminState, id: &str) -> Result<Project, AdminError> {
    let not_found = || AdminError::NotFound {
        what: "project",
        id: id.to_owned(),
    };
    if !id.starts_with("proj_") {
        return Err(not_found());
    }
    match state.control.project(id).await {
        Ok(project) if project.id.as_str() == id => Ok(project),
        Ok(_) => Err(not_found()),
        Err(err) if err.class() == tollgate_control::ErrorClass::NotFound => Err(not_found()),
        Err(err) => Err(err.into()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/service_accounts",
    tag = "Service accounts",
    summary = "List a project's service accounts",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = List<ServiceAccountObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn service_accounts(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer<List<ServiceAccountObject>> {
    let params = Params::parse(query.as_deref());
    let project = project(&state, &id).await?;
    let accounts = state
        .control
        .service_accounts(Some(project.id.as_str()))
        .await?;
    List::page(
        accounts.iter().map(ServiceAccountObject::from).collect(),
        &params,
    )
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/service_accounts/{service_account_id}",
    tag = "Service accounts",
    summary = "Retrieve a service account",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("service_account_id" = String, Path, description = "The service account's id."),
    ),
    responses((status = 200, body = ServiceAccountObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn service_account(
    State(state): State<AdminState>,
    _caller: Caller,
    Path((id, account)): Path<(String, String)>,
) -> Answer<ServiceAccountObject> {
    let project = project(&state, &id).await?;
    let accounts = state
        .control
        .service_accounts(Some(project.id.as_str()))
        .await?;
    accounts
        .iter()
        .find(|a| a.id.as_str() == account)
        .map(|a| Json(ServiceAccountObject::from(a)))
        .ok_or(AdminError::NotFound {
            what: "service account",
            id: account,
        })
}

#[utoipa::path(
    delete,
    path = "/v1/organization/projects/{project_id}/service_accounts/{service_account_id}",
    tag = "Service accounts",
    summary = "Delete a service account: every key it owns is refused from the next request",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("service_account_id" = String, Path, description = "The service account's id."),
    ),
    responses((status = 200, body = ServiceAccountDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete_service_account(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, account)): Path<(String, String)>,
) -> Answer<ServiceAccountDeleted> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let not_found = || AdminError::NotFound {
        what: "service account",
        id: account.clone(),
    };
    let (deleted, _) = match state
        .control
        .delete_service_account(&caller.actor(), project.id.as_str(), &account)
        .await
    {
        Err(err) if err.class() == tollgate_control::ErrorClass::NotFound => {
            return Err(not_found())
        }
        other => other?,
    };
    Ok(Json(ServiceAccountDeleted {
        object: "organization.project.service_account.deleted",
        id: deleted.id.as_str().to_owned(),
        deleted: true,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountBody {
    name: String,
}

/// Creates a service account and its first key, returned once, as OpenAI does.
#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/service_accounts",
    tag = "Service accounts",
    summary = "Create a service account and its first key (shown once)",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
    ),
    request_body = ServiceAccountBody,
    responses((status = 200, body = ServiceAccountCreated), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create_service_account(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ServiceAccountBody>,
) -> Answer<ServiceAccountCreated> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let actor = caller.actor();
    let (account, key) = state
        .control
        .create_service_account_with_key(&actor, project.id.as_str(), &body.name, "Secret key")
        .await?;
    Ok(Json(ServiceAccountCreated {
        id: account.id.as_str().to_owned(),
        object: "organization.project.service_account",
        name: account.name,
        role: account.role,
        created_at: account.created_at.seconds(),
        api_key: ServiceAccountKeyCreated {
            id: key.record.id.as_str().to_owned(),
            object: "organization.project.service_account.api_key",
            name: key.record.name.clone(),
            value: key.secret.expose().to_owned(),
            created_at: key.record.created_at.seconds(),
            expires_at: key.record.expires_at.map(|t| t.seconds()),
        },
    }))
}

/// The project's keys, each with whether OpenAI's API shows it: revoked keys are deleted as far
/// as it is concerned (they keep only their place for list cursors).
async fn project_keys(
    state: &AdminState,
    project: &Project,
) -> Result<(Vec<(ProjectApiKeyObject, bool)>, Vec<KeyRecord>), AdminError> {
    let mut keys: Vec<KeyRecord> = state
        .control
        .keys(Some(project.id.as_str()), None)
        .await?
        .into_iter()
        .filter(|k| k.kind != KeyKind::Admin)
        .collect();
    // The store lists the newest first; lists here go oldest first, as projects do.
    keys.reverse();
    let members = state.control.members().await?;
    let accounts = state
        .control
        .service_accounts(Some(project.id.as_str()))
        .await?;
    let owners = Owners {
        members: &members,
        accounts: &accounts,
    };
    let active = project.status == ProjectStatus::Active;
    let objects = keys
        .iter()
        .map(|k| (owners.project_key(k, active), k.revoked_at.is_none()))
        .collect();
    keys.retain(|k| k.revoked_at.is_none());
    Ok((objects, keys))
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/api_keys",
    tag = "Project API keys",
    summary = "List a project's API keys",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = List<ProjectApiKeyObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn api_keys(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer<List<ProjectApiKeyObject>> {
    let params = Params::parse(query.as_deref());
    let project = project(&state, &id).await?;
    let (objects, _) = project_keys(&state, &project).await?;
    List::page_of(objects, &params)
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/api_keys/{key_id}",
    tag = "Project API keys",
    summary = "Retrieve a project API key",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("key_id" = String, Path, description = "The key's id (`key_...`)."),
    ),
    responses((status = 200, body = ProjectApiKeyObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn api_key(
    State(state): State<AdminState>,
    _caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Answer<ProjectApiKeyObject> {
    let project = project(&state, &id).await?;
    let (objects, _) = project_keys(&state, &project).await?;
    objects
        .into_iter()
        .find(|(k, listed)| *listed && k.id == key)
        .map(|(k, _)| k)
        .map(Json)
        .ok_or(AdminError::NotFound {
            what: "API key",
            id: key,
        })
}

/// Deletes (revokes) a project key: it stops working on every server at once.
#[utoipa::path(
    delete,
    path = "/v1/organization/projects/{project_id}/api_keys/{key_id}",
    tag = "Project API keys",
    summary = "Delete (revoke) a project API key, at once on every server",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("key_id" = String, Path, description = "The key's id (`key_...`)."),
    ),
    responses((status = 200, body = KeyDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete_api_key(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Answer<KeyDeleted> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let (_, keys) = project_keys(&state, &project).await?;
    let record = keys
        .iter()
        .find(|k| k.id.as_str() == key)
        .ok_or(AdminError::NotFound {
            what: "API key",
            id: key.clone(),
        })?;
    state
        .control
        .revoke_key(&caller.actor(), record.id.as_str())
        .await?;
    Ok(Json(KeyDeleted {
        id: record.id.as_str().to_owned(),
        object: "organization.project.api_key.deleted",
        deleted: true,
    }))
}
