//! Transactions. Every change reaches the database through a [`Write`]: a scope that keeps all
//! of its changes at [`Write::commit`] or none of them. Each change is also offered on
//! [`Store`] on its own (one transaction each); a caller whose operation touches several rows
//! (a key with its limits and budget) opens one `Write` and makes them all in it.
//!
//! This file is the one place a transaction begins. On SQLite it is `BEGIN IMMEDIATE`: the
//! write lock is taken at the start, so scopes never interleave and a scope's reads see the
//! latest commit. A backend whose transactions can interleave (PostgreSQL) keeps the same
//! contract: the change log's sequence is handed out in commit order (see `change_log`).

use crate::{
    AuditEntry, Bootstrap, Invite, KeyRecord, Project, ProjectRole, Result, Role, ServiceAccount,
    Store, StoreError, UsageEvent, User,
};
use tollgate_core::budget::Budget;
use tollgate_core::holder::Holder;
use tollgate_core::limit_rules::LimitRule;
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::{ModelAllowList, ModelPattern};
use tollgate_core::{
    InviteId, KeyHash, KeyId, MicroUsd, OrgId, ProjectId, ServiceAccountId, UnixTime, UserId,
};

use crate::backend::Pool;
/// An open transaction on the backend.
pub(crate) use crate::backend::Tx;

/// The PostgreSQL advisory lock every write transaction holds (a constant Tollgate owns:
/// "tollgate" in ASCII): writers take turns as they do on SQLite.
pub(crate) const WRITE_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// A transaction. Dropping it without [`Write::commit`] undoes everything it did. Once one of
/// its changes has failed, it refuses to commit: a failed change may have written part of
/// itself, and keeping the rest would break "all or nothing".
#[must_use = "a Write changes nothing until it is committed"]
pub struct Write {
    tx: Tx,
    failed: bool,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Write")
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Begins a transaction that holds the database's write lock from its start.
    async fn begin(&self) -> Result<Tx> {
        Ok(match &self.pool {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Tx::Postgres(tx)
            }
        })
    }

    /// Opens a transaction.
    pub async fn write(&self) -> Result<Write> {
        Ok(Write {
            tx: self.begin().await?,
            failed: false,
        })
    }
}

impl Write {
    /// Keeps every change made in this transaction, at once for every reader.
    pub async fn commit(self) -> Result<()> {
        if self.failed {
            return Err(StoreError::Aborted);
        }
        self.tx.commit().await?;
        Ok(())
    }

    /// Records the outcome of one change: a failure poisons the transaction.
    fn settle<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// Every rate-limit rule of an organization, read inside this transaction: a change
    /// computed from it cannot lose another writer's (they wait for this one).
    pub async fn rate_limits(&mut self, org: &OrgId) -> Result<Vec<LimitRule>> {
        self.usable()?;
        let result = crate::rate_limits::read(&mut self.tx, org).await;
        self.settle(result)
    }

    /// Every budget of an organization, read inside this transaction.
    pub async fn budgets(&mut self, org: &OrgId) -> Result<Vec<Budget>> {
        self.usable()?;
        let result = crate::budgets::read(&mut self.tx, org).await;
        self.settle(result)
    }

    /// Whether a project exists and is active, read inside this transaction: a change that
    /// needs an active project cannot race its archiving.
    pub async fn project_is_active(&mut self, id: &ProjectId) -> Result<bool> {
        self.usable()?;
        let result = crate::projects::is_active(&mut self.tx, id).await;
        self.settle(result)
    }

    fn usable(&self) -> Result<()> {
        if self.failed {
            return Err(StoreError::Aborted);
        }
        Ok(())
    }
}

