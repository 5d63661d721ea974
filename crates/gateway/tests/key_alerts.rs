//! Alerts about keys. Keys nearing expiry are announced once to the alert webhook and the audit
//! log. GitHub's secret scanning partner program, with a locally generated ECDSA P-256 key standing
//! in for GitHub's (published at a loopback URL in GitHub's format): a signed report of one of
//! the deployment's keys revokes it at once, audits it and alerts the webhook; a bad, missing
//! or unknown signature and a replayed report are refused with 401 and change nothing; the
//! `flag` setting records and alerts without revoking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TestApp;
use tollgate_gateway::LeakAction;

/// A signing key and the loopback URL its public half is published at, as GitHub does.
struct Signer {
    pair: EcdsaKeyPair,
    id: String,
    url: String,
    fetches: Arc<Mutex<u32>>,
}

impl Signer {
    async fn start() -> Signer {
        let generated = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &generated.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let id = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a".to_owned();
        let published = json!({"public_keys": [
            {"key_identifier": id, "key": generated.public_key_pem(), "is_current": true},
        ]})
        .to_string();
        let fetches = Arc::new(Mutex::new(0));
        let counted = fetches.clone();
        let app = axum::Router::new().route(
            "/meta/public_keys/secret_scanning",
            axum::routing::get(move || {
                *counted.lock().unwrap() += 1;
                let published = published.clone();
                async move { ([("content-type", "application/json")], published) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Signer {
            pair,
            id,
            url: format!("http://{addr}/meta/public_keys/secret_scanning"),
            fetches,
        }
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), body)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
    }
}

/// Records what the alert webhook receives.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<(axum::http::HeaderMap, Value)>>>);

impl Hook {
    async fn start(&self) -> String {
        let hook = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let hook = hook.clone();
                async move {
                    hook.0
                        .lock()
                        .unwrap()
                        .push((headers, serde_json::from_str(&body).unwrap()));
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    async fn wait_for(&self, count: usize) -> Vec<(axum::http::HeaderMap, Value)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.0.lock().unwrap().clone();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} alerts arrived",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn app(signer: &Signer, hook: &Hook, action: LeakAction) -> TestApp {
    let hook_url = hook.start().await;
    let keys_url = signer.url.clone();
    TestApp::spawn_with(move |s| {
        s.secret_scanning.github_keys_url = Some(keys_url);
        s.secret_scanning.on_report = action;
        s.alerts.webhooks = vec![tollgate_gateway::WebhookSettings {
            url: hook_url,
            secret: tollgate_gateway::WebhookSecret::new("whsec_leaks".into()),
        }];
        s.alerts.first_retry = Duration::from_millis(20);
    })
    .await
}

async fn report(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/secret-scanning/github", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let reply = request.send().await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn status_of(app: &TestApp, secret: &str) -> u16 {
    app.post(
        "/v1/chat/completions",
        secret,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    )
    .await
    .status
    .as_u16()
}

async fn audit(app: &TestApp, resource: &str) -> Vec<tollgate_store::AuditEntry> {
    let org = tollgate_core::OrgId::from_trusted(app.org_id.clone());
    app.store
        .audit_entries(&org, Some(resource), 100)
        .await
        .unwrap()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_signed_report_revokes_the_key_at_once_audits_and_alerts() {
    let signer = Signer::start().await;
    let hook = Hook::default();
    let app = app(&signer, &hook, LeakAction::Revoke).await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    assert_eq!(status_of(&app, secret).await, 200);

    let body = json!([
        {"token": secret, "type": "tollgate_api_key", "url": "https://github.com/octo/repo/blob/abc/app.py", "source": "content"},
        {"token": "sk-proj-not-ours", "type": "tollgate_api_key", "url": "https://github.com/octo/repo/blob/abc/x.py", "source": "content"},
    ])
    .to_string();
    let signature = signer.sign(body.as_bytes());
    let headers = [
        ("Github-Public-Key-Identifier", signer.id.as_str()),
        ("Github-Public-Key-Signature", signature.as_str()),
    ];
    let (status, labels) = report(&app, &body, &headers).await;
    assert_eq!(status, 200, "{labels}");
    assert_eq!(
        labels,
        json!([
            {"token_hash": sha256_hex(secret), "token_type": "tollgate_api_key", "label": "true_positive"},
            {"token_hash": sha256_hex("sk-proj-not-ours"), "token_type": "tollgate_api_key", "label": "false_positive"},
        ])
    );
    // Refused from the next request on, on this server.
    assert_eq!(status_of(&app, secret).await, 401);

    let entries = audit(&app, key.record.id.as_str()).await;
    let events: Vec<&str> = entries.iter().map(|e| e.event_type.as_str()).collect();
    assert!(
        events.starts_with(&["api_key.leaked", "api_key.revoked"]),
        "{events:?}"
    );
    assert_eq!(entries[0].actor.id, "github-secret-scanning");
    assert_eq!(
        entries[0].data["url"],
        "https://github.com/octo/repo/blob/abc/app.py"
    );
    assert_eq!(entries[0].data["action"], "revoked");

    let alerts = hook.wait_for(1).await;
    let (delivered, event) = &alerts[0];
    assert_eq!(event["type"], "api_key.leaked");
    assert_eq!(event["data"]["key_id"], key.record.id.as_str());
    assert!(delivered.contains_key("tollgate-signature"));
    assert!(
        !event.to_string().contains(secret),
        "the alert holds the secret"
    );

    // The same report again is a replay: refused, nothing new recorded.
    let (status, error) = report(&app, &body, &headers).await;
    assert_eq!(status, 401, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already received"));
    assert_eq!(
        audit(&app, key.record.id.as_str()).await.len(),
        entries.len()
    );
    // GitHub's keys were fetched once and cached.
    assert_eq!(*signer.fetches.lock().unwrap(), 1);
}

#[tokio::test]
async fn unsigned_badly_signed_or_unknown_signer_reports_change_nothing() {
    let signer = Signer::start().await;
    let hook = Hook::default();
    let app = app(&signer, &hook, LeakAction::Revoke).await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    let body =
        json!([{"token": secret, "type": "tollgate_api_key", "url": "https://github.com/x"}])
            .to_string();
    let signature = signer.sign(body.as_bytes());
    let other =
        json!([{"token": secret, "type": "tollgate_api_key", "url": "https://github.com/y"}])
            .to_string();
    let wrong_key = "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d";
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("unsigned", vec![]),
        (
            "no identifier",
            vec![("Github-Public-Key-Signature", &signature)],
        ),
        (
            "signature of another body",
            vec![
                ("Github-Public-Key-Identifier", &signer.id),
                ("Github-Public-Key-Signature", &signature),
            ],
        ),
        (
            "not base64",
            vec![
                ("Github-Public-Key-Identifier", &signer.id),
                ("Github-Public-Key-Signature", "%%%"),
            ],
        ),
        (
            "unknown signer",
            vec![
                ("Github-Public-Key-Identifier", wrong_key),
                ("Github-Public-Key-Signature", &signature),
            ],
        ),
    ];
    for (case, headers) in cases {
        let sent = if case == "signature of another body" {
            &other
        } else {
            &body
        };
        let (status, error) = report(&app, sent, &headers).await;
        assert_eq!(status, 401, "{case}: {error}");
        assert_eq!(error["error"]["code"], "invalid_signature", "{case}");
    }
    assert_eq!(status_of(&app, secret).await, 200, "the key still works");
    assert!(audit(&app, key.record.id.as_str())
        .await
        .iter()
        .all(|e| e.event_type != "api_key.leaked"));
    assert!(hook.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_flag_setting_records_and_alerts_without_revoking() {
    let signer = Signer::start().await;
    let hook = Hook::default();
    let app = app(&signer, &hook, LeakAction::Flag).await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    let body = json!([{"token": secret, "type": "tollgate_api_key", "url": "https://gist.github.com/z", "source": "gist"}]).to_string();
    let signature = signer.sign(body.as_bytes());
    let (status, labels) = report(
        &app,
        &body,
        &[
            ("Github-Public-Key-Identifier", &signer.id),
            ("Github-Public-Key-Signature", &signature),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(labels[0]["label"], "true_positive");
    assert_eq!(status_of(&app, secret).await, 200, "flagged, not revoked");
    let entries = audit(&app, key.record.id.as_str()).await;
    assert_eq!(entries[0].event_type, "api_key.leaked");
    assert_eq!(entries[0].data["action"], "flagged");
    assert_eq!(
        hook.wait_for(1).await[0].1["data"]["leak"]["action"],
        "flagged"
    );
}

async fn key_expiring_in(
    app: &TestApp,
    name: &str,
    seconds: Option<i64>,
) -> tollgate_control::CreatedKey {
    app.control
        .create_key(
            &TestApp::actor(),
            tollgate_control::NewKey {
                name: name.into(),
                owner: tollgate_control::KeyOwnerRequest::Project(None),
                permissions: tollgate_core::Permissions::All,
                expires_in: seconds.map(tollgate_core::duration::Span),
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits: Default::default(),
                budget: None,
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_nearing_expiry_is_announced_once() {
    let hook = Hook::default();
    let hook_url = hook.start().await;
    let app = TestApp::spawn_with(move |s| {
        s.alerts.webhooks = vec![tollgate_gateway::WebhookSettings {
            url: hook_url,
            secret: tollgate_gateway::WebhookSecret::new("whsec_expiry".into()),
        }];
        s.key_expiry_warning = Some(Duration::from_secs(7 * 86_400));
        s.key_expiry_check = Duration::from_millis(20);
    })
    .await;
    let day = 86_400;
    let soon = key_expiring_in(&app, "soon", Some(3 * day)).await;
    key_expiring_in(&app, "later", Some(30 * day)).await;
    key_expiring_in(&app, "never", None).await;
    // (Revoked keys are left out: the key table's own test; here a key revoked a moment after
    // it was made could rightly be announced in between.)

    let alerts = hook.wait_for(1).await;
    let event = &alerts[0].1;
    assert_eq!(event["type"], "api_key.expiring");
    assert_eq!(event["data"]["key_id"], soon.record.id.as_str());
    assert_eq!(event["data"]["expires_in_seconds"], 3 * day);
    // Several more looks later, still once.
    let gateway = app.gateway.as_ref().unwrap();
    let looked = gateway.expiry_looks();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.expiry_looks() < looked + 3 {
        assert!(
            Instant::now() < deadline,
            "the expiry check stopped looking"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hook.0.lock().unwrap().len(), 1, "announced more than once");
    let entries = audit(&app, soon.record.id.as_str()).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.event_type == "api_key.expiring")
            .count(),
        1
    );
}

/// A chat request with `key` as if from `from` (the test's loopback address is a trusted
/// proxy, so `X-Forwarded-For` names the client).
async fn chat_from(app: &TestApp, key: &str, from: &str) -> u16 {
    app.post(
        "/v1/chat/completions",
        key,
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        &[("x-forwarded-for", from)],
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn suspicious_use_raises_exactly_the_expected_alerts() {
    let hook = Hook::default();
    let hook_url = hook.start().await;
    let app = TestApp::spawn_with(move |s| {
        s.alerts.webhooks = vec![tollgate_gateway::WebhookSettings {
            url: hook_url,
            secret: tollgate_gateway::WebhookSecret::new("whsec_anomaly".into()),
        }];
        s.trusted_proxies = vec![tollgate_core::network::Cidr::parse("127.0.0.1/32").unwrap()];
    })
    .await;
    let gateway = app.gateway.as_ref().unwrap();
    let key = app.project_key().await;
    let secret = key.secret.expose();
    // Its usual address, learned silently; then a new one in the same network.
    for _ in 0..3 {
        assert_eq!(chat_from(&app, secret, "10.20.0.1").await, 200);
    }
    assert_eq!(chat_from(&app, secret, "10.20.0.2").await, 200);
    // A revoked key tried 25 times within a minute: one burst.
    let gone = app.project_key().await;
    app.control
        .revoke_key(&TestApp::actor(), gone.record.id.as_str())
        .await
        .unwrap();
    for _ in 0..25 {
        assert_eq!(
            chat_from(&app, gone.secret.expose(), "192.0.2.7").await,
            401
        );
    }
    // A rotated key turning up somewhere new.
    let old = app.project_key().await;
    assert_eq!(chat_from(&app, old.secret.expose(), "10.30.0.1").await, 200);
    app.control
        .rotate_key(
            &TestApp::actor(),
            old.record.id.as_str(),
            tollgate_core::duration::Span(3_600),
        )
        .await
        .unwrap();
    assert_eq!(chat_from(&app, old.secret.expose(), "10.30.0.9").await, 200);

    // Everything handed over has been judged; exactly three alerts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.anomalies_judged() < 4 + 25 + 2 {
        assert!(
            Instant::now() < deadline,
            "judged {}",
            gateway.anomalies_judged()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let alerts = hook.wait_for(3).await;
    let mut seen: Vec<(String, String)> = alerts
        .iter()
        .map(|(_, e)| {
            assert_eq!(e["type"], "api_key.anomaly");
            (
                e["data"]["key_id"].as_str().unwrap().to_owned(),
                e["data"]["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (key.record.id.to_string(), "new_address".to_owned()),
        (gone.record.id.to_string(), "failed_auth_burst".to_owned()),
        (
            old.record.id.to_string(),
            "new_address_after_rotation".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(hook.0.lock().unwrap().len(), 3, "more alerts than expected");
    let entries = audit(&app, key.record.id.as_str()).await;
    let anomaly = entries
        .iter()
        .find(|e| e.event_type == "api_key.anomaly")
        .unwrap();
    assert_eq!(anomaly.data["address"], "10.20.0.2");
}

#[tokio::test]
async fn a_finding_the_policy_names_suspends_the_key_until_its_owner_lifts_it() {
    let hook = Hook::default();
    let hook_url = hook.start().await;
    let app = TestApp::spawn_with(move |s| {
        s.alerts.webhooks = vec![tollgate_gateway::WebhookSettings {
            url: hook_url,
            secret: tollgate_gateway::WebhookSecret::new("whsec_suspend".into()),
        }];
        s.trusted_proxies = vec![tollgate_core::network::Cidr::parse("127.0.0.1/32").unwrap()];
        s.anomaly_suspend = tollgate_gateway::SuspendPolicy {
            kinds: vec!["new_address".into()],
            ..Default::default()
        };
    })
    .await;
    let gateway = app.gateway.as_ref().unwrap();
    let key = app.project_key().await;
    let secret = key.secret.expose();
    assert_eq!(chat_from(&app, secret, "10.40.0.1").await, 200);
    // The request from the new address is served (detection is off the request path); the key
    // is suspended as soon as it is judged, on this server at once.
    assert_eq!(chat_from(&app, secret, "10.40.0.2").await, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.anomalies_judged() < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = app
        .post(
            "/v1/chat/completions",
            secret,
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            &[("x-forwarded-for", "10.40.0.1")],
        )
        .await;
    refused.assert_error(
        401,
        Some("api_key_suspended"),
        "suspended after suspicious use",
    );
    let alert = &hook.wait_for(1).await[0].1;
    assert_eq!(alert["data"]["suspended"], true);
    let events: Vec<String> = audit(&app, key.record.id.as_str())
        .await
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert!(
        events.contains(&"api_key.suspended".to_owned()),
        "{events:?}"
    );

    // The owner lifts it: the key works again (the change log brings it to this server).
    let (_, lifted) = app
        .control
        .unsuspend_key(&TestApp::actor(), key.record.id.as_str())
        .await
        .unwrap();
    assert!(lifted);
    let (_, again) = app
        .control
        .unsuspend_key(&TestApp::actor(), key.record.id.as_str())
        .await
        .unwrap();
    assert!(!again, "lifting twice changes nothing");
    let deadline = Instant::now() + Duration::from_secs(1);
    while chat_from(&app, secret, "10.40.0.1").await != 200 {
        assert!(
            Instant::now() < deadline,
            "the lifted key is still refused after a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another key of the deployment was never touched.
    let other = app.project_key().await;
    assert_eq!(
        chat_from(&app, other.secret.expose(), "10.40.0.9").await,
        200
    );
}

#[tokio::test]
async fn when_the_signing_keys_cannot_be_fetched_reports_get_503_not_401() {
    let app = TestApp::spawn_with(|s| {
        s.secret_scanning.github_keys_url =
            Some("http://127.0.0.1:9/meta/public_keys/secret_scanning".into());
    })
    .await;
    let key = app.project_key().await;
    let body = json!([{"token": key.secret.expose(), "type": "tollgate_api_key"}]).to_string();
    for _ in 0..2 {
        let (status, error) = report(
            &app,
            &body,
            &[
                ("Github-Public-Key-Identifier", "abc"),
                ("Github-Public-Key-Signature", "MEQCIA=="),
            ],
        )
        .await;
        assert_eq!(status, 503, "{error}");
    }
    assert_eq!(status_of(&app, key.secret.expose()).await, 200);
}

#[tokio::test]
async fn a_keys_client_tokens_used_from_anywhere_raise_no_address_findings() {
    let hook = Hook::default();
    let hook_url = hook.start().await;
    let app = TestApp::spawn_with(move |s| {
        s.alerts.webhooks = vec![tollgate_gateway::WebhookSettings {
            url: hook_url,
            secret: tollgate_gateway::WebhookSecret::new("whsec_tokens".into()),
        }];
        s.trusted_proxies = vec![tollgate_core::network::Cidr::parse("127.0.0.1/32").unwrap()];
        s.anomaly_suspend = tollgate_gateway::SuspendPolicy {
            kinds: vec!["new_address".into(), "distant_networks".into()],
            ..Default::default()
        };
    })
    .await;
    let gateway = app.gateway.as_ref().unwrap();
    let key = app.project_key().await;
    let secret = key.secret.expose();
    assert_eq!(chat_from(&app, secret, "10.50.0.1").await, 200);
    // The key's server mints a token; the browsers using it are everywhere.
    let minted = app
        .post(
            "/v1/realtime/client_secrets",
            secret,
            json!({}),
            &[("x-forwarded-for", "10.50.0.1")],
        )
        .await;
    let token = minted.body["value"].as_str().unwrap().to_owned();
    for browser in [
        "198.51.100.1",
        "203.0.113.9",
        "192.0.2.44",
        "2001:db8::7",
        "100.64.3.2",
    ] {
        assert_eq!(chat_from(&app, &token, browser).await, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.anomalies_judged() < 6 {
        assert!(
            Instant::now() < deadline,
            "judged {}",
            gateway.anomalies_judged()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Judged, and nothing found: the key is not suspended and no alert went out.
    assert_eq!(chat_from(&app, secret, "10.50.0.1").await, 200);
    assert_eq!(hook.0.lock().unwrap().len(), 0);
    // The key itself from a new address is still news.
    assert_eq!(chat_from(&app, secret, "10.50.0.2").await, 200);
    assert_eq!(hook.wait_for(1).await[0].1["data"]["kind"], "new_address");
}
