//! The one BER-TLV reader and writer of the project.
//!
//! Every object this protocol signs is encoded in exactly one way: the
//! minimal (DER) length form and a canonical tag. [`push_len`] writes that
//! form for any length (it cannot emit a wrong header), and the strict
//! readers ([`read_one`], [`read_one_within`], [`Sequence`], ...) refuse any
//! other form. The PIV profile reads host data leniently
//! ([`read_lenient`]): SP 800-73-4 lets hosts use non-minimal lengths.
//!
//! Length forms (SPEC §1): `00`–`7F`, `81 xx`, `82 xx xx`, `83 xx xx xx`.
//! Every object has its own maximum encoded length, a named constant shared by
//! its writer and its reader: card-side objects are bounded by
//! [`MAX_CARD_OBJECT_LEN`], host-side objects by their own constant (for
//! example [`crate::revocation::MAX_REVOCATION_LIST_LEN`]).
//!
//! Written here rather than with a TLV crate because the readers must borrow
//! (a trust bundle holds a megabyte of revocation data that must not be copied
//! or re-parsed as a tree), must refuse non-minimal forms, and must bound
//! every object by its own limit; the crate we used before copied every value,
//! recursed into constructed values, and encoded a 127-byte length as
//! `81 7F`.

use alloc::vec::Vec;

use crate::error::{Error, Result};

/// Largest encoded length (tag, length and value) of a card-side object:
/// everything a card stores, sends or receives, and every field inside a
/// host-side object unless that object names a larger bound.
pub const MAX_CARD_OBJECT_LEN: usize = 2048;

/// Longest length field a reader accepts after its first byte: `83 xx xx xx`.
pub const MAX_LENGTH_FORM_BYTES: usize = 3;

/// Largest value length the `83 xx xx xx` form can carry.
pub const MAX_VALUE_LEN: usize = 0xFF_FFFF;

/// Longest tag this protocol uses, in bytes (`5F C1 02`).
pub const MAX_TAG_BYTES: usize = 3;

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

/// How a reader treats the length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LengthForm {
    /// Only the minimal (DER) form.
    Minimal,
    /// Any of the forms up to `83 xx xx xx`, minimal or not.
    Lenient,
}

/// Appends the minimal (DER) BER length for `len` to `out`: one byte below
/// `0x80`, otherwise `0x80 | n` and the `n` big-endian bytes of `len`, with
/// `n` as small as possible. Correct for every `usize`; readers accept at most
/// [`MAX_LENGTH_FORM_BYTES`] length bytes, and every encoder checks its
/// object's maximum before writing.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = (len as u64).to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// Appends the bytes of `tag` (1 to [`MAX_TAG_BYTES`]), leading zero bytes
/// dropped.
pub fn push_tag(out: &mut Vec<u8>, tag: u32) {
    let bytes = tag.to_be_bytes();
    let skip = bytes.iter().take(3).take_while(|b| **b == 0).count();
    out.extend(bytes.iter().skip(skip));
}

/// Appends tag, minimal length and value.
pub fn push(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    push_tag(out, tag);
    push_len(out, value.len());
    out.extend_from_slice(value);
}

/// Encodes one TLV into a fresh vector.
pub fn encode(tag: u32, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    push(&mut out, tag, value);
    out
}

/// Reads a tag: one byte, or `xF` followed by subsequent bytes while b8 is
/// set, at most [`MAX_TAG_BYTES`] in all. Returns the tag and the rest.
fn read_tag(input: &[u8]) -> Result<(u32, &[u8])> {
    let (&first, mut rest) = input.split_first().ok_or(Error::MalformedTlv)?;
    let mut tag = u32::from(first);
    if first & 0x1F != 0x1F {
        return Ok((tag, rest));
    }
    for n in 1..MAX_TAG_BYTES {
        let (&b, r) = rest.split_first().ok_or(Error::MalformedTlv)?;
        rest = r;
        // A first subsequent byte of 80 would be a padded (non-canonical) tag.
        if n == 1 && b == 0x80 {
            return Err(Error::MalformedTlv);
        }
        tag = (tag << 8) | u32::from(b);
        if b & 0x80 == 0 {
            return Ok((tag, rest));
        }
    }
    Err(Error::MalformedTlv)
}

/// Reads a length field. Returns the value length and the rest.
fn read_len(input: &[u8], form: LengthForm) -> Result<(usize, &[u8])> {
    let (&first, rest) = input.split_first().ok_or(Error::MalformedTlv)?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7F);
    if n == 0 || n > MAX_LENGTH_FORM_BYTES {
        return Err(Error::MalformedTlv);
    }
    let bytes = rest.get(..n).ok_or(Error::MalformedTlv)?;
    let rest = rest.get(n..).ok_or(Error::MalformedTlv)?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if form == LengthForm::Minimal {
        let mut minimal = Vec::with_capacity(4);
        push_len(&mut minimal, len);
        if minimal.len() != n + 1 {
            return Err(Error::MalformedTlv);
        }
    }
    Ok((len, rest))
}

