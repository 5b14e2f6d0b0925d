//! A small, lenient BER-TLV reader and a minimal-form writer for the PIV
//! templates (SP 800-73-4 Part 2, §3 uses BER-TLV with tags of up to three
//! bytes and lengths of up to three bytes).
//!
//! Hosts are not required to use minimal length encodings, so the reader
//! accepts `81 xx` / `82 xx xx` / `83 xx xx xx` forms; the writer always
//! produces the minimal one.

use alloc::vec::Vec;

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
    let (&first, mut rest) = input.split_first()?;
    let mut tag = u32::from(first);
    if first & 0x1F == 0x1F {
        // Subsequent tag bytes follow while b8 is set; at most three tag bytes.
        for i in 0.. {
            let (&b, r) = rest.split_first()?;
            rest = r;
            tag = (tag << 8) | u32::from(b);
            if b & 0x80 == 0 {
                break;
            }
            if i >= 1 {
                return None;
            }
        }
    }
    let (&l0, r) = rest.split_first()?;
    rest = r;
    let len = match l0 {
        0x00..=0x7F => usize::from(l0),
        0x81..=0x83 => {
            let n = usize::from(l0 & 0x7F);
            if rest.len() < n {
                return None;
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        }
        _ => return None,
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
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

/// Appends the minimal BER length of `len`.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend_from_slice(&[0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
}

/// Appends `tag` (1 to 3 bytes, leading zero bytes dropped), the minimal
/// length and `value`.
pub fn push(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    push_tag(out, tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Appends the bytes of `tag` without leading zero bytes.
pub fn push_tag(out: &mut Vec<u8>, tag: u32) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take(3).take_while(|b| **b == 0).count();
    out.extend(bytes.iter().skip(skip));
}

/// `tag` + length + `value` as a new vector.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    push(&mut out, tag, value);
    out
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
