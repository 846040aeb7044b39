//! Appends that wait for the RMW lock join the device write of the append
//! that holds it.
//!
//! Why: every append reaches the tail block, so appends hold the blob's
//! RMW lock one after another, and at depth 8 each waits for the device
//! writes of the seven ahead of it (issue 13, item 4: 256 B appends at
//! depth 8 ran at 0.2-0.3x of a peer writing the same pages at depth 8).
//! So a small write that finds the lock taken queues a copy of its bytes
//! here, and the next writer that holds the lock and extends the blob takes
//! the queued writes that continue its bytes, one after another (same
//! durability, same I/O class, all in one piece), into its own device
//! write, and answers them with its outcome. A queued write that nobody
//! takes waits for the lock as before. A joined write is exactly the
//! writes it holds done in order, so the contract is unchanged.
//!
//! Cancellation: a write dropped while queued leaves the queue; one dropped
//! after it was taken lands with the write that took it (its bytes were
//! copied), as any write whose commit started does. A taken write is
//! answered exactly once: by the commit that took it, or, if that commit is
//! dropped unrun (a panic, an executor gone), by its [`Run`]'s drop.
//!
//! A joined write never holds the RMW lock itself: its bytes go to the
//! device under the lock of the write that took it.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use event_listener::Event;

use crate::sched::IoClass;

use super::{Failed, WRITE_OP};

/// Most writes waiting in one blob's queue; more wait for the lock alone.
const QUEUED_WRITES_MAX: usize = 64;
/// Largest write that queues: a copy of its bytes waits in the queue.
pub(crate) const JOIN_BYTES_MAX: u64 = 16 << 10;

/// One write waiting in the queue, with a copy of its bytes.
pub(crate) struct Joiner {
    pub(crate) offset: u64,
    pub(crate) bytes: Vec<u8>,
    durable: bool,
    class: IoClass,
    state: RefCell<State>,
    changed: Event,
}

enum State {
    Queued,
    /// Its write left the queue to take the lock itself.
    Left,
    /// A writer took it into its device write.
    Taken,
    /// That write ended: its failed step and error, if it failed (until
    /// the write takes it).
    Done(Option<Failed>),
}

impl Joiner {
    pub(crate) fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// Answers the write with the outcome of the device write it joined:
    /// the same step, and the same OS error (errno) or kind and text.
    fn answer(&self, failure: Option<Failed>) {
        debug_assert!(matches!(*self.state.borrow(), State::Taken));
        *self.state.borrow_mut() = State::Done(failure);
        self.changed.notify(usize::MAX);
    }
}

/// The writes of one blob waiting to join another's device write.
#[derive(Default)]
pub(crate) struct Group {
    queued: RefCell<Vec<Rc<Joiner>>>,
}

impl Group {
    /// Queues a copy of the write of `bufs` at `offset`; `None` when the
    /// queue is full (the write then waits for the lock alone).
    pub(crate) fn queue(&self, offset: u64, bufs: &[&[u8]], durable: bool) -> Option<Queued<'_>> {
        let mut queued = self.queued.borrow_mut();
        if queued.len() >= QUEUED_WRITES_MAX {
            return None;
        }
        let joiner = Rc::new(Joiner {
            offset,
            bytes: bufs.concat(),
            durable,
            class: IoClass::current(),
            state: RefCell::new(State::Queued),
            changed: Event::new(),
        });
        debug_assert!(joiner.bytes.len() as u64 <= JOIN_BYTES_MAX);
        queued.push(joiner.clone());
        Some(Queued {
            group: self,
            joiner,
        })
    }

    /// Takes the queued writes that continue a write ending at `end`, one
    /// after another (in the order they queued), with its durability and
    /// I/O class, while they end at or before `end_max`.
    pub(crate) fn take_run(&self, end: u64, durable: bool, end_max: u64) -> Run {
        let class = IoClass::current();
        let mut queued = self.queued.borrow_mut();
        let mut run = Vec::new();
        let mut next_offset = end;
        // Bounded: each pass takes one write out of the queue or stops.
        while let Some(at) = queued.iter().position(|j| {
            j.offset == next_offset
                && j.durable == durable
                && j.class == class
                && j.end() <= end_max
        }) {
            let joiner = queued.remove(at);
            *joiner.state.borrow_mut() = State::Taken;
            joiner.changed.notify(usize::MAX);
            next_offset = joiner.end();
            run.push(joiner);
        }
        Run(run)
    }
}

/// Writes taken into one device write, until they are answered.
#[derive(Default)]
pub(crate) struct Run(Vec<Rc<Joiner>>);

impl Run {
    pub(crate) fn joiners(&self) -> &[Rc<Joiner>] {
        &self.0
    }

    /// Answers every write with the outcome of the device write they
    /// joined (`failure`: its failed step and error, if it failed).
    pub(crate) fn answer(mut self, failure: Option<&Failed>) {
        for joiner in self.0.drain(..) {
            joiner.answer(failure.map(|(op, e)| (*op, copy_error(e))));
        }
    }
}

impl Drop for Run {
    /// The commit that took them was dropped unrun (blob/commit.rs: a
    /// panic, or no executor left to finish it): their writes fail.
    fn drop(&mut self) {
        for joiner in self.0.drain(..) {
            let abandoned = "the write it joined was abandoned before it ran";
            joiner.answer(Some((WRITE_OP, io::Error::other(abandoned))));
        }
    }
}

/// `e` again: the same OS error (errno), or the same kind and text.
fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// A write's place in the queue: it leaves the queue when dropped, unless
/// a writer took it.
pub(crate) struct Queued<'a> {
    group: &'a Group,
    joiner: Rc<Joiner>,
}

impl Queued<'_> {
    /// Waits until a writer takes it.
    pub(crate) async fn taken(&self) {
        // Bounded: a taken write never goes back to the queue.
        while matches!(*self.joiner.state.borrow(), State::Queued) {
            let listener = self.joiner.changed.listen();
            if !matches!(*self.joiner.state.borrow(), State::Queued) {
                break;
            }
            listener.await;
        }
    }

    /// Leaves the queue if no writer took it yet; whether it left.
    pub(crate) fn leave(&self) -> bool {
        if !matches!(*self.joiner.state.borrow(), State::Queued) {
            return false;
        }
        *self.joiner.state.borrow_mut() = State::Left;
        let mut queued = self.group.queued.borrow_mut();
        queued.retain(|j| !Rc::ptr_eq(j, &self.joiner));
        true
    }

    /// Waits for the outcome of the device write that took it.
    pub(crate) async fn done(&self) -> Result<(), Failed> {
        // Bounded: the write that took it answers when its commit ends,
        // and a commit runs to its end (blob/commit.rs).
        loop {
            let listener = self.joiner.changed.listen();
            if let State::Done(failure) = &mut *self.joiner.state.borrow_mut() {
                return failure.take().map_or(Ok(()), Err);
            }
            listener.await;
        }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}
