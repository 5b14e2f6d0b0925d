//! Minimal BER-TLV helpers over `iso7816-tlv`.
//!
//! Parsing goes through `iso7816_tlv::ber::Tlv`. Encoding is written here
//! because iso7816-tlv 0.4 encodes a 127-byte length as `81 7F` instead of the
//! minimal `7F`; this protocol signs exact bytes, so every encoder must produce
//! the one minimal (DER) form and every decoder checks it got that form.

use alloc::vec::Vec;
use iso7816_tlv::ber::Tlv;

use crate::error::{Error, Result};

/// Hard limit on any TLV-encoded input this crate accepts (bounds allocation
/// and recursion in the underlying parser).
pub const MAX_INPUT: usize = 2048;

/// One primitive or constructed data object: tag, raw value bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// Tag as an integer (`0x7F21`, `0x5F37`, `0x80`, ...).
    pub tag: u32,
    /// The value bytes exactly as they appear in the input.
    pub value: &'a [u8],
    /// The whole TLV (tag, length, value) exactly as it appears in the input.
    pub raw: &'a [u8],
}

fn tag_number(tlv: &Tlv) -> u32 {
    tlv.tag()
        .to_bytes()
        .iter()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

/// Appends the minimal (DER) BER length for `len` to `out`.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// Appends tag, minimal length and value. `tag` is written with as many bytes
/// as it needs (1 to 3).
pub fn push(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take(3).take_while(|b| **b == 0).count();
    out.extend(bytes.iter().skip(skip));
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Encodes one TLV into a fresh vector.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 5);
    push(&mut out, tag, value);
    out
}

/// Reads the first TLV of `input`; returns it and the rest.
pub fn read_one(input: &[u8]) -> Result<(Field<'_>, &[u8])> {
    if input.len() > MAX_INPUT {
        return Err(Error::TooLong);
    }
    let (parsed, rest) = Tlv::parse(input);
    let tlv = parsed.map_err(|_| Error::MalformedTlv)?;
    let consumed = input
        .len()
        .checked_sub(rest.len())
        .ok_or(Error::MalformedTlv)?;
    let raw = input.get(..consumed).ok_or(Error::MalformedTlv)?;
    let value_len = tlv.value().len_as_bytes();
    let header_len = consumed.checked_sub(value_len).ok_or(Error::MalformedTlv)?;
    let value = raw.get(header_len..).ok_or(Error::MalformedTlv)?;
    let tag = tag_number(&tlv);
    // Canonical form only: the header must be the minimal encoding.
    let mut header = Vec::with_capacity(6);
    push(&mut header, tag, &[]);
    header.pop();
    push_len(&mut header, value_len);
    if raw.get(..header_len) != Some(header.as_slice()) {
        return Err(Error::MalformedTlv);
    }
    Ok((Field { tag, value, raw }, rest))
}

/// Reads exactly one TLV with tag `tag` that spans all of `input`.
pub fn read_exact(input: &[u8], tag: u32) -> Result<Field<'_>> {
    let (field, rest) = read_one(input)?;
    if !rest.is_empty() {
        return Err(Error::MalformedTlv);
    }
    expect_tag(&field, tag)?;
    Ok(field)
}

/// Checks a field's tag.
pub fn expect_tag(field: &Field<'_>, tag: u32) -> Result<()> {
    if field.tag == tag {
        Ok(())
    } else {
        Err(Error::UnexpectedTag {
            expected: tag,
            found: field.tag,
        })
    }
}

/// Splits a value into its sequence of TLVs (one level).
pub fn read_all(mut input: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (field, rest) = read_one(input)?;
        out.push(field);
        input = rest;
    }
    Ok(out)
}

/// A cursor over a sequence of TLVs that must appear in a fixed order.
pub struct Sequence<'a> {
    fields: Vec<Field<'a>>,
    pos: usize,
}

impl<'a> Sequence<'a> {
    /// Parses the sequence.
    pub fn new(input: &'a [u8]) -> Result<Self> {
        Ok(Self {
            fields: read_all(input)?,
            pos: 0,
        })
    }

