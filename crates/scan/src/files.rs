//! Scanning files and directory trees.
//!
//! The walk is `ignore`'s (ripgrep's): in parallel, respecting `.gitignore` (in a git
//! repository or not), `.ignore` and the repository's `info/exclude`, looking into hidden files
//! (`.env.example`, `.github/`) but never into `.git`. A file whose first 8 KiB hold a NUL byte
//! is binary and skipped (git's rule); files over the size limit are skipped and counted.

use crate::detect::Detector;
use crate::error::ScanError;
use crate::report::Finding;
use ignore::{WalkBuilder, WalkState};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How files are scanned.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Files larger than this are skipped (and counted).
    pub max_file_size: u64,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            max_file_size: 100 * 1024 * 1024,
            threads: 0,
        }
    }
}

/// What a scan went through.
#[derive(Debug, Default)]
pub struct Scanned {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub binary: AtomicU64,
    pub too_large: AtomicU64,
    /// Files that could not be read, with why.
    pub unreadable: Mutex<Vec<String>>,
}

/// The first bytes looked at to tell binary files apart.
const BINARY_SNIFF: usize = 8 * 1024;

/// Every secret in the files under `roots`, sorted by file and line. `scanned` counts what was
/// read as it goes (a progress display may watch it).
pub fn scan_paths(
    roots: &[PathBuf],
    options: &FileOptions,
    detector: &Detector,
    scanned: &Scanned,
) -> Result<Vec<Finding>, ScanError> {
    let findings = Mutex::new(Vec::new());
    for root in roots {
        let meta = std::fs::metadata(root).map_err(|source| ScanError::Read {
            path: root.display().to_string(),
            source,
        })?;
        if meta.is_file() {
            let shown = root.display().to_string();
            let mut buffer = Vec::new();
            scan_file(
                root,
                &shown,
                options,
                detector,
                scanned,
                &mut buffer,
                &findings,
            );
            continue;
        }
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let walk = WalkBuilder::new(root)
            .hidden(false)
            .require_git(false)
            .threads(threads)
            .filter_entry(|entry| entry.file_name() != ".git")
            .build_parallel();
        walk.run(|| {
            let mut buffer = Vec::with_capacity(64 * 1024);
            let findings = &findings;
            Box::new(move |entry| {
                let Ok(entry) = entry else {
                    if let Err(err) = entry {
                        push_unreadable(scanned, err.to_string());
                    }
                    return WalkState::Continue;
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return WalkState::Continue;
                }
                let path = entry.path();
                let shown = relative(root, path);
                scan_file(
                    path,
                    &shown,
                    options,
                    detector,
                    scanned,
                    &mut buffer,
                    findings,
                );
                WalkState::Continue
            })
        });
    }
    let mut findings = findings.into_inner().unwrap_or_else(|e| e.into_inner());
    findings.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Ok(findings)
}

fn push_unreadable(scanned: &Scanned, why: String) {
    if let Ok(mut list) = scanned.unreadable.lock() {
        if list.len() < 1_000 {
            list.push(why);
        }
    }
}

/// `path` under `root`, with `/` between its parts.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

fn scan_file(
    path: &Path,
    shown: &str,
    options: &FileOptions,
    detector: &Detector,
    scanned: &Scanned,
    buffer: &mut Vec<u8>,
    findings: &Mutex<Vec<Finding>>,
) {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) => return push_unreadable(scanned, format!("{shown}: {err}")),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > options.max_file_size {
        scanned.too_large.fetch_add(1, Ordering::Relaxed);
        return;
    }
    buffer.clear();
    // Read at most one byte past the limit: a file that grew meanwhile is still bounded.
    if let Err(err) = file
        .take(options.max_file_size.saturating_add(1))
        .read_to_end(buffer)
    {
        return push_unreadable(scanned, format!("{shown}: {err}"));
    }
    if buffer.len() as u64 > options.max_file_size {
        scanned.too_large.fetch_add(1, Ordering::Relaxed);
        return;
    }
    scanned.files.fetch_add(1, Ordering::Relaxed);
    scanned
        .bytes
        .fetch_add(buffer.len() as u64, Ordering::Relaxed);
    if memchr::memchr(0, &buffer[..buffer.len().min(BINARY_SNIFF)]).is_some() {
        scanned.binary.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let hits = detector.find(buffer);
    if hits.is_empty() {
        return;
    }
    let found: Vec<Finding> = hits
        .iter()
        .map(|hit| {
            Finding::new(
                hit.rule,
                shown.to_owned(),
                hit.line,
                hit.column,
                hit.text(buffer),
            )
        })
        .collect();
    if let Ok(mut all) = findings.lock() {
        all.extend(found);
    }
}
