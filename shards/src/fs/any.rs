//! [`AnyFs`]: the real or the simulated file system, chosen at run time.
//!
//! Why: the engine (router, shard threads, forwarding) should run over the
//! simulated disk as well as over DMA files, so that the crash and fault
//! simulations reach its paths too, without a type parameter on its public
//! API (`ShardStorage`, `ShardBlobHandle`, `Bytes`). The shard store stays
//! generic over the file seam (static dispatch); the engine instantiates it
//! once, with this enum. The cost on the real path is one `match` on a
//! two-variant enum per file call, next to an io_uring submission or a
//! syscall that costs microseconds: negligible. Each value comes from one
//! variant (a file from its file system, a buffer from its file), so the
//! two never mix; a mixed call is refused with `InvalidInput`, not a panic.

use std::io;
use std::ops::Deref;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::Stream;
use glommio::io::{DmaBuffer, ReadResult};
use pin_project_lite::pin_project;

use super::dma::{DmaBlobFile, DmaFs};
use super::sim::{SimFile, SimFs, SimWriteBuf};
use super::{DirEntry, File, FileSystem, WriteBuf, BLOCK_SIZE};

/// The production file system or the simulated one.
pub enum AnyFs {
    /// DMA files under a locked data directory.
    Dma(DmaFs),
    /// A view of a simulated disk (tests and simulations).
    Sim(SimFs),
}

/// A file of an [`AnyFs`].
pub enum AnyFile {
    /// A DMA file.
    Dma(DmaBlobFile),
    /// A simulated file.
    Sim(SimFile),
}

/// A write buffer of an [`AnyFile`].
pub enum AnyWriteBuf {
    /// Aligned DMA memory.
    Dma(DmaBuffer),
    /// A simulated file's buffer.
    Sim(SimWriteBuf),
}

/// The bytes of a read from an [`AnyFile`].
#[derive(Clone, Debug)]
pub enum AnyReadBuf {
    /// A view of the DMA buffer the read filled.
    Dma(ReadResult),
    /// A simulated file's bytes.
    Sim(Rc<[u8]>),
}

impl From<DmaFs> for AnyFs {
    fn from(fs: DmaFs) -> AnyFs {
        AnyFs::Dma(fs)
    }
}

impl From<SimFs> for AnyFs {
    fn from(fs: SimFs) -> AnyFs {
        AnyFs::Sim(fs)
    }
}

impl Deref for AnyReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            AnyReadBuf::Dma(bytes) => bytes,
            AnyReadBuf::Sim(bytes) => bytes,
        }
    }
}

impl WriteBuf for AnyWriteBuf {
    fn bytes(&self) -> &[u8] {
        match self {
            AnyWriteBuf::Dma(buf) => buf.bytes(),
            AnyWriteBuf::Sim(buf) => buf.bytes(),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            AnyWriteBuf::Dma(buf) => buf.bytes_mut(),
            AnyWriteBuf::Sim(buf) => buf.bytes_mut(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            AnyWriteBuf::Dma(buf) => buf.truncate(len),
            AnyWriteBuf::Sim(buf) => buf.truncate(len),
        }
    }
}

impl FileSystem for AnyFs {
    type File = AnyFile;

    async fn open_file(&self, path: &Path, create: bool) -> io::Result<AnyFile> {
        match self {
            AnyFs::Dma(fs) => fs.open_file(path, create).await.map(AnyFile::Dma),
            AnyFs::Sim(fs) => fs.open_file(path, create).await.map(AnyFile::Sim),
        }
    }

    fn create_dir(&self, path: &Path) -> io::Result<bool> {
        match self {
            AnyFs::Dma(fs) => fs.create_dir(path),
            AnyFs::Sim(fs) => fs.create_dir(path),
        }
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        match self {
            AnyFs::Dma(fs) => fs.list_dir(path),
            AnyFs::Sim(fs) => fs.list_dir(path),
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match self {
            AnyFs::Dma(fs) => fs.remove_file(path),
            AnyFs::Sim(fs) => fs.remove_file(path),
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            AnyFs::Dma(fs) => fs.remove_dir(path),
            AnyFs::Sim(fs) => fs.remove_dir(path),
        }
    }

    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        match self {
            AnyFs::Dma(fs) => fs.sync_dir(path).await,
            AnyFs::Sim(fs) => fs.sync_dir(path).await,
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        match self {
            AnyFs::Dma(fs) => fs.rename(from, to),
            AnyFs::Sim(fs) => fs.rename(from, to),
        }
    }
}

pin_project! {
    /// The `read_many` stream of either file, its bytes wrapped.
    #[project = ReadManyProj]
    enum ReadMany<D, S> {
        Dma { #[pin] inner: D },
        Sim { #[pin] inner: S },
    }
}

type Ranged<B> = io::Result<(usize, B)>;

fn wrapped<B>(item: Ranged<B>, wrap: fn(B) -> AnyReadBuf) -> Ranged<AnyReadBuf> {
    item.map(|(index, bytes)| (index, wrap(bytes)))
}

impl<D, S> Stream for ReadMany<D, S>
where
    D: Stream<Item = Ranged<ReadResult>>,
    S: Stream<Item = Ranged<Rc<[u8]>>>,
{
    type Item = Ranged<AnyReadBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            ReadManyProj::Dma { inner } => inner
                .poll_next(cx)
                .map(|item| item.map(|item| wrapped(item, AnyReadBuf::Dma))),
            ReadManyProj::Sim { inner } => inner
                .poll_next(cx)
                .map(|item| item.map(|item| wrapped(item, AnyReadBuf::Sim))),
        }
    }
}

/// A buffer of the other file system: cannot happen, since every buffer
/// comes from its file's `alloc`; refused rather than trusted.
fn foreign_buffer() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "write buffer of another file system",
    )
}

