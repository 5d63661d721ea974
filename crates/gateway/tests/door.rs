//! The one door, over the wire: a corpus of path spellings, methods and request targets sent
//! byte for byte (no client-side URL normalization) with keys of different scopes and model
//! allow-lists. For each: refused, or served as the canonical endpoint with that endpoint's
//! checks, and exactly what the provider received (method, canonical path, Tollgate's provider
//! key). The whole corpus runs against a provider over plain HTTP (Tollgate's own client) and
//! over HTTPS (reqwest, the production default), trusted through a `ca_file`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{TestApp, Transport, PROVIDER_KEY};
use tollgate_control::KeyOwnerRequest;
use tollgate_core::{Access, Permissions, Scope};

/// What must happen to one request.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused with this status; nothing reaches the provider.
    Refused(u16),
    /// Answered by Tollgate itself with this status; nothing reaches the provider.
    Local(u16),
    /// Forwarded: the provider sees this method and path (and query), and the client gets 200.
    Forwarded(&'static str, &'static str),
}
use Expect::*;

/// The keys of the corpus.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// Every scope, every model.
    All,
    /// Every scope, only `gpt-4o-mini`.
    MiniOnly,
    /// Restricted to `models:read`.
    ModelsRead,
    /// Restricted to `files:read`.
    FilesRead,
}

const MINI: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const BIG: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

