//! What the store logs, captured for the tests that check the lines an
//! operator relies on (a failure nobody else sees, space given back).
//!
//! One global subscriber, installed by the first capture, writes each line
//! to the buffer of the thread that logged it, if that thread captures.
//! Not a thread-local subscriber: `tracing` decides once per process
//! whether a log line is wanted, and a line first reached on a thread
//! without a subscriber (another test's) would stay off for the whole run.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

thread_local! {
    /// Where this thread's log lines go while it captures.
    static CAPTURING: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// The log lines of one thread, in `tracing_subscriber`'s text format.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

/// Ends its thread's capture when dropped.
pub struct Capture;

impl Logs {
    /// Captures what this thread logs (info and above) until the guard
    /// drops. Call it on the executor's thread: the blob's tasks log there.
    pub fn capture() -> (Logs, Capture) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("the store tests' only global subscriber");
        });
        let logs = Logs::default();
        CAPTURING.with(|capturing| *capturing.borrow_mut() = Some(logs.clone()));
        (logs, Capture)
    }

    /// The lines so far that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| line.contains(text))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURING.with(|capturing| capturing.borrow_mut().take());
    }
}

/// Writes to the capturing buffer of the thread it runs on, if any.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|capturing| {
            if let Some(logs) = &*capturing.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
