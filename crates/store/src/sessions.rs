//! Console sessions and account passwords. A session is found by its token's keyed hash and
//! lasts until it expires, its user signs out, or the user's password changes (which ends them
//! all). A user removed from the organization has no session there: lookups join the
//! membership.

use crate::write::Tx;
use crate::{audit, AuditEntry, Member, Result, Role, Store, StoreError, User};
use tollgate_core::{KeyHash, OrgId, UnixTime, UserId};

/// A session as created at sign-in.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token_hash: KeyHash,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A live session: whose, in which organization, with which role there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub member: Member,
    pub org_id: OrgId,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

pub(crate) async fn create(tx: &mut Tx, session: &NewSession, entry: &AuditEntry) -> Result<()> {
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, org_id, created_at, expires_at, client_ip, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&session.token_hash.0[..])
    .bind(session.user_id.as_str())
    .bind(session.org_id.as_str())
    .bind(session.created_at.seconds())
    .bind(session.expires_at.seconds())
    .bind(session.client_ip.as_deref())
    .bind(session.user_agent.as_deref())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    // Expired sessions go as new ones come: the table holds live ones (and a few stale).
    in_tx!(tx, e => sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(session.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    audit::append(tx, entry).await
}

pub(crate) async fn end(tx: &mut Tx, token_hash: &KeyHash) -> Result<()> {
    in_tx!(tx, e => sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(&token_hash.0[..])
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Sets a user's password hash and ends every session of theirs.
pub(crate) async fn set_password(
    tx: &mut Tx,
    user: &UserId,
    password_hash: &str,
    entry: &AuditEntry,
) -> Result<()> {
    let done = in_tx!(tx, e => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(password_hash)
        .bind(user.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    if done != 1 {
        return Err(StoreError::not_found("user", user));
    }
    in_tx!(tx, e => sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user.as_str())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    audit::append(tx, entry).await
}

impl Store {
    /// The live session a token hash names at `now`, with its member's current role.
    pub async fn session(
        &self,
        token_hash: &KeyHash,
        now: UnixTime,
    ) -> Result<Option<SessionRecord>> {
        #[allow(clippy::type_complexity)]
        let row: Option<(String, String, String, i64, String, i64, String, i64, i64)> = in_pool!(self.pool, e => sqlx::query_as(
                "SELECT u.id, u.email, u.name, u.created_at, m.role, m.created_at, s.org_id, s.created_at, s.expires_at
                 FROM sessions s
                 JOIN users u ON u.id = s.user_id
                 JOIN memberships m ON m.user_id = s.user_id AND m.org_id = s.org_id
                 WHERE s.token_hash = $1 AND s.expires_at > $2",
            )
            .bind(&token_hash.0[..])
            .bind(now.seconds())
            .fetch_optional(e)
            .await)?;
        Ok(row.map(
            |(id, email, name, user_created, role, added, org, created, expires)| SessionRecord {
                member: Member {
                    user: User {
                        id: UserId::from_trusted(id),
                        email,
                        name,
                        created_at: UnixTime(user_created),
                    },
                    role: Role::parse(&role).unwrap_or(Role::Reader),
                    added_at: UnixTime(added),
                },
                org_id: OrgId::from_trusted(org),
                created_at: UnixTime(created),
                expires_at: UnixTime(expires),
            },
        ))
    }

    /// How many live sessions a user has.
    pub async fn session_count(&self, user: &UserId, now: UnixTime) -> Result<i64> {
        let (count,): (i64,) = in_pool!(self.pool, e => sqlx::query_as("SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND expires_at > $2")
                .bind(user.as_str())
                .bind(now.seconds())
                .fetch_one(e)
                .await)?;
        Ok(count)
    }
}
