use crate::keys::ResolvedOwner;
use crate::{Control, ControlError, CreatedKey, KeyOwnerRequest, NewKey, Result};
use serde_json::json;
use tollgate_core::lifecycle::validate_name;
use tollgate_core::network::IpAllowList;
use tollgate_core::{ProjectId, ServiceAccountId};
use tollgate_store::{Actor, Organization, Project, ProjectStatus, ServiceAccount, Write};

impl Control {
    pub async fn create_project(&self, actor: &Actor, name: &str) -> Result<Project> {
        let org = self.organization().await?;
        let name = validate_name(name)?;
        let project = Project {
            id: ProjectId::generate(),
            org_id: org.id.clone(),
            name,
            status: ProjectStatus::Active,
            is_default: false,
            created_at: self.clock.now(),
            archived_at: None,
            allowed_ips: IpAllowList::default(),
            allowed_models: Default::default(),
        };
        let entry = self.audit_entry(
            &org,
            actor,
            "project.created",
            Some(&project.id),
            project.id.as_str(),
            json!({"name": project.name}),
        );
        self.store.insert_project(&project, &entry).await?;
        Ok(project)
    }

    pub async fn projects(&self, include_archived: bool) -> Result<Vec<Project>> {
        let org = self.organization().await?;
        Ok(self.store.projects(&org.id, include_archived).await?)
    }

    /// A project by id (`proj_…`) or exact name.
    pub async fn project(&self, id_or_name: &str) -> Result<Project> {
        let org = self.organization().await?;
        Ok(self.store.find_project(&org.id, id_or_name).await?)
    }

    /// Renames an active project.
    pub async fn rename_project(
        &self,
        actor: &Actor,
        id_or_name: &str,
        name: &str,
    ) -> Result<Project> {
        let org = self.organization().await?;
        let project = self.active_project(id_or_name).await?;
        let name = validate_name(name)?;
        let entry = self.audit_entry(
            &org,
            actor,
            "project.updated",
            Some(&project.id),
            project.id.as_str(),
            json!({"changes_requested": {"title": name}, "previous": {"title": project.name}}),
        );
        self.store
            .rename_project(&project.id, &name, &entry)
            .await?;
        Ok(Project { name, ..project })
    }

    /// Archives a project: its keys stop working and it takes no new keys. The default project
    /// cannot be archived, as on OpenAI.
    pub async fn archive_project(&self, actor: &Actor, id_or_name: &str) -> Result<Project> {
        let org = self.organization().await?;
        let project = self.store.find_project(&org.id, id_or_name).await?;
        if project.is_default {
            return Err(ControlError::Conflict(format!(
                "{} is the default project and cannot be archived",
                project.id
            )));
        }
        if project.status == ProjectStatus::Archived {
            return Err(ControlError::Conflict(format!(
                "project {} is already archived",
                project.id
            )));
        }
        let now = self.clock.now();
        let entry = self.audit_entry(
            &org,
            actor,
            "project.archived",
            Some(&project.id),
            project.id.as_str(),
            json!({"name": project.name}),
        );
        self.store.archive_project(&project.id, now, &entry).await?;
        Ok(Project {
            status: ProjectStatus::Archived,
            archived_at: Some(now),
            ..project
        })
    }

    /// Creates a service account (a bot identity) in an active project, the default one when
    /// none is named.
    pub async fn create_service_account(
        &self,
        actor: &Actor,
        project: Option<&str>,
        name: &str,
    ) -> Result<ServiceAccount> {
        let (org, project) = self.account_project(project).await?;
        let mut write = self.store.write().await?;
        let account = self
            .add_service_account(&mut write, &org, &project, actor, name)
            .await?;
        write.commit().await?;
        Ok(account)
    }

    /// Creates a service account with its first key (full permissions), both or neither: what
    /// OpenAI's "create project service account" answers with.
    pub async fn create_service_account_with_key(
        &self,
        actor: &Actor,
        project: &str,
        name: &str,
        key_name: &str,
    ) -> Result<(ServiceAccount, CreatedKey)> {
        let (org, project) = self.account_project(Some(project)).await?;
        let mut write = self.store.write().await?;
        let account = self
            .add_service_account(&mut write, &org, &project, actor, name)
            .await?;
        let request = NewKey {
            name: key_name.to_owned(),
            owner: KeyOwnerRequest::ServiceAccount(account.id.as_str().to_owned()),
            permissions: tollgate_core::Permissions::All,
            expires_in: None,
            allowed_ips: Default::default(),
            allowed_models: Default::default(),
            limits: Default::default(),
            budget: None,
        };
        let owner = ResolvedOwner::service_account(&account);
        let key = self
            .issue_key(&mut write, &org, actor, owner, request)
            .await?;
        write.commit().await?;
        Ok((account, key))
    }

