//! Budget alerts: each threshold a budget's spend crosses is claimed in the store (once per
//! budget, period and threshold, whichever server sees it first), written to the audit log, and
//! posted to every configured webhook, signed, with retries and exponential backoff.

use crate::admission::Alert;
use crate::background::webhooks;
use crate::settings::AlertSettings;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tollgate_core::budget::{dollars, format_utc_offset, percent};
use tollgate_core::holder::Level;
use tollgate_core::{AuditId, Clock, OrgId, ProjectId};
use tollgate_store::{Actor, AuditEntry, Store};

/// Claims and sends alerts until `stop` says so; then claims what is still queued (so every
/// alert reaches the audit log) and returns. Deliveries still being retried are abandoned.
pub fn start(
    store: Store,
    org: OrgId,
    settings: AlertSettings,
    clock: Arc<dyn Clock>,
    mut alerts: mpsc::UnboundedReceiver<Alert>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = webhooks::client(&settings);
        let settings = Arc::new(settings);
        loop {
            let alert = tokio::select! {
                alert = alerts.recv() => alert,
                _ = stop.changed() => {
                    alerts.close();
                    alerts.recv().await
                }
            };
            let Some(alert) = alert else { return };
            let event = event(&alert);
            let entry = AuditEntry {
                id: AuditId::generate(),
                org_id: org.clone(),
                event_type: "budget.threshold_reached".into(),
                actor: Actor::system(),
                project_id: (alert.budget.holder.level == Level::Project)
                    .then(|| ProjectId::from_trusted(alert.budget.holder.id.clone())),
                resource_id: Some(alert.budget.holder.id.clone()),
                data: event["data"].clone(),
                created_at: alert.at,
            };
            match store
                .claim_budget_alert(
                    alert.budget.id,
                    alert.period.0,
                    alert.threshold_permille,
                    alert.spent,
                    &entry,
                )
                .await
            {
                Ok(true) => {
                    tracing::warn!(
                        holder = %alert.budget.holder,
                        threshold = alert.threshold_permille,
                        spent = %alert.spent,
                        "budget alert threshold reached"
                    );
                    webhooks::post_event(&client, &settings, &clock, &event, "budget alert");
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(error = %err, holder = %alert.budget.holder, "could not record a budget alert; it was not sent")
                }
            }
        }
    })
}

/// The webhook's JSON body. Its id is the same for every delivery of one alert, so a receiver
/// can drop repeats.
fn event(alert: &Alert) -> serde_json::Value {
    let budget = &alert.budget;
    json!({
        "id": format!("evt_budget_{}_{}_{}", budget.id, alert.period.0.seconds(), alert.threshold_permille),
        "object": "event",
        "type": "budget.threshold_reached",
        "created_at": alert.at.seconds(),
        "data": {
            "budget_id": budget.id,
            "level": budget.holder.level.as_str(),
            "holder_id": budget.holder.id,
            "period": budget.period.as_str(),
            "timezone": format_utc_offset(budget.utc_offset_secs),
            "period_start": alert.period.0.rfc3339(),
            "period_end": alert.period.1.rfc3339(),
            "threshold_percent": percent(alert.threshold_permille),
            "limit_usd": dollars(budget.limit),
            "spent_usd": dollars(alert.spent),
            "limit_micro_usd": budget.limit.0,
            "spent_micro_usd": alert.spent.0,
        }
    })
}
