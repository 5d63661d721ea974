//! The ownership ledger: which project each provider-kept object (file, batch, vector store,
//! stored response, ...) belongs to, for objects made through a provider credential that
//! several projects share. The gateway records an object when a provider answers a create
//! call, and asks the ledger before it forwards any request that names one.
//!
//! An object is recorded once: a second record of the same provider and id keeps the first
//! owner (ids are the provider's, unique in its account; a replayed record changes nothing).

use crate::write::Tx;
use crate::{audit, AuditEntry, Result, Store};
use tollgate_core::objects::ObjectKind;
use tollgate_core::{KeyId, OrgId, ProjectId, UnixTime};

/// One object and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderObject {
    /// The provider (its name in the configuration) that keeps it.
    pub provider: String,
    pub object_id: String,
    pub kind: ObjectKind,
    pub org_id: OrgId,
    pub project_id: ProjectId,
    /// The key whose request created it; `None` for an object an operator adopted.
    pub key_id: Option<KeyId>,
    pub created_at: UnixTime,
}

type Row = (String, String, String, String, String, Option<String>, i64);

const COLUMNS: &str = "provider, object_id, kind, org_id, project_id, key_id, created_at";

fn from_row((provider, object_id, kind, org, project, key, at): Row) -> Option<ProviderObject> {
    Some(ProviderObject {
        provider,
        object_id,
        kind: ObjectKind::parse(&kind)?,
        org_id: OrgId::from_trusted(org),
        project_id: ProjectId::from_trusted(project),
        key_id: key.map(KeyId::from_trusted),
        created_at: UnixTime(at),
    })
}

async fn insert(tx: &mut Tx, object: &ProviderObject) -> Result<bool> {
    let done = in_tx!(tx, e => sqlx::query(
        "INSERT INTO provider_objects (provider, object_id, kind, org_id, project_id, key_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (provider, object_id) DO NOTHING",
    )
    .bind(&object.provider)
    .bind(&object.object_id)
    .bind(object.kind.as_str())
    .bind(object.org_id.as_str())
    .bind(object.project_id.as_str())
    .bind(object.key_id.as_ref().map(|k| k.as_str()))
    .bind(object.created_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Records objects a provider made for a project's request; `true` for each that was new.
pub(crate) async fn record(tx: &mut Tx, objects: &[ProviderObject]) -> Result<Vec<bool>> {
    let mut new = Vec::with_capacity(objects.len());
    for object in objects {
        new.push(insert(tx, object).await?);
    }
    Ok(new)
}

/// Adopts objects made outside Tollgate into a project (an operator's act, audited); `true`
/// for each that was not in the ledger yet (one already owned keeps its owner).
pub(crate) async fn adopt(
    tx: &mut Tx,
    objects: &[ProviderObject],
    entry: &AuditEntry,
) -> Result<Vec<bool>> {
    let new = record(tx, objects).await?;
    audit::append(tx, entry).await?;
    Ok(new)
}

/// Records the objects a usage event carries, with the event (in the metering writer's
/// transaction). An object of a project that is gone is skipped rather than failing the batch.
pub(crate) async fn record_created(tx: &mut Tx, event: &crate::UsageEvent) -> Result<()> {
    for object in &event.objects {
        in_tx!(tx, e => sqlx::query(
            "INSERT INTO provider_objects (provider, object_id, kind, org_id, project_id, key_id, created_at)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM projects WHERE id = $5 AND org_id = $4)
             ON CONFLICT (provider, object_id) DO NOTHING",
        )
        .bind(&object.provider)
        .bind(&object.id)
        .bind(object.kind.as_str())
        .bind(event.org_id.as_str())
        .bind(event.project_id.as_str())
        .bind(event.key_id.as_str())
        .bind(event.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Forgets an object the provider deleted.
pub(crate) async fn forget(tx: &mut Tx, provider: &str, object_id: &str) -> Result<()> {
    in_tx!(tx, e => sqlx::query("DELETE FROM provider_objects WHERE provider = $1 AND object_id = $2")
        .bind(provider)
        .bind(object_id)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

impl Store {
    /// The ledger's entry for an object, if it has one.
    pub async fn provider_object(
        &self,
        provider: &str,
        object_id: &str,
    ) -> Result<Option<ProviderObject>> {
        let row: Option<Row> = in_pool!(self.pool, e => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM provider_objects WHERE provider = $1 AND object_id = $2"
        ))
        .bind(provider)
        .bind(object_id)
        .fetch_optional(e)
        .await)?;
        Ok(row.and_then(from_row))
    }

    /// Which of `ids` the ledger has, with their owners (one query for a provider's list page).
    pub async fn provider_objects_among(
        &self,
        provider: &str,
        ids: &[&str],
    ) -> Result<Vec<ProviderObject>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(ids).map_err(|e| {
            crate::StoreError::Conflict(format!("object ids cannot be written as JSON: {e}"))
        })?;
        let sql = format!(
            "SELECT {COLUMNS} FROM provider_objects WHERE provider = $1 AND object_id {}",
            self.pool
                .dialect()
                .pick(in_json_array!(sqlite, "$2"), in_json_array!(postgres, "$2"))
        );
        let rows: Vec<Row> = in_pool!(self.pool, e => sqlx::query_as(&sql)
        .bind(provider)
        .bind(ids)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().filter_map(from_row).collect())
    }

    /// A project's objects, newest first, `limit` of them after the cursor `after` (an object
    /// id of the project), optionally of one kind.
    pub async fn project_objects(
        &self,
        project: &ProjectId,
        kind: Option<ObjectKind>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProviderObject>> {
        let rows: Vec<Row> = in_pool!(self.pool, e => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM provider_objects o
             WHERE project_id = $1 AND ($2 IS NULL OR kind = $2)
               AND ($3 IS NULL OR (created_at, object_id) < (
                    SELECT created_at, object_id FROM provider_objects
                    WHERE project_id = $1 AND object_id = $3 LIMIT 1))
             ORDER BY created_at DESC, object_id DESC
             LIMIT $4"
        ))
        .bind(project.as_str())
        .bind(kind.map(ObjectKind::as_str))
        .bind(after)
        .bind(limit)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().filter_map(from_row).collect())
    }
}
