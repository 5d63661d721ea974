//! The OpenAPI 3.1 document of the admin API, generated from the handlers' and objects'
//! annotations (utoipa), served at `/openapi.json`. The data plane's own endpoints are
//! OpenAI's (its OpenAPI document describes them); their errors share the envelope described
//! here.

use crate::error::{ErrorEnvelope, ErrorObject};
use crate::model_permissions::{ModelPermissionsDeleted, ModelPermissionsObject};
use crate::objects::{
    AdminKeyCreated, AdminKeyDeleted, AdminKeyObject, AuditLogObject, InviteCreated, InviteDeleted,
    InviteObject, InvitedProjectObject, KeyDeleted, ProjectApiKeyObject, ProjectObject,
    ProjectUserDeleted, ProjectUserObject, ServiceAccountCreated, ServiceAccountDeleted,
    ServiceAccountKeyCreated, ServiceAccountObject, UsageBucket, UsagePage, UserObject,
};
use crate::organization::UserDeleted;
use crate::rate_limits::ProjectRateLimitObject;
use crate::spend_alerts::{NotificationChannel, SpendAlertDeleted, SpendAlertObject};
use crate::spend_limits::{Enforcement, SpendLimitDeleted, SpendLimitObject};
use crate::{
    extensions, invites, management, model_permissions, objects_ledger, organization,
    project_users, projects, rate_limits, spend_alerts, spend_limits, usage,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "OpenAI's Administration API (`/v1/organization/...`), served by Tollgate over its own projects, keys, users, audit log and metered usage. Authenticate with an admin key (`sk-admin-...`) as a bearer token."
    ),
    paths(
        projects::list,
        projects::create,
        projects::retrieve,
        projects::update,
        projects::archive,
        projects::service_accounts,
        projects::service_account,
        projects::delete_service_account,
        projects::create_service_account,
        projects::api_keys,
        projects::api_key,
        projects::delete_api_key,
        rate_limits::list,
        rate_limits::update,
        model_permissions::retrieve,
        model_permissions::update,
        model_permissions::delete,
        spend_limits::organization,
        spend_limits::update_organization,
        spend_limits::delete_organization,
        spend_limits::project_limit,
        spend_limits::update_project_limit,
        spend_limits::delete_project_limit,
        spend_alerts::organization_list,
        spend_alerts::organization_create,
        spend_alerts::organization_retrieve,
        spend_alerts::organization_update,
        spend_alerts::organization_delete,
        spend_alerts::project_list,
        spend_alerts::project_create,
        spend_alerts::project_retrieve,
        spend_alerts::project_update,
        spend_alerts::project_delete,
        project_users::list,
        project_users::create,
        project_users::retrieve,
        project_users::update,
        project_users::delete,
        invites::list,
        invites::create,
        invites::retrieve,
        invites::delete,
        organization::users,
        organization::user,
        organization::update_user,
        organization::delete_user,
        organization::admin_keys,
        organization::admin_key,
        organization::create_admin_key,
        organization::delete_admin_key,
        organization::audit_logs,
        usage::completions,
        usage::embeddings,
        usage::costs,
        extensions::create_key,
        extensions::keys,
        extensions::key,
        extensions::rotate,
        extensions::revoke,
        extensions::unsuspend,
        extensions::limits,
        extensions::set_limits,
        extensions::remove_limits,
        extensions::budgets,
        extensions::set_budget,
        extensions::remove_budget,
        extensions::project_rules,
        management::projects,
        management::create_project,
        management::project,
        management::archive_project,
        management::service_accounts,
        management::create_service_account,
        management::update_key,
        management::limits_report,
        management::usage_report,
        management::usage_events,
        management::audit,
        objects_ledger::list,
        objects_ledger::adopt,
    ),
    components(schemas(
        ProjectObject,
        ServiceAccountObject,
        ServiceAccountCreated,
        ServiceAccountKeyCreated,
        ServiceAccountDeleted,
        ProjectApiKeyObject,
        KeyDeleted,
        AdminKeyObject,
        AdminKeyCreated,
        AdminKeyDeleted,
        UserObject,
        UserDeleted,
        ProjectUserObject,
        ProjectUserDeleted,
        InviteObject,
        InvitedProjectObject,
        InviteCreated,
        InviteDeleted,
        AuditLogObject,
        UsagePage,
        UsageBucket,
        ProjectRateLimitObject,
        ModelPermissionsObject,
        ModelPermissionsDeleted,
        SpendLimitObject,
        Enforcement,
        SpendLimitDeleted,
        SpendAlertObject,
        NotificationChannel,
        SpendAlertDeleted,
        ErrorEnvelope,
        ErrorObject,
    )),
    modifiers(&AdminKeyAuth)
)]
pub struct AdminApi;

struct AdminKeyAuth;

impl Modify for AdminKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document, as JSON, made once.
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        AdminApi::openapi()
            .to_json()
            .unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    })
}
