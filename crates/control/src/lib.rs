//! Tollgate's control plane: the operations people perform on organizations, projects,
//! service accounts and keys. The CLI calls it directly on the database today; the admin API and
//! console will call the same functions. Here ids and timestamps are made, rules from
//! `tollgate-core` are applied, and each change goes to the store with its audit entry.

mod accounts;
mod bootstrap;
mod error;
mod invites;
mod keys;
mod limits;
mod members;
mod objects;
mod project_members;
mod projects;
mod views;

pub use accounts::{Credentials, StartedSession};
pub use bootstrap::FirstRun;
pub use error::{ControlError, ErrorClass};
pub use invites::{Acceptance, CreatedInvite};
pub use keys::{parse_key_id, CreatedKey, KeyOwnerRequest, NewKey, RevokeOutcome, Rotation};
pub use limits::{
    require_limits, BudgetRequest, BudgetStatus, HolderRequest, LimitStatus, LimitsReport,
};
pub use views::{
    holder_text, list_text, BudgetView, CreatedKeyView, KeyView, ProjectView, RuleView,
    ServiceAccountView,
};

use std::sync::Arc;
use tollgate_core::{AuditId, Clock, KeyFormat, KeyHasher, ProjectId};
use tollgate_store::{
    Actor, AuditEntry, AuditQuery, Member, Organization, Store, UsageGrouping, UsageRow, UsageTotal,
};

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

/// The control plane over one store.
#[derive(Clone, Debug)]
pub struct Control {
    store: Store,
    hasher: KeyHasher,
    format: KeyFormat,
    clock: Arc<dyn Clock>,
}

impl Control {
    pub fn new(
        store: Store,
        hasher: KeyHasher,
        format: KeyFormat,
        clock: Arc<dyn Clock>,
    ) -> Control {
        Control {
            store,
            hasher,
            format,
            clock,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub fn key_format(&self) -> &KeyFormat {
        &self.format
    }

    /// The organization this deployment serves; an error until the first run has set it up.
    pub async fn organization(&self) -> Result<Organization> {
        self.store
            .default_organization()
            .await?
            .ok_or(ControlError::NotInitialized)
    }

    /// Usage between two instants' UTC days, grouped as asked.
    pub async fn usage(
        &self,
        grouping: UsageGrouping,
        since: tollgate_core::UnixTime,
        until: tollgate_core::UnixTime,
    ) -> Result<Vec<UsageRow>> {
        let org = self.organization().await?;
        Ok(self
            .store
            .usage_report(&org.id, grouping, since, until)
            .await?)
    }

    /// The newest requests' usage events, optionally of one key (id), newest first.
    pub async fn recent_requests(
        &self,
        key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<tollgate_store::UsageEvent>> {
        let org = self.organization().await?;
        let limit = limit.clamp(1, 10_000);
        Ok(match key {
            Some(key) => {
                // A secret pasted in place of the id is quoted only masked.
                let id = keys::parse_key_id(key)?;
                self.store.recent_usage_of_key(&org.id, &id, limit).await?
            }
            None => self.store.recent_usage(&org.id, limit).await?,
        })
    }

    /// The newest audit entries, optionally about one resource.
    pub async fn audit(&self, resource_id: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        let org = self.organization().await?;
        Ok(self
            .store
            .audit_entries(&org.id, resource_id, limit)
            .await?)
    }

    /// One page of the audit log, filtered (newest first; one entry past the page's limit
    /// tells there is more).
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let org = self.organization().await?;
        Ok(self.store.audit_page(&org.id, query).await?)
    }

    /// The organization's users and their roles.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let org = self.organization().await?;
        Ok(self.store.members(&org.id).await?)
    }

    /// Usage events summed per time bucket (see [`Store::usage_totals`]).
    pub async fn usage_totals(
        &self,
        start: tollgate_core::UnixTime,
        end: tollgate_core::UnixTime,
        width: i64,
    ) -> Result<Vec<UsageTotal>> {
        let org = self.organization().await?;
        Ok(self.store.usage_totals(&org.id, start, end, width).await?)
    }

    pub fn now(&self) -> tollgate_core::UnixTime {
        self.clock.now()
    }

    fn audit_entry(
        &self,
        org: &Organization,
        actor: &Actor,
        event_type: &str,
        project_id: Option<&ProjectId>,
        resource_id: &str,
        data: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            id: AuditId::generate(),
            org_id: org.id.clone(),
            event_type: event_type.to_owned(),
            actor: actor.clone(),
            project_id: project_id.cloned(),
            resource_id: Some(resource_id.to_owned()),
            data,
            created_at: self.clock.now(),
        }
    }
}
