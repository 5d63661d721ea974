//! A project's objects at its provider from the command line: `tollgate objects list` shows
//! what the ownership ledger recorded for a project, `tollgate objects adopt` records objects
//! made outside Tollgate as a project's; and `serve` says which projects share a credential.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::Value;
use support::{assert_fails, upload, Deployment};

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_project_s_objects_are_listed_and_adopted_from_the_cli() {
    let d = Deployment::new();
    let server = d.serve(&["--demo"]);
    objects(&d, &server.base).await;
}

#[tokio::test]
async fn a_project_s_objects_are_listed_and_adopted_in_remote_mode() {
    let d = Deployment::remote_with(&["--demo"]);
    let base = d.server.as_ref().unwrap().base.clone();
    objects(&d, &base).await;
}

async fn objects(d: &Deployment, base: &str) {
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
    let file = upload(base, a["value"].as_str().unwrap()).await;
    // Listed for its project the moment the upload was answered, with the key that made it.
    let listed = d.run(&["objects", "list", "--json"]).ok().json();
    assert_eq!(ids(&listed), vec![file.clone()]);
    assert_eq!(listed["data"][0]["object"], "file");
    assert_eq!(listed["data"][0]["provider"], "demo");
    assert_eq!(listed["data"][0]["key_id"], a["id"]);
    let table = d.run(&["objects", "list", "--kind", "file"]).ok();
    assert!(table.stdout.contains(&file), "{}", table.stdout);
    let beta = d
        .run(&["objects", "list", "--project", "beta", "--json"])
        .ok()
        .json();
    assert!(ids(&beta).is_empty(), "{beta}");

    // Adopting: an object Tollgate never saw becomes beta's; one it has keeps its owner.
    let adopted = d
        .run(&[
            "objects",
            "adopt",
            "--project",
            "beta",
            "--provider",
            "demo",
            "file-legacy0001",
            &file,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(adopted["data"][0]["adopted"], true, "{adopted}");
    assert_eq!(adopted["data"][1]["adopted"], false, "{adopted}");
    let beta = d
        .run(&["objects", "list", "--project", "beta", "--json"])
        .ok()
        .json();
    assert_eq!(ids(&beta), vec!["file-legacy0001".to_owned()]);
    assert_eq!(beta["data"][0]["key_id"], Value::Null);
    let again = d
        .run(&[
            "objects",
            "adopt",
            "--project",
            "beta",
            "--provider",
            "demo",
            "file-legacy0001",
        ])
        .ok();
    assert!(
        again.stdout.contains("already recorded"),
        "{}",
        again.stdout
    );
    // beta's key reaches the adopted id (the provider answers for it), never A's file.
    let client = reqwest::Client::new();
    let b_key = b["value"].as_str().unwrap();
    let status = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(format!("{base}{path}"))
                .bearer_auth(b_key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(format!("/v1/files/{file}")).await, 404);
    let audit = d.run(&["audit", "--json"]).ok().json();
    assert!(
        audit.to_string().contains("provider_objects.adopted"),
        "{audit}"
    );

    // Bad input: clear messages.
    assert_fails(
        &d.run(&["objects", "adopt", "--project", "beta", "not an id"]),
        2,
        "is not an object id",
    );
    assert_fails(
        &d.run(&["objects", "list", "--kind", "spaceship"]),
        2,
        "not a kind",
    );
    assert_fails(&d.run(&["objects", "list", "--project", "nope"]), 4, "nope");
}

#[tokio::test]
async fn serve_says_which_projects_share_a_credential() {
    let d = Deployment::new();
    d.run(&["init"]).ok();
    d.run(&["projects", "create", "alpha"]).ok();
    d.run(&["projects", "create", "beta"]).ok();
    std::fs::write(
        d.path("tollgate.toml"),
        "[[providers]]\nname = \"local\"\ntype = \"mock\"\nmodels = [\"m1\"]\napi_key_env = \"SHARED_KEY\"\n\
         [[providers.project_keys]]\nproject = \"alpha\"\napi_key_env = \"ALPHA_KEY\"\n\
         [[providers.project_keys]]\nproject = \"beta\"\napi_key_file = \"beta.key\"\n",
    )
    .unwrap();
    std::fs::write(d.path("beta.key"), "sk-beta-own\n").unwrap();
    let mut d = d;
    d.env.push(("SHARED_KEY".into(), "sk-shared".into()));
    d.env.push(("ALPHA_KEY".into(), "sk-alpha-own".into()));
    let server = d.serve(&["--config", "tollgate.toml"]);
    let log = server.stderr();
    assert!(
        log.contains("these projects have a credential of their own")
            && log.contains("alpha")
            && log.contains("beta"),
        "{log}"
    );
    assert!(
        log.contains("these projects share a credential") && log.contains("Default project"),
        "{log}"
    );
    assert!(
        !log.contains("sk-alpha-own") && !log.contains("sk-beta-own"),
        "no credential is logged"
    );
    drop(server);

    // A project key nobody can read stops the start with a clear message.
    std::fs::remove_file(d.path("beta.key")).unwrap();
    let failed = d.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        "tollgate.toml",
    ]);
    assert_fails(
        &failed,
        3,
        "cannot read a credential from beta.key for project beta",
    );
}
