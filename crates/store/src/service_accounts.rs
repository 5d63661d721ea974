use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{audit, AuditEntry, Result, ServiceAccount, Store, StoreError};
use tollgate_core::{KeyId, OrgId, ProjectId, ServiceAccountId, UnixTime};

#[derive(sqlx::FromRow)]
struct ServiceAccountRow {
    id: String,
    project_id: String,
    name: String,
    role: String,
    created_by: String,
    created_at: i64,
}

impl From<ServiceAccountRow> for ServiceAccount {
    fn from(row: ServiceAccountRow) -> Self {
        ServiceAccount {
            id: ServiceAccountId::from_trusted(row.id),
            project_id: ProjectId::from_trusted(row.project_id),
            name: row.name,
            role: row.role,
            created_by: row.created_by,
            created_at: UnixTime(row.created_at),
        }
    }
}

pub(crate) async fn insert(
    tx: &mut Tx,
    account: &ServiceAccount,
    entry: &AuditEntry,
) -> Result<()> {
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO service_accounts (id, project_id, name, role, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(account.id.as_str())
    .bind(account.project_id.as_str())
    .bind(&account.name)
    .bind(&account.role)
    .bind(&account.created_by)
    .bind(account.created_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "project {} already has a service account named \"{}\"",
                account.project_id, account.name
            )
        })
    })?;
    audit::append(tx, entry).await
}

/// Deletes a service account and revokes every key it owns (each in the change log, so every
/// server stops them); returns the revoked keys' ids. Its name is freed for a new account (the
/// row keeps the old name, suffixed, for the audit trail).
pub(crate) async fn delete(
    tx: &mut Tx,
    id: &ServiceAccountId,
    at: UnixTime,
    entry: &AuditEntry,
) -> Result<Vec<KeyId>> {
    let done = in_tx!(tx, e => sqlx::query(
        "UPDATE service_accounts SET deleted_at = $1, name = name || ' (deleted ' || id || ')'
         WHERE id = $2 AND deleted_at IS NULL",
    )
    .bind(at.seconds())
    .bind(id.as_str())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::not_found("service account", id));
    }
    let keys: Vec<(String,)> = in_tx!(tx, e => sqlx::query_as(
        "UPDATE api_keys SET revoked_at = $1
         WHERE owner_service_account_id = $2 AND revoked_at IS NULL
         RETURNING id",
    )
    .bind(at.seconds())
    .bind(id.as_str())
    .fetch_all(e)
    .await)?;
    let keys: Vec<KeyId> = keys
        .into_iter()
        .map(|(k,)| KeyId::from_trusted(k))
        .collect();
    for key in &keys {
        crate::change_log::append(tx, &crate::ChangedEntity::Key(key.clone()), at).await?;
    }
    audit::append(tx, entry).await?;
    Ok(keys)
}

impl Store {
    /// Service accounts of the organization, optionally of one project.
    pub async fn service_accounts(
        &self,
        org: &OrgId,
        project: Option<&ProjectId>,
    ) -> Result<Vec<ServiceAccount>> {
        let rows: Vec<ServiceAccountRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT s.id, s.project_id, s.name, s.role, s.created_by, s.created_at
             FROM service_accounts s JOIN projects p ON p.id = s.project_id
             WHERE p.org_id = $1 AND ($2 IS NULL OR s.project_id = $3) AND s.deleted_at IS NULL
             ORDER BY s.created_at, s.rowid",
        )
        .bind(org.as_str())
        .bind(project.map(ProjectId::as_str))
        .bind(project.map(ProjectId::as_str))
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(ServiceAccount::from).collect())
    }

    pub async fn service_account(&self, id: &ServiceAccountId) -> Result<ServiceAccount> {
        let row: Option<ServiceAccountRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT id, project_id, name, role, created_by, created_at FROM service_accounts
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .fetch_optional(e)
        .await)?;
        row.map(ServiceAccount::from)
            .ok_or_else(|| StoreError::not_found("service account", id))
    }
}
