//! `/v1/organization/spend_alerts` and `/v1/organization/projects/{project_id}/spend_alerts`:
//! OpenAI's spend alerts over the alert thresholds of Tollgate's budgets. An alert is a share
//! of the organization's or project's spend limit (set one first: `409` otherwise), kept in
//! thousandths: an amount that is not a whole thousandth of the limit is rounded to the
//! nearest, and the alert shows the amount it fires at. Its id is `alert_` and that share
//! (`alert_800` fires at 80%). Tollgate does not send e-mail: an alert goes to the configured
//! webhook and into the audit log (`budget.threshold_reached`); the e-mail recipients given are
//! not kept, and an alert shows none.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::{List, Listed};
use crate::params::Params;
use crate::spender::{Spender, MICRO_USD_PER_CENT};
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tollgate_control::ControlError;
use tollgate_core::budget::Budget;
use utoipa::ToSchema;

const ID_PREFIX: &str = "alert_";

/// `organization.spend_alert` or `project.spend_alert`
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendAlertObject {
    pub id: String,
    pub object: &'static str,
    /// In cents: the share of the spend limit the alert fires at.
    pub threshold_amount: i64,
    pub currency: &'static str,
    /// The spend limit's period.
    pub interval: &'static str,
    pub notification_channel: NotificationChannel,
}

impl Listed for SpendAlertObject {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationChannel {
    /// `email` (OpenAI's only channel); Tollgate delivers to its webhook instead.
    #[serde(rename = "type")]
    pub kind: String,
    /// Not kept: Tollgate sends no e-mail.
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_prefix: Option<String>,
}

/// `organization.spend_alert.deleted` or `project.spend_alert.deleted`
#[derive(Debug, Serialize, ToSchema)]
pub struct SpendAlertDeleted {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendAlertBody {
    /// In cents, at least 1.
    threshold_amount: i64,
    /// `USD`.
    currency: String,
    /// The spend limit's period: `month` (or Tollgate's `week` or `day`).
    interval: String,
    notification_channel: NotificationChannel,
}

/// Whose alerts.
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

    fn object(&self, budget: &Budget, permille: u32) -> SpendAlertObject {
        SpendAlertObject {
            id: format!("{ID_PREFIX}{permille}"),
            object: self
                .of
                .object("organization.spend_alert", "project.spend_alert"),
            threshold_amount: i64::try_from(
                i128::from(budget.limit.0) * i128::from(permille)
                    / 1_000
                    / i128::from(MICRO_USD_PER_CENT),
            )
            .unwrap_or(i64::MAX),
            currency: "USD",
            interval: budget.period.as_str(),
            notification_channel: NotificationChannel {
                kind: "email".into(),
                recipients: Vec::new(),
                subject_prefix: None,
            },
        }
    }

    async fn budget(&self, state: &AdminState) -> Result<Option<Budget>, AdminError> {
        Ok(state
            .control
            .budget_of(&self.of.holder)
            .await?
            .map(|(b, _)| b))
    }

    fn not_found(id: &str) -> AdminError {
        AdminError::NotFound {
            what: "spend alert",
            id: id.to_owned(),
        }
    }

