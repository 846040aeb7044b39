//! What the shard's statistics are counted by: the kind of an operation and
//! the class of an error.
//!
//! Error classes are few and stable so that an operator can alert on them
//! without knowing every [`Error`] variant: `io`, `no_space`, `corrupt`
//! and `poisoned` mean the device or the data needs attention; the others
//! are answers to the caller's own request (a missing blob, a read past the
//! end, a bad name) and alert only in unusual numbers.

use crate::Error;

/// The operations the store counts, one per `Storage`/`Blob` call (a
/// `read_into` counts as a read, a `start_sync` as a sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `Storage::open` / `open_versioned`.
    Open,
    /// `Storage::remove`, of a blob or of a partition.
    Remove,
    /// `Storage::scan`.
    Scan,
    /// `Blob::read_at` / `read_into`.
    Read,
    /// `Blob::read_many`: one operation per call, whatever its ranges.
    ReadMany,
    /// `Blob::write_at` / `write_vectored_at`.
    Write,
    /// `Blob::sync` / `start_sync`.
    Sync,
    /// `Blob::resize`.
    Resize,
}

impl OpKind {
    /// Every kind, in the order of [`OpKind::index`].
    pub const ALL: [OpKind; 8] = [
        OpKind::Open,
        OpKind::Remove,
        OpKind::Scan,
        OpKind::Read,
        OpKind::ReadMany,
        OpKind::Write,
        OpKind::Sync,
        OpKind::Resize,
    ];

    /// The position of this kind in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in metric labels (`read_many`, `write`, ...).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Open => "open",
            OpKind::Remove => "remove",
            OpKind::Scan => "scan",
            OpKind::Read => "read",
            OpKind::ReadMany => "read_many",
            OpKind::Write => "write",
            OpKind::Sync => "sync",
            OpKind::Resize => "resize",
        }
    }
}

/// What went wrong with a failed operation, as an operator sorts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A bad argument: partition or blob name, version range, offset
    /// overflow, a version outside the range asked for.
    InvalidInput,
    /// The partition or blob does not exist.
    NotFound,
    /// The blob is open already (`BlobAlreadyOpen`).
    AlreadyOpen,
    /// A read past the logical end (`BlobInsufficientLength`).
    OutOfRange,
    /// A file or directory that shardblob did not write, or a damaged header.
    Corrupt,
    /// The blob refuses writes and syncs after a failed sync.
    Poisoned,
    /// The filesystem is full (ENOSPC) or the quota spent (EDQUOT).
    NoSpace,
    /// Any other failed file-system call.
    Io,
    /// The engine is shutting down.
    Shutdown,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Every class, in the order of [`ErrorClass::index`].
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::InvalidInput,
        ErrorClass::NotFound,
        ErrorClass::AlreadyOpen,
        ErrorClass::OutOfRange,
        ErrorClass::Corrupt,
        ErrorClass::Poisoned,
        ErrorClass::NoSpace,
        ErrorClass::Io,
        ErrorClass::Shutdown,
        ErrorClass::Other,
    ];

    /// The class of `error`.
    pub fn of(error: &Error) -> ErrorClass {
        match error {
            Error::PartitionNameInvalid(_)
            | Error::BlobNameInvalid { .. }
            | Error::BlobVersionMismatch { .. }
            | Error::VersionRangeEmpty { .. }
            | Error::OffsetOverflow { .. }
            | Error::InvalidArgument { .. } => ErrorClass::InvalidInput,
            Error::PartitionMissing(_) | Error::BlobMissing { .. } => ErrorClass::NotFound,
            Error::BlobAlreadyOpen { .. } => ErrorClass::AlreadyOpen,
            Error::BlobInsufficientLength { .. } => ErrorClass::OutOfRange,
            Error::PartitionCorrupt { .. } | Error::BlobCorrupt { .. } => ErrorClass::Corrupt,
            Error::BlobPoisoned { .. } => ErrorClass::Poisoned,
            Error::Io { .. } => match error.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => ErrorClass::NoSpace,
                _ => ErrorClass::Io,
            },
            Error::Shutdown => ErrorClass::Shutdown,
            _ => ErrorClass::Other,
        }
    }

    /// The position of this class in [`ErrorClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in metric labels (`no_space`, `io`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::InvalidInput => "invalid_input",
            ErrorClass::NotFound => "not_found",
            ErrorClass::AlreadyOpen => "already_open",
            ErrorClass::OutOfRange => "out_of_range",
            ErrorClass::Corrupt => "corrupt",
            ErrorClass::Poisoned => "poisoned",
            ErrorClass::NoSpace => "no_space",
            ErrorClass::Io => "io",
            ErrorClass::Shutdown => "shutdown",
            ErrorClass::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_lists() {
        for (at, kind) in OpKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), at, "{kind:?}");
        }
        for (at, class) in ErrorClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), at, "{class:?}");
        }
    }

    #[test]
    fn a_full_disk_is_its_own_class() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let error = Error::io("p", Some(b"b"), "write", full);
        assert_eq!(ErrorClass::of(&error), ErrorClass::NoSpace);
        let other = Error::io("p", None, "list", std::io::Error::other("boom"));
        assert_eq!(ErrorClass::of(&other), ErrorClass::Io);
        let past_end = Error::BlobInsufficientLength {
            partition: "p".into(),
            name: b"b".to_vec(),
            offset: 0,
            len: 1,
            blob_len: 0,
        };
        assert_eq!(ErrorClass::of(&past_end), ErrorClass::OutOfRange);
    }
}
