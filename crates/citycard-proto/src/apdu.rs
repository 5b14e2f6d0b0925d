//! The one APDU module: command and response APDUs (ISO 7816-4 §5.1), their
//! length limits as named constants, the one parser (short form, or short and
//! extended form) and the one short-form encoder, and the
//! [`ContactlessCard`] trait that every card implementation (the reference
//! card in-process, the emulator behind vpcd) presents to a host.
//!
//! The citycard protocol uses short APDUs only ([`CommandView::parse`]); the
//! PIV profile's card also accepts extended length
//! ([`CommandView::parse_extended`]), as PIV middleware may send it.
//!
//! Spec: `applet-spec/SPEC.md` §4 (APDUs).

use alloc::vec::Vec;

use crate::sw::StatusWord;

/// Largest command data field (Lc) and response data field this protocol uses:
/// short APDUs only, so that common readers without extended length work.
pub const MAX_SHORT_DATA: usize = 255;

/// Largest response data field a single short response may carry (Le = `00`).
pub const MAX_SHORT_RESPONSE: usize = 256;

/// Largest command data field of an extended-length APDU (Lc = `FFFF`).
pub const MAX_EXTENDED_DATA: usize = 65_535;

/// Largest response data field an extended-length Le asks for (Le = `0000`).
pub const MAX_EXTENDED_RESPONSE: usize = 65_536;

/// Bytes of the command header: CLA, INS, P1, P2.
pub const HEADER_LEN: usize = 4;

/// Longest short command APDU: header, Lc, [`MAX_SHORT_DATA`] data bytes, Le.
pub const MAX_SHORT_COMMAND: usize = HEADER_LEN + 1 + MAX_SHORT_DATA + 1;

/// CLA bit b5: more commands of this chain follow (ISO 7816-4 §5.4.1).
pub const CLA_CHAINING: u8 = 0x10;

/// INS of GET RESPONSE (ISO 7816-4 §11.4.1).
pub const INS_GET_RESPONSE: u8 = 0xC0;

/// A one-byte length (Lc, Le) as a count: `00` means 256.
pub const fn short_le(byte: u8) -> usize {
    if byte == 0 {
        MAX_SHORT_RESPONSE
    } else {
        byte as usize
    }
}

/// A two-byte extended Le as a count: `0000` means 65536.
const fn extended_le(hi: u8, lo: u8) -> usize {
    match u16::from_be_bytes([hi, lo]) {
        0 => MAX_EXTENDED_RESPONSE,
        n => n as usize,
    }
}

/// Why a byte string is not a well-formed short command APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    /// Fewer than four header bytes.
    #[error("command APDU shorter than its 4-byte header")]
    TooShort,
    /// Lc does not match the number of bytes that follow it.
    #[error("Lc does not match the command's length")]
    LengthMismatch,
    /// Extended-length encoding (Lc = `00` followed by two bytes), which this protocol does not use.
    #[error("extended-length APDUs are not supported")]
    ExtendedLength,
    /// More data than a short APDU can carry.
    #[error("data field longer than 255 bytes")]
    DataTooLong,
}

impl ApduError {
    /// The status word a card answers for this malformed command.
    pub const fn status(self) -> StatusWord {
        StatusWord::WrongLength
    }
}

/// A parsed view of a short command APDU, borrowing its data field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandView<'a> {
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
    /// Expected response length: `None` when absent, `Some(256)` for Le = `00`.
    pub le: Option<usize>,
}