    /// The threshold an id names, if it is one of the budget's.
    fn threshold(budget: &Budget, id: &str) -> Option<u32> {
        id.strip_prefix(ID_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
            // Only the id as it is written (`alert_800`, not `alert_0800` or `alert_+800`).
            .filter(|p| format!("{ID_PREFIX}{p}") == id)
            .filter(|p| budget.alerts_permille.contains(p))
    }

    async fn list(
        &self,
        state: &AdminState,
        query: Option<&str>,
    ) -> Result<Json<List<SpendAlertObject>>, AdminError> {
        let params = Params::parse(query);
        let mut alerts: Vec<SpendAlertObject> = match self.budget(state).await? {
            Some(budget) => budget
                .alerts_permille
                .iter()
                .map(|p| self.object(&budget, *p))
                .collect(),
            None => Vec::new(),
        };
        match params.one("order").unwrap_or("asc") {
            "asc" => {}
            "desc" => alerts.reverse(),
            other => {
                return Err(AdminError::param(
                    "order",
                    format!("Invalid 'order': '{other}'. Use 'asc' or 'desc'."),
                ))
            }
        }
        List::page(alerts, &params)
    }

    async fn retrieve(
        &self,
        state: &AdminState,
        id: &str,
    ) -> Result<Json<SpendAlertObject>, AdminError> {
        let budget = self
            .budget(state)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        let permille = Self::threshold(&budget, id).ok_or_else(|| Self::not_found(id))?;
        Ok(Json(self.object(&budget, permille)))
    }

    /// Sets an alert (replacing `replacing`, for an update) from `body`.
    async fn put(
        &self,
        state: &AdminState,
        caller: Caller,
        replacing: Option<&str>,
        body: SpendAlertBody,
    ) -> Result<Json<SpendAlertObject>, AdminError> {
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
        if body.notification_channel.kind != "email" {
            return Err(AdminError::param(
                "notification_channel",
                "Invalid 'notification_channel.type': only 'email' is taken (Tollgate delivers alerts to its webhook).",
            ));
        }
        let budget = self.budget(state).await?.ok_or_else(|| {
            AdminError::Control(ControlError::Conflict(format!(
                "The {} has no spend limit; a spend alert is a share of it, so set one first (POST .../spend_limit).",
                self.of.object("organization", "project")
            )))
        })?;
        let old = match replacing {
            Some(id) => Some(Self::threshold(&budget, id).ok_or_else(|| Self::not_found(id))?),
            None => None,
        };
        if body.interval != budget.period.as_str() {
            return Err(AdminError::param(
                "interval",
                format!(
                    "Invalid 'interval': '{}'. The spend limit is per {}; its alerts are too.",
                    body.interval,
                    budget.period.as_str()
                ),
            ));
        }
        // In i128: a limit near the largest amount must not overflow.
        let cents = i128::from(body.threshold_amount);
        let limit = i128::from(budget.limit.0.max(1));
        let permille = Some(cents * i128::from(MICRO_USD_PER_CENT) * 1_000)
            .filter(|_| cents >= 1)
            .map(|scaled| (scaled + limit / 2) / limit)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| (1..=10_000).contains(p))
            .ok_or_else(|| {
                AdminError::param(
                    "threshold_amount",
                    "Invalid 'threshold_amount': give whole cents, more than 0 and at most ten times the spend limit.",
                )
            })?;
        let budget = state
            .control
            .change_budget_alerts(&caller.actor(), &self.of.holder, |alerts| {
                // Moving an alert onto another one would merge the two: refused.
                if old != Some(permille) && alerts.contains(&permille) {
                    return Err(ControlError::Conflict(format!(
                        "There is already a spend alert at that amount ({ID_PREFIX}{permille})."
                    )));
                }
                if let Some(old) = old {
                    alerts.retain(|a| *a != old);
                }
                if !alerts.contains(&permille) {
                    alerts.push(permille);
                }
                Ok(())
            })
            .await?;
        Ok(Json(self.object(&budget, permille)))
    }

