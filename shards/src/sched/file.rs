//! [`SchedFile`]: a blob's file whose device calls go through the shard's
//! [`IoScheduler`], each in the class of the operation making it.
//!
//! It implements the file seam itself, so the blob code calls it exactly as
//! it would call the file, and the same scheduling runs on real DMA files
//! and on simulated ones. A permit is held from before the call is
//! submitted until it completes. The synchronous calls (`set_len_now`,
//! `write_block_now`, `release_past_end_now`, made on drop and open paths) and `size` (no
//! device I/O) are not scheduled.

use std::io;
use std::rc::Rc;

use futures_lite::{stream, Stream, StreamExt};
use glommio::channels::local_channel::{self, LocalSender};

use super::{Acquire, Cost, IoClass, IoScheduler};
use crate::fs::{File, WriteBuf, BLOCK_SIZE};

/// A file whose device calls are scheduled (module docs).
pub struct SchedFile<Fi> {
    /// Shared with the task that drives a batch of reads.
    inner: Rc<Fi>,
    sched: Rc<IoScheduler>,
}

/// A batch of reads cut to fit one permit: the index of its first range in
/// the whole batch, and its ranges.
type Group = (usize, Vec<(u64, usize)>);

impl<Fi: File> SchedFile<Fi> {
    /// `inner`, scheduled by `sched`.
    pub fn new(inner: Fi, sched: Rc<IoScheduler>) -> SchedFile<Fi> {
        SchedFile {
            inner: Rc::new(inner),
            sched,
        }
    }

    /// The scheduler's permit for a write of `buf`, in the caller's class.
    fn write_permit(&self, buf: &Fi::WriteBuf) -> Acquire {
        let cost = Cost::call(buf.bytes().len());
        self.sched.acquire(IoClass::current(), cost)
    }

    /// Largest single read or write: bigger ones are split into pieces of
    /// this size, each scheduled on its own.
    pub fn piece_bytes(&self) -> usize {
        self.sched.config().piece_bytes
    }
}

/// The bounds of the next group of reads of `class`, in ranges and bytes.
/// A latency group leaves the depth of bulk work's largest budget free
/// (`depth_max` less the larger of `throughput_ops_max` and
/// `throughput_ops_max_alone`, at least one range), so it fits beside
/// steady bulk work; a throughput group fits the throughput class's bounds
/// as they are now (at most `depth_max`): the alone bounds while bulk work
/// is alone, so a lone scan keeps the device as full as a lone writer does.
/// A latency call that comes while such a group is at the device waits
/// behind it, as it would behind the alone bounds' writes.
fn group_bounds(sched: &IoScheduler, class: IoClass) -> (u32, u64) {
    match class {
        IoClass::Latency => (group_ops_most(sched.config(), class), u64::MAX),
        IoClass::Throughput => sched.throughput_bounds_now(),
    }
}

/// The most ranges a group of `class` may ever take (`group_bounds`): the
/// bound of the channel that hands a batch's results over.
fn group_ops_most(config: &super::SchedConfig, class: IoClass) -> u32 {
    let bulk_ops_max = config
        .throughput_ops_max
        .max(config.throughput_ops_max_alone);
    match class {
        IoClass::Latency => config.depth_max.saturating_sub(bulk_ops_max).max(1),
        IoClass::Throughput => bulk_ops_max,
    }
}

/// Takes the next group off `ranges` (index of its first range, and its
/// ranges): as many as fit `(ops_max, bytes_max)`, at least one.
fn next_group(
    ranges: &mut std::iter::Peekable<std::iter::Enumerate<std::vec::IntoIter<(u64, usize)>>>,
    (ops_max, bytes_max): (u32, u64),
) -> Option<Group> {
    let (first, range) = ranges.next()?;
    let mut group = vec![range];
    let mut bytes = range.1 as u64;
    while let Some((_, next)) = ranges.peek() {
        let len = next.1 as u64;
        if group.len() >= ops_max as usize || bytes + len > bytes_max {
            break;
        }
        group.push(*next);
        bytes += len;
        ranges.next();
    }
    Some((first, group))
}

type Item<Fi> = io::Result<(usize, <Fi as File>::ReadBuf)>;

