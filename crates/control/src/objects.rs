//! A project's objects at its provider, from the ownership ledger: what the admin API and the
//! CLI list, and adoption of objects made before Tollgate (or around it) into a project.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::objects::{is_object_id, ObjectKind};
use tollgate_store::{Actor, ProviderObject};

/// Most objects one adoption takes.
pub const MAX_ADOPTED: usize = 1_000;

impl Control {
    /// A project's (id or name) objects in the ledger, newest first: `limit` (1 to 1,000)
    /// after the object `after` names, of one kind or all.
    pub async fn project_objects(
        &self,
        project: &str,
        kind: Option<ObjectKind>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ProviderObject>> {
        let project = self.project(project).await?;
        Ok(self
            .store
            .project_objects(&project.id, kind, after, limit.clamp(1, 1_000))
            .await?)
    }

    /// Records objects made at `provider` outside Tollgate as the project's (id or name).
    /// Each id's kind comes from its shape (`file-…`, `batch_…`, …). An object the ledger
    /// already has keeps its owner; the answer says, per id, whether it was adopted.
    pub async fn adopt_objects(
        &self,
        actor: &Actor,
        project: &str,
        provider: &str,
        ids: &[String],
    ) -> Result<Vec<(String, bool)>> {
        if ids.is_empty() || ids.len() > MAX_ADOPTED {
            return Err(ControlError::Invalid(format!(
                "give 1 to {MAX_ADOPTED} object ids to adopt"
            )));
        }
        if provider.trim().is_empty() {
            return Err(ControlError::Invalid("the provider's name is empty".into()));
        }
        let org = self.organization().await?;
        let project = self.active_project(project).await?;
        let now = self.clock.now();
        let mut objects = Vec::with_capacity(ids.len());
        for id in ids {
            let kind = ObjectKind::of_id(id).filter(|_| is_object_id(id)).ok_or_else(|| {
                ControlError::Invalid(format!(
                    "`{id}` is not an object id Tollgate knows (file-, upload_, batch_, vs_, ftjob-, resp_, chatcmpl-, conv_, cntr_, eval_)"
                ))
            })?;
            objects.push(ProviderObject {
                provider: provider.to_owned(),
                object_id: id.clone(),
                kind,
                org_id: org.id.clone(),
                project_id: project.id.clone(),
                key_id: None,
                created_at: now,
            });
        }
        let entry = self.audit_entry(
            &org,
            actor,
            "provider_objects.adopted",
            Some(&project.id),
            project.id.as_str(),
            json!({"provider": provider, "ids": ids}),
        );
        let adopted = self.store.adopt_provider_objects(&objects, &entry).await?;
        Ok(ids.iter().cloned().zip(adopted).collect())
    }
}
