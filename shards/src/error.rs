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
///
/// New variants may be added in minor releases: match with a wildcard arm.
/// Blob and partition variants name what they concern; startup variants say
/// what to change. [`Error::raw_os_error`] gives the OS error code of an
/// I/O failure, and [`std::error::Error::source`] the `io::Error` itself.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A partition name is not 1..=255 bytes of `[A-Za-z0-9_-]`; holds the
    /// name given.
    PartitionNameInvalid(String),
    /// A blob name is empty or too long to become a file name.
    BlobNameInvalid {
        /// The partition of the blob.
        partition: String,
        /// The name given.
        name: Vec<u8>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `scan` or `remove` of a partition that does not exist; holds its name.
    PartitionMissing(String),
    /// A partition directory holds something shardblob did not write.
    PartitionCorrupt {
        /// The partition.
        partition: String,
        /// What was found.
        reason: String,
    },
    /// `remove` of a blob that does not exist.
    BlobMissing {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
    },
    /// The blob is already open through a live handle.
    BlobAlreadyOpen {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
    },
    /// The blob's header page does not verify.
    BlobCorrupt {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// Which check failed (magic, CRC, format version).
        reason: String,
    },
    /// The blob's stored version is outside the requested range.
    BlobVersionMismatch {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// The versions the caller accepts.
        expected: RangeInclusive<u16>,
        /// The version stored in the blob's header.
        found: u16,
    },
    /// `open_versioned` was given an empty version range.
    VersionRangeEmpty {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// The empty range given.
        versions: RangeInclusive<u16>,
    },
    /// A read reaches past the blob's logical end.
    BlobInsufficientLength {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// Where the read starts.
        offset: u64,
        /// How many bytes it asks for.
        len: u64,
        /// The blob's logical length.
        blob_len: u64,
    },
    /// `offset + len` does not fit in a u64 (or past the largest file).
    OffsetOverflow {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// The offset given.
        offset: u64,
        /// The length given.
        len: u64,
    },
    /// An earlier sync failed: the blob refuses writes and syncs.
    BlobPoisoned {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// The failure that poisoned it.
        cause: String,
    },
    /// A caller-provided argument is outside what the call accepts.
    InvalidArgument {
        /// The partition of the blob.
        partition: String,
        /// The blob's name.
        name: Vec<u8>,
        /// What is wrong with the argument.
        reason: String,
    },
    /// The filesystem failed an operation on a partition or blob.
    Io {
        /// The partition.
        partition: String,
        /// The blob's name; `None` for an operation on the partition.
        name: Option<Vec<u8>>,
        /// The operation that failed ("write", "sync", ...).
        op: &'static str,
        /// The error of the OS, with its code ([`Error::raw_os_error`]).
        source: io::Error,
    },
    /// Another process (or engine) holds `<data_dir>/LOCK`.
    DataDirLocked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory cannot be used; the reason says what to do.
    /// The OS error behind it, if any, is its [`std::error::Error::source`]
    /// and not part of its message, so an error-chain printer shows it once.
    DataDir {
        /// The data directory.
        dir: PathBuf,
        /// What is wrong and what to change, without the OS error.
        reason: String,
        /// The OS error behind it, if an OS call failed.
        source: Option<io::Error>,
    },
    /// A configuration file cannot be read.
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// A configuration text is not valid TOML or has a field of a wrong
    /// name or type.
    ConfigParse {
        /// The file it came from; `None` for a string.
        path: Option<PathBuf>,
        /// The parser's message, which names the field.
        reason: String,
    },
    /// A configuration value is outside the bounds it can work in.
    ConfigValue {
        /// The field, as named in TOML.
        field: &'static str,
        /// The value, its bounds and what to change.
        reason: String,
    },
    /// A `SHARDBLOB_*` environment variable has a value that cannot be used.
    ConfigEnv {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured placement cannot be resolved on this machine's CPUs.
    Placement {
        /// The placement, as written in TOML.
        placement: String,
        /// What is wrong and what to change.
        reason: String,
    },
    /// The locked-memory limit (`ulimit -l`) is too low for the io_uring
    /// rings of this configuration.
    LockedMemory {
        /// Bytes of locked memory the configuration needs.
        needed_bytes: u64,
        /// The soft `RLIMIT_MEMLOCK`; `None` if it could not be read.
        limit_bytes: Option<u64>,
        /// What to change.
        reason: String,
    },
    /// io_uring cannot be used by this process.
    IoUring {
        /// The error of `io_uring_setup`.
        source: io::Error,
        /// What it means and what to change.
        reason: String,
    },
    /// A shard's thread or executor could not start.
    ShardStart {
        /// The shard.
        shard: usize,
        /// Why.
        reason: String,
    },
    /// `spawn_on` named a shard the engine does not have.
    NoSuchShard {
        /// The shard asked for.
        shard: usize,
        /// The engine's number of shards.
        shards: usize,
    },
    /// The engine has shut down; the operation did not run.
    Shutdown,
    /// `Engine::shutdown` stopped the engine, but not cleanly.
    ShutdownIncomplete {
        /// The grace period the tasks had, in milliseconds.
        grace_ms: u64,
        /// `(shard, tasks)`: tasks still running after the grace period,
        /// which were cancelled.
        cancelled: Vec<(usize, usize)>,
        /// Shards whose thread had died of a panic.
        died: Vec<usize>,
    },
    /// A user task run on a shard panicked; the shard goes on.
    TaskPanicked {
        /// The shard that ran it.
        shard: usize,
        /// The panic's message.
        message: String,
    },
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

    /// The OS error code (errno) behind this error, if an OS call failed:
    /// `Some(libc::ENOSPC)` for a write to a full filesystem.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. }
            | Error::ConfigFile { source, .. }
            | Error::IoUring { source, .. } => source.raw_os_error(),
            Error::DataDir { source, .. } => source.as_ref()?.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PartitionNameInvalid(_)
            | Error::BlobNameInvalid { .. }
            | Error::PartitionMissing(_)
            | Error::PartitionCorrupt { .. }
            | Error::BlobMissing { .. }
            | Error::BlobAlreadyOpen { .. }
            | Error::BlobCorrupt { .. }
            | Error::BlobVersionMismatch { .. } => self.fmt_name(f),
            Error::VersionRangeEmpty { .. }
            | Error::BlobInsufficientLength { .. }
            | Error::OffsetOverflow { .. }
            | Error::BlobPoisoned { .. }
            | Error::InvalidArgument { .. }
            | Error::Io { .. } => self.fmt_access(f),
            Error::DataDirLocked { .. }
            | Error::DataDir { .. }
            | Error::ConfigFile { .. }
            | Error::ConfigParse { .. }
            | Error::ConfigValue { .. }
            | Error::ConfigEnv { .. }
            | Error::Placement { .. }
            | Error::LockedMemory { .. }
            | Error::IoUring { .. }
            | Error::ShardStart { .. } => self.fmt_startup(f),
            Error::NoSuchShard { .. }
            | Error::Shutdown
            | Error::ShutdownIncomplete { .. }
            | Error::TaskPanicked { .. } => self.fmt_engine(f),
        }
    }
}

