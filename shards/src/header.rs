//! The 4096-byte header page at the start of every blob file.
//!
//! A whole page, so that logical offset `x` lives at file offset `4096 + x`
//! and aligned logical I/O stays aligned on disk. Layout (little endian):
//! sector 0 holds `magic[8] | format_version u16 | blob_version u16 |
//! crc32 u32`, the CRC32 covering the first 12 bytes; sectors 1 and 2 hold
//! the two length slots (format 2), each `seq u64 | len u64 | crc32 u32`,
//! the CRC covering the slot's first 16 bytes; the rest is zero.
//!
//! Why slots: the logical length lives in the header, not in the file size,
//! so a file can be grown ahead in zero-written chunks and an append + sync
//! overwrites blocks the file already holds: one data flush, no journal
//! commit of a size change (ARCHITECTURE.md, "Durable length"). A sync
//! writes the whole page with the next slot (sequence number + 1) in the
//! slot that does not hold the last durable one, and rewrites the rest with
//! the bytes the device already holds; so a torn page write can damage only
//! the new slot, which its CRC rejects, and the open takes the valid slot
//! with the highest sequence number.
//!
//! Format 1 (no slots: the length is the file size) still opens: the store
//! converts it in place (store.rs).

use std::fmt;
use std::io;

use crate::fs::{written_whole, File, WriteBuf};

/// Size of the header page; data starts right after it.
pub const HEADER_LEN: u64 = 4096;
/// Identifies a shardblob blob file.
pub const MAGIC: [u8; 8] = *b"SHRDBLOB";
/// The on-disk format this build writes.
pub const FORMAT_VERSION: u16 = 2;
/// The first format, whose length is the file size: read, and converted.
pub const FORMAT_V1: u16 = 1;

const FIELDS_LEN: usize = 12;
const CRC_END: usize = FIELDS_LEN + 4;
/// Where each length slot starts: sectors 1 and 2.
const SLOT_AT: [usize; 2] = [512, 1024];
const SLOT_FIELDS_LEN: usize = 16;
const SLOT_LEN: usize = SLOT_FIELDS_LEN + 4;
/// The bytes a format-2 header needs.
const SLOTS_END: usize = SLOT_AT[1] + SLOT_LEN;

/// One length slot: the logical length a sync recorded, numbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthSlot {
    /// Higher is newer.
    pub seq: u64,
    /// The blob's logical length.
    pub len: u64,
}

/// A decoded header page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`FORMAT_VERSION`], or [`FORMAT_V1`] (no slots).
    pub format: u16,
    /// The blob version the user chose.
    pub blob_version: u16,
    /// The slots that verify (format 2), by position.
    pub slots: [Option<LengthSlot>; 2],
}

impl Header {
    /// A format-2 header with one slot: a new blob, or a converted one.
    pub fn new(blob_version: u16, len: u64) -> Header {
        Header {
            format: FORMAT_VERSION,
            blob_version,
            slots: [Some(LengthSlot { seq: 1, len }), None],
        }
    }

    /// The valid slot with the highest sequence number, and its position.
    pub fn newest(&self) -> Option<(usize, LengthSlot)> {
        let valid = self.slots.iter().enumerate();
        let valid = valid.filter_map(|(at, slot)| slot.map(|slot| (at, slot)));
        valid.max_by_key(|(_, slot)| slot.seq)
    }
}

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
    /// A format-2 header with neither length slot valid.
    NoLength,
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
                "unknown format version {found} (this build reads versions \
                 {FORMAT_V1} and {FORMAT_VERSION})"
            ),
            HeaderError::NoLength => {
                write!(f, "neither length slot of the header verifies")
            }
        }
    }
}

