//! Operations that finish once they have started, whoever stops waiting.
//!
//! Why: a caller may drop any blob future (a timeout, `select!`), but
//! dropping a glommio I/O future only asks the kernel to cancel a request
//! it has already been given; a write, truncate or flush usually happens
//! anyway. If the blob's bookkeeping (length, tail block, locks) stopped
//! with the caller, the engine's idea of the blob would part from the
//! device, and a dropped write could land on top of a later one.
//!
//! So every blob operation is split in two. The *prefix* (validation, lock
//! acquisition, edge-block reads, filling the DMA buffer) runs in the
//! caller's future and has no effect when dropped. The *commit* (the device
//! calls that change the file and the state update that goes with them) is a
//! boxed `'static` future, [`Committed`], polled in place by the caller. If
//! the caller drops it unfinished, its `Drop` hands it to a detached task on
//! the same executor, which finishes it with the locks it holds. Such a
//! commit is an *orphan*; [`Orphans::settled`] lets a later write wait until
//! none is in flight, so a dropped write never lands after a later one.
//!
//! Cost: one `Box` per commit (a write chunk, a resize, a flush); a task is
//! spawned only for a commit whose caller left early.

use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use event_listener::Event;

use crate::sched::IoClass;
use crate::Error;

/// What a commit's output says about a failure, for the log of an orphan
/// (whose output nobody reads).
pub(crate) trait Outcome {
    fn failure(&self) -> Option<&Error>;
}

impl<T> Outcome for crate::Result<T> {
    fn failure(&self) -> Option<&Error> {
        self.as_ref().err()
    }
}

/// The commits of one blob that lost their caller and still run.
#[derive(Default)]
pub(crate) struct Orphans {
    count: Cell<usize>,
    settled: Event,
}

impl Orphans {
    /// Waits until no orphaned commit of this blob is in flight.
    ///
    /// Free when there is none (one `Cell` read), the common case.
    pub(crate) async fn settled(&self) {
        // Bounded: every orphan finishes (its device calls complete or fail),
        // and a new one appears only when a caller drops a commit.
        while self.count.get() > 0 {
            let listener = self.settled.listen();
            if self.count.get() == 0 {
                break;
            }
            listener.await;
        }
    }

    /// Whether one is in flight.
    pub(crate) fn in_flight(&self) -> bool {
        self.count.get() > 0
    }

    /// Runs `commit` to the end on a detached task of this executor.
    pub(crate) fn adopt(self: &Rc<Self>, commit: Pin<Box<dyn Future<Output = ()>>>) {
        if std::thread::panicking() {
            // Unwinding: dropping the commit asks the kernel to cancel what it
            // issued; nothing could observe the blob afterwards anyway.
            return;
        }
        let orphan = OrphanGuard::new(self.clone());
        let task = async move {
            let _orphan = orphan;
            commit.await;
        };
        // glommio's spawn panics when no executor runs on this thread (a
        // future dropped after its executor stopped; glommio itself leaks
        // rather than drops the tasks left at teardown). Then the commit is
        // dropped with the task, as above, and the guard still counts down.
        let _ = catch_unwind(AssertUnwindSafe(move || {
            glommio::spawn_local(task).detach();
        }));
    }
}

/// Counts one orphan while it lives.
struct OrphanGuard(Rc<Orphans>);

impl OrphanGuard {
    fn new(orphans: Rc<Orphans>) -> OrphanGuard {
        orphans.count.set(orphans.count.get() + 1);
        OrphanGuard(orphans)
    }
}

impl Drop for OrphanGuard {
    fn drop(&mut self) {
        let count = self.0.count.get();
        debug_assert!(count > 0, "orphan count underflow");
        self.0.count.set(count.saturating_sub(1));
        if count == 1 {
            self.0.settled.notify(usize::MAX);
        }
    }
}

/// A started commit: finishes even if the caller drops it (module docs).
pub(crate) struct Committed<T: Outcome + 'static> {
    commit: Option<Pin<Box<dyn Future<Output = T>>>>,
    orphans: Rc<Orphans>,
}

impl<T: Outcome + 'static> Committed<T> {
    /// Starts `commit`; from here on it runs to the end, in the I/O class
    /// of its caller even when it finishes on a task of its own.
    pub(crate) fn new(
        orphans: &Rc<Orphans>,
        commit: impl Future<Output = T> + 'static,
    ) -> Committed<T> {
        Committed {
            commit: Some(Box::pin(IoClass::current().scope(commit))),
            orphans: orphans.clone(),
        }
    }
}

impl<T: Outcome + 'static> Future for Committed<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(commit) = self.commit.as_mut() else {
            panic!("a Committed future was polled after it completed");
        };
        let output = std::task::ready!(commit.as_mut().poll(cx));
        self.commit = None;
        Poll::Ready(output)
    }
}

impl<T: Outcome + 'static> Drop for Committed<T> {
    fn drop(&mut self) {
        if let Some(commit) = self.commit.take() {
            self.orphans.adopt(Box::pin(async move {
                if let Some(e) = commit.await.failure() {
                    tracing::warn!(error = %e, "a commit whose caller left failed");
                }
            }));
        }
    }
}
