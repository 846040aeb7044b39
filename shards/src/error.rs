//! The one error type of shardblob.
//!
//! Every variant that concerns a blob names its partition and the blob's file
//! name (lowercase hex), as `p/6d69`, so an operator can find the file on
//! disk from the message alone.

use std::fmt;
use std::io;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use crate::name::hex;

/// Result alias used across shardblob.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in shardblob.
#[derive(Debug)]
pub enum Error {
    /// A partition name is not 1..=255 bytes of `[A-Za-z0-9_-]`.
    PartitionNameInvalid(String),
    /// A blob name is empty or too long to become a file name.
    BlobNameInvalid {
        partition: String,
        name: Vec<u8>,
        reason: &'static str,
    },
    /// `scan` or `remove` of a partition that does not exist.
    PartitionMissing(String),
    /// A partition directory holds something shardblob did not write.
    PartitionCorrupt { partition: String, reason: String },
    /// `remove` of a blob that does not exist.
    BlobMissing { partition: String, name: Vec<u8> },
    /// The blob is already open through a live handle.
    BlobAlreadyOpen { partition: String, name: Vec<u8> },
    /// The blob's header page does not verify.
    BlobCorrupt {
        partition: String,
        name: Vec<u8>,
        reason: String,
    },
    /// The blob's stored version is outside the requested range.
    BlobVersionMismatch {
        partition: String,
        name: Vec<u8>,
        expected: RangeInclusive<u16>,
        found: u16,
    },
    /// `open_versioned` was given an empty version range.
    VersionRangeEmpty {
        partition: String,
        name: Vec<u8>,
        versions: RangeInclusive<u16>,
    },
    /// A read reaches past the blob's logical end.
    BlobInsufficientLength {
        partition: String,
        name: Vec<u8>,
        offset: u64,
        len: u64,
        blob_len: u64,
    },
    /// `offset + len` does not fit in a u64 (or past the largest file).
    OffsetOverflow {
        partition: String,
        name: Vec<u8>,
        offset: u64,
        len: u64,
    },
    /// An earlier sync failed: the blob refuses writes and syncs.
    BlobPoisoned {
        partition: String,
        name: Vec<u8>,
        cause: String,
    },
    /// A caller-provided argument is outside what the call accepts.
    InvalidArgument {
        partition: String,
        name: Vec<u8>,
        reason: String,
    },
    /// The filesystem failed an operation on a partition or blob.
    Io {
        partition: String,
        name: Option<Vec<u8>>,
        op: &'static str,
        source: io::Error,
    },
    /// Another process (or engine) holds `<data_dir>/LOCK`.
    DataDirLocked { dir: PathBuf },
    /// The data directory cannot be used; the reason says what to do.
    DataDir { dir: PathBuf, reason: String },
    /// The engine refused its configuration or could not start.
    Startup(String),
    /// The engine has shut down; the operation did not run.
    Shutdown,
    /// A user task run on a shard panicked; the shard goes on.
    TaskPanicked { shard: usize, message: String },
}

impl Error {
    /// Wraps an I/O error on a blob (or a partition when `name` is `None`).
    pub fn io(partition: &str, name: Option<&[u8]>, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            partition: partition.to_string(),
            name: name.map(<[u8]>::to_vec),
            op,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PartitionNameInvalid(p) => write!(
                f,
                "partition name invalid: {p:?} (use 1..=255 bytes of A-Z a-z 0-9 _ -)"
            ),
            Error::BlobNameInvalid {
                partition,
                name,
                reason,
            } => write!(f, "blob name invalid: {partition}/{}: {reason}", hex(name)),
            Error::PartitionMissing(p) => write!(f, "partition missing: {p}"),
            Error::PartitionCorrupt { partition, reason } => {
                write!(f, "partition corrupt: {partition}: {reason}")
            }
            Error::BlobMissing { partition, name } => {
                write!(f, "blob missing: {partition}/{}", hex(name))
            }
            Error::BlobAlreadyOpen { partition, name } => write!(
                f,
                "blob already open: {partition}/{} (drop the live handle first)",
                hex(name)
            ),
            Error::BlobCorrupt {
                partition,
                name,
                reason,
            } => write!(f, "blob corrupt: {partition}/{}: {reason}", hex(name)),
            Error::BlobVersionMismatch {
                partition,
                name,
                expected,
                found,
            } => write!(
                f,
                "blob version mismatch: {partition}/{}: stored version {found}, accepted {}..={}",
                hex(name),
                expected.start(),
                expected.end()
            ),
            Error::VersionRangeEmpty {
                partition,
                name,
                versions,
            } => write!(
                f,
                "version range empty: {partition}/{}: {}..={} holds no version",
                hex(name),
                versions.start(),
                versions.end()
            ),
            Error::BlobInsufficientLength {
                partition,
                name,
                offset,
                len,
                blob_len,
            } => write!(
                f,
                "blob too short: {partition}/{}: read of {len} bytes at {offset} passes the end at {blob_len}",
                hex(name)
            ),
            Error::OffsetOverflow {
                partition,
                name,
                offset,
                len,
            } => write!(
                f,
                "offset overflow: {partition}/{}: {offset} + {len} is past the largest blob",
                hex(name)
            ),
            Error::BlobPoisoned {
                partition,
                name,
                cause,
            } => write!(
                f,
                "blob poisoned: {partition}/{}: an earlier sync failed ({cause}); reopen the blob",
                hex(name)
            ),
            Error::InvalidArgument {
                partition,
                name,
                reason,
            } => write!(f, "invalid argument: {partition}/{}: {reason}", hex(name)),
            Error::Io {
                partition,
                name: Some(name),
                op,
                source,
            } => write!(f, "{op} failed: {partition}/{}: {source}", hex(name)),
            Error::Io {
                partition,
                name: None,
                op,
                source,
            } => write!(f, "{op} failed: {partition}: {source}"),
            Error::DataDirLocked { dir } => write!(
                f,
                "data directory {} is in use: another engine holds {}/LOCK",
                dir.display(),
                dir.display()
            ),
            Error::DataDir { dir, reason } => {
                write!(f, "data directory {}: {reason}", dir.display())
            }
            Error::Startup(reason) => write!(f, "engine cannot start: {reason}"),
            Error::Shutdown => write!(f, "engine shut down: the operation did not run"),
            Error::TaskPanicked { shard, message } => {
                write!(f, "task panicked on shard {shard}: {message}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
