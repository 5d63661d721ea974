//! Client tokens (`ek_...`): minted by a project key through `POST /v1/realtime/client_secrets`,
//! used in its place by browsers and apps within their grant (scopes, models, end user, request
//! and token caps, lifetime, origins), metered to the key, refused once the key is revoked; and
//! the CORS answers that let a page on an allowed origin, and no other, call the API with one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::TestApp;
use tollgate_core::Permissions;

const PAGE: &str = "http://localhost:5173";

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]})
}

/// A chat completion made with `secret` from a page on `origin`.
async fn from_page(app: &TestApp, secret: &str, origin: &str) -> support::Reply {
    app.post(
        "/v1/chat/completions",
        secret,
        chat("gpt-4o-mini"),
        &[("origin", origin)],
    )
    .await
}

async fn mint(app: &TestApp, key: &str, body: Value) -> support::Reply {
    app.post("/v1/realtime/client_secrets", key, body, &[])
        .await
}

async fn minted(app: &TestApp, key: &str, body: Value) -> (String, Value) {
    let reply = mint(app, key, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    (reply.body["value"].as_str().unwrap().to_owned(), reply.body)
}

#[tokio::test]
async fn a_minted_token_calls_models_in_its_keys_name_and_within_its_grant() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let (token, answer) = minted(&app, key.secret.expose(), json!({})).await;
    assert!(token.starts_with("ek_") && token.len() == 52, "{token}");
    assert_eq!(
        answer["expires_at"].as_i64(),
        Some(app.clock_now().seconds() + 600),
        "ten minutes unless asked"
    );
    assert_eq!(answer["key_id"], key.record.id.as_str());
    assert_eq!(answer["session"]["type"], "realtime");
    assert_eq!(
        answer["scopes"],
        json!([
            "models:read",
            "chat.completions:write",
            "responses:write",
            "realtime:write"
        ])
    );
    // Stored by hash only: the token's text is nowhere in the database.
    let db = std::fs::read(app._dir.path().join("tollgate.db")).unwrap_or_default();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));

    let reply = app
        .post("/v1/chat/completions", &token, chat("gpt-4o-mini"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["openai-project"], app.project_id.as_str());
    let events = app.usage_events(1).await;
    assert_eq!(events[0].key_id, key.record.id, "metered to the key");
    assert!(events[0].input_tokens > 0);
    // Not beyond its scopes: files are not in the default set.
    app.get("/v1/files", Some(&token), &[]).await.assert_error(
        401,
        None,
        "Missing scopes: api.files.read",
    );
    // Nor stored objects, even within its scopes: listing stored chat completions is the
    // project's data, not a browser's.
    let reply = app.get("/v1/chat/completions", Some(&token), &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "client_token_not_allowed");
    let reply = app.get("/v1/responses/resp_123", Some(&token), &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        app.mock.requests().iter().all(|r| r.method != "GET"),
        "nothing reached the provider"
    );
    // A token mints no tokens.
    let reply = mint(&app, &token, json!({})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "client_token_not_allowed");
    // A typo is refused before any lookup, like a key's.
    let typo = format!(
        "{}{}",
        &token[..51],
        if token.ends_with('a') { 'b' } else { 'a' }
    );
    app.models(&typo)
        .await
        .assert_error(401, Some("invalid_api_key"), "Incorrect API key");
}