fn corpus() -> Vec<(Who, &'static str, String, &'static str, Expect)> {
    let long = format!("/v1/files/{}", "a".repeat(3_000));
    let mut cases: Vec<(Who, &str, String, &str, Expect)> = Vec::new();
    let mut add = |who, method, target: &str, body, expect| {
        cases.push((who, method, target.to_owned(), body, expect));
    };
    // Dot segments, raw and encoded, in any case, with `;` parameters; empty segments;
    // encoded and raw separators; double encoding; control and non-ASCII bytes: refused.
    for target in [
        "/v1/x/../chat/completions",
        "/v1/../v1/chat/completions",
        "/v1/embeddings/%2e%2e/chat/completions",
        "/v1/embeddings/%2E%2E/chat/completions",
        "/v1/embeddings/.%2E/chat/completions",
        "/v1/embeddings/%2e./chat/completions",
        "/v1/x/..;/chat/completions",
        "/v1/chat/./completions",
        "/v1/chat/completions/.",
        "/v1/chat/completions/..",
        "/v1//chat/completions",
        "//v1/chat/completions",
        "/v1/chat/completions/",
        "/v1/x/..%2fchat/completions",
        "/v1/chat/completions%2f",
        "/v1/chat/completions%2F",
        "/v1/x/..%5Cchat/completions",
        "/v1/x/%252e%252e/chat/completions",
        "/v1/chat%00/completions",
        "/v1/chat%0d%0a/completions",
        "/v1/chat/completions%7f",
        "/v1/chat/compl%C3%A9tions",
        "/v1/../admin/x",
        "/v1/chat%2",
    ] {
        add(Who::All, "POST", target, MINI, Refused(400));
    }
    add(Who::All, "GET", &long, "", Refused(400));
    // A raw backslash never reaches routing (the HTTP parser or the door refuses it).
    add(
        Who::All,
        "POST",
        "/v1/x/..\\chat/completions",
        MINI,
        Refused(400),
    );
    // Unreserved characters spelled as escapes are the canonical endpoint, with its checks.
    for target in [
        "/v1/chat/%63ompletions",
        "/v1/%63hat/completions",
        "/v1/chat/completion%73",
        "/v1/%63%68%61%74/%63%6F%6D%70%6C%65%74%69%6F%6E%73",
    ] {
        add(Who::MiniOnly, "POST", target, BIG, Refused(403));
        add(
            Who::MiniOnly,
            "POST",
            target,
            MINI,
            Forwarded("POST", "/v1/chat/completions"),
        );
        add(Who::FilesRead, "POST", target, MINI, Refused(401));
    }
    // The client's query goes along, after the canonical path.
    add(
        Who::MiniOnly,
        "POST",
        "/v1/chat/%63ompletions?api-version=2024-10-21",
        MINI,
        Forwarded("POST", "/v1/chat/completions?api-version=2024-10-21"),
    );
    // Absolute-form targets: the path is all that counts.
    for target in [
        "http://127.0.0.1/v1/chat/completions",
        "http://evil.example/v1/chat/completions",
    ] {
        add(Who::MiniOnly, "POST", target, BIG, Refused(403));
        add(
            Who::MiniOnly,
            "POST",
            target,
            MINI,
            Forwarded("POST", "/v1/chat/completions"),
        );
    }
    add(
        Who::All,
        "POST",
        "http://evil.example/v1/x/../chat/completions",
        MINI,
        Refused(400),
    );
    // Scope follows the canonical path, never the first raw segment.
    for target in ["/v1/models/../files", "/v1/models/%2e%2e/files"] {
        add(Who::ModelsRead, "GET", target, "", Refused(400));
    }
    // With an encoded `/` it is a model lookup (ids may hold `/`): answered here, never sent.
    add(
        Who::ModelsRead,
        "GET",
        "/v1/models/..%2Ffiles",
        "",
        Refused(404),
    );
    add(Who::ModelsRead, "GET", "/v1/files", "", Refused(401));
    add(Who::ModelsRead, "GET", "/v1/fil%65s", "", Refused(401));
    add(
        Who::FilesRead,
        "GET",
        "/v1/fil%65s",
        "",
        Forwarded("GET", "/v1/files"),
    );
    add(
        Who::FilesRead,
        "GET",
        "/v1/files/file-abc/content?x=%2F..",
        "",
        Forwarded("GET", "/v1/files/file-abc/content?x=%2F.."),
    );
    add(
        Who::FilesRead,
        "DELETE",
        "/v1/files/file-abc",
        "",
        Refused(401),
    );
    add(
        Who::All,
        "DELETE",
        "/v1/files/file-abc",
        "",
        Forwarded("DELETE", "/v1/files/file-abc"),
    );
    add(Who::FilesRead, "GET", "/v1/batches", "", Refused(401));
    // Groups outside OpenAI's table are not found, whatever the key may do.
    for target in [
        "/v1/nope",
        "/v1/admin/x",
        "/v1/organization/projects",
        "/v1/realtime/sessions",
        "/v1/realtime/client_secrets/x",
        "/v1/chat/other",
        "/v1/completions/x",
        "/v1",
    ] {
        add(Who::All, "POST", target, MINI, Refused(404));
    }
    // Client tokens are minted here, never forwarded: a chat body is not a minting request.
    add(
        Who::All,
        "POST",
        "/v1/realtime/client_secrets",
        MINI,
        Refused(400),
    );
    add(
        Who::All,
        "POST",
        "/v1/realtime/%63lient_secrets",
        MINI,
        Refused(400),
    );
    // Methods OpenAI's API does not use are never forwarded.
    for method in [
        "TRACE", "PUT", "PATCH", "HEAD", "OPTIONS", "CONNECT", "PROPFIND",
    ] {
        add(Who::All, method, "/v1/files", "", Refused(405));
    }
    add(Who::All, "DELETE", "/v1/chat/completions", "", Refused(405));
    add(Who::All, "GET", "/v1/responses", "", Refused(405));
    add(Who::All, "CONNECT", "127.0.0.1:1", "", Refused(400));
    // Models are answered from the catalog and the key's allow-list.
    add(
        Who::MiniOnly,
        "GET",
        "/v1/models/gpt-4o-mini",
        "",
        Local(200),
    );
    add(Who::MiniOnly, "GET", "/v1/models/gpt-4o", "", Refused(404));
    add(
        Who::All,
        "GET",
        "/v1/models/no-such-model",
        "",
        Refused(404),
    );
    add(Who::ModelsRead, "GET", "/v1/models/gpt-4o", "", Local(200));
    add(
        Who::MiniOnly,
        "GET",
        "/v1/models/gpt%2D4o%2Dmini",
        "",
        Local(200),
    );
    // A `/` in a model id, as the Node SDK encodes it: looked up, never forwarded.
    add(
        Who::All,
        "GET",
        "/v1/models/meta-llama%2FLlama-3.1-8B",
        "",
        Refused(404),
    );
    add(
        Who::All,
        "DELETE",
        "/v1/models/a%2F..%2F..%2Ffiles",
        "",
        Refused(400),
    );
    add(
        Who::All,
        "POST",
        "/v1/responses/..%3Bx/compact",
        MINI,
        Refused(400),
    );
    add(
        Who::MiniOnly,
        "POST",
        "/v1/responses/compact",
        BIG,
        Refused(403),
    );
    add(Who::FilesRead, "GET", "/v1/models/gpt-4o", "", Refused(401));
    add(
        Who::All,
        "DELETE",
        "/v1/models/ft:gpt-4o-mini:acme::1",
        "",
        Forwarded("DELETE", "/v1/models/ft:gpt-4o-mini:acme::1"),
    );
    cases
}