impl File for AnyFile {
    type WriteBuf = AnyWriteBuf;
    type ReadBuf = AnyReadBuf;

    fn alloc(&self, len: usize) -> AnyWriteBuf {
        match self {
            AnyFile::Dma(file) => AnyWriteBuf::Dma(file.alloc(len)),
            AnyFile::Sim(file) => AnyWriteBuf::Sim(file.alloc(len)),
        }
    }

    async fn read_at(&self, pos: u64, len: usize) -> io::Result<AnyReadBuf> {
        match self {
            AnyFile::Dma(file) => file.read_at(pos, len).await.map(AnyReadBuf::Dma),
            AnyFile::Sim(file) => file.read_at(pos, len).await.map(AnyReadBuf::Sim),
        }
    }

    fn read_many(
        &self,
        ranges: Vec<(u64, usize)>,
    ) -> impl Stream<Item = io::Result<(usize, AnyReadBuf)>> {
        match self {
            AnyFile::Dma(file) => ReadMany::Dma {
                inner: file.read_many(ranges),
            },
            AnyFile::Sim(file) => ReadMany::Sim {
                inner: file.read_many(ranges),
            },
        }
    }

    async fn write_at(&self, buf: AnyWriteBuf, pos: u64, durable: bool) -> io::Result<usize> {
        match (self, buf) {
            (AnyFile::Dma(file), AnyWriteBuf::Dma(buf)) => file.write_at(buf, pos, durable).await,
            (AnyFile::Sim(file), AnyWriteBuf::Sim(buf)) => file.write_at(buf, pos, durable).await,
            _ => Err(foreign_buffer()),
        }
    }

    async fn write_returning(
        &self,
        buf: AnyWriteBuf,
        pos: u64,
        durable: bool,
    ) -> (io::Result<usize>, Option<AnyWriteBuf>) {
        match (self, buf) {
            (AnyFile::Dma(file), AnyWriteBuf::Dma(buf)) => {
                let (written, buf) = file.write_returning(buf, pos, durable).await;
                (written, buf.map(AnyWriteBuf::Dma))
            }
            (AnyFile::Sim(file), AnyWriteBuf::Sim(buf)) => {
                let (written, buf) = file.write_returning(buf, pos, durable).await;
                (written, buf.map(AnyWriteBuf::Sim))
            }
            (_, buf) => (Err(foreign_buffer()), Some(buf)),
        }
    }

    async fn set_len(&self, len: u64) -> io::Result<()> {
        match self {
            AnyFile::Dma(file) => file.set_len(len).await,
            AnyFile::Sim(file) => file.set_len(len).await,
        }
    }

    fn set_len_now(&self, len: u64) -> io::Result<()> {
        match self {
            AnyFile::Dma(file) => file.set_len_now(len),
            AnyFile::Sim(file) => file.set_len_now(len),
        }
    }

    fn sync_data_now(&self) -> io::Result<()> {
        match self {
            AnyFile::Dma(file) => file.sync_data_now(),
            AnyFile::Sim(file) => file.sync_data_now(),
        }
    }

    fn write_block_now(&self, block: &[u8; BLOCK_SIZE as usize], pos: u64) -> io::Result<()> {
        match self {
            AnyFile::Dma(file) => file.write_block_now(block, pos),
            AnyFile::Sim(file) => file.write_block_now(block, pos),
        }
    }

    async fn preallocate(&self, pos: u64, len: u64) -> io::Result<()> {
        match self {
            AnyFile::Dma(file) => file.preallocate(pos, len).await,
            AnyFile::Sim(file) => file.preallocate(pos, len).await,
        }
    }

    fn release_past_end_now(&self, slack: u64) -> io::Result<bool> {
        match self {
            AnyFile::Dma(file) => file.release_past_end_now(slack),
            AnyFile::Sim(file) => file.release_past_end_now(slack),
        }
    }

    async fn sync_data(&self) -> io::Result<()> {
        match self {
            AnyFile::Dma(file) => file.sync_data().await,
            AnyFile::Sim(file) => file.sync_data().await,
        }
    }

    async fn size(&self) -> io::Result<u64> {
        match self {
            AnyFile::Dma(file) => file.size().await,
            AnyFile::Sim(file) => file.size().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use futures_lite::StreamExt;

    /// A simulated file through the enum: the calls reach it.
    #[test]
    fn dispatches_to_the_simulated_file() {
        let fs = AnyFs::from(SimFs::new(1));
        block_on(async {
            let file = fs.open_file(Path::new("/f"), true).await.unwrap();
            let mut buf = file.alloc(4096);
            buf.bytes_mut().fill(7);
            assert_eq!(file.write_at(buf, 0, true).await.unwrap(), 4096);
            assert_eq!(&file.read_at(4090, 10).await.unwrap()[..], &[7; 6]);
            let reads: Vec<_> = file.read_many(vec![(0, 2), (100, 3)]).collect().await;
            let mut lens: Vec<_> = reads.into_iter().map(|r| r.unwrap()).collect();
            lens.sort_by_key(|(index, _)| *index);
            assert_eq!(lens[1].1.len(), 3);
            assert_eq!(file.size().await.unwrap(), 4096);
        });
    }
}
