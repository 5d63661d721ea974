use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{
    audit, change_log, AuditEntry, AuthKey, ChangedEntity, KeyFilter, KeyOwner, KeyRecord,
    ProjectStatus, Result, Store, StoreError, Suspension,
};
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{
    KeyHash, KeyId, KeyKind, OrgId, Permissions, ProjectId, ServiceAccountId, UnixTime, UserId,
};

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    org_id: String,
    project_id: Option<String>,
    kind: String,
    name: String,
    hash: Vec<u8>,
    hash_version: i64,
    redacted: String,
    owner_user_id: Option<String>,
    owner_service_account_id: Option<String>,
    permissions: String,
    created_by: String,
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
    allowed_ips: String,
    allowed_models: String,
    project_status: Option<String>,
    project_allowed_ips: Option<String>,
    project_allowed_models: Option<String>,
    suspended_kind: Option<String>,
    suspended_reason: Option<String>,
    suspended_at: Option<i64>,
}

impl KeyRow {
    fn into_auth_key(self) -> AuthKey {
        let project_status = self.project_status.as_deref().map(ProjectStatus::from_db);
        let mut hash = [0u8; 32];
        if self.hash.len() == 32 {
            hash.copy_from_slice(&self.hash);
        }
        let owner = match (self.owner_user_id, self.owner_service_account_id) {
            (_, Some(account)) => KeyOwner::ServiceAccount(ServiceAccountId::from_trusted(account)),
            (Some(user), None) => KeyOwner::User(UserId::from_trusted(user)),
            (None, None) => KeyOwner::User(UserId::from_trusted(String::new())),
        };
        AuthKey {
            key: KeyRecord {
                id: KeyId::from_trusted(self.id),
                org_id: OrgId::from_trusted(self.org_id),
                project_id: self.project_id.map(ProjectId::from_trusted),
                // An unreadable kind is treated as the least powerful one that cannot call models.
                kind: KeyKind::parse(&self.kind).unwrap_or(KeyKind::Admin),
                name: self.name,
                hash: KeyHash(hash),
                hash_version: self.hash_version,
                redacted: self.redacted,
                owner,
                permissions: Permissions::from_json(&self.permissions),
                created_by: self.created_by,
                created_at: UnixTime(self.created_at),
                last_used_at: self.last_used_at.map(UnixTime),
                expires_at: self.expires_at.map(UnixTime),
                revoked_at: self.revoked_at.map(UnixTime),
                rotated_from: self.rotated_from.map(KeyId::from_trusted),
                rotated_to: self.rotated_to.map(KeyId::from_trusted),
                allowed_ips: IpAllowList::from_json(&self.allowed_ips),
                allowed_models: ModelAllowList::from_json(&self.allowed_models),
            },
            project_status,
            project_allowed_ips: self
                .project_allowed_ips
                .as_deref()
                .map(IpAllowList::from_json)
                .unwrap_or_default(),
            project_allowed_models: self
                .project_allowed_models
                .as_deref()
                .map(ModelAllowList::from_json)
                .unwrap_or_default(),
            suspension: match (
                self.suspended_kind,
                self.suspended_reason,
                self.suspended_at,
            ) {
                (Some(kind), Some(reason), Some(at)) => Some(Suspension {
                    kind,
                    reason,
                    at: UnixTime(at),
                }),
                _ => None,
            },
        }
    }
}

/// The key columns with the project's status, for every read below.
macro_rules! select_keys {
    ($tail:literal) => {
        concat!(
            "SELECT k.id, k.org_id, k.project_id, k.kind, k.name, k.hash, k.hash_version, k.redacted,
                    k.owner_user_id, k.owner_service_account_id, k.permissions, k.created_by,
                    k.created_at, k.last_used_at, k.expires_at, k.revoked_at, k.rotated_from,
                    k.rotated_to, k.allowed_ips, k.allowed_models, p.status AS project_status,
                    p.allowed_ips AS project_allowed_ips, p.allowed_models AS project_allowed_models,
                    s.kind AS suspended_kind, s.reason AS suspended_reason, s.suspended_at
             FROM api_keys k LEFT JOIN projects p ON p.id = k.project_id
                  LEFT JOIN key_suspensions s ON s.key_id = k.id ",
            $tail
        )
    };
}

