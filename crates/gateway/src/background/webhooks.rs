//! Signed webhook deliveries (budget alerts, leaked-key alerts): each event is posted with
//! `Tollgate-Signature` (HMAC over timestamp and body), retried with exponential backoff.

use crate::settings::{AlertSettings, WebhookSettings};
use std::sync::Arc;
use std::time::Duration;
use tollgate_core::signature::sign;
use tollgate_core::Clock;

/// Longest wait between two attempts of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The client deliveries go through: no redirects, the attempt timeout.
pub(crate) fn client(settings: &AlertSettings) -> reqwest::Client {
    match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "could not set up the webhook client; alerts go to the audit log only");
            reqwest::Client::new()
        }
    }
}

/// Posts `event` (an object with an `id`) to every webhook, each delivery in its own task.
/// `what` names the event in logs.
pub(crate) fn post_event(
    client: &reqwest::Client,
    settings: &Arc<AlertSettings>,
    clock: &Arc<dyn Clock>,
    event: &serde_json::Value,
    what: &'static str,
) {
    let body = event.to_string();
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    for webhook in &settings.webhooks {
        tokio::spawn(deliver(
            client.clone(),
            webhook.clone(),
            settings.clone(),
            clock.clone(),
            id.clone(),
            body.clone(),
            what,
        ));
    }
}

/// Posts one event to one webhook until it answers 2xx or the attempts run out.
async fn deliver(
    client: reqwest::Client,
    webhook: WebhookSettings,
    settings: Arc<AlertSettings>,
    clock: Arc<dyn Clock>,
    event_id: String,
    body: String,
    what: &'static str,
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
                tracing::info!(url = %webhook.url, event = %event_id, attempt, "{what} delivered", what = what);
                return;
            }
            Ok(response) => {
                tracing::warn!(url = %webhook.url, event = %event_id, attempt, status = response.status().as_u16(), "{what}: the webhook refused the delivery", what = what)
            }
            Err(err) => {
                tracing::warn!(url = %webhook.url, event = %event_id, attempt, error = %err, "{what}: webhook unreachable", what = what)
            }
        }
        if attempt < settings.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    tracing::error!(url = %webhook.url, event = %event_id, attempts = settings.attempts, "gave up delivering a {what}; it is in the audit log", what = what);
}
