//! Crash-safe metering: every usage event is appended to a spool file before it is queued for
//! the database, so a request whose answer was delivered keeps its usage record even if the
//! process is killed the next instant.
//!
//! - **Durable against a process crash.** An event is one JSON line written with one
//!   `write(2)` on a file opened for appending. When the call returns the line is in the
//!   kernel's page cache, which a killed process (`kill -9`, the OOM killer, a panic) cannot
//!   take with it. Nothing is `fsync`ed: a power cut can still lose the last seconds, as it can
//!   the database's own un-synced pages. The append costs 3.3k instructions of user space
//!   (callgrind; the line written by [`encode_line`]) and one `write(2)` a request.
//! - **Segments and lanes.** Events go to numbered segment files (`usage-<n>.jsonl`). Each
//!   appending thread has a lane, with an open segment and a lock of its own, so the serving
//!   threads never wait for each other's write. A segment is deleted once the writer has stored
//!   every event appended to it; a lane's open one is emptied when all of its events are
//!   stored, so an idle gateway keeps an empty spool. A lane starts a new segment every
//!   [`SEGMENT_BYTES`].
//! - **Replayed exactly once.** At start, the segments a previous process left are read (a
//!   torn last line is skipped with a warning) and their events go to the writer like any
//!   other; the segments are deleted once stored. The database ignores an event whose request
//!   id it already has, so an event both stored and still spooled (the process died between
//!   the commit and the deletion) is counted once.
//! - **Bounded and watched.** The spool's size is a gauge (`/healthz` shows
//!   `usage_spool_bytes`); past `max_bytes` (the database cannot keep up, or is down) new
//!   requests are refused with a retryable 503 rather than served unmetered. The same spool
//!   carries a PostgreSQL outage later: the writer keeps retrying while events wait here.
//! - **Replicas and restarts.** Each process spools into a directory of its own under the
//!   spool root, locked (`flock`) while it lives. At start a process takes over the
//!   directories whose lock is free (their process is gone: killed, crashed, or stopped
//!   with events unstored), so a restart on another port, or another replica on the same
//!   root, still replays them, and exactly one process does (the lock decides).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tollgate_store::UsageEvent;

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("could not use the usage spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the usage spool {0} is in use by another process")]
    Locked(PathBuf),
}

/// One event as its spool line: the JSON object `serde_json` would write for it (the reader
/// parses it with `serde_json`), and a newline. Written by hand because it runs on the serving
/// thread for every request: field names are literals and a string is escaped only if it has a
/// byte JSON escapes. Counted with callgrind (bench/README.md, 2026-12-01, second session):
/// `Spool::append` took 6.6k instructions an event with `serde_json::to_vec`, 3.3k with this.
pub fn encode_line(event: &UsageEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"request_id\":");
    string(&mut out, &event.request_id);
    out.extend_from_slice(b",\"org_id\":");
    string(&mut out, event.org_id.as_str());
    out.extend_from_slice(b",\"project_id\":");
    string(&mut out, event.project_id.as_str());
    out.extend_from_slice(b",\"key_id\":");
    string(&mut out, event.key_id.as_str());
    out.extend_from_slice(b",\"model_requested\":");
    string(&mut out, &event.model_requested);
    out.extend_from_slice(b",\"model_served\":");
    string(&mut out, &event.model_served);
    out.extend_from_slice(b",\"endpoint\":");
    string(&mut out, &event.endpoint);
    let numbers: [(&[u8], i64); 7] = [
        (b",\"input_tokens\":", event.input_tokens),
        (b",\"cached_input_tokens\":", event.cached_input_tokens),
        (b",\"output_tokens\":", event.output_tokens),
        (b",\"reasoning_tokens\":", event.reasoning_tokens),
        (b",\"cost\":", event.cost.0),
        (b",\"status\":", i64::from(event.status)),
        (b",\"latency_ms\":", event.latency_ms),
    ];
    let mut digits = itoa::Buffer::new();
    for (name, value) in numbers {
        out.extend_from_slice(name);
        out.extend_from_slice(digits.format(value).as_bytes());
    }
    out.extend_from_slice(b",\"client_ip\":");
    match &event.client_ip {
        Some(ip) => string(&mut out, ip),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"created_at\":");
    out.extend_from_slice(digits.format(event.created_at.seconds()).as_bytes());
    // Objects the provider made (rare: creates through a shared credential) as serde writes them.
    if !event.objects.is_empty() {
        out.extend_from_slice(b",\"objects\":");
        if serde_json::to_writer(&mut out, &event.objects).is_err() {
            out.extend_from_slice(b"[]");
        }
    }
    out.extend_from_slice(b"}\n");
    out
}

