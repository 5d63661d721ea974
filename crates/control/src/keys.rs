use crate::bootstrap::key_audit_data;
use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::duration::Span;
use tollgate_core::lifecycle::{
    check_rotatable, rotation_expiry, validate_name, KeyStatus, LifecycleError,
};
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::secret::HASH_VERSION;
use tollgate_core::{KeyId, KeyKind, Permissions, SecretKey, ServiceAccountId, UnixTime};
use tollgate_store::{Actor, KeyFilter, KeyOwner, KeyRecord, Organization, ProjectStatus, Write};

/// Whose key to create.
#[derive(Debug, Clone)]
pub enum KeyOwnerRequest {
    /// A project key owned by the organization's owner; the default project when `None`.
    Project(Option<String>),
    /// A key of this service account, in its project.
    ServiceAccount(String),
    /// An organization-level admin key.
    Admin,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub owner: KeyOwnerRequest,
    pub permissions: Permissions,
    pub expires_in: Option<Span>,
    /// Addresses the key may be used from (empty: any).
    pub allowed_ips: IpAllowList,
    /// Models the key may use (empty: any).
    pub allowed_models: tollgate_core::routing::ModelAllowList,
    /// The key's own rate limits, on every model.
    pub limits: tollgate_core::limit_rules::RateLimits,
    /// The key's own budget.
    pub budget: Option<crate::BudgetRequest>,
}

/// A key just made: the record and the secret, which is not kept anywhere and is shown once.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: KeyRecord,
    pub secret: SecretKey,
}

#[derive(Debug)]
pub enum RevokeOutcome {
    Revoked(KeyRecord),
    /// It was revoked before; nothing changed.
    AlreadyRevoked(KeyRecord),
}

#[derive(Debug)]
pub struct Rotation {
    /// The old key, with the end of its grace as its expiry.
    pub old: KeyRecord,
    pub new: CreatedKey,
}

/// Whose a new key is, resolved: its kind, project and owner.
pub(crate) struct ResolvedOwner {
    kind: KeyKind,
    project_id: Option<tollgate_core::ProjectId>,
    owner: KeyOwner,
}

impl ResolvedOwner {
    pub(crate) fn service_account(account: &tollgate_store::ServiceAccount) -> ResolvedOwner {
        ResolvedOwner {
            kind: KeyKind::ServiceAccount,
            project_id: Some(account.project_id.clone()),
            owner: KeyOwner::ServiceAccount(account.id.clone()),
        }
    }
}

impl Control {
    /// Creates a key with its own limits and budget, all in one transaction: a key never exists
    /// without the limits it was created with, nor limits without their key.
    pub async fn create_key(&self, actor: &Actor, request: NewKey) -> Result<CreatedKey> {
        let org = self.organization().await?;
        let owner = self.resolve_owner(&org, actor, &request).await?;
        let mut write = self.store.write().await?;
        let created = self
            .issue_key(&mut write, &org, actor, owner, request)
            .await?;
        write.commit().await?;
        Ok(created)
    }

    async fn resolve_owner(
        &self,
        org: &Organization,
        actor: &Actor,
        request: &NewKey,
    ) -> Result<ResolvedOwner> {
        let owner_user = self.acting_user(org, actor).await?;
        Ok(match &request.owner {
            KeyOwnerRequest::Project(project) => {
                let project = match project {
                    Some(p) => self.active_project(p).await?,
                    None => self.store.default_project(&org.id).await?,
                };
                ResolvedOwner {
                    kind: KeyKind::Project,
                    project_id: Some(project.id),
                    owner: KeyOwner::User(owner_user.id),
                }
            }
            KeyOwnerRequest::ServiceAccount(account) => {
                let id = ServiceAccountId::parse(account)
                    .map_err(|e| ControlError::Invalid(e.to_string()))?;
                let account = self.store.service_account(&id).await?;
                self.active_project(account.project_id.as_str()).await?;
                ResolvedOwner::service_account(&account)
            }
            KeyOwnerRequest::Admin => {
                // An admin key is an owner's (`all`: reads and changes) or a reader's
                // (`read-only`: lists and reads); per-endpoint scopes are for project keys.
                if matches!(request.permissions, Permissions::Restricted { .. }) {
                    return Err(ControlError::Invalid(
                        "admin keys are owners (--permissions all) or readers (--permissions read-only); --scope is for project keys".into(),
                    ));
                }
                ResolvedOwner {
                    kind: KeyKind::Admin,
                    project_id: None,
                    owner: KeyOwner::User(owner_user.id),
                }
            }
        })
    }

