//! Ctrl-C and SIGTERM remove the run's temporary data (several GiB of
//! prefilled files) before the process exits. The signals are blocked in
//! every thread (engine shards and peers inherit the mask from the main
//! thread) and taken by one watcher thread with `sigwait`, so the cleanup
//! runs as ordinary code, not in a signal handler.

use std::path::PathBuf;

/// Starts the watcher; call before any other thread is spawned.
pub fn remove_on_interrupt(work_dir: PathBuf, keep: bool) {
    // SAFETY: plain libc signal-set calls on a zeroed sigset_t we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let spawned = std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let mut signal: libc::c_int = 0;
            // SAFETY: sigwait reads our set and writes the signal number into `signal`.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            if keep {
                eprintln!("\ninterrupted: data kept in {}", work_dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&work_dir);
                eprintln!("\ninterrupted: removed {}", work_dir.display());
            }
            std::process::exit(128 + signal);
        });
    if let Err(e) = spawned {
        eprintln!("warning: no cleanup on Ctrl-C ({e})");
    }
}
