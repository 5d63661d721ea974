//! Keys nearing expiry: every `key_expiry_check` (ten minutes by default; and at start), each live key that expires within the
//! warning period is announced once: an `api_key.expiring` audit entry and a signed event to
//! the alert webhooks, so its owner can rotate it before clients start failing. Once per key and
//! expiry: a key given a new expiry is announced again. Replicas each look; the audit log says
//! whether a key was announced already (two replicas looking in the same instant may both
//! announce; webhook receivers drop repeats by the event id, which is the same).

use crate::background::key_table::KeyTable;
use crate::background::webhooks;
use crate::settings::AlertSettings;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tollgate_core::{AuditId, Clock, OrgId, UnixTime};
use tollgate_store::{Actor, AuditEntry, Store};

/// The alerts' settings and state.
pub struct ExpiryAlerts {
    pub store: Store,
    pub keys: Arc<KeyTable>,
    pub org: OrgId,
    pub clock: Arc<dyn Clock>,
    pub alerts: AlertSettings,
    /// How long before expiry a key is announced.
    pub warn_before: Duration,
    pub every: Duration,
    /// Looks done so far (tests wait on it).
    pub looks: Arc<AtomicU64>,
}

impl ExpiryAlerts {
    /// Looks at once, then every `every`, until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let client = webhooks::client(&self.alerts);
        let settings = Arc::new(self.alerts.clone());
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            self.look(&client, &settings).await;
            self.looks.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn look(&self, client: &reqwest::Client, settings: &Arc<AlertSettings>) {
        let now = self.clock.now();
        let until = UnixTime(now.seconds() + self.warn_before.as_secs() as i64);
        for key in self.keys.expiring(now, until) {
            let Some(expires_at) = key.expires_at else {
                continue;
            };
            // Only this key's expiry announcements are read: other entries about it (its
            // refusals, say) never push an announcement out of sight.
            let query = tollgate_store::AuditQuery {
                event_types: vec!["api_key.expiring".into()],
                resource_ids: vec![key.id.to_string()],
                limit: 100,
                ..Default::default()
            };
            let announced = match self.store.audit_page(&self.org, &query).await {
                Ok(entries) => entries
                    .iter()
                    .any(|e| e.data["expires_at"].as_i64() == Some(expires_at.seconds())),
                Err(err) => {
                    tracing::warn!(error = %err, "could not check which keys were announced as expiring");
                    return;
                }
            };
            if announced {
                continue;
            }
            let project = key.project.as_ref().map(|p| p.id.to_string());
            let data = json!({
                "key_id": key.id.to_string(),
                "redacted_value": &*key.redacted,
                "project_id": project,
                "expires_at": expires_at.seconds(),
                "expires_in_seconds": expires_at.seconds() - now.seconds(),
            });
            let entry = AuditEntry {
                id: AuditId::generate(),
                org_id: self.org.clone(),
                event_type: "api_key.expiring".into(),
                actor: Actor::system(),
                project_id: key.project.as_ref().map(|p| p.id.clone()),
                resource_id: Some(key.id.to_string()),
                data: data.clone(),
                created_at: now,
            };
            if let Err(err) = self.store.record_audit(&entry).await {
                tracing::warn!(error = %err, key = %key.id, "could not record a key nearing expiry");
                continue;
            }
            tracing::info!(key = %key.id, expires_at = %expires_at.rfc3339(), "a key expires soon");
            let event = json!({
                "id": format!("evt_expiring_{}_{}", key.id, expires_at.seconds()),
                "object": "event",
                "type": "api_key.expiring",
                "created_at": now.seconds(),
                "data": data,
            });
            webhooks::post_event(client, settings, &self.clock, &event, "key expiry alert");
        }
    }
}
