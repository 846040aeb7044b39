//! Progress on stderr: one line per case, redrawn in place on a terminal
//! (appended when stderr is a file), with elapsed time and an estimate of
//! what is left. Shared between threads (a peer's executor thread reports
//! its own cases), so the state sits behind a mutex.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct State {
    total_steps: usize,
    done_steps: usize,
    started: Instant,
    step_estimate: Duration,
}

pub struct Progress {
    state: Mutex<State>,
    terminal: bool,
}

fn clock(duration: Duration) -> String {
    let s = duration.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

impl Progress {
    /// `total_steps` cases to run, each expected to take about `step_estimate`.
    pub fn new(total_steps: usize, step_estimate: Duration) -> Progress {
        Progress {
            state: Mutex::new(State {
                total_steps,
                done_steps: 0,
                started: Instant::now(),
                step_estimate,
            }),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Draws `line` as the progress line; one that must `stay` ends with a
    /// newline on a terminal too, so the next draw starts below it.
    fn draw(&self, line: &str, stay: bool) {
        let mut err = std::io::stderr().lock();
        if self.terminal && !stay {
            let _ = write!(err, "\r\x1b[K{line}");
        } else if self.terminal {
            let _ = writeln!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Resets the number of steps (once the targets that will run are known).
    pub fn set_total(&self, total_steps: usize) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .total_steps = total_steps;
    }

    /// A case starts: `[ 12/91  0:40, ~1:20 left] same-shard  rand-read-4KiB qd32`.
    pub fn step(&self, target: &str, what: &str) {
        let line = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.done_steps += 1;
            let left_steps = state.total_steps.saturating_sub(state.done_steps - 1);
            let width = state.total_steps.to_string().len();
            format!(
                "[{:>width$}/{}  {}, ~{} left] {target:<18} {what}",
                state.done_steps,
                state.total_steps,
                clock(state.started.elapsed()),
                clock(state.step_estimate * left_steps as u32),
            )
        };
        self.draw(&line, false);
    }

    /// A message outside the case count (prefill, a skipped peer); the
    /// next step draws over it on a terminal.
    pub fn note(&self, message: &str) {
        self.draw(&self.stamped(message), false);
    }

    /// A message that stays on a terminal: its own line, above the
    /// progress line (the engine-side view of a case).
    pub fn print(&self, message: &str) {
        self.draw(&self.stamped(message), true);
    }

    /// `message` after the time since the start: `[0:40] message`.
    fn stamped(&self, message: &str) -> String {
        let elapsed = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started
            .elapsed();
        format!("[{}] {message}", clock(elapsed))
    }

    /// Ends the progress line so the report starts on a fresh one.
    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