async fn key(app: &TestApp, who: Who) -> String {
    let restricted = |scope, access| Permissions::Restricted {
        scopes: [(scope, access)].into_iter().collect(),
    };
    let created = match who {
        Who::All => app.project_key().await,
        Who::MiniOnly => app.key_for_models(&["gpt-4o-mini"]).await,
        Who::ModelsRead => {
            app.create_key(
                "models-read",
                KeyOwnerRequest::Project(None),
                restricted(Scope::Models, Access::Read),
            )
            .await
        }
        Who::FilesRead => {
            app.create_key(
                "files-read",
                KeyOwnerRequest::Project(None),
                restricted(Scope::Files, Access::Read),
            )
            .await
        }
    };
    created.secret.expose().to_owned()
}

/// The project's own provider credential.
const OWN_KEY: &str = "sk-upstream-project-own-credential";

async fn run_corpus(transport: Transport) {
    // The project has a provider credential of its own, so paths are forwarded as they are
    // (through a shared one the ownership ledger would answer for `file-abc`: tests/tenancy.rs).
    let app = TestApp::spawn_after_first_run(transport, |settings, first| {
        settings.providers[0].project_keys = vec![(
            first.project.id.clone(),
            tollgate_gateway::ProviderKey::new(OWN_KEY.to_owned()),
        )];
    })
    .await;
    let keys = [
        (Who::All, key(&app, Who::All).await),
        (Who::MiniOnly, key(&app, Who::MiniOnly).await),
        (Who::ModelsRead, key(&app, Who::ModelsRead).await),
        (Who::FilesRead, key(&app, Who::FilesRead).await),
    ];
    let secret = |who: Who| {
        keys.iter()
            .find(|(w, _)| std::mem::discriminant(w) == std::mem::discriminant(&who))
            .map(|(_, k)| k.clone())
            .unwrap()
    };
    let mut failures = Vec::new();
    for (who, method, target, body, expect) in corpus() {
        let seen_before = app.mock.requests().len();
        let reply = app.raw(method, &target, Some(&secret(who)), body).await;
        let seen: Vec<_> = app.mock.requests().split_off(seen_before);
        let shown = format!(
            "{transport:?} {who:?} {method} {} -> {}",
            &target[..target.len().min(80)],
            reply.status
        );
        match expect {
            Refused(status) | Local(status) => {
                if reply.status != status {
                    failures.push(format!("{shown}: want {status}: {}", reply.body));
                }
                if !seen.is_empty() {
                    let paths: Vec<String> = seen
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect();
                    failures.push(format!("{shown}: reached the provider as {paths:?}"));
                }
                if matches!(expect, Refused(_))
                    && method != "HEAD"
                    && !target.contains('\\')
                    && !reply.body.contains("\"error\"")
                {
                    failures.push(format!("{shown}: not OpenAI's envelope: {}", reply.body));
                }
            }
            Forwarded(want_method, want_path) => {
                // The provider's answer: 200, or its 404 for an object it does not have.
                if reply.status != 200 && reply.status != 404 {
                    failures.push(format!("{shown}: want 200: {}", reply.body));
                }
                let [request] = seen.as_slice() else {
                    failures.push(format!("{shown}: the provider got {} requests", seen.len()));
                    continue;
                };
                let query = request.query.as_ref().map(|q| format!("?{q}"));
                let path = format!("{}{}", request.path, query.unwrap_or_default());
                if request.method != want_method || path != want_path {
                    failures.push(format!(
                        "{shown}: the provider got {} {path}, want {want_method} {want_path}",
                        request.method
                    ));
                }
                let auth = request
                    .headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap());
                if auth != Some(&format!("Bearer {OWN_KEY}")) {
                    failures.push(format!("{shown}: the provider got key {auth:?}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        corpus().len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_spelling_is_refused_or_served_as_its_canonical_endpoint_over_http() {
    run_corpus(Transport::Http).await;
}

#[tokio::test]
async fn every_spelling_is_refused_or_served_as_its_canonical_endpoint_over_https() {
    run_corpus(Transport::Https).await;
}

#[tokio::test]
async fn a_refused_path_says_why_in_openai_s_envelope() {
    let app = TestApp::spawn().await;
    let key = app.project_key().await;
    let reply = app
        .raw(
            "POST",
            "/v1/embeddings/%2e%2e/chat/completions",
            Some(key.secret.expose()),
            MINI,
        )
        .await;
    assert_eq!(reply.status, 400);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Invalid URL (POST /v1/embeddings/%2e%2e/chat/completions)"),
        "{message}"
    );
    assert!(message.contains("`.` or `..` segment"), "{message}");
    let trace = app
        .raw("TRACE", "/v1/files", Some(key.secret.expose()), "")
        .await;
    assert_eq!(trace.status, 405);
    assert!(trace.body.contains("Method not allowed (TRACE /v1/files)"));
    assert!(!trace.body.contains(PROVIDER_KEY));
}
