//! The PIV templates' BER-TLV (SP 800-73-4 Part 2, §3: tags of up to three
//! bytes, lengths of up to three bytes), over the project's one TLV module
//! ([`citycard_proto::tlv`]).
//!
//! Hosts are not required to use minimal length encodings, so the reader
//! accepts `81 xx` / `82 xx xx` / `83 xx xx xx` forms
//! ([`citycard_proto::tlv::read_lenient`]); the writer always produces the
//! minimal one.

use alloc::vec::Vec;

use citycard_proto::tlv as proto_tlv;

pub use citycard_proto::tlv::{encode, push, push_len, push_tag};

/// One decoded TLV: its tag (up to three bytes, big-endian) and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag, e.g. `0x5C`, `0x7F49`, `0x5FC102`.
    pub tag: u32,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Reads one TLV from the front of `input`; `None` when it is malformed or truncated.
pub fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (field, rest) = proto_tlv::read_lenient(input).ok()?;
    Some((
        Tlv {
            tag: field.tag,
            value: field.value,
        },
        rest,
    ))
}

/// Reads a whole sequence of TLVs that must cover `input` exactly.
pub fn read_all(mut input: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = read(input)?;
        out.push(tlv);
        input = rest;
    }
    Some(out)
}

/// Reads exactly one TLV with tag `tag` covering all of `input`; its value.
pub fn read_only(input: &[u8], tag: u32) -> Option<&[u8]> {
    match read(input)? {
        (tlv, []) if tlv.tag == tag => Some(tlv.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trips_multi_byte_tags_and_long_lengths() {
        for (tag, len) in [
            (0x53u32, 0usize),
            (0x5C, 3),
            (0x7F49, 200),
            (0x5FC102, 3000),
            (0x53, 70_000),
        ] {
            let value = vec![0xAB; len];
            let encoded = encode(tag, &value);
            let (tlv, rest) = read(&encoded).unwrap();
            assert_eq!((tlv.tag, tlv.value, rest), (tag, &value[..], &[][..]));
        }
    }

    #[test]
    fn accepts_non_minimal_lengths_and_rejects_truncation() {
        assert_eq!(
            read_only(&[0x53, 0x82, 0x00, 0x01, 0x07], 0x53),
            Some(&[7u8][..])
        );
        assert_eq!(read(&[0x53, 0x02, 0x07]), None);
        assert_eq!(read(&[0x5F, 0xC1]), None);
        assert_eq!(read(&[0x5F, 0xC1, 0x82, 0x01, 0x00]), None, "four-byte tag");
        assert_eq!(read(&[0x53, 0x84, 0, 0, 0, 0]), None);
    }
}