impl Error {
    /// The message of an error about the names, existence or headers of
    /// partitions and blobs.
    fn fmt_name(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
            _ => unreachable!("fmt routes only these variants to fmt_name"),
        }
    }

    /// The message of an error of reads, writes and syncs of a blob.
    fn fmt_access(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
            _ => unreachable!("fmt routes only these variants to fmt_access"),
        }
    }

    /// The message of an error of the configuration and the engine's start.
    fn fmt_startup(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::DataDirLocked { dir } => write!(
                f,
                "data directory {} is in use: another engine holds {}/LOCK",
                dir.display(),
                dir.display()
            ),
            Error::DataDir { dir, reason, .. } => {
                write!(f, "data directory {}: {reason}", dir.display())
            }
            Error::ConfigFile { path, source } => {
                write!(
                    f,
                    "cannot read configuration file {}: {source}",
                    path.display()
                )
            }
            Error::ConfigParse { path: None, reason } => {
                write!(f, "invalid configuration: {reason}")
            }
            Error::ConfigParse {
                path: Some(path),
                reason,
            } => write!(f, "invalid configuration in {}: {reason}", path.display()),
            Error::ConfigValue { reason, .. } => write!(f, "invalid configuration: {reason}"),
            Error::ConfigEnv {
                variable,
                value,
                reason,
            } => write!(
                f,
                "invalid configuration: environment variable {variable}={value:?}: {reason}"
            ),
            Error::Placement { placement, reason } => {
                write!(f, "invalid configuration: {placement}: {reason}")
            }
            Error::LockedMemory { reason, .. } => {
                write!(
                    f,
                    "engine cannot start: locked-memory limit too low: {reason}"
                )
            }
            Error::IoUring { reason, .. } => write!(f, "engine cannot start: {reason}"),
            Error::ShardStart { shard, reason } => {
                write!(f, "engine cannot start: shard {shard}: {reason}")
            }
            _ => unreachable!("fmt routes only these variants to fmt_startup"),
        }
    }

    /// The message of an error of a running engine.
    fn fmt_engine(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchShard { shard, shards } => write!(
                f,
                "no shard {shard}: the engine has {shards} (shards 0..{shards})"
            ),
            Error::Shutdown => write!(f, "engine shut down: the operation did not run"),
            Error::ShutdownIncomplete {
                grace_ms,
                cancelled,
                died,
            } => write_shutdown_incomplete(f, *grace_ms, cancelled, died),
            Error::TaskPanicked { shard, message } => {
                write!(f, "task panicked on shard {shard}: {message}")
            }
            _ => unreachable!("fmt routes only these variants to fmt_engine"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. }
            | Error::ConfigFile { source, .. }
            | Error::IoUring { source, .. } => Some(source),
            Error::DataDir {
                source: Some(source),
                ..
            } => Some(source),
            _ => None,
        }
    }
}

/// The message of [`Error::ShutdownIncomplete`].
fn write_shutdown_incomplete(
    f: &mut fmt::Formatter<'_>,
    grace_ms: u64,
    cancelled: &[(usize, usize)],
    died: &[usize],
) -> fmt::Result {
    write!(f, "shutdown:")?;
    if !cancelled.is_empty() {
        let shards: Vec<String> = cancelled
            .iter()
            .map(|(shard, tasks)| format!("shard {shard} ({tasks} tasks)"))
            .collect();
        write!(
            f,
            " spawn_on tasks still ran after the shutdown grace period of {grace_ms} ms and were cancelled: {}",
            shards.join(", ")
        )?;
    }
    if !died.is_empty() {
        let separator = if cancelled.is_empty() { "" } else { ";" };
        write!(f, "{separator} shard threads {died:?} had died of a panic")?;
    }
    Ok(())
}
