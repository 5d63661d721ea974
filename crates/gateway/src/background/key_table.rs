//! Every key of the store, in memory, in a compact form: what authentication and admission
//! need of a key (its hash, id, organization and project, kind, permissions, lifetimes and
//! allow-lists), with a project's part and the organization's id shared by all their keys.
//! Names, owners, creators and times the gateway never reads stay in the store. Keys are
//! loaded one row at a time, so start-up never holds every row and every key at once.
//!
//! Measured with `bench/memory.sh` (100,000 keys, RSS after start): 164 MiB with every key's
//! full record loaded at once; 68.1 MiB in this form with a map from hash to key and each
//! key's allow-lists inline (anonymous memory 50.6 MiB); 59.9 MiB (43.5) with the table of
//! keys and the lists boxed only when a key has any (2026-12-07, bench/README.md).

use hashbrown::HashTable;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{KeyHash, KeyId, KeyKind, OrgId, Permissions, ProjectId, UnixTime};
use tollgate_store::{AuthKey, ChangedEntity, ProjectStatus, Store, StoreError};

/// What a project contributes to its keys' authentication, shared by all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectGate {
    pub id: ProjectId,
    pub status: Option<ProjectStatus>,
    pub allowed_ips: IpAllowList,
    pub allowed_models: ModelAllowList,
}

/// A key as the gateway holds it.
#[derive(Debug, PartialEq, Eq)]
pub struct LiveKey {
    pub id: KeyId,
    pub hash: KeyHash,
    pub org_id: Arc<OrgId>,
    /// `None` for admin keys.
    pub project: Option<Arc<ProjectGate>>,
    pub kind: KeyKind,
    pub permissions: Permissions,
    /// The key as it may be shown (`sk-...abcd`).
    pub redacted: Box<str>,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    /// The key's own allow-lists, boxed and only when it has any: most keys have none, and
    /// two empty lists inline cost every key 64 bytes.
    lists: Option<Box<KeyLists>>,
    /// Why the key is suspended, while it is.
    pub suspended: Option<Box<str>>,
}

/// A key's own allow-lists.
#[derive(Debug, Default, PartialEq, Eq)]
struct KeyLists {
    ips: IpAllowList,
    models: ModelAllowList,
}

/// The lists of a key that has none.
static OPEN: std::sync::LazyLock<KeyLists> = std::sync::LazyLock::new(KeyLists::default);

impl LiveKey {
    /// The addresses the key accepts requests from (empty: every address).
    pub fn allowed_ips(&self) -> &IpAllowList {
        &self.lists.as_deref().unwrap_or(&OPEN).ips
    }

    /// The models the key may use (empty: every model).
    pub fn allowed_models(&self) -> &ModelAllowList {
        &self.lists.as_deref().unwrap_or(&OPEN).models
    }

    pub fn project_id(&self) -> Option<&ProjectId> {
        self.project.as_ref().map(|p| &p.id)
    }

    pub fn status(&self, now: UnixTime) -> tollgate_core::lifecycle::KeyStatus {
        tollgate_core::lifecycle::KeyState {
            revoked_at: self.revoked_at,
            expires_at: self.expires_at,
            rotated_to: None,
        }
        .status(now)
    }
}

/// How many change-log rows one poll reads at most.
const CHANGE_BATCH: i64 = 1_000;

/// What one read of the change log found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    pub changes: usize,
    pub limits_changed: bool,
}

/// Where a key's hash goes in the table: its first eight bytes (an HMAC's output is uniform).
fn slot(hash: &KeyHash) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = hash.0;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

#[derive(Default)]
struct Entries {
    /// The hash is a key's one index: nothing in the store ever rewrites a key's hash (it is
    /// made from the key, as the id is), so an upsert replaces the entry under it. Finding a
    /// key by id, to remove one whose row is gone (rare, and done by the follower off the
    /// request path), scans. An index by id cost ~100 bytes a key.
    ///
    /// A table of the keys themselves (8 bytes a slot), hashed by the first bytes of their
    /// keyed hash, which are uniform and which no one can choose without the server secret: a
    /// map from hash to key held each hash twice (40 bytes a slot) and hashed it again.
    by_hash: HashTable<Arc<LiveKey>>,
    /// The shared parts, one of each.
    orgs: HashMap<OrgId, Arc<OrgId>>,
    projects: HashMap<ProjectId, Arc<ProjectGate>>,
}

