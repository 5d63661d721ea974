use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{audit, keys, Bootstrap, Member, Organization, Result, Role, Store, StoreError, User};
use tollgate_core::{OrgId, UnixTime, UserId};

pub(crate) async fn bootstrap(tx: &mut Tx, boot: &Bootstrap) -> Result<bool> {
    let (orgs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM organizations")
        .fetch_one(&mut **tx)
        .await?;
    if orgs > 0 {
        return Ok(false);
    }
    let org = &boot.organization;
    sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)")
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.created_at.seconds())
        .execute(&mut **tx)
        .await?;
    let owner = &boot.owner;
    sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(owner.id.as_str())
    .bind(&owner.email)
    .bind(&owner.name)
    .bind(&boot.owner_password_hash)
    .bind(owner.created_at.seconds())
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!("a user with email {} already exists", owner.email)
        })
    })?;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)")
        .bind(org.id.as_str())
        .bind(owner.id.as_str())
        .bind(Role::Owner.as_str())
        .bind(owner.created_at.seconds())
        .execute(&mut **tx)
        .await?;
    crate::projects::insert(tx, &boot.project).await?;
    keys::insert(tx, &boot.admin_key).await?;
    sqlx::query("INSERT INTO tollgate_meta (name, value) VALUES ('secret_fingerprint', ?), ('key_prefix', ?)")
            .bind(&boot.secret_fingerprint)
            .bind(&boot.key_prefix)
            .execute(&mut **tx)
            .await?;
    for entry in &boot.audit {
        audit::append(tx, entry).await?;
    }
    Ok(true)
}

impl Store {
    /// The organization this deployment serves (the first one created).
    pub async fn default_organization(&self) -> Result<Option<Organization>> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT id, name, created_at FROM organizations ORDER BY created_at, rowid LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, name, created_at)| Organization {
            id: OrgId::from_trusted(id),
            name,
            created_at: UnixTime(created_at),
        }))
    }

    /// The organization's first owner.
    pub async fn organization_owner(&self, org: &OrgId) -> Result<User> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT u.id, u.email, u.name, u.created_at
             FROM users u JOIN memberships m ON m.user_id = u.id
             WHERE m.org_id = ? AND m.role = 'owner'
             ORDER BY m.created_at, u.rowid LIMIT 1",
        )
        .bind(org.as_str())
        .fetch_optional(&self.pool)
        .await?;
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
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT password_hash FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(hash,)| hash))
    }

    /// The organization's users with their roles, in the order they joined.
    pub async fn members(&self, org: &OrgId) -> Result<Vec<Member>> {
        let rows: Vec<(String, String, String, i64, String, i64)> = sqlx::query_as(
            "SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at
             FROM users u JOIN memberships m ON m.user_id = u.id
             WHERE m.org_id = ?
             ORDER BY m.created_at, u.rowid",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await?;
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
