//! The admin API over a real gateway (port 0, a fresh SQLite file, Tollgate's demo provider as
//! the fake upstream): shapes field by field, pagination, filters, roles, and usage equal to
//! the recorded events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;
use tollgate_control::{KeyOwnerRequest, NewKey};
use tollgate_core::{KeyFormat, Permissions};
use tollgate_store::Actor;

#[tokio::test]
async fn projects_are_created_read_renamed_and_archived_in_openai_s_shapes() {
    let app = App::spawn().await;
    let list = app.get("/v1/organization/projects").await;
    let list = list.ok();
    assert_eq!(list["object"], "list");
    assert_eq!(ids(list), std::slice::from_ref(&app.default_project));
    assert_eq!(list["first_id"], app.default_project.as_str());
    assert_eq!(list["last_id"], app.default_project.as_str());
    assert_eq!(list["has_more"], false);

    let created = app
        .post("/v1/organization/projects", json!({"name": "Research"}))
        .await;
    let project = created.ok().clone();
    let id = project["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("proj_"));
    assert_eq!(
        project,
        json!({"id": id, "object": "organization.project", "name": "Research",
               "created_at": START.seconds(), "archived_at": null, "status": "active"})
    );
    assert_eq!(
        app.get(&format!("/v1/organization/projects/{id}"))
            .await
            .ok(),
        &project
    );

    app.clock.advance(60);
    let renamed = app
        .post(
            &format!("/v1/organization/projects/{id}"),
            json!({"name": "Research 2"}),
        )
        .await;
    assert_eq!(renamed.ok()["name"], "Research 2");
    let archived = app
        .post(
            &format!("/v1/organization/projects/{id}/archive"),
            json!({}),
        )
        .await;
    let archived = archived.ok();
    assert_eq!(archived["status"], "archived");
    assert_eq!(archived["archived_at"], START.seconds() + 60);

    assert_eq!(
        ids(app.get("/v1/organization/projects").await.ok()),
        std::slice::from_ref(&app.default_project)
    );
    let all = app
        .get("/v1/organization/projects?include_archived=true")
        .await;
    assert_eq!(ids(all.ok()), [app.default_project.clone(), id.clone()]);

    // Bad input: each a 400, 404 or 409 in OpenAI's envelope.
    app.get("/v1/organization/projects/proj_doesnotexist")
        .await
        .error(404, None);
    app.get("/v1/organization/projects/key_notaproject")
        .await
        .error(404, None);
    app.post("/v1/organization/projects", json!({"title": "x"}))
        .await
        .error(400, None);
    app.post("/v1/organization/projects", json!({"name": ""}))
        .await
        .error(400, None);
    app.post(
        "/v1/organization/projects",
        json!({"name": "x", "geography": "EU"}),
    )
    .await
    .error(400, Some("geography"));
    let raw = app
        .http
        .post(format!("{}/v1/organization/projects", app.base))
        .bearer_auth(&app.admin)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    app.get("/v1/organization/projects?include_archived=maybe")
        .await
        .error(400, Some("include_archived"));
    app.post(
        &format!("/v1/organization/projects/{id}/archive"),
        json!({}),
    )
    .await
    .error(409, None);
    // Names are unique in an organization, on creation and on renaming (found by schemathesis:
    // a rename to a taken name was a 500).
    app.post(
        "/v1/organization/projects",
        json!({"name": "Default project"}),
    )
    .await
    .error(409, None);
    let other = app
        .post("/v1/organization/projects", json!({"name": "Other"}))
        .await;
    let other = other.ok()["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/organization/projects/{other}"),
        json!({"name": "Research 2"}),
    )
    .await
    .error(409, None);
    app.call(
        "DELETE",
        "/v1/organization/projects",
        Some(&app.admin),
        None,
    )
    .await
    .error(405, None);
    app.get("/v1/organization/nothing-here")
        .await
        .error(404, None);
}

