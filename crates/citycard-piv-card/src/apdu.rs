//! Command APDU parsing, short and extended length (ISO 7816-4 §5.1).
//!
//! The citycard profile uses short APDUs only
//! ([`citycard_proto::apdu::CommandView`]); PIV middleware may use extended
//! length when the reader allows it, so this card accepts both forms.

use citycard_proto::apdu::CommandView;
use citycard_proto::StatusWord;

/// A parsed command APDU borrowing its data field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apdu<'a> {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Command data field (empty when Lc is absent).
    pub data: &'a [u8],
    /// Expected response length: `None` when Le is absent, `Some(256)` for a
    /// short `00`, `Some(65536)` for an extended `00 00`.
    pub le: Option<usize>,
}

impl<'a> Apdu<'a> {
    /// Parses cases 1, 2, 3 and 4 in short or extended form; `6700` when the
    /// lengths are inconsistent. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, StatusWord> {
        if let Ok(c) = CommandView::parse(bytes) {
            return Ok(Self {
                cla: c.cla,
                ins: c.ins,
                p1: c.p1,
                p2: c.p2,
                data: c.data,
                le: c.le,
            });
        }
        let (header, body) = bytes
            .split_first_chunk::<4>()
            .ok_or(StatusWord::WrongLength)?;
        let [cla, ins, p1, p2] = *header;
        let extended = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
            0 => 65536usize,
            n => usize::from(n),
        };
        let (data, le) = match body {
            // Case 2E: 00 Le1 Le2.
            [0, hi, lo] => (&[][..], Some(extended(*hi, *lo))),
            // Cases 3E and 4E: 00 Lc1 Lc2 data [Le1 Le2].
            [0, hi, lo, rest @ ..] => {
                let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
                if lc == 0 {
                    return Err(StatusWord::WrongLength);
                }
                match rest.len().checked_sub(lc) {
                    Some(0) => (rest, None),
                    Some(2) => {
                        let (data, le) = rest.split_at(lc);
                        match le {
                            [h, l] => (data, Some(extended(*h, *l))),
                            _ => return Err(StatusWord::WrongLength),
                        }
                    }
                    _ => return Err(StatusWord::WrongLength),
                }
            }
            _ => return Err(StatusWord::WrongLength),
        };
        Ok(Self {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_extended_forms() {
        let a = Apdu::parse(&[0, 0xCB, 0x3F, 0xFF, 1, 0x7E, 0]).unwrap();
        assert_eq!((a.data, a.le), (&[0x7Eu8][..], Some(256)));
        let b = Apdu::parse(&[0, 0xCB, 0x3F, 0xFF, 0, 0, 1, 0x7E, 0, 0]).unwrap();
        assert_eq!((b.data, b.le), (&[0x7Eu8][..], Some(65536)));
        let c = Apdu::parse(&[0, 0xC0, 0, 0, 0, 0x01, 0x00]).unwrap();
        assert_eq!((c.data.len(), c.le), (0, Some(256)));
        let d = Apdu::parse(&[0, 0xDB, 0x3F, 0xFF, 0, 0, 2, 1, 2]).unwrap();
        assert_eq!((d.data, d.le), (&[1u8, 2][..], None));
        assert_eq!(Apdu::parse(&[0, 1, 2]), Err(StatusWord::WrongLength));
        assert_eq!(
            Apdu::parse(&[0, 1, 2, 3, 0, 0, 3, 1]),
            Err(StatusWord::WrongLength)
        );
        assert_eq!(
            Apdu::parse(&[0, 1, 2, 3, 0, 0, 0, 1]),
            Err(StatusWord::WrongLength)
        );
    }
}
