//! A Tollgate deployment in a temporary directory, driven through the real `tollgate` binary.
//! Every command's output is kept, so tests can scan all of it for leaked secrets.

#![allow(dead_code)] // each test binary uses a different part of the support code

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

/// One finished command: what it was, its exit code and its two streams.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            0,
            "`tollgate {}` failed:\n{}",
            self.args.join(" "),
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

pub struct Deployment {
    /// In remote mode, the server management commands go to (stopped before the directory
    /// goes away).
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub runs: Arc<Mutex<Vec<Run>>>,
    /// The PostgreSQL database commands use (`TOLLGATE_DATABASE_URL`), when the suite runs on
    /// PostgreSQL (`TOLLGATE_TEST_STORE=postgres`); dropped with the deployment.
    pub scratch: Option<tollgate_store::scratch::ScratchDatabase>,
}

/// Whether the suite runs on PostgreSQL rather than the default SQLite file.
pub fn on_postgres() -> bool {
    std::env::var("TOLLGATE_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// On the PostgreSQL pass, says so and returns true for a test that is about SQLite's own
/// files (it runs in the SQLite pass of the same suite).
pub fn sqlite_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("this test runs on SQLite only: {why}");
        return true;
    }
    false
}

/// A scratch PostgreSQL database, made on a runtime of its own (the tests that use a
/// deployment are not all async).
fn scratch_database() -> tollgate_store::scratch::ScratchDatabase {
    std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(tollgate_store::scratch::ScratchDatabase::create())
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .join()
    .unwrap()
}

impl Deployment {
    pub fn new() -> Deployment {
        Deployment::with_store(on_postgres())
    }

    /// A deployment on the SQLite file `./tollgate.db`, whatever the suite runs on.
    pub fn sqlite() -> Deployment {
        Deployment::with_store(false)
    }

    fn with_store(postgres: bool) -> Deployment {
        // Test traffic stays on this machine: the default provider points at a closed port.
        let mut env: Vec<(String, String)> = vec![
            ("USER".into(), "tester".into()),
            ("OPENAI_BASE_URL".into(), "http://127.0.0.1:9/v1".into()),
        ];
        let scratch = postgres.then(scratch_database);
        if let Some(scratch) = &scratch {
            if let tollgate_store::DatabaseLocation::Postgres(url) = scratch.location() {
                env.push(("TOLLGATE_DATABASE_URL".into(), url.expose().to_owned()));
            }
        }
        Deployment {
            dir: tempfile::tempdir().unwrap(),
            env,
            runs: Arc::default(),
            server: None,
            scratch,
        }
    }

    /// A deployment whose management commands act on a running server through its admin API
    /// (`TOLLGATE_URL` and the first run's admin key in `TOLLGATE_ADMIN_KEY`), not on the
    /// database: the CLI's remote mode. The server holds the database in the same directory.
    pub fn remote() -> Deployment {
        Deployment::remote_with(&[])
    }

    /// [`Deployment::remote`] with a server started with `serve ARGS`.
    pub fn remote_with(args: &[&str]) -> Deployment {
        let mut d = Deployment::new();
        let server = d.serve(args);
        let banner = server.stdout();
        let admin_key = banner
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("Admin key"))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no admin key in the banner:\n{banner}"));
        d.env.push(("TOLLGATE_URL".into(), server.base.clone()));
        d.env.push(("TOLLGATE_ADMIN_KEY".into(), admin_key));
        d.server = Some(server);
        d
    }

    /// Whether management commands go to a server (remote mode).
    pub fn is_remote(&self) -> bool {
        self.server.is_some()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).current_dir(self.dir.path()).env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `tollgate ARGS` to completion in the deployment's directory.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_command(self.command(args), args)
    }

    /// Runs `tollgate ARGS` as another, unprivileged user (uid 65534) when this is root.
    pub fn run_as_nobody(&self, args: &[&str]) -> Run {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(args);
        command
            .current_dir(self.dir.path())
            .env_clear()
            .env("USER", "nobody");
        self.run_command(command, args)
    }

    fn run_command(&self, mut command: Command, args: &[&str]) -> Run {
        let output: Output = command.output().unwrap();
        let run = Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        self.runs.lock().unwrap().push(run.clone());
        run
    }

    /// Starts `tollgate serve --listen 127.0.0.1:0 ARGS` and waits until it listens.
    pub fn serve(&self, args: &[&str]) -> Server {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = self
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out_lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let err_text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        {
            let out_lines = out_lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    // Store the line before signalling, so whoever wakes up sees it.
                    let addr = line
                        .strip_prefix("Tollgate listening on http://")
                        .map(str::to_owned);
                    out_lines.lock().unwrap().push(line);
                    if let Some(addr) = addr {
                        let _ = tx.send(addr);
                    }
                }
            });
        }
        {
            let err_text = err_text.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    err_text
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", err_text.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            base: format!("http://{addr}"),
            out_lines,
            err_text,
            runs: self.runs.clone(),
            args: all.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Every byte every command and server printed, with the files in the directory.
    pub fn all_runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }
}

pub struct Server {
    child: Option<Child>,
    pub base: String,
    out_lines: Arc<Mutex<Vec<String>>>,
    err_text: Arc<Mutex<String>>,
    runs: Arc<Mutex<Vec<Run>>>,
    args: Vec<String>,
}

impl Server {
    pub fn stdout(&self) -> String {
        self.out_lines.lock().unwrap().join("\n")
    }

    pub fn stderr(&self) -> String {
        self.err_text.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (at most 10 s) for a clean exit; records the output.
    pub fn stop(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        let run = Run {
            args: self.args.clone(),
            code: status.code().unwrap_or(-1),
            stdout: self.stdout(),
            stderr: self.stderr(),
        };
        self.runs.lock().unwrap().push(run.clone());
        run
    }
}

impl Server {
    /// Kills the server with SIGKILL (no chance to clean up) and waits for it to die.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every file under `dir`, recursively, with its bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts that a command failed with `code` and said `message` on stderr.
pub fn assert_fails(run: &Run, code: i32, message: &str) {
    assert_eq!(
        run.code,
        code,
        "`tollgate {}`: {}{}",
        run.args.join(" "),
        run.stdout,
        run.stderr
    );
    assert!(
        run.stderr.contains(message),
        "`tollgate {}` said {:?}, expected {:?}",
        run.args.join(" "),
        run.stderr,
        message
    );
    // Tollgate's own errors are one `error: ` line; clap's add usage and a hint after it.
    let last = run.stderr.lines().last().unwrap_or_default();
    let clap_hint = last.starts_with("For more information, try '--help'");
    assert!(
        (last.starts_with("error: ") || clap_hint) && !run.stderr.contains("panicked"),
        "{}",
        run.stderr
    );
}

/// Uploads a one-line JSONL file through the server at `base` as `key`'s project; its id.
pub async fn upload(base: &str, key: &str) -> String {
    let boundary = "cli-test";
    let body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{{}}\r\n--{boundary}--\r\n");
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/files"))
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
    let file: serde_json::Value = response.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}
