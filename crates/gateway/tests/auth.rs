//! The data plane over real HTTP, on a real SQLite file, with a controllable clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use reqwest::StatusCode;
use std::time::{Duration, Instant};
use support::{Reply, TestApp, START};
use tollgate_control::{KeyOwnerRequest, NewKey};
use tollgate_core::duration::Span;
use tollgate_core::{KeyFormat, KeyKind, Permissions};

#[tokio::test]
async fn a_valid_key_lists_the_routed_models_in_openai_shape() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let reply = app.models(key.secret.expose()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["object"], "list");
    let ids: Vec<&str> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "gpt-4o-mini",
            "gpt-4o",
            "o4-mini",
            "text-embedding-3-small",
            "unpriced-model",
            "o3-mini",
            "fast"
        ],
        "exact routes, then aliases; patterns are not listable"
    );
    assert_eq!(reply.body["data"][1]["object"], "model");
    assert_eq!(reply.body["data"][5]["owned_by"], "dead");
    assert_eq!(reply.body["data"][0]["owned_by"], "mock");
    assert!(reply.body["data"][0]["created"].is_i64());
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert!(
        request_id.starts_with("req_") && request_id.len() == 36,
        "{request_id}"
    );
    assert!(reply.headers["openai-processing-ms"]
        .to_str()
        .unwrap()
        .parse::<u64>()
        .is_ok());
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_get_openai_401s() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;

    app.get("/v1/models", None, &[])
        .await
        .assert_error(401, None, "You didn't provide an API key");
    let basic = app
        .get(
            "/v1/models",
            None,
            &[("authorization", "Basic dXNlcjpwYXNz")],
        )
        .await;
    basic.assert_error(401, None, "You didn't provide an API key");

    // One character changed: the checksum catches it; the message quotes only a masked form.
    let mut typo = key.secret.expose().to_owned().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let reply = app.models(&typo).await;
    reply.assert_error(
        401,
        Some("invalid_api_key"),
        "Incorrect API key provided: sk-proj-",
    );
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains(&typo[8..typo.len() - 4]),
        "the presented key must not be echoed"
    );
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer realm=\"Tollgate\""
    );

    // Well formed with a valid checksum, but never issued here.
    let stranger = KeyFormat::default().generate(KeyKind::Project);
    app.models(stranger.expose()).await.assert_error(
        401,
        Some("invalid_api_key"),
        "Incorrect API key provided",
    );

    // An OpenAI-looking key is not ours either.
    app.models("sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJ")
        .await
        .assert_error(401, Some("invalid_api_key"), "sk-proj-");
}