pub(crate) async fn insert(tx: &mut Tx, key: &KeyRecord) -> Result<()> {
    let (owner_user, owner_account) = match &key.owner {
        KeyOwner::User(id) => (Some(id.as_str()), None),
        KeyOwner::ServiceAccount(id) => (None, Some(id.as_str())),
    };
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO api_keys (id, org_id, project_id, kind, name, hash, hash_version, redacted,
             owner_user_id, owner_service_account_id, permissions, created_by, created_at,
             last_used_at, expires_at, revoked_at, rotated_from, rotated_to, allowed_ips, allowed_models)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(key.id.as_str())
    .bind(key.org_id.as_str())
    .bind(key.project_id.as_ref().map(ProjectId::as_str))
    .bind(key.kind.as_str())
    .bind(&key.name)
    .bind(&key.hash.0[..])
    .bind(key.hash_version)
    .bind(&key.redacted)
    .bind(owner_user)
    .bind(owner_account)
    .bind(key.permissions.to_json())
    .bind(&key.created_by)
    .bind(key.created_at.seconds())
    .bind(key.last_used_at.map(UnixTime::seconds))
    .bind(key.expires_at.map(UnixTime::seconds))
    .bind(key.revoked_at.map(UnixTime::seconds))
    .bind(key.rotated_from.as_ref().map(KeyId::as_str))
    .bind(key.rotated_to.as_ref().map(KeyId::as_str))
    .bind(key.allowed_ips.to_json())
    .bind(key.allowed_models.to_json())
    .execute(e)
    .await.map(|r| r.rows_affected()))
    .map_err(|e| conflict_on_unique(e, || format!("key {} already exists", key.id)))?;
    change_log::append(tx, &ChangedEntity::Key(key.id.clone()), key.created_at).await
}

/// Completes an update that must have changed the one row of key `id` (`updated` rows) with
/// its audit entry and change-log row.
async fn update_one(tx: &mut Tx, id: &KeyId, entry: &AuditEntry, updated: u64) -> Result<()> {
    if updated != 1 {
        let (exists,): (bool,) = in_tx!(tx, e => sqlx::query_as("SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)")
                .bind(id.as_str())
                .fetch_one(e)
                .await)?;
        return Err(if exists {
            StoreError::Conflict(format!("key {id} is revoked; nothing was changed"))
        } else {
            StoreError::not_found("API key", id)
        });
    }
    audit::append(tx, entry).await?;
    change_log::append(tx, &ChangedEntity::Key(id.clone()), entry.created_at).await
}

pub(crate) async fn create(tx: &mut Tx, key: &KeyRecord, entry: &AuditEntry) -> Result<()> {
    insert(tx, key).await?;
    audit::append(tx, entry).await
}

pub(crate) async fn create_many(tx: &mut Tx, keys: &[KeyRecord], entry: &AuditEntry) -> Result<()> {
    for key in keys {
        insert(tx, key).await?;
    }
    audit::append(tx, entry).await
}

