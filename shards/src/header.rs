//! The 4096-byte header page at the start of every blob file.
//!
//! A whole page, so that logical offset `x` lives at file offset `4096 + x`
//! and aligned logical I/O stays aligned on disk. Layout (little endian):
//! `magic[8] | format_version u16 | blob_version u16 | crc32 u32 | zeros`,
//! the CRC32 covering the first 12 bytes.

use std::fmt;

/// Size of the header page; data starts right after it.
pub const HEADER_LEN: u64 = 4096;
/// Identifies a shardblob blob file.
pub const MAGIC: [u8; 8] = *b"SHRDBLOB";
/// The on-disk format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

const FIELDS_LEN: usize = 12;
const CRC_END: usize = FIELDS_LEN + 4;

/// Why a header page does not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The page is shorter than the header fields.
    Short {
        /// The page's length.
        len: usize,
    },
    /// The file does not start with [`MAGIC`].
    BadMagic {
        /// The file's first eight bytes.
        found: [u8; 8],
    },
    /// The stored CRC32 does not match the fields.
    BadCrc {
        /// The CRC32 in the page.
        stored: u32,
        /// The CRC32 of the fields as read.
        computed: u32,
    },
    /// The format version is not one this build knows.
    UnknownFormat {
        /// The stored format version.
        found: u16,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Short { len } => write!(f, "header page holds only {len} bytes"),
            HeaderError::BadMagic { found } => {
                write!(f, "bad magic {found:02x?}, expected {MAGIC:02x?}")
            }
            HeaderError::BadCrc { stored, computed } => write!(
                f,
                "bad header crc: stored {stored:#010x}, computed {computed:#010x}"
            ),
            HeaderError::UnknownFormat { found } => write!(
                f,
                "unknown format version {found} (this build reads version {FORMAT_VERSION})"
            ),
        }
    }
}

/// Writes the header page of a blob at `blob_version` into `page`
/// (`HEADER_LEN` bytes).
pub fn encode(blob_version: u16, page: &mut [u8]) {
    assert_eq!(page.len() as u64, HEADER_LEN, "header page size");
    page.fill(0);
    page[..8].copy_from_slice(&MAGIC);
    page[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    page[10..12].copy_from_slice(&blob_version.to_le_bytes());
    let crc = crc32fast::hash(&page[..FIELDS_LEN]);
    page[FIELDS_LEN..CRC_END].copy_from_slice(&crc.to_le_bytes());
}

/// Verifies a header page and returns the blob version it records.
pub fn decode(page: &[u8]) -> Result<u16, HeaderError> {
    if page.len() < CRC_END {
        return Err(HeaderError::Short { len: page.len() });
    }
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&page[..8]);
    if magic != MAGIC {
        return Err(HeaderError::BadMagic { found: magic });
    }
    let stored = u32::from_le_bytes([page[12], page[13], page[14], page[15]]);
    let computed = crc32fast::hash(&page[..FIELDS_LEN]);
    if stored != computed {
        return Err(HeaderError::BadCrc { stored, computed });
    }
    let format = u16::from_le_bytes([page[8], page[9]]);
    if format != FORMAT_VERSION {
        return Err(HeaderError::UnknownFormat { found: format });
    }
    Ok(u16::from_le_bytes([page[10], page[11]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(version: u16) -> Vec<u8> {
        let mut page = vec![0xAA; HEADER_LEN as usize];
        encode(version, &mut page);
        page
    }

    #[test]
    fn round_trip() {
        for version in [0, 1, 7, u16::MAX] {
            assert_eq!(decode(&page(version)), Ok(version));
        }
        assert!(page(3)[CRC_END..].iter().all(|&b| b == 0));
    }

    #[test]
    fn each_damage_has_its_reason() {
        let mut bad_magic = page(1);
        bad_magic[0] ^= 1;
        assert!(matches!(
            decode(&bad_magic),
            Err(HeaderError::BadMagic { .. })
        ));

        let mut bad_crc = page(1);
        bad_crc[10] ^= 1;
        assert!(matches!(decode(&bad_crc), Err(HeaderError::BadCrc { .. })));

        let mut future = page(1);
        future[8..10].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32fast::hash(&future[..FIELDS_LEN]);
        future[FIELDS_LEN..CRC_END].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&future),
            Err(HeaderError::UnknownFormat { found: 2 })
        );

        assert_eq!(decode(&[0; 4]), Err(HeaderError::Short { len: 4 }));
        assert!(matches!(
            decode(&[0; 4096]),
            Err(HeaderError::BadMagic { .. })
        ));
    }
}
