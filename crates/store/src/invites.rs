//! Invitations to an organization: made, listed, withdrawn, accepted. Accepting one is a single
//! transaction: the invite is claimed (once, before it expires), the account made or found,
//! and the organization and project memberships written with their audit entries.

use crate::error::conflict_on_unique;
use crate::write::Tx;
use crate::{audit, AuditEntry, Invite, InvitedProject, Result, Role, Store, StoreError, User};
use tollgate_core::{InviteId, KeyHash, OrgId, UnixTime, UserId};

/// `SELECT` of every invite column, then the rest of the query.
macro_rules! select_invites {
    ($rest:literal) => {
        concat!(
            "SELECT id, org_id, email, role, projects, created_by, created_at, expires_at, accepted_at, user_id FROM invites ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    id: String,
    org_id: String,
    email: String,
    role: String,
    projects: String,
    created_by: String,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
    user_id: Option<String>,
}

impl TryFrom<InviteRow> for Invite {
    type Error = StoreError;

    fn try_from(row: InviteRow) -> Result<Invite> {
        let projects: Vec<InvitedProject> = serde_json::from_str(&row.projects).map_err(|e| {
            StoreError::Database(sqlx::Error::Decode(
                format!("invite {}: projects: {e}", row.id).into(),
            ))
        })?;
        Ok(Invite {
            id: InviteId::from_trusted(row.id),
            org_id: OrgId::from_trusted(row.org_id),
            email: row.email,
            role: Role::parse(&row.role).unwrap_or(Role::Reader),
            projects,
            created_by: row.created_by,
            created_at: UnixTime(row.created_at),
            expires_at: UnixTime(row.expires_at),
            accepted_at: row.accepted_at.map(UnixTime),
            user_id: row.user_id.map(UserId::from_trusted),
        })
    }
}

/// Every project of `projects` is active and the organization's; `Conflict` names one that is
/// not.
async fn projects_are_open(tx: &mut Tx, org: &OrgId, projects: &[InvitedProject]) -> Result<()> {
    for project in projects {
        let (open,): (bool,) = in_tx!(tx, e => sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND org_id = $2 AND status = 'active')",
        )
        .bind(project.id.as_str())
        .bind(org.as_str())
        .fetch_one(e)
        .await)?;
        if !open {
            return Err(StoreError::Conflict(format!(
                "project {} is archived or not in this organization",
                project.id
            )));
        }
    }
    Ok(())
}

/// Stores a new invite. `Conflict` when the address is already a member, already has a pending
/// invite, or a project is no longer open.
pub(crate) async fn create(
    tx: &mut Tx,
    invite: &Invite,
    token_hash: &KeyHash,
    entry: &AuditEntry,
) -> Result<()> {
    let (member, pending): (bool, bool) = in_tx!(tx, e => sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id
                        WHERE m.org_id = $1 AND u.email = $2),
                EXISTS (SELECT 1 FROM invites
                        WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL AND expires_at > $3)",
    )
    .bind(invite.org_id.as_str())
    .bind(&invite.email)
    .bind(invite.created_at.seconds())
    .fetch_one(e)
    .await)?;
    if member {
        return Err(StoreError::Conflict(format!(
            "{} is already a member of this organization",
            invite.email
        )));
    }
    if pending {
        return Err(StoreError::Conflict(format!(
            "{} already has a pending invite; delete it to send a new one",
            invite.email
        )));
    }
    projects_are_open(tx, &invite.org_id, &invite.projects).await?;
    let projects = serde_json::to_string(&invite.projects)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))?;
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO invites (id, org_id, email, role, projects, token_hash, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(invite.id.as_str())
    .bind(invite.org_id.as_str())
    .bind(&invite.email)
    .bind(invite.role.as_str())
    .bind(projects)
    .bind(&token_hash.0[..])
    .bind(&invite.created_by)
    .bind(invite.created_at.seconds())
    .bind(invite.expires_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    audit::append(tx, entry).await
}

/// Withdraws (deletes) an invite that has not been accepted; `Conflict` for an accepted one.
pub(crate) async fn delete(
    tx: &mut Tx,
    org: &OrgId,
    id: &InviteId,
    entry: &AuditEntry,
) -> Result<()> {
    let accepted: Option<(Option<i64>,)> = in_tx!(tx, e => sqlx::query_as("SELECT accepted_at FROM invites WHERE id = $1 AND org_id = $2")
            .bind(id.as_str())
            .bind(org.as_str())
            .fetch_optional(e)
            .await)?;
    match accepted {
        None => return Err(StoreError::not_found("invite", id)),
        Some((Some(_),)) => {
            return Err(StoreError::Conflict(format!(
                "invite {id} was accepted; an accepted invite cannot be deleted (remove the user instead)"
            )))
        }
        Some((None,)) => {}
    }
    in_tx!(tx, e => sqlx::query("DELETE FROM invites WHERE id = $1")
        .bind(id.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    audit::append(tx, entry).await
}

/// Accepts `invite` as `user`: a new account when `password_hash` is given (`Conflict` if the
/// address has one), else an existing one (written first: the invite then names it). The invite is claimed only if it is still pending at
/// `at` (`Conflict` otherwise, so a link works once); projects archived since the invite was
/// made are skipped.
pub(crate) async fn accept(
    tx: &mut Tx,
    invite: &Invite,
    user: &User,
    password_hash: Option<&str>,
    at: UnixTime,
    entries: &[AuditEntry],
) -> Result<()> {
    if !sender_may_still_invite(tx, invite, at).await? {
        return Err(StoreError::Conflict(
            "whoever sent this invite can no longer invite (removed, now a reader, or their admin key ended); ask an owner for a new one".into(),
        ));
    }
    if let Some(hash) = password_hash {
        in_tx!(tx, e => sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id.as_str())
        .bind(&user.email)
        .bind(&user.name)
        .bind(hash)
        .bind(user.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "{} already has an account: sign in with it to accept",
                    user.email
                )
            })
        })?;
    }
    let claimed = in_tx!(tx, e => sqlx::query(
        "UPDATE invites SET accepted_at = $1, user_id = $2
         WHERE id = $3 AND accepted_at IS NULL AND expires_at > $4",
    )
    .bind(at.seconds())
    .bind(user.id.as_str())
    .bind(invite.id.as_str())
    .bind(at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    if claimed != 1 {
        return Err(StoreError::Conflict(
            "this invite link is no longer valid: it was used, withdrawn or has expired".into(),
        ));
    }
    in_tx!(tx, e => sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(invite.org_id.as_str())
        .bind(user.id.as_str())
        .bind(invite.role.as_str())
        .bind(at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("{} is already a member of this organization", user.email)
            })
        })?;
    for project in &invite.projects {
        in_tx!(tx, e => sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, added_at)
             SELECT id, $1, $2, $3 FROM projects WHERE id = $4 AND org_id = $5 AND status = 'active'
             ON CONFLICT (project_id, user_id) DO NOTHING",
        )
        .bind(user.id.as_str())
        .bind(project.role.as_str())
        .bind(at.seconds())
        .bind(project.id.as_str())
        .bind(invite.org_id.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    }
    for entry in entries {
        audit::append(tx, entry).await?;
    }
    Ok(())
}

