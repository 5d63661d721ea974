//! `tollgate scan`: secrets in files, staged changes or history (see `tollgate_scan`), printed
//! as a table, JSON or SARIF; `--revoke` revokes the Tollgate keys found.

use crate::cli::{ScanArgs, ScanFormat};
use crate::failure::Failure;
use crate::manage::Manage;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_scan::files::{FileOptions, Scanned};
use tollgate_scan::{report, Detector, Finding};

pub async fn run<M: Manage>(
    args: &ScanArgs,
    json: bool,
    manage: Option<&M>,
) -> Result<(), Failure> {
    let format = match (args.format, json) {
        (Some(format), _) => format,
        (None, true) => ScanFormat::Json,
        (None, false) => ScanFormat::Table,
    };
    if args.list_rules {
        return list_rules(format);
    }
    let started = Instant::now();
    let progress = progress_bar(args.no_progress);
    let (findings, summary) = if args.staged || args.history {
        let repo = match args.paths.as_slice() {
            [] => PathBuf::from("."),
            [one] => one.clone(),
            _ => {
                return Err(Failure::invalid(
                    "--staged and --history scan one repository: give at most one path",
                ))
            }
        };
        let history = args.history;
        let bar = progress.clone();
        let found = tokio::task::spawn_blocking(move || {
            let detector = Detector::new();
            if history {
                let mut commits = 0;
                let found = tollgate_scan::git::history(&repo, &detector, &mut |n| {
                    commits = n;
                    if n % 64 == 0 {
                        bar.set_message(format!("{n} commits"));
                    }
                });
                found.map(|f| (f, format!("{commits} commits")))
            } else {
                tollgate_scan::git::staged(&repo, &detector)
                    .map(|f| (f, "the staged changes".into()))
            }
        })
        .await
        .map_err(|e| Failure::invalid(format!("the scan stopped: {e}")))?;
        found.map_err(|e| Failure::invalid(e.to_string()))?
    } else {
        let roots = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths.clone()
        };
        let options = FileOptions {
            max_file_size: args.max_file_size.saturating_mul(1024 * 1024),
            threads: 0,
        };
        let scanned = Arc::new(Scanned::default());
        let counting = scanned.clone();
        let mut work = tokio::task::spawn_blocking(move || {
            tollgate_scan::files::scan_paths(&roots, &options, &Detector::new(), &counting)
        });
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let found = loop {
            tokio::select! {
                done = &mut work => break done,
                _ = tick.tick() => progress.set_message(format!(
                    "{} files, {}",
                    scanned.files.load(Ordering::Relaxed),
                    mib(scanned.bytes.load(Ordering::Relaxed))
                )),
            }
        };
        let found = found
            .map_err(|e| Failure::invalid(format!("the scan stopped: {e}")))?
            .map_err(|e| Failure::invalid(e.to_string()))?;
        if let Ok(unreadable) = scanned.unreadable.lock() {
            for why in unreadable.iter().take(10) {
                eprintln!("warning: not scanned: {why}");
            }
            if unreadable.len() > 10 {
                eprintln!("warning: {} more files not scanned", unreadable.len() - 10);
            }
        }
        let mut summary = format!(
            "{} files ({})",
            scanned.files.load(Ordering::Relaxed),
            mib(scanned.bytes.load(Ordering::Relaxed))
        );
        let binary = scanned.binary.load(Ordering::Relaxed);
        let large = scanned.too_large.load(Ordering::Relaxed);
        if binary > 0 || large > 0 {
            summary.push_str(&format!(
                "; skipped {binary} binary and {large} over {} MiB",
                args.max_file_size
            ));
        }
        (found, summary)
    };
    progress.finish_and_clear();

    match format {
        ScanFormat::Table => print!("{}", report::table(&findings)),
        ScanFormat::Json => println!("{}", report::json(&findings)),
        ScanFormat::Sarif => println!("{}", report::sarif(&findings, env!("CARGO_PKG_VERSION"))),
    }
    let secrets = findings.len();
    eprintln!(
        "scanned {summary} in {:.2} s: {}",
        started.elapsed().as_secs_f64(),
        match secrets {
            0 => "no secrets found".to_owned(),
            1 => "1 secret found".to_owned(),
            n => format!("{n} secrets found"),
        }
    );
    if let Some(manage) = manage {
        revoke(manage, &findings).await;
    }
    if secrets > 0 {
        return Err(Failure::silent(1));
    }
    Ok(())
}

/// Revokes each Tollgate key found, once, and says what became of it (on stderr: stdout holds
/// the report).
async fn revoke<M: Manage>(manage: &M, findings: &[Finding]) {
    for finding in findings
        .iter()
        .filter(|f| f.rule.id == "tollgate-client-token")
    {
        eprintln!(
            "client token {}, found at {}:{}, expires by itself (within a day at most); revoke the key that minted it to end it now",
            finding.redacted(),
            finding.file,
            finding.line
        );
    }
    let mut keys: BTreeMap<String, &Finding> = BTreeMap::new();
    for finding in findings {
        if let Some(id) = finding.key_id() {
            keys.entry(id).or_insert(finding);
        }
    }
    if keys.is_empty() {
        eprintln!("no Tollgate keys to revoke");
        return;
    }
    for (id, finding) in keys {
        let place = format!("{}:{}", finding.file, finding.line);
        match manage.revoke_key(&id).await {
            Ok((key, false)) => eprintln!("revoked {id} ({}), found at {place}", key.redacted_value),
            Ok((key, true)) => eprintln!(
                "{id} ({}), found at {place}, was already revoked",
                key.redacted_value
            ),
            Err(failure) if failure.code == 4 => eprintln!(
                "{id} ({}), found at {place}, is not a key of this deployment: nothing to revoke here",
                finding.redacted()
            ),
            Err(failure) => eprintln!("{id}, found at {place}, was not revoked: {}", failure.message),
        }
    }
}

/// The rule set, as a table or JSON.
fn list_rules(format: ScanFormat) -> Result<(), Failure> {
    let rules = tollgate_scan::rules::RULES;
    if format == ScanFormat::Table {
        for rule in rules {
            println!("{:<26} {}", rule.id, rule.description);
            println!("{:<26} keywords: {}", "", rule.keywords.join(" "));
            println!("{:<26} pattern:  {}", "", rule.pattern);
            if rule.check.is_some() {
                println!("{:<26} checked:  the key's CRC32 checksum", "");
            }
        }
        return Ok(());
    }
    let list: Vec<serde_json::Value> = rules
        .iter()
        .map(|rule| {
            serde_json::json!({
                "id": rule.id,
                "description": rule.description,
                "keywords": rule.keywords,
                "pattern": rule.pattern,
                "checksum": rule.check.is_some(),
            })
        })
        .collect();
    crate::output::print_json(&list).map_err(|e| Failure::invalid(e.to_string()))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A spinner with counts on stderr, when it is a terminal (hidden otherwise).
fn progress_bar(off: bool) -> indicatif::ProgressBar {
    if off {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} scanning: {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