impl<'a> CommandView<'a> {
    /// Parses a short command APDU (cases 1 to 4). Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ApduError> {
        let (header, body) = match bytes.split_first_chunk::<HEADER_LEN>() {
            Some(split) => split,
            None => return Err(ApduError::TooShort),
        };
        let (data, le) = match body {
            [] => (&[][..], None),
            [le] => (&[][..], Some(short_le(*le))),
            [0, _, ..] => return Err(ApduError::ExtendedLength),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                match rest.len().checked_sub(lc) {
                    Some(0) => (rest, None),
                    Some(1) => {
                        let (data, le) = rest.split_at(lc);
                        (data, Some(short_le(le.first().copied().unwrap_or(0))))
                    }
                    _ => return Err(ApduError::LengthMismatch),
                }
            }
        };
        Ok(Self::from_parts(*header, data, le))
    }

    /// Parses a command APDU in short or extended form (cases 1, 2S/2E, 3S/3E
    /// and 4S/4E). An extended Lc of `0000` or lengths that do not add up are
    /// [`ApduError::LengthMismatch`]. Never panics.
    pub fn parse_extended(bytes: &'a [u8]) -> Result<Self, ApduError> {
        match Self::parse(bytes) {
            Err(ApduError::ExtendedLength) => {}
            short => return short,
        }
        let (header, body) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(ApduError::TooShort)?;
        let (data, le) = match body {
            // Case 2E: 00 Le1 Le2.
            [0, hi, lo] => (&[][..], Some(extended_le(*hi, *lo))),
            // Cases 3E and 4E: 00 Lc1 Lc2 data [Le1 Le2].
            [0, hi, lo, rest @ ..] => {
                let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
                if lc == 0 {
                    return Err(ApduError::LengthMismatch);
                }
                match rest.len().checked_sub(lc) {
                    Some(0) => (rest, None),
                    Some(2) => match rest.split_at(lc) {
                        (data, [hi, lo]) => (data, Some(extended_le(*hi, *lo))),
                        _ => return Err(ApduError::LengthMismatch),
                    },
                    _ => return Err(ApduError::LengthMismatch),
                }
            }
            _ => return Err(ApduError::LengthMismatch),
        };
        Ok(Self::from_parts(*header, data, le))
    }

    /// A command from its header, data field and Le.
    pub const fn from_parts(header: [u8; HEADER_LEN], data: &'a [u8], le: Option<usize>) -> Self {
        let [cla, ins, p1, p2] = header;
        Self {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
        }
    }

    /// Encodes as one short APDU: Lc only when there is data, Le `00` for
    /// 256 (and for any Le above it). [`ApduError::DataTooLong`] when the data
    /// field exceeds [`MAX_SHORT_DATA`]: split it with command chaining first
    /// (the transport does). This is the one APDU encoder of the workspace.
    pub fn to_short_bytes(&self) -> Result<Vec<u8>, ApduError> {
        let lc = u8::try_from(self.data.len()).map_err(|_| ApduError::DataTooLong)?;
        let mut out = Vec::with_capacity(HEADER_LEN + 2 + self.data.len());
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if lc > 0 {
            out.push(lc);
            out.extend_from_slice(self.data);
        }
        if let Some(le) = self.le {
            // 256 (or more) is encoded as 00.
            out.push(u8::try_from(le).unwrap_or(0));
        }
        Ok(out)
    }

    /// `true` when the class byte announces that more commands of the chain follow (b5 set).
    pub const fn is_chained(&self) -> bool {
        self.cla & CLA_CHAINING != 0
    }
}

/// An owned command APDU built by a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Class byte.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
    /// Data field; may be longer than 255 bytes, in which case the transport chains it.
    pub data: Vec<u8>,
    /// Expected response length (`Some(256)` encodes as Le = `00`).
    pub le: Option<usize>,
}

impl Command {
    /// A command without data and without Le.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// Sets the data field.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }

    /// Sets Le (1..=256; 256 is sent as `00`).
    pub fn with_le(mut self, le: usize) -> Self {
        self.le = Some(le);
        self
    }

    /// Encodes as one short APDU. Fails if the data field exceeds 255 bytes
    /// (split it with chaining first; see the transport).
    pub fn to_short_bytes(&self) -> Result<Vec<u8>, ApduError> {
        self.view().to_short_bytes()
    }

    /// This command as a borrowed [`CommandView`].
    pub fn view(&self) -> CommandView<'_> {
        CommandView::from_parts([self.cla, self.ins, self.p1, self.p2], &self.data, self.le)
    }
}

/// A response APDU: data field and status word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Response data field.
    pub data: Vec<u8>,
    /// Status word.
    pub sw: StatusWord,
}

impl Response {
    /// Splits raw response bytes into data and SW. `None` if fewer than two bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (data, sw) = bytes.split_last_chunk::<2>()?;
        Some(Self {
            data: data.to_vec(),
            sw: StatusWord::from_bytes(sw[0], sw[1]),
        })
    }

    /// Encodes data followed by SW1 SW2.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }
}

/// The card lost power while processing a command (a torn transaction or a
/// card pulled from the field). No response exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the card lost power during the command")]
pub struct CardLost;

