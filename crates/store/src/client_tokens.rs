//! Short-lived client tokens (`ek_...`, see `tollgate_core::client_token`): minted by a project
//! key, found by their keyed hash, counted as they are used.
//!
//! Minting is a change like any other (a [`crate::Write`]). Counting a request or its tokens
//! is one `UPDATE` on the token's row, atomic on its own on both backends, outside the write
//! lock: it changes nothing another statement reads to decide anything but the same count, and
//! a browser's every request should not queue behind the organization's writes.

use crate::write::Tx;
use crate::{Result, Store};
use std::collections::BTreeMap;
use tollgate_core::client_token::Grant;
use tollgate_core::{Access, ClientTokenId, KeyHash, KeyId, OrgId, Scope, UnixTime};

/// Expired tokens are kept this long (their counts can still be read), then pruned.
const KEPT_AFTER_EXPIRY_SECONDS: i64 = 86_400;

/// A client token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    pub id: ClientTokenId,
    pub token_hash: KeyHash,
    /// The key that minted it, whose use it is.
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub grant: Grant,
    /// The session configuration it was minted with (JSON), for Realtime sessions.
    pub session: Option<String>,
    pub requests_used: i64,
    pub tokens_used: i64,
}

/// A token found by its hash, with its key's hash (how the gateway finds the key).
#[derive(Debug, Clone)]
pub struct FoundClientToken {
    pub token: ClientToken,
    pub key_hash: KeyHash,
}

type Row = (
    String,
    Vec<u8>,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    i64,
    i64,
    Vec<u8>,
);

fn hash_of(bytes: &[u8]) -> KeyHash {
    let mut hash = [0u8; 32];
    if bytes.len() == 32 {
        hash.copy_from_slice(bytes);
    }
    KeyHash(hash)
}

fn from_row(row: Row) -> FoundClientToken {
    let (
        id,
        token_hash,
        key_id,
        org_id,
        scopes,
        models,
        end_user,
        origins,
        max_requests,
        max_tokens,
        requests_used,
        tokens_used,
        session,
        created_at,
        expires_at,
        key_hash,
    ) = row;
    // An unreadable list grants nothing: never more than intended.
    let scopes: BTreeMap<Scope, Access> = serde_json::from_str(&scopes).unwrap_or_default();
    let models: Vec<String> =
        serde_json::from_str(&models).unwrap_or_else(|_| vec!["\u{0}none".to_owned()]);
    let allowed_origins: Vec<String> = serde_json::from_str(&origins).unwrap_or_default();
    FoundClientToken {
        token: ClientToken {
            id: ClientTokenId::from_trusted(id),
            token_hash: hash_of(&token_hash),
            key_id: KeyId::from_trusted(key_id),
            org_id: OrgId::from_trusted(org_id),
            grant: Grant {
                scopes,
                models,
                user: end_user,
                max_requests,
                max_tokens,
                allowed_origins,
                created_at: UnixTime(created_at),
                expires_at: UnixTime(expires_at),
            },
            session,
            requests_used,
            tokens_used,
        },
        key_hash: hash_of(&key_hash),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        crate::StoreError::Conflict(format!("a client token's grant cannot be written: {e}"))
    })
}

/// Stores a new token and the origins it may be used from; tokens a day past their expiry go.
pub(crate) async fn create(tx: &mut Tx, token: &ClientToken) -> Result<()> {
    let grant = &token.grant;
    let scopes = json(&grant.scopes)?;
    let models = json(&grant.models)?;
    let origins = json(&grant.allowed_origins)?;
    in_tx!(tx, e => sqlx::query(
        "DELETE FROM client_tokens WHERE expires_at < $1",
    )
    .bind(grant.created_at.seconds() - KEPT_AFTER_EXPIRY_SECONDS)
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    in_tx!(tx, e => sqlx::query(
        "INSERT INTO client_tokens (id, token_hash, key_id, org_id, scopes, models, end_user,
             allowed_origins, max_requests, max_tokens, session, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(token.id.as_str())
    .bind(&token.token_hash.0[..])
    .bind(token.key_id.as_str())
    .bind(token.org_id.as_str())
    .bind(&scopes)
    .bind(&models)
    .bind(grant.user.as_deref())
    .bind(&origins)
    .bind(grant.max_requests)
    .bind(grant.max_tokens)
    .bind(token.session.as_deref())
    .bind(grant.created_at.seconds())
    .bind(grant.expires_at.seconds())
    .execute(e)
    .await.map(|r| r.rows_affected()))?;
    for origin in &grant.allowed_origins {
        in_tx!(tx, e => sqlx::query(
            "INSERT INTO client_token_origins (origin, token_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(origin)
        .bind(token.id.as_str())
        .bind(grant.expires_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    }
    Ok(())
}

impl Store {
    /// The token with this hash (expired or not), and its key's hash.
    pub async fn client_token(&self, token_hash: &KeyHash) -> Result<Option<FoundClientToken>> {
        let row: Option<Row> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT t.id, t.token_hash, t.key_id, t.org_id, t.scopes, t.models, t.end_user,
                    t.allowed_origins, t.max_requests, t.max_tokens, t.requests_used,
                    t.tokens_used, t.session, t.created_at, t.expires_at, k.hash
             FROM client_tokens t JOIN api_keys k ON k.id = t.key_id
             WHERE t.token_hash = $1",
        )
        .bind(&token_hash.0[..])
        .fetch_optional(e)
        .await)?;
        Ok(row.map(from_row))
    }

    /// Counts one request against a token: `false` (nothing counted) when it has expired or
    /// used its requests or its tokens. Atomic: two replicas cannot both take the last request.
    pub async fn take_client_token_request(
        &self,
        id: &ClientTokenId,
        now: UnixTime,
    ) -> Result<bool> {
        let done = in_pool!(self.pool, e => sqlx::query(
            "UPDATE client_tokens SET requests_used = requests_used + 1
             WHERE id = $1 AND expires_at > $2
               AND (max_requests IS NULL OR requests_used < max_requests)
               AND (max_tokens IS NULL OR tokens_used < max_tokens)",
        )
        .bind(id.as_str())
        .bind(now.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Adds a finished request's tokens to its client token's count; the count after it
    /// (`None` for a token that is gone).
    pub async fn add_client_token_tokens(
        &self,
        id: &ClientTokenId,
        tokens: i64,
    ) -> Result<Option<i64>> {
        let row: Option<(i64,)> = in_pool!(self.pool, e => sqlx::query_as(
            "UPDATE client_tokens SET tokens_used = tokens_used + $2 WHERE id = $1
             RETURNING tokens_used",
        )
        .bind(id.as_str())
        .bind(tokens.max(0))
        .fetch_optional(e)
        .await)?;
        Ok(row.map(|(used,)| used))
    }

    /// The tokens a client token has used so far (`None` for a token that is gone).
    pub async fn client_token_tokens_used(&self, id: &ClientTokenId) -> Result<Option<i64>> {
        let row: Option<(i64,)> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT tokens_used FROM client_tokens WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(e)
        .await)?;
        Ok(row.map(|(used,)| used))
    }

    /// Whether some live token may be used from `origin` (normalized): what a CORS preflight,
    /// which carries no token, is answered by.
    pub async fn client_origin_live(&self, origin: &str, now: UnixTime) -> Result<bool> {
        let (live,): (i64,) = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT 1 FROM client_token_origins
                                   WHERE origin = $1 AND expires_at > $2 LIMIT 1) AS live",
        )
        .bind(origin)
        .bind(now.seconds())
        .fetch_one(e)
        .await)?;
        Ok(live > 0)
    }
}
