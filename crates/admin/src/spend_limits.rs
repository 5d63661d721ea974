//! `/v1/organization/spend_limit` and `/v1/organization/projects/{project_id}/spend_limit`: hard
//! spend limits in OpenAI's shape, over Tollgate's budgets of the organization and of a
//! project. Amounts are whole cents (Tollgate keeps micro-dollars: a budget set elsewhere to a
//! fraction of a cent shows rounded down). The interval is OpenAI's `month`, or Tollgate's
//! `week` or `day`; replacing a limit keeps its budget's time zone and alert thresholds.
//! `enforcement.status` is `enforcing` for a limit that is set (OpenAI's answer); Tollgate's
//! `enforcement.limit_reached` says whether this period's spend has reached it, so that
//! requests are refused now.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::spender::{Spender, MICRO_USD_PER_CENT};
use crate::AdminState;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tollgate_control::HolderRequest;
use tollgate_core::budget::BudgetPeriod;
use tollgate_core::MicroUsd;
use utoipa::ToSchema;

/// `organization.spend_limit` or `project.spend_limit`
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendLimitObject {
    pub object: &'static str,
    /// In cents.
    pub threshold_amount: i64,
    pub currency: &'static str,
    /// `month`, `week` or `day`.
    pub interval: &'static str,
    pub enforcement: Enforcement,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Enforcement {
    /// `enforcing`: the limit is in force (as OpenAI answers for a limit that is set).
    pub status: &'static str,
    /// Tollgate's own: whether this period's spend has reached the limit, so that requests
    /// are refused now.
    pub limit_reached: bool,
}

/// `organization.spend_limit.deleted` or `project.spend_limit.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendLimitDeleted {
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendLimitBody {
    /// In cents, at least 1.
    threshold_amount: i64,
    /// `USD`.
    currency: String,
    /// `month` (OpenAI's), or Tollgate's `week` or `day`.
    interval: String,
}

/// Whose limit.
struct Whose {
    of: Spender,
}

impl Whose {
    fn organization() -> Whose {
        Whose {
            of: Spender::organization(),
        }
    }

    async fn project(state: &AdminState, id: &str) -> Result<Whose, AdminError> {
        Ok(Whose {
            of: Spender::project(state, id).await?,
        })
    }

    fn not_found(&self) -> AdminError {
        let id = match &self.of.holder {
            HolderRequest::Project(id) => id.clone(),
            _ => "organization".to_owned(),
        };
        AdminError::NotFound {
            what: "spend limit",
            id,
        }
    }

    async fn read(&self, state: &AdminState) -> Result<Json<SpendLimitObject>, AdminError> {
        let (budget, spent) = state
            .control
            .budget_of(&self.of.holder)
            .await?
            .ok_or_else(|| self.not_found())?;
        Ok(Json(SpendLimitObject {
            object: self
                .of
                .object("organization.spend_limit", "project.spend_limit"),
            threshold_amount: budget.limit.0 / MICRO_USD_PER_CENT,
            currency: "USD",
            interval: budget.period.as_str(),
            enforcement: Enforcement {
                status: "enforcing",
                limit_reached: spent.0 >= budget.limit.0,
            },
        }))
    }

    async fn write(
        &self,
        state: &AdminState,
        caller: Caller,
        body: SpendLimitBody,
    ) -> Result<Json<SpendLimitObject>, AdminError> {
        let caller = caller.owner()?;
        self.of.refuse_archived()?;
        if body.currency != "USD" {
            return Err(AdminError::param(
                "currency",
                format!(
                    "Invalid 'currency': '{}'. Only 'USD' is supported.",
                    body.currency
                ),
            ));
        }
        let period = BudgetPeriod::parse(&body.interval).ok_or_else(|| {
            AdminError::param(
                "interval",
                format!(
                    "Invalid 'interval': '{}'. Use 'month' (or Tollgate's 'week' or 'day').",
                    body.interval
                ),
            )
        })?;
        let cents = body.threshold_amount;
        let limit = cents
            .checked_mul(MICRO_USD_PER_CENT)
            .filter(|_| cents >= 1)
            .ok_or_else(|| {
                AdminError::param(
                    "threshold_amount",
                    "Invalid 'threshold_amount': give a whole number of cents, at least 1.",
                )
            })?;
        // Replacing the limit keeps the budget's time zone and alerts.
        state
            .control
            .set_spend_limit(&caller.actor(), &self.of.holder, MicroUsd(limit), period)
            .await?;
        self.read(state).await
    }

    async fn delete(
        &self,
        state: &AdminState,
        caller: Caller,
    ) -> Result<Json<SpendLimitDeleted>, AdminError> {
        let caller = caller.owner()?;
        self.of.refuse_archived()?;
        if state.control.budget_of(&self.of.holder).await?.is_none() {
            return Err(self.not_found());
        }
        state
            .control
            .remove_budget(&caller.actor(), &self.of.holder)
            .await?;
        Ok(Json(SpendLimitDeleted {
            object: self.of.object(
                "organization.spend_limit.deleted",
                "project.spend_limit.deleted",
            ),
            deleted: true,
        }))
    }
}

#[utoipa::path(
    get,
    path = "/v1/organization/spend_limit",
    tag = "Organization",
    summary = "Retrieve the organization's hard spend limit (its budget)",
    responses((status = 200, body = SpendLimitObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn organization(
    State(state): State<AdminState>,
    _caller: Caller,
) -> Result<Json<SpendLimitObject>, AdminError> {
    Whose::organization().read(&state).await
}

#[utoipa::path(
    post,
    path = "/v1/organization/spend_limit",
    tag = "Organization",
    summary = "Set or replace the organization's hard spend limit",
    request_body = SpendLimitBody,
    responses((status = 200, body = SpendLimitObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update_organization(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<SpendLimitBody>,
) -> Result<Json<SpendLimitObject>, AdminError> {
    Whose::organization().write(&state, caller, body).await
}

#[utoipa::path(
    delete,
    path = "/v1/organization/spend_limit",
    tag = "Organization",
    summary = "Delete the organization's hard spend limit",
    responses((status = 200, body = SpendLimitDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete_organization(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Json<SpendLimitDeleted>, AdminError> {
    Whose::organization().delete(&state, caller).await
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/spend_limit",
    tag = "Projects",
    summary = "Retrieve a project's hard spend limit (its budget)",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    responses((status = 200, body = SpendLimitObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn project_limit(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SpendLimitObject>, AdminError> {
    Whose::project(&state, &id).await?.read(&state).await
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/spend_limit",
    tag = "Projects",
    summary = "Set or replace a project's hard spend limit",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    request_body = SpendLimitBody,
    responses((status = 200, body = SpendLimitObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update_project_limit(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SpendLimitBody>,
) -> Result<Json<SpendLimitObject>, AdminError> {
    Whose::project(&state, &id)
        .await?
        .write(&state, caller, body)
        .await
}

#[utoipa::path(
    delete,
    path = "/v1/organization/projects/{project_id}/spend_limit",
    tag = "Projects",
    summary = "Delete a project's hard spend limit",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    responses((status = 200, body = SpendLimitDeleted), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn delete_project_limit(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SpendLimitDeleted>, AdminError> {
    Whose::project(&state, &id)
        .await?
        .delete(&state, caller)
        .await
}
