//! Command and response APDUs (ISO 7816-4 short form only) and the
//! [`ContactlessCard`] trait that every card implementation (the reference
//! card in-process, the emulator behind vpcd) presents to a host.
//!
//! Spec: `applet-spec/SPEC.md` §4 (APDUs).

use alloc::vec::Vec;

use crate::sw::StatusWord;

/// Largest command data field (Lc) and response data field this protocol uses:
/// short APDUs only, so that common readers without extended length work.
pub const MAX_SHORT_DATA: usize = 255;

/// Largest response data field a single short response may carry (Le = `00`).
pub const MAX_SHORT_RESPONSE: usize = 256;

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
        let (header, body) = match bytes.split_first_chunk::<4>() {
            Some(split) => split,
            None => return Err(ApduError::TooShort),
        };
        let [cla, ins, p1, p2] = *header;
        let (data, le) = match body {
            [] => (&[][..], None),
            [le] => (&[][..], Some(if *le == 0 { 256 } else { usize::from(*le) })),
            [0, _, ..] => return Err(ApduError::ExtendedLength),
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                match rest.len().checked_sub(lc) {
                    Some(0) => (rest, None),
                    Some(1) => {
                        let (data, le) = rest.split_at(lc);
                        let le = le.first().copied().unwrap_or(0);
                        (data, Some(if le == 0 { 256 } else { usize::from(le) }))
                    }
                    _ => return Err(ApduError::LengthMismatch),
                }
            }
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

    /// `true` when the class byte announces that more commands of the chain follow (b5 set).
    pub const fn is_chained(&self) -> bool {
        self.cla & 0x10 != 0
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
        let lc = u8::try_from(self.data.len()).map_err(|_| ApduError::DataTooLong)?;
        let mut out = Vec::with_capacity(6 + self.data.len());
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if lc > 0 {
            out.push(lc);
            out.extend_from_slice(&self.data);
        }
        if let Some(le) = self.le {
            out.push(if le >= 256 { 0 } else { le as u8 });
        }
        Ok(out)
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