    /// The next field, which must have tag `tag`.
    pub fn required(&mut self, tag: u32) -> Result<Field<'a>> {
        self.optional(tag)?.ok_or(Error::Missing(tag))
    }

    /// The next field if it has tag `tag`.
    pub fn optional(&mut self, tag: u32) -> Result<Option<Field<'a>>> {
        match self.fields.get(self.pos) {
            Some(f) if f.tag == tag => {
                self.pos += 1;
                Ok(Some(*f))
            }
            _ => Ok(None),
        }
    }

    /// All consecutive fields with tag `tag`.
    pub fn repeated(&mut self, tag: u32) -> Vec<Field<'a>> {
        let mut out = Vec::new();
        while let Some(f) = self.fields.get(self.pos) {
            if f.tag != tag {
                break;
            }
            out.push(*f);
            self.pos += 1;
        }
        out
    }

    /// Fails unless every field was consumed.
    pub fn finish(self) -> Result<()> {
        match self.fields.get(self.pos) {
            None => Ok(()),
            Some(f) => Err(Error::UnexpectedTag {
                expected: 0,
                found: f.tag,
            }),
        }
    }
}

/// Tag of a raw `r‖s` signature after a signed body.
pub const TAG_SIGNATURE: u32 = 0x5F37;

/// The parts of a signed object: `OUTER { BODY {…}, 5F37 signature }`.
pub struct SignedParts<'a> {
    /// The body TLV; `body.raw` is exactly the signed bytes.
    pub body: Field<'a>,
    /// The raw signature.
    pub signature: [u8; 64],
}

/// Splits `OUTER { BODY, 5F37 }` spanning all of `bytes`.
pub fn split_signed(bytes: &[u8], outer_tag: u32, body_tag: u32) -> Result<SignedParts<'_>> {
    let outer = read_exact(bytes, outer_tag)?;
    let (body, rest) = read_one(outer.value)?;
    expect_tag(&body, body_tag)?;
    let signature = fixed::<64>(&read_exact(rest, TAG_SIGNATURE)?)?;
    Ok(SignedParts { body, signature })
}

/// Builds `OUTER { body_tlv, 5F37 signature }`.
pub fn join_signed(outer_tag: u32, body_tlv: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(body_tlv.len() + 70);
    inner.extend_from_slice(body_tlv);
    push(&mut inner, TAG_SIGNATURE, signature);
    encode(outer_tag, &inner)
}

/// Reads the `version` field with tag `tag` and requires it to be `01`.
pub fn expect_version_1(s: &mut Sequence<'_>, tag: u32) -> Result<()> {
    let version = s.required(tag)?;
    if version.value != [1] {
        return Err(Error::UnsupportedVersion(
            version.value.first().copied().unwrap_or(0),
        ));
    }
    Ok(())
}

/// Reads the `version` field with tag `tag` and requires it to be `version`.
pub fn expect_version(s: &mut Sequence<'_>, tag: u32, version: u8) -> Result<()> {
    let found = s.required(tag)?;
    if found.value != [version] {
        return Err(Error::UnsupportedVersion(
            found.value.first().copied().unwrap_or(0),
        ));
    }
    Ok(())
}

/// A fixed-size value.
pub fn fixed<const N: usize>(field: &Field<'_>) -> Result<[u8; N]> {
    field
        .value
        .try_into()
        .map_err(|_| Error::BadLength(field.tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_minimal_lengths() {
        assert_eq!(encode(0x80, &[1; 127])[..2], [0x80, 0x7F]);
        assert_eq!(encode(0x80, &[1; 128])[..3], [0x80, 0x81, 0x80]);
        assert_eq!(
            encode(0x7F21, &[0; 300])[..5],
            [0x7F, 0x21, 0x82, 0x01, 0x2C]
        );
    }

    #[test]
    fn round_trips_and_rejects_non_minimal() {
        let bytes = encode(0x5F37, &[7; 200]);
        let f = read_exact(&bytes, 0x5F37).unwrap();
        assert_eq!(f.value, &[7; 200][..]);
        assert_eq!(f.raw, &bytes[..]);
        assert_eq!(
            read_one(&[0x80, 0x81, 0x01, 0xAA]).unwrap_err(),
            Error::MalformedTlv
        );
        assert!(read_exact(&[0x80, 0x01, 0xAA, 0x00], 0x80).is_err());
    }

    #[test]
    fn sequence_enforces_order() {
        let mut v = encode(0x80, &[1]);
        v.extend(encode(0x81, &[2]));
        let mut s = Sequence::new(&v).unwrap();
        assert!(s.optional(0x81).unwrap().is_none());
        s.required(0x80).unwrap();
        s.required(0x81).unwrap();
        s.finish().unwrap();
    }
}
