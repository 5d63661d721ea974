//! `tollgate migrate`: a SQLite deployment with keys, projects, limits, budgets, usage and
//! provider objects is copied into PostgreSQL (a scratch database on the machine's server),
//! and a server on PostgreSQL then answers as the SQLite one did: the same keys work, revoked
//! ones stay refused, the same usage and objects are listed, and new rows follow the copied
//! ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::{json, Value};
use support::{assert_fails, upload, Deployment};
use tollgate_store::scratch::ScratchDatabase;

async fn chat(base: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What management commands show of a deployment, on the database `url`.
fn views(d: &Deployment, url: &str) -> Vec<Value> {
    let mut shown = Vec::new();
    for args in [
        vec!["keys", "list", "--json"],
        vec!["projects", "list", "--json"],
        vec!["limits", "list", "--json"],
        vec!["budgets", "list", "--json"],
        vec!["usage", "--by", "key", "--json"],
        vec!["objects", "list", "--project", "beta", "--json"],
        vec!["audit", "--limit", "100", "--json"],
    ] {
        let mut with_url = vec!["--database-url", url];
        with_url.extend(args);
        shown.push(d.run(&with_url).ok().json());
    }
    shown
}

#[tokio::test]
async fn a_sqlite_deployment_moves_to_postgres_whole() {
    let scratch = ScratchDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pg = scratch.location().clone();
    let pg_url = match &pg {
        tollgate_store::DatabaseLocation::Postgres(url) => url.expose().to_owned(),
        other => panic!("{other:?}"),
    };

    let d = Deployment::sqlite();
    let server = d.serve(&["--demo"]);
    d.run(&["projects", "create", "beta"]).ok();
    let a = d
        .run(&["keys", "create", "--name", "a", "--json"])
        .ok()
        .json();
    let b = d
        .run(&[
            "keys",
            "create",
            "--name",
            "b",
            "--project",
            "beta",
            "--json",
        ])
        .ok()
        .json();
    // Six hundred keys, then `a` rotated: its successor lands in a later batch of the copy
    // than `a`, which points at it.
    d.run(&["dev", "seed-keys", "600"]).ok();
    let successor = d
        .run(&[
            "keys",
            "rotate",
            a["id"].as_str().unwrap(),
            "--grace",
            "24h",
            "--json",
        ])
        .ok()
        .json();
    let successor_key = successor["value"].as_str().unwrap().to_owned();
    let gone = d
        .run(&["keys", "create", "--name", "gone", "--json"])
        .ok()
        .json();
    d.run(&["keys", "revoke", gone["id"].as_str().unwrap()])
        .ok();
    d.run(&["limits", "set", "--project", "beta", "--rpm", "100"])
        .ok();
    d.run(&["budgets", "set", "--project", "beta", "--amount", "25"])
        .ok();
    let a_key = a["value"].as_str().unwrap();
    let b_key = b["value"].as_str().unwrap();
    for _ in 0..3 {
        assert_eq!(chat(&server.base, a_key).await, 200);
    }
    assert_eq!(chat(&server.base, b_key).await, 200);
    let file = upload(&server.base, b_key).await;
    assert_eq!(server.stop().code, 0);
    let before = views(&d, "./tollgate.db");

    let copied = d.run(&["migrate", "--to", &pg_url, "--json"]).ok().json();
    let rows = |table: &str| {
        copied["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .map(|t| t["rows"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(rows("usage_events"), 5, "{copied}");
    assert_eq!(rows("provider_objects"), 1, "{copied}");
    assert!(rows("api_keys") >= 604, "{copied}");
    assert!(
        !copied["to"].as_str().unwrap().contains("PASSWORD"),
        "{copied}"
    );

    // Everything reads the same from PostgreSQL.
    let after = views(&d, &pg_url);
    assert_eq!(before, after);
    assert_eq!(after[5]["data"][0]["id"], file.as_str());

    // A second copy into the same database is refused, and changes nothing.
    let again = d.run(&["migrate", "--to", &pg_url]);
    assert_fails(&again, 5, "already holds Tollgate data");
    assert_eq!(views(&d, &pg_url), after);

    // A server on PostgreSQL, with the same secret file: the keys work as they did.
    let server = d.serve(&["--demo", "--database-url", &pg_url]);
    assert_eq!(chat(&server.base, a_key).await, 200);
    assert_eq!(chat(&server.base, b_key).await, 200);
    assert_eq!(
        chat(&server.base, gone["value"].as_str().unwrap()).await,
        401
    );
    // The rotated key's successor (written after six hundred others) works: the old key's
    // link to it was copied once both were in.
    assert_eq!(chat(&server.base, &successor_key).await, 200);
    // New rows follow the copied ones (identity sequences moved past them).
    let c = d
        .run(&[
            "--database-url",
            &pg_url,
            "keys",
            "create",
            "--name",
            "c",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(chat(&server.base, c["value"].as_str().unwrap()).await, 200);
    d.run(&[
        "--database-url",
        &pg_url,
        "limits",
        "set",
        "--project",
        "beta",
        "--rpm",
        "200",
    ])
    .ok();
    assert_eq!(server.stop().code, 0);
    let usage = d
        .run(&["--database-url", &pg_url, "usage", "--by", "key", "--json"])
        .ok()
        .json();
    let requests: i64 = usage["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_i64().unwrap())
        .sum();
    assert_eq!(requests, 9, "5 copied, 4 made on PostgreSQL: {usage}");
}

#[test]
fn migrate_says_what_it_needs() {
    let d = Deployment::sqlite();
    let run = d.run(&["migrate", "--to", "postgres://127.0.0.1:1/x"]);
    assert_fails(&run, 3, "no such database to copy");
    d.run(&["init"]).ok();
    let run = d.run(&["migrate", "--to", "./other.db"]);
    assert_fails(&run, 2, "give a PostgreSQL URL");
    // Usage a killed server left in its spool (in its process's directory) is not left behind.
    let process = d.path("tollgate.usage-spool").join("p1-1");
    std::fs::create_dir_all(&process).unwrap();
    std::fs::write(process.join("usage-000000000001.jsonl"), "{}\n").unwrap();
    let run = d.run(&["migrate", "--to", "postgres://127.0.0.1:1/x"]);
    assert_fails(&run, 3, "usage events not yet stored");
    let run = d.run(&[
        "--database-url",
        "postgres://127.0.0.1:1/x",
        "migrate",
        "--to",
        "postgres://127.0.0.1:1/y",
    ]);
    assert_fails(&run, 2, "migrate copies a SQLite database");
}
