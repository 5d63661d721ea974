//! Management on the local database, through the control plane.

use super::{Manage, Result};
use crate::app::cli_actor;
use tollgate_control::{
    BudgetRequest, BudgetStatus, BudgetView, Control, CreatedKey, CreatedKeyView, HolderRequest,
    KeyView, LimitsReport, NewKey, ProjectView, RevokeOutcome, RuleView, ServiceAccountView,
};
use tollgate_core::duration::Span;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{KeyKind, UnixTime};
use tollgate_store::{AuditEntry, UsageEvent, UsageGrouping, UsageRow};

fn created(key: &CreatedKey) -> CreatedKeyView {
    CreatedKeyView {
        key: KeyView::new(&key.record, key.record.created_at),
        value: key.secret.expose().to_owned(),
    }
}

impl Manage for Control {
    fn now(&self) -> UnixTime {
        Control::now(self)
    }

    async fn create_key(&self, request: NewKey) -> Result<CreatedKeyView> {
        Ok(created(
            &Control::create_key(self, &cli_actor(), request).await?,
        ))
    }

    async fn keys(&self, project: Option<&str>, kind: Option<KeyKind>) -> Result<Vec<KeyView>> {
        let now = self.now();
        let keys = Control::keys(self, project, kind).await?;
        Ok(keys.iter().map(|k| KeyView::new(k, now)).collect())
    }

    async fn key(&self, id: &str) -> Result<KeyView> {
        Ok(KeyView::new(&Control::key(self, id).await?, self.now()))
    }

    async fn rename_key(&self, id: &str, name: &str) -> Result<KeyView> {
        let key = Control::rename_key(self, &cli_actor(), id, name).await?;
        Ok(KeyView::new(&key, self.now()))
    }

    async fn revoke_key(&self, id: &str) -> Result<(KeyView, bool)> {
        let now = self.now();
        Ok(match Control::revoke_key(self, &cli_actor(), id).await? {
            RevokeOutcome::Revoked(key) => (KeyView::new(&key, now), false),
            RevokeOutcome::AlreadyRevoked(key) => (KeyView::new(&key, now), true),
        })
    }

    async fn unsuspend_key(&self, id: &str) -> Result<(KeyView, bool)> {
        let (key, lifted) = Control::unsuspend_key(self, &cli_actor(), id).await?;
        Ok((KeyView::new(&key, self.now()), lifted))
    }

    async fn rotate_key(&self, id: &str, grace: Span) -> Result<(KeyView, CreatedKeyView)> {
        let rotation = Control::rotate_key(self, &cli_actor(), id, grace).await?;
        Ok((
            KeyView::new(&rotation.old, self.now()),
            created(&rotation.new),
        ))
    }

    async fn expire_key(&self, id: &str, after: Span) -> Result<KeyView> {
        let key = Control::expire_key(self, &cli_actor(), id, after).await?;
        Ok(KeyView::new(&key, self.now()))
    }

    async fn create_project(&self, name: &str) -> Result<ProjectView> {
        let project = Control::create_project(self, &cli_actor(), name).await?;
        Ok(ProjectView::from(&project))
    }

    async fn projects(&self, include_archived: bool) -> Result<Vec<ProjectView>> {
        let projects = Control::projects(self, include_archived).await?;
        Ok(projects.iter().map(ProjectView::from).collect())
    }

    async fn set_project_models(&self, project: &str, models: &[String]) -> Result<ProjectView> {
        let list = ModelAllowList::new(models);
        let project = self
            .set_project_allowed_models(&cli_actor(), project, list)
            .await?;
        Ok(ProjectView::from(&project))
    }

    async fn set_project_ips(&self, project: &str, list: IpAllowList) -> Result<ProjectView> {
        let project = self
            .set_project_allowed_ips(&cli_actor(), project, list)
            .await?;
        Ok(ProjectView::from(&project))
    }

    async fn archive_project(&self, project: &str) -> Result<ProjectView> {
        let project = Control::archive_project(self, &cli_actor(), project).await?;
        Ok(ProjectView::from(&project))
    }

    async fn create_service_account(
        &self,
        project: Option<&str>,
        name: &str,
    ) -> Result<ServiceAccountView> {
        let account = Control::create_service_account(self, &cli_actor(), project, name).await?;
        Ok(ServiceAccountView::from(&account))
    }

    async fn service_accounts(&self, project: Option<&str>) -> Result<Vec<ServiceAccountView>> {
        let accounts = Control::service_accounts(self, project).await?;
        Ok(accounts.iter().map(ServiceAccountView::from).collect())
    }

    async fn set_limits(
        &self,
        holder: &HolderRequest,
        model: &str,
        limits: RateLimits,
    ) -> Result<RuleView> {
        let rule = Control::set_limits(self, &cli_actor(), holder, model, limits).await?;
        Ok(RuleView::from(&rule))
    }

    async fn remove_limits(&self, holder: &HolderRequest, model: &str) -> Result<()> {
        Ok(Control::remove_limits(self, &cli_actor(), holder, model).await?)
    }

    async fn limit_rules(&self) -> Result<Vec<RuleView>> {
        let rules = Control::limit_rules(self).await?;
        Ok(rules.iter().map(RuleView::from).collect())
    }

    async fn limits_report(&self, holder: &HolderRequest) -> Result<LimitsReport> {
        Ok(Control::limits_report(self, holder).await?)
    }

    async fn set_budget(
        &self,
        holder: &HolderRequest,
        request: BudgetRequest,
    ) -> Result<BudgetView> {
        let budget = Control::set_budget(self, &cli_actor(), holder, request).await?;
        Ok(BudgetView::from(&budget))
    }

    async fn remove_budget(&self, holder: &HolderRequest) -> Result<()> {
        Ok(Control::remove_budget(self, &cli_actor(), holder).await?)
    }

    async fn budgets(&self) -> Result<Vec<BudgetStatus>> {
        Ok(Control::budgets(self).await?)
    }

    async fn usage(
        &self,
        grouping: UsageGrouping,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<UsageRow>> {
        Ok(Control::usage(self, grouping, since, until).await?)
    }

    async fn recent_requests(&self, key: Option<&str>, limit: i64) -> Result<Vec<UsageEvent>> {
        Ok(Control::recent_requests(self, key, limit).await?)
    }

    async fn audit(&self, resource: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(Control::audit(self, resource, limit).await?)
    }

    async fn project_objects(
        &self,
        project: &str,
        kind: Option<tollgate_core::objects::ObjectKind>,
        limit: i64,
    ) -> Result<Vec<super::ObjectRow>> {
        let objects = Control::project_objects(self, project, kind, None, limit).await?;
        Ok(objects.iter().map(super::ObjectRow::from).collect())
    }

    async fn adopt_objects(
        &self,
        project: &str,
        provider: &str,
        ids: &[String],
    ) -> Result<Vec<super::Adopted>> {
        let adopted = Control::adopt_objects(self, &cli_actor(), project, provider, ids).await?;
        Ok(adopted
            .into_iter()
            .map(|(id, adopted)| super::Adopted { id, adopted })
            .collect())
    }
}
