//! Tollgate's own views of projects, service accounts, key changes and reports, under
//! `/v1/organization/x-tollgate/`: what the CLI shows, answered in the very shapes it prints
//! (`--json`), so that its remote mode (`--url`) prints what it prints on the local database.
//! Projects are named by id or by name, as on the CLI.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::params::Params;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_control::{KeyView, ProjectView, ServiceAccountView};
use tollgate_core::duration::Span;
use tollgate_core::UnixTime;
use tollgate_store::UsageGrouping;

type Answer = Result<Json<Value>, AdminError>;

fn list(data: Value) -> Json<Value> {
    Json(json!({"object": "list", "data": data, "has_more": false}))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/projects",
    tag = "Tollgate extensions",
    summary = "Every project with its rules, oldest first",
    params(("include_archived" = Option<bool>, Query, description = "Archived projects too; default false.")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn projects(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let projects = state
        .control
        .projects(params.bool("include_archived")?)
        .await?;
    let views: Vec<ProjectView> = projects.iter().map(ProjectView::from).collect();
    Ok(list(json!(views)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    name: String,
    /// For a service account: its project (id or name); the default project when left out.
    #[serde(default)]
    project: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/projects",
    tag = "Tollgate extensions",
    summary = "Create a project",
    request_body = NameBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create_project(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<NameBody>,
) -> Answer {
    let caller = caller.owner()?;
    if body.project.is_some() {
        return Err(AdminError::param(
            "project",
            "A project is not in a project; give only 'name'.",
        ));
    }
    let project = state
        .control
        .create_project(&caller.actor(), &body.name)
        .await?;
    Ok(Json(json!(ProjectView::from(&project))))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/projects/{project_id}",
    tag = "Tollgate extensions",
    summary = "One project with its rules, by id or name",
    params(("project_id" = String, Path, description = "The project's id or name.")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn project(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Answer {
    let project = state.control.project(&id).await?;
    Ok(Json(json!(ProjectView::from(&project))))
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/projects/{project_id}/archive",
    tag = "Tollgate extensions",
    summary = "Archive a project, by id or name: its keys stop working",
    params(("project_id" = String, Path, description = "The project's id or name.")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn archive_project(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer {
    let caller = caller.owner()?;
    let project = state.control.archive_project(&caller.actor(), &id).await?;
    Ok(Json(json!(ProjectView::from(&project))))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/service_accounts",
    tag = "Tollgate extensions",
    summary = "Service accounts of the organization, or of one project",
    params(("project" = Option<String>, Query, description = "Only this project's (id or name).")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn service_accounts(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let accounts = state
        .control
        .service_accounts(params.one("project"))
        .await?;
    let views: Vec<ServiceAccountView> = accounts.iter().map(ServiceAccountView::from).collect();
    Ok(list(json!(views)))
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/service_accounts",
    tag = "Tollgate extensions",
    summary = "Create a service account (without a key: make its keys with POST /x-tollgate/keys)",
    request_body = NameBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create_service_account(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<NameBody>,
) -> Answer {
    let caller = caller.owner()?;
    let account = state
        .control
        .create_service_account(&caller.actor(), body.project.as_deref(), &body.name)
        .await?;
    Ok(Json(json!(ServiceAccountView::from(&account))))
}

/// What to change of a key: its name, its expiry, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdateBody {
    #[serde(default)]
    name: Option<String>,
    /// The key stops working this many seconds from now (0: now); an earlier expiry stays.
    /// The organization's last owner admin key cannot be given one (409).
    #[serde(default)]
    expires_in_seconds: Option<i64>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/keys/{key_id}",
    tag = "Tollgate extensions",
    summary = "Rename a key, or set when it expires (both in one change)",
    params(("key_id" = String, Path, description = "The key's id (`key_...`).")),
    request_body = KeyUpdateBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update_key(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<KeyUpdateBody>,
) -> Answer {
    let caller = caller.owner()?;
    let id = crate::extensions::key_id(id)?;
    if body.name.is_none() && body.expires_in_seconds.is_none() {
        return Err(AdminError::param(
            "name",
            "Give 'name', 'expires_in_seconds' or both.",
        ));
    }
    let actor = caller.actor();
    if let Some(name) = &body.name {
        tollgate_core::lifecycle::validate_name(name)
            .map_err(|e| AdminError::param("name", format!("Invalid 'name': {e}")))?;
    }
    if body.expires_in_seconds.is_some_and(|s| s < 0) {
        return Err(AdminError::param(
            "expires_in_seconds",
            "Invalid 'expires_in_seconds': it cannot be negative (0 ends the key now).",
        ));
    }
    // One transaction: both changes hold, or neither.
    let key = state
        .control
        .update_key(
            &actor,
            &id,
            body.name.as_deref(),
            body.expires_in_seconds.map(Span),
        )
        .await?;
    Ok(Json(json!(KeyView::new(&key, state.control.now()))))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/limits/report",
    tag = "Tollgate extensions",
    summary = "Every limit and budget that binds the organization, a project or a key, with what is used now",
    params(
        ("project_id" = Option<String>, Query, description = "A project (id or name)."),
        ("key_id" = Option<String>, Query, description = "A key."),
    ),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn limits_report(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let holder = crate::extensions::holder(
        params.one("project_id").map(str::to_owned),
        params.one("key_id").map(str::to_owned),
    )?;
    Ok(Json(json!(state.control.limits_report(&holder).await?)))
}

fn date(params: &Params, name: &str) -> Result<Option<UnixTime>, AdminError> {
    params
        .one(name)
        .map(|text| {
            UnixTime::from_date(text).ok_or_else(|| {
                AdminError::param(
                    name,
                    format!("Invalid '{name}': '{text}' is not a date; write YYYY-MM-DD."),
                )
            })
        })
        .transpose()
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/usage/report",
    tag = "Tollgate extensions",
    summary = "Usage per UTC day, model, key or project over days, from the daily roll-up",
    params(
        ("group_by" = Option<String>, Query, description = "`day` (default), `model`, `key` or `project`."),
        ("since" = Option<String>, Query, description = "First UTC day, YYYY-MM-DD; default 30 days ago."),
        ("until" = Option<String>, Query, description = "Last UTC day, YYYY-MM-DD; default today."),
    ),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn usage_report(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let (grouping, label) = match params.one("group_by").unwrap_or("day") {
        "day" => (UsageGrouping::Day, "day"),
        "model" => (UsageGrouping::Model, "model"),
        "key" => (UsageGrouping::Key, "key"),
        "project" => (UsageGrouping::Project, "project"),
        other => {
            return Err(AdminError::param(
                "group_by",
                format!("Invalid 'group_by': '{other}'. Use day, model, key or project."),
            ))
        }
    };
    let now = state.control.now();
    let since = date(&params, "since")?.unwrap_or(now.plus_seconds(-30 * 86_400));
    let until = date(&params, "until")?.unwrap_or(now);
    if since > until {
        return Err(AdminError::param(
            "since",
            format!(
                "'since' ({}) is after 'until' ({}).",
                since.utc_date(),
                until.utc_date()
            ),
        ));
    }
    let rows = state.control.usage(grouping, since, until).await?;
    Ok(Json(json!({
        "object": "usage.report",
        "since": since.utc_date(),
        "until": until.utc_date(),
        "group_by": label,
        "data": rows,
    })))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/usage/events",
    tag = "Tollgate extensions",
    summary = "The newest metered requests, newest first",
    params(
        ("key_id" = Option<String>, Query, description = "Only this key's."),
        ("limit" = Option<i64>, Query, description = "1 to 10,000 (clamped); default 50."),
    ),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn usage_events(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let limit = params.limit(50, 10_000)?;
    let events = state
        .control
        .recent_requests(params.one("key_id"), limit)
        .await?;
    Ok(list(json!(events)))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/audit",
    tag = "Tollgate extensions",
    summary = "The newest audit entries as Tollgate records them (its own event types and actors)",
    params(
        ("resource_id" = Option<String>, Query, description = "Only entries about this id."),
        ("limit" = Option<i64>, Query, description = "1 to 10,000 (clamped); default 50."),
    ),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn audit(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let limit = params.limit(50, 10_000)?;
    let entries = state
        .control
        .audit(params.one("resource_id"), limit)
        .await?;
    Ok(list(json!(entries)))
}
