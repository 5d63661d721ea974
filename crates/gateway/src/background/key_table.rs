use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tollgate_core::{KeyHash, KeyId};
use tollgate_store::{AuthKey, ChangedEntity, Store, StoreError};

/// How many change-log rows one poll reads at most.
const CHANGE_BATCH: i64 = 1_000;

/// What one read of the change log found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    pub changes: usize,
    pub limits_changed: bool,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<KeyHash, Arc<AuthKey>>,
    hash_of: HashMap<KeyId, KeyHash>,
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
        for key in store.auth_keys().await? {
            table.upsert(key);
        }
        table
            .applied
            .store(position, std::sync::atomic::Ordering::SeqCst);
        Ok(table)
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Arc<AuthKey>> {
        self.read(|e| e.by_hash.get(hash).cloned())
    }

    pub fn len(&self) -> usize {
        self.read(|e| e.by_hash.len())
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
        let id = key.key.id.clone();
        let hash = key.key.hash;
        self.write(|e| {
            if let Some(old) = e.hash_of.insert(id, hash) {
                if old != hash {
                    e.by_hash.remove(&old);
                }
            }
            e.by_hash.insert(hash, Arc::new(key));
        });
    }

    pub fn remove(&self, id: &KeyId) {
        self.write(|e| {
            if let Some(hash) = e.hash_of.remove(id) {
                e.by_hash.remove(&hash);
            }
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