#[tokio::test]
async fn scopes_models_and_the_end_user_are_bound_to_the_token() {
    let app = TestApp::spawn().await;
    let key = app.key_for_models(&["gpt-4o*"]).await;
    let secret = key.secret.expose();
    // Never more than the key: a model or scope it lacks is refused at minting.
    let reply = mint(&app, secret, json!({"models": ["o4-mini"]})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["param"], "models");
    let restricted = app
        .create_key(
            "chat only",
            tollgate_control::KeyOwnerRequest::Project(None),
            Permissions::from_parts("restricted", &["chat.completions:write".into()]).unwrap(),
        )
        .await;
    let reply = mint(
        &app,
        restricted.secret.expose(),
        json!({"scopes": ["embeddings"]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["error"]["param"], "scopes");
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not grant"));

    let (token, answer) = minted(
        &app,
        secret,
        json!({"models": ["gpt-4o-mini"], "scopes": ["chat.completions"], "user": "user-42"}),
    )
    .await;
    assert_eq!(answer["scopes"], json!(["chat.completions:write"]));
    let reply = app
        .post("/v1/chat/completions", &token, chat("gpt-4o"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("This client token"));
    let mut body = chat("gpt-4o-mini");
    body["user"] = json!("someone-else");
    let reply = app.post("/v1/chat/completions", &token, body, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sent = app.mock.requests();
    assert_eq!(
        sent.last().unwrap().body["user"],
        "user-42",
        "the minter names the user"
    );
    app.post(
        "/v1/embeddings",
        &token,
        json!({"model": "gpt-4o-mini", "input": "x"}),
        &[],
    )
    .await
    .assert_error(401, None, "Missing scopes: model.request");
    // A session's model is the token's model when no list is given.
    let (token, answer) = minted(
        &app,
        secret,
        json!({"session": {"type": "realtime", "model": "gpt-4o-realtime"}}),
    )
    .await;
    assert_eq!(answer["models"], json!(["gpt-4o-realtime"]));
    assert_eq!(answer["session"]["model"], "gpt-4o-realtime");
    let reply = app
        .post("/v1/chat/completions", &token, chat("gpt-4o-mini"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn expiry_caps_and_the_keys_revocation_end_a_token() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let secret = key.secret.expose();
    // Lifetimes: 10 s to 24 h.
    for seconds in [5, 86_401] {
        let reply = mint(
            &app,
            secret,
            json!({"expires_after": {"anchor": "created_at", "seconds": seconds}}),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"]["param"], "expires_after.seconds");
    }
    let (day, answer) = minted(&app, secret, json!({"expires_after": {"seconds": 86_400}})).await;
    assert_eq!(
        answer["expires_at"].as_i64(),
        Some(app.clock_now().seconds() + 86_400)
    );
    let reply = mint(&app, secret, json!({"expires_at": 5})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["param"], "expires_at");

    let (short, _) = minted(&app, secret, json!({"expires_after": {"seconds": 60}})).await;
    assert_eq!(app.models(&short).await.status, StatusCode::OK);
    app.clock.advance(60);
    app.models(&short)
        .await
        .assert_error(401, Some("client_token_expired"), "expired at");
    assert_eq!(app.models(&day).await.status, StatusCode::OK);

    // Two requests, then refused for good (SDKs are told not to retry).
    let (capped, _) = minted(&app, secret, json!({"max_requests": 2})).await;
    for _ in 0..2 {
        assert_eq!(app.models(&capped).await.status, StatusCode::OK);
    }
    let spent = app.models(&capped).await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(spent.body["error"]["code"], "client_token_exhausted");
    assert_eq!(spent.body["error"]["type"], "insufficient_quota");
    assert_eq!(spent.headers["x-should-retry"], "false");

    // A token cap: a request's tokens count once it ends, and the next request is refused.
    let (tokens, answer) = minted(&app, secret, json!({"max_tokens": 5})).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    let reply = app
        .post("/v1/chat/completions", &tokens, chat("gpt-4o-mini"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let used = reply.body["usage"]["total_tokens"].as_i64().unwrap();
    assert!(used > 5);
    // The count is written as the request's metering ends, just after its answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let hash = app
        .hasher
        .hash(&tollgate_core::client_token::parse(&tokens).unwrap());
    loop {
        let found = app.store.client_token(&hash).await.unwrap().unwrap();
        assert_eq!(found.token.id.as_str(), id);
        if found.token.tokens_used == used {
            assert_eq!(found.token.requests_used, 1);
            break;
        }
        assert!(Instant::now() < deadline, "tokens never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reply = app
        .post("/v1/chat/completions", &tokens, chat("gpt-4o-mini"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);

    // The key revoked: its tokens die with it.
    app.revoke(&key.record.id).await;
    app.models(&day)
        .await
        .assert_error(401, Some("invalid_api_key"), "has been revoked");
}

#[tokio::test]
async fn browsers_on_allowed_origins_and_no_others_get_cors_answers() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-stainless-os",
            )
            .send()
    };
    // No token names the page yet.
    let refused = preflight(PAGE).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let (token, answer) = minted(
        &app,
        key.secret.expose(),
        json!({"allowed_origins": ["HTTP://LOCALHOST:5173/"]}),
    )
    .await;
    assert_eq!(answer["allowed_origins"], json!([PAGE]));
    let allowed = preflight(PAGE).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization, content-type, x-stainless-os"
    );
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert_eq!(
        preflight("http://localhost:5174").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        preflight("null").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let reply = from_page(&app, &token, PAGE).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["access-control-allow-origin"], PAGE);
    assert!(reply.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("x-request-id"));
    // From another page: refused, and nothing the page could read.
    let reply = from_page(&app, &token, "https://evil.example").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "origin_not_allowed");
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    // A key is never usable from a page, even one a token names.
    let reply = from_page(&app, key.secret.expose(), PAGE).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    // Expired: refused, and (no live token naming the page any more) nothing the page can read.
    app.clock.advance(599);
    let reply = from_page(&app, &token, PAGE).await;
    assert_eq!(reply.status, StatusCode::OK);
    app.clock.advance(1);
    let reply = from_page(&app, &token, PAGE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"]["code"], "client_token_expired");
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    assert_eq!(
        preflight(PAGE).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn forged_tokens_cost_one_lookup_each_and_known_ones_none() {
    let app = TestApp::spawn().await;
    let gateway = app.gateway.as_ref().unwrap();
    let key = app.project_key().await;
    let (token, _) = minted(&app, key.secret.expose(), json!({})).await;
    for _ in 0..3 {
        assert_eq!(app.models(&token).await.status, StatusCode::OK);
    }
    assert_eq!(
        gateway.client_token_lookups_made(),
        0,
        "a token minted here is known here"
    );
    // Checksum-valid tokens nobody minted: each is looked up once, then known to be unknown.
    let forged: Vec<String> = (0..5)
        .map(|_| tollgate_core::client_token::generate().expose().to_owned())
        .collect();
    for _ in 0..3 {
        for token in &forged {
            app.models(token)
                .await
                .assert_error(401, Some("invalid_api_key"), "Incorrect API key");
        }
    }
    assert_eq!(gateway.client_token_lookups_made(), 5);
}
