//! [`SendStorage`]/[`SendBlob`] for the thread-safe handles.
//!
//! `Storage` and `Blob` declare their futures with `async fn`, which promises
//! no `Send`: a shard's futures never leave its thread. A server that is
//! generic over its storage and spawns on tokio needs the promise, so the
//! `Send` variants of the traits are implemented here for [`Client`] and
//! [`ClientBlob`], whose futures are `Send` (they only hold channel ends and
//! owned bytes). Each method is the `Storage`/`Blob` method itself.

use std::future::Future;
use std::ops::RangeInclusive;

use futures_lite::Stream;
use shardblob_shards::{Blob, Result, SendBlob, SendStorage, Storage, WriteOptions};

use crate::client::{Client, ClientBlob};

impl SendStorage for Client {
    type Blob = ClientBlob;

    fn open(
        &self,
        partition: &str,
        name: &[u8],
    ) -> impl Future<Output = Result<(ClientBlob, u64)>> + Send {
        Storage::open(self, partition, name)
    }

    fn open_versioned(
        &self,
        partition: &str,
        name: &[u8],
        versions: RangeInclusive<u16>,
    ) -> impl Future<Output = Result<(ClientBlob, u64, u16)>> + Send {
        Storage::open_versioned(self, partition, name, versions)
    }

    fn remove(
        &self,
        partition: &str,
        name: Option<&[u8]>,
    ) -> impl Future<Output = Result<()>> + Send {
        Storage::remove(self, partition, name)
    }

    fn scan(&self, partition: &str) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send {
        Storage::scan(self, partition)
    }
}

impl SendBlob for ClientBlob {
    type Buf = Vec<u8>;
    type WriteBuf = Vec<u8>;

    fn read_at(&self, offset: u64, len: usize) -> impl Future<Output = Result<Vec<u8>>> + Send {
        Blob::read_at(self, offset, len)
    }

    fn read_into(&self, offset: u64, buf: &mut [u8]) -> impl Future<Output = Result<()>> + Send {
        Blob::read_into(self, offset, buf)
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = Result<(usize, Vec<u8>)>> + Send {
        Blob::read_many(self, ranges)
    }

    fn write_vectored_at(
        &self,
        offset: u64,
        bufs: &[&[u8]],
        options: WriteOptions,
    ) -> impl Future<Output = Result<()>> + Send {
        Blob::write_vectored_at(self, offset, bufs, options)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> impl Future<Output = Result<()>> + Send {
        Blob::write_at(self, offset, data)
    }

    fn alloc_buf(&self, len: usize) -> Result<Vec<u8>> {
        Blob::alloc_buf(self, len)
    }

    fn write_buf_at(
        &self,
        offset: u64,
        buf: Vec<u8>,
        options: WriteOptions,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send {
        Blob::write_buf_at(self, offset, buf, options)
    }

    fn resize(&self, len: u64) -> impl Future<Output = Result<()>> + Send {
        Blob::resize(self, len)
    }

    fn sync(&self) -> impl Future<Output = Result<()>> + Send {
        Blob::sync(self)
    }

    fn start_sync(&self) -> impl Future<Output = Result<()>> + Send {
        Blob::start_sync(self)
    }
}
