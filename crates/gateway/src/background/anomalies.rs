//! Suspicious-use detection, off the request path: every metered request and every refused
//! request naming an existing key is handed (without waiting: a full queue drops it and counts
//! it) to one task that keeps [`Watch`] and turns what stands out into an `api_key.anomaly`
//! audit entry and a signed `api_key.anomaly` webhook event. A new address on a key whose
//! rotation has begun is reported as `new_address_after_rotation`: the old key should be
//! fading out, not turning up somewhere new.
//!
//! A finding the [`SuspendPolicy`] names suspends the key at once (`api_key.suspended` in the
//! audit log; the key gets 401 saying so, on every replica through the change log, until an
//! owner lifts it).
//!
//! Each replica watches the requests it serves (a spike split evenly over N replicas shows
//! on each at 1/N; new addresses and refusal bursts show where they land).

use crate::background::key_table::KeyTable;
use crate::background::webhooks;
use crate::settings::{AlertSettings, SuspendPolicy};
use serde_json::json;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tollgate_core::anomaly::{Anomaly, Thresholds, Watch};
use tollgate_core::{AuditId, Clock, KeyId, MicroUsd, OrgId, ProjectId, UnixTime};
use tollgate_store::{Actor, AuditEntry, Store};

/// Observations waiting for the task; more are dropped (and counted).
const QUEUE: usize = 65_536;

/// How long the task gathers observations after the first before judging them: under load it
/// wakes at most this often, not once a request (woken for each, it cost the server 77 µs of
/// CPU a request at saturation against 59-65 µs gathered: wrk, 32 connections, 2 cores), and a
/// finding is at most this late.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

enum Observation {
    Used {
        key: KeyId,
        project: Option<ProjectId>,
        address: Option<IpAddr>,
        cost: MicroUsd,
        at: UnixTime,
    },
    Refused {
        key: KeyId,
        project: Option<ProjectId>,
        address: Option<IpAddr>,
        at: UnixTime,
    },
}

/// Where the request path hands observations; does nothing when detection is off.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    tx: Option<mpsc::Sender<Observation>>,
    dropped: Arc<AtomicU64>,
    /// Observations the task has judged (tests wait on it).
    judged: Arc<AtomicU64>,
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observation")
    }
}

impl Observer {
    /// A metered request.
    ///
    /// `through_client_token`: the request came with one of the key's client tokens, from a
    /// browser or an app anywhere: its address says nothing about where the key is, so only
    /// the key's rates and spend are watched, not its addresses.
    pub fn used(&self, event: &tollgate_store::UsageEvent, through_client_token: bool) {
        let address = match through_client_token {
            true => None,
            false => event.client_ip.as_deref().and_then(|ip| ip.parse().ok()),
        };
        self.send(Observation::Used {
            key: event.key_id.clone(),
            project: Some(event.project_id.clone()),
            address,
            cost: event.cost,
            at: event.created_at,
        });
    }

    /// A request refused although it named an existing key.
    pub fn refused(
        &self,
        key: &KeyId,
        project: Option<&ProjectId>,
        address: Option<IpAddr>,
        at: UnixTime,
    ) {
        self.send(Observation::Refused {
            key: key.clone(),
            project: project.cloned(),
            address,
            at,
        });
    }

