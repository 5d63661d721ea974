//! Leak reports from outside: GitHub's secret scanning partner program.
//!
//! When GitHub finds text matching Tollgate's key pattern in a public repository, gist or npm
//! package, it posts `[{"token", "type", "url", "source"}, ...]` to `POST
//! /secret-scanning/github`, signed with ECDSA P-256/SHA-256: the `Github-Public-Key-Signature`
//! header holds the DER signature of the raw body, in base64, by the key named in
//! `Github-Public-Key-Identifier`, one of those GitHub publishes at
//! [`GITHUB_SECRET_SCANNING_KEYS`](crate::settings::GITHUB_SECRET_SCANNING_KEYS) (fetched, and
//! cached; fetched again for an identifier not seen, at most once a minute).
//!
//! A report that is unsigned, signed by an unknown key, or does not verify is refused with 401,
//! as is one already received (the same body twice: a replay); nothing changes. When the keys
//! cannot be fetched, a report naming a key not known yet gets 503 (the sender retries). A
//! verified report is recorded in the audit log (which also tells replays apart), and each
//! token that is one of this deployment's keys is revoked at once (or, with `on_report =
//! "flag"`, only recorded), audited as `api_key.leaked`, and announced to the alert webhooks.
//! The answer tells GitHub which tokens were real (`true_positive`) by their SHA-256.

use crate::background::webhooks;
use crate::error::GatewayError;
use crate::published_keys::verify;
use crate::settings::LeakAction;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tollgate_core::{AuditId, KeyId};
use tollgate_store::{Actor, AuditEntry};

/// The largest report read (GitHub batches a few matches; a megabyte is thousands).
const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// The most tokens one report may name.
const MAX_TOKENS: usize = 1_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, serde::Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// `POST /secret-scanning/github`.
pub(crate) async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match report(&state, &headers, &body).await {
        Ok(labels) => Json(labels).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "a leak report was refused");
            err.into_response()
        }
    }
}