fn read_with(input: &[u8], max_len: usize, form: LengthForm) -> Result<(Field<'_>, &[u8])> {
    let (tag, after_tag) = read_tag(input)?;
    let (value_len, after_len) = read_len(after_tag, form)?;
    let header_len = input.len() - after_len.len();
    let total = header_len
        .checked_add(value_len)
        .ok_or(Error::MalformedTlv)?;
    if total > max_len {
        return Err(Error::TooLong);
    }
    let value = after_len.get(..value_len).ok_or(Error::MalformedTlv)?;
    let raw = input.get(..total).ok_or(Error::MalformedTlv)?;
    let rest = input.get(total..).ok_or(Error::MalformedTlv)?;
    Ok((Field { tag, value, raw }, rest))
}

/// Reads the first TLV of `input` (minimal form only, at most
/// [`MAX_CARD_OBJECT_LEN`] bytes in all); returns it and the rest.
pub fn read_one(input: &[u8]) -> Result<(Field<'_>, &[u8])> {
    read_one_within(input, MAX_CARD_OBJECT_LEN)
}

/// Reads the first TLV of `input` (minimal form only); the TLV (tag, length
/// and value) may be at most `max_len` bytes ([`Error::TooLong`]).
pub fn read_one_within(input: &[u8], max_len: usize) -> Result<(Field<'_>, &[u8])> {
    read_with(input, max_len, LengthForm::Minimal)
}

/// Reads the first TLV of `input` accepting any length form up to
/// `83 xx xx xx`, minimal or not (host data of the PIV profile).
pub fn read_lenient(input: &[u8]) -> Result<(Field<'_>, &[u8])> {
    read_with(input, usize::MAX, LengthForm::Lenient)
}

/// Reads exactly one TLV with tag `tag` that spans all of `input`
/// (at most [`MAX_CARD_OBJECT_LEN`] bytes).
pub fn read_exact(input: &[u8], tag: u32) -> Result<Field<'_>> {
    read_exact_within(input, tag, MAX_CARD_OBJECT_LEN)
}

/// Reads exactly one TLV with tag `tag` of at most `max_len` bytes that spans
/// all of `input`.
pub fn read_exact_within(input: &[u8], tag: u32, max_len: usize) -> Result<Field<'_>> {
    let (field, rest) = read_one_within(input, max_len)?;
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

/// Splits a value into its sequence of TLVs (one level), each at most
/// [`MAX_CARD_OBJECT_LEN`] bytes.
pub fn read_all(input: &[u8]) -> Result<Vec<Field<'_>>> {
    read_all_within(input, MAX_CARD_OBJECT_LEN)
}

