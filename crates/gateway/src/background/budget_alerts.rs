//! Budget alerts: each threshold a budget's spend crosses is claimed in the store (once per
//! budget, period and threshold, whichever server sees it first), written to the audit log, and
//! posted to every configured webhook, signed, with retries and exponential backoff.

use crate::admission::Alert;
use crate::settings::{AlertSettings, WebhookSettings};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tollgate_core::budget::{dollars, format_utc_offset, percent};
use tollgate_core::holder::Level;
use tollgate_core::signature::sign;
use tollgate_core::{AuditId, Clock, OrgId, ProjectId};
use tollgate_store::{Actor, AuditEntry, Store};

/// Longest wait between two attempts of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

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
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .build()
        {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "could not set up the webhook client; budget alerts go to the audit log only");
                reqwest::Client::new()
            }
        };
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
                    let body = event.to_string();
                    for webhook in &settings.webhooks {
                        tokio::spawn(deliver(
                            client.clone(),
                            webhook.clone(),
                            settings.clone(),
                            clock.clone(),
                            event["id"].as_str().unwrap_or_default().to_owned(),
                            body.clone(),
                        ));
                    }
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

/// Posts one event to one webhook until it answers 2xx or the attempts run out.
async fn deliver(
    client: reqwest::Client,
    webhook: WebhookSettings,
    settings: Arc<AlertSettings>,
    clock: Arc<dyn Clock>,
    event_id: String,
    body: String,
) {
    let mut backoff = settings.first_retry;
    for attempt in 1..=settings.attempts.max(1) {
        let timestamp = clock.now().seconds();
        let signature = sign(webhook.secret.expose(), timestamp, body.as_bytes());
        let result = client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header("user-agent", "Tollgate-Webhooks/1")
            .header("tollgate-event-id", &event_id)
            .header("tollgate-delivery-attempt", attempt.to_string())
            .header("tollgate-signature", signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => {
                tracing::info!(url = %webhook.url, event = %event_id, attempt, "budget alert delivered");
                return;
            }
            Ok(response) => {
                tracing::warn!(url = %webhook.url, event = %event_id, attempt, status = response.status().as_u16(), "budget alert webhook refused the delivery")
            }
            Err(err) => {
                tracing::warn!(url = %webhook.url, event = %event_id, attempt, error = %err, "budget alert webhook unreachable")
            }
        }
        if attempt < settings.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    tracing::error!(url = %webhook.url, event = %event_id, attempts = settings.attempts, "gave up delivering a budget alert; it is in the audit log");
}
