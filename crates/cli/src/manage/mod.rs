//! Where management commands act: on the local database ([`Control`], the default) or, given
//! `--url`/`TOLLGATE_URL` and `TOLLGATE_ADMIN_KEY`, on a running server through its admin API
//! ([`remote::Remote`]). Both answer with the same views, so every command prints the same
//! thing either way.

mod local;
pub mod remote;

use crate::failure::Failure;
use tollgate_control::{
    BudgetRequest, BudgetStatus, BudgetView, CreatedKeyView, HolderRequest, KeyView, LimitsReport,
    NewKey, ProjectView, RuleView, ServiceAccountView,
};
use tollgate_core::duration::Span;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::network::IpAllowList;
use tollgate_core::objects::ObjectKind;
use tollgate_core::{KeyKind, UnixTime};
use tollgate_store::{AuditEntry, UsageEvent, UsageGrouping, UsageRow};

pub type Result<T> = std::result::Result<T, Failure>;

/// What management commands can do, wherever they act.
pub trait Manage {
    /// The time views are drawn at.
    fn now(&self) -> UnixTime;

    async fn create_key(&self, request: NewKey) -> Result<CreatedKeyView>;
    /// Keys, newest first.
    async fn keys(&self, project: Option<&str>, kind: Option<KeyKind>) -> Result<Vec<KeyView>>;
    async fn key(&self, id: &str) -> Result<KeyView>;
    async fn rename_key(&self, id: &str, name: &str) -> Result<KeyView>;
    /// The key, and whether it had been revoked before (then nothing changed).
    async fn revoke_key(&self, id: &str) -> Result<(KeyView, bool)>;
    /// The key, and whether a suspension was lifted (else it was not suspended).
    async fn unsuspend_key(&self, id: &str) -> Result<(KeyView, bool)>;
    /// The old key (with the end of its grace) and its successor.
    async fn rotate_key(&self, id: &str, grace: Span) -> Result<(KeyView, CreatedKeyView)>;
    async fn expire_key(&self, id: &str, after: Span) -> Result<KeyView>;

    async fn create_project(&self, name: &str) -> Result<ProjectView>;
    async fn projects(&self, include_archived: bool) -> Result<Vec<ProjectView>>;
    async fn set_project_models(&self, project: &str, models: &[String]) -> Result<ProjectView>;
    async fn set_project_ips(&self, project: &str, list: IpAllowList) -> Result<ProjectView>;
    async fn archive_project(&self, project: &str) -> Result<ProjectView>;

    async fn create_service_account(
        &self,
        project: Option<&str>,
        name: &str,
    ) -> Result<ServiceAccountView>;
    async fn service_accounts(&self, project: Option<&str>) -> Result<Vec<ServiceAccountView>>;

    async fn set_limits(
        &self,
        holder: &HolderRequest,
        model: &str,
        limits: RateLimits,
    ) -> Result<RuleView>;
    async fn remove_limits(&self, holder: &HolderRequest, model: &str) -> Result<()>;
    async fn limit_rules(&self) -> Result<Vec<RuleView>>;
    async fn limits_report(&self, holder: &HolderRequest) -> Result<LimitsReport>;
    async fn set_budget(
        &self,
        holder: &HolderRequest,
        request: BudgetRequest,
    ) -> Result<BudgetView>;
    async fn remove_budget(&self, holder: &HolderRequest) -> Result<()>;
    async fn budgets(&self) -> Result<Vec<BudgetStatus>>;

    async fn usage(
        &self,
        grouping: UsageGrouping,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<UsageRow>>;
    /// The newest metered requests, newest first.
    async fn recent_requests(&self, key: Option<&str>, limit: i64) -> Result<Vec<UsageEvent>>;
    /// The newest audit entries, newest first.
    async fn audit(&self, resource: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>>;

    /// A project's objects at its provider (the ownership ledger), newest first.
    async fn project_objects(
        &self,
        project: &str,
        kind: Option<ObjectKind>,
        limit: i64,
    ) -> Result<Vec<ObjectRow>>;
    /// Adopts objects made outside Tollgate into a project: per id, whether it was adopted.
    async fn adopt_objects(
        &self,
        project: &str,
        provider: &str,
        ids: &[String],
    ) -> Result<Vec<Adopted>>;
}

/// A provider object of a project, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ObjectRow {
    pub id: String,
    /// Its kind (`file`, `batch`, ...).
    pub object: String,
    pub provider: String,
    pub project_id: String,
    pub key_id: Option<String>,
    pub created_at: i64,
}

impl From<&tollgate_store::ProviderObject> for ObjectRow {
    fn from(o: &tollgate_store::ProviderObject) -> ObjectRow {
        ObjectRow {
            id: o.object_id.clone(),
            object: o.kind.as_str().to_owned(),
            provider: o.provider.clone(),
            project_id: o.project_id.to_string(),
            key_id: o.key_id.as_ref().map(|k| k.to_string()),
            created_at: o.created_at.seconds(),
        }
    }
}

/// Whether an object id was adopted (`false`: the ledger already had it, with its owner).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Adopted {
    pub id: String,
    pub adopted: bool,
}
