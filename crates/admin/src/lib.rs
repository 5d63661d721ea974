//! Tollgate's admin API: OpenAI's `/v1/organization/*` endpoints (paths, query parameters,
//! objects, list envelopes, errors) over the control plane, so that scripts and the official
//! SDKs' admin clients written for `api.openai.com` manage Tollgate by changing the base URL.
//!
//! Every endpoint takes an admin key (see `auth`); handlers parse, call `tollgate-control`
//! and shape its records as OpenAI's objects (`objects`); nothing here touches the database.

mod auth;
mod body;
mod error;
mod extensions;
mod invites;
mod list;
mod management;
mod model_permissions;
mod objects;
mod objects_ledger;
mod openapi;
mod organization;
mod params;
mod project_users;
mod projects;
mod rate_limits;
mod spend_alerts;
mod spend_limits;
mod spender;
mod usage;

pub use error::AdminError;

use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::Router;
use tollgate_control::Control;

/// What every handler is given.
#[derive(Clone, Debug)]
pub struct AdminState {
    control: Control,
}

/// The path every admin endpoint sits under.
pub const PREFIX: &str = tollgate_core::endpoints::ADMIN_API;

/// The admin API's routes over `control`.
pub fn router(control: Control) -> Router {
    let org = Router::new()
        .route("/projects", get(projects::list).post(projects::create))
        .route(
            "/projects/{project_id}",
            get(projects::retrieve).post(projects::update),
        )
        .route("/projects/{project_id}/archive", post(projects::archive))
        .route(
            "/projects/{project_id}/service_accounts",
            get(projects::service_accounts).post(projects::create_service_account),
        )
        .route(
            "/projects/{project_id}/service_accounts/{service_account_id}",
            get(projects::service_account).delete(projects::delete_service_account),
        )
        .route("/projects/{project_id}/rate_limits", get(rate_limits::list))
        .route(
            "/projects/{project_id}/rate_limits/{rate_limit_id}",
            post(rate_limits::update),
        )
        .route(
            "/projects/{project_id}/model_permissions",
            get(model_permissions::retrieve)
                .post(model_permissions::update)
                .delete(model_permissions::delete),
        )
        .route(
            "/projects/{project_id}/spend_limit",
            get(spend_limits::project_limit)
                .post(spend_limits::update_project_limit)
                .delete(spend_limits::delete_project_limit),
        )
        .route(
            "/spend_alerts",
            get(spend_alerts::organization_list).post(spend_alerts::organization_create),
        )
        .route(
            "/spend_alerts/{alert_id}",
            get(spend_alerts::organization_retrieve)
                .post(spend_alerts::organization_update)
                .delete(spend_alerts::organization_delete),
        )
        .route(
            "/projects/{project_id}/spend_alerts",
            get(spend_alerts::project_list).post(spend_alerts::project_create),
        )
        .route(
            "/projects/{project_id}/spend_alerts/{alert_id}",
            get(spend_alerts::project_retrieve)
                .post(spend_alerts::project_update)
                .delete(spend_alerts::project_delete),
        )
        .route(
            "/spend_limit",
            get(spend_limits::organization)
                .post(spend_limits::update_organization)
                .delete(spend_limits::delete_organization),
        )
        .route("/projects/{project_id}/api_keys", get(projects::api_keys))
        .route(
            "/projects/{project_id}/api_keys/{key_id}",
            get(projects::api_key).delete(projects::delete_api_key),
        )
        .route(
            "/projects/{project_id}/users",
            get(project_users::list).post(project_users::create),
        )
        .route(
            "/projects/{project_id}/users/{user_id}",
            get(project_users::retrieve)
                .post(project_users::update)
                .delete(project_users::delete),
        )
        .route("/invites", get(invites::list).post(invites::create))
        .route(
            "/invites/{invite_id}",
            get(invites::retrieve).delete(invites::delete),
        )
        .route("/users", get(organization::users))
        .route(
            "/users/{user_id}",
            get(organization::user)
                .post(organization::update_user)
                .delete(organization::delete_user),
        )
        .route(
            "/admin_api_keys",
            get(organization::admin_keys).post(organization::create_admin_key),
        )
        .route(
            "/admin_api_keys/{key_id}",
            get(organization::admin_key).delete(organization::delete_admin_key),
        )
        .route("/audit_logs", get(organization::audit_logs))
        .route("/usage/completions", get(usage::completions))
        .route("/usage/embeddings", get(usage::embeddings))
        .route("/costs", get(usage::costs))
        .route(
            "/x-tollgate/keys",
            get(extensions::keys).post(extensions::create_key),
        )
        .route(
            "/x-tollgate/keys/{key_id}",
            get(extensions::key).post(management::update_key),
        )
        .route(
            "/x-tollgate/projects",
            get(management::projects).post(management::create_project),
        )
        .route(
            "/x-tollgate/projects/{project_id}",
            get(management::project),
        )
        .route(
            "/x-tollgate/projects/{project_id}/archive",
            post(management::archive_project),
        )
        .route(
            "/x-tollgate/service_accounts",
            get(management::service_accounts).post(management::create_service_account),
        )
        .route("/x-tollgate/limits/report", get(management::limits_report))
        .route("/x-tollgate/usage/report", get(management::usage_report))
        .route("/x-tollgate/usage/events", get(management::usage_events))
        .route("/x-tollgate/audit", get(management::audit))
        .route("/x-tollgate/keys/{key_id}/rotate", post(extensions::rotate))
        .route("/x-tollgate/keys/{key_id}/revoke", post(extensions::revoke))
        .route(
            "/x-tollgate/keys/{key_id}/unsuspend",
            post(extensions::unsuspend),
        )
        .route(
            "/x-tollgate/limits",
            get(extensions::limits).post(extensions::set_limits),
        )
        .route("/x-tollgate/limits/remove", post(extensions::remove_limits))
        .route(
            "/x-tollgate/budgets",
            get(extensions::budgets).post(extensions::set_budget),
        )
        .route(
            "/x-tollgate/budgets/remove",
            post(extensions::remove_budget),
        )
        .route(
            "/x-tollgate/projects/{project_id}/rules",
            post(extensions::project_rules),
        )
        .route(
            "/x-tollgate/projects/{project_id}/objects",
            get(objects_ledger::list).post(objects_ledger::adopt),
        )
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .route(
            tollgate_core::endpoints::OPENAPI_DOCUMENT,
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi::document(),
                )
            }),
        )
        .nest(PREFIX, org)
        .fallback(unknown_route)
        .with_state(AdminState { control })
}

/// An unknown path, once the caller has shown an admin key (as the data plane: the API's shape
/// is shown only to a caller with a key).
async fn unknown_route(_caller: auth::Caller, method: Method, uri: Uri) -> AdminError {
    AdminError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(_caller: auth::Caller, method: Method, uri: Uri) -> AdminError {
    AdminError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
