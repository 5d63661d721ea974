//! The ownership ledger as the data plane reads it: which project owns an object a provider
//! keeps behind a shared credential (see `tollgate_core::objects`). A leaf: the request path
//! asks it, the metering writer tells it what is stored.
//!
//! - **Records ride with usage events.** A create call's object goes into its request's usage
//!   event, so it is spooled before the answer's last bytes go out and stored with the event
//!   (exactly once, replayed after a crash) — no database write on the request path. Until the
//!   writer has stored it, this process keeps it here as *pending*, so the project can use
//!   the object the moment it has its id.
//! - **Lookups.** An id is looked up here first, then in the store (one primary-key read);
//!   owners found are cached (ownership never changes; a deleted object's entry is dropped).
//!   The cache is bounded: past [`CACHE_ENTRIES`], the cached (not the pending) entries go.
//! - **Replicas.** Another process sees an object once the writer has stored it (its batch
//!   linger, 50 ms by default); a request there in between gets a 404 it can retry.

use std::collections::HashMap;
use std::sync::Mutex;
use tollgate_core::objects::ObjectKind;
use tollgate_core::{OrgId, ProjectId};
use tollgate_store::{CreatedObject, ProviderObject, Store, StoreError, UsageEvent};

/// Most owners kept in memory besides the pending ones.
pub const CACHE_ENTRIES: usize = 100_000;

/// What happens to an object the ledger has never seen (one made at the provider before
/// Tollgate, or around it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UnknownObjects {
    /// Nobody reaches it through Tollgate: 404, and left out of lists.
    #[default]
    Hide,
    /// It belongs to this project, and is recorded as its own when the project first names or
    /// lists it.
    AdoptInto(ProjectId),
}

#[derive(Debug, Clone)]
struct Entry {
    project: ProjectId,
    /// Recorded by this process, not yet stored.
    pending: bool,
}

/// See the module's documentation.
#[derive(Debug)]
pub struct Ledger {
    store: Store,
    unknown: UnknownObjects,
    owners: Mutex<HashMap<(String, String), Entry>>,
}

impl Ledger {
    pub fn new(store: Store, unknown: UnknownObjects) -> Ledger {
        Ledger {
            store,
            unknown,
            owners: Mutex::new(HashMap::new()),
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remember(&self, provider: &str, id: &str, project: &ProjectId, pending: bool) {
        let mut owners = self.owners();
        if owners.len() >= CACHE_ENTRIES {
            owners.retain(|_, entry| entry.pending);
        }
        let entry = owners
            .entry((provider.to_owned(), id.to_owned()))
            .or_insert_with(|| Entry {
                project: project.clone(),
                pending,
            });
        entry.pending |= pending;
    }

    /// Whether `project` owns the object, by the ledger (adopting it into the project that
    /// takes unknown objects, when it is that one and the ledger has never seen it).
    pub async fn owns(
        &self,
        provider: &str,
        kind: ObjectKind,
        id: &str,
        (org, project): (&OrgId, &ProjectId),
    ) -> Result<bool, StoreError> {
        let cached = self
            .owners()
            .get(&(provider.to_owned(), id.to_owned()))
            .map(|entry| entry.project.clone());
        let owner = match cached {
            Some(owner) => Some(owner),
            None => match self.store.provider_object(provider, id).await? {
                Some(object) => {
                    self.remember(provider, id, &object.project_id, false);
                    Some(object.project_id)
                }
                None => None,
            },
        };
        match owner {
            Some(owner) => Ok(&owner == project),
            None => {
                self.adopt_unknown(provider, &[(kind, id)], (org, project))
                    .await
            }
        }
    }

    /// Adopts objects the ledger has never seen when `project` takes unknown objects; whether
    /// it does.
    async fn adopt_unknown(
        &self,
        provider: &str,
        objects: &[(ObjectKind, &str)],
        (org, project): (&OrgId, &ProjectId),
    ) -> Result<bool, StoreError> {
        if self.unknown != UnknownObjects::AdoptInto(project.clone()) || objects.is_empty() {
            return Ok(false);
        }
        let now = tollgate_core::UnixTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        let records: Vec<ProviderObject> = objects
            .iter()
            .map(|(kind, id)| ProviderObject {
                provider: provider.to_owned(),
                object_id: (*id).to_owned(),
                kind: *kind,
                org_id: org.clone(),
                project_id: project.clone(),
                key_id: None,
                created_at: now,
            })
            .collect();
        self.store.record_provider_objects(&records).await?;
        for (_, id) in objects {
            self.remember(provider, id, project, false);
        }
        Ok(true)
    }

    /// Which of `ids` (one page of a provider's list) belong to `project`, in their order.
    pub async fn keep_owned<'a>(
        &self,
        provider: &str,
        kind: ObjectKind,
        ids: &[&'a str],
        (org, project): (&OrgId, &ProjectId),
    ) -> Result<Vec<&'a str>, StoreError> {
        let mut owner: HashMap<&str, ProjectId> = HashMap::new();
        let mut missing = Vec::new();
        {
            let owners = self.owners();
            for id in ids {
                match owners.get(&(provider.to_owned(), (*id).to_owned())) {
                    Some(entry) => {
                        owner.insert(id, entry.project.clone());
                    }
                    None => missing.push(*id),
                }
            }
        }
        for object in self
            .store
            .provider_objects_among(provider, &missing)
            .await?
        {
            if let Some(id) = missing.iter().find(|id| **id == object.object_id) {
                self.remember(provider, id, &object.project_id, false);
                owner.insert(id, object.project_id);
            }
        }
        let unknown: Vec<(ObjectKind, &str)> = ids
            .iter()
            .filter(|id| !owner.contains_key(**id))
            .map(|id| (kind, *id))
            .collect();
        let adopted = self
            .adopt_unknown(provider, &unknown, (org, project))
            .await?;
        Ok(ids
            .iter()
            .filter(|id| match owner.get(**id) {
                Some(owner) => owner == project,
                None => adopted,
            })
            .copied()
            .collect())
    }

    /// Objects a request's answer made, known to this process at once (they are stored with
    /// the request's usage event).
    pub fn made(&self, project: &ProjectId, objects: &[CreatedObject]) {
        for object in objects {
            self.remember(&object.provider, &object.id, project, true);
        }
    }

    /// Records objects now, in the store (a list page naming files its batches made).
    pub async fn record_now(&self, objects: Vec<ProviderObject>) -> Result<(), StoreError> {
        if objects.is_empty() {
            return Ok(());
        }
        self.store.record_provider_objects(&objects).await?;
        for object in &objects {
            self.remember(
                &object.provider,
                &object.object_id,
                &object.project_id,
                false,
            );
        }
        Ok(())
    }

    /// The metering writer stored these events: their objects are in the store now.
    pub fn stored(&self, events: &[UsageEvent]) {
        if events.iter().all(|e| e.objects.is_empty()) {
            return;
        }
        let mut owners = self.owners();
        for event in events {
            for object in &event.objects {
                if let Some(entry) = owners.get_mut(&(object.provider.clone(), object.id.clone())) {
                    entry.pending = false;
                }
            }
        }
    }

    /// Writes an audit entry about the ledger (an object that could not be recorded).
    pub async fn audit(&self, entry: &tollgate_store::AuditEntry) -> Result<(), StoreError> {
        self.store.record_audit(entry).await
    }

    /// The provider deleted the object.
    pub async fn forget(&self, provider: &str, id: &str) -> Result<(), StoreError> {
        self.owners().remove(&(provider.to_owned(), id.to_owned()));
        self.store.forget_provider_object(provider, id).await
    }
}
