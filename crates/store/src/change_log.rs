//! The change log: one row per change a running server must apply (a key, a project, the
//! limits), numbered so that followers can read "everything after N". The numbers are handed
//! out in commit order and without gaps (see the `change_sequence` migration), so a follower
//! never skips a change that commits after it has read past a lower number.

use crate::write::Tx;
use crate::{AuditEntry, Change, ChangedEntity, Result, Store};
use tollgate_core::{KeyId, ProjectId, UnixTime};

/// Records inside the caller's transaction that `entity` changed, under the next number of the
/// change sequence.
pub(crate) async fn append(tx: &mut Tx, entity: &ChangedEntity, at: UnixTime) -> Result<()> {
    let (kind, id) = match entity {
        ChangedEntity::Key(id) => ("key", id.as_str()),
        ChangedEntity::Project(id) => ("project", id.as_str()),
        ChangedEntity::Limits => ("limits", ""),
    };
    // The number comes from the counter row, held until this transaction ends: commit order
    // (the migration that made `change_sequence` says why).
    let (seq,): (i64,) = in_tx!(tx, e => sqlx::query_as("UPDATE change_sequence SET seq = seq + 1 WHERE id = 1 RETURNING seq")
            .fetch_one(e)
            .await)?;
    in_tx!(tx, e => sqlx::query("INSERT INTO change_log (seq, entity, entity_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(seq)
        .bind(kind)
        .bind(id)
        .bind(at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Completes a statement that changed `affected` rows with its audit entry and a change-log
/// row for `entity`; `false`, and nothing written, when it changed no row.
pub(crate) async fn applied(
    tx: &mut Tx,
    affected: u64,
    entity: &ChangedEntity,
    entry: &AuditEntry,
) -> Result<bool> {
    if affected == 0 {
        return Ok(false);
    }
    crate::audit::append(tx, entry).await?;
    append(tx, entity, entry.created_at).await?;
    Ok(true)
}

impl Store {
    /// The sequence number of the newest change, 0 when there is none.
    pub async fn latest_change(&self) -> Result<i64> {
        let (seq,): (Option<i64>,) = in_pool!(self.pool, e => sqlx::query_as("SELECT MAX(seq) FROM change_log")
            .fetch_one(e)
            .await)?;
        Ok(seq.unwrap_or(0))
    }

    /// Changes after `seq`, oldest first, at most `limit`.
    pub async fn changes_after(&self, seq: i64, limit: i64) -> Result<Vec<Change>> {
        let rows: Vec<(i64, String, String)> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT seq, entity, entity_id FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(limit)
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(seq, entity, id)| Change {
                seq,
                entity: match entity.as_str() {
                    "project" => ChangedEntity::Project(ProjectId::from_trusted(id)),
                    "limits" => ChangedEntity::Limits,
                    _ => ChangedEntity::Key(KeyId::from_trusted(id)),
                },
            })
            .collect())
    }
}
