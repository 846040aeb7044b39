//! Timing one operation: [`OpTimer`] counts it in flight from its start
//! and records it when it ends, or as cancelled when its caller drops it
//! first (the guard's drop), so a dropped future leaves no operation
//! counted in flight. [`TimedStream`] does the same for a `read_many`
//! stream, which ends when it has yielded its last range.

use std::ops::Deref;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use futures_lite::Stream;
use pin_project_lite::pin_project;

use super::{OpKind, StoreStats};
use crate::{Error, Result};

/// One operation in flight on the shard, from [`StoreStats::start`]: it
/// counts when [`ended`](OpTimer::end), or as cancelled when dropped first.
pub struct OpTimer<'a> {
    stats: &'a StoreStats,
    kind: OpKind,
    started: Instant,
    ended: bool,
}

impl<'a> OpTimer<'a> {
    /// An operation of `kind` starts now.
    pub(crate) fn start(stats: &'a StoreStats, kind: OpKind) -> OpTimer<'a> {
        stats.in_flight.set(stats.in_flight.get() + 1);
        OpTimer {
            stats,
            kind,
            started: Instant::now(),
            ended: false,
        }
    }

    /// It ended: failed with `error`, or moved `bytes` successfully.
    pub fn end(mut self, error: Option<&Error>, bytes: u64) {
        self.ended = true;
        let elapsed = self.started.elapsed();
        self.stats.record(self.kind, elapsed, error, bytes);
    }
}

impl Drop for OpTimer<'_> {
    fn drop(&mut self) {
        let stats = self.stats;
        stats.in_flight.set(stats.in_flight.get().saturating_sub(1));
        if !self.ended {
            stats.cancelled(self.kind);
        }
    }
}

pin_project! {
    /// A `read_many` stream counted as one operation of
    /// [`OpKind::ReadMany`]: it ends with its last range, its first error,
    /// or the end of the inner stream, whichever comes first.
    pub(crate) struct TimedStream<'a, S> {
        #[pin]
        inner: S,
        timer: Option<OpTimer<'a>>,
        ranges_left: usize,
        bytes: u64,
    }
}

impl<'a, S> TimedStream<'a, S> {
    /// Times `inner`, a stream that yields `ranges` items.
    pub(crate) fn new(stats: &'a StoreStats, ranges: usize, inner: S) -> TimedStream<'a, S> {
        TimedStream {
            inner,
            timer: Some(OpTimer::start(stats, OpKind::ReadMany)),
            ranges_left: ranges,
            bytes: 0,
        }
    }
}

impl<S, B> Stream for TimedStream<'_, S>
where
    S: Stream<Item = Result<(usize, B)>>,
    B: Deref<Target = [u8]>,
{
    type Item = Result<(usize, B)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let item = ready!(this.inner.poll_next(cx));
        // `Some(error)` once the operation is over (`None`: successfully).
        let ended = match &item {
            Some(Ok((_, bytes))) => {
                *this.bytes += bytes.len() as u64;
                *this.ranges_left = this.ranges_left.saturating_sub(1);
                (*this.ranges_left == 0).then_some(None)
            }
            Some(Err(e)) => Some(Some(e)),
            None => Some(None),
        };
        if let Some(error) = ended {
            if let Some(timer) = this.timer.take() {
                timer.end(error, *this.bytes);
            }
        }
        Poll::Ready(item)
    }
}