/// Declares the store's changes once: each becomes a method of [`Write`] (part of the caller's
/// transaction) and of [`Store`] (a transaction of its own).
macro_rules! changes {
    ($( $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = $imp:path; )*) => {
        impl Write {
            $(
                $(#[$doc])*
                pub async fn $name(&mut self, $($arg: $ty),*) -> Result<$ret> {
                    self.usable()?;
                    let result = $imp(&mut self.tx, $($arg),*).await;
                    self.settle(result)
                }
            )*
        }

        impl Store {
            $(
                $(#[$doc])*
                ///
                /// In a transaction of its own; [`Store::write`] makes it part of a larger one.
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    let mut write = self.write().await?;
                    let value = write.$name($($arg),*).await?;
                    write.commit().await?;
                    Ok(value)
                }
            )*
        }
    };
}

changes! {
    /// Writes a first run's organization, owner, default project and admin key. `false` (and
    /// nothing written) when an organization already exists.
    fn bootstrap(boot: &Bootstrap) -> bool = crate::organizations::bootstrap;

    /// Renames the organization.
    fn rename_organization(org: &OrgId, name: &str, entry: &AuditEntry) -> () = crate::organizations::rename;

    /// Adds a user (new, or of another organization) to the organization with a role.
    fn add_member(org: &OrgId, user: &User, password_hash: Option<&str>, role: Role, entry: &AuditEntry) -> () = crate::organizations::add_member;
    /// Changes a member's role; never leaves the organization without an owner.
    fn set_member_role(org: &OrgId, user: &UserId, role: Role, entry: &AuditEntry) -> () = crate::organizations::set_member_role;
    /// Removes a member from the organization and its projects (their keys, the
    /// organization's, stay); never the last owner.
    fn remove_member(org: &OrgId, user: &UserId, entry: &AuditEntry) -> () = crate::organizations::remove_member;

    /// Stores an invite (`Conflict` for a member's address, a second pending invite, or a
    /// project no longer open).
    fn create_invite(invite: &Invite, token_hash: &KeyHash, entry: &AuditEntry) -> () = crate::invites::create;
    /// Withdraws an invite that was not accepted.
    fn delete_invite(org: &OrgId, id: &InviteId, entry: &AuditEntry) -> () = crate::invites::delete;
    /// Accepts a pending invite as a new account (with `password_hash`) or an existing one.
    fn accept_invite(invite: &Invite, user: &User, password_hash: Option<&str>, at: UnixTime, entries: &[AuditEntry]) -> () = crate::invites::accept;

    /// Adds an organization member to a project with a project role.
    fn add_project_member(project: &ProjectId, user: &UserId, role: ProjectRole, at: UnixTime, entry: &AuditEntry) -> () = crate::project_members::add;
    fn set_project_member_role(project: &ProjectId, user: &UserId, role: ProjectRole, entry: &AuditEntry) -> () = crate::project_members::set_role;
    /// Removes a user from a project (they stay in the organization).
    fn remove_project_member(project: &ProjectId, user: &UserId, entry: &AuditEntry) -> () = crate::project_members::remove;

    /// Starts a console session (and clears expired ones), with its `login.succeeded` entry.
    fn create_session(session: &crate::NewSession, entry: &AuditEntry) -> () = crate::sessions::create;
    /// Ends a session (signing out); nothing if there is none.
    fn end_session(token_hash: &KeyHash) -> () = crate::sessions::end;
    /// Sets a user's password hash and ends all their sessions.
    fn set_password(user: &UserId, password_hash: &str, entry: &AuditEntry) -> () = crate::sessions::set_password;

    /// Records objects a provider made for a project's requests (the ownership ledger); `true`
    /// for each that was new (a second record of an id keeps its first owner).
    fn record_provider_objects(objects: &[crate::ProviderObject]) -> Vec<bool> = crate::provider_objects::record;
    /// Adopts objects made outside Tollgate into a project, audited; `true` for each new one.
    fn adopt_provider_objects(objects: &[crate::ProviderObject], entry: &AuditEntry) -> Vec<bool> = crate::provider_objects::adopt;
    /// Forgets an object its provider deleted.
    fn forget_provider_object(provider: &str, object_id: &str) -> () = crate::provider_objects::forget;

    /// Stores a new client token (`ek_...`) minted by a project key.
    fn create_client_token(token: &crate::ClientToken) -> () = crate::client_tokens::create;

    /// Writes one audit entry on its own (for events the data plane observes).
    fn record_audit(entry: &AuditEntry) -> () = crate::audit::append;

    fn insert_project(project: &Project, entry: &AuditEntry) -> () = crate::projects::create;
    /// Marks a project archived; its keys stop working on every server that follows the log.
    fn archive_project(id: &ProjectId, at: UnixTime, entry: &AuditEntry) -> () = crate::projects::archive;
    /// Renames a project (`Conflict` when the name is taken).
    fn rename_project(id: &ProjectId, name: &str, entry: &AuditEntry) -> () = crate::projects::rename;
    /// Replaces a project's IP allow-list; servers apply it through the change log.
    fn set_project_allowed_ips(id: &ProjectId, list: &IpAllowList, entry: &AuditEntry) -> () = crate::projects::set_allowed_ips;
    /// Replaces a project's model allow-list; servers apply it through the change log.
    fn set_project_allowed_models(id: &ProjectId, list: &ModelAllowList, entry: &AuditEntry) -> () = crate::projects::set_allowed_models;

    fn insert_service_account(account: &ServiceAccount, entry: &AuditEntry) -> () = crate::service_accounts::insert;
    /// Deletes a service account and revokes its keys; the revoked keys' ids.
    fn delete_service_account(id: &ServiceAccountId, at: UnixTime, entry: &AuditEntry) -> Vec<KeyId> = crate::service_accounts::delete;

    fn insert_key(key: &KeyRecord, entry: &AuditEntry) -> () = crate::keys::create;
    /// Stores many keys with one audit entry (bulk seeding for benchmarks).
    fn insert_keys(keys: &[KeyRecord], entry: &AuditEntry) -> () = crate::keys::create_many;
    fn rename_key(id: &KeyId, name: &str, entry: &AuditEntry) -> () = crate::keys::rename;
    /// Suspends a live key; `false` when it was suspended already.
    fn suspend_key(id: &KeyId, suspension: &crate::Suspension, entry: &AuditEntry) -> bool = crate::keys::suspend;
    /// Lifts a key's suspension; `false` when it was not suspended.
    fn lift_key_suspension(id: &KeyId, entry: &AuditEntry) -> bool = crate::keys::lift_suspension;
    /// Revokes a live key. A key that is already revoked is left as it is (`Conflict`).
    fn revoke_key(id: &KeyId, at: UnixTime, entry: &AuditEntry) -> () = crate::keys::revoke;
    /// Revokes an owner's admin key unless it is the organization's last active one (the count
    /// and the revocation are one transaction, so two at once cannot both pass). `false`
    /// (nothing changed) when it is the last.
    fn revoke_owner_admin_key(org: &OrgId, id: &KeyId, at: UnixTime, entry: &AuditEntry) -> bool = crate::keys::revoke_owner_admin;
    fn set_key_expiry(id: &KeyId, at: Option<UnixTime>, entry: &AuditEntry) -> () = crate::keys::set_expiry;
    /// Writes the successor of `old` and gives `old` its end of grace. `Conflict` if `old` was
    /// revoked or rotated in the meantime.
    fn rotate_key(old: &KeyId, old_expires_at: UnixTime, successor: &KeyRecord, entries: &[AuditEntry]) -> () = crate::keys::rotate;
    /// Writes a batch of last-used times, never moving one backwards. Not in the change log:
    /// they change nothing authentication depends on.
    fn touch_keys(used: &[(KeyId, UnixTime)]) -> () = crate::keys::touch;

    /// Creates or replaces the rule for `rule.holder` and `rule.model`.
    fn set_rate_limit(org: &OrgId, rule: &LimitRule, entry: &AuditEntry) -> () = crate::rate_limits::set;
    /// Removes the rule for a holder and model; `false` if there was none.
    fn remove_rate_limit(holder: &Holder, model: &ModelPattern, entry: &AuditEntry) -> bool = crate::rate_limits::remove;

    /// Creates or replaces the budget of `budget.holder` (its `id` is ignored); returns it as
    /// stored.
    fn set_budget(org: &OrgId, budget: &Budget, entry: &AuditEntry) -> Budget = crate::budgets::set;
    /// Removes a holder's budget; `false` if there was none.
    fn remove_budget(holder: &Holder, entry: &AuditEntry) -> bool = crate::budgets::remove;
    /// Claims an alert: `true` (and the audit entry written) only for the first caller for this
    /// budget, period and threshold, so each alert is sent once.
    fn claim_budget_alert(budget_id: i64, period_start: UnixTime, threshold_permille: u32, spent: MicroUsd, entry: &AuditEntry) -> bool = crate::budgets::claim_alert;

    /// Writes a batch of usage events and folds them into the daily roll-up. An event whose
    /// request id is already stored is skipped, so a retried batch counts once.
    fn record_usage(events: &[UsageEvent]) -> () = crate::usage::record;
    /// Deletes up to `limit` usage events made before `before`, oldest first (retention); the
    /// daily roll-up keeps their sums. How many were deleted.
    fn prune_usage(before: UnixTime, limit: i64) -> u64 = crate::usage::prune;
}
