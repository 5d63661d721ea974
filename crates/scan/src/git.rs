//! Staged changes and git history, read through the `git` command (as gitleaks does): the
//! lines each change adds are scanned, so a secret is reported at the commit that brought it
//! in, with the line it had there.
//!
//! History covers every commit reachable from any ref (`--all`: branches, tags, remotes'
//! refs). Not read: a merge's own changes (lines written while resolving a conflict) and a
//! stash's (a stash is a merge commit), as `git log -p` does not show them; files git is told
//! to treat as binary (`.gitattributes` `-diff`). Every line a merged branch added is read in
//! its own commit.

use crate::detect::Detector;
use crate::error::ScanError;
use crate::report::{Commit, Finding};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The commit header line's start in `git log` output (a record separator, never in a diff).
const COMMIT_MARK: u8 = 0x1e;

/// Secrets in the changes staged for the next commit in the repository at `repo`.
pub fn staged(repo: &Path, detector: &Detector) -> Result<Vec<Finding>, ScanError> {
    read_diff(
        repo,
        &["diff", "--cached", "--diff-filter=d"],
        detector,
        &mut |_| {},
    )
}

/// Secrets in every commit of every ref of the repository at `repo`; `progress` is told each
/// commit read.
pub fn history(
    repo: &Path,
    detector: &Detector,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Finding>, ScanError> {
    read_diff(
        repo,
        &[
            "log",
            "--all",
            "--full-history",
            "--format=%x1e%H%x1f%an <%ae>%x1f%aI",
        ],
        detector,
        progress,
    )
}

fn read_diff(
    repo: &Path,
    args: &[&str],
    detector: &Detector,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Finding>, ScanError> {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "core.quotePath=false",
            "-c",
            "diff.noprefix=false",
            "-c",
            "diff.mnemonicPrefix=false",
        ])
        .args(args)
        .args([
            "-p",
            "-U0",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-renames",
            "--src-prefix=a/",
            "--dst-prefix=b/",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(ScanError::GitMissing)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ScanError::Walk("git gave no output".into()))?;
    // stderr is read beside stdout so that a chatty git never blocks on a full pipe.
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            use std::io::Read;
            let _ = stderr.by_ref().take(64 * 1024).read_to_string(&mut text);
        }
        text
    });
    let mut parser = DiffParser::default();
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    let mut line = Vec::new();
    let mut commits = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| ScanError::Walk(format!("reading git's output: {e}")))?;
        if read == 0 {
            break;
        }
        if line.first() == Some(&COMMIT_MARK) {
            commits += 1;
            progress(commits);
        }
        parser.line(&line, detector);
    }
    let status = child
        .wait()
        .map_err(|e| ScanError::Walk(format!("waiting for git: {e}")))?;
    let message = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(ScanError::Git {
            args: args.first().copied().unwrap_or("").to_owned(),
            message: message.trim().to_owned(),
        });
    }
    Ok(parser.findings)
}

/// Reads a unified diff (`-U0`) line by line, scanning the lines it adds.
#[derive(Default)]
struct DiffParser {
    commit: Option<Commit>,
    /// The file the current hunks change (`None`: deleted, or not yet known).
    file: Option<String>,
    /// The new file's line number of the next added line.
    next_line: usize,
    in_hunk: bool,
    findings: Vec<Finding>,
}