pub(crate) async fn rename(tx: &mut Tx, id: &KeyId, name: &str, entry: &AuditEntry) -> Result<()> {
    let updated = in_tx!(tx, e => sqlx::query("UPDATE api_keys SET name = $1 WHERE id = $2")
        .bind(name.to_owned())
        .bind(id.as_str())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    update_one(tx, id, entry, updated).await
}

pub(crate) async fn revoke(
    tx: &mut Tx,
    id: &KeyId,
    at: UnixTime,
    entry: &AuditEntry,
) -> Result<()> {
    let updated = in_tx!(tx, e => sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at.seconds())
            .bind(id.as_str())
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
    update_one(tx, id, entry, updated).await?;
    // Invites an admin key sent are withdrawn with it.
    in_tx!(tx, e => sqlx::query("DELETE FROM invites WHERE created_by = $1 AND accepted_at IS NULL")
        .bind(format!("api_key:{id}"))
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Suspends a live key (audited, and announced through the change log); `false` when it was
/// suspended already (nothing changes).
pub(crate) async fn suspend(
    tx: &mut Tx,
    id: &KeyId,
    suspension: &Suspension,
    entry: &AuditEntry,
) -> Result<bool> {
    let inserted = in_tx!(tx, e => sqlx::query(
        "INSERT INTO key_suspensions (key_id, org_id, kind, reason, suspended_at)
         SELECT id, org_id, $1, $2, $3 FROM api_keys WHERE id = $4 AND revoked_at IS NULL
         ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(&suspension.kind)
    .bind(&suspension.reason)
    .bind(suspension.at.seconds())
    .bind(id.as_str())
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    if inserted == 0 {
        return Ok(false);
    }
    audit::append(tx, entry).await?;
    change_log::append(tx, &ChangedEntity::Key(id.clone()), entry.created_at).await?;
    Ok(true)
}

/// Lifts a key's suspension (audited, announced); `false` when it was not suspended.
pub(crate) async fn lift_suspension(tx: &mut Tx, id: &KeyId, entry: &AuditEntry) -> Result<bool> {
    let deleted = in_tx!(tx, e => sqlx::query("DELETE FROM key_suspensions WHERE key_id = $1")
        .bind(id.as_str())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    if deleted == 0 {
        return Ok(false);
    }
    audit::append(tx, entry).await?;
    change_log::append(tx, &ChangedEntity::Key(id.clone()), entry.created_at).await?;
    Ok(true)
}

/// Whether the organization keeps an owner admin key, other than `except`, that works and will
/// not expire: what the admin API needs so that nobody is ever locked out of it. Counted inside
/// the caller's transaction, so two changes at once cannot both pass.
async fn durable_owner_key_remains(tx: &mut Tx, org: &OrgId, except: &KeyId) -> Result<bool> {
    macro_rules! sql {
        ($dialect:ident) => {
            concat!(
                "SELECT COUNT(*) FROM api_keys
                 WHERE org_id = $1 AND kind = 'admin' AND id != $2 AND revoked_at IS NULL
                   AND expires_at IS NULL AND ",
                owner_permissions!($dialect)
            )
        };
    }
    let sql = tx.dialect().pick(sql!(sqlite), sql!(postgres));
    let (others,): (i64,) = in_tx!(tx, e => sqlx::query_as(sql)
    .bind(org.as_str())
    .bind(except.as_str())
    .fetch_one(e)
    .await)?;
    Ok(others > 0)
}

/// Whether `id` is an owner's admin key, and of which organization.
async fn owner_admin_key_org(tx: &mut Tx, id: &KeyId) -> Result<Option<OrgId>> {
    macro_rules! sql {
        ($dialect:ident) => {
            concat!(
                "SELECT org_id FROM api_keys WHERE id = $1 AND kind = 'admin' AND ",
                owner_permissions!($dialect)
            )
        };
    }
    let sql = tx.dialect().pick(sql!(sqlite), sql!(postgres));
    let row: Option<(String,)> = in_tx!(tx, e => sqlx::query_as(sql)
    .bind(id.as_str())
    .fetch_optional(e)
    .await)?;
    Ok(row.map(|(org,)| OrgId::from_trusted(org)))
}

pub(crate) async fn revoke_owner_admin(
    tx: &mut Tx,
    org: &OrgId,
    id: &KeyId,
    at: UnixTime,
    entry: &AuditEntry,
) -> Result<bool> {
    if !durable_owner_key_remains(tx, org, id).await? {
        return Ok(false);
    }
    revoke(tx, id, at, entry).await?;
    Ok(true)
}

/// Sets when a key expires. An owner's admin key is never given an expiry that would leave the
/// organization without an owner admin key that does not expire (`Conflict`).
pub(crate) async fn set_expiry(
    tx: &mut Tx,
    id: &KeyId,
    at: Option<UnixTime>,
    entry: &AuditEntry,
) -> Result<()> {
    if at.is_some() {
        if let Some(org) = owner_admin_key_org(tx, id).await? {
            if !durable_owner_key_remains(tx, &org, id).await? {
                return Err(StoreError::Conflict(format!(
                    "{id} is the organization's last owner admin key that does not expire; create another (tollgate keys create --admin) before setting its expiry"
                )));
            }
        }
    }
    let updated = in_tx!(tx, e => sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at.map(UnixTime::seconds))
            .bind(id.as_str())
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
    update_one(tx, id, entry, updated).await
}

pub(crate) async fn rotate(
    tx: &mut Tx,
    old: &KeyId,
    old_expires_at: UnixTime,
    successor: &KeyRecord,
    entries: &[AuditEntry],
) -> Result<()> {
    insert(tx, successor).await?;
    let done = in_tx!(tx, e => sqlx::query(
        "UPDATE api_keys SET expires_at = $1, rotated_to = $2
         WHERE id = $3 AND revoked_at IS NULL AND rotated_to IS NULL",
    )
    .bind(old_expires_at.seconds())
    .bind(successor.id.as_str())
    .bind(old.as_str())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::Conflict(format!(
            "key {old} was revoked or rotated by someone else meanwhile; nothing was changed"
        )));
    }
    for entry in entries {
        audit::append(tx, entry).await?;
    }
    change_log::append(tx, &ChangedEntity::Key(old.clone()), successor.created_at).await
}

pub(crate) async fn touch(tx: &mut Tx, used: &[(KeyId, UnixTime)]) -> Result<()> {
    for (id, at) in used {
        in_tx!(tx, e => sqlx::query(
            "UPDATE api_keys
             SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $1 THEN $1 ELSE last_used_at END
             WHERE id = $2",
        )
        .bind(at.seconds())
        .bind(id.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

impl Store {
    pub async fn key(&self, org: &OrgId, id: &KeyId) -> Result<KeyRecord> {
        let row: Option<KeyRow> = in_pool!(self.pool, e => sqlx::query_as(select_keys!("WHERE k.org_id = $1 AND k.id = $2"))
            .bind(org.as_str())
            .bind(id.as_str())
            .fetch_optional(e)
            .await)?;
        row.map(|r| r.into_auth_key().key)
            .ok_or_else(|| StoreError::not_found("API key", id))
    }

    /// Keys of the organization, newest first.
    pub async fn keys(&self, org: &OrgId, filter: &KeyFilter) -> Result<Vec<KeyRecord>> {
        let project = filter.project_id.as_ref().map(ProjectId::as_str);
        let kind = filter.kind.map(KeyKind::as_str);
        let rows: Vec<KeyRow> = in_pool!(self.pool, e => sqlx::query_as(select_keys!(
            "WHERE k.org_id = $1 AND ($2 IS NULL OR k.project_id = $3) AND ($4 IS NULL OR k.kind = $5)
             ORDER BY k.created_at DESC, k.rowid DESC"
        ))
        .bind(org.as_str())
        .bind(project)
        .bind(project)
        .bind(kind)
        .bind(kind)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(|r| r.into_auth_key().key).collect())
    }

    /// Every key with its project's status: what a server loads into memory at start.
    pub async fn auth_keys(&self) -> Result<Vec<AuthKey>> {
        let rows: Vec<KeyRow> = in_pool!(self.pool, e => sqlx::query_as(select_keys!("ORDER BY k.rowid"))
            .fetch_all(e)
            .await)?;
        Ok(rows.into_iter().map(KeyRow::into_auth_key).collect())
    }

    /// Every key with its project's status, handed to `each` one row at a time (a server
    /// loading 100,000 keys never holds every row at once).
    pub async fn each_auth_key(&self, mut each: impl FnMut(AuthKey)) -> Result<()> {
        use futures_util::StreamExt;
        in_pool!(self.pool, e => {
            let mut rows = sqlx::query_as::<_, KeyRow>(select_keys!("ORDER BY k.rowid")).fetch(e);
            while let Some(row) = rows.next().await {
                each(row?.into_auth_key());
            }
        });
        Ok(())
    }

    /// One key as authentication sees it; `None` if it no longer exists.
    pub async fn auth_key(&self, id: &KeyId) -> Result<Option<AuthKey>> {
        let row: Option<KeyRow> = in_pool!(self.pool, e => sqlx::query_as(select_keys!("WHERE k.id = $1"))
            .bind(id.as_str())
            .fetch_optional(e)
            .await)?;
        Ok(row.map(KeyRow::into_auth_key))
    }

    /// The keys of one project, as authentication sees them.
    pub async fn auth_keys_of_project(&self, project: &ProjectId) -> Result<Vec<AuthKey>> {
        let rows: Vec<KeyRow> = in_pool!(self.pool, e => sqlx::query_as(select_keys!("WHERE k.project_id = $1"))
            .bind(project.as_str())
            .fetch_all(e)
            .await)?;
        Ok(rows.into_iter().map(KeyRow::into_auth_key).collect())
    }
}