    /// Writes a new key for `owner`, with its limits and budget, in the caller's transaction.
    pub(crate) async fn issue_key(
        &self,
        write: &mut Write,
        org: &Organization,
        actor: &Actor,
        owner: ResolvedOwner,
        request: NewKey,
    ) -> Result<CreatedKey> {
        let name = validate_name(&request.name)?;
        let now = self.clock.now();
        let expires_at = match request.expires_in {
            Some(span) if span.seconds() <= 0 => return Err(LifecycleError::ExpiryInPast.into()),
            Some(span) => Some(now.plus_seconds(span.seconds())),
            None => None,
        };
        // The project was active when the owner was resolved; it must still be as the key is
        // written (archiving it meanwhile would leave a key that never works).
        if let Some(project) = &owner.project_id {
            if !write.project_is_active(project).await? {
                return Err(ControlError::Conflict(format!(
                    "project {project} was archived meanwhile; archived projects cannot be used or changed"
                )));
            }
        }
        let secret = self.format.generate(owner.kind);
        let record = KeyRecord {
            id: secret.id(),
            org_id: org.id.clone(),
            project_id: owner.project_id,
            kind: owner.kind,
            name,
            hash: self.hasher.hash(&secret),
            hash_version: HASH_VERSION,
            redacted: secret.redacted(),
            owner: owner.owner,
            permissions: request.permissions,
            created_by: actor.label(),
            created_at: now,
            last_used_at: None,
            expires_at,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            allowed_ips: request.allowed_ips,
            allowed_models: request.allowed_models,
        };
        let entry = self.audit_entry(
            org,
            actor,
            "api_key.created",
            record.project_id.as_ref(),
            record.id.as_str(),
            key_audit_data(&record),
        );
        // Limits before the key in the change log: a follower reloads the limits before it
        // takes the key, so the key is never usable without them.
        let holder = tollgate_core::holder::Holder::new(
            tollgate_core::holder::Level::Key,
            record.id.as_str(),
        );
        self.limit_new_key(
            write,
            org,
            actor,
            &holder,
            record.project_id.as_ref(),
            request.limits,
            request.budget,
        )
        .await?;
        write.insert_key(&record, &entry).await?;
        Ok(CreatedKey { record, secret })
    }

    /// Makes `count` project keys in the default project at once, in batches of 10,000 (one
    /// transaction and one audit entry each), named `seed-N`; returns the first one's secret.
    /// For benchmarks of many keys (`tollgate dev seed-keys`).
    pub async fn seed_keys(&self, actor: &Actor, count: usize) -> Result<Option<SecretKey>> {
        let org = self.organization().await?;
        let owner = self.store.organization_owner(&org.id).await?;
        let project = self.store.default_project(&org.id).await?;
        let now = self.clock.now();
        let mut first = None;
        let mut made = 0;
        while made < count {
            let batch = (count - made).min(10_000);
            let mut records = Vec::with_capacity(batch);
            for n in made..made + batch {
                let secret = self.format.generate(KeyKind::Project);
                records.push(KeyRecord {
                    id: secret.id(),
                    org_id: org.id.clone(),
                    project_id: Some(project.id.clone()),
                    kind: KeyKind::Project,
                    name: format!("seed-{n}"),
                    hash: self.hasher.hash(&secret),
                    hash_version: HASH_VERSION,
                    redacted: secret.redacted(),
                    owner: KeyOwner::User(owner.id.clone()),
                    permissions: Permissions::All,
                    created_by: actor.label(),
                    created_at: now,
                    last_used_at: None,
                    expires_at: None,
                    revoked_at: None,
                    rotated_from: None,
                    rotated_to: None,
                    allowed_ips: IpAllowList::default(),
                    allowed_models: ModelAllowList::default(),
                });
                if first.is_none() {
                    first = Some(secret);
                }
            }
            let entry = self.audit_entry(
                &org,
                actor,
                "api_key.seeded",
                Some(&project.id),
                project.id.as_str(),
                json!({"count": batch}),
            );
            self.store.insert_keys(&records, &entry).await?;
            made += batch;
        }
        Ok(first)
    }

