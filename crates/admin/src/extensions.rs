//! Tollgate's own endpoints, for what OpenAI's admin API has no endpoint for, under
//! `/v1/organization/x-tollgate/` (a name OpenAI's paths will never take): project keys made
//! over HTTP with everything the CLI can give them (scopes, models, expiry, IP allow-list, rate
//! limits, budget), rotation with a grace period, revocation, and keys shown as Tollgate knows
//! them. Same admin keys, roles, list envelope and errors as the rest of the admin API.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::{List, Listed};
use crate::params::Params;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tollgate_control::{
    BudgetRequest, BudgetView, CreatedKeyView, KeyOwnerRequest, KeyView, NewKey, ProjectView,
    RevokeOutcome, RuleView,
};
use tollgate_core::duration::Span;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{KeyKind, Permissions};

type Answer = Result<Json<Value>, AdminError>;

impl Listed for KeyView {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A key's rate limits: `rpm`, `rpd`, `tpm`, `tpd`, `concurrency`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsBody {
    rpm: Option<u64>,
    rpd: Option<u64>,
    tpm: Option<u64>,
    tpd: Option<u64>,
    concurrency: Option<u64>,
}

impl RateLimitsBody {
    fn rate_limits(&self) -> RateLimits {
        RateLimits {
            rpm: self.rpm,
            rpd: self.rpd,
            tpm: self.tpm,
            tpd: self.tpd,
            concurrent: self.concurrency,
        }
    }
}

/// A budget from the API's fields (defaults: `month`, `UTC`).
fn budget_request(
    limit_usd: &str,
    period: &Option<String>,
    timezone: &Option<String>,
    alerts_percent: &[f64],
) -> tollgate_control::Result<BudgetRequest> {
    BudgetRequest::parse(
        limit_usd,
        period.as_deref().unwrap_or("month"),
        timezone.as_deref().unwrap_or("UTC"),
        &alerts_percent
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>(),
    )
}

/// A key's budget.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// Dollars, as a string (`"12.50"`) so that no float rounds it.
    limit_usd: String,
    /// `day`, `week` or `month` (the default).
    #[serde(default)]
    period: Option<String>,
    /// `UTC` (the default) or a fixed offset such as `+05:30`.
    #[serde(default)]
    timezone: Option<String>,
    /// Percentages of the limit that raise an alert, such as `[50, 80, 100]`.
    #[serde(default)]
    alerts_percent: Vec<f64>,
}

/// A project or service account key to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    name: String,
    /// The project (id or name); the default project when neither this nor
    /// `service_account_id` is given.
    #[serde(default)]
    project_id: Option<String>,
    /// Make the key of this service account, in its project.
    #[serde(default)]
    service_account_id: Option<String>,
    /// Make an organization admin key instead (`permissions` `all`: an owner's; `read-only`: a
    /// reader's), with its own IP allow-list and expiry.
    #[serde(default)]
    admin: bool,
    /// `all` (the default), `read-only` or `restricted` (with `scopes`).
    #[serde(default)]
    permissions: Option<String>,
    /// For restricted keys, `SCOPE:ACCESS` such as `chat.completions:write`.
    #[serde(default)]
    scopes: Vec<String>,
    /// Models the key may use: names or patterns such as `gpt-4o*` (empty: any).
    #[serde(default)]
    models: Vec<String>,
    /// Addresses the key may be used from: IPs or CIDR ranges (empty: any).
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    #[serde(default)]
    rate_limits: Option<RateLimitsBody>,
    #[serde(default)]
    budget: Option<BudgetBody>,
}

/// A key id from a path: one that cannot be an id names no key (404, as an unknown one).
pub(crate) fn key_id(id: String) -> Result<String, AdminError> {
    match tollgate_core::KeyId::parse(&id) {
        Ok(_) => Ok(id),
        Err(_) => Err(AdminError::NotFound {
            what: "API key",
            id: tollgate_core::key::mask_presented(&id),
        }),
    }
}

fn invalid(param: &str, err: impl std::fmt::Display) -> AdminError {
    AdminError::param(param, format!("Invalid '{param}': {err}"))
}