/// A JSON string: copied as it is unless it holds a quote, a backslash or a control
/// character, which `serde_json` escapes.
fn string(out: &mut Vec<u8>, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, value).is_err() {
        // Writing a `str` into a `Vec` cannot fail; an empty string keeps the line valid.
        out.extend_from_slice(b"\"\"");
    }
}

/// Events a previous process left in the spool, to store again.
#[derive(Debug, Default)]
pub struct Leftover {
    pub events: Vec<(UsageEvent, u64)>,
    /// Lines that could not be read (a torn last line).
    pub unreadable: usize,
}

#[derive(Debug, Default)]
struct Segment {
    appended: u64,
    stored: u64,
    bytes: u64,
    /// The lane appending to it, while it is that lane's open segment.
    lane: Option<usize>,
}

/// Where one thread (or a few) appends: its own open segment, so that the serving threads
/// never wait for each other's `write(2)`. Opened at its first append.
#[derive(Debug, Default)]
struct Lane {
    open: Option<(u64, File)>,
}

/// The spool of one gateway; see the module's documentation.
///
/// Appends go to lanes, each with its own segment file and lock, picked by the appending
/// thread. With one file and one lock, both serving threads of a 2-core machine took the lock
/// around every `write(2)`: `perf` put 1.4% of the process in contended futex calls
/// (bench/README.md, 2026-12-08).
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    lanes: Box<[Mutex<Lane>]>,
    /// Every live segment's counts. Taken after a lane's lock, never before it, and never
    /// held across I/O.
    segments: Mutex<BTreeMap<u64, Segment>>,
    /// The number of the next segment a lane opens.
    next_number: AtomicU64,
    /// Bytes in every live segment.
    bytes: AtomicU64,
    max_bytes: u64,
    /// Held for the lock on the directory.
    _lock: File,
}

/// The lane of the calling thread: threads are given lanes in turn the first time they append
/// (a serving thread appends for every request, so each gets one of its own when there are
/// enough lanes; a shared lane is still correct, only contended).
fn lane_of_thread(lanes: usize) -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static TURN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    let turn = TURN.with(|t| *t);
    (turn % lanes.max(1) as u64) as usize
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("usage-{number:012}.jsonl"))
}

fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("usage-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

fn open_segment(dir: &Path, number: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, number);
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path).map_err(io(&path))
}

fn make_dir(dir: &Path) -> Result<(), SpoolError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io(dir))
}

/// Locks a process's spool directory: `None` when another process holds it (it is alive).
fn lock_dir(dir: &Path) -> Result<Option<File>, SpoolError> {
    let path = dir.join("spool.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(source)) => Err(SpoolError::Io { path, source }),
    }
}

/// Moves the segments of every process directory under `root` whose lock is free (its
/// process is gone) into `mine`, numbered after each other, and removes those directories.
/// A directory another live process holds is left alone; two processes starting at once
/// cannot both take one (the lock decides).
fn adopt_orphans(root: &Path, mine: &Path) -> Result<(), SpoolError> {
    let mut next = 1;
    let entries = std::fs::read_dir(root).map_err(io(root))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let dir = entry.path();
        // Only process directories (`p<pid>-<nanos>`): a directory being made (`.p...`, not
        // locked yet) or anything else that lives under the root is left alone.
        if dir == mine || !is_process_dir(&dir) {
            continue;
        }
        if let Err(err) = adopt(&dir, mine, &mut next) {
            tracing::warn!(error = %err, dir = %dir.display(), "could not take over a usage spool left by a stopped process; its events stay there for the next start");
        }
    }
    Ok(())
}

/// Whether `path` is a process's spool directory by its name.
fn is_process_dir(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some((pid, nanos)) = name.strip_prefix('p').and_then(|rest| rest.split_once('-')) else {
        return false;
    };
    !pid.is_empty()
        && !nanos.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && nanos.bytes().all(|b| b.is_ascii_digit())
        && path.is_dir()
}

