//! `tollgate scan` and `tollgate hook` through the real binary: keys planted in a fixture tree,
//! in staged changes and in old commits (on another branch too), near misses that must not
//! match, the three output formats (SARIF validated against its 2.1.0 schema), exit codes,
//! `--revoke` on the local database and through a server's admin API, and the pre-commit hook
//! stopping a real `git commit`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use std::path::Path;
use std::process::Command;
use support::{assert_fails, Deployment, BIN};

/// A key that passes every check but was never issued (another deployment's, say).
fn unissued_key() -> String {
    tollgate_core::KeyFormat::default()
        .generate(tollgate_core::KeyKind::Project)
        .expose()
        .to_owned()
}

/// `key` with one character of its checksum changed: a typo, not a key.
fn near_miss(key: &str) -> String {
    let mid = key.len() - 3;
    let swapped = if &key[mid..=mid] == "a" { "b" } else { "a" };
    format!("{}{swapped}{}", &key[..mid], &key[mid + 1..])
}

const OPENAI_LEGACY: &str = "sk-abcdefghij0123456789T3BlbkFJabcdefghij0123456789";
const AWS: &str = "AKIAIOSFODNN7EXAMPLE";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The secrets printed anywhere by the deployment's commands (but the one that made a key and
/// shows it once): none may be whole.
fn assert_never_printed(d: &Deployment, secrets: &[&str]) {
    for run in d.all_runs() {
        if run
            .args
            .starts_with(&["keys".to_owned(), "create".to_owned()])
        {
            continue;
        }
        for secret in secrets {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "`tollgate {}` printed a secret whole",
                run.args.join(" ")
            );
        }
    }
}

#[test]
fn a_tree_s_keys_are_found_with_their_places_and_near_misses_are_not() {
    let d = Deployment::new();
    let tree = d.path("tree");
    let key = unissued_key();
    let svc = tollgate_core::KeyFormat::new("acme")
        .unwrap()
        .generate(tollgate_core::KeyKind::ServiceAccount)
        .expose()
        .to_owned();
    write(
        &tree,
        "src/app.py",
        &format!("import os\n\nKEY = \"{key}\"\n"),
    );
    write(
        &tree,
        "config/deploy.yaml",
        &format!("aws_key: {AWS}\nother: {svc}\n"),
    );
    write(
        &tree,
        ".env.example",
        &format!("OPENAI_API_KEY={OPENAI_LEGACY}\n"),
    );
    // Ignored, binary, allowed, and near misses: none is reported.
    write(&tree, ".gitignore", "secrets/\n*.local\n");
    write(&tree, "secrets/prod.txt", &format!("{key}\n"));
    write(&tree, "dev.local", &format!("{key}\n"));
    std::fs::write(
        tree.join("blob.bin"),
        [b"\0\x01\x02".as_slice(), key.as_bytes()].concat(),
    )
    .unwrap();
    write(
        &tree,
        "docs/example.md",
        &format!("KEY = \"{key}\" # tollgate:allow\n"),
    );
    let near = near_miss(&key);
    write(
        &tree,
        "notes.txt",
        &format!(
            "near = \"{near}\"\nshort = \"{}\"\nlonger = \"{key}0\"\nno marker = sk-abcdefghij0123456789T3BlbkFabcdefghij0123456789\nwords: sk-proj- and T3BlbkFJ in prose, AKIA alone\n",
            &key[..key.len() - 1]
        ),
    );

    let run = d.run(&["scan", "tree", "--no-progress"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("FILE:LINE:COLUMN"), "{}", run.stdout);
    let places: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells[0].to_owned(), cells[1].to_owned())
        })
        .collect();
    assert_eq!(
        places,
        vec![
            (".env.example:1:16".to_owned(), "openai-api-key".to_owned()),
            (
                "config/deploy.yaml:1:10".to_owned(),
                "aws-access-key-id".to_owned()
            ),
            (
                "config/deploy.yaml:2:8".to_owned(),
                "tollgate-key".to_owned()
            ),
            ("src/app.py:3:8".to_owned(), "tollgate-key".to_owned()),
        ],
        "{}",
        run.stdout
    );
    // The table shows a Tollgate key's id, which names it without revealing it.
    let id = tollgate_scan::report::key_id_of(&key).unwrap();
    assert!(run.stdout.contains(&id), "{}", run.stdout);
    assert!(run.stderr.contains("4 secrets found"), "{}", run.stderr);
    assert!(run.stderr.contains("skipped 1 binary"), "{}", run.stderr);

    // JSON: the same findings, each once, redacted, with a fingerprint.
    let json = d.run(&["scan", "tree", "--format", "json"]);
    assert_eq!(json.code, 1);
    let findings = json.json();
    let findings = findings.as_array().unwrap();
    assert_eq!(findings.len(), 4);
    let app = findings.iter().find(|f| f["file"] == "src/app.py").unwrap();
    assert_eq!(app["rule_id"], "tollgate-key");
    assert_eq!(
        (app["line"].as_u64(), app["column"].as_u64()),
        (Some(3), Some(8))
    );
    assert_eq!(app["key_id"], id.as_str());
    assert_eq!(app["secret"], tollgate_core::key::redact(&key));
    assert_eq!(app["fingerprint"].as_str().unwrap().len(), 32);
    // The global --json flag means the same.
    assert_eq!(d.run(&["scan", "tree", "--json"]).json(), json.json());

    // One file named directly is scanned and shown as given.
    let one = d.run(&["scan", "tree/src/app.py", "--json"]);
    assert_eq!(one.code, 1);
    assert_eq!(one.json()[0]["file"], "tree/src/app.py");

    assert_never_printed(&d, &[&key, &svc, OPENAI_LEGACY, AWS, &near]);
}

