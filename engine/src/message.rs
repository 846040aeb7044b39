//! What travels between threads: one request, answered once.
//!
//! Requests carry owned, `Send` data (bytes copied once at the sender, or a
//! zero-copy write's buffer moved) and a one-shot reply channel. A blob opened through a forwarded request lives
//! in the owning shard's table under a [`BlobId`]; remote handles name it by
//! that id. The owning shard puts the open's close guard in the reply
//! itself, so a reply lost with a dropped future still closes the open.
//!
//! Each queued request travels in an [`Envelope`] with its I/O class
//! ([`Request::class`]: the sending future's, or a write's
//! `WriteOptions::THROUGHPUT`; a `spawn_on` job's is that of the call),
//! which also chose the queue and the byte budget of that class, and the
//! share of the budget it holds ([`Request::cost_bytes`]), given back when
//! the shard has served it; a `read_many` hands it on to its stream, which
//! holds it until the items are read.

use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;

use shardblob_shards::{Error, IoClass, Result, WriteOptions};

use crate::local::ShardStorage;
use crate::remote::OpenGuard;
use crate::transport::Charge;

/// A blob opened on its shard on behalf of another thread.
pub type BlobId = u64;

/// The sending half of a one-shot reply.
pub type Reply<T> = async_channel::Sender<Result<T>>;

/// Makes a one-shot reply channel.
pub fn reply<T>() -> (Reply<T>, async_channel::Receiver<Result<T>>) {
    async_channel::bounded(1)
}

/// Awaits a reply; a dropped sender means the shard shut down.
pub async fn answer<T>(rx: async_channel::Receiver<Result<T>>) -> Result<T> {
    rx.recv().await.unwrap_or(Err(Error::Shutdown))
}

/// A user task to run on a shard, built there from the shard's storage.
pub type Spawn =
    Box<dyn FnOnce(ShardStorage) -> Pin<Box<dyn Future<Output = ()>>> + Send + 'static>;

/// One request to a shard.
pub enum Request {
    Open {
        partition: String,
        name: Vec<u8>,
        versions: RangeInclusive<u16>,
        /// Carries the guard that closes the open wherever it is dropped.
        reply: Reply<(OpenGuard, u64, u16)>,
    },
    Remove {
        partition: String,
        name: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    Scan {
        partition: String,
        reply: Reply<Vec<Vec<u8>>>,
    },
    Read {
        blob: BlobId,
        offset: u64,
        len: usize,
        reply: Reply<Vec<u8>>,
    },
    ReadMany {
        blob: BlobId,
        ranges: Vec<(u64, usize)>,
        /// Bounded by the number of ranges: the shard never waits on it.
        items: async_channel::Sender<Result<(usize, Vec<u8>)>>,
        /// Where the shard leaves the request's charge when it has sent the
        /// items: they wait in the stream until read, and the stream keeps
        /// the charge until it ends or is dropped.
        charge_back: async_channel::Sender<Charge>,
    },
    /// Answered with `data`, for the caller's next write.
    Write {
        blob: BlobId,
        offset: u64,
        data: Vec<u8>,
        options: WriteOptions,
        reply: Reply<Vec<u8>>,
    },
    Resize {
        blob: BlobId,
        len: u64,
        reply: Reply<()>,
    },
    /// Run a user task on the shard.
    Spawn(Spawn),
}

/// A queued request, the budget bytes it holds until it is served, and the
/// I/O class of the operation that sent it, which the owning shard serves
/// it in.
pub struct Envelope {
    pub request: Request,
    pub charge: Charge,
    pub class: IoClass,
}

impl Envelope {
    /// `request` in `class`, holding `charge` (taken from that class's
    /// budget).
    pub fn new(request: Request, charge: Charge, class: IoClass) -> Envelope {
        Envelope {
            request,
            charge,
            class,
        }
    }
}

impl Request {
    /// The I/O class the request is queued, admitted and served in: a
    /// write's options may name one (`WriteOptions::THROUGHPUT`), anything
    /// else runs in its sender's (`IoClass::current()`).
    pub fn class(&self) -> IoClass {
        match self {
            Request::Write { options, .. } => options.class(),
            _ => IoClass::current(),
        }
    }

    /// The bytes this request holds while queued and served: the message
    /// itself, its owned payload, and the reply it asks for where its size
    /// is known (reads). A spawn job counts its closure; the future it
    /// builds lives on the shard as a running task, not in a queue.
    pub fn cost_bytes(&self) -> u64 {
        let payload = match self {
            Request::Open {
                partition, name, ..
            } => partition.len() + name.len(),
            Request::Remove {
                partition, name, ..
            } => partition.len() + name.as_ref().map_or(0, Vec::len),
            Request::Scan { partition, .. } => partition.len(),
            Request::Read { len, .. } => *len,
            Request::ReadMany { ranges, .. } => ranges
                .iter()
                .fold(std::mem::size_of_val(ranges.as_slice()), |sum, (_, len)| {
                    sum.saturating_add(*len)
                }),
            Request::Write { data, .. } => data.len(),
            Request::Resize { .. } => 0,
            Request::Spawn(job) => std::mem::size_of_val(&**job),
        };
        let total = std::mem::size_of::<Envelope>().saturating_add(payload);
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}