impl Entries {
    /// Adds or replaces a key.
    fn insert(&mut self, key: AuthKey) {
        let key = Arc::new(self.live(key));
        match self
            .by_hash
            .entry(slot(&key.hash), |k| k.hash == key.hash, |k| slot(&k.hash))
        {
            hashbrown::hash_table::Entry::Occupied(mut found) => *found.get_mut() = key,
            hashbrown::hash_table::Entry::Vacant(free) => {
                free.insert(key);
            }
        }
    }

    fn get(&self, hash: &KeyHash) -> Option<&Arc<LiveKey>> {
        self.by_hash.find(slot(hash), |k| k.hash == *hash)
    }

    /// The key in its compact form, with the shared parts it names (a project whose part
    /// changed gets the new one, which every key of it upserted after shares).
    fn live(&mut self, key: AuthKey) -> LiveKey {
        let AuthKey {
            key: record,
            suspension,
            project_status,
            project_allowed_ips,
            project_allowed_models,
        } = key;
        let org_id = self
            .orgs
            .entry(record.org_id.clone())
            .or_insert_with(|| Arc::new(record.org_id))
            .clone();
        let project = record.project_id.map(|id| {
            let gate = ProjectGate {
                id,
                status: project_status,
                allowed_ips: project_allowed_ips,
                allowed_models: project_allowed_models,
            };
            match self.projects.get(&gate.id) {
                Some(shared) if **shared == gate => shared.clone(),
                _ => {
                    let shared = Arc::new(gate);
                    self.projects.insert(shared.id.clone(), shared.clone());
                    shared
                }
            }
        });
        let lists = KeyLists {
            ips: record.allowed_ips,
            models: record.allowed_models,
        };
        LiveKey {
            id: record.id,
            hash: record.hash,
            org_id,
            project,
            kind: record.kind,
            permissions: record.permissions,
            redacted: record.redacted.into_boxed_str(),
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            // Compared whole, not by emptiness: a list that could not be read denies all.
            lists: (lists != KeyLists::default()).then(|| Box::new(lists)),
            suspended: suspension.map(|s| s.reason.into_boxed_str()),
        }
    }
}

/// Every key of the store, in memory, looked up by keyed hash, kept current by the change-log
/// follower (its only writer). A key that is not here yet (created a moment ago) is looked up
/// in the store, within a rate cap, and makes the follower catch up at once (see
/// `key_lookup`).
#[derive(Default)]
pub struct KeyTable {
    entries: RwLock<Entries>,
    /// The last change-log sequence number applied.
    applied: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("keys", &self.len())
            .finish()
    }
}

