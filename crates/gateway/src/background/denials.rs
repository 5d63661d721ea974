//! Audit entries for requests refused by an IP allow-list: at most one per key and list per
//! minute, written off the request path, so a flood of refused requests cannot flood the log.

use crate::background::key_table::LiveKey;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use tokio::runtime::Handle;
use tollgate_core::{AuditId, KeyId, UnixTime};
use tollgate_store::{Actor, AuditEntry, Store};

/// Shortest time between two entries for the same key and list.
const EVERY_SECONDS: i64 = 60;

#[derive(Debug)]
pub struct IpDenials {
    last: Mutex<HashMap<(KeyId, &'static str), UnixTime>>,
    /// Where the entries are written from: the gateway's own runtime, which outlives the
    /// serving threads.
    background: Handle,
}

impl IpDenials {
    /// Writes its entries from the current runtime.
    pub fn new() -> IpDenials {
        IpDenials {
            last: Mutex::default(),
            background: Handle::current(),
        }
    }

    /// Records that `key` was refused from `ip` by the `list` ("project" or "API key"), unless
    /// an entry for the same key and list was written less than a minute ago.
    pub fn record(
        &self,
        store: &Store,
        key: &LiveKey,
        ip: Option<IpAddr>,
        list: &'static str,
        now: UnixTime,
    ) {
        let record = key;
        {
            let mut last = match self.last.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let slot = (record.id.clone(), list);
            if last
                .get(&slot)
                .is_some_and(|at| now.seconds() - at.seconds() < EVERY_SECONDS)
            {
                return;
            }
            last.insert(slot, now);
        }
        let entry = AuditEntry {
            id: AuditId::generate(),
            org_id: tollgate_core::OrgId::clone(&record.org_id),
            event_type: "ip_allowlist.request_denied".into(),
            actor: Actor {
                kind: "api_key".into(),
                id: record.id.to_string(),
            },
            project_id: record.project_id().cloned(),
            resource_id: Some(record.id.to_string()),
            data: serde_json::json!({"client_ip": ip.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into()), "list": list, "redacted_value": record.redacted}),
            created_at: now,
        };
        let store = store.clone();
        self.background.spawn(async move {
            if let Err(err) = store.record_audit(&entry).await {
                tracing::warn!(error = %err, "could not write the audit entry for a refused address");
            }
        });
    }
}
