//! Every program in the workspace's `examples/` runs to completion: exit 0,
//! its success line on stdout, its data directory gone.
//!
//! The examples are built by `cargo build` run from here (a no-op when
//! `cargo test` has built them already, as it does unless only some tests
//! are selected), into this test binary's own target directory and profile,
//! so the binaries run are never stale. They run one at a time: each starts
//! an engine pinned to the CPUs, with locked memory for its rings.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longest an example may run before it counts as hung.
const TIMEOUT: Duration = Duration::from_secs(60);

/// `<target>/<profile>` of this test binary, which is
/// `<target>/<profile>/deps/examples-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the examples once per test run and returns the directory holding
/// their binaries.
fn examples_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let mut build = Command::new(env!("CARGO"));
        build
            .args(["build", "-p", "shardblob", "--examples", "--target-dir"])
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                build.args(["--profile", profile]);
            }
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "cargo build --examples failed: {status}");
        profile_dir.join("examples")
    })
}

/// What one run of an example printed, and how it ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// Data directories of this run still on disk.
    left_behind: Vec<PathBuf>,
}

/// Runs example `name` with `args` to completion (or kills it at
/// [`TIMEOUT`]), one example at a time, and looks for data directories it
/// left behind.
fn run(name: &str, args: &[&str]) -> Run {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let binary = examples_dir().join(name);
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{name} {args:?} still running after {TIMEOUT:?}; stdout so far:\n{}",
                out.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    // The examples name their data directory `shardblob-<name>-<pid>-<n>`.
    let prefix = format!("shardblob-{name}-{pid}-");
    let left_behind = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir readable")
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect();
    let run = Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        left_behind,
    };
    println!(
        "{name} {args:?}: {} in {elapsed:?}\n{}{}",
        run.status, run.stdout, run.stderr
    );
    run
}

/// Asserts a successful run whose stdout has `line` as one of its lines,
/// and which removed its data directory.
fn assert_success(run: &Run, line: &str) {
    assert!(
        run.status.success(),
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.lines().any(|l| l == line),
        "no line {line:?} in stdout:\n{}",
        run.stdout
    );
    assert!(
        run.left_behind.is_empty(),
        "data left behind: {:?}",
        run.left_behind
    );
}

#[test]
fn embed_glommio_runs_work_on_the_owning_shards() {
    let run = run("embed_glommio", &[]);
    assert_success(&run, "embed_glommio: ok");
    assert!(run.stdout.contains("filled its partitions"));
}

#[test]
fn tokio_app_uses_the_engine_from_tokio_tasks() {
    let run = run("tokio_app", &[]);
    assert_success(&run, "tokio_app: ok");
    assert!(run.stdout.contains("tasks wrote, synced and read back"));
}

#[test]
fn kv_server_self_test_passes() {
    let run = run("kv_server", &["--self-test"]);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("kv_server: self-test passed")),
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_success(
        &run,
        "kv_server: after a restart, every acknowledged write is there",
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("kv_server: METRICS served ")),
        "no METRICS line in stdout:\n{}",
        run.stdout
    );
}

#[test]
fn kv_server_rejects_unknown_arguments() {
    let run = run("kv_server", &["--no-such-flag"]);
    assert_eq!(run.status.code(), Some(2), "usage error exit code");
    assert!(run.stderr.contains("usage: kv_server"), "{}", run.stderr);
}