/// Moves the segments of one stopped process's directory into `mine` and removes it.
fn adopt(dir: &Path, mine: &Path, next: &mut u64) -> Result<(), SpoolError> {
    let Some(_held) = lock_dir(dir)? else {
        return Ok(());
    };
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            segment_number(&path).map(|n| (n, path))
        })
        .collect();
    segments.sort();
    for (_, path) in segments {
        let target = segment_path(mine, *next);
        *next += 1;
        std::fs::rename(&path, &target).map_err(io(&path))?;
    }
    let _ = std::fs::remove_file(dir.join("spool.lock"));
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

impl Spool {
    /// Opens a spool of its own under `root` (made if missing), takes over what processes
    /// that are gone left there, and reads it back.
    pub fn open(root: &Path, max_bytes: u64) -> Result<(Spool, Leftover), SpoolError> {
        make_dir(root)?;
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("p{}-{unique}", std::process::id());
        // Made and locked under a name no other process adopts, then renamed: no process can
        // take it for a stopped one's between its making and its locking.
        let making = root.join(format!(".{name}"));
        make_dir(&making)?;
        let lock = lock_dir(&making)?.ok_or_else(|| SpoolError::Locked(making.clone()))?;
        let dir = root.join(name);
        std::fs::rename(&making, &dir).map_err(io(&making))?;
        adopt_orphans(root, &dir)?;
        Spool::read_back(&dir, lock, max_bytes)
    }