    /// Keys, newest first, optionally of one project (id or name) or kind.
    pub async fn keys(
        &self,
        project: Option<&str>,
        kind: Option<KeyKind>,
    ) -> Result<Vec<KeyRecord>> {
        let org = self.organization().await?;
        let project_id = match project {
            Some(p) => Some(self.store.find_project(&org.id, p).await?.id),
            None => None,
        };
        let filter = KeyFilter { project_id, kind };
        Ok(self.store.keys(&org.id, &filter).await?)
    }

    pub async fn key(&self, id: &str) -> Result<KeyRecord> {
        let org = self.organization().await?;
        let id = parse_key_id(id)?;
        Ok(self.store.key(&org.id, &id).await?)
    }

    pub async fn rename_key(&self, actor: &Actor, id: &str, name: &str) -> Result<KeyRecord> {
        self.update_key(actor, id, Some(name), None).await
    }

    /// Renames a key and/or sets when it expires, in one transaction: every check runs before
    /// anything is written, so either both changes hold or neither.
    pub async fn update_key(
        &self,
        actor: &Actor,
        id: &str,
        name: Option<&str>,
        expire_after: Option<Span>,
    ) -> Result<KeyRecord> {
        let org = self.organization().await?;
        let mut key = self.key(id).await?;
        let rename = match name {
            Some(name) => Some(self.prepare_rename(&org, actor, &key, name)?),
            None => None,
        };
        let expiry = match expire_after {
            Some(after) => Some(self.prepare_expiry(&org, actor, &key, after).await?),
            None => None,
        };
        let mut write = self.store.write().await?;
        if let Some((at, entry)) = &expiry {
            write.set_key_expiry(&key.id, Some(*at), entry).await?;
        }
        if let Some((name, entry)) = &rename {
            write.rename_key(&key.id, name, entry).await?;
        }
        write.commit().await?;
        if let Some((at, _)) = expiry {
            key.expires_at = Some(at);
        }
        if let Some((name, _)) = rename {
            key.name = name;
        }
        Ok(key)
    }

    fn prepare_rename(
        &self,
        org: &Organization,
        actor: &Actor,
        key: &KeyRecord,
        name: &str,
    ) -> Result<(String, tollgate_store::AuditEntry)> {
        let name = validate_name(name)?;
        if key.status(self.clock.now()) == KeyStatus::Revoked {
            return Err(LifecycleError::Revoked(key.id.clone()).into());
        }
        let entry = self.audit_entry(
            org,
            actor,
            "api_key.updated",
            key.project_id.as_ref(),
            key.id.as_str(),
            json!({"changes_requested": {"name": name}, "previous": {"name": key.name}}),
        );
        Ok((name, entry))
    }

    /// Revokes a key at once; every server following the store stops accepting it within a
    /// second. Revoking a revoked key changes nothing and says so.
    pub async fn revoke_key(&self, actor: &Actor, id: &str) -> Result<RevokeOutcome> {
        let org = self.organization().await?;
        let key = self.key(id).await?;
        if key.revoked_at.is_some() {
            return Ok(RevokeOutcome::AlreadyRevoked(key));
        }
        let now = self.clock.now();
        let entry = self.audit_entry(
            &org,
            actor,
            "api_key.revoked",
            key.project_id.as_ref(),
            key.id.as_str(),
            json!({"name": key.name, "redacted_value": key.redacted}),
        );
        if key.kind == KeyKind::Admin && key.permissions == Permissions::All {
            // Nobody could manage the organization through the admin API without one.
            if !self
                .store
                .revoke_owner_admin_key(&org.id, &key.id, now, &entry)
                .await?
            {
                return Err(ControlError::Conflict(format!(
                    "{} is the organization's last owner admin key that does not expire; create another (tollgate keys create --admin) before revoking it",
                    key.id
                )));
            }
        } else {
            self.store.revoke_key(&key.id, now, &entry).await?;
        }
        Ok(RevokeOutcome::Revoked(KeyRecord {
            revoked_at: Some(now),
            ..key
        }))
    }