impl KeyBody {
    fn into_new_key(self) -> Result<NewKey, AdminError> {
        if self.admin
            && (!self.models.is_empty() || self.rate_limits.is_some() || self.budget.is_some())
        {
            return Err(AdminError::param(
                "admin",
                "An admin key calls no models: 'models', 'rate_limits' and 'budget' are for project and service account keys.",
            ));
        }
        if self.admin && (self.service_account_id.is_some() || self.project_id.is_some()) {
            return Err(AdminError::param(
                "admin",
                "An admin key belongs to the organization: give 'admin' without 'project_id' or 'service_account_id'.",
            ));
        }
        let owner = match (self.service_account_id, self.project_id) {
            _ if self.admin => KeyOwnerRequest::Admin,
            (Some(_), Some(_)) => {
                return Err(AdminError::param(
                    "service_account_id",
                    "Give 'project_id' or 'service_account_id', not both: a service account's key is in its own project.",
                ))
            }
            (Some(account), None) => KeyOwnerRequest::ServiceAccount(account),
            (None, project) => KeyOwnerRequest::Project(project),
        };
        let permissions =
            Permissions::from_parts(self.permissions.as_deref().unwrap_or("all"), &self.scopes)
                .map_err(|e| invalid("permissions", e))?;
        let expires_in = match self.expires_in_seconds {
            None => None,
            Some(seconds) if seconds > 0 => Some(Span(seconds)),
            Some(_) => {
                return Err(invalid(
                    "expires_in_seconds",
                    "it must be a positive number of seconds.",
                ))
            }
        };
        let allowed_ips =
            IpAllowList::parse(&self.allowed_ips).map_err(|e| invalid("allowed_ips", e))?;
        let limits = self.rate_limits.unwrap_or_default();
        let budget = match self.budget {
            None => None,
            Some(b) => Some(
                budget_request(&b.limit_usd, &b.period, &b.timezone, &b.alerts_percent)
                    .map_err(|e| invalid("budget", e))?,
            ),
        };
        Ok(NewKey {
            name: self.name,
            owner,
            permissions,
            expires_in,
            allowed_ips,
            allowed_models: ModelAllowList::new(&self.models),
            limits: limits.rate_limits(),
            budget,
        })
    }
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/keys",
    tag = "Tollgate extensions",
    summary = "Create a project or service account key with scopes, models, expiry, IP allow-list, rate limits and budget (the secret is in `value`, shown once)",
    request_body = KeyBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn create_key(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<KeyBody>,
) -> Answer {
    let caller = caller.owner()?;
    let created = state
        .control
        .create_key(&caller.actor(), body.into_new_key()?)
        .await?;
    let view = CreatedKeyView {
        key: KeyView::new(&created.record, created.record.created_at),
        value: created.secret.expose().to_owned(),
    };
    Ok(Json(json!(view)))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/keys",
    tag = "Tollgate extensions",
    summary = "List keys as Tollgate knows them (revoked and expired ones too, with their status)",
    params(
        ("project_id" = Option<String>, Query, description = "Only this project's keys."),
        ("kind" = Option<String>, Query, description = "`project`, `service_account` or `admin`."),
        ("limit" = Option<i64>, Query, description = "1 to 100 (clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn keys(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Answer {
    let params = Params::parse(query.as_deref());
    let kind = match params.one("kind") {
        None => None,
        Some(text) => Some(KeyKind::parse(text).ok_or_else(|| {
            invalid(
                "kind",
                format!("'{text}' is not project, service_account or admin."),
            )
        })?),
    };
    let mut keys = state.control.keys(params.one("project_id"), kind).await?;
    // Oldest first, as every list of the admin API.
    keys.reverse();
    let now = state.control.now();
    let views: Vec<KeyView> = keys.iter().map(|k| KeyView::new(k, now)).collect();
    Ok(Json(json!(List::page(views, &params)?.0)))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/keys/{key_id}",
    tag = "Tollgate extensions",
    summary = "Retrieve a key as Tollgate knows it",
    params(("key_id" = String, Path, description = "The key's id (`key_...`).")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn key(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Answer {
    let key = state.control.key(&key_id(id)?).await?;
    Ok(Json(json!(KeyView::new(&key, state.control.now()))))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old key keeps working, in seconds (0: it stops at once).
    grace_seconds: i64,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/keys/{key_id}/rotate",
    tag = "Tollgate extensions",
    summary = "Rotate a key: a successor (shown once) and the old key working for the grace period",
    params(("key_id" = String, Path, description = "The key's id (`key_...`).")),
    request_body = RotateBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn rotate(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RotateBody>,
) -> Answer {
    let caller = caller.owner()?;
    if body.grace_seconds < 0 {
        return Err(invalid("grace_seconds", "it cannot be negative."));
    }
    let rotation = state
        .control
        .rotate_key(&caller.actor(), &key_id(id)?, Span(body.grace_seconds))
        .await?;
    let now = state.control.now();
    Ok(Json(json!({
        "old": KeyView::new(&rotation.old, now),
        "new": CreatedKeyView {
            key: KeyView::new(&rotation.new.record, now),
            value: rotation.new.secret.expose().to_owned(),
        },
    })))
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/keys/{key_id}/revoke",
    tag = "Tollgate extensions",
    summary = "Revoke a key, at once on every server (revoking a revoked key changes nothing)",
    params(("key_id" = String, Path, description = "The key's id (`key_...`).")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn revoke(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer {
    let caller = caller.owner()?;
    let record = match state
        .control
        .revoke_key(&caller.actor(), &key_id(id)?)
        .await?
    {
        RevokeOutcome::Revoked(record) | RevokeOutcome::AlreadyRevoked(record) => record,
    };
    Ok(Json(json!(KeyView::new(&record, state.control.now()))))
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/keys/{key_id}/unsuspend",
    tag = "Tollgate extensions",
    summary = "Lift a key's suspension after suspicious use: it works again on every server within a second",
    params(("key_id" = String, Path, description = "The key's id (`key_...`).")),
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn unsuspend(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer {
    let caller = caller.owner()?;
    let (record, lifted) = state
        .control
        .unsuspend_key(&caller.actor(), &key_id(id)?)
        .await?;
    let mut view = json!(KeyView::new(&record, state.control.now()));
    view["suspension_lifted"] = json!(lifted);
    Ok(Json(view))
}

/// Whose limit or budget: the organization, a project or a key (give at most one id).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HolderBody {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
}

impl HolderBody {
    fn holder(self) -> Result<tollgate_control::HolderRequest, AdminError> {
        holder(self.project_id, self.key_id)
    }
}

pub(crate) fn holder(
    project_id: Option<String>,
    key: Option<String>,
) -> Result<tollgate_control::HolderRequest, AdminError> {
    use tollgate_control::HolderRequest;
    match (project_id, key) {
        (Some(_), Some(_)) => Err(AdminError::param(
            "key_id",
            "Give 'project_id' or 'key_id' (or neither, for the organization), not both.",
        )),
        (Some(project), None) => Ok(HolderRequest::Project(project)),
        (None, Some(key)) => Ok(HolderRequest::Key(key_id(key)?)),
        (None, None) => Ok(HolderRequest::Organization),
    }
}

/// Rate limits to set on a holder for a model pattern (`*`: every model); limits not given
/// keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    /// A model or pattern such as `gpt-4o*`; default `*`.
    #[serde(default)]
    model: Option<String>,
    rpm: Option<u64>,
    rpd: Option<u64>,
    tpm: Option<u64>,
    tpd: Option<u64>,
    concurrency: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/limits",
    tag = "Tollgate extensions",
    summary = "Every rate limit rule of the organization, its projects and keys",
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn limits(State(state): State<AdminState>, _caller: Caller) -> Answer {
    let rules = state.control.limit_rules().await?;
    let data: Vec<Value> = rules.iter().map(|r| json!(RuleView::from(r))).collect();
    Ok(Json(
        json!({"object": "list", "data": data, "has_more": false}),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/limits",
    tag = "Tollgate extensions",
    summary = "Set rate limits (rpm, rpd, tpm, tpd, concurrency) of the organization, a project or a key, for a model pattern",
    request_body = LimitsBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn set_limits(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<LimitsBody>,
) -> Answer {
    let caller = caller.owner()?;
    // The same fields as a key's `rate_limits`, at the top level (serde refuses unknown fields
    // only without `flatten`).
    let limits = RateLimitsBody {
        rpm: body.rpm,
        rpd: body.rpd,
        tpm: body.tpm,
        tpd: body.tpd,
        concurrency: body.concurrency,
    }
    .rate_limits();
    if limits.iter().next().is_none() {
        return Err(AdminError::param(
            "rpm",
            "Give at least one limit: rpm, rpd, tpm, tpd or concurrency.",
        ));
    }
    let rule = state
        .control
        .set_limits(
            &caller.actor(),
            &holder(body.project_id, body.key_id)?,
            body.model.as_deref().unwrap_or("*"),
            limits,
        )
        .await?;
    Ok(Json(json!(RuleView::from(&rule))))
}

/// Which limit rule to remove.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveLimitsBody {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/limits/remove",
    tag = "Tollgate extensions",
    summary = "Remove a holder's rate limits for a model pattern",
    request_body = RemoveLimitsBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn remove_limits(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<RemoveLimitsBody>,
) -> Answer {
    let caller = caller.owner()?;
    let model = body.model.unwrap_or_else(|| "*".into());
    state
        .control
        .remove_limits(
            &caller.actor(),
            &holder(body.project_id, body.key_id)?,
            &model,
        )
        .await?;
    Ok(Json(
        json!({"object": "x-tollgate.rate_limit.deleted", "model": model, "deleted": true}),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/organization/x-tollgate/budgets",
    tag = "Tollgate extensions",
    summary = "Every budget with what was spent in its current period",
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn budgets(State(state): State<AdminState>, _caller: Caller) -> Answer {
    let budgets = state.control.budgets().await?;
    Ok(Json(
        json!({"object": "list", "data": budgets, "has_more": false}),
    ))
}

/// A budget to set on the organization, a project or a key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudgetBody {
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    /// Dollars, as a string (`"12.50"`) so that no float rounds it.
    limit_usd: String,
    /// `day`, `week` or `month` (the default).
    #[serde(default)]
    period: Option<String>,
    /// `UTC` (the default) or a fixed offset such as `+05:30`.
    #[serde(default)]
    timezone: Option<String>,
    /// Percentages of the limit that raise an alert, such as `[50, 80, 100]`.
    #[serde(default)]
    alerts_percent: Vec<f64>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/budgets",
    tag = "Tollgate extensions",
    summary = "Set (or replace) the budget of the organization, a project or a key: dollars per day, week or month in a time zone, with alert thresholds",
    request_body = SetBudgetBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn set_budget(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<SetBudgetBody>,
) -> Answer {
    let caller = caller.owner()?;
    let request = budget_request(
        &body.limit_usd,
        &body.period,
        &body.timezone,
        &body.alerts_percent,
    )
    .map_err(|e| invalid("limit_usd", e))?;
    let holder = holder(body.project_id, body.key_id)?;
    let budget = state
        .control
        .set_budget(&caller.actor(), &holder, request)
        .await?;
    Ok(Json(json!(BudgetView::from(&budget))))
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/budgets/remove",
    tag = "Tollgate extensions",
    summary = "Remove the budget of the organization, a project or a key",
    request_body = HolderBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn remove_budget(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<HolderBody>,
) -> Answer {
    let caller = caller.owner()?;
    state
        .control
        .remove_budget(&caller.actor(), &body.holder()?)
        .await?;
    Ok(Json(
        json!({"object": "x-tollgate.budget.deleted", "deleted": true}),
    ))
}

/// A project's allow-lists; each one given replaces the current one (empty: anything).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectRulesBody {
    #[serde(default)]
    allowed_ips: Option<Vec<String>>,
    #[serde(default)]
    models: Option<Vec<String>>,
}

#[utoipa::path(
    post,
    path = "/v1/organization/x-tollgate/projects/{project_id}/rules",
    tag = "Tollgate extensions",
    summary = "Set a project's IP allow-list and model allow-list (every key of the project obeys them)",
    params(("project_id" = String, Path, description = "The project's id or name.")),
    request_body = ProjectRulesBody,
    responses((status = 200, body = Object), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn project_rules(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProjectRulesBody>,
) -> Answer {
    let caller = caller.owner()?;
    let project = state.control.project(&id).await?;
    let mut project_now = project.clone();
    if let Some(ips) = body.allowed_ips {
        let list = IpAllowList::parse(&ips).map_err(|e| invalid("allowed_ips", e))?;
        project_now = state
            .control
            .set_project_allowed_ips(&caller.actor(), project.id.as_str(), list)
            .await?;
    }
    if let Some(models) = body.models {
        project_now = state
            .control
            .set_project_allowed_models(
                &caller.actor(),
                project.id.as_str(),
                ModelAllowList::new(&models),
            )
            .await?;
    }
    Ok(Json(json!(ProjectView::from(&project_now))))
}
