//! A project's objects at its provider (files, batches, vector stores, stored responses, ...)
//! from the ownership ledger, under `/v1/organization/x-tollgate/projects/{project}/objects`:
//! listed newest first, and adopted (objects made before Tollgate, recorded as the project's).

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::params::Params;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_core::objects::ObjectKind;
use tollgate_store::ProviderObject;

type Answer = Result<Json<Value>, AdminError>;

/// One ledger entry as the API shows it.
pub fn object_json(object: &ProviderObject) -> Value {
    json!({
        "id": object.object_id,
        "object": object.kind.as_str(),
        "provider": object.provider,
        "project_id": object.project_id.as_str(),
        "key_id": object.key_id.as_ref().map(|k| k.as_str()),
        "created_at": object.created_at.seconds(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/projects/{project_id}/objects",
    tag = "Tollgate extensions",
    summary = "A project's objects at its provider, from the ownership ledger, newest first",
    params(
        ("project_id" = String, Path, description = "The project's id or name."),
        ("kind" = Option<String>, Query, description = "Only objects of this kind: file, upload, batch, vector_store, fine_tuning.job, response, chat.completion, conversation, container, eval."),
        ("limit" = Option<i64>, Query, description = "How many, 1 to 1,000; default 100."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
    ),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let kind = match params.one("kind") {
        Some(name) => Some(
            ObjectKind::parse(name)
                .ok_or_else(|| AdminError::param("kind", format!("Unknown kind '{name}'.")))?,
        ),
        None => None,
    };
    let limit = params.limit(100, 1_000)?;
    let mut objects = state
        .control
        .project_objects(&project, kind, params.one("after"), limit + 1)
        .await?;
    let has_more = objects.len() as i64 > limit;
    objects.truncate(usize::try_from(limit).unwrap_or(100));
    Ok(Json(json!({
        "object": "list",
        "data": objects.iter().map(object_json).collect::<Vec<_>>(),
        "first_id": objects.first().map(|o| o.object_id.clone()),
        "last_id": objects.last().map(|o| o.object_id.clone()),
        "has_more": has_more,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptBody {
    /// Object ids made at the provider outside Tollgate (`file-…`, `batch_…`, …).
    pub ids: Vec<String>,
    /// The provider's name in tollgate.toml; default `openai`.
    pub provider: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/projects/{project_id}/objects",
    tag = "Tollgate extensions",
    summary = "Adopt objects made outside Tollgate into a project (an object the ledger has keeps its owner)",
    params(("project_id" = String, Path, description = "The project's id or name.")),
    request_body = AdoptBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn adopt(
    State(state): State<AdminState>,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(body): JsonBody<AdoptBody>,
) -> Answer {
    let caller = caller.owner()?;
    let provider = body.provider.as_deref().unwrap_or("openai");
    let adopted = state
        .control
        .adopt_objects(&caller.actor(), &project, provider, &body.ids)
        .await?;
    Ok(Json(json!({
        "object": "list",
        "data": adopted.iter().map(|(id, new)| json!({"id": id, "adopted": new})).collect::<Vec<_>>(),
        "has_more": false,
    })))
}
