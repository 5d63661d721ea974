use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::network::IpAllowList;
use tollgate_core::password::{generate_password, hash_password};
use tollgate_core::secret::HASH_VERSION;
use tollgate_core::{KeyKind, OrgId, Permissions, ProjectId, SecretKey, UserId};
use tollgate_store::{
    Actor, Bootstrap, KeyOwner, KeyRecord, Organization, Project, ProjectStatus, User,
};

/// What a first run created; the password and admin key exist nowhere else and are shown once.
#[derive(Debug)]
pub struct FirstRun {
    pub organization: Organization,
    pub project: Project,
    pub owner: User,
    pub owner_password: String,
    pub admin_key: SecretKey,
    pub admin_key_record: KeyRecord,
}

impl Control {
    /// Sets up an empty database: an organization, its owner, a "Default project" and an admin
    /// key. Returns `None` when the database is already set up; then it checks that the server
    /// secret in hand is the one the database was created with.
    pub async fn bootstrap(&self, owner_email: &str) -> Result<Option<FirstRun>> {
        if self.store.default_organization().await?.is_some() {
            self.verify_secret().await?;
            return Ok(None);
        }
        if owner_email.trim() != owner_email {
            return Err(ControlError::Invalid(format!(
                "`{owner_email}` is not an email address for the owner account"
            )));
        }
        // Kept as every address is (lower case), so that signing in finds it however typed.
        let owner_email = tollgate_core::invite::normalize_email(owner_email).map_err(|_| {
            ControlError::Invalid(format!(
                "`{owner_email}` is not an email address for the owner account"
            ))
        })?;
        let now = self.clock.now();
        let organization = Organization {
            id: OrgId::generate(),
            name: "Default organization".into(),
            created_at: now,
        };
        let owner = User {
            id: UserId::generate(),
            email: owner_email,
            name: "Owner".into(),
            created_at: now,
        };
        let project = Project {
            id: ProjectId::generate(),
            org_id: organization.id.clone(),
            name: "Default project".into(),
            status: ProjectStatus::Active,
            is_default: true,
            created_at: now,
            archived_at: None,
            allowed_ips: IpAllowList::default(),
            allowed_models: Default::default(),
        };
        let owner_password = generate_password();
        let owner_password_hash =
            hash_password(&owner_password).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let admin_key = self.format.generate(KeyKind::Admin);
        let system = Actor::system();
        let admin_key_record = KeyRecord {
            id: admin_key.id(),
            org_id: organization.id.clone(),
            project_id: None,
            kind: KeyKind::Admin,
            name: "Initial admin key".into(),
            hash: self.hasher.hash(&admin_key),
            hash_version: HASH_VERSION,
            redacted: admin_key.redacted(),
            owner: KeyOwner::User(owner.id.clone()),
            permissions: Permissions::All,
            created_by: system.label(),
            created_at: now,
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            rotated_from: None,
            rotated_to: None,
            allowed_ips: IpAllowList::default(),
            allowed_models: Default::default(),
        };
        let audit = vec![
            self.audit_entry(
                &organization,
                &system,
                "organization.created",
                None,
                organization.id.as_str(),
                json!({"name": organization.name}),
            ),
            self.audit_entry(
                &organization,
                &system,
                "user.added",
                None,
                owner.id.as_str(),
                json!({"email": owner.email, "role": "owner"}),
            ),
            self.audit_entry(
                &organization,
                &system,
                "project.created",
                Some(&project.id),
                project.id.as_str(),
                json!({"name": project.name}),
            ),
            self.audit_entry(
                &organization,
                &system,
                "api_key.created",
                None,
                admin_key_record.id.as_str(),
                key_audit_data(&admin_key_record),
            ),
        ];
        let boot = Bootstrap {
            organization: organization.clone(),
            owner: owner.clone(),
            owner_password_hash,
            project: project.clone(),
            admin_key: admin_key_record.clone(),
            secret_fingerprint: self.hasher.fingerprint(),
            key_prefix: self.format.prefix().to_owned(),
            audit,
        };
        if !self.store.bootstrap(&boot).await? {
            // Another process set the database up between our check and our write.
            self.verify_secret().await?;
            return Ok(None);
        }
        Ok(Some(FirstRun {
            organization,
            project,
            owner,
            owner_password,
            admin_key,
            admin_key_record,
        }))
    }

    /// Fails unless the server secret matches the one the database was set up with.
    pub async fn verify_secret(&self) -> Result<()> {
        match self.store.meta("secret_fingerprint").await? {
            Some(stored) if stored == self.hasher.fingerprint() => Ok(()),
            Some(_) => Err(ControlError::WrongSecret),
            None => Err(ControlError::NotInitialized),
        }
    }
}

/// What an audit entry records about a key: never the secret or its hash.
pub(crate) fn key_audit_data(key: &KeyRecord) -> serde_json::Value {
    json!({
        "name": key.name,
        "kind": key.kind.as_str(),
        "redacted_value": key.redacted,
        "project_id": key.project_id,
        "owner": key.owner,
        "permissions": key.permissions.to_string(),
        "expires_at": key.expires_at,
        "allowed_ips": key.allowed_ips,
        "allowed_models": key.allowed_models,
    })
}
