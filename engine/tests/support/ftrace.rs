//! The kernel's own record of the flushes a process makes.
//!
//! ext4 reports every fsync and fdatasync it performs as the tracepoint
//! `ext4:ext4_sync_file_enter`, with the inode: a plain `fdatasync(2)`, an
//! io_uring fsync, a directory fsync, and the flush of an `O_DSYNC` (or
//! `RWF_DSYNC`) write alike. A SIGKILL keeps the page cache, so a test that
//! kills the engine cannot see a missing flush, and a test at the file seam
//! only sees that the store *asked* for one. This module turns the
//! tracepoint on in a tracefs instance of its own and brackets operations
//! with trace markers, so a test can check which inodes ext4 really flushed
//! between an operation's start and its `Ok`.
//!
//! [`Tracer::start_filtered`] records any other tracepoint the same way
//! (`reactor_timers.rs` counts a shard's io_uring submissions).
//!
//! Needs root and tracefs (mounted at `/sys/kernel/tracing` if it is not).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TRACEFS: &str = "/sys/kernel/tracing";
/// ext4's flushes, the event [`Tracer::start`] records.
const EXT4_SYNC: &str = "ext4/ext4_sync_file_enter";
/// Per-CPU buffer of the instance: tens of thousands of events.
const BUFFER_KB: u32 = 4096;

/// One line of the trace that matters here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A marker written with [`Tracer::mark`].
    Mark(String),
    /// ext4 flushed this inode (`datasync` for fdatasync / O_DSYNC).
    Sync { ino: u64, datasync: bool },
}

/// A tracefs instance recording one event (ext4's flushes unless started
/// with [`Tracer::start_event`]) and this test's markers.
pub struct Tracer {
    dir: PathBuf,
    /// Open until the drop: tracefs refuses to remove an instance while a
    /// file of it is open, and a kept instance keeps its buffers (8 MiB on
    /// this VM) until reboot.
    marker: Option<File>,
    /// `<system>/<event>` under `events/`.
    event: String,
}

fn write_control(path: &Path, value: &str) {
    fs::write(path, value)
        .unwrap_or_else(|e| panic!("ftrace: cannot write {value:?} to {}: {e}", path.display()));
}

/// Mounts tracefs at `TRACEFS` if it is not mounted.
pub fn ensure_tracefs() {
    if Path::new(TRACEFS).join("instances").is_dir() {
        return;
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status();
    assert!(
        matches!(status, Ok(s) if s.success()) && Path::new(TRACEFS).join("instances").is_dir(),
        "ftrace: tracefs is not mounted at {TRACEFS} and mounting it failed ({status:?}); \
         this test needs root and a kernel with tracefs"
    );
}

impl Tracer {
    /// Starts recording ext4's flushes in a fresh instance named after
    /// `tag` and this process.
    pub fn start(tag: &str) -> Tracer {
        Tracer::start_event(tag, EXT4_SYNC)
    }

    /// Starts recording `event` (`<system>/<event>`, as under tracefs's
    /// `events/`) in a fresh instance named after `tag` and this process.
    pub fn start_event(tag: &str, event: &str) -> Tracer {
        Tracer::start_filtered(tag, event, None)
    }

    /// As [`Tracer::start_event`], recording only the events that match
    /// `filter` (tracefs's filter syntax, e.g. `common_pid == 1234`): the
    /// kernel drops the rest, so other processes cannot fill the buffer.
    pub fn start_filtered(tag: &str, event: &str, filter: Option<&str>) -> Tracer {
        ensure_tracefs();
        remove_orphans();
        let dir = Path::new(TRACEFS)
            .join("instances")
            .join(format!("shardblob-{tag}-{}", std::process::id()));
        if dir.exists() {
            let _ = fs::remove_dir(&dir);
        }
        fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("ftrace: cannot create {}: {e}", dir.display()));
        // One clock for every CPU: events of io_uring workers and of the
        // shard threads are ordered against the markers.
        write_control(&dir.join("trace_clock"), "global");
        write_control(&dir.join("buffer_size_kb"), &BUFFER_KB.to_string());
        if let Some(filter) = filter {
            write_control(&dir.join("events").join(event).join("filter"), filter);
        }
        let enable = dir.join("events").join(event).join("enable");
        write_control(&enable, "1");
        write_control(&dir.join("tracing_on"), "1");
        let marker = OpenOptions::new()
            .write(true)
            .open(dir.join("trace_marker"))
            .expect("ftrace: open trace_marker");
        Tracer {
            dir,
            marker: Some(marker),
            event: event.to_string(),
        }
    }

    /// The instance's directory under tracefs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one marker line into the trace.
    pub fn mark(&self, text: &str) {
        let marker = self
            .marker
            .as_ref()
            .expect("ftrace: the marker is open until the drop");
        (&*marker)
            .write_all(text.as_bytes())
            .expect("ftrace: write marker");
    }

    /// Every ext4 flush and marker recorded so far, in time order.
    pub fn events(&self) -> Vec<Event> {
        self.lines().iter().filter_map(|l| parse(l)).collect()
    }

    /// Every line of the trace so far, in time order.
    pub fn lines(&self) -> Vec<String> {
        let text = fs::read_to_string(self.dir.join("trace")).expect("ftrace: read trace");
        assert!(
            !text.contains("LOST"),
            "ftrace: the buffer overflowed; raise BUFFER_KB"
        );
        text.lines().map(str::to_string).collect()
    }
}