    /// Reads the segments in `dir` (its own, and those it adopted).
    fn read_back(dir: &Path, lock: File, max_bytes: u64) -> Result<(Spool, Leftover), SpoolError> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let path = entry.path();
                segment_number(&path).map(|n| (n, path))
            })
            .collect();
        found.sort();
        let mut leftover = Leftover::default();
        let mut segments = BTreeMap::new();
        let mut total = 0;
        for (number, path) in &found {
            let file = File::open(path).map_err(io(path))?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut appended = 0;
            for line in std::io::BufReader::new(file).split(b'\n') {
                let line = line.map_err(io(path))?;
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<UsageEvent>(&line) {
                    Ok(event) => {
                        leftover.events.push((event, *number));
                        appended += 1;
                    }
                    Err(_) => leftover.unreadable += 1,
                }
            }
            if appended == 0 {
                let _ = std::fs::remove_file(path);
                continue;
            }
            total += bytes;
            segments.insert(
                *number,
                Segment {
                    appended,
                    stored: 0,
                    bytes,
                    lane: None,
                },
            );
        }
        let number = found.last().map_or(1, |(n, _)| n + 1);
        // A lane for every serving thread (one a core) and as many again for the threads
        // that append now and then (a request dropped mid-way queues its event from the
        // background runtime).
        let lanes = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        let spool = Spool {
            dir: dir.to_owned(),
            lanes: (0..lanes).map(|_| Mutex::new(Lane::default())).collect(),
            segments: Mutex::new(segments),
            next_number: AtomicU64::new(number),
            bytes: AtomicU64::new(total),
            max_bytes,
            _lock: lock,
        };
        Ok((spool, leftover))
    }

    /// Bytes of events not yet stored (or not yet known to be).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the spool has grown past its bound: new requests should wait.
    pub fn full(&self) -> bool {
        self.bytes() > self.max_bytes
    }

    /// Appends an event; returns its segment, to report when it is stored. An event that could
    /// not be written (a full disk) is logged and goes to the database unspooled (`None`).
    pub fn append(&self, event: &UsageEvent) -> Option<u64> {
        let line = encode_line(event);
        let index = lane_of_thread(self.lanes.len());
        let mut lane = lock(&self.lanes[index]);
        if lane.open.is_none() {
            lane.open = self.open_next(index);
        }
        let (number, file) = lane.open.as_mut()?;
        let number = *number;
        if let Err(err) = file.write_all(&line) {
            tracing::error!(error = %err, request_id = %event.request_id, "could not spool a usage event; it is only in memory until stored");
            // A write cut short (a full disk) must not leave half a line for the next event to
            // be appended to, unreadable: the segment is cut back to its last whole line, or
            // the lane moves to a new segment.
            let whole = lock(&self.segments).get(&number).map_or(0, |s| s.bytes);
            if let Err(err) = file.set_len(whole) {
                tracing::error!(error = %err, "could not cut a torn line from the usage spool");
                self.close_lane(&mut lane);
            }
            return None;
        }
        let bytes = line.len() as u64;
        let full = {
            let mut segments = lock(&self.segments);
            let segment = segments.entry(number).or_default();
            segment.appended += 1;
            segment.bytes += bytes;
            segment.bytes >= SEGMENT_BYTES
        };
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if full {
            self.close_lane(&mut lane);
        }
        Some(number)
    }

    /// Opens a new segment for lane `index`.
    fn open_next(&self, index: usize) -> Option<(u64, File)> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        match open_segment(&self.dir, number) {
            Ok(file) => {
                let mut segments = lock(&self.segments);
                segments.insert(
                    number,
                    Segment {
                        lane: Some(index),
                        ..Segment::default()
                    },
                );
                Some((number, file))
            }
            Err(err) => {
                tracing::error!(error = %err, "could not start a usage spool segment");
                None
            }
        }
    }

    /// The lane's segment takes no more events: its next append opens a new one. The closed
    /// segment goes once its events are stored (at once if they are).
    fn close_lane(&self, lane: &mut Lane) {
        let Some((number, _)) = lane.open.take() else {
            return;
        };
        let done = {
            let mut segments = lock(&self.segments);
            match segments.get_mut(&number) {
                Some(segment) => {
                    segment.lane = None;
                    segment.stored >= segment.appended
                }
                None => false,
            }
        };
        if done {
            self.delete([number]);
        }
    }

    /// Deletes segments whose events are all stored and that no lane appends to.
    fn delete(&self, numbers: impl IntoIterator<Item = u64>) {
        for number in numbers {
            let path = segment_path(&self.dir, number);
            if let Err(err) = std::fs::remove_file(&path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %err, path = %path.display(), "could not delete a stored usage spool segment");
                    continue;
                }
            }
            if let Some(segment) = lock(&self.segments).remove(&number) {
                self.bytes.fetch_sub(segment.bytes, Ordering::Relaxed);
            }
        }
    }

    /// The writer has stopped with every event stored: the process's directory goes.
    pub fn retire(&self) {
        if self.bytes() != 0 {
            tracing::warn!(
                bytes = self.bytes(),
                "usage events left in the spool; the next start stores them"
            );
            return;
        }
        let numbers: Vec<u64> = lock(&self.segments).keys().copied().collect();
        for number in numbers {
            let _ = std::fs::remove_file(segment_path(&self.dir, number));
        }
        let _ = std::fs::remove_file(self.dir.join("spool.lock"));
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// The writer stored the events of these segments: segments whose events are all stored
    /// are deleted, and a lane's open one emptied in place.
    pub fn stored(&self, numbers: impl IntoIterator<Item = u64>) {
        let mut closed = Vec::new();
        let mut open = Vec::new();
        {
            let mut segments = lock(&self.segments);
            // Lanes interleave their segments in a batch: each is looked at once.
            let mut touched = BTreeSet::new();
            for number in numbers {
                if let Some(segment) = segments.get_mut(&number) {
                    segment.stored += 1;
                    touched.insert(number);
                }
            }
            for number in touched {
                match segments.get(&number) {
                    Some(s) if s.stored >= s.appended => match s.lane {
                        Some(lane) => open.push((lane, number)),
                        None => closed.push(number),
                    },
                    _ => {}
                }
            }
        }
        self.delete(closed);
        for (index, number) in open {
            self.empty(index, number);
        }
    }

    /// Empties lane `index`'s open segment `number` if its events are all stored: appends go
    /// on at its (new) start. The lane's lock, then the counts', as in [`Spool::append`]; under
    /// the lane's lock no event can be appended between the check and the emptying.
    fn empty(&self, index: usize, number: u64) {
        let Some(lane) = self.lanes.get(index) else {
            return;
        };
        let mut lane = lock(lane);
        match lane.open.as_mut() {
            Some((open, file)) if *open == number => {
                let (appended, bytes) = match lock(&self.segments).get(&number) {
                    Some(s) if s.stored >= s.appended => (s.appended, s.bytes),
                    _ => return,
                };
                // The counts' lock is not held across the truncation (every lane's appends
                // take it); under the lane's lock nothing is appended to this segment, and
                // the counts are taken back by what was seen.
                if let Err(err) = file.set_len(0) {
                    tracing::warn!(error = %err, "could not empty the usage spool segment");
                    return;
                }
                if let Some(segment) = lock(&self.segments).get_mut(&number) {
                    segment.appended -= appended;
                    segment.stored = segment.stored.saturating_sub(appended);
                    segment.bytes -= bytes;
                    self.bytes.fetch_sub(bytes, Ordering::Relaxed);
                }
            }
            // Closed since (it filled up): closing deleted it, its events being stored, or
            // the store of the events appended after decides.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::background::metering::tests::event;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    impl Spool {
        /// The segments lanes append to.
        fn open_segments(&self) -> Vec<u64> {
            self.lanes
                .iter()
                .filter_map(|lane| lock(lane).open.as_ref().map(|(n, _)| *n))
                .collect()
        }
    }

    fn open(root: &Path) -> (Spool, Leftover) {
        Spool::open(root, 1 << 30).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_spool_line_is_what_serde_json_writes_for_the_event_even_for_hostile_strings() {
        let hostile = [
            "plain",
            "",
            "quote \" and backslash \\ end",
            "new\nline\ttab\u{1}\u{1f}",
            "del \u{7f}, unicode é ✓ 🦀, a lone \\u0000",
            "</script>{\"usage\":1}",
        ];
        for (n, text) in hostile.iter().enumerate() {
            let mut e = event(n);
            e.model_requested = (*text).to_owned();
            e.model_served = format!("{text}-served");
            e.endpoint = (*text).to_owned();
            e.request_id = format!("req_{text}");
            e.client_ip = (n % 2 == 0).then(|| (*text).to_owned());
            e.input_tokens = -(n as i64);
            e.output_tokens = i64::MAX - n as i64;
            e.cost = tollgate_core::MicroUsd(i64::MIN + n as i64);
            e.status = u16::MAX;
            // Every other event carries objects its provider made (the ownership ledger's).
            if n % 2 == 1 {
                e.objects = vec![tollgate_store::CreatedObject {
                    provider: (*text).to_owned(),
                    kind: tollgate_core::objects::ObjectKind::FineTuningJob,
                    id: format!("ftjob-{n}"),
                }];
            }
            let mut expected = serde_json::to_vec(&e).unwrap_or_else(|err| panic!("{err}"));
            expected.push(b'\n');
            let line = encode_line(&e);
            assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&expected),
                "{text:?}"
            );
            let back: UsageEvent =
                serde_json::from_slice(&line).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(back, e);
        }
    }

    #[test]
    fn what_a_dead_process_spooled_is_read_back_and_a_torn_line_skipped() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, leftover) = open(root.path());
        assert!(leftover.events.is_empty());
        for n in 0..3 {
            assert!(spool.append(&event(n)).is_some());
        }
        assert!(spool.bytes() > 0);
        // The process dies: nothing stored, a line half written.
        let last = segment_path(&spool.dir, spool.open_segments()[0]);
        drop(spool);
        let mut torn = OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap_or_else(|e| panic!("{e}"));
        torn.write_all(br#"{"request_id":"req_"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let (spool, leftover) = open(root.path());
        let ids: Vec<String> = leftover
            .events
            .iter()
            .map(|(e, _)| e.request_id.clone())
            .collect();
        assert_eq!(ids, [0, 1, 2].map(|n| event(n).request_id));
        assert_eq!(leftover.events[0].0, event(0), "read back field for field");
        assert_eq!(leftover.unreadable, 1);
        assert_eq!(
            std::fs::read_dir(root.path()).map(|d| d.count()).ok(),
            Some(1),
            "the dead process's directory was taken over and removed"
        );
        // Stored: the adopted segment goes.
        spool.stored(leftover.events.iter().map(|(_, s)| *s));
        assert!(
            files(&spool.dir).is_empty(),
            "a lane opens a segment when it appends"
        );
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn segments_go_when_all_their_events_are_stored_and_the_current_one_is_emptied() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, _) = open(root.path());
        let per_event = serde_json::to_vec(&event(0)).map_or(0, |v| v.len() as u64 + 1);
        let count = (SEGMENT_BYTES / per_event) as usize + 10;
        let segments: Vec<u64> = (0..count).filter_map(|n| spool.append(&event(n))).collect();
        assert_eq!(segments.len(), count);
        assert_eq!(files(&spool.dir).len(), 2, "a second segment past the size");
        // Stored out of order, the first segment's first event last.
        let (first, rest) = segments.split_at(1);
        spool.stored(rest.iter().copied());
        assert_eq!(
            files(&spool.dir).len(),
            2,
            "one event of the first is not stored yet"
        );
        spool.stored(first.iter().copied());
        assert_eq!(files(&spool.dir).len(), 1);
        assert_eq!(spool.bytes(), 0);
        let current = segment_path(&spool.dir, spool.open_segments()[0]);
        assert_eq!(
            std::fs::metadata(&current).map(|m| m.len()).ok(),
            Some(0),
            "the current segment is emptied, not left to grow"
        );
        assert!(spool.append(&event(1)).is_some());
        drop(spool);
        let (_, again) = open(root.path());
        assert_eq!(
            again.events.len(),
            1,
            "appends after emptying are at the start"
        );
    }

    #[test]
    fn threads_append_beside_a_writer_storing_and_every_event_is_kept_until_stored() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, _) = open(root.path());
        let (tx, rx) = std::sync::mpsc::channel::<(usize, u64)>();
        let per_thread = 3_000;
        let (unstored, all) = std::thread::scope(|scope| {
            let spool = &spool;
            for t in 0..4 {
                let tx = tx.clone();
                scope.spawn(move || {
                    for n in t * per_thread..(t + 1) * per_thread {
                        let segment = spool.append(&event(n));
                        tx.send((n, segment.unwrap_or_else(|| panic!("not spooled"))))
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                });
            }
            drop(tx);
            // The writer stores what arrives in batches while the threads append, and never
            // stores the last 100.
            let writer = scope.spawn(move || {
                let mut held = Vec::new();
                let mut all = Vec::new();
                for spooled in rx {
                    all.push(spooled);
                    held.push(spooled);
                    if held.len() >= 164 {
                        spool.stored(held.drain(..64).map(|(_, s)| s));
                    }
                }
                let tail = held.split_off(held.len() - 100);
                spool.stored(held.into_iter().map(|(_, s)| s));
                (tail, all)
            });
            writer
                .join()
                .unwrap_or_else(|_| panic!("the writer panicked"))
        });
        assert!(spool.bytes() > 0);
        drop(spool);
        let (spool, leftover) = open(root.path());
        assert_eq!(leftover.unreadable, 0, "no line torn by another thread's");
        let mut ids: Vec<String> = leftover
            .events
            .iter()
            .map(|(e, _)| e.request_id.clone())
            .collect();
        ids.sort();
        let read = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), read, "each event once");
        for (n, _) in &unstored {
            assert!(
                ids.binary_search(&event(*n).request_id).is_ok(),
                "unstored event {n} kept"
            );
        }
        // Nothing else is read back than what shares a segment with an unstored event.
        let kept: std::collections::HashSet<u64> = unstored.iter().map(|(_, s)| *s).collect();
        let mut could: Vec<String> = all
            .iter()
            .filter(|(_, s)| kept.contains(s))
            .map(|(n, _)| event(*n).request_id)
            .collect();
        could.sort();
        assert!(
            ids.iter().all(|id| could.binary_search(id).is_ok()),
            "stored segments went, or were emptied"
        );
        spool.stored(leftover.events.iter().map(|(_, s)| *s));
        assert!(files(&spool.dir).is_empty());
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn a_full_spool_says_so_and_a_live_process_s_spool_is_never_taken() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (spool, _) = Spool::open(root.path(), 500).unwrap_or_else(|e| panic!("{e}"));
        assert!(!spool.full());
        for n in 0..3 {
            spool.append(&event(n));
        }
        assert!(spool.full());
        let (second, leftover) = open(root.path());
        assert!(
            leftover.events.is_empty(),
            "a replica beside a live one takes none of its events"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(segment_path(&spool.dir, 1))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600, "usage records are the owner's alone");
        }
        drop(spool);
        drop(second);
        let (_, leftover) = open(root.path());
        assert_eq!(
            leftover.events.len(),
            3,
            "both gone: the events are taken over once"
        );
    }
}
