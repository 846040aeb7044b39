//! Tests that kill mutants `scripts/mutants` found alive (issue 17, point 7).
//!
//! Each test names the mutant it kills (the `cargo mutants` description:
//! file, line, column, replacement); it fails with that mutant applied. The
//! survivors that cannot matter are listed, with the reason, in
//! `mutants-survivors.md`.

use shardblob_shards::header::{self, HeaderError, FORMAT_VERSION, HEADER_LEN, MAGIC};

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

/// The reason a corrupt blob reports (`Error::BlobCorrupt { reason }`, what
/// an operator reads) is the header error's text, so each text must say
/// what is wrong and show the values. Kills `shards/src/header.rs:35:9:
/// replace <impl fmt::Display for HeaderError>::fmt -> fmt::Result with
/// Ok(Default::default())`, which makes every reason empty.
#[test]
fn each_header_error_says_what_is_wrong() {
    let text = HeaderError::Short { len: 3 }.to_string();
    assert!(text.contains("only 3 bytes"), "{text}");

    let mut bad_magic = header_page(1);
    bad_magic[0] = b'X';
    let text = header::decode(&bad_magic).unwrap_err().to_string();
    assert!(text.contains("bad magic"), "{text}");
    assert!(text.contains(&format!("{:02x?}", MAGIC)), "{text}");

    let mut bad_crc = header_page(1);
    bad_crc[12] ^= 0xff;
    let text = header::decode(&bad_crc).unwrap_err().to_string();
    assert!(text.contains("bad header crc"), "{text}");

    let found = FORMAT_VERSION + 1;
    let text = HeaderError::UnknownFormat { found }.to_string();
    assert!(
        text.contains(&format!("unknown format version {found}")),
        "{text}"
    );
}