#[test]
fn exit_codes_say_clean_found_or_could_not_scan() {
    let d = Deployment::new();
    write(&d.path("clean"), "a.txt", "nothing here\n");
    let clean = d.run(&["scan", "clean"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert_eq!(clean.stdout, "");
    assert!(
        clean.stderr.contains("no secrets found"),
        "{}",
        clean.stderr
    );
    assert_eq!(
        d.run(&["scan", "clean", "--json"]).json(),
        serde_json::json!([])
    );

    assert_fails(&d.run(&["scan", "missing"]), 2, "missing");
    assert_fails(
        &d.run(&["scan", "--history", "clean"]),
        2,
        "not a git repository",
    );
    assert_fails(
        &d.run(&["scan", "--staged", "--history"]),
        2,
        "cannot be used with",
    );
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0_with_every_finding() {
    let d = Deployment::new();
    let key = unissued_key();
    write(
        &d.path("tree"),
        "dir with space/app.py",
        &format!("k = '{key}'\n"),
    );
    write(&d.path("tree"), "b.txt", &format!("{AWS}\n"));
    let run = d.run(&["scan", "tree", "--format", "sarif"]);
    assert_eq!(run.code, 1);
    let log = run.json();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scan/tests/fixtures/sarif-schema-2.1.0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let app = &results[1];
    assert_eq!(app["ruleId"], "tollgate-key");
    let location = &app["locations"][0]["physicalLocation"];
    assert_eq!(
        location["artifactLocation"]["uri"],
        "dir%20with%20space/app.py"
    );
    assert_eq!(location["region"]["startLine"], 1);
    assert_eq!(location["region"]["startColumn"], 6);
    // Each result's rule is described in the driver, where ruleIndex says.
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
    }
    assert!(!run.stdout.contains(&key));
}

/// A repository with a key committed then removed on main, another on a branch never merged,
/// and a third only staged.
struct Repo {
    d: Deployment,
    removed: String,
    branch: String,
    staged: String,
}

fn repo() -> Repo {
    let d = Deployment::new();
    let dir = d.path("repo");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    let removed = unissued_key();
    write(
        &dir,
        "src/app.py",
        &format!("import os\nKEY = \"{removed}\"\n"),
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "one"]);
    write(
        &dir,
        "src/app.py",
        "import os\nKEY = os.environ[\"OPENAI_API_KEY\"]\n",
    );
    git(&dir, &["commit", "-qam", "two"]);
    git(&dir, &["checkout", "-qb", "experiment"]);
    let branch = unissued_key();
    write(
        &dir,
        "lib/client.js",
        &format!("// client\n\nconst key = '{branch}';\n"),
    );
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-qm", "three"]);
    git(&dir, &["checkout", "-q", "main"]);
    let staged = unissued_key();
    write(
        &dir,
        "settings.toml",
        &format!("[ai]\nmodel = \"gpt-4o\"\napi_key = \"{staged}\"\n"),
    );
    git(&dir, &["add", "settings.toml"]);
    Repo {
        d,
        removed,
        branch,
        staged,
    }
}

#[test]
fn history_finds_keys_in_old_commits_on_every_branch_with_their_commits() {
    let r = repo();
    let dir = r.d.path("repo");
    // The working tree holds only the staged key.
    let files = r.d.run(&["scan", "repo", "--json"]);
    let files = files.json();
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    assert_eq!(files[0]["file"], "settings.toml");

    let run = r.d.run(&["scan", "--history", "repo", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let found = run.json();
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 2, "{found:#?}");
    let one = git(&dir, &["rev-parse", "main~1"]);
    let three = git(&dir, &["rev-parse", "experiment"]);
    let by_file = |file: &str| found.iter().find(|f| f["file"] == file).unwrap().clone();
    let app = by_file("src/app.py");
    assert_eq!(app["commit"], one.trim());
    assert_eq!(app["line"], 2);
    assert_eq!(app["author"], "T <t@example.com>");
    assert_eq!(
        app["key_id"],
        tollgate_scan::report::key_id_of(&r.removed)
            .unwrap()
            .as_str()
    );
    let client = by_file("lib/client.js");
    assert_eq!(client["commit"], three.trim());
    assert_eq!(client["line"], 3);
    assert!(run.stderr.contains("3 commits"), "{}", run.stderr);

    // The table says the commit too.
    let table = r.d.run(&["scan", "--history", "repo"]);
    assert!(table.stdout.starts_with("COMMIT"), "{}", table.stdout);
    assert!(table.stdout.contains(&one.trim()[..12]));
    assert_never_printed(&r.d, &[&r.removed, &r.branch, &r.staged]);
}

#[test]
fn staged_scans_only_what_the_next_commit_would_record() {
    let r = repo();
    let run = r.d.run(&["scan", "--staged", "repo", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let found = run.json();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["file"], "settings.toml");
    assert_eq!(found[0]["line"], 3);
    assert!(found[0].get("commit").is_none());

    // Unstaged, it is not there any more.
    git(&r.d.path("repo"), &["reset", "-q"]);
    let clean = r.d.run(&["scan", "--staged", "repo"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
}

#[test]
fn the_pre_commit_hook_stops_a_commit_holding_a_key_and_lets_others_through() {
    let r = repo();
    let dir = r.d.path("repo");
    let install = r.d.run(&["hook", "install", "--repo", "repo"]).ok();
    assert!(install.stdout.contains("pre-commit"), "{}", install.stdout);
    let hook = dir.join(".git/hooks/pre-commit");
    assert!(std::fs::read_to_string(&hook).unwrap().contains(BIN));

    // git runs the hook: the commit is refused, and the key is named only redacted.
    let out = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args([
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "commit",
            "-qm",
            "leak",
        ])
        .output()
        .unwrap();
    // git hands a hook's output to its own stderr.
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the commit went through");
    assert!(stdout.contains("settings.toml:3"), "{stdout}");
    assert!(!stdout.contains(&r.staged));
    assert_eq!(git(&dir, &["rev-list", "--count", "main"]).trim(), "2");

    // Without the key, the commit goes through.
    write(
        &dir,
        "settings.toml",
        "[ai]\nmodel = \"gpt-4o\"\napi_key = \"${OPENAI_API_KEY}\"\n",
    );
    git(&dir, &["add", "settings.toml"]);
    git(&dir, &["commit", "-qm", "clean"]);
    assert_eq!(git(&dir, &["rev-list", "--count", "main"]).trim(), "3");

    // Another tool's hook is kept unless forced; uninstall removes only Tollgate's.
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    assert_fails(
        &r.d.run(&["hook", "install", "--repo", "repo"]),
        5,
        "not Tollgate's",
    );
    assert_fails(
        &r.d.run(&["hook", "uninstall", "--repo", "repo"]),
        5,
        "not Tollgate's",
    );
    r.d.run(&["hook", "install", "--repo", "repo", "--force"])
        .ok();
    r.d.run(&["hook", "uninstall", "--repo", "repo"]).ok();
    assert!(!hook.exists());
    assert_fails(
        &r.d.run(&["hook", "install", "--repo", "."]),
        2,
        "not in a git repository",
    );
}

/// `--revoke` revokes the deployment's own keys found (once each, whichever file), says so,
/// and leaves keys it does not hold alone.
fn revoke_found_keys(d: &Deployment) {
    if !d.is_remote() {
        d.run(&["init"]).ok();
    }
    let created = d
        .run(&["keys", "create", "--name", "leaky", "--json"])
        .ok()
        .json();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["value"].as_str().unwrap().to_owned();
    let foreign = unissued_key();
    let tree = d.path("tree");
    write(&tree, "a.py", &format!("KEY = '{secret}'\n"));
    write(
        &tree,
        "b.py",
        &format!("KEY = '{secret}'\nOTHER = '{foreign}'\n"),
    );

    let run = d.run(&["scan", "tree", "--revoke"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches(&format!("revoked {id}")).count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("is not a key of this deployment"),
        "{}",
        run.stderr
    );
    let key = d.run(&["keys", "show", &id, "--json"]).ok().json();
    assert!(key["key"]["revoked_at"].is_number(), "{key}");

    // Again: already revoked, nothing changes.
    let again = d.run(&["scan", "tree", "--revoke"]);
    assert!(
        again.stderr.contains("was already revoked"),
        "{}",
        again.stderr
    );
    assert_never_printed(d, &[&secret, &foreign]);
}

#[test]
fn revoke_revokes_found_keys_on_the_local_database() {
    revoke_found_keys(&Deployment::new());
}

#[test]
fn revoke_revokes_found_keys_through_a_server_s_admin_api() {
    revoke_found_keys(&Deployment::remote());
}
