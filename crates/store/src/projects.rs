use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{
    audit, change_log, AuditEntry, ChangedEntity, Project, ProjectStatus, Result, Store, StoreError,
};
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{OrgId, ProjectId, UnixTime};

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: String,
    org_id: String,
    name: String,
    status: String,
    is_default: bool,
    created_at: i64,
    archived_at: Option<i64>,
    allowed_ips: String,
    allowed_models: String,
}

impl From<ProjectRow> for Project {
    fn from(row: ProjectRow) -> Self {
        Project {
            id: ProjectId::from_trusted(row.id),
            org_id: OrgId::from_trusted(row.org_id),
            name: row.name,
            status: ProjectStatus::from_db(&row.status),
            is_default: row.is_default,
            created_at: UnixTime(row.created_at),
            archived_at: row.archived_at.map(UnixTime),
            allowed_ips: IpAllowList::from_json(&row.allowed_ips),
            allowed_models: ModelAllowList::from_json(&row.allowed_models),
        }
    }
}

pub(crate) async fn insert(tx: &mut Tx, project: &Project) -> Result<()> {
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO projects (id, org_id, name, status, is_default, created_at, archived_at, allowed_ips, allowed_models)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(project.id.as_str())
    .bind(project.org_id.as_str())
    .bind(&project.name)
    .bind(project.status.as_str())
    .bind(project.is_default)
    .bind(project.created_at.seconds())
    .bind(project.archived_at.map(UnixTime::seconds))
    .bind(project.allowed_ips.to_json())
    .bind(project.allowed_models.to_json())
    .execute(e)
    .await.map(|r| r.rows_affected()))
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "a project named \"{}\" already exists; pick another name",
                project.name
            )
        })
    })?;
    Ok(())
}

/// Whether a project exists and is active.
pub(crate) async fn is_active(tx: &mut Tx, id: &ProjectId) -> Result<bool> {
    let (active,): (bool,) = in_tx!(tx, e => sqlx::query_as("SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND status = 'active')")
            .bind(id.as_str())
            .fetch_one(e)
            .await)?;
    Ok(active)
}

pub(crate) async fn create(tx: &mut Tx, project: &Project, entry: &AuditEntry) -> Result<()> {
    insert(tx, project).await?;
    audit::append(tx, entry).await
}

pub(crate) async fn archive(
    tx: &mut Tx,
    id: &ProjectId,
    at: UnixTime,
    entry: &AuditEntry,
) -> Result<()> {
    let archived = in_tx!(tx, e => sqlx::query(
        "UPDATE projects SET status = 'archived', archived_at = $1 WHERE id = $2 AND status = 'active'",
    )
    .bind(at.seconds())
    .bind(id.as_str())
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    if !change_log::applied(tx, archived, &ChangedEntity::Project(id.clone()), entry).await? {
        let (exists,): (bool,) = in_tx!(tx, e => sqlx::query_as("SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1)")
                .bind(id.as_str())
                .fetch_one(e)
                .await)?;
        return Err(if exists {
            StoreError::Conflict(format!("project {id} is already archived"))
        } else {
            StoreError::not_found("project", id)
        });
    }
    Ok(())
}

pub(crate) async fn rename(
    tx: &mut Tx,
    id: &ProjectId,
    name: &str,
    entry: &AuditEntry,
) -> Result<()> {
    let update = in_tx!(tx, e => sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
        .bind(name.to_owned())
        .bind(id.as_str())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))
    .map_err(StoreError::from);
    match update_one(tx, id, update, entry).await {
        Err(StoreError::Database(err)) => Err(conflict_on_unique(err, || {
            format!("a project named \"{name}\" already exists; pick another name")
        })),
        done => done,
    }
}

pub(crate) async fn set_allowed_ips(
    tx: &mut Tx,
    id: &ProjectId,
    list: &IpAllowList,
    entry: &AuditEntry,
) -> Result<()> {
    let update = in_tx!(tx, e => sqlx::query("UPDATE projects SET allowed_ips = $1 WHERE id = $2")
        .bind(list.to_json())
        .bind(id.as_str())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))
    .map_err(StoreError::from);
    update_one(tx, id, update, entry).await
}

pub(crate) async fn set_allowed_models(
    tx: &mut Tx,
    id: &ProjectId,
    list: &ModelAllowList,
    entry: &AuditEntry,
) -> Result<()> {
    let update =
        in_tx!(tx, e => sqlx::query("UPDATE projects SET allowed_models = $1 WHERE id = $2")
        .bind(list.to_json())
        .bind(id.as_str())
        .execute(e)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::from);
    update_one(tx, id, update, entry).await
}

/// Completes an update of one project (the rows it changed, or its failure) with its audit
/// entry and change-log row.
async fn update_one(
    tx: &mut Tx,
    id: &ProjectId,
    updated: Result<u64>,
    entry: &AuditEntry,
) -> Result<()> {
    if !change_log::applied(tx, updated?, &ChangedEntity::Project(id.clone()), entry).await? {
        return Err(StoreError::not_found("project", id));
    }
    Ok(())
}

impl Store {
    pub async fn projects(&self, org: &OrgId, include_archived: bool) -> Result<Vec<Project>> {
        // The flag decides in SQL whether archived projects are included.
        let rows: Vec<ProjectRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT id, org_id, name, status, is_default, created_at, archived_at, allowed_ips, allowed_models
             FROM projects WHERE org_id = $1 AND ($2 OR status = 'active')
             ORDER BY created_at, rowid",
        )
        .bind(org.as_str())
        .bind(include_archived)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(Project::from).collect())
    }

    /// A project found by id or by exact name.
    pub async fn find_project(&self, org: &OrgId, id_or_name: &str) -> Result<Project> {
        let row: Option<ProjectRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT id, org_id, name, status, is_default, created_at, archived_at, allowed_ips, allowed_models
             FROM projects WHERE org_id = $1 AND (id = $2 OR name = $3)
             ORDER BY (id = $4) DESC LIMIT 1",
        )
        .bind(org.as_str())
        .bind(id_or_name)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(e)
        .await)?;
        row.map(Project::from)
            .ok_or_else(|| StoreError::not_found("project", id_or_name))
    }

    pub async fn default_project(&self, org: &OrgId) -> Result<Project> {
        let row: Option<ProjectRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT id, org_id, name, status, is_default, created_at, archived_at, allowed_ips, allowed_models
             FROM projects WHERE org_id = $1 AND is_default LIMIT 1",
        )
        .bind(org.as_str())
        .fetch_optional(e)
        .await)?;
        row.map(Project::from)
            .ok_or_else(|| StoreError::not_found("default project of", org))
    }
}
