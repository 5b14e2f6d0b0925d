//! ISO 7816-4 status words as a typed enum shared by card and host.
//!
//! Spec: `applet-spec/SPEC.md` §9 (status words).

use core::fmt;

/// A status word (SW1-SW2) that ends every response APDU.
///
/// Every value round-trips through `u16`: [`StatusWord::from_u16`] never fails,
/// unknown values land in [`StatusWord::Other`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusWord {
    /// `9000`: success.
    Success,
    /// `61xx`: success, `xx` more bytes available with GET RESPONSE (`00` = 256 or more).
    BytesRemaining(u8),
    /// `6283`: the application is terminated (SELECT answer of a terminated card).
    SelectedFileDeactivated,
    /// `6581`: memory failure (persistent write failed).
    MemoryFailure,
    /// `6700`: wrong length (Lc or data length inconsistent with the command).
    WrongLength,
    /// `6883`: last command of a chain expected.
    LastCommandExpected,
    /// `6884`: command chaining not supported for this command.
    ChainingNotSupported,
    /// `6982`: security status not satisfied. The card's one and only answer to
    /// every failure before reader authentication completes (uniform failure).
    SecurityStatusNotSatisfied,
    /// `6985`: conditions of use not satisfied (command not allowed in this life-cycle state).
    ConditionsNotSatisfied,
    /// `6A80`: incorrect parameters in the command data field.
    IncorrectData,
    /// `6A82`: application not found (SELECT of an unknown AID).
    FileNotFound,
    /// `6A84`: not enough memory space.
    NotEnoughMemory,
    /// `6A86`: incorrect P1-P2.
    IncorrectP1P2,
    /// `6A88`: referenced data not found.
    ReferencedDataNotFound,
    /// `6Cxx`: wrong Le; resend with Le = `xx`.
    WrongLe(u8),
    /// `6D00`: instruction not supported.
    InstructionNotSupported,
    /// `6E00`: class not supported.
    ClassNotSupported,
    /// `6F00`: no precise diagnosis.
    Unknown,
    /// Any other status word, kept verbatim.
    Other(u16),
}

impl StatusWord {
    /// Decodes a status word. Never fails: unknown values become [`StatusWord::Other`].
    pub const fn from_u16(sw: u16) -> Self {
        match sw {
            0x9000 => Self::Success,
            0x6283 => Self::SelectedFileDeactivated,
            0x6581 => Self::MemoryFailure,
            0x6700 => Self::WrongLength,
            0x6883 => Self::LastCommandExpected,
            0x6884 => Self::ChainingNotSupported,
            0x6982 => Self::SecurityStatusNotSatisfied,
            0x6985 => Self::ConditionsNotSatisfied,
            0x6A80 => Self::IncorrectData,
            0x6A82 => Self::FileNotFound,
            0x6A84 => Self::NotEnoughMemory,
            0x6A86 => Self::IncorrectP1P2,
            0x6A88 => Self::ReferencedDataNotFound,
            0x6D00 => Self::InstructionNotSupported,
            0x6E00 => Self::ClassNotSupported,
            0x6F00 => Self::Unknown,
            _ => match (sw >> 8) as u8 {
                0x61 => Self::BytesRemaining(sw as u8),
                0x6C => Self::WrongLe(sw as u8),
                _ => Self::Other(sw),
            },
        }
    }

    /// Decodes SW1 and SW2.
    pub const fn from_bytes(sw1: u8, sw2: u8) -> Self {
        Self::from_u16(((sw1 as u16) << 8) | sw2 as u16)
    }

    /// The 16-bit value.
    pub const fn to_u16(self) -> u16 {
        match self {
            Self::Success => 0x9000,
            Self::BytesRemaining(n) => 0x6100 | n as u16,
            Self::SelectedFileDeactivated => 0x6283,
            Self::MemoryFailure => 0x6581,
            Self::WrongLength => 0x6700,
            Self::LastCommandExpected => 0x6883,
            Self::ChainingNotSupported => 0x6884,
            Self::SecurityStatusNotSatisfied => 0x6982,
            Self::ConditionsNotSatisfied => 0x6985,
            Self::IncorrectData => 0x6A80,
            Self::FileNotFound => 0x6A82,
            Self::NotEnoughMemory => 0x6A84,
            Self::IncorrectP1P2 => 0x6A86,
            Self::ReferencedDataNotFound => 0x6A88,
            Self::WrongLe(n) => 0x6C00 | n as u16,
            Self::InstructionNotSupported => 0x6D00,
            Self::ClassNotSupported => 0x6E00,
            Self::Unknown => 0x6F00,
            Self::Other(sw) => sw,
        }
    }

    /// SW1 and SW2 as bytes, in transmission order.
    pub const fn to_bytes(self) -> [u8; 2] {
        self.to_u16().to_be_bytes()
    }

    /// `true` for `9000` and `61xx` (processing completed).
    pub const fn is_success(self) -> bool {
        matches!(self, Self::Success | Self::BytesRemaining(_))
    }
}

impl From<u16> for StatusWord {
    fn from(sw: u16) -> Self {
        Self::from_u16(sw)
    }
}

impl From<StatusWord> for u16 {
    fn from(sw: StatusWord) -> Self {
        sw.to_u16()
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::Success => "success",
            Self::BytesRemaining(_) => "more data available",
            Self::SelectedFileDeactivated => "application terminated",
            Self::MemoryFailure => "memory failure",
            Self::WrongLength => "wrong length",
            Self::LastCommandExpected => "last command of chain expected",
            Self::ChainingNotSupported => "chaining not supported",
            Self::SecurityStatusNotSatisfied => "security status not satisfied",
            Self::ConditionsNotSatisfied => "conditions of use not satisfied",
            Self::IncorrectData => "incorrect data",
            Self::FileNotFound => "application not found",
            Self::NotEnoughMemory => "not enough memory",
            Self::IncorrectP1P2 => "incorrect P1-P2",
            Self::ReferencedDataNotFound => "referenced data not found",
            Self::WrongLe(_) => "wrong Le",
            Self::InstructionNotSupported => "instruction not supported",
            Self::ClassNotSupported => "class not supported",
            Self::Unknown => "no precise diagnosis",
            Self::Other(_) => "unknown status",
        };
        write!(f, "{:04X} ({text})", self.to_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::StatusWord;

    #[test]
    fn every_u16_round_trips() {
        for v in 0..=u16::MAX {
            assert_eq!(StatusWord::from_u16(v).to_u16(), v, "{v:04X}");
        }
    }

    #[test]
    fn known_values_decode_to_named_variants() {
        assert_eq!(StatusWord::from_u16(0x9000), StatusWord::Success);
        assert_eq!(
            StatusWord::from_u16(0x6110),
            StatusWord::BytesRemaining(0x10)
        );
        assert_eq!(StatusWord::from_u16(0x6C05), StatusWord::WrongLe(5));
        assert_eq!(
            StatusWord::from_u16(0x6982),
            StatusWord::SecurityStatusNotSatisfied
        );
        assert_eq!(StatusWord::from_u16(0x6A81), StatusWord::Other(0x6A81));
    }
}