    /// Rotates a key: a successor with the same project, owner, permissions and expiry, while the
    /// old key keeps working for `grace` (never past its own expiry) and then stops by itself.
    pub async fn rotate_key(&self, actor: &Actor, id: &str, grace: Span) -> Result<Rotation> {
        let org = self.organization().await?;
        let old = self.key(id).await?;
        let now = self.clock.now();
        check_rotatable(&old.id, &old.state(), now)?;
        let old_expires_at = rotation_expiry(now, grace, old.expires_at)?;
        if let Some(project) = &old.project_id {
            let project = self.store.find_project(&org.id, project.as_str()).await?;
            if project.status == ProjectStatus::Archived {
                return Err(ControlError::Conflict(format!(
                    "project {} is archived; its keys cannot be rotated",
                    project.id
                )));
            }
        }
        let secret = self.format.generate(old.kind);
        let new = KeyRecord {
            id: secret.id(),
            hash: self.hasher.hash(&secret),
            hash_version: HASH_VERSION,
            redacted: secret.redacted(),
            created_by: actor.label(),
            created_at: now,
            last_used_at: None,
            rotated_from: Some(old.id.clone()),
            rotated_to: None,
            ..old.clone()
        };
        let mut created = key_audit_data(&new);
        created["rotated_from"] = json!(old.id);
        let created = self.audit_entry(
            &org,
            actor,
            "api_key.created",
            new.project_id.as_ref(),
            new.id.as_str(),
            created,
        );
        let rotated = self.audit_entry(
            &org,
            actor,
            "api_key.rotated",
            old.project_id.as_ref(),
            old.id.as_str(),
            json!({"successor_id": new.id, "successor_redacted_value": new.redacted, "grace": grace.to_string(), "old_key_expires_at": old_expires_at}),
        );
        self.store
            .rotate_key(&old.id, old_expires_at, &new, &[created, rotated])
            .await?;
        Ok(Rotation {
            old: KeyRecord {
                expires_at: Some(old_expires_at),
                rotated_to: Some(new.id.clone()),
                ..old
            },
            new: CreatedKey {
                record: new,
                secret,
            },
        })
    }

    /// Lifts a key's suspension (after suspicious use): the key works again on every server
    /// within a second. `Ok((key, false))` when it was not suspended (nothing changes).
    pub async fn unsuspend_key(&self, actor: &Actor, id: &str) -> Result<(KeyRecord, bool)> {
        let org = self.organization().await?;
        let key = self.key(id).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "api_key.unsuspended",
            key.project_id.as_ref(),
            key.id.as_str(),
            json!({"name": key.name, "redacted_value": key.redacted}),
        );
        let lifted = self.store.lift_key_suspension(&key.id, &entry).await?;
        Ok((key, lifted))
    }

    /// Makes a key expire `after` from now (`immediate` expires it at once).
    pub async fn expire_key(&self, actor: &Actor, id: &str, after: Span) -> Result<KeyRecord> {
        self.update_key(actor, id, None, Some(after)).await
    }

    /// When a key would expire `after` from now (never later than it already does), with its
    /// audit entry; refused for a key that no longer works or is the last owner admin key.
    async fn prepare_expiry(
        &self,
        org: &Organization,
        actor: &Actor,
        key: &KeyRecord,
        after: Span,
    ) -> Result<(UnixTime, tollgate_store::AuditEntry)> {
        let now = self.clock.now();
        match key.status(now) {
            KeyStatus::Revoked => return Err(LifecycleError::Revoked(key.id.clone()).into()),
            KeyStatus::Expired => return Err(LifecycleError::Expired(key.id.clone()).into()),
            KeyStatus::Active => {}
        }
        // The store refuses an expiry on the organization's last owner admin key that does not
        // expire (checked in the writing transaction).
        let at: UnixTime = now.plus_seconds(after.seconds());
        let at = key.expires_at.map_or(at, |current| current.min(at));
        let entry = self.audit_entry(org, actor, "api_key.updated", key.project_id.as_ref(), key.id.as_str(), json!({"changes_requested": {"expires_at": at}, "previous": {"expires_at": key.expires_at}}));
        Ok((at, entry))
    }
}

/// A key id as people type it, refused with a clear message (and a pasted secret masked)
/// when it is not one.
pub fn parse_key_id(id: &str) -> Result<KeyId> {
    if id.starts_with(KeyId::PREFIX) {
        return KeyId::parse(id).map_err(|e| ControlError::Invalid(e.to_string()));
    }
    // Anything else may be a secret pasted by mistake: quote it only masked.
    Err(ControlError::Invalid(format!(
        "`{}` is not an API key id: ids look like key_ followed by 20 letters or digits (see `tollgate keys list`). Pass the id, never the secret key",
        tollgate_core::key::mask_presented(id)
    )))
}
