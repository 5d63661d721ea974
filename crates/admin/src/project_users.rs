//! `/v1/organization/projects/{project_id}/users`: organization members in a project, with a
//! project role (owner or member). Only members of the organization can be added (invite
//! others first); archived projects cannot be changed.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::List;
use crate::objects::{ProjectUserDeleted, ProjectUserObject};
use crate::params::Params;
use crate::projects::project;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use tollgate_control::ErrorClass;
use tollgate_store::{ProjectMember, ProjectRole};

type Answer<T> = Result<Json<T>, AdminError>;

fn project_role(role: Option<&str>) -> Result<ProjectRole, AdminError> {
    let role = role.unwrap_or("");
    ProjectRole::parse(role).ok_or_else(|| {
        AdminError::param(
            "role",
            format!("Invalid 'role': '{role}'. Use 'owner' or 'member'."),
        )
    })
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/users",
    tag = "Project users",
    summary = "List a project's users, in the order they were added",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = List<ProjectUserObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer<List<ProjectUserObject>> {
    let params = Params::parse(query.as_deref());
    let project = project(&state, &id).await?;
    let (_, members) = state.control.project_members(project.id.as_str()).await?;
    List::page(
        members.iter().map(ProjectUserObject::from).collect(),
        &params,
    )
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUserBody {
    /// The user's id; or give `email`.
    #[serde(default)]
    user_id: Option<String>,
    /// The user's e-mail address, instead of `user_id`.
    #[serde(default)]
    email: Option<String>,
    /// `owner` or `member`.
    role: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/users",
    tag = "Project users",
    summary = "Add a user of the organization to a project",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    request_body = ProjectUserBody,
    responses((status = 200, body = ProjectUserObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProjectUserBody>,
) -> Answer<ProjectUserObject> {
    let caller = caller.owner()?;
    let role = project_role(body.role.as_deref())?;
    let project = project(&state, &id).await?;
    let (param, user) = match (&body.user_id, &body.email) {
        (Some(user), _) => ("user_id", user),
        (None, Some(email)) => ("email", email),
        (None, None) => {
            return Err(AdminError::param(
                "user_id",
                "Give 'user_id' (or 'email') of a user of the organization.",
            ))
        }
    };
    let added = state
        .control
        .add_project_member(&caller.actor(), project.id.as_str(), user, role)
        .await
        .map_err(|err| match err.class() {
            ErrorClass::Invalid => AdminError::param(param, err.to_string()),
            _ => err.into(),
        })?;
    Ok(Json(ProjectUserObject::from(&added)))
}

/// The project user a path names, or 404.
async fn member(
    state: &AdminState,
    project: &str,
    user: &str,
) -> Result<ProjectMember, AdminError> {
    match state.control.project_member(project, user).await {
        Ok(member) => Ok(member),
        Err(err) if err.class() == ErrorClass::NotFound => Err(AdminError::NotFound {
            what: "user",
            id: user.to_owned(),
        }),
        Err(err) => Err(err.into()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/users/{user_id}",
    tag = "Project users",
    summary = "Retrieve a project's user",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("user_id" = String, Path, description = "The user's id."),
    ),
    responses((status = 200, body = ProjectUserObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn retrieve(
    State(state): State<AdminState>,
    _caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Answer<ProjectUserObject> {
    let project = project(&state, &id).await?;
    let member = member(&state, project.id.as_str(), &user).await?;
    Ok(Json(ProjectUserObject::from(&member)))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUserRoleBody {
    /// `owner` or `member`.
    role: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/users/{user_id}",
    tag = "Project users",
    summary = "Change a project user's role",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("user_id" = String, Path, description = "The user's id."),
    ),
    request_body = ProjectUserRoleBody,
    responses((status = 200, body = ProjectUserObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<ProjectUserRoleBody>,
) -> Answer<ProjectUserObject> {
    let caller = caller.owner()?;
    let role = project_role(body.role.as_deref())?;
    let project = project(&state, &id).await?;
    let member = member(&state, project.id.as_str(), &user).await?;
    let updated = state
        .control
        .set_project_member_role(
            &caller.actor(),
            project.id.as_str(),
            member.user.id.as_str(),
            role,
        )
        .await?;
    Ok(Json(ProjectUserObject::from(&updated)))
}

#[utoipa::path(
    delete,
    path = "/v1/organization/projects/{project_id}/users/{user_id}",
    tag = "Project users",
    summary = "Remove a user from a project (they stay in the organization)",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("user_id" = String, Path, description = "The user's id."),
    ),
    responses((status = 200, body = ProjectUserDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Answer<ProjectUserDeleted> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let member = member(&state, project.id.as_str(), &user).await?;
    state
        .control
        .remove_project_member(
            &caller.actor(),
            project.id.as_str(),
            member.user.id.as_str(),
        )
        .await?;
    Ok(Json(ProjectUserDeleted {
        object: "organization.project.user.deleted",
        id: member.user.id.as_str().to_owned(),
        deleted: true,
    }))
}
