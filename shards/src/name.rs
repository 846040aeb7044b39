//! Partition and blob names, and how they become paths.
//!
//! A partition is a directory, so its name is restricted to a safe alphabet.
//! A blob name is arbitrary bytes, stored as lowercase hex so that no byte of
//! it can escape the directory or collide with another name.

use crate::{Error, Result};

/// Longest partition name in bytes.
pub const PARTITION_NAME_LEN_MAX: usize = 255;
/// Longest blob name in bytes: its hex form must fit a 255-byte file name.
pub const BLOB_NAME_LEN_MAX: usize = 127;
/// The file at the data_dir root that is not a partition.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Leading part of a tombstone: the name a partition directory gets when it
/// is removed, before its contents are deleted. A partition name cannot
/// start with '.', so no tombstone is ever taken for a partition.
pub const TOMBSTONE_PREFIX: &str = ".removed-";

/// The tombstone name number `sequence` of a partition: a checksum of the
/// partition name (so shards removing different partitions rarely try the
/// same name) and a number; at most 38 bytes, a valid file name.
pub fn tombstone_name(partition: &str, sequence: u64) -> String {
    let checksum = crc32fast::hash(partition.as_bytes());
    format!("{TOMBSTONE_PREFIX}{checksum:08x}-{sequence}")
}

/// Whether a data_dir entry is a tombstone left by a partition removal.
pub fn is_tombstone(file_name: &std::ffi::OsStr) -> bool {
    file_name
        .as_encoded_bytes()
        .starts_with(TOMBSTONE_PREFIX.as_bytes())
}

/// Checks a partition name: 1..=255 bytes of `[A-Za-z0-9_-]`, not `LOCK`.
pub fn validate_partition(partition: &str) -> Result<()> {
    let valid = !partition.is_empty()
        && partition.len() <= PARTITION_NAME_LEN_MAX
        && partition != LOCK_FILE_NAME
        && partition
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::PartitionNameInvalid(partition.to_string()))
    }
}

/// Checks a blob name and returns its file name (lowercase hex).
pub fn blob_file_name(partition: &str, name: &[u8]) -> Result<String> {
    let reason = if name.is_empty() {
        "a blob name must not be empty"
    } else if name.len() > BLOB_NAME_LEN_MAX {
        "a blob name must be at most 127 bytes (its hex form names the file)"
    } else {
        return Ok(hex(name));
    };
    Err(Error::BlobNameInvalid {
        partition: partition.to_string(),
        name: name.to_vec(),
        reason,
    })
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Decodes a file name written by [`hex`]; `None` for anything else
/// (uppercase, odd length, non-hex, empty, too long).
pub fn unhex(file_name: &str) -> Option<Vec<u8>> {
    let digits = file_name.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || digits.len() > 2 * BLOB_NAME_LEN_MAX
    {
        return None;
    }
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        for chunk in all.chunks(BLOB_NAME_LEN_MAX) {
            assert_eq!(unhex(&hex(chunk)).as_deref(), Some(chunk));
        }
        assert_eq!(hex(b"mi"), "6d69");
    }

    #[test]
    fn unhex_rejects_foreign_names() {
        for bad in ["", "a", "6D69", "zz", "6d6", ".tmp", &"00".repeat(128)] {
            assert_eq!(unhex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn partition_names() {
        for ok in ["p", "A1", "my_partition", "my-partition", &"x".repeat(255)] {
            assert!(validate_partition(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            "a.b",
            "a b",
            "a\0b",
            "é",
            "LOCK",
            &"x".repeat(256),
        ] {
            assert!(
                matches!(validate_partition(bad), Err(Error::PartitionNameInvalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tombstones_are_never_partition_names() {
        let name = tombstone_name(&"x".repeat(255), u64::MAX);
        assert!(name.len() <= 255, "{name}");
        assert!(is_tombstone(name.as_ref()), "{name}");
        assert!(validate_partition(&name).is_err(), "{name}");
        assert_ne!(tombstone_name("a", 0), tombstone_name("a", 1));
        assert_ne!(tombstone_name("a", 0), tombstone_name("b", 0));
        assert!(!is_tombstone("p".as_ref()) && !is_tombstone("LOCK".as_ref()));
    }

    #[test]
    fn blob_names() {
        assert_eq!(blob_file_name("p", b"mi").unwrap(), "6d69");
        let empty = blob_file_name("p", b"").unwrap_err().to_string();
        assert!(empty.contains("empty") && empty.contains("p/"), "{empty}");
        let long = blob_file_name("p", &[7; 128]).unwrap_err().to_string();
        assert!(long.contains("127"), "{long}");
        assert!(blob_file_name("p", &[7; 127]).is_ok());
    }
}
