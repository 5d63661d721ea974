use crate::{Actor, AuditEntry, AuditQuery, Result, Store};
use tollgate_core::{AuditId, OrgId, ProjectId, UnixTime};

pub(crate) use crate::write::Tx;

/// Writes `entry` inside the caller's transaction.
pub(crate) async fn append(tx: &mut Tx, entry: &AuditEntry) -> Result<()> {
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO audit_log (id, org_id, event_type, actor_type, actor_id, project_id, resource_id, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(entry.id.as_str())
    .bind(entry.org_id.as_str())
    .bind(&entry.event_type)
    .bind(&entry.actor.kind)
    .bind(&entry.actor.id)
    .bind(entry.project_id.as_ref().map(ProjectId::as_str))
    .bind(entry.resource_id.as_deref())
    .bind(entry.data.to_string())
    .bind(entry.created_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    org_id: String,
    event_type: String,
    actor_type: String,
    actor_id: String,
    project_id: Option<String>,
    resource_id: Option<String>,
    data: String,
    created_at: i64,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        AuditEntry {
            id: AuditId::from_trusted(row.id),
            org_id: OrgId::from_trusted(row.org_id),
            event_type: row.event_type,
            actor: Actor {
                kind: row.actor_type,
                id: row.actor_id,
            },
            project_id: row.project_id.map(ProjectId::from_trusted),
            resource_id: row.resource_id,
            data: serde_json::from_str(&row.data).unwrap_or(serde_json::Value::Null),
            created_at: UnixTime(row.created_at),
        }
    }
}

/// The audit log's filtered, paged read in a dialect; each list filter is one JSON array.
macro_rules! audit_query {
    ($dialect:ident) => {
        concat!(
            "SELECT id, org_id, event_type, actor_type, actor_id, project_id, resource_id, data, created_at
             FROM audit_log
             WHERE org_id = $1
               AND ($2 IS NULL OR created_at >= $2)
               AND ($3 IS NULL OR created_at <= $3)
               AND ($4 IS NULL OR event_type ", in_json_array!($dialect, "$4"), ")
               AND ($5 IS NULL OR project_id ", in_json_array!($dialect, "$5"), ")
               AND ($6 IS NULL OR actor_id ", in_json_array!($dialect, "$6"), ")
               AND ($7 IS NULL OR resource_id ", in_json_array!($dialect, "$7"), ")
               AND ($8 IS NULL OR seq < (SELECT seq FROM audit_log WHERE id = $8 AND org_id = $1))
               AND ($10 IS NULL OR seq > (SELECT seq FROM audit_log WHERE id = $10 AND org_id = $1))
             ORDER BY CASE WHEN $10 IS NULL THEN -seq ELSE seq END LIMIT $9"
        )
    };
}

impl Store {
    /// The newest audit entries first, optionally only those about `resource_id`.
    pub async fn audit_entries(
        &self,
        org: &OrgId,
        resource_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT id, org_id, event_type, actor_type, actor_id, project_id, resource_id, data, created_at
             FROM audit_log
             WHERE org_id = $1 AND ($2 IS NULL OR resource_id = $3)
             ORDER BY seq DESC LIMIT $4",
        )
        .bind(org.as_str())
        .bind(resource_id)
        .bind(resource_id)
        .bind(limit)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// One page of audit entries, newest first, filtered as `query` says; one entry more than
    /// `query.limit` is read, so the caller knows whether there is a next page.
    pub async fn audit_page(&self, org: &OrgId, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        // Each list filter is bound as one JSON array (`json_each`): no SQL is ever assembled.
        let list = |values: &[String]| {
            (!values.is_empty()).then(|| serde_json::Value::from(values.to_vec()).to_string())
        };
        let (types, projects, actors, resources) = (
            list(&query.event_types),
            list(&query.project_ids),
            list(&query.actor_ids),
            list(&query.resource_ids),
        );
        let sql = self
            .pool
            .dialect()
            .pick(audit_query!(sqlite), audit_query!(postgres));
        let rows: Vec<AuditRow> = in_pool!(self.pool, e => sqlx::query_as(sql)
        .bind(org.as_str())
        .bind(query.since.map(UnixTime::seconds))
        .bind(query.until.map(UnixTime::seconds))
        .bind(types)
        .bind(projects)
        .bind(actors)
        .bind(resources)
        .bind(query.after.as_deref())
        .bind(query.limit.saturating_add(1))
        .bind(query.before.as_deref())
        .fetch_all(e)
        .await)?;
        let mut entries: Vec<AuditEntry> = rows.into_iter().map(AuditEntry::from).collect();
        if query.before.is_some() {
            // Read oldest first from the cursor up; shown newest first like every page.
            entries.reverse();
        }
        Ok(entries)
    }
}
