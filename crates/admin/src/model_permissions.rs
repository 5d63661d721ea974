//! `/v1/organization/projects/{project_id}/model_permissions`: which models a project's keys may
//! use, in OpenAI's shape, over the project's model allow-list. An open project (no list) is a
//! `deny_list` that denies nothing. Tollgate enforces allow-lists; a deny-list of models is
//! refused (400) rather than stored and ignored.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::projects::project;
use crate::AdminState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tollgate_core::routing::ModelAllowList;
use tollgate_store::Project;
use utoipa::ToSchema;

/// `project.model_permissions`
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPermissionsObject {
    pub object: &'static str,
    /// `allow_list`, or `deny_list` (with no models) for a project open to every model.
    pub mode: &'static str,
    pub model_ids: Vec<String>,
}

impl From<&Project> for ModelPermissionsObject {
    fn from(project: &Project) -> Self {
        // A stored list that cannot be read allows nothing: an allow-list of no models.
        ModelPermissionsObject {
            object: "project.model_permissions",
            mode: if project.allowed_models.is_empty() {
                "deny_list"
            } else {
                "allow_list"
            },
            model_ids: project.allowed_models.patterns(),
        }
    }
}

/// `project.model_permissions.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPermissionsDeleted {
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPermissionsBody {
    /// `allow_list` (only these models; patterns such as `gpt-4o*` too) or `deny_list` (only
    /// an empty one: every model).
    mode: String,
    model_ids: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/model_permissions",
    tag = "Projects",
    summary = "Retrieve which models a project's keys may use",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    responses((status = 200, body = ModelPermissionsObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn retrieve(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ModelPermissionsObject>, AdminError> {
    Ok(Json(ModelPermissionsObject::from(
        &project(&state, &id).await?,
    )))
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/model_permissions",
    tag = "Projects",
    summary = "Set which models a project's keys may use",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    request_body = ModelPermissionsBody,
    responses((status = 200, body = ModelPermissionsObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ModelPermissionsBody>,
) -> Result<Json<ModelPermissionsObject>, AdminError> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    let list = match body.mode.as_str() {
        "allow_list" if body.model_ids.is_empty() => {
            return Err(AdminError::param(
                "model_ids",
                "An allow_list with no models would refuse every request; give at least one model, or delete the permissions to allow every model.",
            ))
        }
        "allow_list" => {
            if let Some(bad) = body
                .model_ids
                .iter()
                .find(|m| m.trim().is_empty() || m.len() > 200)
            {
                return Err(AdminError::param(
                    "model_ids",
                    format!("'{bad}' is not a model name or pattern."),
                ));
            }
            ModelAllowList::new(&body.model_ids)
        }
        "deny_list" if body.model_ids.is_empty() => ModelAllowList::default(),
        "deny_list" => {
            return Err(AdminError::param(
                "mode",
                "Tollgate enforces allow lists of models; a deny_list can only be empty (every model allowed). List the models the project may use with mode 'allow_list'.",
            ))
        }
        other => {
            return Err(AdminError::param(
                "mode",
                format!("Invalid 'mode': '{other}'. Use 'allow_list' or 'deny_list'."),
            ))
        }
    };
    let project = state
        .control
        .set_project_allowed_models(&caller.actor(), project.id.as_str(), list)
        .await?;
    Ok(Json(ModelPermissionsObject::from(&project)))
}

#[utoipa::path(
    delete,
    path = "/v1/organization/projects/{project_id}/model_permissions",
    tag = "Projects",
    summary = "Delete a project's model permissions: its keys may use every model",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    responses((status = 200, body = ModelPermissionsDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ModelPermissionsDeleted>, AdminError> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    state
        .control
        .set_project_allowed_models(
            &caller.actor(),
            project.id.as_str(),
            ModelAllowList::default(),
        )
        .await?;
    Ok(Json(ModelPermissionsDeleted {
        object: "project.model_permissions.deleted",
        deleted: true,
    }))
}