    async fn delete(
        &self,
        state: &AdminState,
        caller: Caller,
        id: &str,
    ) -> Result<Json<SpendAlertDeleted>, AdminError> {
        let caller = caller.owner()?;
        self.of.refuse_archived()?;
        let budget = self
            .budget(state)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        let permille = Self::threshold(&budget, id).ok_or_else(|| Self::not_found(id))?;
        state
            .control
            .change_budget_alerts(&caller.actor(), &self.of.holder, |alerts| {
                alerts.retain(|a| *a != permille);
                Ok(())
            })
            .await?;
        Ok(Json(SpendAlertDeleted {
            id: id.to_owned(),
            object: self.of.object(
                "organization.spend_alert.deleted",
                "project.spend_alert.deleted",
            ),
            deleted: true,
        }))
    }
}

#[utoipa::path(get, path = "/v1/organization/spend_alerts", tag = "Organization",
    summary = "List the organization's spend alerts (shares of its spend limit)",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100 (clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc`."),
    ),
    responses((status = 200, body = List<SpendAlertObject>), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn organization_list(
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<List<SpendAlertObject>>, AdminError> {
    Whose::organization().list(&state, query.as_deref()).await
}

#[utoipa::path(post, path = "/v1/organization/spend_alerts", tag = "Organization",
    summary = "Create a spend alert of the organization",
    request_body = SpendAlertBody,
    responses((status = 200, body = SpendAlertObject), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn organization_create(
    State(state): State<AdminState>,
    caller: Caller,
    JsonBody(body): JsonBody<SpendAlertBody>,
) -> Result<Json<SpendAlertObject>, AdminError> {
    Whose::organization().put(&state, caller, None, body).await
}

#[utoipa::path(get, path = "/v1/organization/spend_alerts/{alert_id}", tag = "Organization",
    summary = "Retrieve a spend alert of the organization",
    params(("alert_id" = String, Path, description = "The alert's id (`alert_...`).")),
    responses((status = 200, body = SpendAlertObject), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn organization_retrieve(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SpendAlertObject>, AdminError> {
    Whose::organization().retrieve(&state, &id).await
}

#[utoipa::path(post, path = "/v1/organization/spend_alerts/{alert_id}", tag = "Organization",
    summary = "Update a spend alert of the organization",
    params(("alert_id" = String, Path, description = "The alert's id (`alert_...`).")),
    request_body = SpendAlertBody,
    responses((status = 200, body = SpendAlertObject), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn organization_update(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SpendAlertBody>,
) -> Result<Json<SpendAlertObject>, AdminError> {
    Whose::organization()
        .put(&state, caller, Some(&id), body)
        .await
}

#[utoipa::path(delete, path = "/v1/organization/spend_alerts/{alert_id}", tag = "Organization",
    summary = "Delete a spend alert of the organization",
    params(("alert_id" = String, Path, description = "The alert's id (`alert_...`).")),
    responses((status = 200, body = SpendAlertDeleted), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn organization_delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SpendAlertDeleted>, AdminError> {
    Whose::organization().delete(&state, caller, &id).await
}

#[utoipa::path(get, path = "/v1/organization/projects/{project_id}/spend_alerts", tag = "Projects",
    summary = "List a project's spend alerts (shares of its spend limit)",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("limit" = Option<i64>, Query, description = "1 to 100 (clamped); default 20."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
        ("order" = Option<String>, Query, description = "`asc` (default) or `desc`."),
    ),
    responses((status = 200, body = List<SpendAlertObject>), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn project_list(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(project): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<List<SpendAlertObject>>, AdminError> {
    Whose::project(&state, &project)
        .await?
        .list(&state, query.as_deref())
        .await
}

#[utoipa::path(post, path = "/v1/organization/projects/{project_id}/spend_alerts", tag = "Projects",
    summary = "Create a spend alert of a project",
    params(("project_id" = String, Path, description = "The project's id (`proj_...`).")),
    request_body = SpendAlertBody,
    responses((status = 200, body = SpendAlertObject), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn project_create(
    State(state): State<AdminState>,
    caller: Caller,
    Path(project): Path<String>,
    JsonBody(body): JsonBody<SpendAlertBody>,
) -> Result<Json<SpendAlertObject>, AdminError> {
    Whose::project(&state, &project)
        .await?
        .put(&state, caller, None, body)
        .await
}

#[utoipa::path(get, path = "/v1/organization/projects/{project_id}/spend_alerts/{alert_id}", tag = "Projects",
    summary = "Retrieve a spend alert of a project",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("alert_id" = String, Path, description = "The alert's id (`alert_...`)."),
    ),
    responses((status = 200, body = SpendAlertObject), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn project_retrieve(
    State(state): State<AdminState>,
    _caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<SpendAlertObject>, AdminError> {
    Whose::project(&state, &project)
        .await?
        .retrieve(&state, &id)
        .await
}

#[utoipa::path(post, path = "/v1/organization/projects/{project_id}/spend_alerts/{alert_id}", tag = "Projects",
    summary = "Update a spend alert of a project",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("alert_id" = String, Path, description = "The alert's id (`alert_...`)."),
    ),
    request_body = SpendAlertBody,
    responses((status = 200, body = SpendAlertObject), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn project_update(
    State(state): State<AdminState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<SpendAlertBody>,
) -> Result<Json<SpendAlertObject>, AdminError> {
    Whose::project(&state, &project)
        .await?
        .put(&state, caller, Some(&id), body)
        .await
}

#[utoipa::path(delete, path = "/v1/organization/projects/{project_id}/spend_alerts/{alert_id}", tag = "Projects",
    summary = "Delete a spend alert of a project",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("alert_id" = String, Path, description = "The alert's id (`alert_...`)."),
    ),
    responses((status = 200, body = SpendAlertDeleted), crate::error::Errors),
    security(("admin_key" = [])))]
pub async fn project_delete(
    State(state): State<AdminState>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<SpendAlertDeleted>, AdminError> {
    Whose::project(&state, &project)
        .await?
        .delete(&state, caller, &id)
        .await
}