/// Reads `ranges` in groups, one after another, each cut to the bounds of
/// the moment just before its permit is asked for (`group_bounds`) and
/// read under that permit, into `sender` (bounded to the widest group
/// there can be). What does not fit in the channel waits in the driver's
/// hands after the group's permit is given back, and the next group starts
/// only when all of it is in: at most two groups' results wait for the
/// caller. Returns when the caller left.
async fn drive<Fi: File>(
    inner: Rc<Fi>,
    sched: Rc<IoScheduler>,
    class: IoClass,
    ranges: Vec<(u64, usize)>,
    sender: LocalSender<Item<Fi>>,
) {
    let mut ranges = ranges.into_iter().enumerate().peekable();
    // Bounded: each turn takes at least one range.
    while let Some((first, group)) = next_group(&mut ranges, group_bounds(&sched, class)) {
        let mut held: Vec<Item<Fi>> = Vec::new();
        {
            let _permit = sched.acquire(class, batch_cost(&group)).await;
            let mut reads = std::pin::pin!(inner.read_many(group));
            while let Some(item) = reads.next().await {
                let item = item.map(|(index, bytes)| (first + index, bytes));
                if !held.is_empty() || sender.is_full() {
                    held.push(item);
                } else if sender.try_send(item).is_err() {
                    return; // Closed: the caller left.
                }
            }
        }
        for item in held {
            if sender.send(item).await.is_err() {
                return;
            }
        }
    }
}

fn batch_cost(group: &[(u64, usize)]) -> Cost {
    Cost {
        ops: group.len() as u32,
        bytes: group.iter().map(|&(_, len)| len as u64).sum(),
    }
}

impl<Fi: File> File for SchedFile<Fi> {
    type WriteBuf = Fi::WriteBuf;
    type ReadBuf = Fi::ReadBuf;

    fn alloc(&self, len: usize) -> Fi::WriteBuf {
        self.inner.alloc(len)
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Fi::ReadBuf> {
        let _permit = self
            .sched
            .acquire(IoClass::current(), Cost::call(len))
            .await;
        self.inner.read_at(pos, len).await
    }

    /// The batch goes out in groups that each fit one permit of the
    /// caller's class (one group unless it is larger than the class's
    /// bounds), one group after another, driven by a task of their own that
    /// gives each group's permit back when its reads complete. Not the
    /// caller: a caller that does more I/O between two ranges it takes must
    /// not find the budget held by ranges it has not taken yet (that would
    /// deadlock once they held all of it). The task reads at most two groups
    /// ahead of what the caller took (`drive`). Dropping the stream
    /// cancels the task: no device read is issued after, and its permit
    /// goes back with it.
    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, Fi::ReadBuf)>> {
        let class = IoClass::current();
        let widest = (group_ops_most(self.sched.config(), class) as usize).min(ranges.len());
        // One group's results in the channel, one in the driver's hands.
        let (sender, receiver) = local_channel::new_bounded(widest.max(1));
        let (inner, sched) = (self.inner.clone(), self.sched.clone());
        let driver = glommio::spawn_local(class.scope(drive(inner, sched, class, ranges, sender)));
        stream::unfold((receiver, driver), |(receiver, driver)| async move {
            let item = receiver.recv().await?;
            Some((item, (receiver, driver)))
        })
    }

    async fn write_at(&self, buf: Fi::WriteBuf, pos: u64, durable: bool) -> io::Result<usize> {
        let _permit = self.write_permit(&buf).await;
        self.inner.write_at(buf, pos, durable).await
    }

    async fn write_returning(
        &self,
        buf: Fi::WriteBuf,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<Fi::WriteBuf>) {
        let _permit = self.write_permit(&buf).await;
        self.inner.write_returning(buf, pos, durable).await
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        let _permit = self.sched.acquire(IoClass::current(), Cost::call(0)).await;
        self.inner.set_len(len).await
    }

    fn set_len_now(&self, len: u64) -> io::Result<()> {
        self.inner.set_len_now(len)
    }

    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()> {
        self.inner.write_block_now(block, pos)
    }

    fn sync_data_now(&self) -> io::Result<()> {
        self.inner.sync_data_now()
    }

    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        let _permit = self.sched.acquire(IoClass::current(), Cost::call(0)).await;
        self.inner.preallocate(pos, len).await
    }

    fn release_past_end_now(&self, slack: u64) -> io::Result<bool> {
        self.inner.release_past_end_now(slack)
    }

    /// Always in the latency class: a flush is shared by the syncs of both
    /// classes (group commit).
    async fn sync_data(&self) -> io::Result<()> {
        let _permit = self.sched.acquire(IoClass::Latency, Cost::call(0)).await;
        self.inner.sync_data().await
    }

    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }
}