#[tokio::test]
async fn a_revoke_reaches_the_running_gateway_within_a_second() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    assert_eq!(app.models(key.secret.expose()).await.status, StatusCode::OK);

    app.control
        .revoke_key(&TestApp::actor(), key.record.id.as_str())
        .await
        .unwrap();
    let revoked_at = Instant::now();
    loop {
        let reply = app.models(key.secret.expose()).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            reply.assert_error(401, Some("invalid_api_key"), "has been revoked");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "revoked key still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rotation_grace_ends_on_the_clock_and_the_successor_works() {
    let app = TestApp::spawn().await;
    let old = app.project_key().await;
    let rotation = app
        .control
        .rotate_key(&TestApp::actor(), old.record.id.as_str(), Span(3_600))
        .await
        .unwrap();
    assert_eq!(
        rotation.new.record.rotated_from.as_ref(),
        Some(&old.record.id)
    );
    assert_eq!(rotation.new.record.project_id, old.record.project_id);

    assert_eq!(
        app.models(old.secret.expose()).await.status,
        StatusCode::OK,
        "old key works during grace"
    );
    assert_eq!(
        app.models(rotation.new.secret.expose()).await.status,
        StatusCode::OK
    );

    app.clock.advance(59 * 60);
    assert_eq!(
        app.models(old.secret.expose()).await.status,
        StatusCode::OK,
        "59 minutes in"
    );

    app.clock.advance(60);
    app.models(old.secret.expose())
        .await
        .assert_error(401, Some("invalid_api_key"), "expired at");
    assert_eq!(
        app.models(rotation.new.secret.expose()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expiring_key_stops_at_its_expiry() {
    let app = TestApp::spawn().await;
    let key = app
        .control
        .create_key(
            &TestApp::actor(),
            NewKey {
                name: "short-lived".into(),
                owner: KeyOwnerRequest::Project(None),
                permissions: Permissions::All,
                expires_in: Some(Span(3_600)),
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits: Default::default(),
                budget: None,
            },
        )
        .await
        .unwrap();
    app.clock.advance(3_599);
    assert_eq!(app.models(key.secret.expose()).await.status, StatusCode::OK);
    app.clock.advance(1);
    app.models(key.secret.expose())
        .await
        .assert_error(401, Some("invalid_api_key"), "expired at");
}

#[tokio::test]
async fn organization_and_project_headers_must_match_the_key() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    let ok = app
        .get(
            "/v1/models",
            Some(secret),
            &[
                ("OpenAI-Organization", &app.org_id),
                ("OpenAI-Project", &app.project_id),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    app.get(
        "/v1/models",
        Some(secret),
        &[("OpenAI-Organization", "org-somebodyElse000000000000")],
    )
    .await
    .assert_error(
        401,
        Some("mismatched_organization"),
        "OpenAI-Organization header should match",
    );
    app.get(
        "/v1/models",
        Some(secret),
        &[("OpenAI-Project", "proj_other0000000000000000000")],
    )
    .await
    .assert_error(
        401,
        Some("mismatched_project"),
        "OpenAI-Project header should match",
    );
}

#[tokio::test]
async fn admin_and_restricted_keys_lack_the_models_scope() {
    let app = TestApp::spawn().await;
    let admin = app
        .create_key("admin", KeyOwnerRequest::Admin, Permissions::All)
        .await;
    app.models(admin.secret.expose()).await.assert_error(
        401,
        None,
        "Missing scopes: api.model.read",
    );

    let embeddings_only =
        Permissions::from_parts("restricted", &["embeddings:write".into()]).unwrap();
    let restricted = app
        .create_key("embed", KeyOwnerRequest::Project(None), embeddings_only)
        .await;
    app.models(restricted.secret.expose()).await.assert_error(
        401,
        None,
        "Missing scopes: api.model.read",
    );

    let models_read = Permissions::from_parts("restricted", &["models:read".into()]).unwrap();
    let reader = app
        .create_key("reader", KeyOwnerRequest::Project(None), models_read)
        .await;
    assert_eq!(
        app.models(reader.secret.expose()).await.status,
        StatusCode::OK
    );
    let read_only = app
        .create_key("ro", KeyOwnerRequest::Project(None), Permissions::ReadOnly)
        .await;
    assert_eq!(
        app.models(read_only.secret.expose()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_of_an_archived_project_stop_working() {
    let app = TestApp::spawn().await;
    let project = app
        .control
        .create_project(&TestApp::actor(), "Mobile")
        .await
        .unwrap();
    let account = app
        .control
        .create_service_account(&TestApp::actor(), Some("Mobile"), "ios-backend")
        .await
        .unwrap();
    let key = app
        .create_key(
            "ios",
            KeyOwnerRequest::ServiceAccount(account.id.to_string()),
            Permissions::All,
        )
        .await;
    assert!(key.secret.expose().starts_with("sk-svcacct-"));
    assert_eq!(app.models(key.secret.expose()).await.status, StatusCode::OK);

    app.control
        .archive_project(&TestApp::actor(), project.id.as_str())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let reply = app.models(key.secret.expose()).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            reply.assert_error(401, Some("invalid_api_key"), "is archived");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "archived project's key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn authentication_answers_from_memory_even_with_the_database_closed() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    assert_eq!(
        app.models(key.secret.expose()).await.status,
        StatusCode::OK,
        "a new key works at once"
    );
    // From here on every database call fails: anything that reached the store would error.
    app.store.close().await;

    // Junk is refused from its checksum; a well-formed key nobody has loaded cannot be checked
    // without the store: a retryable 503, never a 200 and never a hang.
    let mut tasks = Vec::new();
    for i in 0..2_000 {
        let http = app.http.clone();
        let url = format!("{}/v1/models", app.base);
        let well_formed = i % 2 == 0;
        let token = if well_formed {
            KeyFormat::default()
                .generate(KeyKind::Project)
                .expose()
                .to_owned()
        } else {
            format!("sk-proj-junk{i:0>45}")
        };
        tasks.push(tokio::spawn(async move {
            let response = http.get(url).bearer_auth(token).send().await.unwrap();
            let retry = response.headers().get("retry-after").cloned();
            (well_formed, response.status(), retry)
        }));
    }
    for task in tasks {
        match task.await.unwrap() {
            (false, status, _) => assert_eq!(status, StatusCode::UNAUTHORIZED),
            (true, status, retry) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(retry.unwrap(), "1");
            }
        }
    }
    assert_eq!(
        app.models(key.secret.expose()).await.status,
        StatusCode::OK,
        "a known key still works without the database"
    );
}

#[tokio::test]
async fn last_used_is_written_in_batches_and_flushed_at_shutdown() {
    let mut app = TestApp::spawn_with(|s| s.last_used_flush = Duration::from_secs(3_600)).await;
    let key = app.project_key().await;
    for _ in 0..20 {
        assert_eq!(app.models(key.secret.expose()).await.status, StatusCode::OK);
    }
    let stored = app.control.key(key.record.id.as_str()).await.unwrap();
    assert_eq!(stored.last_used_at, None, "no write per request");

    app.gateway.take().unwrap().shutdown().await;
    let stored = app.control.key(key.record.id.as_str()).await.unwrap();
    assert_eq!(stored.last_used_at, Some(START), "flushed once at shutdown");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope_and_openai_groups_are_forwarded() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    app.get("/v1/nope", None, &[])
        .await
        .assert_error(401, None, "You didn't provide an API key");
    app.get("/v1/nope", Some(key.secret.expose()), &[])
        .await
        .assert_error(404, None, "Invalid URL (GET /v1/nope)");
    let forwarded = app.get("/v1/files", Some(key.secret.expose()), &[]).await;
    assert_eq!(
        forwarded.status,
        StatusCode::OK,
        "OpenAI's groups go to the provider after authentication"
    );
    assert_eq!(forwarded.body["object"], "list", "{:?}", forwarded.body);
    assert_eq!(
        app.mock
            .requests()
            .last()
            .map(|r| r.path.clone())
            .as_deref(),
        Some("/v1/files")
    );
    app.get("/elsewhere", None, &[])
        .await
        .assert_error(404, None, "Invalid URL (GET /elsewhere)");
    let post = app
        .http
        .post(format!("{}/v1/models", app.base))
        .bearer_auth(key.secret.expose())
        .send()
        .await
        .unwrap();
    let wrong = Reply::read(post).await;
    wrong.assert_error(405, None, "Method not allowed (POST /v1/models)");
    assert!(
        wrong.headers.contains_key("openai-organization"),
        "an authenticated caller's error names its organization"
    );
    for path in ["/v1/models", "/v1"] {
        let anonymous = app
            .http
            .post(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(
            anonymous.status(),
            401,
            "{path}: no route or method is shown without a key"
        );
    }
    let health = app.get("/healthz", None, &[]).await;
    assert_eq!(health.body["status"], "ok");
}

/// Polls `/v1/models` until it answers `status` (a change travels through the change log).
async fn eventually(app: &TestApp, key: &str, status: u16) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let reply = app.models(key).await;
        if reply.status.as_u16() == status {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "still {} instead of {status}",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn ip_allow_lists_on_keys_and_projects() {
    let app = TestApp::spawn().await;
    let local = app.key_allowed_from(&["127.0.0.0/8"]).await;
    let elsewhere = app.key_allowed_from(&["10.0.0.0/8", "2001:db8::/32"]).await;
    assert_eq!(
        app.models(local.secret.expose()).await.status,
        StatusCode::OK
    );
    app.models(elsewhere.secret.expose()).await.assert_error(
        401,
        None,
        "IP not authorized for this API key.",
    );

    let list = tollgate_core::network::IpAllowList::parse(&["192.0.2.0/24".into()]).unwrap();
    app.control
        .set_project_allowed_ips(&TestApp::actor(), "Default project", list)
        .await
        .unwrap();
    eventually(&app, local.secret.expose(), 401)
        .await
        .assert_error(401, None, "IP not authorized for this project.");
    app.control
        .set_project_allowed_ips(&TestApp::actor(), "Default project", Default::default())
        .await
        .unwrap();
    eventually(&app, local.secret.expose(), 200).await;
    let trail = app.control.audit(Some(&app.project_id), 10).await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.event_type == "ip_allowlist.updated")
            .count(),
        2
    );
}

#[tokio::test]
async fn ip_allow_lists_work_for_ipv6_clients() {
    let app = TestApp::spawn_with(|s| s.listen = "[::1]:0".parse().unwrap()).await;
    assert!(app.base.contains("[::1]"));
    let v6 = app.key_allowed_from(&["::1/128"]).await;
    let v4_only = app.key_allowed_from(&["127.0.0.1"]).await;
    assert_eq!(app.models(v6.secret.expose()).await.status, StatusCode::OK);
    app.models(v4_only.secret.expose()).await.assert_error(
        401,
        None,
        "IP not authorized for this API key.",
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_trusted_proxies() {
    let untrusting = TestApp::spawn().await;
    let key = untrusting.key_allowed_from(&["203.0.113.0/24"]).await;
    let spoofed = untrusting
        .get(
            "/v1/models",
            Some(key.secret.expose()),
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await;
    spoofed.assert_error(401, None, "IP not authorized for this API key.");

    let behind_proxy = TestApp::spawn_with(|s| {
        s.trusted_proxies = vec![tollgate_core::network::Cidr::parse("127.0.0.1").unwrap()]
    })
    .await;
    let key = behind_proxy
        .key_allowed_from(&["203.0.113.0/24", "2001:db8::/32"])
        .await;
    let secret = key.secret.expose();
    let forwarded = behind_proxy
        .get(
            "/v1/models",
            Some(secret),
            &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")],
        )
        .await;
    assert_eq!(forwarded.status, StatusCode::OK, "{}", forwarded.body);
    behind_proxy
        .get(
            "/v1/models",
            Some(secret),
            &[("forwarded", "for=\"[2001:db8::7]:443\"")],
        )
        .await
        .assert_error(401, None, "IP not authorized for this API key.");
    behind_proxy
        .get("/v1/models", Some(secret), &[])
        .await
        .assert_error(401, None, "IP not authorized for this API key.");
    let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let reply = behind_proxy
        .post(
            "/v1/chat/completions",
            secret,
            chat,
            &[("x-forwarded-for", "203.0.113.9")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        behind_proxy.usage_events(1).await[0].client_ip.as_deref(),
        Some("203.0.113.9"),
        "usage records the real client"
    );
    let upstream = behind_proxy.mock.requests().last().unwrap().headers.clone();
    assert!(
        !upstream.contains_key("x-forwarded-for"),
        "forwarding headers are not passed to the provider"
    );
}

/// What a client that reaches Tollgate through a trusted proxy (here: the test's own address)
/// can claim, for each header the proxy may be configured to set.
#[tokio::test]
async fn a_client_cannot_choose_its_address_behind_a_trusted_proxy() {
    use tollgate_core::network::{Cidr, ClientIpHeader};
    for header in [ClientIpHeader::XForwardedFor, ClientIpHeader::Forwarded] {
        let app = TestApp::spawn_with(|s| {
            s.trusted_proxies = vec![Cidr::parse("127.0.0.0/8").unwrap()];
            s.client_ip_header = header;
        })
        .await;
        // The allow-list holds an internal range and the proxy's own address.
        let key = app.key_allowed_from(&["10.9.0.0/16", "127.0.0.1"]).await;
        let secret = key.secret.expose();
        let proxy_says = |client: &str| match header {
            ClientIpHeader::XForwardedFor => ("x-forwarded-for", client.to_owned()),
            ClientIpHeader::Forwarded => ("forwarded", format!("for={client}")),
        };
        let other = match header {
            ClientIpHeader::XForwardedFor => ("forwarded", "for=10.9.9.9".to_owned()),
            ClientIpHeader::Forwarded => ("x-forwarded-for", "10.9.9.9".to_owned()),
        };
        let status = |headers: Vec<(&'static str, String)>| {
            let app = &app;
            async move {
                let pairs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                app.get("/v1/models", Some(secret), &pairs).await.status
            }
        };
        let (name, outside) = proxy_says("198.51.100.1");
        assert_eq!(
            status(vec![(name, outside.clone())]).await,
            401,
            "{header:?}: an outside client is refused"
        );
        assert_eq!(
            status(vec![other.clone(), (name, outside)]).await,
            401,
            "{header:?}: the header the proxy does not set is never read"
        );
        assert_eq!(
            status(vec![other.clone()]).await,
            401,
            "{header:?}: a proxy that sends only the other header does not make everyone the proxy"
        );
        for unnamed in ["unknown", "_hidden", "garbage"] {
            let (name, value) = proxy_says(unnamed);
            assert_eq!(
                status(vec![(name, value)]).await,
                401,
                "{header:?} {unnamed}: an address the proxy cannot name is not the proxy's"
            );
        }
        let (name, spoofed) = proxy_says("10.9.9.9");
        let (_, real) = proxy_says("198.51.100.1");
        assert_eq!(
            status(vec![(name, format!("{spoofed}, {real}"))]).await,
            401,
            "{header:?}: a hop the client wrote left of what the proxy saw is ignored"
        );
        let (name, inside) = proxy_says("10.9.9.9");
        assert_eq!(
            status(vec![(name, inside)]).await,
            200,
            "{header:?}: an inside client passes"
        );
        assert_eq!(
            status(vec![]).await,
            200,
            "{header:?}: the proxy's own requests carry no header"
        );
    }
}

#[tokio::test]
async fn refused_addresses_are_audited_at_most_once_a_minute_per_key() {
    let app = TestApp::spawn().await;
    let key = app.key_allowed_from(&["10.0.0.0/8"]).await;
    let denials = || async {
        app.control
            .audit(Some(key.record.id.as_str()), 50)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == "ip_allowlist.request_denied")
            .collect::<Vec<_>>()
    };
    let wait_for = |count: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let found = denials().await;
            if found.len() >= count {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} audit entries",
                found.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    for _ in 0..20 {
        app.models(key.secret.expose()).await.assert_error(
            401,
            None,
            "IP not authorized for this API key.",
        );
    }
    let first = wait_for(1).await;
    assert_eq!(first[0].data["client_ip"], "127.0.0.1");
    assert_eq!(first[0].actor.kind, "api_key");
    assert_eq!(first[0].actor.id, key.record.id.as_str());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        denials().await.len(),
        1,
        "a flood of refusals writes one entry a minute"
    );

    app.clock.advance(61);
    app.models(key.secret.expose())
        .await
        .assert_error(401, None, "IP not authorized");
    assert_eq!(wait_for(2).await.len(), 2);
}

/// Sends `GET /v1/models` with each of `keys`, `parallel` at a time; returns the statuses.
async fn models_with_each(app: &TestApp, keys: Vec<String>, parallel: usize) -> Vec<u16> {
    use futures_util::StreamExt;
    let url = format!("{}/v1/models", app.base);
    futures_util::stream::iter(keys)
        .map(|key| {
            let request = app.http.get(&url).bearer_auth(key);
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffered(parallel)
        .collect()
        .await
}

#[tokio::test]
async fn a_new_key_works_at_once_and_concurrent_first_uses_share_one_lookup() {
    let app = TestApp::spawn_with(|s| s.follow_interval = Duration::from_secs(3_600)).await;
    let gateway = app.gateway.as_ref().unwrap();
    // The change log is not read again for an hour: only the lookup can make these work.
    for _ in 0..5 {
        let key = app.project_key().await;
        assert_eq!(app.models(key.secret.expose()).await.status, StatusCode::OK);
    }
    assert_eq!(gateway.key_lookups_made(), 5);
    let key = app.project_key().await;
    let statuses = models_with_each(&app, vec![key.secret.expose().to_owned(); 50], 50).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        gateway.key_lookups_made(),
        6,
        "one lookup for 50 first uses"
    );
    // An unknown key is looked up once, then remembered as unknown.
    let forged = KeyFormat::default().generate(KeyKind::Project);
    let statuses = models_with_each(&app, vec![forged.expose().to_owned(); 20], 4).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(gateway.key_lookups_made(), 7);
    // A revocation still reaches a key that arrived by lookup, through the change log.
    app.control
        .revoke_key(&TestApp::actor(), key.record.id.as_str())
        .await
        .unwrap();
    app.gateway
        .as_ref()
        .unwrap()
        .keys()
        .catch_up(&app.store)
        .await
        .unwrap();
    app.models(key.secret.expose())
        .await
        .assert_error(401, Some("invalid_api_key"), "revoked");
}

#[tokio::test]
async fn a_flood_of_forged_keys_costs_the_store_at_most_the_lookup_rate() {
    const RATE: u32 = 20;
    let app = TestApp::spawn_with(|s| s.key_lookups_per_second = RATE).await;
    let valid = app.project_key().await;
    assert_eq!(
        app.models(valid.secret.expose()).await.status,
        StatusCode::OK
    );
    let gateway = app.gateway.as_ref().unwrap();
    let before = gateway.key_lookups_made();
    // 10,000 distinct keys with valid checksums, none in the store, valid requests among them:
    // a key that was looked up is unknown (401), one over the cap could not be checked (503).
    let format = KeyFormat::default();
    let mut keys: Vec<String> = (0..10_000)
        .map(|_| format.generate(KeyKind::Project).expose().to_owned())
        .collect();
    for at in (0..keys.len()).step_by(100) {
        keys.insert(at, valid.secret.expose().to_owned());
    }
    let started = Instant::now();
    let statuses = models_with_each(&app, keys.clone(), 32).await;
    let seconds = started.elapsed().as_secs_f64();
    let made = gateway.key_lookups_made() - before;
    // A full bucket (one second's worth), then the rate.
    let bound = f64::from(RATE) * (1.0 + seconds) + 1.0;
    assert!(
        (made as f64) <= bound,
        "{made} store lookups in {seconds:.2} s (at most {bound:.0} allowed)"
    );
    let mut unknown = 0;
    for (key, status) in keys.iter().zip(&statuses) {
        if key == valid.secret.expose() {
            assert_eq!(*status, 200);
        } else {
            assert!(*status == 401 || *status == 503, "{status}");
            unknown += u64::from(*status == 401);
        }
    }
    assert_eq!(
        unknown, made,
        "a 401 for every key looked up, and only for those"
    );
    println!(
        "{} requests, {made} store lookups in {seconds:.2} s",
        keys.len()
    );
}
