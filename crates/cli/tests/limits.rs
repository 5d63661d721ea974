//! Rate limits and budgets from the command line: `keys create --rpm --tpm --budget`,
//! `tollgate limits ...` and `tollgate budgets ...`, enforced by a running `tollgate serve`, and
//! `limits show` reporting what is used.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{assert_fails, Deployment};

async fn chat(base: &str, key: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn limits_and_budgets_set_from_the_cli_bind_a_running_server_and_show_their_use() {
    let d = Deployment::new();
    let server = d.serve(&["--demo"]);
    limits_and_budgets(&d, &server.base).await;
}

#[tokio::test]
async fn limits_and_budgets_set_in_remote_mode_bind_the_server_and_show_their_use() {
    let d = Deployment::remote_with(&["--demo"]);
    let base = d.server.as_ref().unwrap().base.clone();
    limits_and_budgets(&d, &base).await;
}

async fn limits_and_budgets(d: &Deployment, base: &str) {
    let created = d
        .run(&[
            "keys", "create", "--name", "limited", "--rpm", "2", "--tpm", "100000", "--budget",
            "5", "--alert", "50", "--alert", "80%", "--json",
        ])
        .ok()
        .json();
    let key_id = created["id"].as_str().unwrap().to_owned();
    let secret = created["value"].as_str().unwrap().to_owned();

    let rules = d.run(&["limits", "list", "--json"]).ok().json();
    assert_eq!(
        rules["data"],
        json!([{"object": "x-tollgate.rate_limit", "level": "key", "holder": key_id, "model": "*", "limits": {"rpm": 2, "tpm": 100000}}])
    );
    let budgets = d.run(&["budgets", "list", "--json"]).ok().json();
    assert_eq!(budgets["data"][0]["holder"], key_id.as_str());
    assert_eq!(budgets["data"][0]["limit_usd"], "$5.00");
    assert_eq!(
        budgets["data"][0]["period"], "month",
        "a budget is monthly unless told"
    );
    assert_eq!(budgets["data"][0]["alerts_percent"], json!([50.0, 80.0]));

    // The server picks the key and its limits up from the change log.
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(base, &secret).await.0 == 401 {
        assert!(
            Instant::now() < deadline,
            "the key never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (second, _) = chat(base, &secret).await;
    assert_eq!(second, 200);
    let (third, body) = chat(base, &secret).await;
    assert_eq!(third, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    // `limits show` reads use from the metered requests (written within 50 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shown = d
        .run(&["limits", "show", "--key", &key_id, "--json"])
        .ok()
        .json();
    let rpm = shown["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metric"] == "rpm")
        .unwrap()
        .clone();
    assert_eq!(rpm["limit"], 2);
    assert_eq!(rpm["used"], 2);
    assert_eq!(rpm["remaining"], 0);
    assert_eq!(rpm["reset_secs"], 60);
    let tpm = shown["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metric"] == "tpm")
        .unwrap()
        .clone();
    assert!(tpm["used"].as_u64().unwrap() > 0);
    assert_eq!(shown["budgets"][0]["limit_usd"], "$5.00");
    assert_ne!(
        shown["budgets"][0]["spent_usd"], "$0.00",
        "the two requests cost something"
    );
    let text = d.run(&["limits", "show", "--key", &key_id]).ok().stdout;
    for column in ["LIMIT", "USED", "REMAINING", "RESET", "rpm", "$5.00"] {
        assert!(text.contains(column), "{column} missing from:\n{text}");
    }

    // Organization and project levels, model patterns, periods and time zones.
    let set = d
        .run(&[
            "limits",
            "set",
            "--org",
            "--model",
            "gpt-4o*",
            "--rpd",
            "1000",
            "--concurrency",
            "8",
        ])
        .ok();
    assert!(
        set.stdout
            .contains("on model gpt-4o*: rpd 1000, concurrency 8"),
        "{}",
        set.stdout
    );
    d.run(&[
        "limits",
        "set",
        "--project",
        "Default project",
        "--tpd",
        "1000000",
    ])
    .ok();
    let budget = d
        .run(&[
            "budgets",
            "set",
            "--org",
            "--amount",
            "250.50",
            "--period",
            "week",
            "--timezone",
            "+05:30",
            "--alert",
            "90",
        ])
        .ok();
    assert!(
        budget
            .stdout
            .contains("$250.50 per week (+05:30), alerts at 90%"),
        "{}",
        budget.stdout
    );
    let shown = d
        .run(&["limits", "show", "--key", &key_id, "--json"])
        .ok()
        .json();
    let levels: Vec<&str> = shown["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert!(
        levels.contains(&"organization") && levels.contains(&"project") && levels.contains(&"key"),
        "{levels:?}"
    );
    assert_eq!(
        shown["budgets"].as_array().unwrap().len(),
        2,
        "the organization's and the key's"
    );

    // Removing the key's limits lifts them on the running server.
    d.run(&["limits", "remove", "--key", &key_id]).ok();
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat(base, &secret).await.0 != 200 {
        assert!(Instant::now() < deadline, "the removed limit still applies");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.run(&["budgets", "remove", "--key", &key_id]).ok();
    let audit = d.run(&["audit", "--json"]).ok().json();
    let events: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for event in [
        "rate_limit.updated",
        "rate_limit.deleted",
        "budget.updated",
        "budget.deleted",
    ] {
        assert!(events.contains(&event), "{event} not audited: {events:?}");
    }
}

#[test]
fn bad_limits_and_budgets_get_clear_messages() {
    let d = Deployment::new();
    d.run(&["init"]).ok();
    bad_limits_and_budgets(&d);
}

#[test]
fn bad_limits_and_budgets_get_the_same_messages_in_remote_mode() {
    bad_limits_and_budgets(&Deployment::remote());
}

fn bad_limits_and_budgets(d: &Deployment) {
    assert_fails(
        &d.run(&["limits", "set", "--org"]),
        2,
        "give at least one limit",
    );
    assert_fails(&d.run(&["limits", "set", "--rpm", "5"]), 2, "--org");
    assert_fails(
        &d.run(&["limits", "set", "--org", "--project", "x", "--rpm", "5"]),
        2,
        "cannot be used with",
    );
    assert_fails(
        &d.run(&["limits", "set", "--org", "--rpm", "many"]),
        2,
        "invalid value 'many'",
    );
    assert_fails(
        &d.run(&["limits", "set", "--project", "nope", "--rpm", "5"]),
        4,
        "nope",
    );
    assert_fails(
        &d.run(&[
            "limits",
            "set",
            "--key",
            "sk-proj-pasted-secret-by-mistake",
            "--rpm",
            "5",
        ]),
        2,
        "is not an API key id",
    );
    assert_fails(
        &d.run(&["limits", "remove", "--org", "--model", "o3*"]),
        2,
        "has no limits for model `o3*`",
    );
    assert_fails(
        &d.run(&["budgets", "set", "--org", "--amount", "ten"]),
        2,
        "is not an amount in dollars",
    );
    assert_fails(
        &d.run(&[
            "budgets", "set", "--org", "--amount", "5", "--period", "year",
        ]),
        2,
        "use day, week or month",
    );
    assert_fails(
        &d.run(&[
            "budgets",
            "set",
            "--org",
            "--amount",
            "5",
            "--timezone",
            "Europe/Paris",
        ]),
        2,
        "fixed offset such as +05:30",
    );
    assert_fails(
        &d.run(&["budgets", "set", "--org", "--amount", "5", "--alert", "0"]),
        2,
        "is not an alert percentage",
    );
    assert_fails(&d.run(&["budgets", "remove", "--org"]), 2, "has no budget");
    assert_fails(
        &d.run(&["keys", "create", "--name", "x", "--budget=-3"]),
        2,
        "is not an amount in dollars",
    );
    let listed = d.run(&["limits", "list", "--json"]).ok().json();
    assert_eq!(listed["data"], json!([]), "nothing bad was stored");
}