    fn send(&self, observation: Observation) {
        if let Some(tx) = &self.tx {
            if tx.try_send(observation).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Observations judged so far.
    pub fn judged(&self) -> u64 {
        self.judged.load(Ordering::SeqCst)
    }
}

/// Starts the task; the observer feeds it.
#[allow(clippy::too_many_arguments)]
pub fn start(
    thresholds: Thresholds,
    suspend: SuspendPolicy,
    keys: Arc<KeyTable>,
    store: Store,
    org: OrgId,
    clock: Arc<dyn Clock>,
    alerts: AlertSettings,
    mut stop: watch::Receiver<bool>,
) -> (Observer, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let observer = Observer {
        tx: Some(tx),
        ..Observer::default()
    };
    let judged = observer.judged.clone();
    let task = tokio::spawn(async move {
        let mut watch = Watch::new(thresholds);
        let client = webhooks::client(&alerts);
        let settings = Arc::new(alerts);
        let context = Context {
            store: &store,
            org: &org,
            clock: &clock,
            client: &client,
            settings: &settings,
            keys: &keys,
            suspend: &suspend,
        };
        loop {
            let first = tokio::select! {
                o = rx.recv() => o,
                _ = stop.changed() => None,
            };
            let Some(first) = first else {
                return;
            };
            // What arrives in the next moment is judged with it: a task woken for each
            // request cost every request a wake-up of another thread.
            tokio::select! {
                _ = tokio::time::sleep(GATHER) => {}
                _ = stop.changed() => return,
            }
            let mut next = Some(first);
            while let Some(observation) = next.take().or_else(|| rx.try_recv().ok()) {
                judge(&mut watch, &context, observation).await;
                judged.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (observer, task)
}

/// Judges one observation and reports what stands out.
async fn judge(watch: &mut Watch, context: &Context<'_>, observation: Observation) {
    let (key, project, found) = match observation {
        Observation::Used {
            key,
            project,
            address,
            cost,
            at,
        } => {
            let found = watch.used(&key, address, cost, at);
            (key, project, found)
        }
        Observation::Refused {
            key,
            project,
            address,
            at,
        } => {
            let found = watch.failed(&key, address, at);
            (key, project, found)
        }
    };
    for anomaly in found {
        report(context, &key, project.as_ref(), &anomaly).await;
    }
}

/// What reporting a finding needs.
struct Context<'a> {
    store: &'a Store,
    org: &'a OrgId,
    clock: &'a Arc<dyn Clock>,
    client: &'a reqwest::Client,
    settings: &'a Arc<AlertSettings>,
    keys: &'a Arc<KeyTable>,
    suspend: &'a SuspendPolicy,
}

async fn report(
    context: &Context<'_>,
    key: &KeyId,
    project: Option<&ProjectId>,
    anomaly: &Anomaly,
) {
    let Context {
        store,
        org,
        clock,
        client,
        settings,
        keys,
        suspend,
    } = *context;
    let mut kind = anomaly.kind();
    if matches!(anomaly, Anomaly::NewAddress { .. }) {
        // A new address on a key being rotated out says more.
        if let Ok(record) = store.key(org, key).await {
            if record.rotated_to.is_some() {
                kind = "new_address_after_rotation";
            }
        }
    }
    let now = clock.now();
    let mut details = match anomaly {
        Anomaly::NewAddress { address, known } => {
            json!({"address": address.to_string(), "addresses_before": known})
        }
        Anomaly::RequestSpike { requests, baseline } => {
            json!({"requests": requests, "usual_requests": baseline, "window_seconds": 300})
        }
        Anomaly::SpendSpike { cost, baseline } => {
            json!({"spent_micro_usd": cost.0, "usual_micro_usd": baseline.0, "window_seconds": 300})
        }
        Anomaly::FailedAuthBurst {
            failures,
            addresses,
        } => json!({"refused_requests": failures, "addresses": addresses, "window_seconds": 60}),
        Anomaly::DistantNetworks { first, second } => {
            json!({"first": first.to_string(), "second": second.to_string()})
        }
    };
    details["kind"] = json!(kind);
    details["key_id"] = json!(key.to_string());
    details["description"] = json!(anomaly.describe());
    let suspended = suspend.suspends(kind, key, project)
        && suspend_key(
            store,
            org,
            keys,
            key,
            project,
            kind,
            &anomaly.describe(),
            now,
        )
        .await;
    details["suspended"] = json!(suspended);
    tracing::warn!(key = %key, kind, description = %anomaly.describe(), "suspicious use of a key");
    let entry = AuditEntry {
        id: AuditId::generate(),
        org_id: org.clone(),
        event_type: "api_key.anomaly".into(),
        actor: Actor::system(),
        project_id: project.cloned(),
        resource_id: Some(key.to_string()),
        data: details.clone(),
        created_at: now,
    };
    if let Err(err) = store.record_audit(&entry).await {
        tracing::warn!(error = %err, "could not record suspicious use of a key");
    }
    let event = json!({
        "id": format!("evt_anomaly_{}", entry.id),
        "object": "event",
        "type": "api_key.anomaly",
        "created_at": now.seconds(),
        "data": details,
    });
    webhooks::post_event(client, settings, clock, &event, "suspicious-use alert");
}

/// Suspends `key` for finding `kind`; whether it was (not already suspended, not revoked).
#[allow(clippy::too_many_arguments)]
async fn suspend_key(
    store: &Store,
    org: &OrgId,
    keys: &Arc<KeyTable>,
    key: &KeyId,
    project: Option<&ProjectId>,
    kind: &str,
    reason: &str,
    now: UnixTime,
) -> bool {
    let suspension = tollgate_store::Suspension {
        kind: kind.to_owned(),
        reason: reason.to_owned(),
        at: now,
    };
    let entry = AuditEntry {
        id: AuditId::generate(),
        org_id: org.clone(),
        event_type: "api_key.suspended".into(),
        actor: Actor::system(),
        project_id: project.cloned(),
        resource_id: Some(key.to_string()),
        data: json!({"kind": kind, "reason": reason}),
        created_at: now,
    };
    match store.suspend_key(key, &suspension, &entry).await {
        Ok(true) => {
            tracing::warn!(key = %key, kind, "key suspended after suspicious use");
            // In force on this server at once; the others follow the change log.
            if let Err(err) = keys.catch_up(store).await {
                tracing::warn!(error = %err, "the key table did not catch up after a suspension");
            }
            true
        }
        Ok(false) => false,
        Err(err) => {
            tracing::error!(error = %err, key = %key, "could not suspend a key");
            false
        }
    }
}