/// A card as a host sees it on the contact or contactless interface: an ATR at
/// power-up, then one response per command APDU.
///
/// The reference card implements this in-process; the emulator exposes it to
/// vpcd; the in-memory transport drives it exactly as PC/SC drives a reader.
pub trait ContactlessCard {
    /// The Answer To Reset sent after power-up or reset.
    fn atr(&self) -> Vec<u8>;
    /// Power cycle: all volatile state (selection, sessions, chaining buffers) is lost.
    fn reset(&mut self);
    /// Processes one command APDU (raw bytes) and returns the response (data and SW).
    /// `Err(CardLost)` when the card lost power mid-command: no response, and the
    /// card must be reset before it answers again.
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_four_cases() {
        let c1 = CommandView::parse(&[0, 0xA4, 4, 0]).unwrap();
        assert_eq!((c1.data.len(), c1.le), (0, None));
        let c2 = CommandView::parse(&[0, 0xC0, 0, 0, 0]).unwrap();
        assert_eq!(c2.le, Some(256));
        let c3 = CommandView::parse(&[0, 0xDA, 0, 0, 2, 9, 8]).unwrap();
        assert_eq!((c3.data, c3.le), (&[9u8, 8][..], None));
        let c4 = CommandView::parse(&[0, 0x86, 0, 0, 1, 7, 0x10]).unwrap();
        assert_eq!((c4.data, c4.le), (&[7u8][..], Some(16)));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(CommandView::parse(&[0, 1, 2]), Err(ApduError::TooShort));
        assert_eq!(
            CommandView::parse(&[0, 1, 2, 3, 3, 1]),
            Err(ApduError::LengthMismatch)
        );
        assert_eq!(
            CommandView::parse(&[0, 1, 2, 3, 1, 1, 1, 1]),
            Err(ApduError::LengthMismatch)
        );
        assert_eq!(
            CommandView::parse(&[0, 1, 2, 3, 0, 0, 1, 5]),
            Err(ApduError::ExtendedLength)
        );
    }

    #[test]
    fn parses_short_and_extended_forms() {
        let a = CommandView::parse_extended(&[0, 0xCB, 0x3F, 0xFF, 1, 0x7E, 0]).unwrap();
        assert_eq!((a.data, a.le), (&[0x7Eu8][..], Some(256)));
        let b = CommandView::parse_extended(&[0, 0xCB, 0x3F, 0xFF, 0, 0, 1, 0x7E, 0, 0]).unwrap();
        assert_eq!((b.data, b.le), (&[0x7Eu8][..], Some(MAX_EXTENDED_RESPONSE)));
        let c = CommandView::parse_extended(&[0, 0xC0, 0, 0, 0, 0x01, 0x00]).unwrap();
        assert_eq!((c.data.len(), c.le), (0, Some(256)));
        let d = CommandView::parse_extended(&[0, 0xDB, 0x3F, 0xFF, 0, 0, 2, 1, 2]).unwrap();
        assert_eq!((d.data, d.le), (&[1u8, 2][..], None));
        assert_eq!(
            CommandView::parse_extended(&[0, 1, 2]),
            Err(ApduError::TooShort)
        );
        for bad in [
            &[0, 1, 2, 3, 0, 0, 3, 1][..],
            &[0, 1, 2, 3, 0, 0, 0, 1],
            &[0, 1, 2, 3, 0, 0, 1, 5, 0],
        ] {
            assert_eq!(
                CommandView::parse_extended(bad).map_err(ApduError::status),
                Err(StatusWord::WrongLength)
            );
        }
    }

    #[test]
    fn encodes_all_short_cases() {
        let enc = |data: &[u8], le| {
            CommandView::from_parts([0, 0xA4, 4, 0], data, le)
                .to_short_bytes()
                .unwrap()
        };
        assert_eq!(enc(&[], None), [0, 0xA4, 4, 0]);
        assert_eq!(enc(&[], Some(256)), [0, 0xA4, 4, 0, 0]);
        assert_eq!(enc(&[1, 2], None), [0, 0xA4, 4, 0, 2, 1, 2]);
        assert_eq!(enc(&[7], Some(16)), [0, 0xA4, 4, 0, 1, 7, 16]);
        let at_limit = alloc::vec![0u8; MAX_SHORT_DATA];
        assert_eq!(enc(&at_limit, None).len(), HEADER_LEN + 1 + MAX_SHORT_DATA);
        assert_eq!(enc(&at_limit, Some(256)).len(), MAX_SHORT_COMMAND);
        let past_limit = alloc::vec![0u8; MAX_SHORT_DATA + 1];
        assert_eq!(
            CommandView::from_parts([0; 4], &past_limit, None).to_short_bytes(),
            Err(ApduError::DataTooLong)
        );
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let cmd = Command::new(0x80, 0x86, 1, 2)
            .with_data([1u8, 2, 3])
            .with_le(256);
        let bytes = cmd.to_short_bytes().unwrap();
        let view = CommandView::parse(&bytes).unwrap();
        assert_eq!((view.cla, view.ins, view.p1, view.p2), (0x80, 0x86, 1, 2));
        assert_eq!(view.data, &[1, 2, 3]);
        assert_eq!(view.le, Some(256));
        assert!(Command::new(0, 0, 0, 0)
            .with_data(alloc::vec![0u8; 256])
            .to_short_bytes()
            .is_err());
    }
}
