//! Console accounts: signing in with e-mail and password (a session), signing out, changing a
//! password, and an owner's reset of someone's password (there is no e-mail: the owner, or the
//! CLI, hands the new password over). Throttling repeated failures is the caller's (it holds
//! the counts); every password check here is audited, `login.succeeded` or `login.failed`.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::invite::normalize_email;
use tollgate_core::password::{
    check_new_password, generate_password, hash_password, verify_password,
};
use tollgate_core::sign_in::{SessionToken, SESSION_LIFETIME_SECS};
use tollgate_store::{Actor, Member, NewSession, SessionRecord};

/// A sign-in attempt.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A session just started: the token for the browser's cookie, shown to it only.
#[derive(Debug)]
pub struct StartedSession {
    pub token: SessionToken,
    pub session: SessionRecord,
}

/// The same answer for an unknown address and a wrong password.
fn refused() -> ControlError {
    ControlError::Invalid("incorrect e-mail or password".into())
}

/// A hash to check passwords against when the address has none, so that a wrong address
/// takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("tollgate decoy password").unwrap_or_default())
}

/// How many password hashes run at once (Argon2id takes ~19 MiB and tens of milliseconds
/// each): one per core, at most 4. Others wait their turn, up to [`PASSWORD_QUEUE_WAIT`].
fn password_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores.clamp(1, 4))
    })
}

/// How long a password check waits for a free slot before the server says it is busy.
const PASSWORD_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a password hash or check off the async threads, a bounded number at once.
pub(crate) async fn password_work<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let _slot = tokio::time::timeout(PASSWORD_QUEUE_WAIT, password_slots().acquire())
        .await
        .map_err(|_| {
            ControlError::Busy("too many password checks at once; try again shortly".into())
        })?
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ControlError::Internal(format!("the password work did not finish: {e}")))
}

impl Control {
    /// Checks an e-mail and password; on success starts a session (rotated: always a new
    /// token). Both outcomes are audited.
    pub async fn sign_in(&self, credentials: Credentials<'_>) -> Result<StartedSession> {
        let org = self.organization().await?;
        let email = normalize_email(credentials.email).unwrap_or_default();
        let member = self
            .members()
            .await?
            .into_iter()
            .find(|m| m.user.email == email);
        let stored = match &member {
            Some(m) => self.store.password_hash(&m.user.email).await?,
            None => None,
        };
        let password = credentials.password.to_owned();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| decoy_hash().to_owned());
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .map_err(|e| {
                ControlError::Internal(format!("the password check did not finish: {e}"))
            })?;
        let now = self.clock.now();
        let actor = |m: &Option<Member>| Actor {
            kind: "user".into(),
            id: m
                .as_ref()
                .map_or_else(|| email.clone(), |m| m.user.id.as_str().to_owned()),
        };
        let (Some(member), true) = (member.clone(), matches && known) else {
            let entry = self.audit_entry(
                &org,
                &actor(&member),
                "login.failed",
                None,
                &email,
                json!({"error_code": "invalid_credentials", "email": email, "client_ip": credentials.client_ip}),
            );
            self.store.record_audit(&entry).await?;
            return Err(refused());
        };
        let token = SessionToken::generate();
        let session = NewSession {
            token_hash: token.hash(&self.hasher),
            user_id: member.user.id.clone(),
            org_id: org.id.clone(),
            created_at: now,
            expires_at: now.plus_seconds(SESSION_LIFETIME_SECS),
            client_ip: credentials.client_ip.clone(),
            user_agent: credentials
                .user_agent
                .map(|ua| ua.chars().take(256).collect()),
        };
        let entry = self.audit_entry(
            &org,
            &actor(&Some(member.clone())),
            "login.succeeded",
            None,
            member.user.id.as_str(),
            json!({"client_ip": credentials.client_ip}),
        );
        self.store.create_session(&session, &entry).await?;
        Ok(StartedSession {
            token,
            session: SessionRecord {
                member,
                org_id: org.id,
                created_at: now,
                expires_at: session.expires_at,
            },
        })
    }

    /// The live session a cookie's token names, if any (in this organization, with the user's
    /// current role).
    pub async fn session(&self, token: &str) -> Result<Option<(SessionToken, SessionRecord)>> {
        let Some(token) = SessionToken::parse(token) else {
            return Ok(None);
        };
        let org = self.organization().await?;
        let found = self
            .store
            .session(&token.hash(&self.hasher), self.clock.now())
            .await?;
        Ok(found
            .filter(|s| s.org_id == org.id)
            .map(|session| (token, session)))
    }

    /// Ends a session.
    pub async fn sign_out(&self, token: &SessionToken) -> Result<()> {
        Ok(self.store.end_session(&token.hash(&self.hasher)).await?)
    }

    /// Changes the signed-in user's own password (the current one must match); every session
    /// of theirs ends, this one included.
    pub async fn change_password(&self, member: &Member, current: &str, new: &str) -> Result<()> {
        let stored = self
            .store
            .password_hash(&member.user.email)
            .await?
            .unwrap_or_else(|| decoy_hash().to_owned());
        let current = current.to_owned();
        let matches = tokio::task::spawn_blocking(move || verify_password(&current, &stored))
            .await
            .map_err(|e| {
                ControlError::Internal(format!("the password check did not finish: {e}"))
            })?;
        if !matches {
            return Err(ControlError::Invalid(
                "the current password is not right".into(),
            ));
        }
        let actor = Actor {
            kind: "user".into(),
            id: member.user.id.as_str().to_owned(),
        };
        self.set_password(&actor, member, new).await
    }

    /// An owner's (or the CLI's) reset of a user's password: a new random one, returned to be
    /// handed over once; every session of theirs ends.
    pub async fn reset_password(&self, actor: &Actor, user: &str) -> Result<(Member, String)> {
        let member = self.member_by_id_or_email(user).await?;
        let password = generate_password();
        self.set_password(actor, &member, &password).await?;
        Ok((member, password))
    }

    async fn set_password(&self, actor: &Actor, member: &Member, password: &str) -> Result<()> {
        check_new_password(password).map_err(|e| ControlError::Invalid(e.to_string()))?;
        let org = self.organization().await?;
        let password = password.to_owned();
        let hash = password_work(move || hash_password(&password))
            .await?
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let entry = self.audit_entry(
            &org,
            actor,
            "user.updated",
            None,
            member.user.id.as_str(),
            json!({"changes_requested": {"password": "changed"}}),
        );
        Ok(self
            .store
            .set_password(&member.user.id, &hash, &entry)
            .await?)
    }

    /// A member by user id or e-mail address.
    pub async fn member_by_id_or_email(&self, user: &str) -> Result<Member> {
        let email = user.trim().to_lowercase();
        self.members()
            .await?
            .into_iter()
            .find(|m| m.user.id.as_str() == user || m.user.email == email)
            .ok_or_else(|| {
                tollgate_store::StoreError::NotFound {
                    entity: "user",
                    id: user.to_owned(),
                }
                .into()
            })
    }
}
