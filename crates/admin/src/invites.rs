//! `/v1/organization/invites`: invite an address with a role and projects, list, retrieve and
//! withdraw invites. Tollgate sends no e-mail: the create answer carries the invite's one-time
//! token in `accept_token` (Tollgate's field, shown once), which the console turns into the
//! link the invitee opens.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::List;
use crate::objects::{InviteCreated, InviteDeleted, InviteObject};
use crate::params::Params;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use tollgate_control::ErrorClass;
use tollgate_core::invite::normalize_email;
use tollgate_store::{Invite, ProjectRole, Role};

type Answer<T> = Result<Json<T>, AdminError>;

/// A project the invitee joins on accepting.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitedProjectBody {
    /// The project's id (`proj_...`).
    id: String,
    /// `member` or `owner`.
    role: String,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// The address invited.
    email: String,
    /// `owner` or `reader`.
    role: String,
    /// Projects the invitee joins on accepting. Left out: the default project as a member (as
    /// OpenAI does); an empty list: none.
    #[serde(default)]
    projects: Option<Vec<InvitedProjectBody>>,
}

#[utoipa::path(
    get,
    path = "/v1/organization/invites",
    tag = "Invites",
    summary = "List invites (pending, expired and accepted), oldest first",
    params(
        ("limit" = Option<i64>, Query, description = "How many objects, 1 to 100 (values outside are clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = List<InviteObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer<List<InviteObject>> {
    let params = Params::parse(query.as_deref());
    let now = state.control.now();
    let invites = state.control.invites().await?;
    List::page(
        invites.iter().map(|i| InviteObject::new(i, now)).collect(),
        &params,
    )
}

#[utoipa::path(
    post,
    path = "/v1/organization/invites",
    tag = "Invites",
    summary = "Invite an address; the one-time token for its link is in `accept_token`, shown once",
    request_body = InviteBody,
    responses((status = 200, body = InviteCreated), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<InviteBody>,
) -> Answer<InviteCreated> {
    let caller = caller.owner()?;
    normalize_email(&body.email)
        .map_err(|e| AdminError::param("email", format!("Invalid 'email': {e}.")))?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        AdminError::param(
            "role",
            format!("Invalid 'role': '{}'. Use 'owner' or 'reader'.", body.role),
        )
    })?;
    let projects = match &body.projects {
        None => None,
        Some(list) => {
            let mut resolved = Vec::with_capacity(list.len());
            for project in list {
                let role = ProjectRole::parse(&project.role).ok_or_else(|| {
                    AdminError::param(
                        "projects",
                        format!(
                            "Invalid project role '{}' for {}. Use 'member' or 'owner'.",
                            project.role, project.id
                        ),
                    )
                })?;
                let known = crate::projects::project(&state, &project.id)
                    .await
                    .map_err(|_| {
                        AdminError::param("projects", format!("No such project: '{}'.", project.id))
                    })?;
                resolved.push((known.id.as_str().to_owned(), role));
            }
            Some(resolved)
        }
    };
    let created = state
        .control
        .invite(&caller.actor(), &body.email, role, projects.as_deref())
        .await
        .map_err(|err| match err.class() {
            ErrorClass::Invalid => AdminError::param("projects", err.to_string()),
            _ => err.into(),
        })?;
    Ok(Json(InviteCreated {
        invite: InviteObject::new(&created.invite, state.control.now()),
        accept_token: created.token.expose().to_owned(),
    }))
}

/// The invite a path names, or 404 in OpenAI's words.
async fn invite(state: &AdminState, id: &str) -> Result<Invite, AdminError> {
    match state.control.invite_by_id(id).await {
        Ok(invite) => Ok(invite),
        Err(err) if err.class() == ErrorClass::NotFound => Err(AdminError::NotFound {
            what: "invite",
            id: id.to_owned(),
        }),
        Err(err) => Err(err.into()),
    }
}

#[utoipa::path(
    get,
    path = "/v1/organization/invites/{invite_id}",
    tag = "Invites",
    summary = "Retrieve an invite",
    params(("invite_id" = String, Path, description = "The invite's id (`invite-...`).")),
    responses((status = 200, body = InviteObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn retrieve(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Answer<InviteObject> {
    let invite = invite(&state, &id).await?;
    Ok(Json(InviteObject::new(&invite, state.control.now())))
}

#[utoipa::path(
    delete,
    path = "/v1/organization/invites/{invite_id}",
    tag = "Invites",
    summary = "Withdraw an invite: its link stops working (an accepted invite cannot be deleted: 409)",
    params(("invite_id" = String, Path, description = "The invite's id (`invite-...`).")),
    responses((status = 200, body = InviteDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<InviteDeleted> {
    let caller = caller.owner()?;
    let invite = invite(&state, &id).await?;
    state
        .control
        .delete_invite(&caller.actor(), invite.id.as_str())
        .await?;
    Ok(Json(InviteDeleted {
        object: "organization.invite.deleted",
        id: invite.id.as_str().to_owned(),
        deleted: true,
    }))
}