/// Removes the instances of test processes that are gone (killed before
/// their tracer's drop): each keeps its buffers until it is removed.
fn remove_orphans() {
    let Ok(entries) = fs::read_dir(Path::new(TRACEFS).join("instances")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|name| name.starts_with("shardblob-"))
            .and_then(|name| name.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        drop(self.marker.take());
        let _ = fs::write(self.dir.join("tracing_on"), "0");
        let _ = fs::write(
            self.dir.join("events").join(&self.event).join("enable"),
            "0",
        );
        let _ = fs::remove_dir(&self.dir);
    }
}

fn parse(line: &str) -> Option<Event> {
    if let Some((_, text)) = line.split_once("tracing_mark_write: ") {
        return Some(Event::Mark(text.trim_end().to_string()));
    }
    let (_, fields) = line.split_once("ext4_sync_file_enter: ")?;
    let mut words = fields.split_whitespace();
    let mut value = |key: &str| {
        words
            .by_ref()
            .skip_while(|w| *w != key)
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    };
    let ino = value("ino")?;
    let datasync = value("datasync")? != 0;
    Some(Event::Sync { ino, datasync })
}

/// The inode number of `path`.
pub fn inode(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// The flushes recorded between the markers `begin` and `end` (exclusive),
/// or `None` if either marker is missing.
pub fn flushes_between(events: &[Event], begin: &str, end: &str) -> Option<Vec<(u64, bool)>> {
    let is_mark = |event: &Event, text: &str| *event == Event::Mark(text.into());
    Some(
        between(events, is_mark, begin, end)?
            .iter()
            .filter_map(|e| match e {
                Event::Sync { ino, datasync } => Some((*ino, *datasync)),
                Event::Mark(_) => None,
            })
            .collect(),
    )
}

/// The io_uring submissions of thread `tid` in `lines` (a trace of
/// `io_uring/io_uring_submit_req`), as their opcodes (`READ_FIXED`, ...).
pub fn io_uring_opcodes(lines: &[String], tid: i32) -> Vec<String> {
    let task = format!("-{tid}");
    lines
        .iter()
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|comm_tid| comm_tid.ends_with(&task))
        })
        .filter_map(|line| {
            line.split_once("opcode ")?
                .1
                .split(',')
                .next()
                .map(String::from)
        })
        .collect()
}

/// The lines after the marker `begin` and before the marker `end`, or
/// `None` if either marker is missing.
pub fn lines_between<'a>(lines: &'a [String], begin: &str, end: &str) -> Option<&'a [String]> {
    let is_mark = |line: &String, text: &str| parse(line) == Some(Event::Mark(text.into()));
    between(lines, is_mark, begin, end)
}

/// The items after the first marker `begin` and before the next marker
/// `end`, as `is_mark` tells them, or `None` if either is missing.
fn between<'a, T>(
    items: &'a [T],
    is_mark: impl Fn(&T, &str) -> bool,
    begin: &str,
    end: &str,
) -> Option<&'a [T]> {
    let start = items.iter().position(|item| is_mark(item, begin))?;
    let after = &items[start + 1..];
    let stop = after.iter().position(|item| is_mark(item, end))?;
    Some(&after[..stop])
}