/// Whether the invite's sender could still send it at `at`: a user still an owner of the
/// organization, an admin key still working with the owner's rights, or the local CLI.
async fn sender_may_still_invite(tx: &mut Tx, invite: &Invite, at: UnixTime) -> Result<bool> {
    let (kind, id) = invite
        .created_by
        .split_once(':')
        .unwrap_or(("", invite.created_by.as_str()));
    let still: (bool,) = match kind {
        "user" => in_tx!(tx, e => sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM memberships WHERE org_id = $1 AND user_id = $2 AND role = 'owner')",
            )
            .bind(invite.org_id.as_str())
            .bind(id)
            .fetch_one(e)
            .await)?,
        "api_key" => {
            macro_rules! sql {
                ($dialect:ident) => {
                    concat!(
                        "SELECT EXISTS (SELECT 1 FROM api_keys
                            WHERE org_id = $1 AND id = $2 AND kind = 'admin' AND revoked_at IS NULL
                              AND (expires_at IS NULL OR expires_at > $3) AND ",
                        owner_permissions!($dialect),
                        ")"
                    )
                };
            }
            let sql = tx.dialect().pick(sql!(sqlite), sql!(postgres));
            in_tx!(tx, e => sqlx::query_as(sql)
            .bind(invite.org_id.as_str())
            .bind(id)
            .bind(at.seconds())
            .fetch_one(e)
            .await)?
        }
        _ => (true,),
    };
    Ok(still.0)
}

impl Store {
    /// The organization's invites (pending, expired and accepted), oldest first.
    pub async fn invites(&self, org: &OrgId) -> Result<Vec<Invite>> {
        let rows: Vec<InviteRow> = in_pool!(self.pool, e => sqlx::query_as(select_invites!(
            "WHERE org_id = $1 ORDER BY created_at, rowid"
        ))
        .bind(org.as_str())
        .fetch_all(e)
        .await)?;
        rows.into_iter().map(Invite::try_from).collect()
    }

    /// One invite of the organization (`NotFound` for another organization's).
    pub async fn invite(&self, org: &OrgId, id: &InviteId) -> Result<Invite> {
        let row: Option<InviteRow> = in_pool!(self.pool, e => sqlx::query_as(select_invites!("WHERE id = $1 AND org_id = $2"))
            .bind(id.as_str())
            .bind(org.as_str())
            .fetch_optional(e)
            .await)?;
        row.ok_or_else(|| StoreError::not_found("invite", id))?
            .try_into()
    }

    /// The invite a token's hash belongs to, whatever its state.
    pub async fn invite_by_token(&self, token_hash: &KeyHash) -> Result<Option<Invite>> {
        let row: Option<InviteRow> = in_pool!(self.pool, e => sqlx::query_as(select_invites!("WHERE token_hash = $1"))
            .bind(&token_hash.0[..])
            .fetch_optional(e)
            .await)?;
        row.map(Invite::try_from).transpose()
    }

    /// The account with this (normalized) address, if there is one.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        let row: Option<(String, String, String, i64)> = in_pool!(self.pool, e => sqlx::query_as("SELECT id, email, name, created_at FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(e)
                .await)?;
        Ok(row.map(|(id, email, name, created_at)| User {
            id: UserId::from_trusted(id),
            email,
            name,
            created_at: UnixTime(created_at),
        }))
    }
}