#[tokio::test]
async fn lists_page_with_after_and_limit_clamped_as_openai_does() {
    let app = App::spawn().await;
    let mut made = vec![app.default_project.clone()];
    for n in 0..5 {
        let p = app
            .post(
                "/v1/organization/projects",
                json!({"name": format!("p{n}")}),
            )
            .await;
        made.push(p.ok()["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .get(&format!("/v1/organization/projects?limit=2&after={after}"))
            .await;
        let page = page.ok().clone();
        let got = ids(&page);
        assert!(got.len() <= 2);
        assert_eq!(page["first_id"].as_str(), got.first().map(String::as_str));
        assert_eq!(page["last_id"].as_str(), got.last().map(String::as_str));
        seen.extend(got);
        if page["has_more"] == false {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, made);
    assert_eq!(
        ids(app.get("/v1/organization/projects?limit=0").await.ok()).len(),
        1
    );
    assert_eq!(
        ids(app.get("/v1/organization/projects?limit=1000").await.ok()).len(),
        6
    );
    app.get("/v1/organization/projects?limit=ten")
        .await
        .error(400, Some("limit"));
    app.get("/v1/organization/projects?after=proj_unknown")
        .await
        .error(400, Some("after"));

    // Backwards with `before`: the pages just before a cursor, in list order.
    let mut back = Vec::new();
    let mut before = made.last().unwrap().clone();
    loop {
        let page = app
            .get(&format!(
                "/v1/organization/projects?limit=2&before={before}"
            ))
            .await;
        let page = page.ok().clone();
        let got = ids(&page);
        assert!(!got.is_empty() && got.len() <= 2, "{page}");
        back.splice(0..0, got);
        if page["has_more"] == false {
            break;
        }
        before = page["first_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(back, made[..made.len() - 1]);
    app.get(&format!(
        "/v1/organization/projects?before={}&after={}",
        made[3], made[1]
    ))
    .await
    .error(400, Some("before"));
    app.get("/v1/organization/projects?before=proj_unknown")
        .await
        .error(400, Some("before"));

    // The audit log pages backwards too (newest first on every page).
    let all = ids(app.get("/v1/organization/audit_logs?limit=100").await.ok());
    assert!(all.len() >= 6, "{all:?}");
    let oldest = all.last().unwrap();
    let page = app
        .get(&format!(
            "/v1/organization/audit_logs?limit=2&before={oldest}"
        ))
        .await;
    assert_eq!(ids(page.ok()), all[all.len() - 3..all.len() - 1]);
    assert_eq!(page.ok()["has_more"], true);
    let newest_two = app
        .get(&format!(
            "/v1/organization/audit_logs?limit=5&before={}",
            all[2]
        ))
        .await;
    assert_eq!(ids(newest_two.ok()), all[..2]);
    assert_eq!(newest_two.ok()["has_more"], false);
}

#[tokio::test]
async fn only_active_admin_keys_get_in_and_readers_only_read() {
    let app = App::spawn().await;
    let path = "/v1/organization/projects";
    app.call("GET", path, None, None).await.error(401, None);
    app.call("GET", path, Some("sk-admin-nonsense"), None)
        .await
        .error(401, None);
    let project_key = app
        .key("p", KeyOwnerRequest::Project(None), Permissions::All)
        .await;
    app.call("GET", path, Some(&project_key), None)
        .await
        .error(403, None);
    // An unknown path is not shown to a caller without a key either.
    app.call("GET", "/v1/organization/nothing", None, None)
        .await
        .error(401, None);

    let reader = app
        .key("r", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    assert_eq!(app.call("GET", path, Some(&reader), None).await.status, 200);
    app.call("POST", path, Some(&reader), Some(json!({"name": "no"})))
        .await
        .error(403, None);
    let projects = app.control.projects(true).await.unwrap();
    assert_eq!(projects.len(), 1, "the reader created nothing");

    // Admin keys stay refused on the data plane.
    let models = app.call("GET", "/v1/models", Some(&app.admin), None).await;
    assert!(
        matches!(models.status.as_u16(), 401 | 403),
        "{}",
        models.body
    );

    // A revoked admin key is refused at once.
    let other = app.key("o", KeyOwnerRequest::Admin, Permissions::All).await;
    assert_eq!(app.call("GET", path, Some(&other), None).await.status, 200);
    let listed = app.get("/v1/organization/admin_api_keys").await;
    let listed = listed.ok().clone();
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    let record = &listed["data"][2];
    assert_eq!(record["object"], "organization.admin_api_key");
    assert_eq!(record["name"], "o");
    assert!(!record["redacted_value"]
        .as_str()
        .unwrap()
        .contains(&other[12..]));
    app.control
        .revoke_key(&Actor::cli("tester"), record["id"].as_str().unwrap())
        .await
        .unwrap();
    app.call("GET", path, Some(&other), None)
        .await
        .error(401, None);
}

#[tokio::test]
async fn a_service_account_s_key_is_shown_once_works_and_is_refused_once_deleted() {
    let app = App::spawn().await;
    let p = app.default_project.clone();
    let created = app
        .post(
            &format!("/v1/organization/projects/{p}/service_accounts"),
            json!({"name": "ci-bot"}),
        )
        .await;
    let account = created.ok().clone();
    assert_eq!(account["object"], "organization.project.service_account");
    assert_eq!(account["name"], "ci-bot");
    assert_eq!(account["role"], "member");
    let key = account["api_key"].clone();
    assert_eq!(
        key["object"],
        "organization.project.service_account.api_key"
    );
    let secret = key["value"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-svcacct-"));
    let key_id = key["id"].as_str().unwrap().to_owned();

    let accounts = app
        .get(&format!("/v1/organization/projects/{p}/service_accounts"))
        .await;
    assert_eq!(
        ids(accounts.ok()),
        [account["id"].as_str().unwrap().to_owned()]
    );
    let one = app
        .get(&format!(
            "/v1/organization/projects/{p}/service_accounts/{}",
            account["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one.ok()["name"], "ci-bot");

    let keys = app
        .get(&format!("/v1/organization/projects/{p}/api_keys"))
        .await;
    let keys = keys.ok().clone();
    let listed = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["object"], "organization.project.api_key");
    assert_eq!(listed["owner"]["type"], "service_account");
    assert_eq!(listed["owner"]["service_account"]["name"], "ci-bot");
    assert_eq!(listed["owner_project_access"], "active");
    assert!(
        !keys.to_string().contains(&secret),
        "a key list shows no secret"
    );
    assert!(listed["redacted_value"]
        .as_str()
        .unwrap()
        .ends_with(&secret[secret.len() - 4..]));

    assert_eq!(
        app.call("GET", "/v1/models", Some(&secret), None)
            .await
            .status,
        200
    );
    let deleted = app
        .call(
            "DELETE",
            &format!("/v1/organization/projects/{p}/api_keys/{key_id}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(
        deleted.ok(),
        &json!({"object": "organization.project.api_key.deleted", "id": key_id, "deleted": true})
    );
    // Refused from the next request on, with no waiting.
    assert_eq!(
        app.call("GET", "/v1/models", Some(&secret), None)
            .await
            .status,
        401
    );
    app.get(&format!("/v1/organization/projects/{p}/api_keys/{key_id}"))
        .await
        .error(404, None);
    app.call(
        "DELETE",
        &format!("/v1/organization/projects/{p}/api_keys/{key_id}"),
        Some(&app.admin),
        None,
    )
    .await
    .error(404, None);
    // A key of another project is not found under this one.
    let other = app
        .post("/v1/organization/projects", json!({"name": "other"}))
        .await;
    let other = other.ok()["id"].as_str().unwrap().to_owned();
    let theirs = app
        .key(
            "theirs",
            KeyOwnerRequest::Project(Some(other.clone())),
            Permissions::All,
        )
        .await;
    let their_id = tollgate_core::KeyFormat::default()
        .parse(&theirs)
        .unwrap()
        .secret
        .id();
    app.get(&format!(
        "/v1/organization/projects/{p}/api_keys/{their_id}"
    ))
    .await
    .error(404, None);
    assert_eq!(
        app.get(&format!(
            "/v1/organization/projects/{other}/api_keys/{their_id}"
        ))
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn audit_logs_use_openai_s_types_and_filters() {
    let app = App::spawn().await;
    let p = app
        .post("/v1/organization/projects", json!({"name": "audited"}))
        .await;
    let p = p.ok()["id"].as_str().unwrap().to_owned();
    app.clock.advance(100);
    let key = app
        .key(
            "k",
            KeyOwnerRequest::Project(Some(p.clone())),
            Permissions::All,
        )
        .await;
    let key_id = KeyFormat::default()
        .parse(&key)
        .unwrap()
        .secret
        .id()
        .to_string();
    app.clock.advance(100);
    app.control
        .revoke_key(&Actor::cli("tester"), &key_id)
        .await
        .unwrap();

    let all = app.get("/v1/organization/audit_logs").await;
    let all = all.ok().clone();
    let types: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    // Newest first; Tollgate's revocation is OpenAI's deletion, its first run an update.
    assert_eq!(types[0], "api_key.deleted");
    assert_eq!(all["data"][0]["tollgate_type"], "api_key.revoked");
    assert_eq!(all["data"][0]["api_key.deleted"]["id"], key_id.as_str());
    assert_eq!(types[1], "api_key.created");
    assert_eq!(types[2], "project.created");
    assert!(types.contains(&"organization.updated"));
    let created = &all["data"][2];
    assert_eq!(created["project"]["id"], p.as_str());
    assert_eq!(created["project.created"]["data"]["name"], "audited");
    assert_eq!(created["actor"]["type"], "api_key");
    assert_eq!(created["effective_at"], START.seconds());

    let only = |q: &str| {
        let q = q.to_owned();
        let app = &app;
        async move {
            let page = app.get(&format!("/v1/organization/audit_logs?{q}")).await;
            page.ok()["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // The first run's default project and this one.
    assert_eq!(
        only("event_types[]=project.created").await,
        ["project.created", "project.created"]
    );
    assert_eq!(
        only(&format!("event_types[]=project.created&project_ids[]={p}")).await,
        ["project.created"]
    );
    // With the first run's admin key.
    assert_eq!(
        only("event_types[]=api_key.deleted&event_types[]=api_key.created").await,
        ["api_key.deleted", "api_key.created", "api_key.created"]
    );
    assert_eq!(
        only(&format!("resource_ids[]={key_id}")).await,
        ["api_key.deleted", "api_key.created"]
    );
    assert_eq!(
        only(&format!(
            "project_ids[]={p}&effective_at[gte]={}",
            START.seconds() + 100
        ))
        .await,
        ["api_key.deleted", "api_key.created"]
    );
    assert_eq!(
        only(&format!(
            "project_ids[]={p}&effective_at[lt]={}",
            START.seconds() + 200
        ))
        .await,
        ["api_key.created", "project.created"]
    );
    assert_eq!(
        only("actor_ids[]=tester").await,
        ["api_key.deleted", "api_key.created"]
    );
    assert!(only("project_ids[]=proj_other").await.is_empty());

    // Pages, newest first, one at a time.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .get(&format!(
                "/v1/organization/audit_logs?limit=1&after={after}"
            ))
            .await;
        let page = page.ok().clone();
        seen.extend(ids(&page));
        if page["has_more"] == false {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, ids(&all));
    app.get("/v1/organization/audit_logs?effective_at[gt]=soon")
        .await
        .error(400, Some("effective_at[gt]"));
}

#[tokio::test]
async fn usage_and_costs_equal_the_recorded_events_to_the_token_and_the_micro_dollar() {
    let app = App::spawn().await;
    let second = app
        .post("/v1/organization/projects", json!({"name": "second"}))
        .await;
    let second = second.ok()["id"].as_str().unwrap().to_owned();
    let keys = [
        app.key("a", KeyOwnerRequest::Project(None), Permissions::All)
            .await,
        app.key("b", KeyOwnerRequest::Project(None), Permissions::All)
            .await,
        app.key(
            "c",
            KeyOwnerRequest::Project(Some(second.clone())),
            Permissions::All,
        )
        .await,
    ];
    let mut sent = 0;
    for (n, key) in keys.iter().enumerate() {
        for round in 0..=n {
            let chat = json!({"model": if round % 2 == 0 { "gpt-4o-mini" } else { "gpt-4o" },
                              "messages": [{"role": "user", "content": format!("hello number {n} {round}")}]});
            assert_eq!(
                app.call("POST", "/v1/chat/completions", Some(key), Some(chat))
                    .await
                    .status,
                200
            );
            let embed =
                json!({"model": "text-embedding-3-small", "input": format!("embed {n} {round}")});
            assert_eq!(
                app.call("POST", "/v1/embeddings", Some(key), Some(embed))
                    .await
                    .status,
                200
            );
            sent += 2;
        }
        // The next key's traffic falls in the next hour.
        app.clock.advance(3_600);
    }
    let events = app.usage_events(sent).await;
    assert_eq!(events.len(), sent);

    let start = START.seconds();
    let usage = app
        .get(&format!("/v1/organization/usage/completions?start_time={start}&bucket_width=1h&group_by[]=project_id&group_by[]=api_key_id&group_by[]=model&limit=2"))
        .await;
    let usage = usage.ok().clone();
    assert_eq!(usage["object"], "page");
    assert_eq!(
        usage["has_more"], true,
        "three hours of traffic, two buckets a page"
    );
    let next = usage["next_page"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!("/v1/organization/usage/completions?start_time={start}&bucket_width=1h&group_by[]=project_id&group_by[]=api_key_id&group_by[]=model&limit=2&page={next}"))
        .await;
    let rest = rest.ok().clone();
    let buckets: Vec<Value> = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(buckets[0]["start_time"], start);
    assert_eq!(buckets[0]["end_time"], start + 3_600);
    assert_eq!(buckets[1]["start_time"], start + 3_600);
    // Every chat event is in exactly one result of its hour, project, key and model.
    let mut from_api: HashMap<Group, Sums> = HashMap::new();
    for bucket in &buckets {
        for r in bucket["results"].as_array().unwrap() {
            assert_eq!(r["object"], "organization.usage.completions.result");
            let k = (
                bucket["start_time"].as_i64().unwrap(),
                r["project_id"].as_str().unwrap().to_owned(),
                r["api_key_id"].as_str().unwrap().to_owned(),
                r["model"].as_str().unwrap().to_owned(),
            );
            let v = (
                r["num_model_requests"].as_i64().unwrap(),
                r["input_tokens"].as_i64().unwrap(),
                r["output_tokens"].as_i64().unwrap(),
                r["input_cached_tokens"].as_i64().unwrap(),
            );
            assert!(from_api.insert(k, v).is_none());
        }
    }
    let mut from_events: HashMap<Group, Sums> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.endpoint == "/v1/chat/completions")
    {
        let hour = start + (e.created_at.seconds() - start) / 3_600 * 3_600;
        let sums = from_events
            .entry((
                hour,
                e.project_id.to_string(),
                e.key_id.to_string(),
                e.model_served.clone(),
            ))
            .or_default();
        sums.0 += 1;
        sums.1 += e.input_tokens;
        sums.2 += e.output_tokens;
        sums.3 += e.cached_input_tokens;
    }
    assert!(from_events.values().all(|s| s.1 > 0 && s.2 > 0));
    assert_eq!(from_api, from_events);

    // Embeddings alone, one result a day, filtered by project.
    let embeddings = app
        .get(&format!(
            "/v1/organization/usage/embeddings?start_time={start}&project_ids[]={second}"
        ))
        .await;
    let embeddings = embeddings.ok().clone();
    let result = &embeddings["data"][0]["results"][0];
    assert_eq!(result["object"], "organization.usage.embeddings.result");
    assert_eq!(result["project_id"], Value::Null, "not grouped by project");
    let expected: i64 = events
        .iter()
        .filter(|e| e.endpoint == "/v1/embeddings" && e.project_id.as_str() == second)
        .map(|e| e.input_tokens)
        .sum();
    assert!(expected > 0);
    assert_eq!(result["input_tokens"], expected);
    assert_eq!(result["num_model_requests"], 3);

    // Costs per project: the events' micro-dollars, summed once.
    let costs = app
        .get(&format!(
            "/v1/organization/costs?start_time={start}&group_by[]=project_id"
        ))
        .await;
    let costs = costs.ok().clone();
    let mut by_project: HashMap<String, i64> = HashMap::new();
    for r in costs["data"][0]["results"].as_array().unwrap() {
        assert_eq!(r["object"], "organization.costs.result");
        assert_eq!(r["amount"]["currency"], "usd");
        let micro = (r["amount"]["value"].as_f64().unwrap() * 1e6).round() as i64;
        by_project.insert(r["project_id"].as_str().unwrap().to_owned(), micro);
    }
    let mut expected: HashMap<String, i64> = HashMap::new();
    for e in &events {
        *expected.entry(e.project_id.to_string()).or_default() += e.cost.0;
    }
    assert!(expected.values().all(|c| *c > 0));
    assert_eq!(by_project, expected);

    // Bad input names its parameter.
    app.get("/v1/organization/usage/completions")
        .await
        .error(400, Some("start_time"));
    app.get(&format!(
        "/v1/organization/usage/completions?start_time={start}&bucket_width=2h"
    ))
    .await
    .error(400, Some("bucket_width"));
    app.get(&format!(
        "/v1/organization/costs?start_time={start}&bucket_width=1h"
    ))
    .await
    .error(400, Some("bucket_width"));
    app.get(&format!(
        "/v1/organization/usage/completions?start_time={start}&group_by[]=color"
    ))
    .await
    .error(400, Some("group_by"));
    app.get(&format!(
        "/v1/organization/usage/completions?start_time={start}&end_time={start}"
    ))
    .await
    .error(400, Some("end_time"));
    app.get(&format!(
        "/v1/organization/usage/completions?start_time={start}&page=nonsense"
    ))
    .await
    .error(400, Some("page"));
    // Times at the ends of i64 are refused, not overflowed; the widest report is one page.
    app.get(&format!(
        "/v1/organization/usage/completions?start_time={start}&end_time={}",
        i64::MAX
    ))
    .await
    .error(400, Some("end_time"));
    app.get("/v1/organization/usage/completions?start_time=-1")
        .await
        .error(400, Some("start_time"));
    let widest = app
        .get("/v1/organization/usage/completions?start_time=0&bucket_width=1m&limit=100000")
        .await;
    let widest = widest.ok().clone();
    assert_eq!(widest["data"].as_array().unwrap().len(), 1_440);
    assert_eq!(widest["has_more"], true);
    let last = app
        .get("/v1/organization/usage/completions?start_time=0&bucket_width=1d&page=page_9223372036854775807")
        .await;
    assert_eq!(last.ok()["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn users_are_listed_with_their_roles() {
    let app = App::spawn().await;
    let users = app.get("/v1/organization/users").await;
    let users = users.ok().clone();
    let owner = &users["data"][0];
    assert_eq!(owner["object"], "organization.user");
    assert_eq!(owner["email"], "owner@example.com");
    assert_eq!(owner["role"], "owner");
    assert_eq!(owner["added_at"], START.seconds());
    let id = owner["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/organization/users/{id}")).await.ok(),
        owner
    );
    app.get("/v1/organization/users/user-nobody")
        .await
        .error(404, None);
    assert!(app
        .get("/v1/organization/users?emails[]=nobody@example.com")
        .await
        .ok()["data"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn the_openapi_document_describes_every_admin_endpoint_and_is_public() {
    let app = App::spawn().await;
    let doc = app.call("GET", "/openapi.json", None, None).await;
    let doc = doc.ok().clone();
    assert_eq!(doc["openapi"], "3.1.0");
    let operations = [
        ("get", "/v1/organization/projects"),
        ("post", "/v1/organization/projects"),
        ("get", "/v1/organization/projects/{project_id}"),
        ("post", "/v1/organization/projects/{project_id}"),
        ("post", "/v1/organization/projects/{project_id}/archive"),
        (
            "get",
            "/v1/organization/projects/{project_id}/service_accounts",
        ),
        (
            "post",
            "/v1/organization/projects/{project_id}/service_accounts",
        ),
        (
            "get",
            "/v1/organization/projects/{project_id}/service_accounts/{service_account_id}",
        ),
        (
            "delete",
            "/v1/organization/projects/{project_id}/service_accounts/{service_account_id}",
        ),
        ("get", "/v1/organization/projects/{project_id}/api_keys"),
        (
            "get",
            "/v1/organization/projects/{project_id}/api_keys/{key_id}",
        ),
        (
            "delete",
            "/v1/organization/projects/{project_id}/api_keys/{key_id}",
        ),
        ("get", "/v1/organization/projects/{project_id}/rate_limits"),
        (
            "post",
            "/v1/organization/projects/{project_id}/rate_limits/{rate_limit_id}",
        ),
        (
            "get",
            "/v1/organization/projects/{project_id}/model_permissions",
        ),
        (
            "post",
            "/v1/organization/projects/{project_id}/model_permissions",
        ),
        (
            "delete",
            "/v1/organization/projects/{project_id}/model_permissions",
        ),
        ("get", "/v1/organization/projects/{project_id}/spend_limit"),
        ("post", "/v1/organization/projects/{project_id}/spend_limit"),
        (
            "delete",
            "/v1/organization/projects/{project_id}/spend_limit",
        ),
        ("get", "/v1/organization/spend_alerts"),
        ("post", "/v1/organization/spend_alerts"),
        ("get", "/v1/organization/spend_alerts/{alert_id}"),
        ("post", "/v1/organization/spend_alerts/{alert_id}"),
        ("delete", "/v1/organization/spend_alerts/{alert_id}"),
        ("get", "/v1/organization/projects/{project_id}/spend_alerts"),
        (
            "post",
            "/v1/organization/projects/{project_id}/spend_alerts",
        ),
        (
            "get",
            "/v1/organization/projects/{project_id}/spend_alerts/{alert_id}",
        ),
        (
            "post",
            "/v1/organization/projects/{project_id}/spend_alerts/{alert_id}",
        ),
        (
            "delete",
            "/v1/organization/projects/{project_id}/spend_alerts/{alert_id}",
        ),
        ("get", "/v1/organization/spend_limit"),
        ("post", "/v1/organization/spend_limit"),
        ("delete", "/v1/organization/spend_limit"),
        ("get", "/v1/organization/projects/{project_id}/users"),
        ("post", "/v1/organization/projects/{project_id}/users"),
        (
            "get",
            "/v1/organization/projects/{project_id}/users/{user_id}",
        ),
        (
            "post",
            "/v1/organization/projects/{project_id}/users/{user_id}",
        ),
        (
            "delete",
            "/v1/organization/projects/{project_id}/users/{user_id}",
        ),
        ("get", "/v1/organization/invites"),
        ("post", "/v1/organization/invites"),
        ("get", "/v1/organization/invites/{invite_id}"),
        ("delete", "/v1/organization/invites/{invite_id}"),
        ("get", "/v1/organization/users"),
        ("get", "/v1/organization/users/{user_id}"),
        ("post", "/v1/organization/users/{user_id}"),
        ("delete", "/v1/organization/users/{user_id}"),
        ("get", "/v1/organization/admin_api_keys"),
        ("get", "/v1/organization/admin_api_keys/{key_id}"),
        ("post", "/v1/organization/admin_api_keys"),
        ("delete", "/v1/organization/admin_api_keys/{key_id}"),
        ("get", "/v1/organization/audit_logs"),
        ("get", "/v1/organization/usage/completions"),
        ("get", "/v1/organization/usage/embeddings"),
        ("get", "/v1/organization/costs"),
        ("post", "/v1/organization/x-tollgate/keys"),
        ("get", "/v1/organization/x-tollgate/keys"),
        ("get", "/v1/organization/x-tollgate/keys/{key_id}"),
        ("post", "/v1/organization/x-tollgate/keys/{key_id}/rotate"),
        ("post", "/v1/organization/x-tollgate/keys/{key_id}/revoke"),
        (
            "post",
            "/v1/organization/x-tollgate/keys/{key_id}/unsuspend",
        ),
        ("get", "/v1/organization/x-tollgate/limits"),
        ("post", "/v1/organization/x-tollgate/limits"),
        ("post", "/v1/organization/x-tollgate/limits/remove"),
        ("get", "/v1/organization/x-tollgate/budgets"),
        ("post", "/v1/organization/x-tollgate/budgets"),
        ("post", "/v1/organization/x-tollgate/budgets/remove"),
        (
            "post",
            "/v1/organization/x-tollgate/projects/{project_id}/rules",
        ),
        ("post", "/v1/organization/x-tollgate/keys/{key_id}"),
        ("get", "/v1/organization/x-tollgate/projects"),
        ("post", "/v1/organization/x-tollgate/projects"),
        ("get", "/v1/organization/x-tollgate/projects/{project_id}"),
        (
            "post",
            "/v1/organization/x-tollgate/projects/{project_id}/archive",
        ),
        ("get", "/v1/organization/x-tollgate/service_accounts"),
        ("post", "/v1/organization/x-tollgate/service_accounts"),
        ("get", "/v1/organization/x-tollgate/limits/report"),
        ("get", "/v1/organization/x-tollgate/usage/report"),
        ("get", "/v1/organization/x-tollgate/usage/events"),
        ("get", "/v1/organization/x-tollgate/audit"),
        (
            "get",
            "/v1/organization/x-tollgate/projects/{project_id}/objects",
        ),
        (
            "post",
            "/v1/organization/x-tollgate/projects/{project_id}/objects",
        ),
    ];
    let mut described = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                operations.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is described but not in this test's list"
            );
            described += 1;
        }
    }
    assert_eq!(described, operations.len());
    for (method, path) in operations {
        let operation = &doc["paths"][path][method];
        assert!(
            operation["responses"]["200"]["content"]["application/json"]["schema"].is_object(),
            "{method} {path}"
        );
        assert_eq!(
            operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope"
        );
        assert_eq!(
            operation["security"][0]["admin_key"],
            json!([]),
            "{method} {path}"
        );
        // Each described route is served: without a key it is a 401, never a 404.
        let concrete = path.replace('{', "x").replace('}', "");
        let reply = app
            .call(&method.to_uppercase(), &concrete, None, None)
            .await;
        assert_eq!(reply.status, 401, "{method} {concrete}");
    }
}

#[tokio::test]
async fn admin_keys_are_made_shown_once_and_deleted_but_never_the_last_owner_s() {
    let app = App::spawn().await;
    let made = app
        .post(
            "/v1/organization/admin_api_keys",
            json!({"name": "ops reader", "role": "reader", "expires_in_seconds": 3600}),
        )
        .await;
    let made = made.ok().clone();
    assert_eq!(made["object"], "organization.admin_api_key");
    assert_eq!(made["name"], "ops reader");
    assert_eq!(made["expires_at"], START.seconds() + 3600);
    let reader = made["value"].as_str().unwrap().to_owned();
    assert!(reader.starts_with("sk-admin-"));
    assert!(made["redacted_value"]
        .as_str()
        .unwrap()
        .ends_with(&reader[reader.len() - 4..]));
    // The reader reads, and may not change anything.
    assert_eq!(
        app.call(
            "GET",
            "/v1/organization/admin_api_keys",
            Some(&reader),
            None
        )
        .await
        .status,
        200
    );
    app.call(
        "POST",
        "/v1/organization/admin_api_keys",
        Some(&reader),
        Some(json!({"name": "x"})),
    )
    .await
    .error(403, None);
    // The secret is never listed again.
    let listed = app.get("/v1/organization/admin_api_keys").await;
    assert!(!listed.ok().to_string().contains(&reader));
    // It expires with the clock.
    app.clock.advance(3601);
    app.call(
        "GET",
        "/v1/organization/admin_api_keys",
        Some(&reader),
        None,
    )
    .await
    .error(401, None);

    app.post(
        "/v1/organization/admin_api_keys",
        json!({"name": "x", "role": "king"}),
    )
    .await
    .error(400, Some("role"));
    app.post(
        "/v1/organization/admin_api_keys",
        json!({"name": "x", "expires_in_seconds": 0}),
    )
    .await
    .error(400, Some("expires_in_seconds"));

    // The first run's key is the only owner key: it cannot be deleted.
    let first_id = KeyFormat::default()
        .parse(&app.admin)
        .unwrap()
        .secret
        .id()
        .to_string();
    app.call(
        "DELETE",
        &format!("/v1/organization/admin_api_keys/{first_id}"),
        Some(&app.admin),
        None,
    )
    .await
    .error(409, None);
    // With a second owner key it can, and is refused at once.
    let second = app
        .post(
            "/v1/organization/admin_api_keys",
            json!({"name": "second owner"}),
        )
        .await;
    let second = second.ok()["value"].as_str().unwrap().to_owned();
    let deleted = app
        .call(
            "DELETE",
            &format!("/v1/organization/admin_api_keys/{first_id}"),
            Some(&second),
            None,
        )
        .await;
    assert_eq!(
        deleted.ok(),
        &json!({"id": first_id, "object": "organization.admin_api_key.deleted", "deleted": true})
    );
    app.get("/v1/organization/projects").await.error(401, None);
    app.call(
        "DELETE",
        &format!("/v1/organization/admin_api_keys/{first_id}"),
        Some(&second),
        None,
    )
    .await
    .error(404, None);
}

#[tokio::test]
async fn a_suspended_key_is_lifted_through_the_admin_api_and_works_at_once() {
    let app = App::spawn().await;
    let made = app
        .post(
            "/v1/organization/x-tollgate/keys",
            json!({"name": "watched"}),
        )
        .await;
    let made = made.ok().clone();
    let secret = made["value"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    let key_id = tollgate_core::KeyId::from_trusted(id.clone());
    let entry = tollgate_store::AuditEntry {
        id: tollgate_core::AuditId::generate(),
        org_id: tollgate_core::OrgId::from_trusted(
            app.store
                .default_organization()
                .await
                .unwrap()
                .unwrap()
                .id
                .to_string(),
        ),
        event_type: "api_key.suspended".into(),
        actor: tollgate_store::Actor::system(),
        project_id: None,
        resource_id: Some(id.clone()),
        data: json!({}),
        created_at: START,
    };
    let suspension = tollgate_store::Suspension {
        kind: "request_spike".into(),
        reason: "500 requests in five minutes, against 10 usually".into(),
        at: START,
    };
    assert!(app
        .store
        .suspend_key(&key_id, &suspension, &entry)
        .await
        .unwrap());
    // The server learns of the suspension from the change log (made here behind its back).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let refused = app.call("GET", "/v1/models", Some(&secret), None).await;
        if refused.status == 401 {
            assert_eq!(refused.body["error"]["code"], "api_key_suspended");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the suspension never reached the server"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A lifted suspension is in force on this server before the answer.
    let lifted = app
        .post(
            &format!("/v1/organization/x-tollgate/keys/{id}/unsuspend"),
            json!({}),
        )
        .await;
    assert_eq!(lifted.ok()["suspension_lifted"], true);
    assert_eq!(
        app.call("GET", "/v1/models", Some(&secret), None)
            .await
            .status,
        200
    );
    let again = app
        .post(
            &format!("/v1/organization/x-tollgate/keys/{id}/unsuspend"),
            json!({}),
        )
        .await;
    assert_eq!(again.ok()["suspension_lifted"], false);
}

#[tokio::test]
async fn tollgate_s_own_key_endpoints_make_rotate_and_revoke_keys_with_all_their_rules() {
    let app = App::spawn().await;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let made = app
        .post(
            "/v1/organization/x-tollgate/keys",
            json!({
                "name": "ci",
                "permissions": "restricted",
                "scopes": ["chat.completions:write", "models:read"],
                "models": ["gpt-4o-mini"],
                "allowed_ips": ["127.0.0.0/8"],
                "expires_in_seconds": 86400,
                "rate_limits": {"rpm": 2},
                "budget": {"limit_usd": "12.50", "period": "week", "alerts_percent": [50, 80]},
            }),
        )
        .await;
    let made = made.ok().clone();
    let secret = made["value"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-proj-"));
    assert_eq!(made["object"], "organization.project.api_key");
    assert_eq!(made["status"], "active");
    assert_eq!(made["project_id"], app.default_project.as_str());
    assert_eq!(made["expires_at"], START.seconds() + 86400);
    assert!(made["permissions"]
        .as_str()
        .unwrap()
        .contains("chat.completions:write"));
    // Its rules hold on the data plane from the first request.
    let embed = json!({"model": "text-embedding-3-small", "input": "x"});
    let refused = app
        .call("POST", "/v1/embeddings", Some(&secret), Some(embed))
        .await;
    assert!(
        matches!(refused.status.as_u16(), 401 | 403),
        "{}",
        refused.body
    );
    let other_model = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    assert_ne!(
        app.call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(other_model)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(chat.clone())
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(chat.clone())
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.call(
            "POST",
            "/v1/chat/completions",
            Some(&secret),
            Some(chat.clone())
        )
        .await
        .status,
        429
    );
    let budgets = app.control.budgets().await.unwrap();
    assert_eq!(budgets.len(), 1, "the key's budget was set");

    let listed = app
        .get("/v1/organization/x-tollgate/keys?kind=project")
        .await;
    assert!(ids(listed.ok()).contains(&id));
    assert!(!listed.ok().to_string().contains(&secret));
    assert_eq!(
        app.get(&format!("/v1/organization/x-tollgate/keys/{id}"))
            .await
            .ok()["name"],
        "ci"
    );

    // Rotation: the successor works at once, the old key for the grace period only.
    let rotated = app
        .post(
            &format!("/v1/organization/x-tollgate/keys/{id}/rotate"),
            json!({"grace_seconds": 60}),
        )
        .await;
    let rotated = rotated.ok().clone();
    let successor = rotated["new"]["value"].as_str().unwrap().to_owned();
    assert_eq!(rotated["old"]["rotated_to"], rotated["new"]["id"]);
    assert_eq!(rotated["old"]["expires_at"], START.seconds() + 60);
    assert_eq!(
        app.call("GET", "/v1/models", Some(&successor), None)
            .await
            .status,
        200
    );
    assert_eq!(
        app.call("GET", "/v1/models", Some(&secret), None)
            .await
            .status,
        200
    );
    app.clock.advance(61);
    assert_eq!(
        app.call("GET", "/v1/models", Some(&secret), None)
            .await
            .status,
        401
    );

    // Revocation, at once; again changes nothing.
    let new_id = rotated["new"]["id"].as_str().unwrap().to_owned();
    let revoked = app
        .post(
            &format!("/v1/organization/x-tollgate/keys/{new_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(revoked.ok()["status"], "revoked");
    assert_eq!(
        app.call("GET", "/v1/models", Some(&successor), None)
            .await
            .status,
        401
    );
    assert_eq!(
        app.post(
            &format!("/v1/organization/x-tollgate/keys/{new_id}/revoke"),
            json!({})
        )
        .await
        .status,
        200
    );

    // Bad input names its field; readers change nothing.
    let bad = |body: Value, param: &'static str| {
        let app = &app;
        async move {
            app.post("/v1/organization/x-tollgate/keys", body)
                .await
                .error(400, Some(param))
                .to_owned()
        }
    };
    bad(json!({"name": "x", "permissions": "some"}), "permissions").await;
    bad(
        json!({"name": "x", "allowed_ips": ["10.0.0.0/99"]}),
        "allowed_ips",
    )
    .await;
    bad(
        json!({"name": "x", "budget": {"limit_usd": "lots"}}),
        "budget",
    )
    .await;
    bad(
        json!({"name": "x", "expires_in_seconds": -5}),
        "expires_in_seconds",
    )
    .await;
    bad(
        json!({"name": "x", "project_id": app.default_project, "service_account_id": "svc_x"}),
        "service_account_id",
    )
    .await;
    app.post(
        "/v1/organization/x-tollgate/keys",
        json!({"name": "x", "colour": "red"}),
    )
    .await
    .error(400, None);
    app.post(
        &format!("/v1/organization/x-tollgate/keys/{id}/rotate"),
        json!({"grace_seconds": -1}),
    )
    .await
    .error(400, Some("grace_seconds"));
    app.get("/v1/organization/x-tollgate/keys/key_nonexistent00000000")
        .await
        .error(404, None);
    let reader = app
        .key("r", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    app.call(
        "POST",
        "/v1/organization/x-tollgate/keys",
        Some(&reader),
        Some(json!({"name": "x"})),
    )
    .await
    .error(403, None);
}

#[tokio::test]
async fn limits_budgets_and_project_rules_set_over_http_hold_from_the_next_request() {
    let app = App::spawn().await;
    let p = app
        .post("/v1/organization/projects", json!({"name": "limited"}))
        .await;
    let p = p.ok()["id"].as_str().unwrap().to_owned();
    let key = app
        .key(
            "k",
            KeyOwnerRequest::Project(Some(p.clone())),
            Permissions::All,
        )
        .await;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let send = || {
        app.call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(chat.clone()),
        )
    };

    let set = app
        .post(
            "/v1/organization/x-tollgate/limits",
            json!({"project_id": p, "model": "gpt-4o*", "rpm": 1}),
        )
        .await;
    let set = set.ok().clone();
    assert_eq!(set["level"], "project");
    assert_eq!(set["model"], "gpt-4o*");
    assert_eq!(send().await.status, 200);
    let limited = send().await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let rules = app.get("/v1/organization/x-tollgate/limits").await;
    assert!(rules.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["holder"] == p.as_str()));
    app.post(
        "/v1/organization/x-tollgate/limits/remove",
        json!({"project_id": p, "model": "gpt-4o*"}),
    )
    .await
    .ok();
    assert_eq!(send().await.status, 200);

    // A budget of one micro-dollar: spent by the first request, then 429 insufficient_quota.
    let key_id = KeyFormat::default()
        .parse(&key)
        .unwrap()
        .secret
        .id()
        .to_string();
    app.post("/v1/organization/x-tollgate/budgets", json!({"key_id": key_id, "limit_usd": "0.000001", "period": "day", "timezone": "+05:30", "alerts_percent": [50]}))
        .await
        .ok();
    let budgets = app.get("/v1/organization/x-tollgate/budgets").await;
    let budgets = budgets.ok().clone();
    assert_eq!(budgets["data"][0]["holder"], key_id.as_str());
    assert_eq!(budgets["data"][0]["timezone"], "+05:30");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send().await);
    }
    let refused = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("the budget stopped the key");
    assert_eq!(refused.body["error"]["type"], "insufficient_quota");
    app.post(
        "/v1/organization/x-tollgate/budgets/remove",
        json!({"key_id": key_id}),
    )
    .await
    .ok();
    assert_eq!(send().await.status, 200);

    // Project rules: an allow-list that leaves out 127.0.0.1 refuses the key.
    let rules = app
        .post(
            &format!("/v1/organization/x-tollgate/projects/{p}/rules"),
            json!({"allowed_ips": ["10.0.0.0/8"]}),
        )
        .await;
    assert_eq!(rules.ok()["allowed_ips"], json!(["10.0.0.0/8"]));
    // Refused as the gateway refuses any address a key may not use from (401).
    assert_eq!(send().await.status, 401);
    app.post(
        &format!("/v1/organization/x-tollgate/projects/{p}/rules"),
        json!({"allowed_ips": []}),
    )
    .await
    .ok();
    assert_eq!(send().await.status, 200);

    // Bad input names its field.
    app.post(
        "/v1/organization/x-tollgate/limits",
        json!({"project_id": p, "key_id": key_id, "rpm": 1}),
    )
    .await
    .error(400, Some("key_id"));
    app.post(
        "/v1/organization/x-tollgate/limits",
        json!({"project_id": p}),
    )
    .await
    .error(400, Some("rpm"));
    app.post(
        "/v1/organization/x-tollgate/budgets",
        json!({"limit_usd": "a lot"}),
    )
    .await
    .error(400, Some("limit_usd"));
    app.post(
        "/v1/organization/x-tollgate/budgets",
        json!({"limit_usd": "5", "period": "fortnight"}),
    )
    .await
    .error(400, Some("limit_usd"));
    app.post(
        &format!("/v1/organization/x-tollgate/projects/{p}/rules"),
        json!({"allowed_ips": ["300.1.1.1"]}),
    )
    .await
    .error(400, Some("allowed_ips"));
    app.post(
        "/v1/organization/x-tollgate/limits",
        json!({"project_id": "proj_nothere", "rpm": 1}),
    )
    .await
    .error(404, None);
}

/// One HTTP/1.1 request on an open connection; the status line, or `None` once it is closed.
async fn request_on(
    conn: &mut tokio::net::TcpStream,
    path: &str,
    key: Option<&str>,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nhost: t\r\n{auth}\r\n");
    conn.write_all(head.as_bytes()).await.ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    // Read the whole answer: its head, then content-length bytes.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text.lines().next().map(str::to_owned);
            }
        }
    }
}

#[tokio::test]
async fn only_a_valid_admin_key_earns_a_connection_the_standing_of_a_keyed_one() {
    let app = App::spawn_with(|s| s.connections.head_timeout = Duration::from_secs(1)).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // A keyless connection reading the public document is still keyless: closed once the head
    // timeout has passed since it was accepted, however busy.
    let mut public = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut keyed = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(
        request_on(&mut keyed, "/v1/organization/projects", Some(&app.admin))
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    let started = Instant::now();
    let mut public_closed = None;
    while started.elapsed() < Duration::from_millis(2_500) {
        if public_closed.is_none()
            && request_on(&mut public, "/openapi.json", None)
                .await
                .is_none()
        {
            public_closed = Some(started.elapsed());
        }
        assert!(
            request_on(&mut keyed, "/v1/organization/projects", Some(&app.admin))
                .await
                .is_some_and(|s| s.starts_with("HTTP/1.1 200")),
            "the connection that showed an admin key was closed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        public_closed.is_some(),
        "the keyless connection outlived the head timeout"
    );
}

#[tokio::test]
async fn an_admin_key_s_ip_allow_list_holds() {
    let app = App::spawn().await;
    let elsewhere = app
        .control
        .create_key(
            &Actor::cli("tester"),
            NewKey {
                name: "from the office".into(),
                owner: KeyOwnerRequest::Admin,
                permissions: Permissions::All,
                expires_in: None,
                allowed_ips: tollgate_core::network::IpAllowList::parse(&["10.0.0.0/8".into()])
                    .unwrap(),
                allowed_models: Default::default(),
                limits: Default::default(),
                budget: None,
            },
        )
        .await
        .unwrap();
    let refused = app
        .call(
            "GET",
            "/v1/organization/projects",
            Some(elsewhere.secret.expose()),
            None,
        )
        .await;
    refused.error(401, None);
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("IP not authorized"));
    let here = app
        .control
        .create_key(
            &Actor::cli("tester"),
            NewKey {
                name: "from here".into(),
                owner: KeyOwnerRequest::Admin,
                permissions: Permissions::All,
                expires_in: None,
                allowed_ips: tollgate_core::network::IpAllowList::parse(&["127.0.0.0/8".into()])
                    .unwrap(),
                allowed_models: Default::default(),
                limits: Default::default(),
                budget: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        app.call(
            "GET",
            "/v1/organization/projects",
            Some(here.secret.expose()),
            None
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn the_last_owner_admin_key_cannot_be_revoked_by_any_door() {
    let app = App::spawn().await;
    let first_id = KeyFormat::default()
        .parse(&app.admin)
        .unwrap()
        .secret
        .id()
        .to_string();
    // Through Tollgate's own revoke endpoint, too.
    app.post(
        &format!("/v1/organization/x-tollgate/keys/{first_id}/revoke"),
        json!({}),
    )
    .await
    .error(409, None);
    // A reader's key does not count as an owner left.
    app.key("reader", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    app.call(
        "DELETE",
        &format!("/v1/organization/admin_api_keys/{first_id}"),
        Some(&app.admin),
        None,
    )
    .await
    .error(409, None);
    // Two owners deleting each other at once: one wins, the other is refused.
    let second = app
        .post("/v1/organization/admin_api_keys", json!({"name": "second"}))
        .await;
    let second = second.ok().clone();
    let second_key = second["value"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    let delete_second = format!("/v1/organization/admin_api_keys/{second_id}");
    let delete_first = format!("/v1/organization/admin_api_keys/{first_id}");
    let (a, b) = tokio::join!(
        app.call("DELETE", &delete_second, Some(&app.admin), None),
        app.call("DELETE", &delete_first, Some(&second_key), None),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert!(
        statuses == [200, 409] || statuses == [200, 401],
        "{statuses:?}: {} {}",
        a.body,
        b.body
    );
    let owners_left = app
        .control
        .keys(None, Some(tollgate_core::KeyKind::Admin))
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.revoked_at.is_none() && k.permissions == Permissions::All)
        .count();
    assert_eq!(owners_left, 1);
}

#[tokio::test]
async fn a_client_deleting_as_it_pages_keeps_its_place_and_admin_keys_show_their_last_use() {
    let app = App::spawn().await;
    let p = app.default_project.clone();
    let mut made = Vec::new();
    for n in 0..4 {
        let key = app
            .key(
                &format!("k{n}"),
                KeyOwnerRequest::Project(None),
                Permissions::All,
            )
            .await;
        made.push(
            KeyFormat::default()
                .parse(&key)
                .unwrap()
                .secret
                .id()
                .to_string(),
        );
    }
    // Page one key at a time, deleting each before asking for the next page.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .get(&format!(
                "/v1/organization/projects/{p}/api_keys?limit=1&after={after}"
            ))
            .await;
        let page = page.ok().clone();
        let got = ids(&page);
        let Some(id) = got.first().cloned() else {
            break;
        };
        seen.push(id.clone());
        let deleted = app
            .call(
                "DELETE",
                &format!("/v1/organization/projects/{p}/api_keys/{id}"),
                Some(&app.admin),
                None,
            )
            .await;
        assert_eq!(deleted.status, 200, "{}", deleted.body);
        if page["has_more"] == false {
            break;
        }
        after = id;
    }
    assert_eq!(seen, made);
    // The same for projects archived while paging.
    for n in 0..3 {
        app.post(
            "/v1/organization/projects",
            json!({"name": format!("p{n}")}),
        )
        .await
        .ok();
    }
    let first = app.get("/v1/organization/projects?limit=2").await;
    let first = first.ok().clone();
    let last = first["last_id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/organization/projects/{last}/archive"),
        json!({}),
    )
    .await
    .ok();
    let next = app
        .get(&format!("/v1/organization/projects?limit=2&after={last}"))
        .await;
    assert_eq!(ids(next.ok()).len(), 2);

    // The admin key used above shows when, to the minute: a call 30 s later writes nothing,
    // one a minute after the recorded use moves it.
    let keys = app.get("/v1/organization/admin_api_keys").await;
    assert_eq!(keys.ok()["data"][0]["last_used_at"], START.seconds());
    app.clock.advance(30);
    let keys = app.get("/v1/organization/admin_api_keys").await;
    assert_eq!(keys.ok()["data"][0]["last_used_at"], START.seconds());
    app.clock.advance(31);
    app.get("/v1/organization/admin_api_keys").await.ok();
    let keys = app.get("/v1/organization/admin_api_keys").await;
    assert_eq!(keys.ok()["data"][0]["last_used_at"], START.seconds() + 61);
}

#[tokio::test]
async fn openai_s_project_rate_limits_model_permissions_and_spend_limits_hold_from_the_next_request(
) {
    let app = App::spawn().await;
    let p = app
        .post("/v1/organization/projects", json!({"name": "shaped"}))
        .await;
    let p = p.ok()["id"].as_str().unwrap().to_owned();
    let key = app
        .key(
            "k",
            KeyOwnerRequest::Project(Some(p.clone())),
            Permissions::All,
        )
        .await;
    let chat =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let send = |model: &'static str| {
        app.call(
            "POST",
            "/v1/chat/completions",
            Some(&key),
            Some(chat(model)),
        )
    };
    let limits = format!("/v1/organization/projects/{p}/rate_limits");

    // Rate limits: none yet; an update makes the rule for the model, in force at once.
    let empty = app.get(&limits).await;
    assert_eq!(empty.ok()["data"], json!([]));
    assert_eq!(empty.ok()["object"], "list");
    let updated = app
        .post(
            &format!("{limits}/rl-gpt-4o-mini"),
            json!({"max_requests_per_1_minute": 1, "max_requests_per_1_day": 100}),
        )
        .await;
    assert_eq!(
        updated.ok(),
        &json!({
            "object": "project.rate_limit", "id": "rl-gpt-4o-mini", "model": "gpt-4o-mini",
            "max_requests_per_1_minute": 1, "max_tokens_per_1_minute": 0,
            "max_requests_per_1_day": 100
        })
    );
    assert_eq!(send("gpt-4o-mini").await.status, 200);
    let limited = send("gpt-4o-mini").await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(
        send("gpt-4o").await.status,
        200,
        "another model is not limited"
    );
    // A second rule, a page of one, and the next page.
    app.post(
        &format!("{limits}/rl-gpt-4o"),
        json!({"max_tokens_per_1_minute": 50000}),
    )
    .await
    .ok();
    let first = app.get(&format!("{limits}?limit=1")).await;
    let first = first.ok().clone();
    assert_eq!(ids(&first), ["rl-gpt-4o"]);
    assert_eq!(first["has_more"], true);
    let second = app.get(&format!("{limits}?limit=1&after=rl-gpt-4o")).await;
    assert_eq!(ids(second.ok()), ["rl-gpt-4o-mini"]);
    // 0 stops limiting a metric; a rule with nothing left is gone, and requests flow again.
    let cleared = app
        .post(
            &format!("{limits}/rl-gpt-4o-mini"),
            json!({"max_requests_per_1_minute": 0, "max_requests_per_1_day": 0}),
        )
        .await;
    assert_eq!(cleared.ok()["max_requests_per_1_minute"], 0);
    assert_eq!(ids(app.get(&limits).await.ok()), ["rl-gpt-4o"]);
    assert_eq!(send("gpt-4o-mini").await.status, 200);
    // What Tollgate does not meter, and bad ids, are named.
    app.post(
        &format!("{limits}/rl-gpt-4o"),
        json!({"max_images_per_1_minute": 5}),
    )
    .await
    .error(400, Some("max_images_per_1_minute"));
    app.post(&format!("{limits}/gpt-4o"), json!({}))
        .await
        .error(404, None);
    // A model whose name holds a `/` (as vLLM's do) gets an id that is one path segment.
    let slashed = app
        .post(
            &format!("{limits}/rl-meta-llama~2FLlama-3.1-8B"),
            json!({"max_requests_per_1_minute": 7}),
        )
        .await;
    assert_eq!(slashed.ok()["model"], "meta-llama/Llama-3.1-8B");
    assert_eq!(slashed.ok()["id"], "rl-meta-llama~2FLlama-3.1-8B");
    let listed = app.get(&limits).await;
    assert!(ids(listed.ok()).contains(&"rl-meta-llama~2FLlama-3.1-8B".to_owned()));
    app.post(
        &format!("{limits}/rl-meta-llama~2FLlama-3.1-8B"),
        json!({"max_requests_per_1_minute": 0}),
    )
    .await
    .ok();
    app.get("/v1/organization/projects/proj_nothere/rate_limits")
        .await
        .error(404, None);

    // Model permissions: open (a deny_list of nothing); an allow_list holds on the next
    // request; a non-empty deny_list is refused, not ignored; deleting opens it again.
    let permissions = format!("/v1/organization/projects/{p}/model_permissions");
    assert_eq!(
        app.get(&permissions).await.ok(),
        &json!({"object": "project.model_permissions", "mode": "deny_list", "model_ids": []})
    );
    let allowed = app
        .post(
            &permissions,
            json!({"mode": "allow_list", "model_ids": ["gpt-4o*"]}),
        )
        .await;
    assert_eq!(allowed.ok()["mode"], "allow_list");
    assert_eq!(allowed.ok()["model_ids"], json!(["gpt-4o*"]));
    let refused = send("text-embedding-3-small").await;
    assert!(refused.status.is_client_error(), "{}", refused.body);
    assert_eq!(send("gpt-4o").await.status, 200);
    app.post(
        &permissions,
        json!({"mode": "deny_list", "model_ids": ["o3"]}),
    )
    .await
    .error(400, Some("mode"));
    app.post(&permissions, json!({"mode": "allow_list", "model_ids": []}))
        .await
        .error(400, Some("model_ids"));
    let deleted = app
        .call("DELETE", &permissions, Some(&app.admin), None)
        .await;
    assert_eq!(
        deleted.ok(),
        &json!({"object": "project.model_permissions.deleted", "deleted": true})
    );
    assert_eq!(app.get(&permissions).await.ok()["mode"], "deny_list");

    // Spend limits: none (404); set in cents; read back with its enforcement state.
    let spend = format!("/v1/organization/projects/{p}/spend_limit");
    app.get(&spend).await.error(404, None);
    let set = app
        .post(
            &spend,
            json!({"threshold_amount": 2500, "currency": "USD", "interval": "month"}),
        )
        .await;
    assert_eq!(
        set.ok(),
        &json!({"object": "project.spend_limit", "threshold_amount": 2500, "currency": "USD",
                "interval": "month", "enforcement": {"status": "enforcing", "limit_reached": false}})
    );
    let budgets = app.get("/v1/organization/x-tollgate/budgets").await;
    let budget = &budgets.ok()["data"][0];
    assert_eq!(budget["holder"], p.as_str());
    assert_eq!(budget["limit_usd"], "$25.00");
    // A budget of a micro-dollar (set Tollgate's way, with a time zone) is already spent by
    // today's requests: enforcing, and the next request is refused. Replacing it in OpenAI's
    // shape keeps its time zone.
    app.usage_events(4).await;
    app.post(
        "/v1/organization/x-tollgate/budgets",
        json!({"project_id": p, "limit_usd": "0.000001", "period": "day", "timezone": "+02:00"}),
    )
    .await
    .ok();
    assert_eq!(send("gpt-4o").await.status, 429);
    let spent = app.get(&spend).await;
    assert_eq!(spent.ok()["enforcement"]["status"], "enforcing");
    assert_eq!(spent.ok()["enforcement"]["limit_reached"], true);
    assert_eq!(spent.ok()["interval"], "day");
    assert_eq!(spent.ok()["threshold_amount"], 0, "rounded down to cents");
    app.post(
        &spend,
        json!({"threshold_amount": 100, "currency": "USD", "interval": "week"}),
    )
    .await
    .ok();
    let budgets = app.get("/v1/organization/x-tollgate/budgets").await;
    assert_eq!(budgets.ok()["data"][0]["timezone"], "+02:00");
    assert_eq!(budgets.ok()["data"][0]["period"], "week");
    for (body, param) in [
        (
            json!({"threshold_amount": 0, "currency": "USD", "interval": "month"}),
            "threshold_amount",
        ),
        (
            json!({"threshold_amount": 5, "currency": "EUR", "interval": "month"}),
            "currency",
        ),
        (
            json!({"threshold_amount": 5, "currency": "USD", "interval": "year"}),
            "interval",
        ),
    ] {
        app.post(&spend, body).await.error(400, Some(param));
    }
    let gone = app.call("DELETE", &spend, Some(&app.admin), None).await;
    assert_eq!(
        gone.ok(),
        &json!({"object": "project.spend_limit.deleted", "deleted": true})
    );
    app.call("DELETE", &spend, Some(&app.admin), None)
        .await
        .error(404, None);

    // An archived project's limits are not changed.
    let gone = app
        .post("/v1/organization/projects", json!({"name": "gone"}))
        .await;
    let gone = gone.ok()["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/organization/projects/{gone}/archive"),
        json!({}),
    )
    .await
    .ok();
    let refused = app
        .post(
            &format!("/v1/organization/projects/{gone}/rate_limits/rl-gpt-4o"),
            json!({"max_requests_per_1_minute": 5}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let refused = app
        .post(
            &format!("/v1/organization/projects/{gone}/spend_limit"),
            json!({"threshold_amount": 5, "currency": "USD", "interval": "month"}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    // The organization's, too.
    app.get("/v1/organization/spend_limit")
        .await
        .error(404, None);
    let org = app
        .post(
            "/v1/organization/spend_limit",
            json!({"threshold_amount": 100000, "currency": "USD", "interval": "month"}),
        )
        .await;
    assert_eq!(org.ok()["object"], "organization.spend_limit");
    assert_eq!(
        app.get("/v1/organization/spend_limit").await.ok()["threshold_amount"],
        100000
    );
    let gone = app
        .call(
            "DELETE",
            "/v1/organization/spend_limit",
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(gone.ok()["object"], "organization.spend_limit.deleted");

    // A reader reads and cannot change any of it.
    let reader = app
        .key("reader", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    let read = app.call("GET", &limits, Some(&reader), None).await;
    read.ok();
    let write = app
        .call(
            "POST",
            &format!("{limits}/rl-gpt-4o"),
            Some(&reader),
            Some(json!({"max_requests_per_1_minute": 5})),
        )
        .await;
    assert_eq!(write.status, 403, "{}", write.body);
    let write = app.call("DELETE", &permissions, Some(&reader), None).await;
    assert_eq!(write.status, 403, "{}", write.body);
}

#[tokio::test]
async fn tollgate_s_views_rename_and_expire_keys_and_list_projects_and_service_accounts() {
    let app = App::spawn().await;
    let made = app
        .post(
            "/v1/organization/x-tollgate/keys",
            json!({"name": "first", "project_id": "Default project"}),
        )
        .await;
    let id = made.ok()["id"].as_str().unwrap().to_owned();
    let key_path = format!("/v1/organization/x-tollgate/keys/{id}");
    let renamed = app.post(&key_path, json!({"name": "second"})).await;
    assert_eq!(renamed.ok()["name"], "second");
    assert_eq!(renamed.ok()["status"], "active");
    // A bad name refuses the whole change: the expiry is not set either.
    app.post(&key_path, json!({"name": " ", "expires_in_seconds": 0}))
        .await
        .error(400, Some("name"));
    assert_eq!(app.get(&key_path).await.ok()["expires_at"], Value::Null);
    let expired = app.post(&key_path, json!({"expires_in_seconds": 0})).await;
    assert_eq!(expired.ok()["status"], "expired");
    app.post(&key_path, json!({"expires_in_seconds": -5}))
        .await
        .error(400, Some("expires_in_seconds"));
    app.post(&key_path, json!({}))
        .await
        .error(400, Some("name"));
    // The organization's last owner admin key cannot be ended this way either.
    let admins = app.get("/v1/organization/admin_api_keys").await;
    let admin_id = admins.ok()["data"][0]["id"].as_str().unwrap().to_owned();
    let refused = app
        .post(
            &format!("/v1/organization/x-tollgate/keys/{admin_id}"),
            json!({"expires_in_seconds": 0}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    // Projects by id or name, with their rules; archived ones only when asked.
    let made = app
        .post(
            "/v1/organization/x-tollgate/projects",
            json!({"name": "Mobile apps"}),
        )
        .await;
    assert_eq!(made.ok()["is_default"], false);
    let by_name = app
        .get("/v1/organization/x-tollgate/projects/Mobile%20apps")
        .await;
    assert_eq!(by_name.ok()["id"], made.ok()["id"]);
    let archived = app
        .post(
            "/v1/organization/x-tollgate/projects/Mobile%20apps/archive",
            json!({}),
        )
        .await;
    assert_eq!(archived.ok()["status"], "archived");
    let active = app.get("/v1/organization/x-tollgate/projects").await;
    assert_eq!(active.ok()["data"].as_array().unwrap().len(), 1);
    let all = app
        .get("/v1/organization/x-tollgate/projects?include_archived=true")
        .await;
    assert_eq!(all.ok()["data"].as_array().unwrap().len(), 2);
    app.get("/v1/organization/x-tollgate/projects/nope")
        .await
        .error(404, None);

    // Service accounts without a key; listed by project.
    let bot = app
        .post(
            "/v1/organization/x-tollgate/service_accounts",
            json!({"name": "bot"}),
        )
        .await;
    assert_eq!(bot.ok()["project_id"], app.default_project.as_str());
    assert!(bot.ok().get("api_key").is_none());
    let listed = app
        .get(&format!(
            "/v1/organization/x-tollgate/service_accounts?project={}",
            app.default_project
        ))
        .await;
    assert_eq!(listed.ok()["data"][0]["name"], "bot");

    // Reports: usage per day, events, the audit trail as Tollgate records it.
    let report = app
        .get("/v1/organization/x-tollgate/usage/report?group_by=model")
        .await;
    assert_eq!(report.ok()["object"], "usage.report");
    assert_eq!(report.ok()["group_by"], "model");
    app.get("/v1/organization/x-tollgate/usage/report?group_by=color")
        .await
        .error(400, Some("group_by"));
    app.get("/v1/organization/x-tollgate/usage/report?since=2026-13-01")
        .await
        .error(400, Some("since"));
    let audit = app
        .get(&format!(
            "/v1/organization/x-tollgate/audit?resource_id={id}"
        ))
        .await;
    let types: Vec<&str> = audit.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["api_key.updated", "api_key.updated", "api_key.created"]
    );
    let report = app
        .get(&format!(
            "/v1/organization/x-tollgate/limits/report?key_id={id}"
        ))
        .await;
    assert_eq!(report.ok()["limits"], json!([]));
}

#[tokio::test]
async fn deleting_a_service_account_stops_every_key_it_owns_at_once() {
    let app = App::spawn().await;
    let p = app
        .post("/v1/organization/projects", json!({"name": "bots"}))
        .await;
    let p = p.ok()["id"].as_str().unwrap().to_owned();
    let other = app
        .post("/v1/organization/projects", json!({"name": "elsewhere"}))
        .await;
    let other = other.ok()["id"].as_str().unwrap().to_owned();
    let accounts = format!("/v1/organization/projects/{p}/service_accounts");
    let made = app.post(&accounts, json!({"name": "ci"})).await;
    let made = made.ok().clone();
    let account = made["id"].as_str().unwrap().to_owned();
    let first = made["api_key"]["value"].as_str().unwrap().to_owned();
    let second = app
        .post(
            "/v1/organization/x-tollgate/keys",
            json!({"name": "second", "service_account_id": account}),
        )
        .await;
    let second = second.ok()["value"].as_str().unwrap().to_owned();
    let app = &app;
    let models =
        |key: String| async move { app.call("GET", "/v1/models", Some(&key), None).await.status };
    assert_eq!(models(first.clone()).await, 200);
    assert_eq!(models(second.clone()).await, 200);

    // Not through another project, not by a reader.
    app.call(
        "DELETE",
        &format!("/v1/organization/projects/{other}/service_accounts/{account}"),
        Some(&app.admin),
        None,
    )
    .await
    .error(404, None);
    let reader = app
        .key("reader", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    let refused = app
        .call(
            "DELETE",
            &format!("{accounts}/{account}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(refused.status, 403);

    let deleted = app
        .call(
            "DELETE",
            &format!("{accounts}/{account}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(
        deleted.ok(),
        &json!({"object": "organization.project.service_account.deleted", "id": account, "deleted": true})
    );
    // Both keys are refused from the next request; the account is gone from lists and lookups.
    assert_eq!(models(first).await, 401);
    assert_eq!(models(second).await, 401);
    assert_eq!(app.get(&accounts).await.ok()["data"], json!([]));
    app.get(&format!("{accounts}/{account}"))
        .await
        .error(404, None);
    app.call(
        "DELETE",
        &format!("{accounts}/{account}"),
        Some(&app.admin),
        None,
    )
    .await
    .error(404, None);
    // Its name is free again.
    app.post(&accounts, json!({"name": "ci"})).await.ok();
    let audit = app
        .get(&format!(
            "/v1/organization/audit_logs?resource_ids[]={account}"
        ))
        .await;
    assert!(audit.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "service_account.deleted"));
}

/// Many changes at once, each reading what it needs before it takes the write lock: none
/// waits on a connection another holds while it waits on the lock. (Service accounts read
/// their project inside the write once: 12 at once timed out or failed with 500.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_changes_at_once_all_succeed() {
    let app = App::spawn().await;
    let p = app
        .post("/v1/organization/projects", json!({"name": "busy"}))
        .await;
    let p = p.ok()["id"].as_str().unwrap().to_owned();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..32 {
        let (http, base, key, p) = (
            app.http.clone(),
            app.base.clone(),
            app.admin.clone(),
            p.clone(),
        );
        calls.spawn(async move {
            let (path, body) = match i % 4 {
                0 => (
                    format!("/v1/organization/projects/{p}/service_accounts"),
                    json!({"name": format!("bot-{i}")}),
                ),
                1 => (
                    "/v1/organization/x-tollgate/service_accounts".to_owned(),
                    json!({"name": format!("svc-{i}"), "project": p}),
                ),
                2 => (
                    format!("/v1/organization/projects/{p}/rate_limits/rl-race"),
                    json!({"max_requests_per_1_minute": 1000 + i}),
                ),
                _ => (
                    "/v1/organization/x-tollgate/keys".to_owned(),
                    json!({"name": format!("key-{i}"), "project_id": p, "rate_limits": {"rpm": 5}}),
                ),
            };
            let response = http
                .post(format!("{base}{path}"))
                .bearer_auth(key)
                .json(&body)
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .unwrap();
            (path, response.status().as_u16())
        });
    }
    while let Some(done) = calls.join_next().await {
        let (path, status) = done.unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let accounts = app
        .get(&format!(
            "/v1/organization/projects/{p}/service_accounts?limit=100"
        ))
        .await;
    assert_eq!(accounts.ok()["data"].as_array().unwrap().len(), 16);
}

/// Two changes to different metrics of one rule at once both hold: each reads the rule inside
/// its own transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_to_one_rule_lose_nothing() {
    let app = App::spawn().await;
    let limits = format!(
        "/v1/organization/projects/{}/rate_limits",
        app.default_project
    );
    for round in 0..10 {
        let model = format!("race-{round}");
        let bodies = [
            json!({"max_requests_per_1_minute": 11}),
            json!({"max_tokens_per_1_minute": 2222}),
            json!({"max_requests_per_1_day": 333}),
        ];
        let mut calls = tokio::task::JoinSet::new();
        for body in bodies {
            let (http, url, key) = (
                app.http.clone(),
                format!("{}{limits}/rl-{model}", app.base),
                app.admin.clone(),
            );
            calls.spawn(async move {
                http.post(url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            });
        }
        while let Some(status) = calls.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        let listed = app.get(&format!("{limits}?limit=100")).await;
        let rule = listed.ok()["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == model.as_str())
            .unwrap()
            .clone();
        assert_eq!(
            (
                &rule["max_requests_per_1_minute"],
                &rule["max_tokens_per_1_minute"],
                &rule["max_requests_per_1_day"]
            ),
            (&json!(11), &json!(2222), &json!(333)),
            "round {round}"
        );
    }
}

/// Two organizations (Tollgate serves one per deployment): every admin endpoint of one, called
/// with the other's ids and keys, answers 401 or 404 and shows nothing of the other.
#[tokio::test]
async fn two_organizations_see_nothing_of_each_other() {
    let a = App::spawn().await;
    let b = App::spawn().await;
    // B: a project with a service account, a key, rules and usage.
    let pb = b
        .post(
            "/v1/organization/projects",
            json!({"name": "b-secret-project"}),
        )
        .await;
    let pb = pb.ok()["id"].as_str().unwrap().to_owned();
    let sab = b
        .post(
            &format!("/v1/organization/projects/{pb}/service_accounts"),
            json!({"name": "b-bot"}),
        )
        .await;
    let sab = sab.ok().clone();
    let sa_id = sab["id"].as_str().unwrap().to_owned();
    let kb = b
        .post(
            "/v1/organization/x-tollgate/keys",
            json!({"name": "b-key", "project_id": pb}),
        )
        .await;
    let kb = kb.ok().clone();
    let (kb_id, kb_secret) = (
        kb["id"].as_str().unwrap().to_owned(),
        kb["value"].as_str().unwrap().to_owned(),
    );
    b.post(
        &format!("/v1/organization/projects/{pb}/rate_limits/rl-gpt-4o"),
        json!({"max_requests_per_1_minute": 5}),
    )
    .await
    .ok();
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let sent = b
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&kb_secret),
            Some(chat.clone()),
        )
        .await;
    assert_eq!(sent.status, 200);
    b.usage_events(1).await;
    let b_admin_id = b.get("/v1/organization/admin_api_keys").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_user = b.get("/v1/organization/users").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_invite = b
        .post(
            "/v1/organization/invites",
            json!({"email": "b-person@example.com", "role": "reader", "projects": [{"id": pb, "role": "owner"}]}),
        )
        .await;
    let b_invite = b_invite.ok()["id"].as_str().unwrap().to_owned();
    b.post(
        &format!("/v1/organization/projects/{pb}/users"),
        json!({"user_id": b_user, "role": "owner"}),
    )
    .await
    .ok();

    // B's keys open nothing of A's.
    assert_eq!(
        a.call("GET", "/v1/organization/projects", Some(&b.admin), None)
            .await
            .status,
        401
    );
    assert_eq!(
        a.call("POST", "/v1/chat/completions", Some(&kb_secret), Some(chat))
            .await
            .status,
        401
    );

    // B's ids on A's endpoints: 404 (never B's data).
    let a_default = a.default_project.clone();
    let get_404 = [
        format!("/v1/organization/projects/{pb}"),
        format!("/v1/organization/projects/{pb}/service_accounts"),
        format!("/v1/organization/projects/{pb}/service_accounts/{sa_id}"),
        format!("/v1/organization/projects/{a_default}/service_accounts/{sa_id}"),
        format!("/v1/organization/projects/{pb}/api_keys"),
        format!("/v1/organization/projects/{a_default}/api_keys/{kb_id}"),
        format!("/v1/organization/projects/{pb}/rate_limits"),
        format!("/v1/organization/projects/{pb}/model_permissions"),
        format!("/v1/organization/projects/{pb}/spend_limit"),
        format!("/v1/organization/users/{b_user}"),
        format!("/v1/organization/invites/{b_invite}"),
        format!("/v1/organization/projects/{pb}/users"),
        format!("/v1/organization/projects/{pb}/users/{b_user}"),
        format!("/v1/organization/projects/{a_default}/users/{b_user}"),
        format!("/v1/organization/admin_api_keys/{b_admin_id}"),
        format!("/v1/organization/x-tollgate/keys/{kb_id}"),
        format!("/v1/organization/x-tollgate/projects/{pb}"),
        "/v1/organization/x-tollgate/projects/b-secret-project".to_owned(),
    ];
    for path in &get_404 {
        let reply = a.get(path).await;
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.body);
        // (A name the caller gave may be quoted back; nothing else of B's is.)
        if !path.contains("b-secret-project") {
            assert!(!reply.body.to_string().contains("b-secret-project"));
        }
    }
    let post_404 = [
        (
            format!("/v1/organization/projects/{pb}"),
            json!({"name": "x"}),
        ),
        (format!("/v1/organization/projects/{pb}/archive"), json!({})),
        (
            format!("/v1/organization/projects/{pb}/users"),
            json!({"user_id": b_user, "role": "owner"}),
        ),
        (
            format!("/v1/organization/projects/{pb}/users/{b_user}"),
            json!({"role": "member"}),
        ),
        (
            format!("/v1/organization/projects/{pb}/service_accounts"),
            json!({"name": "x"}),
        ),
        (
            format!("/v1/organization/projects/{pb}/rate_limits/rl-gpt-4o"),
            json!({"max_requests_per_1_minute": 1}),
        ),
        (
            format!("/v1/organization/projects/{pb}/model_permissions"),
            json!({"mode": "allow_list", "model_ids": ["x"]}),
        ),
        (
            format!("/v1/organization/projects/{pb}/spend_limit"),
            json!({"threshold_amount": 1, "currency": "USD", "interval": "month"}),
        ),
        (
            format!("/v1/organization/x-tollgate/keys/{kb_id}"),
            json!({"name": "x"}),
        ),
        (
            format!("/v1/organization/x-tollgate/keys/{kb_id}/revoke"),
            json!({}),
        ),
        (
            format!("/v1/organization/x-tollgate/keys/{kb_id}/rotate"),
            json!({"grace_seconds": 0}),
        ),
        (
            "/v1/organization/x-tollgate/keys".to_owned(),
            json!({"name": "x", "project_id": pb}),
        ),
        (
            "/v1/organization/x-tollgate/keys".to_owned(),
            json!({"name": "x", "service_account_id": sa_id}),
        ),
        (
            "/v1/organization/x-tollgate/limits".to_owned(),
            json!({"project_id": pb, "rpm": 1}),
        ),
        (
            "/v1/organization/x-tollgate/budgets".to_owned(),
            json!({"key_id": kb_id, "limit_usd": "1"}),
        ),
        (
            format!("/v1/organization/x-tollgate/projects/{pb}/archive"),
            json!({}),
        ),
    ];
    for (path, body) in &post_404 {
        let reply = a.post(path, body.clone()).await;
        assert_eq!(reply.status, 404, "POST {path}: {}", reply.body);
    }
    // B's user is no user of A's: adding them to A's project is a 400 naming the field.
    let reply = a
        .post(
            &format!("/v1/organization/projects/{a_default}/users"),
            json!({"user_id": b_user, "role": "owner"}),
        )
        .await;
    reply.error(400, Some("user_id"));
    for path in [
        format!("/v1/organization/invites/{b_invite}"),
        format!("/v1/organization/projects/{pb}/users/{b_user}"),
        format!("/v1/organization/projects/{a_default}/api_keys/{kb_id}"),
        format!("/v1/organization/projects/{pb}/service_accounts/{sa_id}"),
        format!("/v1/organization/admin_api_keys/{b_admin_id}"),
    ] {
        let reply = a.call("DELETE", &path, Some(&a.admin), None).await;
        assert_eq!(reply.status, 404, "DELETE {path}: {}", reply.body);
    }
    // Filters naming B's ids find nothing; A's own lists hold nothing of B's.
    let start = START.seconds() - 86_400;
    for path in [
        format!("/v1/organization/audit_logs?project_ids[]={pb}"),
        format!("/v1/organization/audit_logs?resource_ids[]={kb_id}"),
        format!("/v1/organization/x-tollgate/audit?resource_id={kb_id}"),
        format!("/v1/organization/x-tollgate/usage/events?key_id={kb_id}"),
    ] {
        assert_eq!(a.get(&path).await.ok()["data"], json!([]), "{path}");
    }
    let usage = a
        .get(&format!(
            "/v1/organization/usage/completions?start_time={start}&project_ids[]={pb}"
        ))
        .await;
    assert!(usage.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|bucket| bucket["results"] == json!([])));
    for path in [
        "/v1/organization/projects?include_archived=true",
        "/v1/organization/users",
        "/v1/organization/invites",
        "/v1/organization/admin_api_keys",
        "/v1/organization/audit_logs?limit=100",
        "/v1/organization/x-tollgate/keys?limit=100",
        "/v1/organization/x-tollgate/projects?include_archived=true",
        "/v1/organization/x-tollgate/service_accounts",
        "/v1/organization/x-tollgate/limits",
        "/v1/organization/x-tollgate/budgets",
        "/v1/organization/x-tollgate/usage/events",
        "/v1/organization/x-tollgate/usage/report",
    ] {
        let text = a.get(path).await.ok().to_string();
        for theirs in [&pb, &sa_id, &kb_id, &b_admin_id, &b_user, &b_invite] {
            assert!(!text.contains(theirs.as_str()), "{path} shows {theirs}");
        }
    }
    let costs = a
        .get(&format!("/v1/organization/costs?start_time={start}"))
        .await;
    assert!(!costs.ok().to_string().contains(pb.as_str()));
}

#[tokio::test]
async fn spend_alerts_are_shares_of_the_spend_limit() {
    let app = App::spawn().await;
    let p = app.default_project.clone();
    let alerts = format!("/v1/organization/projects/{p}/spend_alerts");
    let channel = json!({"type": "email", "recipients": ["finance@example.com"]});
    let body = |cents: i64| {
        json!({"threshold_amount": cents, "currency": "USD", "interval": "month",
               "notification_channel": channel})
    };
    // No spend limit yet: nothing to be a share of.
    assert_eq!(app.get(&alerts).await.ok()["data"], json!([]));
    let refused = app.post(&alerts, body(8_000)).await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    app.post(
        &format!("/v1/organization/projects/{p}/spend_limit"),
        json!({"threshold_amount": 10_000, "currency": "USD", "interval": "month"}),
    )
    .await
    .ok();
    let made = app.post(&alerts, body(8_000)).await;
    assert_eq!(
        made.ok(),
        &json!({"id": "alert_800", "object": "project.spend_alert", "threshold_amount": 8000,
                "currency": "USD", "interval": "month",
                "notification_channel": {"type": "email", "recipients": []}})
    );
    // Rounded to a thousandth of the limit: $33.33 of $100 fires at $33.30.
    let rounded = app.post(&alerts, body(3_333)).await;
    assert_eq!(rounded.ok()["id"], "alert_333");
    assert_eq!(rounded.ok()["threshold_amount"], 3_330);
    assert_eq!(ids(app.get(&alerts).await.ok()), ["alert_333", "alert_800"]);
    assert_eq!(
        ids(app.get(&format!("{alerts}?order=desc")).await.ok()),
        ["alert_800", "alert_333"]
    );
    let page = app.get(&format!("{alerts}?limit=1&after=alert_333")).await;
    assert_eq!(ids(page.ok()), ["alert_800"]);
    assert_eq!(
        app.get(&format!("{alerts}/alert_800")).await.ok()["threshold_amount"],
        8_000
    );
    // The budget's own thresholds are these (and fire as every budget alert does).
    let budgets = app.get("/v1/organization/x-tollgate/budgets").await;
    assert_eq!(
        budgets.ok()["data"][0]["alerts_percent"],
        json!([33.3, 80.0])
    );

    // Moving an alert onto another is refused (it would merge them); ids are as written.
    app.post(&alerts, body(9_000)).await.ok();
    let merged = app.post(&format!("{alerts}/alert_900"), body(8_000)).await;
    assert_eq!(merged.status, 409, "{}", merged.body);
    app.get(&format!("{alerts}/alert_0800"))
        .await
        .error(404, None);
    app.call(
        "DELETE",
        &format!("{alerts}/alert_900"),
        Some(&app.admin),
        None,
    )
    .await
    .ok();
    // An update moves it; a delete removes it; unknown ones are 404.
    let moved = app.post(&format!("{alerts}/alert_800"), body(5_000)).await;
    assert_eq!(moved.ok()["id"], "alert_500");
    assert_eq!(ids(app.get(&alerts).await.ok()), ["alert_333", "alert_500"]);
    let gone = app
        .call(
            "DELETE",
            &format!("{alerts}/alert_333"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(
        gone.ok(),
        &json!({"id": "alert_333", "object": "project.spend_alert.deleted", "deleted": true})
    );
    for path in [format!("{alerts}/alert_333"), format!("{alerts}/nope")] {
        app.get(&path).await.error(404, None);
    }
    app.call(
        "DELETE",
        &format!("{alerts}/alert_333"),
        Some(&app.admin),
        None,
    )
    .await
    .error(404, None);
    // Bad input names its field.
    for (bad, param) in [
        (
            json!({"threshold_amount": 0, "currency": "USD", "interval": "month", "notification_channel": channel}),
            "threshold_amount",
        ),
        (
            json!({"threshold_amount": 10_000_000, "currency": "USD", "interval": "month", "notification_channel": channel}),
            "threshold_amount",
        ),
        (
            json!({"threshold_amount": 5, "currency": "EUR", "interval": "month", "notification_channel": channel}),
            "currency",
        ),
        (
            json!({"threshold_amount": 5, "currency": "USD", "interval": "week", "notification_channel": channel}),
            "interval",
        ),
        (
            json!({"threshold_amount": 5, "currency": "USD", "interval": "month", "notification_channel": {"type": "sms", "recipients": []}}),
            "notification_channel",
        ),
    ] {
        app.post(&alerts, bad).await.error(400, Some(param));
    }
    // A reader reads, and changes nothing.
    let reader = app
        .key("reader", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    assert_eq!(
        app.call("GET", &alerts, Some(&reader), None).await.status,
        200
    );
    let write = app
        .call("POST", &alerts, Some(&reader), Some(body(1_000)))
        .await;
    assert_eq!(write.status, 403);

    // The largest amounts do not overflow.
    app.post(
        "/v1/organization/x-tollgate/budgets",
        json!({"project_id": p, "limit_usd": "922337203685", "period": "month", "alerts_percent": [80]}),
    )
    .await
    .ok();
    let big = app.get(&alerts).await;
    assert_eq!(
        big.ok()["data"][0]["threshold_amount"],
        73_786_976_294_800_i64
    );
    let big = app.post(&alerts, body(922_337_203_685)).await;
    assert_eq!(big.ok()["id"], "alert_10", "1% of the limit");
    assert_eq!(big.ok()["threshold_amount"], 922_337_203_685_i64);
    app.post(&alerts, body(1))
        .await
        .error(400, Some("threshold_amount"));

    // The organization's, the same way.
    app.post(
        "/v1/organization/spend_limit",
        json!({"threshold_amount": 1_000_000, "currency": "USD", "interval": "month"}),
    )
    .await
    .ok();
    let org = app
        .post("/v1/organization/spend_alerts", body(500_000))
        .await;
    assert_eq!(org.ok()["id"], "alert_500");
    assert_eq!(org.ok()["object"], "organization.spend_alert");
    let gone = app
        .call(
            "DELETE",
            "/v1/organization/spend_alerts/alert_500",
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(gone.ok()["object"], "organization.spend_alert.deleted");
}

#[tokio::test]
async fn users_change_roles_and_leave_but_the_organization_keeps_an_owner() {
    let app = App::spawn().await;
    let actor = Actor::cli("tester");
    let owner = app.get("/v1/organization/users").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The only owner cannot become a reader or leave.
    let refused = app
        .post(
            &format!("/v1/organization/users/{owner}"),
            json!({"role": "reader"}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let refused = app
        .call(
            "DELETE",
            &format!("/v1/organization/users/{owner}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    // A second member, with a key of their own.
    let second = app
        .control
        .add_member(
            &actor,
            "dev@example.com",
            "Dev",
            tollgate_store::Role::Reader,
        )
        .await
        .unwrap();
    let id = second.user.id.to_string();
    let user = format!("/v1/organization/users/{id}");
    assert_eq!(app.get(&user).await.ok()["role"], "reader");
    let promoted = app.post(&user, json!({"role": "owner"})).await;
    assert_eq!(promoted.ok()["role"], "owner");
    assert_eq!(promoted.ok()["email"], "dev@example.com");
    app.post(&user, json!({"role": "admin"}))
        .await
        .error(400, Some("role"));
    // Now the first owner may step down, and back.
    app.post(
        &format!("/v1/organization/users/{owner}"),
        json!({"role": "reader"}),
    )
    .await
    .ok();
    app.post(
        &format!("/v1/organization/users/{owner}"),
        json!({"role": "owner"}),
    )
    .await
    .ok();

    // Removing the second member: gone from the list.
    let gone = app.call("DELETE", &user, Some(&app.admin), None).await;
    assert_eq!(
        gone.ok(),
        &json!({"object": "organization.user.deleted", "id": id, "deleted": true})
    );
    app.get(&user).await.error(404, None);
    app.call("DELETE", &user, Some(&app.admin), None)
        .await
        .error(404, None);
    let users = app.get("/v1/organization/users").await;
    assert_eq!(ids(users.ok()), std::slice::from_ref(&owner));
    // A reader changes nothing.
    let reader = app
        .key("reader", KeyOwnerRequest::Admin, Permissions::ReadOnly)
        .await;
    let write = app
        .call(
            "POST",
            &format!("/v1/organization/users/{owner}"),
            Some(&reader),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(write.status, 403);
    let audit = app
        .get(&format!("/v1/organization/audit_logs?resource_ids[]={id}"))
        .await;
    let types: Vec<&str> = audit.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"user.deleted") && types.contains(&"user.updated"),
        "{types:?}"
    );
}

#[tokio::test]
async fn a_removed_user_leaves_the_organization_s_keys_working() {
    let app = App::spawn().await;
    let actor = Actor::cli("tester");
    app.control
        .add_member(
            &actor,
            "ops@example.com",
            "Ops",
            tollgate_store::Role::Owner,
        )
        .await
        .unwrap();
    // Keys made through the API are the organization's (recorded under its first owner).
    let made = app
        .post(
            "/v1/organization/x-tollgate/keys",
            json!({"name": "prod app"}),
        )
        .await;
    let secret = made.ok()["value"].as_str().unwrap().to_owned();
    let first = app.get("/v1/organization/users").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first owner leaves (another owner stays): every key keeps working, the admin key too.
    app.call(
        "DELETE",
        &format!("/v1/organization/users/{first}"),
        Some(&app.admin),
        None,
    )
    .await
    .ok();
    assert_eq!(
        app.call("GET", "/v1/models", Some(&secret), None)
            .await
            .status,
        200
    );
    assert_eq!(app.get("/v1/organization/users").await.status, 200);
    let users = app.get("/v1/organization/users").await;
    assert_eq!(users.ok()["data"].as_array().unwrap().len(), 1);
}

/// The organization keeps an owner admin key that does not expire, whatever the order of
/// changes: a key already set to expire does not count, and two expiries at once cannot both
/// pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organization_never_loses_its_last_lasting_owner_admin_key() {
    let app = App::spawn().await;
    let k1 = app.get("/v1/organization/admin_api_keys").await.ok()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let k2 = app
        .post("/v1/organization/admin_api_keys", json!({"name": "second"}))
        .await;
    let k2_secret = k2.ok()["value"].as_str().unwrap().to_owned();
    let k2 = k2.ok()["id"].as_str().unwrap().to_owned();
    // K2 set to expire later: allowed (K1 lasts); then K1 cannot be deleted or expired.
    app.post(
        &format!("/v1/organization/x-tollgate/keys/{k2}"),
        json!({"expires_in_seconds": 15}),
    )
    .await
    .ok();
    let refused = app
        .call(
            "DELETE",
            &format!("/v1/organization/admin_api_keys/{k1}"),
            Some(&app.admin),
            None,
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let refused = app
        .post(
            &format!("/v1/organization/x-tollgate/keys/{k1}"),
            json!({"expires_in_seconds": 100}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    // Two lasting owner keys expired at the same moment: exactly one may go. Both calls are
    // made with K2 (not lasting, so never the one at stake): made with K1, the call expiring K3
    // could rightly be refused 401 once the other had expired K1.
    let k3 = app
        .post("/v1/organization/admin_api_keys", json!({"name": "third"}))
        .await;
    let k3 = k3.ok()["id"].as_str().unwrap().to_owned();
    let mut calls = tokio::task::JoinSet::new();
    for key in [k1.clone(), k3.clone()] {
        let (http, url, admin) = (
            app.http.clone(),
            format!("{}/v1/organization/x-tollgate/keys/{key}", app.base),
            k2_secret.clone(),
        );
        calls.spawn(async move {
            http.post(url)
                .bearer_auth(admin)
                .json(&json!({"expires_in_seconds": 0}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = calls.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
}
