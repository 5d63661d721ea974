//! Users of a project and their project roles (OpenAI's project users). A project user is
//! always a member of the project's organization: adding checks it, and removing a user from
//! the organization removes them from its projects in the same transaction.

use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{audit, AuditEntry, ProjectMember, ProjectRole, Result, Store, StoreError, User};
use tollgate_core::{ProjectId, UnixTime, UserId};

/// The project is there and active (`NotFound`, or `Conflict` for an archived one: archived
/// projects cannot be changed).
async fn open_project(tx: &mut Tx, project: &ProjectId) -> Result<()> {
    let status: Option<(String,)> = in_tx!(tx, e => sqlx::query_as("SELECT status FROM projects WHERE id = $1")
        .bind(project.as_str())
        .fetch_optional(e)
        .await)?;
    match status {
        None => Err(StoreError::not_found("project", project)),
        Some((status,)) if status != "active" => Err(StoreError::Conflict(format!(
            "project {project} is archived; archived projects cannot be changed"
        ))),
        Some(_) => Ok(()),
    }
}

/// Adds an organization member to a project. `NotFound` ("user") when the user is not a member
/// of the project's organization; `Conflict` when already in the project.
pub(crate) async fn add(
    tx: &mut Tx,
    project: &ProjectId,
    user: &UserId,
    role: ProjectRole,
    at: UnixTime,
    entry: &AuditEntry,
) -> Result<()> {
    open_project(tx, project).await?;
    let (member,): (bool,) = in_tx!(tx, e => sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM memberships m JOIN projects p ON p.org_id = m.org_id
                        WHERE p.id = $1 AND m.user_id = $2)",
    )
    .bind(project.as_str())
    .bind(user.as_str())
    .fetch_one(e)
    .await)?;
    if !member {
        return Err(StoreError::not_found("user", user));
    }
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO project_members (project_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(project.as_str())
    .bind(user.as_str())
    .bind(role.as_str())
    .bind(at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))
    .map_err(|e| conflict_on_unique(e, || format!("{user} is already in project {project}")))?;
    audit::append(tx, entry).await
}

/// Changes a project user's role.
pub(crate) async fn set_role(
    tx: &mut Tx,
    project: &ProjectId,
    user: &UserId,
    role: ProjectRole,
    entry: &AuditEntry,
) -> Result<()> {
    open_project(tx, project).await?;
    let done = in_tx!(tx, e => sqlx::query("UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(project.as_str())
            .bind(user.as_str())
            .execute(e)
            .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::not_found("user", user));
    }
    audit::append(tx, entry).await
}

/// Removes a user from a project (not from the organization).
pub(crate) async fn remove(
    tx: &mut Tx,
    project: &ProjectId,
    user: &UserId,
    entry: &AuditEntry,
) -> Result<()> {
    open_project(tx, project).await?;
    let done = in_tx!(tx, e => sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project.as_str())
        .bind(user.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::not_found("user", user));
    }
    audit::append(tx, entry).await
}

/// Removes a user from every project of an organization (they are leaving it).
pub(crate) async fn leave_organization(
    tx: &mut Tx,
    org: &tollgate_core::OrgId,
    user: &UserId,
) -> Result<()> {
    in_tx!(tx, e => sqlx::query(
        "DELETE FROM project_members
         WHERE user_id = $1 AND project_id IN (SELECT id FROM projects WHERE org_id = $2)",
    )
    .bind(user.as_str())
    .bind(org.as_str())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

impl Store {
    /// A project's users with their roles, in the order they were added.
    pub async fn project_members(&self, project: &ProjectId) -> Result<Vec<ProjectMember>> {
        let rows: Vec<(String, String, String, i64, String, i64)> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT u.id, u.email, u.name, u.created_at, pm.role, pm.added_at
             FROM project_members pm JOIN users u ON u.id = pm.user_id
             WHERE pm.project_id = $1
             ORDER BY pm.added_at, pm.rowid",
        )
        .bind(project.as_str())
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, email, name, created_at, role, added_at)| ProjectMember {
                    user: User {
                        id: UserId::from_trusted(id),
                        email,
                        name,
                        created_at: UnixTime(created_at),
                    },
                    role: ProjectRole::parse(&role).unwrap_or(ProjectRole::Member),
                    added_at: UnixTime(added_at),
                },
            )
            .collect())
    }
}
