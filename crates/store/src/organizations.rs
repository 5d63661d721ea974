use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{
    audit, keys, AuditEntry, Bootstrap, Member, Organization, Result, Role, Store, StoreError, User,
};
use tollgate_core::{OrgId, UnixTime, UserId};

pub(crate) async fn bootstrap(tx: &mut Tx, boot: &Bootstrap) -> Result<bool> {
    let (orgs,): (i64,) = in_tx!(tx, e => sqlx::query_as("SELECT COUNT(*) FROM organizations")
        .fetch_one(e)
        .await)?;
    if orgs > 0 {
        return Ok(false);
    }
    let org = &boot.organization;
    in_tx!(tx, e => sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    let owner = &boot.owner;
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(owner.id.as_str())
    .bind(&owner.email)
    .bind(&owner.name)
    .bind(&boot.owner_password_hash)
    .bind(owner.created_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!("a user with email {} already exists", owner.email)
        })
    })?;
    in_tx!(tx, e => sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org.id.as_str())
        .bind(owner.id.as_str())
        .bind(Role::Owner.as_str())
        .bind(owner.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    crate::projects::insert(tx, &boot.project).await?;
    keys::insert(tx, &boot.admin_key).await?;
    in_tx!(tx, e => sqlx::query("INSERT INTO tollgate_meta (name, value) VALUES ('secret_fingerprint', $1), ('key_prefix', $2)")
            .bind(&boot.secret_fingerprint)
            .bind(&boot.key_prefix)
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
    for entry in &boot.audit {
        audit::append(tx, entry).await?;
    }
    Ok(true)
}

/// Renames the organization.
pub(crate) async fn rename(tx: &mut Tx, org: &OrgId, name: &str, entry: &AuditEntry) -> Result<()> {
    let done = in_tx!(tx, e => sqlx::query("UPDATE organizations SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(org.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::not_found("organization", org));
    }
    audit::append(tx, entry).await
}

/// Adds a user to the organization with a role (a new user row, or an existing user of
/// another organization by id).
pub(crate) async fn add_member(
    tx: &mut Tx,
    org: &OrgId,
    user: &User,
    password_hash: Option<&str>,
    role: Role,
    entry: &AuditEntry,
) -> Result<()> {
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(user.id.as_str())
    .bind(&user.email)
    .bind(&user.name)
    .bind(password_hash)
    .bind(user.created_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!("a user with email {} already exists", user.email)
        })
    })?;
    in_tx!(tx, e => sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(org.as_str())
        .bind(user.id.as_str())
        .bind(role.as_str())
        .bind(entry.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))
        .map_err(|e| conflict_on_unique(e, || format!("{} is already a member", user.email)))?;
    audit::append(tx, entry).await
}