impl KeyTable {
    /// Loads every key. The change-log position is read first, so a change that lands while
    /// loading is applied again by the follower rather than missed.
    pub async fn load(store: &Store) -> Result<KeyTable, StoreError> {
        let position = store.latest_change().await?;
        let table = KeyTable::default();
        store
            .each_auth_key(|key| table.write(|e| e.insert(key)))
            .await?;
        table.write(|e| e.by_hash.shrink_to_fit(|k| slot(&k.hash)));
        table
            .applied
            .store(position, std::sync::atomic::Ordering::SeqCst);
        Ok(table)
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Arc<LiveKey>> {
        self.read(|e| e.get(hash).cloned())
    }

    pub fn len(&self) -> usize {
        self.read(|e| e.by_hash.len())
    }

    /// Live keys (not revoked) that expire after `from` and no later than `until`.
    pub fn expiring(&self, from: UnixTime, until: UnixTime) -> Vec<Arc<LiveKey>> {
        self.read(|e| {
            e.by_hash
                .iter()
                .filter(|k| k.revoked_at.is_none())
                .filter(|k| k.expires_at.is_some_and(|at| at > from && at <= until))
                .cloned()
                .collect()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read<T>(&self, f: impl FnOnce(&Entries) -> T) -> T {
        match self.entries.read() {
            Ok(guard) => f(&guard),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        match self.entries.write() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn upsert(&self, key: AuthKey) {
        self.write(|e| {
            e.insert(key);
        });
    }

    pub fn remove(&self, id: &KeyId) {
        self.write(|e| {
            e.by_hash.retain(|key| key.id != *id);
        });
    }

    /// Reads the change log past the last applied position and applies the changes to keys,
    /// stopping right after a change to limits or budgets (which the caller reloads before
    /// calling again). Returns how many changes were applied and whether it stopped so.
    pub async fn catch_up(&self, store: &Store) -> Result<CatchUp, StoreError> {
        let mut applied = CatchUp::default();
        loop {
            let from = self.applied.load(std::sync::atomic::Ordering::SeqCst);
            let changes = store.changes_after(from, CHANGE_BATCH).await?;
            if changes.is_empty() {
                return Ok(applied);
            }
            for change in &changes {
                // After changes to limits, stop before the next other change: the caller
                // reloads the limits first (so a key created with limits never works without
                // them), then calls again. A run of limit changes costs one reload.
                if applied.limits_changed && change.entity != ChangedEntity::Limits {
                    return Ok(applied);
                }
                match &change.entity {
                    ChangedEntity::Key(id) => match store.auth_key(id).await? {
                        Some(key) => self.upsert(key),
                        None => self.remove(id),
                    },
                    ChangedEntity::Project(id) => {
                        for key in store.auth_keys_of_project(id).await? {
                            self.upsert(key);
                        }
                    }
                    ChangedEntity::Limits => applied.limits_changed = true,
                }
                applied.changes += 1;
                self.applied
                    .store(change.seq, std::sync::atomic::Ordering::SeqCst);
            }
            if applied.limits_changed || changes.len() < CHANGE_BATCH as usize {
                return Ok(applied);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{KeyFormat, KeyHasher, ServerSecret};
    use tollgate_store::{KeyOwner, KeyRecord};

    fn key(project: &str, archived: bool) -> AuthKey {
        let secret = KeyFormat::default().generate(KeyKind::Project);
        let hasher =
            KeyHasher::new(ServerSecret::new(vec![7; 32]).unwrap_or_else(|e| panic!("{e:?}")));
        AuthKey {
            key: KeyRecord {
                id: secret.id(),
                org_id: OrgId::from_trusted("org-test".into()),
                project_id: Some(ProjectId::from_trusted(project.into())),
                kind: KeyKind::Project,
                name: "a name the gateway never reads".into(),
                hash: hasher.hash(&secret),
                hash_version: 1,
                redacted: secret.redacted(),
                owner: KeyOwner::User(tollgate_core::UserId::from_trusted("user_x".into())),
                permissions: Permissions::All,
                created_by: "cli:test".into(),
                created_at: UnixTime(1),
                last_used_at: None,
                expires_at: None,
                revoked_at: None,
                rotated_from: None,
                rotated_to: None,
                allowed_ips: IpAllowList::default(),
                allowed_models: ModelAllowList::default(),
            },
            suspension: None,
            project_status: archived.then_some(ProjectStatus::Archived),
            project_allowed_ips: IpAllowList::default(),
            project_allowed_models: ModelAllowList::default(),
        }
    }

    #[test]
    fn keys_are_found_by_hash_replaced_in_place_and_removed_with_their_lists() {
        let table = KeyTable::default();
        let open = key("proj_a", false);
        let mut listed = key("proj_a", false);
        listed.key.allowed_ips =
            IpAllowList::parse(&["10.0.0.0/8".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        listed.key.allowed_models = ModelAllowList::new(&["gpt-4o*".to_owned()]);
        let mut unreadable = key("proj_a", false);
        unreadable.key.allowed_ips = IpAllowList::from_json("not json");
        unreadable.key.allowed_models = ModelAllowList::from_json("not json");
        let (open_hash, listed_hash, unreadable_hash) =
            (open.key.hash, listed.key.hash, unreadable.key.hash);
        let listed_id = listed.key.id.clone();
        for k in [open, listed, unreadable] {
            table.upsert(k);
        }
        assert_eq!(table.len(), 3);
        let ip = |text: &str| text.parse().unwrap_or_else(|e| panic!("{e}"));

        let found = table.get(&open_hash).unwrap_or_else(|| panic!("open key"));
        assert!(found.allowed_ips().allows(ip("192.0.2.1")));
        assert!(found.allowed_models().allows("o3"));

        let found = table
            .get(&listed_hash)
            .unwrap_or_else(|| panic!("listed key"));
        assert!(found.allowed_ips().allows(ip("10.1.2.3")));
        assert!(!found.allowed_ips().allows(ip("192.0.2.1")));
        assert!(found.allowed_models().allows("gpt-4o-mini"));
        assert!(!found.allowed_models().allows("o3"));

        // A stored list that could not be read allows nothing, though it lists nothing.
        let found = table
            .get(&unreadable_hash)
            .unwrap_or_else(|| panic!("unreadable key"));
        assert!(!found.allowed_ips().allows(ip("192.0.2.1")));
        assert!(!found.allowed_models().allows("o3"));

        // The same hash again replaces the entry: revoked now, still one entry.
        let mut again = key("proj_a", false);
        again.key.hash = listed_hash;
        again.key.id = listed_id.clone();
        again.key.revoked_at = Some(UnixTime(5));
        table.upsert(again);
        assert_eq!(table.len(), 3);
        let found = table
            .get(&listed_hash)
            .unwrap_or_else(|| panic!("replaced key"));
        assert_eq!(found.revoked_at, Some(UnixTime(5)));
        assert!(
            found.allowed_ips().allows(ip("192.0.2.1")),
            "its lists went with it"
        );

        table.remove(&listed_id);
        assert!(table.get(&listed_hash).is_none());
        assert!(table.get(&open_hash).is_some());
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn keys_nearing_expiry_are_the_live_ones_expiring_in_the_window() {
        let table = KeyTable::default();
        let at = |key: &mut AuthKey, expires: Option<i64>, revoked: Option<i64>| {
            key.key.expires_at = expires.map(UnixTime);
            key.key.revoked_at = revoked.map(UnixTime);
        };
        let mut soon = key("proj_a", false);
        at(&mut soon, Some(1_300), None);
        let soon_id = soon.key.id.clone();
        let mut revoked = key("proj_a", false);
        at(&mut revoked, Some(1_200), Some(900));
        let mut later = key("proj_a", false);
        at(&mut later, Some(9_000), None);
        let mut past = key("proj_a", false);
        at(&mut past, Some(999), None);
        let never = key("proj_a", false);
        for k in [soon, revoked, later, past, never] {
            table.upsert(k);
        }
        let found: Vec<KeyId> = table
            .expiring(UnixTime(1_000), UnixTime(2_000))
            .iter()
            .map(|k| k.id.clone())
            .collect();
        assert_eq!(found, vec![soon_id]);
    }

    #[test]
    fn keys_share_their_organization_and_project_and_a_changed_project_is_taken_up() {
        let table = KeyTable::default();
        let (a, b, other) = (
            key("proj_a", false),
            key("proj_a", false),
            key("proj_b", false),
        );
        let (ha, hb, ho) = (a.key.hash, b.key.hash, other.key.hash);
        table.upsert(a.clone());
        table.upsert(b.clone());
        table.upsert(other);
        let get = |h: &KeyHash| table.get(h).unwrap_or_else(|| panic!("missing"));
        assert!(
            Arc::ptr_eq(&get(&ha).org_id, &get(&ho).org_id),
            "one organization id"
        );
        let (pa, pb) = (get(&ha).project.clone(), get(&hb).project.clone());
        assert!(pa.is_some() && pb.is_some());
        assert!(
            Arc::ptr_eq(
                &pa.unwrap_or_else(|| unreachable!()),
                &pb.unwrap_or_else(|| unreachable!())
            ),
            "one project part for both keys"
        );
        // The project is archived: its keys, upserted again, share the new part.
        let mut archived_a = a;
        archived_a.project_status = Some(ProjectStatus::Archived);
        let mut archived_b = b;
        archived_b.project_status = Some(ProjectStatus::Archived);
        table.upsert(archived_a);
        table.upsert(archived_b);
        for h in [&ha, &hb] {
            assert_eq!(
                get(h).project.as_ref().and_then(|p| p.status),
                Some(ProjectStatus::Archived)
            );
        }
        assert_eq!(get(&ho).project.as_ref().and_then(|p| p.status), None);
        assert_eq!(table.len(), 3, "upserts replace");
        table.remove(&get(&hb).id.clone());
        assert!(table.get(&hb).is_none());
        assert_eq!(table.len(), 2);
    }
}