/// Writes `header` into `page` (`HEADER_LEN` bytes); a slot that is `None`
/// is written as zeros (which never verify).
pub fn encode(header: &Header, page: &mut [u8]) {
    assert_eq!(page.len() as u64, HEADER_LEN, "header page size");
    page.fill(0);
    page[..8].copy_from_slice(&MAGIC);
    page[8..10].copy_from_slice(&header.format.to_le_bytes());
    page[10..12].copy_from_slice(&header.blob_version.to_le_bytes());
    let crc = crc32fast::hash(&page[..FIELDS_LEN]);
    page[FIELDS_LEN..CRC_END].copy_from_slice(&crc.to_le_bytes());
    for (slot, at) in header.slots.iter().zip(SLOT_AT) {
        if let Some(slot) = slot {
            let bytes = &mut page[at..at + SLOT_LEN];
            bytes[..8].copy_from_slice(&slot.seq.to_le_bytes());
            bytes[8..16].copy_from_slice(&slot.len.to_le_bytes());
            let crc = crc32fast::hash(&bytes[..SLOT_FIELDS_LEN]);
            bytes[SLOT_FIELDS_LEN..].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Verifies a header page.
pub fn decode(page: &[u8]) -> Result<Header, HeaderError> {
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
    let blob_version = u16::from_le_bytes([page[10], page[11]]);
    let slots = match format {
        FORMAT_V1 => [None, None],
        FORMAT_VERSION if page.len() < SLOTS_END => {
            return Err(HeaderError::Short { len: page.len() })
        }
        FORMAT_VERSION => SLOT_AT.map(|at| decode_slot(&page[at..at + SLOT_LEN])),
        found => return Err(HeaderError::UnknownFormat { found }),
    };
    let header = Header {
        format,
        blob_version,
        slots,
    };
    match format == FORMAT_VERSION && header.newest().is_none() {
        true => Err(HeaderError::NoLength),
        false => Ok(header),
    }
}

fn decode_slot(bytes: &[u8]) -> Option<LengthSlot> {
    let word = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let stored = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let valid = crc32fast::hash(&bytes[..SLOT_FIELDS_LEN]) == stored;
    valid.then(|| LengthSlot {
        seq: word(0),
        len: word(8),
    })
}

/// Writes `header` as `file`'s header page (`durable`: with data-sync
/// semantics); a write the device cut short fails, and part of the page
/// may have landed.
pub(crate) async fn write_page<Fi: File>(
    file: &Fi,
    header: &Header,
    durable: bool,
) -> io::Result<()> {
    let mut page = file.alloc(HEADER_LEN as usize);
    encode(header, page.bytes_mut());
    let written = file.write_at(page, 0, durable).await?;
    written_whole(written, HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(header: &Header) -> Vec<u8> {
        let mut page = vec![0xAA; HEADER_LEN as usize];
        encode(header, &mut page);
        page
    }

    fn page(version: u16) -> Vec<u8> {
        page_of(&Header::new(version, 77))
    }

    #[test]
    fn round_trip() {
        for version in [0, 1, 7, u16::MAX] {
            let header = Header::new(version, 77);
            assert_eq!(decode(&page(version)), Ok(header));
        }
        let both = Header {
            slots: [
                Some(LengthSlot { seq: 8, len: 1 }),
                Some(LengthSlot { seq: 9, len: 5 }),
            ],
            ..Header::new(3, 0)
        };
        assert_eq!(decode(&page_of(&both)), Ok(both));
        assert_eq!(both.newest(), Some((1, LengthSlot { seq: 9, len: 5 })));
        let v1 = Header {
            format: FORMAT_V1,
            slots: [None, None],
            ..Header::new(3, 0)
        };
        assert_eq!(decode(&page_of(&v1)[..CRC_END]), Ok(v1));
        let zeros_past = |page: &[u8]| page[SLOTS_END..].iter().all(|&b| b == 0);
        assert!(zeros_past(&page(3)) && page(3)[CRC_END..SLOT_AT[0]].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_damaged_slot_falls_back_to_the_other() {
        let both = Header {
            slots: [
                Some(LengthSlot { seq: 8, len: 1 }),
                Some(LengthSlot { seq: 9, len: 5 }),
            ],
            ..Header::new(3, 0)
        };
        let mut torn = page_of(&both);
        torn[SLOT_AT[1] + 9] ^= 1;
        let header = decode(&torn).unwrap();
        assert_eq!(header.newest(), Some((0, LengthSlot { seq: 8, len: 1 })));
        torn[SLOT_AT[0] + 19] ^= 1;
        assert_eq!(decode(&torn), Err(HeaderError::NoLength));
    }

    /// A format-2 page must hold both slots whole: 1044 bytes (slot B at
    /// 1024, 20 bytes) decode, 1043 are short. Kills `SLOTS_END` computed
    /// with `-` (a short page then panicked slicing slot B) and `<` as
    /// `<=` in `decode` (a page of exactly both slots called short).
    #[test]
    fn a_format_2_page_needs_both_slots_whole() {
        let page = page(1);
        assert_eq!(decode(&page[..1044]), Ok(Header::new(1, 77)));
        assert_eq!(decode(&page[..1043]), Err(HeaderError::Short { len: 1043 }));
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

        let future = page_of(&Header {
            format: 3,
            ..Header::new(1, 0)
        });
        assert_eq!(
            decode(&future),
            Err(HeaderError::UnknownFormat { found: 3 })
        );
        assert_eq!(
            decode(&page(1)[..SLOTS_END - 1]),
            Err(HeaderError::Short { len: SLOTS_END - 1 })
        );
        assert_eq!(decode(&[0; 4]), Err(HeaderError::Short { len: 4 }));
        assert!(matches!(
            decode(&[0; 4096]),
            Err(HeaderError::BadMagic { .. })
        ));
    }
}