/// Splits a value into its sequence of TLVs (one level), each at most
/// `max_len` bytes.
pub fn read_all_within(mut input: &[u8], max_len: usize) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (field, rest) = read_one_within(input, max_len)?;
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
    /// Parses the sequence (each field at most [`MAX_CARD_OBJECT_LEN`] bytes).
    pub fn new(input: &'a [u8]) -> Result<Self> {
        Self::within(input, MAX_CARD_OBJECT_LEN)
    }

    /// Parses the sequence, each field at most `max_len` bytes (the object's
    /// own limit; fields then check their own sizes).
    pub fn within(input: &'a [u8], max_len: usize) -> Result<Self> {
        Ok(Self {
            fields: read_all_within(input, max_len)?,
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

/// Splits `OUTER { BODY, 5F37 }` spanning all of `bytes` (a card-side object,
/// at most [`MAX_CARD_OBJECT_LEN`] bytes).
pub fn split_signed(bytes: &[u8], outer_tag: u32, body_tag: u32) -> Result<SignedParts<'_>> {
    split_signed_within(bytes, outer_tag, body_tag, MAX_CARD_OBJECT_LEN)
}

/// Splits `OUTER { BODY, 5F37 }` spanning all of `bytes`, at most `max_len`
/// bytes in all.
pub fn split_signed_within(
    bytes: &[u8],
    outer_tag: u32,
    body_tag: u32,
    max_len: usize,
) -> Result<SignedParts<'_>> {
    let outer = read_exact_within(bytes, outer_tag, max_len)?;
    let (body, rest) = read_one_within(outer.value, max_len)?;
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
    use alloc::vec;

    /// Decodes a length field by the X.690 rules, independently of `read_len`.
    fn x690_len(header: &[u8]) -> Option<(u64, usize)> {
        let first = *header.first()?;
        if first < 0x80 {
            return Some((u64::from(first), 1));
        }
        let n = usize::from(first & 0x7F);
        let bytes = header.get(1..1 + n)?;
        Some((
            bytes.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b)),
            1 + n,
        ))
    }

    #[test]
    fn encodes_minimal_lengths() {
        assert_eq!(encode(0x80, &[1; 127])[..2], [0x80, 0x7F]);
        assert_eq!(encode(0x80, &[1; 128])[..3], [0x80, 0x81, 0x80]);
        assert_eq!(
            encode(0x7F21, &[0; 300])[..5],
            [0x7F, 0x21, 0x82, 0x01, 0x2C]
        );
        assert_eq!(
            encode(0x84, &[0; 70_000])[..5],
            [0x84, 0x83, 0x01, 0x11, 0x70]
        );
    }

    #[test]
    fn no_length_gets_a_wrong_header() {
        let edges: [usize; 14] = [
            0,
            0x7F,
            0x80,
            0xFF,
            0x100,
            0xFFFF,
            0x1_0000,
            MAX_VALUE_LEN,
            MAX_VALUE_LEN + 1,
            0xFFFF_FFFF,
            0x1_0000_0000usize,
            0x00FF_FFFF_FFFF_FFFF,
            0x0100_0000_0000_0000,
            usize::MAX,
        ];
        for len in edges {
            let mut header = Vec::new();
            push_len(&mut header, len);
            let (decoded, used) = x690_len(&header).unwrap();
            assert_eq!(decoded, len as u64, "length {len:#x}");
            assert_eq!(used, header.len());
            // Minimal: no leading zero length byte, and the long form only
            // from 0x80 on.
            if len >= 0x80 {
                assert_ne!(header.get(1), Some(&0), "length {len:#x}");
            } else {
                assert_eq!(header.len(), 1);
            }
        }
    }

    #[test]
    fn reads_every_length_form_up_to_three_bytes() {
        for len in [0usize, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x1_0000, 0x12_3456] {
            let bytes = encode(0x86, &vec![0x5A; len]);
            let f = read_exact_within(&bytes, 0x86, bytes.len()).unwrap();
            assert_eq!(f.value.len(), len);
            assert_eq!(f.raw, &bytes[..]);
        }
        // 84 xx xx xx xx is past the longest form.
        assert_eq!(
            read_one_within(&[0x80, 0x84, 0, 0, 0, 1, 0], usize::MAX).unwrap_err(),
            Error::MalformedTlv
        );
        // 80 (indefinite) is not allowed.
        assert!(read_one(&[0x80, 0x80, 0, 0]).is_err());
    }

    #[test]
    fn object_limit_at_and_past() {
        let at = encode(0x80, &vec![1; MAX_CARD_OBJECT_LEN - 4]);
        assert_eq!(at.len(), MAX_CARD_OBJECT_LEN);
        read_exact(&at, 0x80).unwrap();
        let past = encode(0x80, &vec![1; MAX_CARD_OBJECT_LEN - 3]);
        assert_eq!(read_exact(&past, 0x80).unwrap_err(), Error::TooLong);
        assert_eq!(
            read_exact_within(&past, 0x80, past.len())
                .unwrap()
                .value
                .len(),
            MAX_CARD_OBJECT_LEN - 3
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
        assert_eq!(
            read_one(&[0x80, 0x82, 0x00, 0x81, 0xAA]).unwrap_err(),
            Error::MalformedTlv
        );
        assert_eq!(
            read_one_within(&[0x80, 0x83, 0x00, 0xFF, 0xFF], usize::MAX).unwrap_err(),
            Error::MalformedTlv
        );
        assert!(read_exact(&[0x80, 0x01, 0xAA, 0x00], 0x80).is_err());
        // The lenient reader takes the same bytes.
        let (f, rest) = read_lenient(&[0x53, 0x82, 0x00, 0x01, 0x07]).unwrap();
        assert_eq!((f.tag, f.value, rest), (0x53, &[7u8][..], &[][..]));
    }

    #[test]
    fn tags_of_one_to_three_bytes() {
        for tag in [0x53u32, 0x7F49, 0x5FC102] {
            let bytes = encode(tag, &[1, 2]);
            assert_eq!(read_one(&bytes).unwrap().0.tag, tag);
        }
        assert!(
            read_one(&[0x5F, 0xC1, 0x82, 0x01, 0x00]).is_err(),
            "four-byte tag"
        );
        assert!(read_one(&[0x5F, 0x80, 0x21, 0x00]).is_err(), "padded tag");
        assert!(read_one(&[0x5F]).is_err());
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