async fn report(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<serde_json::Value>, GatewayError> {
    let settings = &state.settings.secret_scanning;
    let Some(url) = settings.github_keys_url.as_deref() else {
        return Err(GatewayError::UnknownRoute {
            method: "POST".into(),
            path: "/secret-scanning/github".into(),
        });
    };
    if body.len() > MAX_REPORT_BYTES {
        return Err(GatewayError::BodyTooLarge {
            limit: MAX_REPORT_BYTES,
        });
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(signature)) = (
        header("github-public-key-identifier"),
        header("github-public-key-signature"),
    ) else {
        return Err(GatewayError::LeakReportRefused(
            "A leak report must be signed: the Github-Public-Key-Identifier and Github-Public-Key-Signature headers are missing.".into(),
        ));
    };
    let refused = || {
        GatewayError::LeakReportRefused(
            "The leak report's signature does not verify with the key it names.".into(),
        )
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| refused())?;
    let point = state
        .published_keys
        .point(url, key_id)
        .await
        .map_err(GatewayError::LeakReportKeysUnavailable)?
        .ok_or_else(refused)?;
    if !verify(&point, body, &signature) {
        return Err(refused());
    }

    // The same report twice (its body: a signature can be re-encoded, a body cannot be changed
    // without breaking it) is a replay: refused, nothing changes.
    let report_id = format!("ghss_{}", &hex(&Sha256::digest(body))[..32]);
    let org = match state.store.default_organization().await {
        Ok(Some(org)) => org,
        Ok(None) => return Err(GatewayError::Internal),
        Err(err) => {
            tracing::error!(error = %err, "a leak report could not be read");
            return Err(GatewayError::Internal);
        }
    };
    let seen = state
        .store
        .audit_entries(&org.id, Some(&report_id), 1)
        .await
        .map_err(|_| GatewayError::Internal)?;
    if !seen.is_empty() {
        return Err(GatewayError::LeakReportRefused(
            "This leak report was already received.".into(),
        ));
    }
    let tokens: Vec<Reported> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    if tokens.len() > MAX_TOKENS {
        return Err(GatewayError::InvalidJson(format!(
            "a leak report names at most {MAX_TOKENS} tokens"
        )));
    }

    let now = state.clock.now();
    let actor = Actor {
        kind: "system".into(),
        id: "github-secret-scanning".into(),
    };
    // Recorded before anything is acted on: a report that fails half-way is not replayable.
    let entry = AuditEntry {
        id: AuditId::generate(),
        org_id: org.id.clone(),
        event_type: "secret_scanning.report_received".into(),
        actor: actor.clone(),
        project_id: None,
        resource_id: Some(report_id.clone()),
        data: json!({"source": "github", "tokens": tokens.len(), "signing_key": key_id}),
        created_at: now,
    };
    state.store.record_audit(&entry).await.map_err(|err| {
        tracing::error!(error = %err, "a leak report could not be recorded");
        GatewayError::Internal
    })?;
    let mut labels = Vec::with_capacity(tokens.len());
    let mut revoked_any = false;
    for reported in &tokens {
        let found = match state.format.parse(reported.token.trim()) {
            Ok(parsed) => {
                let id: KeyId = parsed.secret.id();
                match state.store.key(&org.id, &id).await {
                    Ok(key) if key.hash == state.hasher.hash(&parsed.secret) => Some(key),
                    _ => None,
                }
            }
            Err(_) => None,
        };
        labels.push(json!({
            "token_hash": hex(&Sha256::digest(reported.token.as_bytes())),
            "token_type": reported.kind.clone().unwrap_or_default(),
            "label": if found.is_some() { "true_positive" } else { "false_positive" },
        }));
        let Some(key) = found else { continue };
        let was_live = key.revoked_at.is_none();
        let revoke = settings.on_report == LeakAction::Revoke && was_live;
        let leak = json!({
            "name": key.name,
            "redacted_value": key.redacted,
            "source": "github",
            "url": reported.url,
            "where": reported.source,
            "report": report_id,
            "action": if revoke { "revoked" } else if was_live { "flagged" } else { "already_revoked" },
        });
        let entry = |event: &str| AuditEntry {
            id: AuditId::generate(),
            org_id: org.id.clone(),
            event_type: event.to_owned(),
            actor: actor.clone(),
            project_id: key.project_id.clone(),
            resource_id: Some(key.id.to_string()),
            data: leak.clone(),
            created_at: now,
        };
        if revoke {
            match state
                .store
                .revoke_key(&key.id, now, &entry("api_key.revoked"))
                .await
            {
                Ok(()) => revoked_any = true,
                Err(err) => {
                    tracing::error!(error = %err, key = %key.id, "a leaked key could not be revoked")
                }
            }
        }
        if let Err(err) = state.store.record_audit(&entry("api_key.leaked")).await {
            tracing::error!(error = %err, key = %key.id, "a leak report could not be audited");
        }
        tracing::warn!(key = %key.id, url = reported.url.as_deref().unwrap_or(""), revoked = revoke, "a key of this deployment was reported leaked");
        alert(
            state,
            &key.id,
            key.project_id.as_ref().map(|p| p.to_string()),
            &leak,
            now.seconds(),
        );
    }
    // In force on this server before GitHub hears back; the others follow the change log.
    if revoked_any {
        if let Err(err) = state.keys.catch_up(&state.store).await {
            tracing::warn!(error = %err, "the key table did not catch up after a leak report");
        }
    }
    Ok(labels)
}

/// Tells the alert webhooks (signed, retried) that a key leaked.
fn alert(
    state: &AppState,
    key: &KeyId,
    project: Option<String>,
    leak: &serde_json::Value,
    at: i64,
) {
    let alerts = &state.settings.alerts;
    if alerts.webhooks.is_empty() {
        return;
    }
    let event = json!({
        "id": format!("evt_leak_{}_{}", key, leak["report"].as_str().unwrap_or_default()),
        "object": "event",
        "type": "api_key.leaked",
        "created_at": at,
        "data": {"key_id": key.to_string(), "project_id": project, "leak": leak},
    });
    let settings = Arc::new(alerts.clone());
    let client = webhooks::client(alerts);
    webhooks::post_event(&client, &settings, &state.clock, &event, "leaked-key alert");
}
