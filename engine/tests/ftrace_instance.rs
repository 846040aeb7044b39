//! The tests' tracer (`support/ftrace.rs`) gives its tracefs instance back.
//!
//! An instance keeps its ring buffers (4 MiB per CPU here) until it is
//! removed, and tracefs refuses to remove one while a file of it is open.
//! Before this test the tracer removed its directory with the marker still
//! open: every run of the suite left three instances behind, and this VM
//! had gathered 233 of them, about 2 GB of kernel memory.

mod support;

use support::ftrace::Tracer;

#[test]
fn a_dropped_tracer_leaves_no_instance_behind() {
    let tracer = Tracer::start("instance");
    tracer.mark("one marker, so the marker file was used");
    let dir = tracer.dir().to_path_buf();
    assert!(
        dir.is_dir(),
        "the instance {} exists while tracing",
        dir.display()
    );
    drop(tracer);
    assert!(
        !dir.exists(),
        "the dropped tracer left its instance {} (and its buffers) behind",
        dir.display()
    );
}

#[test]
fn a_new_tracer_removes_the_instance_a_killed_test_left() {
    // A pid no process has: above the kernel's largest (pid_max <= 2^22).
    let orphan = std::path::Path::new("/sys/kernel/tracing/instances")
        .join(format!("shardblob-killed-{}", 1u32 << 23));
    support::ftrace::ensure_tracefs();
    // Another test process's tracer may sweep it first: then this test
    // passes without proving anything, and fails only when no sweep ran.
    match std::fs::create_dir(&orphan) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("make the orphan {}: {e}", orphan.display()),
    }
    let tracer = Tracer::start("sweeper");
    let orphan_left = orphan.exists();
    drop(tracer);
    assert!(
        !orphan_left,
        "a new tracer left the orphaned instance {} behind",
        orphan.display()
    );
}
