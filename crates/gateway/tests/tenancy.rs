//! Projects are tenants: through one shared provider credential, what project A makes at the
//! provider (files, uploads, batches, vector stores, fine-tuning jobs, stored responses and
//! chat completions, conversations, containers, evals) is A's alone. The demo provider keeps
//! objects as one OpenAI account does (everyone who calls sees everything), so every refusal
//! here is Tollgate's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{TestApp, Transport, PROVIDER_KEY};
use tollgate_control::KeyOwnerRequest;
use tollgate_core::objects::ObjectKind;
use tollgate_core::Permissions;

struct Tenants {
    app: TestApp,
    a: String,
    b: String,
}

impl Tenants {
    async fn start(transport: Transport) -> Tenants {
        let app = TestApp::spawn_over(transport, |_| {}).await;
        Tenants::with(app).await
    }

    async fn with(app: TestApp) -> Tenants {
        let a = app.project_key().await.secret.expose().to_owned();
        let beta = app
            .control
            .create_project(&TestApp::actor(), "beta")
            .await
            .unwrap();
        let b = app
            .create_key(
                "beta-app",
                KeyOwnerRequest::Project(Some(beta.id.to_string())),
                Permissions::All,
            )
            .await
            .secret
            .expose()
            .to_owned();
        Tenants { app, a, b }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .app
            .http
            .request(method, format!("{}{path}", self.app.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Uploads a file as the SDKs do (multipart); its id.
    async fn upload(&self, key: &str, content: &str) -> String {
        let boundary = "tollgate-test-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
        );
        let response = self
            .app
            .http
            .post(format!("{}/v1/files", self.app.base))
            .bearer_auth(key)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let file: Value = response.json().await.unwrap();
        file["id"].as_str().unwrap().to_owned()
    }

    /// Makes an object of `kind` as `key`'s project; its id.
    async fn make(&self, kind: ObjectKind, key: &str) -> String {
        let file = || self.upload(key, BATCH_LINE);
        let (path, body) = match kind {
            ObjectKind::File => return file().await,
            ObjectKind::Upload => (
                "/v1/uploads",
                json!({"filename": "big.jsonl", "purpose": "batch", "bytes": 10, "mime_type": "text/jsonl"}),
            ),
            ObjectKind::Batch => (
                "/v1/batches",
                json!({"input_file_id": file().await, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            ),
            ObjectKind::VectorStore => (
                "/v1/vector_stores",
                json!({"name": "docs", "file_ids": [file().await]}),
            ),
            ObjectKind::FineTuningJob => (
                "/v1/fine_tuning/jobs",
                json!({"model": "gpt-4o-mini", "training_file": file().await}),
            ),
            ObjectKind::Response => (
                "/v1/responses",
                json!({"model": "gpt-4o-mini", "input": "hello"}),
            ),
            ObjectKind::ChatCompletion => (
                "/v1/chat/completions",
                json!({"model": "gpt-4o-mini", "store": true, "messages": [{"role": "user", "content": "hi"}]}),
            ),
            ObjectKind::Conversation => ("/v1/conversations", json!({"metadata": {"topic": "x"}})),
            ObjectKind::Container => ("/v1/containers", json!({"name": "sandbox"})),
            ObjectKind::Eval => (
                "/v1/evals",
                json!({"name": "e", "data_source_config": {"type": "custom", "item_schema": {}}, "testing_criteria": []}),
            ),
        };
        let (status, made) = self.call("POST", path, key, Some(body)).await;
        assert_eq!(status, 200, "{kind}: {made}");
        made["id"].as_str().unwrap().to_owned()
    }

    /// Requests the provider received for `path`.
    fn seen(&self, path: &str) -> usize {
        self.app
            .mock
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// The ids a key lists of `kind` (responses have no list: OpenAI's API has none).
    async fn listed(&self, kind: ObjectKind, key: &str) -> Vec<String> {
        if kind == ObjectKind::Response {
            return Vec::new();
        }
        let (status, list) = self
            .call(
                "GET",
                &format!("{}?limit=100", kind.collection()),
                key,
                None,
            )
            .await;
        assert_eq!(status, 200, "{kind}: {list}");
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

const BATCH_LINE: &str = r#"{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"TENANT-SECRET"}]}}"#;

/// A request that uses (names) an object of `kind` in another call: its method, path and body.
fn use_of(kind: ObjectKind, id: &str) -> (&'static str, String, Option<Value>) {
    let respond = |extra: Value| {
        let mut body = json!({"model": "gpt-4o-mini", "input": "hi"});
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        ("POST", "/v1/responses".to_owned(), Some(body))
    };
    match kind {
        ObjectKind::File => (
            "POST",
            "/v1/batches".into(),
            Some(
                json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            ),
        ),
        ObjectKind::Upload => (
            "POST",
            format!("/v1/uploads/{id}/complete"),
            Some(json!({"part_ids": []})),
        ),
        ObjectKind::Batch => ("POST", format!("/v1/batches/{id}/cancel"), None),
        ObjectKind::VectorStore => {
            respond(json!({"tools": [{"type": "file_search", "vector_store_ids": [id]}]}))
        }
        ObjectKind::FineTuningJob => ("GET", format!("/v1/fine_tuning/jobs/{id}/events"), None),
        ObjectKind::Response => respond(json!({"previous_response_id": id})),
        ObjectKind::ChatCompletion => ("GET", format!("/v1/chat/completions/{id}/messages"), None),
        ObjectKind::Conversation => respond(json!({"conversation": {"id": id}})),
        ObjectKind::Container => {
            respond(json!({"tools": [{"type": "code_interpreter", "container": id}]}))
        }
        ObjectKind::Eval => (
            "POST",
            format!("/v1/evals/{id}/runs"),
            Some(
                json!({"name": "run", "data_source": {"type": "jsonl", "source": {"type": "file_content", "content": []}}}),
            ),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_object_stays_in_the_project_that_made_it() {
    for transport in [Transport::Http, Transport::Https] {
        let t = Tenants::start(transport).await;
        for kind in ObjectKind::ALL {
            let id = t.make(kind, &t.a).await;
            let one = format!("{}/{id}", kind.collection());
            // A reads, lists and uses it.
            let (status, read) = t.call("GET", &one, &t.a, None).await;
            assert_eq!(status, 200, "{kind} {transport:?}: A reads its own: {read}");
            assert!(
                kind == ObjectKind::Response || t.listed(kind, &t.a).await.contains(&id),
                "{kind}: A lists its own"
            );
            let (method, path, body) = use_of(kind, &id);
            // B cannot see it in a list, read, use or delete it: OpenAI's 404, nothing forwarded.
            assert!(
                !t.listed(kind, &t.b).await.contains(&id),
                "{kind}: B lists A's"
            );
            let before = (t.seen(&one), t.seen(&path));
            let (status, err) = t.call("GET", &one, &t.b, None).await;
            assert_eq!(status, 404, "{kind}: B reads A's: {err}");
            assert_eq!(
                err["error"]["message"],
                format!("No such {} object: {id}", kind.noun()),
                "{kind}"
            );
            assert_eq!(err["error"]["type"], "invalid_request_error");
            let (status, err) = t.call(method, &path, &t.b, body.clone()).await;
            assert_eq!(status, 404, "{kind}: B uses A's ({method} {path}): {err}");
            let (status, _) = t.call("DELETE", &one, &t.b, None).await;
            assert_eq!(status, 404, "{kind}: B deletes A's");
            assert_eq!(
                (t.seen(&one), t.seen(&path)),
                before,
                "{kind}: B's calls reached the provider"
            );
            // A uses it, then deletes it; then it is gone for A too.
            let (status, used) = t.call(method, &path, &t.a, body).await;
            assert_eq!(
                status, 200,
                "{kind}: A uses its own ({method} {path}): {used}"
            );
            let (status, gone) = t.call("DELETE", &one, &t.a, None).await;
            assert_eq!(status, 200, "{kind}: A deletes its own: {gone}");
            let (status, _) = t.call("GET", &one, &t.a, None).await;
            assert_eq!(status, 404, "{kind}: deleted");
            assert!(
                !t.listed(kind, &t.a).await.contains(&id),
                "{kind}: deleted, not listed"
            );
        }
        // Every object was recorded with its request's usage event (spooled, then stored).
        let org = t.app.control.organization().await.unwrap();
        let events = t.app.store.recent_usage(&org.id, 1_000).await.unwrap();
        assert!(events.iter().all(|e| e.status != 0), "{transport:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_list_pages_truthfully_across_provider_pages() {
    let t = Tenants::start(Transport::Http).await;
    let first = t.upload(&t.a, "a1").await;
    // More of B's than one provider page (100) holds, between A's two files.
    for n in 0..150 {
        t.upload(&t.b, &format!("b{n}")).await;
    }
    let second = t.upload(&t.a, "a2").await;
    let before = t.seen("/v1/files");
    let (status, page) = t.call("GET", "/v1/files?limit=1", &t.a, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["data"][0]["id"], second.as_str(), "newest first");
    assert_eq!(page["has_more"], true, "A has an older file: {page}");
    assert_eq!(page["first_id"], second.as_str());
    assert_eq!(page["last_id"], second.as_str());
    let (_, next) = t
        .call(
            "GET",
            &format!("/v1/files?limit=1&after={second}"),
            &t.a,
            None,
        )
        .await;
    assert_eq!(next["data"][0]["id"], first.as_str(), "{next}");
    assert_eq!(next["has_more"], false, "{next}");
    assert!(
        t.seen("/v1/files") - before >= 3,
        "the second page crossed the provider's pages"
    );
    // B's list holds its 150, page by page, and never A's.
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(after) => format!("/v1/files?limit=40&after={after}"),
            None => "/v1/files?limit=40".to_owned(),
        };
        let (status, page) = t.call("GET", &path, &t.b, None).await;
        assert_eq!(status, 200, "{page}");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() <= 40);
        all.extend(ids);
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    assert_eq!(all.len(), 150);
    assert!(!all.contains(&first) && !all.contains(&second));
    // A cursor of another project's object is that object's 404.
    let (status, _) = t
        .call("GET", &format!("/v1/files?after={}", all[0]), &t.a, None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_output_file_belongs_to_the_batch_project() {
    let t = Tenants::start(Transport::Http).await;
    let input = t.upload(&t.a, BATCH_LINE).await;
    let (_, batch) = t
        .call("POST", "/v1/batches", &t.a, Some(json!({"input_file_id": input, "endpoint": "/v1/chat/completions", "completion_window": "24h"})))
        .await;
    let batch_id = batch["id"].as_str().unwrap();
    let (status, done) = t
        .call("GET", &format!("/v1/batches/{batch_id}"), &t.a, None)
        .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{done}"
    );
    let output = done["output_file_id"].as_str().unwrap();
    let content = format!("/v1/files/{output}/content");
    let (status, lines) = t.call("GET", &content, &t.a, None).await;
    assert_eq!(status, 200, "A downloads its batch's output: {lines}");
    assert!(lines.to_string().contains("batch answer"), "{lines}");
    let (status, _) = t.call("GET", &content, &t.b, None).await;
    assert_eq!(status, 404, "B cannot download A's batch output");
    assert!(!t
        .listed(ObjectKind::File, &t.b)
        .await
        .contains(&output.to_owned()));
    // Batches listed by A name its output too.
    let (_, batches) = t.call("GET", "/v1/batches", &t.a, None).await;
    assert_eq!(batches["data"][0]["output_file_id"], output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_where_ids_do_not_belong_are_a_400_and_stray_ones_a_404() {
    let t = Tenants::start(Transport::Http).await;
    let before = t.app.mock.requests().len();
    for (method, path, body, param) in [
        ("GET", "/v1/files/bad!id", None, "id"),
        ("GET", "/v1/files?after=a%20b", None, "after"),
        (
            "POST",
            "/v1/batches",
            Some(json!({"input_file_id": 12, "endpoint": "/v1/chat/completions"})),
            "input_file_id",
        ),
        (
            "POST",
            "/v1/responses",
            Some(
                json!({"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "../x"}]}]}),
            ),
            "input[0].content[0].file_id",
        ),
    ] {
        let (status, err) = t.call(method, path, &t.a, body).await;
        assert_eq!(status, 400, "{method} {path}: {err}");
        assert_eq!(err["error"]["param"], param, "{err}");
    }
    // Ids the ledger has never seen (made around Tollgate, or made up), in a query or deep in
    // a body, are hidden: 404.
    for (method, path, body) in [
        ("GET", "/v1/files/file-neverseen", None),
        ("GET", "/v1/evals?file_id=file-neverseen", None),
        (
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-neverseen"}}]}]}),
            ),
        ),
    ] {
        let (status, err) = t.call(method, path, &t.a, body).await;
        assert_eq!(status, 404, "{method} {path}: {err}");
        assert_eq!(
            err["error"]["message"],
            "No such File object: file-neverseen"
        );
    }
    // The same past the size a serving thread reads itself (the blocking pool reads these):
    // a stray id deep in a 200 KB body is a 404 and a malformed one a 400, nothing forwarded.
    let long = "x".repeat(200_000);
    for (path, body, status) in [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": long}, {"type": "file", "file": {"file_id": "file-neverseen"}}]}]}),
            404,
        ),
        (
            "/v1/batches",
            json!({"metadata": {"note": long}, "input_file_id": "file-neverseen", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            404,
        ),
        (
            "/v1/batches",
            json!({"metadata": {"note": long}, "input_file_id": 12, "endpoint": "/v1/chat/completions"}),
            400,
        ),
    ] {
        let (got, err) = t.call("POST", path, &t.a, Some(body)).await;
        assert_eq!(got, status, "{path}: {err}");
    }
    assert_eq!(t.app.mock.requests().len(), before, "nothing was forwarded");
    // A chat message that merely mentions an id is not a reference.
    let (status, _) = t
        .call("POST", "/v1/chat/completions", &t.a, Some(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "what is file-abc?"}]})))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_stream_is_the_project_s_the_moment_it_ends() {
    let t = Tenants::start(Transport::Http).await;
    let response = t
        .app
        .post_raw(
            "/v1/responses",
            &t.a,
            &json!({"model": "gpt-4o-mini", "input": "hi", "stream": true}),
        )
        .await;
    let text = response.text().await.unwrap();
    let id = text
        .split("\"id\":\"")
        .find_map(|rest| rest.split('"').next().filter(|id| id.starts_with("resp_")))
        .unwrap()
        .to_owned();
    // Continued at once by A; B cannot.
    let next = json!({"model": "gpt-4o-mini", "input": "more", "previous_response_id": id});
    let (status, _) = t
        .call("POST", "/v1/responses", &t.a, Some(next.clone()))
        .await;
    assert_eq!(status, 200);
    let (status, _) = t.call("POST", "/v1/responses", &t.b, Some(next)).await;
    assert_eq!(status, 404);
    // `store: false` keeps nothing, so nothing is recorded.
    let (_, unstored) = t
        .call(
            "POST",
            "/v1/responses",
            &t.a,
            Some(json!({"model": "gpt-4o-mini", "input": "x", "store": false})),
        )
        .await;
    let unstored = unstored["id"].as_str().unwrap();
    let (status, _) = t
        .call("GET", &format!("/v1/responses/{unstored}"), &t.a, None)
        .await;
    assert_eq!(status, 404);
    // The records are stored with the usage events.
    t.app.usage_events(3).await;
    let project = tollgate_core::ProjectId::from_trusted(t.app.project_id.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let kept = t
            .app
            .store
            .project_objects(&project, Some(ObjectKind::Response), None, 10)
            .await
            .unwrap();
        if kept.iter().any(|o| o.object_id == id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the response was never stored in the ledger"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_with_its_own_credential_is_kept_apart_by_the_provider() {
    const OWN: &str = "sk-default-project-own-credential";
    let app = TestApp::spawn_after_first_run(Transport::Http, |settings, first| {
        settings.providers[0].project_keys = vec![(
            first.project.id.clone(),
            tollgate_gateway::ProviderKey::new(OWN.into()),
        )];
    })
    .await;
    let t = Tenants::with(app).await;
    // A (the default project) has its own credential; B shares the provider's.
    let a_file = t.upload(&t.a, "a").await;
    let b_file = t.upload(&t.b, "b").await;
    t.call(
        "POST",
        "/v1/chat/completions",
        &t.a,
        Some(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    t.call(
        "POST",
        "/v1/chat/completions",
        &t.b,
        Some(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    let auth = |r: &tollgate_gateway::mock::SeenRequest| {
        r.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let seen = t.app.mock.requests();
    let (mut own, mut shared) = (0, 0);
    for request in &seen {
        match auth(request).as_str() {
            a if a == format!("Bearer {OWN}") => own += 1,
            b if b == format!("Bearer {PROVIDER_KEY}") => shared += 1,
            other => panic!("a request carried {other:?}"),
        }
    }
    assert_eq!(
        (own, shared),
        (2, 2),
        "each project's requests carry its credential"
    );
    // The provider keeps A apart (here: one fake account, so A sees what its credential
    // sees); B, on the shared credential, is kept apart by the ledger.
    assert!(t.listed(ObjectKind::File, &t.a).await.contains(&b_file));
    let b_sees = t.listed(ObjectKind::File, &t.b).await;
    assert!(
        b_sees.contains(&b_file) && !b_sees.contains(&a_file),
        "{b_sees:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_made_around_tollgate_are_hidden_or_adopted_as_set() {
    for adopt in [false, true] {
        let app = TestApp::spawn_after_first_run(Transport::Http, |settings, first| {
            if adopt {
                settings.unknown_objects =
                    tollgate_gateway::UnknownObjects::AdoptInto(first.project.id.clone());
            }
        })
        .await;
        // Made at the provider directly, as before Tollgate.
        let outside: Value = reqwest::Client::new()
            .post(format!("{}/vector_stores", app.mock.base_url()))
            .json(&json!({"name": "legacy"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = outside["id"].as_str().unwrap().to_owned();
        let t = Tenants::with(app).await;
        let one = format!("/v1/vector_stores/{id}");
        assert_eq!(
            t.listed(ObjectKind::VectorStore, &t.a).await.contains(&id),
            adopt
        );
        assert_eq!(t.call("GET", &one, &t.a, None).await.0 == 200, adopt);
        assert!(!t.listed(ObjectKind::VectorStore, &t.b).await.contains(&id));
        assert_eq!(t.call("GET", &one, &t.b, None).await.0, 404, "never B's");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answered_without_an_id_succeeds_is_audited_and_reaches_nobody() {
    let t = Tenants::start(Transport::Http).await;
    let before = t.listed(ObjectKind::Container, &t.a).await;
    let response = t
        .app
        .http
        .post(format!("{}/v1/containers", t.app.base))
        .bearer_auth(&t.a)
        .header("x-mock-omit-id", "1")
        .json(&json!({"name": "sandbox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the request succeeds");
    let org = t.app.control.organization().await.unwrap();
    let audit = t.app.store.audit_entries(&org.id, None, 100).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.event_type == "provider_object.unrecorded")
        .expect("audited");
    assert_eq!(entry.data["kind"], "container");
    assert_eq!(
        entry.project_id.as_ref().map(|p| p.to_string()),
        Some(t.app.project_id.clone())
    );
    assert_eq!(t.listed(ObjectKind::Container, &t.a).await, before);
    let project = tollgate_core::ProjectId::from_trusted(t.app.project_id.clone());
    assert!(t
        .app
        .store
        .project_objects(&project, Some(ObjectKind::Container), None, 10)
        .await
        .unwrap()
        .is_empty());
}