impl DiffParser {
    fn line(&mut self, raw: &[u8], detector: &Detector) {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(header) = line.strip_prefix(&[COMMIT_MARK]) {
            let text = String::from_utf8_lossy(header);
            let mut parts = text.split('\x1f');
            self.commit = Some(Commit {
                id: parts.next().unwrap_or("").to_owned(),
                author: parts.next().unwrap_or("").to_owned(),
                date: parts.next().unwrap_or("").to_owned(),
            });
            self.file = None;
            self.in_hunk = false;
            return;
        }
        if line.starts_with(b"diff --git ") {
            self.file = None;
            self.in_hunk = false;
            return;
        }
        if !self.in_hunk {
            if let Some(path) = line.strip_prefix(b"+++ ") {
                self.file = new_path(path);
            }
            if line.starts_with(b"@@ ") {
                self.hunk(line);
            }
            return;
        }
        match line.first() {
            Some(b'+') => {
                let Some(file) = &self.file else { return };
                let added = &line[1..];
                for hit in detector.find(added) {
                    let mut finding = Finding::new(
                        hit.rule,
                        file.clone(),
                        self.next_line,
                        hit.column,
                        hit.text(added),
                    );
                    finding.commit = self.commit.clone();
                    self.findings.push(finding);
                }
                self.next_line += 1;
            }
            Some(b'@') if line.starts_with(b"@@ ") => self.hunk(line),
            Some(b'-' | b'\\' | b' ') => {}
            // Anything else ends the file's hunks (the next commit's message, a new header).
            _ => self.in_hunk = false,
        }
    }

    /// `@@ -a[,b] +c[,d] @@`: added lines start at line `c`.
    fn hunk(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let start = text
            .split(' ')
            .find_map(|part| part.strip_prefix('+'))
            .and_then(|range| range.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        self.next_line = start;
        self.in_hunk = true;
    }
}

/// The path in a `+++ b/path` header; `None` for `/dev/null`.
fn new_path(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let text = text.trim_end_matches('\t');
    if text == "/dev/null" {
        return None;
    }
    let unquoted = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => unquote(quoted),
        None => text.to_owned(),
    };
    Some(unquoted.strip_prefix("b/").unwrap_or(&unquoted).to_owned())
}

/// Undoes git's C-style quoting of unusual paths (`\t`, `\"`, `\\`, octal bytes).
fn unquote(quoted: &str) -> String {
    let mut bytes = Vec::with_capacity(quoted.len());
    let mut chars = quoted.bytes().peekable();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match chars.next() {
            Some(b't') => bytes.push(b'\t'),
            Some(b'n') => bytes.push(b'\n'),
            Some(b'r') => bytes.push(b'\r'),
            Some(d @ b'0'..=b'7') => {
                let mut value = u32::from(d - b'0');
                for _ in 0..2 {
                    if let Some(next @ b'0'..=b'7') = chars.peek().copied() {
                        value = value * 8 + u32::from(next - b'0');
                        chars.next();
                    }
                }
                bytes.push(u8::try_from(value).unwrap_or(b'?'));
            }
            Some(other) => bytes.push(other),
            None => bytes.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_out_of_diff_headers_quoted_or_not() {
        assert_eq!(new_path(b"b/src/app.py").as_deref(), Some("src/app.py"));
        assert_eq!(new_path(b"/dev/null"), None);
        assert_eq!(
            new_path(b"\"b/dir/a\\tb \\\"q\\\".txt\"").as_deref(),
            Some("dir/a\tb \"q\".txt")
        );
        assert_eq!(
            new_path(b"\"b/caf\\303\\251.txt\"").as_deref(),
            Some("caf\u{e9}.txt")
        );
    }

    #[test]
    fn added_lines_are_scanned_with_their_new_line_numbers() {
        let key = tollgate_core::KeyFormat::default().generate(tollgate_core::KeyKind::Project);
        let diff = format!(
            "\x1eabc123\x1fA <a@b.c>\x1f2026-01-01T00:00:00Z\n\ndiff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -3,0 +4,2 @@ def f():\n+ok = 1\n+KEY = \"{}\"\n-gone = \"{}\"\n",
            key.expose(),
            key.expose()
        );
        let detector = Detector::new();
        let mut parser = DiffParser::default();
        for line in diff.split_inclusive('\n') {
            parser.line(line.as_bytes(), &detector);
        }
        assert_eq!(parser.findings.len(), 1, "{:?}", parser.findings);
        let found = &parser.findings[0];
        assert_eq!(
            (found.file.as_str(), found.line, found.column),
            ("x.py", 5, 8)
        );
        assert_eq!(found.commit.as_ref().unwrap().id, "abc123");
    }
}
