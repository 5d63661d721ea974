//! The `tollgate` binary end to end: first run, the key lifecycle from the CLI, a revoke reaching
//! a running server, bad input, and a scan proving no secret is written anywhere it should not be.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::{assert_fails, contains, files_under, Deployment, Run};

async fn models(base: &str, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The status of `GET /v1/models` with `key` once it is `expected`, waiting up to five seconds
/// for the server to follow the change log (a revoke takes effect within the follow interval).
async fn models_status_becomes(base: &str, key: &str, expected: u16) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = models(base, key).await.0;
        if status == expected || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secret_from_env_line(run: &Run) -> String {
    let line = run.stdout.trim();
    assert_eq!(
        run.stdout.lines().count(),
        1,
        "--format env prints one line: {:?}",
        run.stdout
    );
    line.strip_prefix("export OPENAI_API_KEY=")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned()
}

/// The value after `label` on the banner line that starts with it.
fn banner_value(banner: &str, label: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in banner:\n{banner}"))
}

#[tokio::test]
async fn a_first_run_sets_up_and_prints_once_then_never_again() {
    let d = Deployment::new();
    let server = d.serve(&[]);
    let banner = server.stdout();
    assert!(banner.contains("This is shown only once"), "{banner}");
    let org = banner_value(&banner, "Organization");
    assert!(org.starts_with("org-"), "{org}");
    assert!(banner_value(&banner, "Project").contains("(Default project)"));
    let sign_in = banner_value(&banner, "Sign in");
    // The sign-in line is a URL that opens the console's sign-in page.
    let expected = format!(
        "{}/console/login as owner@localhost with password ",
        server.base
    );
    assert!(sign_in.starts_with(&expected), "{sign_in}");
    let page = reqwest::get(format!("{}/console/login", server.base))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("type=\"password\""));
    let admin_key = banner_value(&banner, "Admin key");
    assert!(admin_key.starts_with("sk-admin-"));
    // The admin key is real: the gateway knows it, and refuses it only for lack of a model scope.
    let (status, body) = models(&server.base, &admin_key).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Missing scopes"),
        "{body}"
    );
    let first = server.stop();
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stderr.contains("created the server secret file"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.path("tollgate.secret"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let second = d.serve(&[]);
    let out = second.stdout();
    assert!(
        !out.contains("shown only once") && !out.contains("sk-admin-"),
        "a later run prints no set-up: {out}"
    );
    assert!(out.starts_with("Tollgate listening on http://"));
    second.stop();
    let init = d.run(&["init"]).ok();
    assert!(init.stdout.contains("already set up; nothing was changed"));
    let projects = d.run(&["projects", "list", "--json"]).ok().json();
    assert_eq!(
        projects["data"].as_array().unwrap().len(),
        1,
        "no second organization or project"
    );
}

#[tokio::test]
async fn the_key_lifecycle_from_the_cli() {
    let d = Deployment::new();
    d.run(&["init"]).ok();
    key_lifecycle(&d);
}

/// The same commands, with the same output, against a running server through its admin API.
#[tokio::test]
async fn the_key_lifecycle_from_the_cli_in_remote_mode() {
    let d = Deployment::remote();
    key_lifecycle(&d);
    // Nothing of it touched the database directly: every change is the admin key's.
    let audit = d.run(&["audit", "--json", "--limit", "1000"]).ok().json();
    assert!(audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] != "organization.created" && e["actor"]["type"] != "system")
        .all(|e| e["actor"]["type"] == "api_key"));
    // Without the admin key, or with a wrong one, nothing is done; a dead server is named.
    let mut keyless = Deployment::new();
    keyless.env.push((
        "TOLLGATE_URL".into(),
        d.server.as_ref().unwrap().base.clone(),
    ));
    assert_fails(&keyless.run(&["keys", "list"]), 3, "TOLLGATE_ADMIN_KEY");
    keyless.env.push((
        "TOLLGATE_ADMIN_KEY".into(),
        "sk-admin-forged0123456789".into(),
    ));
    assert_fails(&keyless.run(&["keys", "list"]), 3, "Incorrect API key");
    let mut dead = Deployment::new();
    dead.env
        .push(("TOLLGATE_URL".into(), "http://127.0.0.1:9".into()));
    dead.env
        .push(("TOLLGATE_ADMIN_KEY".into(), "sk-admin-x".into()));
    assert_fails(&dead.run(&["projects", "list"]), 3, "cannot reach Tollgate");
    assert_fails(
        &d.run(&["keys", "show", "key_00000000000000000000"]),
        4,
        "was not found",
    );
    assert_fails(&d.run(&["dev", "seed-keys", "5"]), 2, "local database only");

    // An admin key made remotely keeps its IP allow-list; a scoped one is refused as locally.
    let fenced = d
        .run(&[
            "keys",
            "create",
            "--name",
            "ops",
            "--admin",
            "--allow-ip",
            "10.1.2.3/32",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(fenced["kind"], "admin");
    assert_eq!(fenced["allowed_ips"], serde_json::json!(["10.1.2.3/32"]));
    assert_fails(
        &d.run(&[
            "keys",
            "create",
            "--name",
            "x",
            "--admin",
            "--permissions",
            "restricted",
            "--scope",
            "models:read",
        ]),
        2,
        "admin keys are owners",
    );
    // Projects are named as people name them, whatever the characters.
    for name in ["a/b", "..", "50%", "what? #1"] {
        d.run(&["projects", "create", name]).ok();
        let project = d
            .run(&["projects", "allow-models", name, "gpt-4o", "--json"])
            .ok()
            .json();
        assert_eq!(project["name"], name);
        assert_eq!(project["allowed_models"], serde_json::json!(["gpt-4o"]));
        let archived = d.run(&["projects", "archive", name, "--json"]).ok().json();
        assert_eq!(archived["name"], name);
        assert_eq!(archived["status"], "archived");
    }
    assert_fails(
        &d.run(&["projects", "archive", "no such"]),
        4,
        "was not found",
    );
}

/// Creates, lists, shows, renames, rotates, revokes and expires keys, projects and service
/// accounts with the CLI, checking what it prints.
fn key_lifecycle(d: &Deployment) {
    let text = d
        .run(&["keys", "create", "--name", "Project Alpha Dev"])
        .ok();
    assert!(
        text.stdout
            .contains("Store this key somewhere safe now: it is shown only once"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("sk-proj-"));

    let env = d
        .run(&["keys", "create", "--name", "CI", "--format", "env"])
        .ok();
    let ci_secret = secret_from_env_line(&env);

    let project = d
        .run(&["projects", "create", "Mobile", "--json"])
        .ok()
        .json();
    assert_eq!(project["object"], "organization.project");
    let account = d
        .run(&[
            "service-accounts",
            "create",
            "ios-backend",
            "--project",
            "Mobile",
            "--json",
        ])
        .ok()
        .json();
    let account_id = account["id"].as_str().unwrap();
    let bot = d
        .run(&[
            "keys",
            "create",
            "--name",
            "ios",
            "--service-account",
            account_id,
            "--expires-in",
            "30d",
            "--json",
        ])
        .ok()
        .json();
    assert!(bot["value"].as_str().unwrap().starts_with("sk-svcacct-"));
    assert_eq!(bot["project_id"], project["id"]);
    assert!(
        bot["expires_at"].as_i64().unwrap() > bot["created_at"].as_i64().unwrap() + 29 * 86_400
    );
    let restricted = d
        .run(&[
            "keys",
            "create",
            "--name",
            "embedder",
            "--permissions",
            "restricted",
            "--scope",
            "embeddings:write",
            "--scope",
            "models:read",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        restricted["permissions"],
        "restricted(models:read,embeddings:write)"
    );

    let fenced = d
        .run(&[
            "keys",
            "create",
            "--name",
            "office only",
            "--allow-ip",
            "203.0.113.0/24",
            "--allow-ip",
            "2001:db8::/32",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        fenced["allowed_ips"],
        serde_json::json!(["203.0.113.0/24", "2001:db8::/32"])
    );
    let bad_range = d.run(&["keys", "create", "--name", "x", "--allow-ip", "10.0.0.0/33"]);
    assert_eq!(bad_range.code, 2);
    assert!(
        bad_range
            .stderr
            .contains("is not an IP address or CIDR range"),
        "{}",
        bad_range.stderr
    );
    let fenced_project = d
        .run(&["projects", "allow-ips", "Mobile", "10.0.0.0/8", "--json"])
        .ok()
        .json();
    assert_eq!(
        fenced_project["allowed_ips"],
        serde_json::json!(["10.0.0.0/8"])
    );
    d.run(&["keys", "revoke", fenced["id"].as_str().unwrap()])
        .ok();
    let models_only = d
        .run(&[
            "keys",
            "create",
            "--name",
            "minis",
            "--model",
            "gpt-4o-mini",
            "--model",
            "gpt-4.1*",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(
        models_only["allowed_models"],
        serde_json::json!(["gpt-4o-mini", "gpt-4.1*"])
    );
    d.run(&["keys", "revoke", models_only["id"].as_str().unwrap()])
        .ok();
    let project_models = d
        .run(&["projects", "allow-models", "Mobile", "gpt-4o*", "--json"])
        .ok()
        .json();
    assert_eq!(
        project_models["allowed_models"],
        serde_json::json!(["gpt-4o*"])
    );
    let listed = d.run(&["keys", "list", "--json"]).ok().json();
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "minis",
            "office only",
            "embedder",
            "ios",
            "CI",
            "Project Alpha Dev",
            "Initial admin key"
        ]
    );
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("value").is_none()),
        "listing never shows secrets"
    );
    let mobile_only = d
        .run(&["keys", "list", "--project", "Mobile", "--json"])
        .ok()
        .json();
    assert_eq!(mobile_only["data"].as_array().unwrap().len(), 1);

    let ci = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "CI")
        .unwrap();
    let ci_id = ci["id"].as_str().unwrap();
    assert_eq!(
        ci["redacted_value"].as_str().unwrap(),
        format!("sk-proj-...{}", &ci_secret[ci_secret.len() - 4..])
    );

    d.run(&["keys", "rename", ci_id, "CI pipeline"]).ok();
    let rotated = d
        .run(&["keys", "rotate", ci_id, "--grace", "24h", "--json"])
        .ok()
        .json();
    assert_eq!(rotated["rotated_from"], ci_id);
    assert_eq!(rotated["name"], "CI pipeline");
    let shown = d.run(&["keys", "show", ci_id, "--json"]).ok().json();
    assert_eq!(shown["key"]["rotated_to"], rotated["id"]);
    let grace_end = shown["key"]["expires_at"].as_i64().unwrap();
    assert!(
        (grace_end - shown["key"]["created_at"].as_i64().unwrap() - 86_400).abs() < 60,
        "24 h of grace"
    );
    let events: Vec<&str> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["api_key.rotated", "api_key.updated", "api_key.created"]
    );
    // Changes are the person's at the terminal, or in remote mode the admin key's.
    let actor = if d.is_remote() {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kind"] == "admin")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    } else {
        "tester".to_owned()
    };
    assert!(shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"]["id"] == actor.as_str()));

    let revoked = d
        .run(&["keys", "revoke", rotated["id"].as_str().unwrap()])
        .ok();
    assert!(revoked.stdout.contains("Revoked"));
    let again = d
        .run(&["keys", "revoke", rotated["id"].as_str().unwrap()])
        .ok();
    assert!(again.stdout.contains("already revoked"));
    let expired = d
        .run(&["keys", "expire", bot["id"].as_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(expired["status"], "expired");

    let table = d.run(&["keys", "list"]).ok().stdout;
    assert!(table.lines().next().unwrap().starts_with("ID "));
    assert!(
        table.contains("revoked")
            && table.contains("expired")
            && table.contains("(rotated to key_"),
        "{table}"
    );
    let usage = d.run(&["usage", "--by", "model"]).ok();
    assert!(
        usage.stdout.starts_with("No usage between"),
        "{}",
        usage.stdout
    );
    let usage = d.run(&["usage", "--json"]).ok().json();
    assert_eq!(usage["data"], serde_json::json!([]));
    let audit = d.run(&["audit", "--json", "--limit", "100"]).ok().json();
    assert!(audit["data"].as_array().unwrap().len() >= 12);
}

/// What users and scripts do: `eval "$(tollgate keys create --format env)"`, then a request at
/// once. No wait, a hundred times in a row.
#[tokio::test]
async fn a_key_created_with_the_cli_works_at_once_every_time() {
    let d = Deployment::new();
    let server = d.serve(&["--demo"]);
    let client = reqwest::Client::new();
    let mut refused = Vec::new();
    for n in 0..100 {
        let name = format!("ci-{n}");
        let key = secret_from_env_line(
            &d.run(&["keys", "create", "--name", &name, "--format", "env"])
                .ok(),
        );
        let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        let status = client
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(&key)
            .json(&chat)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status != 200 {
            refused.push((n, status));
        }
    }
    assert!(
        refused.is_empty(),
        "refused right after creation: {refused:?}"
    );
    assert_eq!(server.stop().code, 0);
}

/// The database holds password hashes, client addresses and the audit log: its files are the
/// owner's alone, and an existing file others can read is reported at start.
#[cfg(unix)]
#[tokio::test]
async fn database_files_are_private_and_loose_ones_are_reported() {
    use std::os::unix::fs::PermissionsExt;
    if support::sqlite_only("it reads the SQLite database's own files") {
        return;
    }
    let d = Deployment::new();
    let server = d.serve(&[]);
    let key = secret_from_env_line(
        &d.run(&["keys", "create", "--name", "app", "--format", "env"])
            .ok(),
    );
    assert_eq!(models(&server.base, &key).await.0, 200);
    let mode = |name: &str| {
        std::fs::metadata(d.path(name))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for name in [
        "tollgate.db",
        "tollgate.db-wal",
        "tollgate.db-shm",
        "tollgate.secret",
    ] {
        assert_eq!(mode(name), 0o600, "{name} has mode {:o}", mode(name));
    }
    assert_eq!(server.stop().code, 0);
    std::fs::set_permissions(
        d.path("tollgate.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let server = d.serve(&[]);
    let stopped = server.stop();
    assert!(
        stopped
            .stderr
            .contains("can be read by other users (mode 644)")
            && stopped.stderr.contains("chmod 600"),
        "{}",
        stopped.stderr
    );
}

#[tokio::test]
async fn a_revoke_from_the_cli_reaches_a_running_server_within_one_second() {
    let d = Deployment::new();
    let server = d.serve(&[]);
    let key = secret_from_env_line(
        &d.run(&["keys", "create", "--name", "app", "--format", "env"])
            .ok(),
    );
    let id = d
        .run(&["keys", "list", "--kind", "project", "--json"])
        .ok()
        .json()["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(
        models(&server.base, &key).await.0,
        200,
        "a new key works at once"
    );

    d.run(&["keys", "revoke", &id]).ok();
    let revoked_at = Instant::now();
    loop {
        let (status, body) = models(&server.base, &key).await;
        if status == 401 {
            assert_eq!(body["error"]["code"], "invalid_api_key");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted {:?} after the revoke",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("revoke took effect after {:?}", revoked_at.elapsed());
    assert_eq!(server.stop().code, 0);
}

#[tokio::test]
async fn configuration_layers_file_then_environment_then_flags() {
    let mut d = Deployment::new();
    std::fs::write(
        d.path("tollgate.toml"),
        "listen = \"127.0.0.1:1\"\n[[providers]]\nname = \"local\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"llama-3.1-8b\", \"qwen2.5\"]\n",
    )
    .unwrap();
    // The flag (127.0.0.1:0 from serve()) beats the environment, which beats the file.
    d.env.push(("TOLLGATE_LISTEN".into(), "127.0.0.1:2".into()));
    let server = d.serve(&[]);
    let admin = banner_value(&server.stdout(), "Admin key");
    assert!(admin.starts_with("sk-admin-"));
    let key = secret_from_env_line(
        &d.run(&["keys", "create", "--name", "m", "--format", "env"])
            .ok(),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (status, body) = models(&server.base, &key).await;
        if status == 200 {
            break body;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["llama-3.1-8b", "qwen2.5"]);
    assert_eq!(body["data"][0]["owned_by"], "local");
    server.stop();

    std::fs::write(
        d.path("tollgate.toml"),
        "listen = \"127.0.0.1:1\"\nlisten_port = 3\n",
    )
    .unwrap();
    let bad = d.run(&["keys", "list"]);
    assert_eq!(bad.code, 3);
    assert!(
        bad.stderr.contains("unknown field `listen_port`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn serve_help_documents_every_option() {
    let d = Deployment::new();
    let help = d.run(&["serve", "--help"]).ok().stdout;
    for option in [
        "--listen",
        "--database-url",
        "--config",
        "--secret-file",
        "--log-level",
        "--log-format",
        "--owner-email",
        "--key-prefix",
        "--json",
        "TOLLGATE_LISTEN",
        "TOLLGATE_DATABASE_URL",
        "TOLLGATE_CONFIG",
        "TOLLGATE_SECRET",
        "TOLLGATE_LOG",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ] {
        assert!(
            help.contains(option),
            "serve --help does not mention {option}:\n{help}"
        );
    }
}

/// Asserts a failed run: exit code, a message fragment, and no panic or backtrace.

#[test]
fn bad_input_gets_clear_messages_exit_codes_and_loses_nothing() {
    if support::sqlite_only("it copies and corrupts the SQLite database's file") {
        return;
    }
    let d = Deployment::new();
    assert_fails(&d.run(&["keys", "list"]), 3, "has not been set up yet");
    d.run(&["init"]).ok();
    let key = d
        .run(&["keys", "create", "--name", "k", "--json"])
        .ok()
        .json();
    let key_id = key["id"].as_str().unwrap();
    let secret = key["value"].as_str().unwrap();
    d.run(&["projects", "create", "Mobile"]).ok();
    let before = d.run(&["keys", "list", "--json"]).ok().stdout;

    assert_fails(
        &d.run(&["keys", "create", "--name", "x", "--project", "Nope"]),
        4,
        "project Nope was not found",
    );
    assert_fails(
        &d.run(&["projects", "create", "Mobile"]),
        5,
        "a project named \"Mobile\" already exists",
    );
    assert_fails(
        &d.run(&["projects", "archive", "Default project"]),
        5,
        "cannot be archived",
    );
    assert_fails(
        &d.run(&["keys", "show", "key_nope"]),
        2,
        "not a valid API key id",
    );
    assert_fails(
        &d.run(&["keys", "show", "key_00000000000000000000"]),
        4,
        "was not found",
    );
    let pasted = d.run(&["keys", "revoke", secret]);
    assert_fails(&pasted, 2, "never the secret key");
    assert!(
        !pasted.stderr.contains(&secret[8..secret.len() - 4]),
        "the secret is not echoed"
    );
    assert_fails(
        &d.run(&["keys", "rotate", key_id, "--grace", "2w"]),
        2,
        "is not a duration",
    );
    assert_fails(
        &d.run(&["keys", "rotate", key_id, "--grace", "60d"]),
        2,
        "too long",
    );
    assert_fails(
        &d.run(&[
            "keys",
            "create",
            "--name",
            "x",
            "--permissions",
            "restricted",
            "--scope",
            "chat:write",
        ]),
        2,
        "is not a scope",
    );
    assert_fails(
        &d.run(&["keys", "create", "--name", " "]),
        2,
        "a key name must have 1 to 128 characters",
    );
    assert_fails(
        &d.run(&["usage", "--since", "2026-02-30"]),
        2,
        "is not a date",
    );
    assert_eq!(
        d.run(&["keys", "frobnicate"]).code,
        2,
        "clap's usage errors exit 2"
    );

    d.run(&["keys", "revoke", key_id]).ok();
    assert_fails(
        &d.run(&["keys", "rotate", key_id, "--grace", "1h"]),
        5,
        "is revoked",
    );
    let after_revoke = d.run(&["keys", "list", "--json"]).ok().json();
    let before: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(
        after_revoke["data"].as_array().unwrap().len(),
        before["data"].as_array().unwrap().len(),
        "failed commands wrote no keys"
    );

    // The server secret: wrong, missing, readable by others.
    let mut wrong = Deployment::new();
    wrong.env.clear();
    std::fs::copy(d.path("tollgate.db"), wrong.path("tollgate.db")).unwrap();
    wrong.env.push((
        "TOLLGATE_SECRET".into(),
        "a-different-secret-of-at-least-32-bytes".into(),
    ));
    assert_fails(
        &wrong.run(&["keys", "list"]),
        3,
        "does not match the one this database was set up with",
    );
    wrong.env.clear();
    assert_fails(
        &wrong.run(&["keys", "list"]),
        3,
        "is missing, but the database was set up with one",
    );
    assert_fails(
        &wrong.run(&["serve", "--listen", "127.0.0.1:0"]),
        3,
        "is missing",
    );
    std::fs::copy(d.path("tollgate.secret"), wrong.path("tollgate.secret")).unwrap();
    std::fs::set_permissions(
        wrong.path("tollgate.secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    assert_fails(&wrong.run(&["keys", "list"]), 3, "chmod 600");
    std::fs::set_permissions(
        wrong.path("tollgate.secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        wrong.run(&["keys", "list", "--json"]).ok().stdout,
        d.run(&["keys", "list", "--json"]).ok().stdout
    );

    // The prefix is fixed at set-up.
    assert_fails(
        &d.run(&["serve", "--key-prefix", "acme"]),
        3,
        "the prefix cannot change after set-up",
    );

    // Damaged, foreign and unwritable databases.
    std::fs::write(d.path("corrupt.db"), "definitely not sqlite ".repeat(100)).unwrap();
    assert_fails(
        &d.run(&["--database-url", "corrupt.db", "keys", "list"]),
        3,
        "is not a SQLite database or is damaged",
    );
    assert_eq!(
        std::fs::read_to_string(d.path("corrupt.db")).unwrap(),
        "definitely not sqlite ".repeat(100)
    );
    assert_fails(
        &d.run(&["--database-url", "missing/dir/t.db", "init"]),
        3,
        "does not exist",
    );
    // A PostgreSQL URL whose database, or server, is not there: what is wrong, where, and
    // never the password.
    let missing = "postgres://postgres:pw-never-shown@127.0.0.1:5432/tollgate_no_such_database";
    let out = d.run(&["--database-url", missing, "keys", "list"]);
    assert_fails(&out, 3, "tollgate_no_such_database\" does not exist");
    assert!(!out.stderr.contains("pw-never-shown"), "{}", out.stderr);
    assert_fails(
        &d.run(&[
            "--database-url",
            "postgres://u:pw@127.0.0.1:1/x",
            "keys",
            "list",
        ]),
        3,
        "postgres://u:*****@127.0.0.1:1/x",
    );

    let locked = Deployment::new();
    std::fs::create_dir(locked.path("ro")).unwrap();
    std::fs::copy(d.path("tollgate.db"), locked.path("ro/tollgate.db")).unwrap();
    std::fs::copy(d.path("tollgate.secret"), locked.path("ro/tollgate.secret")).unwrap();
    for (path, mode) in [
        ("", 0o755),
        ("ro", 0o755),
        ("ro/tollgate.db", 0o644),
        ("ro/tollgate.secret", 0o644),
    ] {
        std::fs::set_permissions(
            locked.path(path),
            std::os::unix::fs::PermissionsExt::from_mode(mode),
        )
        .unwrap();
    }
    let as_nobody = locked.run_as_nobody(&[
        "--database-url",
        "ro/tollgate.db",
        "--secret-file",
        "ro/tollgate.secret",
        "keys",
        "create",
        "--name",
        "x",
    ]);
    assert_fails(&as_nobody, 3, "cannot be opened for writing");

    // A port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_fails(
        &d.run(&["serve", "--listen", &format!("127.0.0.1:{port}")]),
        3,
        "could not listen",
    );
    assert_fails(&d.run(&["serve", "--listen", "localhost"]), 3, "IP:PORT");
}

#[tokio::test]
async fn no_secret_appears_in_the_database_files_logs_or_other_output() {
    if support::sqlite_only("it scans the SQLite database's files for secrets") {
        return;
    }
    let mut d = Deployment::new();
    d.env.push(("TOLLGATE_LOG".into(), "debug".into()));
    let server = d.serve(&[]);
    let banner = server.stdout();
    let admin_key = banner_value(&banner, "Admin key");
    let password = banner_value(&banner, "Sign in")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();

    let mut secrets = vec![admin_key.clone(), password.clone()];
    secrets.push(secret_from_env_line(
        &d.run(&["keys", "create", "--name", "env", "--format", "env"])
            .ok(),
    ));
    let json = d
        .run(&["keys", "create", "--name", "json", "--json"])
        .ok()
        .json();
    secrets.push(json["value"].as_str().unwrap().to_owned());
    let text = d.run(&["keys", "create", "--name", "text"]).ok();
    secrets.push(
        text.stdout
            .split_whitespace()
            .find(|w| w.starts_with("sk-proj-"))
            .unwrap()
            .to_owned(),
    );
    let rotated = d
        .run(&[
            "keys",
            "rotate",
            json["id"].as_str().unwrap(),
            "--grace",
            "1h",
            "--format",
            "env",
        ])
        .ok();
    secrets.push(secret_from_env_line(&rotated));

    // Use every key against the server, plus typos of them, so the logs have every chance to leak.
    for secret in &secrets[2..] {
        let (status, body) = models(&server.base, secret).await;
        assert_eq!(status, 200, "{body}");
        // The last character changed (to one it is not: a key ending in `x` stays a typo).
        let last = if secret.ends_with('x') { 'y' } else { 'x' };
        let typo = format!("{}{last}", &secret[..secret.len() - 1]);
        assert_eq!(models(&server.base, &typo).await.0, 401);
    }
    // Secrets pasted where an id goes, on the admin API and elsewhere: neither the answer nor
    // the request log may carry them.
    let admin_key = banner_value(&banner, "Admin key");
    for secret in &secrets[2..] {
        for (method, path) in [
            ("GET", format!("/v1/organization/x-tollgate/keys/{secret}")),
            (
                "POST",
                format!("/v1/organization/x-tollgate/keys/{secret}/revoke"),
            ),
            ("PUT", format!("/v1/organization/x-tollgate/keys/{secret}")),
            ("GET", format!("/v1/nothing/{secret}")),
            (
                "GET",
                format!("/v1/organization/x-tollgate/projects/{secret}"),
            ),
            (
                "GET",
                format!("/v1/organization/x-tollgate/keys?after={secret}"),
            ),
            (
                "GET",
                format!("/v1/organization/x-tollgate/service_accounts?project={secret}"),
            ),
        ] {
            let response = reqwest::Client::new()
                .request(method.parse().unwrap(), format!("{}{path}", server.base))
                .bearer_auth(&admin_key)
                .send()
                .await
                .unwrap();
            let body = response.text().await.unwrap();
            assert!(!body.contains(&secret[12..]), "{method} {path}: {body}");
        }
    }
    d.run(&["keys", "revoke", json["id"].as_str().unwrap()])
        .ok();
    assert_eq!(
        models_status_becomes(&server.base, &secrets[3], 401).await,
        401
    );
    d.run(&["keys", "list"]).ok();
    d.run(&["audit"]).ok();
    let stopped = server.stop();
    assert_eq!(stopped.code, 0);
    assert!(stopped.stderr.contains("DEBUG"), "debug logging was on");

    let server_secret = std::fs::read_to_string(d.path("tollgate.secret"))
        .unwrap()
        .trim()
        .to_owned();
    let files = files_under(d.dir.path());
    assert!(files.iter().any(|(p, _)| p.ends_with("tollgate.db")));
    let runs = d.all_runs();
    for secret in secrets.iter().chain([&server_secret]) {
        for (path, bytes) in &files {
            if path.ends_with("tollgate.secret") && secret == &server_secret {
                continue;
            }
            assert!(
                !contains(bytes, secret),
                "a secret is stored in plain text in {}",
                path.display()
            );
            assert!(
                !contains(bytes, &secret[secret.len() / 2..]),
                "half a secret is stored in {}",
                path.display()
            );
        }
        for run in &runs {
            assert!(
                !run.stderr.contains(secret.as_str()),
                "a secret reached the logs of `tollgate {}`",
                run.args.join(" ")
            );
        }
        // Shown exactly once: by the one command that created it (the server secret: never).
        let shown = runs
            .iter()
            .filter(|r| r.stdout.contains(secret.as_str()))
            .count();
        let expected = usize::from(secret != &server_secret);
        assert_eq!(shown, expected, "a secret was printed {shown} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_streams_in_flight_finish_and_loses_no_usage_event() {
    let d = Deployment::new();
    std::fs::write(
        d.path("tollgate.toml"),
        "[[providers]]\nname = \"sim\"\ntype = \"mock\"\nstream_delay_ms = 25\nmodels = [\"gpt-4o-mini\"]\n",
    )
    .unwrap();
    let server = d.serve(&[]);
    let created = d
        .run(&["keys", "create", "--name", "streams", "--json"])
        .ok()
        .json();
    let key = created["value"].as_str().unwrap().to_owned();
    let body = serde_json::json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "a long answer"}]});
    let mut clients = Vec::new();
    let (started_tx, mut started) = tokio::sync::mpsc::channel::<()>(10);
    for _ in 0..10 {
        let request = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(&key)
            .json(&body);
        let started_tx = started_tx.clone();
        clients.push(tokio::spawn(async move {
            let mut response = request.send().await.unwrap();
            let first = response.chunk().await.unwrap().unwrap_or_default();
            let mut text = String::from_utf8_lossy(&first).into_owned();
            started_tx.send(()).await.unwrap();
            while let Some(chunk) = response.chunk().await.unwrap() {
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
            text
        }));
    }
    // SIGTERM once every stream has begun (each takes ~30 words x 25 ms to finish).
    for _ in 0..10 {
        started.recv().await.unwrap();
    }
    let stopped = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    for client in clients {
        assert!(
            client.await.unwrap().ends_with("data: [DONE]\n\n"),
            "every stream ran to its end"
        );
    }
    let report = d.run(&["usage", "--by", "key", "--json"]).ok().json();
    let row = report["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == created["id"])
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        row["requests"], 10,
        "all ten streams were metered: {report}"
    );
    assert!(row["output_tokens"].as_i64().unwrap() > 10 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_answered_request_s_usage_event() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let d = Deployment::new();
    std::fs::write(
        d.path("tollgate.toml"),
        "[[providers]]\nname = \"sim\"\ntype = \"mock\"\nstream_delay_ms = 0\nmodels = [\"gpt-4o-mini\"]\n",
    )
    .unwrap();
    let server = d.serve(&[]);
    let key = d
        .run(&["keys", "create", "--name", "load", "--json"])
        .ok()
        .json()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    // 32 clients: half plain requests, half streams read to `[DONE]` and hung up on, as the
    // SDKs do. Each records the request id of every answer it got in full.
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    const ENOUGH: usize = 1_000;
    let mut clients = Vec::new();
    for n in 0..32 {
        let (answered, count, enough) = (answered.clone(), count.clone(), enough.clone());
        let url = format!("{}/v1/chat/completions", server.base);
        let key = key.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let stream = n % 2 == 1;
            let body = serde_json::json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hello there"}]});
            loop {
                let Ok(mut response) = client.post(&url).bearer_auth(&key).json(&body).send().await
                else {
                    return;
                };
                let id = response
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let ok = response.status() == 200;
                let mut text = String::new();
                let complete = loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) => {
                            text.push_str(&String::from_utf8_lossy(&chunk));
                            if stream && text.contains("data: [DONE]") {
                                break true;
                            }
                        }
                        Ok(None) => break !stream || text.contains("data: [DONE]"),
                        Err(_) => break false,
                    }
                };
                if !(ok && complete) {
                    return;
                }
                answered.lock().unwrap().push(id);
                if count.fetch_add(1, Ordering::SeqCst) + 1 == ENOUGH {
                    enough.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(60), enough.notified())
        .await
        .expect("the load never reached 1,000 answers");
    tokio::task::spawn_blocking(move || server.kill())
        .await
        .unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= ENOUGH);

    // The next start stores what the dead process spooled before it listens.
    let restarted = d.serve(&[]);
    let events = d
        .run(&["usage", "--events", "--limit", "100000", "--json"])
        .ok()
        .json();
    let stored: std::collections::HashSet<String> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["request_id"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = answered.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no usage event after kill -9 (first: {:?})",
        missing.len(),
        answered.len(),
        missing.first()
    );
    let stopped = tokio::task::spawn_blocking(move || restarted.stop())
        .await
        .unwrap();
    assert!(
        stopped
            .stderr
            .contains("stored the usage events a previous process left"),
        "the restart replayed nothing (were all events stored before the kill?): {}",
        stopped.stderr
    );
}

/// Signs in to the console; the status and whether a session cookie came back.
async fn console_sign_in(base: &str, email: &str, password: &str) -> (u16, bool) {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{base}/console/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers().get_all("set-cookie").iter().any(|c| {
        c.to_str()
            .unwrap_or("")
            .starts_with("tollgate_session=tgs_")
    });
    (response.status().as_u16(), cookie)
}

#[tokio::test]
async fn a_forgotten_password_is_reset_on_the_server() {
    let d = Deployment::new();
    let server = d.serve(&[]);
    let banner = server.stdout();
    let old = banner_value(&banner, "Sign in")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        console_sign_in(&server.base, "owner@localhost", &old).await,
        (303, true)
    );
    let listed = d.run(&["users", "list", "--json"]).ok().json();
    assert_eq!(listed["data"][0]["email"], "owner@localhost");
    assert_eq!(listed["data"][0]["role"], "owner");
    let reset = d
        .run(&["users", "reset-password", "OWNER@localhost", "--json"])
        .ok()
        .json();
    let new = reset["password"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        console_sign_in(&server.base, "owner@localhost", &old).await,
        (401, false)
    );
    assert_eq!(
        console_sign_in(&server.base, "owner@localhost", &new).await,
        (303, true)
    );
    let unknown = d.run(&["users", "reset-password", "nobody@example.com"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("nobody@example.com"),
        "{}",
        unknown.stderr
    );
    let remote = d.run(&["--url", &server.base, "users", "list"]);
    assert_ne!(remote.code, 0);
}