/// Withdraws the pending invites a user made (in the console) in an organization.
async fn withdraw_invites_by(tx: &mut Tx, org: &OrgId, user: &UserId) -> Result<()> {
    in_tx!(tx, e => sqlx::query("DELETE FROM invites WHERE org_id = $1 AND created_by = $2 AND accepted_at IS NULL")
        .bind(org.as_str())
        .bind(format!("user:{user}"))
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Whether the organization keeps an owner other than `user`.
async fn other_owner(tx: &mut Tx, org: &OrgId, user: &UserId) -> Result<bool> {
    let (others,): (i64,) = in_tx!(tx, e => sqlx::query_as(
        "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND user_id != $2 AND role = 'owner'",
    )
    .bind(org.as_str())
    .bind(user.as_str())
    .fetch_one(e)
    .await)?;
    Ok(others > 0)
}

/// Changes a member's role. Never leaves the organization without an owner (`Conflict`).
pub(crate) async fn set_member_role(
    tx: &mut Tx,
    org: &OrgId,
    user: &UserId,
    role: Role,
    entry: &AuditEntry,
) -> Result<()> {
    if role != Role::Owner && !other_owner(tx, org, user).await? {
        return Err(StoreError::Conflict(format!(
            "{user} is the organization's last owner; make another owner first"
        )));
    }
    let done = in_tx!(tx, e => sqlx::query("UPDATE memberships SET role = $1 WHERE org_id = $2 AND user_id = $3")
        .bind(role.as_str())
        .bind(org.as_str())
        .bind(user.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::not_found("user", user));
    }
    if role != Role::Owner {
        // A reader invites no one: the invites they made as an owner are withdrawn.
        withdraw_invites_by(tx, org, user).await?;
    }
    audit::append(tx, entry).await
}

/// Removes a member from the organization; never the last owner (`Conflict`). Keys are the
/// organization's and stay: the CLI and the admin API make keys on the organization's behalf
/// (recorded under its first owner), so a member's departure says nothing about them.
pub(crate) async fn remove_member(
    tx: &mut Tx,
    org: &OrgId,
    user: &UserId,
    entry: &AuditEntry,
) -> Result<()> {
    let (member, owner): (bool, bool) = in_tx!(tx, e => sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2),
                EXISTS (SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2 AND role = 'owner')",
    )
    .bind(org.as_str())
    .bind(user.as_str())
    .fetch_one(e)
    .await)?;
    if !member {
        return Err(StoreError::not_found("user", user));
    }
    if owner && !other_owner(tx, org, user).await? {
        return Err(StoreError::Conflict(format!(
            "{user} is the organization's last owner; make another owner first"
        )));
    }
    in_tx!(tx, e => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org.as_str())
        .bind(user.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    crate::project_members::leave_organization(tx, org, user).await?;
    withdraw_invites_by(tx, org, user).await?;
    // Their sessions here end now (they would otherwise wake if the account joined again).
    in_tx!(tx, e => sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND org_id = $2")
        .bind(user.as_str())
        .bind(org.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    audit::append(tx, entry).await
}

impl Store {
    /// The organization this deployment serves (the first one created).
    pub async fn default_organization(&self) -> Result<Option<Organization>> {
        let row: Option<(String, String, i64)> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT id, name, created_at FROM organizations ORDER BY created_at, rowid LIMIT 1",
        )
        .fetch_optional(e)
        .await)?;
        Ok(row.map(|(id, name, created_at)| Organization {
            id: OrgId::from_trusted(id),
            name,
            created_at: UnixTime(created_at),
        }))
    }

    /// The organization's first owner.
    pub async fn organization_owner(&self, org: &OrgId) -> Result<User> {
        let row: Option<(String, String, String, i64)> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT u.id, u.email, u.name, u.created_at
             FROM users u JOIN memberships m ON m.user_id = u.id
             WHERE m.org_id = $1 AND m.role = 'owner'
             ORDER BY m.created_at, u.rowid LIMIT 1",
        )
        .bind(org.as_str())
        .fetch_optional(e)
        .await)?;
        let (id, email, name, created_at) =
            row.ok_or_else(|| StoreError::not_found("owner of organization", org))?;
        Ok(User {
            id: UserId::from_trusted(id),
            email,
            name,
            created_at: UnixTime(created_at),
        })
    }

    /// The Argon2 hash of a user's console password, looked up by email.
    pub async fn password_hash(&self, email: &str) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> = in_pool!(self.pool, e => sqlx::query_as("SELECT password_hash FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(e)
                .await)?;
        Ok(row.and_then(|(hash,)| hash))
    }

    /// The organization's users with their roles, in the order they joined.
    pub async fn members(&self, org: &OrgId) -> Result<Vec<Member>> {
        let rows: Vec<(String, String, String, i64, String, i64)> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at
             FROM users u JOIN memberships m ON m.user_id = u.id
             WHERE m.org_id = $1
             ORDER BY m.created_at, u.rowid",
        )
        .bind(org.as_str())
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, email, name, created_at, role, added_at)| Member {
                user: User {
                    id: UserId::from_trusted(id),
                    email,
                    name,
                    created_at: UnixTime(created_at),
                },
                role: if role == "owner" {
                    Role::Owner
                } else {
                    Role::Reader
                },
                added_at: UnixTime(added_at),
            })
            .collect())
    }
}
