//! Tests that kill mutants `scripts/mutants` found alive (issue 17, point 7).
//!
//! Each test names the mutant it kills (the `cargo mutants` description:
//! file, line, column, replacement); it fails with that mutant applied. The
//! survivors that cannot matter are listed, with the reason, in
//! `mutants-survivors.md`.

use shardblob_shards::header::{self, HeaderError, HEADER_LEN};

fn header_page(version: u16) -> Vec<u8> {
    let mut page = vec![0u8; HEADER_LEN as usize];
    header::encode(version, &mut page);
    page
}

/// A page that holds exactly the header fields and their CRC (16 bytes) is
/// complete: it decodes. Kills `shards/src/header.rs:66:19: replace < with <=
/// in decode`, which calls such a page short.
#[test]
fn a_header_of_exactly_the_fields_and_crc_decodes() {
    let page = header_page(42);
    assert_eq!(header::decode(&page[..16]), Ok(42));
    assert_eq!(
        header::decode(&page[..15]),
        Err(HeaderError::Short { len: 15 })
    );
}
