//! The child-process machinery of the real SIGKILL tests (`real_crash.rs`,
//! `real_crash_races.rs`): the test binary re-executes itself to run one
//! child test that drives an engine, the parent kills it at a random moment
//! and reads what it journaled.
//!
//! The journal is a file written with one `write(2)` per line, each made
//! before the child goes on: the page cache outlives a SIGKILL, so every
//! line the child finished is there, and a line cut by the kill has no
//! newline.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardblob_shards::rng::splitmix64;

/// The value of environment variable `name`, parsed; panics naming it.
pub fn env_number<T: std::str::FromStr>(name: &str) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} must be set to a number"))
}

/// The seed in `name` if set, else a fresh one.
pub fn seed_from_env(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .map(|s| s.parse().unwrap_or_else(|_| panic!("{name} is a u64")))
        .unwrap_or_else(fresh_seed)
}

/// A seed from the clock and the process id.
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix64(nanos ^ (std::process::id() as u64) << 32)
}

/// Opens (appending) the journal the child writes at `path`.
pub fn open_journal(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("child opens its journal")
}

/// One line, one write(2): complete in the page cache before we go on.
pub fn report(mut journal: &File, line: String) {
    journal
        .write_all(line.as_bytes())
        .expect("child writes its journal");
}

/// The complete lines of a journal: a last line without its newline was
/// cut by the kill and is left out.
pub fn complete_lines(text: &str) -> std::str::Lines<'_> {
    text[..text.rfind('\n').map_or(0, |i| i + 1)].lines()
}

/// A test's work directory under the target's temporary directory, fresh;
/// removed when the test passes, kept (and named) when it fails.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn new(prefix: &str) -> WorkDir {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{prefix}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create the work directory");
        WorkDir(root)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            eprintln!("work directory kept at {}", self.0.display());
        }
    }
}

/// This process's open files under `dir`.
pub fn files_open_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target.starts_with(dir))
                .collect()
        })
        .unwrap_or_default()
}

/// A child test process, to be killed.
pub struct Victim {
    child: Child,
    stderr: PathBuf,
}

impl Victim {
    /// Runs test `child_test` of this binary alone, with `envs`; its stderr
    /// goes to `child-stderr.log` in `dir`.
    pub fn spawn(child_test: &str, dir: &Path, envs: &[(&str, String)]) -> Victim {
        let stderr = dir.join("child-stderr.log");
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn the child");
        Victim { child, stderr }
    }

    /// Waits until `ready()` holds (the child has started its workload, or
    /// finished a check); `Err` if the child exits first or `timeout`
    /// passes.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        ready: impl Fn() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("child exited while the parent waited: {status}"));
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "child not ready after {timeout:?} (engine start, open or a check hangs?)"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILLs the child (unless it exited) and reaps it: the kernel has
    /// finished its io_uring requests then, and its flock is gone. `ready`
    /// is how waiting for it went. Returns whether the kill landed; `Err`
    /// (with the child's stderr) if it was not ready or failed.
    pub fn kill(mut self, ready: Result<(), String>) -> Result<bool, String> {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for the child");
        let stderr = fs::read_to_string(&self.stderr).unwrap_or_default();
        ready.map_err(|why| format!("{why}; child stderr:\n{stderr}"))?;
        let killed = status.signal() == Some(libc::SIGKILL);
        if !killed && !status.success() {
            return Err(format!(
                "the child failed ({status}); its stderr:\n{stderr}"
            ));
        }
        Ok(killed)
    }
}