    /// The organization and the active project a new service account goes in (the default
    /// project when none is named), read before the write begins: nothing reads through the
    /// pool while a `Write` holds the write lock.
    async fn account_project(&self, project: Option<&str>) -> Result<(Organization, Project)> {
        let org = self.organization().await?;
        let project = match project {
            Some(p) => self.active_project(p).await?,
            None => self.store.default_project(&org.id).await?,
        };
        Ok((org, project))
    }

    async fn add_service_account(
        &self,
        write: &mut Write,
        org: &Organization,
        project: &Project,
        actor: &Actor,
        name: &str,
    ) -> Result<ServiceAccount> {
        if !write.project_is_active(&project.id).await? {
            return Err(ControlError::Conflict(format!(
                "project {} was archived meanwhile; archived projects cannot be used or changed",
                project.id
            )));
        }
        let account = ServiceAccount {
            id: ServiceAccountId::generate(),
            project_id: project.id.clone(),
            name: validate_name(name)?,
            role: "member".into(),
            created_by: actor.label(),
            created_at: self.clock.now(),
        };
        let entry = self.audit_entry(
            org,
            actor,
            "service_account.created",
            Some(&project.id),
            account.id.as_str(),
            json!({"name": account.name, "role": account.role}),
        );
        write.insert_service_account(&account, &entry).await?;
        Ok(account)
    }

    /// Deletes a service account of a project and revokes every key it owns, at once on every
    /// server; returns it and the keys revoked.
    pub async fn delete_service_account(
        &self,
        actor: &Actor,
        project: &str,
        id: &str,
    ) -> Result<(ServiceAccount, Vec<tollgate_core::KeyId>)> {
        let org = self.organization().await?;
        let project = self.project(project).await?;
        let not_found = || {
            ControlError::from(tollgate_store::StoreError::NotFound {
                entity: "service account",
                id: id.to_owned(),
            })
        };
        let account_id = ServiceAccountId::parse(id).map_err(|_| not_found())?;
        let account = self.store.service_account(&account_id).await?;
        if account.project_id != project.id {
            return Err(not_found());
        }
        let entry = self.audit_entry(
            &org,
            actor,
            "service_account.deleted",
            Some(&project.id),
            account.id.as_str(),
            json!({"name": account.name}),
        );
        let keys = self
            .store
            .delete_service_account(&account.id, self.clock.now(), &entry)
            .await?;
        Ok((account, keys))
    }

    pub async fn service_accounts(&self, project: Option<&str>) -> Result<Vec<ServiceAccount>> {
        let org = self.organization().await?;
        let project_id = match project {
            Some(p) => Some(self.store.find_project(&org.id, p).await?.id),
            None => None,
        };
        Ok(self
            .store
            .service_accounts(&org.id, project_id.as_ref())
            .await?)
    }

    pub(crate) async fn active_project(&self, id_or_name: &str) -> Result<Project> {
        let project = self.project(id_or_name).await?;
        if project.status == ProjectStatus::Archived {
            return Err(ControlError::Conflict(format!(
                "project {} ({}) is archived; archived projects cannot be used or changed",
                project.id, project.name
            )));
        }
        Ok(project)
    }

    /// Replaces a project's IP allow-list (empty: any address). Its keys follow within a second.
    pub async fn set_project_allowed_ips(
        &self,
        actor: &Actor,
        id_or_name: &str,
        list: IpAllowList,
    ) -> Result<Project> {
        let org = self.organization().await?;
        let project = self.active_project(id_or_name).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "ip_allowlist.updated",
            Some(&project.id),
            project.id.as_str(),
            json!({"allowed_ips": list, "previous": project.allowed_ips}),
        );
        self.store
            .set_project_allowed_ips(&project.id, &list, &entry)
            .await?;
        Ok(Project {
            allowed_ips: list,
            ..project
        })
    }

    /// Replaces a project's model allow-list (empty: any model). Its keys follow within a second.
    pub async fn set_project_allowed_models(
        &self,
        actor: &Actor,
        id_or_name: &str,
        list: tollgate_core::routing::ModelAllowList,
    ) -> Result<Project> {
        let org = self.organization().await?;
        let project = self.active_project(id_or_name).await?;
        let entry = self.audit_entry(&org, actor, "project.updated", Some(&project.id), project.id.as_str(), json!({"changes_requested": {"allowed_models": list}, "previous": {"allowed_models": project.allowed_models}}));
        self.store
            .set_project_allowed_models(&project.id, &list, &entry)
            .await?;
        Ok(Project {
            allowed_models: list,
            ..project
        })
    }
}
