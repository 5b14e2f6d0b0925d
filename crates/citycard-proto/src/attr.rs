//! The attribute dictionary (spec §5.4).
//!
//! Every attribute has a one-byte id, which is also its bit in an
//! [`AttributeSet`] (the 32-bit masks in certificates and requests).
//!
//! By design there is no id, and no issuer-defined use of an id, for
//! nationality, document type, immigration or administrative status. The
//! issuer-defined range is for programme data only (e.g. a library patron
//! category); the spec forbids using it for those fields.

use alloc::string::String;
use core::fmt;

use crate::date::Date;
use crate::error::{Error, Result};

/// One-byte attribute identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttributeId(u8);

/// The kinds of thing an [`AttributeId`] can stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeKind {
    /// The per-partner pseudonym computed by the card (bit 0).
    Pseudonym,
    /// A value stored on the card, salted and digested in the issuer-signed record.
    Stored,
    /// A yes/no answer the card computes from a stored value (age over N).
    Predicate,
}

impl AttributeId {
    /// Per-partner pseudonym (card-computed, never stored in the clear anywhere).
    pub const PSEUDONYM: Self = Self(0);
    /// Card number, printable ASCII, 1–20 characters.
    pub const CARD_NUMBER: Self = Self(1);
    /// The name the holder uses (chosen name allowed), UTF-8, 1–64 bytes.
    pub const NAME: Self = Self(2);
    /// Birth date (4-byte date).
    pub const BIRTH_DATE: Self = Self(3);
    /// Postal address, UTF-8, 1–96 bytes.
    pub const ADDRESS: Self = Self(4);
    /// Care-of address (residence attested by an association), UTF-8, 1–96 bytes.
    pub const CARE_OF_ADDRESS: Self = Self(5);
    /// Preferred language, ISO 639-1/-2 lowercase code, 2–3 letters.
    pub const LANGUAGE: Self = Self(6);
    /// Gender as the holder states it; optional and absent by default. UTF-8, 1–16 bytes.
    pub const GENDER: Self = Self(7);
    /// Resident of the issuing city (1 byte, `01`), attested at issuance.
    pub const RESIDENT: Self = Self(8);
    /// Age 18 or over on the reader's date (card-computed from the birth date).
    pub const AGE_OVER_18: Self = Self(16);
    /// Age 21 or over on the reader's date.
    pub const AGE_OVER_21: Self = Self(17);
    /// Age 65 or over on the reader's date.
    pub const AGE_OVER_65: Self = Self(18);
    /// First issuer-defined id (24–31: opaque bytes, 1–32).
    pub const ISSUER_DEFINED_FIRST: u8 = 24;

    /// The id for a raw byte, if the dictionary defines it.
    pub const fn new(id: u8) -> Result<Self> {
        match id {
            0..=8 | 16..=18 | 24..=31 => Ok(Self(id)),
            _ => Err(Error::UnknownAttribute(id)),
        }
    }

    /// The raw byte.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// What kind of attribute this is.
    pub const fn kind(self) -> AttributeKind {
        match self.0 {
            0 => AttributeKind::Pseudonym,
            16..=23 => AttributeKind::Predicate,
            _ => AttributeKind::Stored,
        }
    }

    /// For an age predicate, the age threshold.
    pub const fn age_threshold(self) -> Option<u16> {
        match self.0 {
            16 => Some(18),
            17 => Some(21),
            18 => Some(65),
            _ => None,
        }
    }

    /// For a stored attribute, the size its value is padded to in a disclosed
    /// entry (spec §5.4, §7.5); `None` for the pseudonym and predicates.
    pub const fn fixed_size(self) -> Option<usize> {
        match self.0 {
            1 => Some(20),
            2 => Some(64),
            3 => Some(4),
            4 | 5 => Some(96),
            6 => Some(3),
            7 => Some(16),
            8 => Some(1),
            24..=31 => Some(32),
            _ => None,
        }
    }

    /// Machine name used in files and on the command line.
    pub const fn name(self) -> &'static str {
        match self.0 {
            0 => "pseudonym",
            1 => "card_number",
            2 => "name",
            3 => "birth_date",
            4 => "address",
            5 => "care_of_address",
            6 => "language",
            7 => "gender",
            8 => "resident",
            16 => "age_over_18",
            17 => "age_over_21",
            18 => "age_over_65",
            24 => "issuer_24",
            25 => "issuer_25",
            26 => "issuer_26",
            27 => "issuer_27",
            28 => "issuer_28",
            29 => "issuer_29",
            30 => "issuer_30",
            _ => "issuer_31",
        }
    }

    /// Looks an id up by its machine name.
    pub fn from_name(name: &str) -> Result<Self> {
        ALL.iter()
            .copied()
            .find(|id| id.name() == name)
            .ok_or(Error::UnknownAttribute(0xFF))
    }

    /// Checks that `value` is a valid encoding for this stored attribute.
    pub fn validate_value(self, value: &[u8]) -> Result<()> {
        let tag = u32::from(self.0);
        let utf8 = |max: usize| -> Result<()> {
            if value.is_empty() || value.len() > max {
                return Err(Error::BadLength(tag));
            }
            let text = core::str::from_utf8(value).map_err(|_| Error::BadValue(tag))?;
            if text.chars().any(char::is_control) || text.trim() != text {
                return Err(Error::BadValue(tag));
            }
            Ok(())
        };
        match self.0 {
            1 => {
                if value.is_empty() || value.len() > 20 {
                    return Err(Error::BadLength(tag));
                }
                if !value
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                {
                    return Err(Error::BadValue(tag));
                }
                Ok(())
            }
            2 => utf8(64),
            3 => Date::from_bytes(value).map(|_| ()),
            4 | 5 => utf8(96),
            6 => {
                if !(2..=3).contains(&value.len()) {
                    return Err(Error::BadLength(tag));
                }
                if !value.iter().all(u8::is_ascii_lowercase) {
                    return Err(Error::BadValue(tag));
                }
                Ok(())
            }
            7 => utf8(16),
            8 => match value {
                [1] => Ok(()),
                [_] => Err(Error::BadValue(tag)),
                _ => Err(Error::BadLength(tag)),
            },
            24..=31 => {
                if value.is_empty() || value.len() > 32 {
                    return Err(Error::BadLength(tag));
                }
                Ok(())
            }
            _ => Err(Error::BadValue(tag)),
        }
    }

    /// Renders a stored value for people (dates as YYYY-MM-DD, text as is, bytes as hex).
    pub fn display_value(self, value: &[u8]) -> String {
        use core::fmt::Write;
        match self.0 {
            3 => Date::from_bytes(value)
                .map(|d| alloc::format!("{d}"))
                .unwrap_or_default(),
            8 => String::from(if value == [1] { "yes" } else { "invalid" }),
            24..=31 => value.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
            _ => String::from_utf8_lossy(value).into_owned(),
        }
    }
}

impl fmt::Display for AttributeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every defined attribute id, ascending.
pub const ALL: [AttributeId; 20] = [
    AttributeId(0),
    AttributeId(1),
    AttributeId(2),
    AttributeId(3),
    AttributeId(4),
    AttributeId(5),
    AttributeId(6),
    AttributeId(7),
    AttributeId(8),
    AttributeId(16),
    AttributeId(17),
    AttributeId(18),
    AttributeId(24),
    AttributeId(25),
    AttributeId(26),
    AttributeId(27),
    AttributeId(28),
    AttributeId(29),
    AttributeId(30),
    AttributeId(31),
];

/// A set of attribute ids as a 32-bit mask (bit n = id n), as carried in
/// reader certificates (what a reader may read) and requests (what it asks for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AttributeSet(u32);

/// Bits that correspond to defined attribute ids.
const DEFINED_BITS: u32 = 0x0000_01FF | 0x0007_0000 | 0xFF00_0000;

impl AttributeSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// A set from its mask; fails if a bit names an undefined id.
    pub const fn from_bits(bits: u32) -> Result<Self> {
        if bits & !DEFINED_BITS != 0 {
            return Err(Error::BadValue(0));
        }
        Ok(Self(bits))
    }

    /// The 32-bit mask.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The 4-byte big-endian wire encoding.
    pub const fn to_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// Decodes the wire encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 4] = bytes.try_into().map_err(|_| Error::BadLength(0))?;
        Self::from_bits(u32::from_be_bytes(arr))
    }

    /// Adds an id.
    #[must_use]
    pub const fn with(self, id: AttributeId) -> Self {
        Self(self.0 | (1 << id.0))
    }

    /// Membership.
    pub const fn contains(self, id: AttributeId) -> bool {
        self.0 & (1 << id.0) != 0
    }

    /// `true` when every member of `self` is in `other`.
    pub const fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Members of both.
    #[must_use]
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Members of `self` not in `other`.
    #[must_use]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// `true` when empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members in ascending order.
    pub fn iter(self) -> impl Iterator<Item = AttributeId> {
        ALL.into_iter().filter(move |id| self.contains(*id))
    }

    /// Parses a comma-separated list of machine names (`pseudonym,resident`).
    pub fn parse_list(list: &str) -> Result<Self> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .try_fold(Self::EMPTY, |set, name| {
                Ok(set.with(AttributeId::from_name(name)?))
            })
    }
}

impl FromIterator<AttributeId> for AttributeSet {
    fn from_iter<T: IntoIterator<Item = AttributeId>>(iter: T) -> Self {
        iter.into_iter().fold(Self::EMPTY, Self::with)
    }
}

impl fmt::Display for AttributeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for id in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(id.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_round_trip() {
        for id in ALL {
            assert_eq!(AttributeId::from_name(id.name()).unwrap(), id);
            assert_eq!(AttributeId::new(id.get()).unwrap(), id);
        }
        assert!(AttributeId::new(9).is_err());
        assert!(AttributeId::new(19).is_err());
        assert!(AttributeId::from_name("nationality").is_err());
    }

    #[test]
    fn sets_parse_and_reject_undefined_bits() {
        let s = AttributeSet::parse_list("pseudonym, resident").unwrap();
        assert_eq!(s.bits(), 1 | 1 << 8);
        assert_eq!(alloc::format!("{s}"), "pseudonym,resident");
        assert!(AttributeSet::from_bits(1 << 9).is_err());
        assert!(s.is_subset_of(s.with(AttributeId::NAME)));
        assert!(!s.with(AttributeId::NAME).is_subset_of(s));
    }

    #[test]
    fn every_valid_value_fits_its_fixed_size() {
        for id in ALL {
            match (id.kind(), id.fixed_size()) {
                (AttributeKind::Stored, Some(n)) => {
                    let too_long = alloc::vec![b'a'; n + 1];
                    assert!(id.validate_value(&too_long).is_err(), "{id}");
                }
                (AttributeKind::Stored, None) => panic!("{id} has no fixed size"),
                (_, size) => assert_eq!(size, None),
            }
        }
    }

    #[test]
    fn values_are_validated() {
        assert!(AttributeId::NAME
            .validate_value("Alex Dupont".as_bytes())
            .is_ok());
        assert!(AttributeId::NAME.validate_value(b"").is_err());
        assert!(AttributeId::NAME.validate_value(&[0xFF]).is_err());
        assert!(AttributeId::NAME
            .validate_value(" padded".as_bytes())
            .is_err());
        assert!(AttributeId::LANGUAGE.validate_value(b"fr").is_ok());
        assert!(AttributeId::LANGUAGE.validate_value(b"FR").is_err());
        assert!(AttributeId::BIRTH_DATE
            .validate_value(&[0x07, 0xD0, 2, 30])
            .is_err());
        assert!(AttributeId::RESIDENT.validate_value(&[1]).is_ok());
        assert!(AttributeId::RESIDENT.validate_value(&[0]).is_err());
        assert!(AttributeId::CARD_NUMBER
            .validate_value(b"LG-000123")
            .is_ok());
        assert!(AttributeId::CARD_NUMBER.validate_value(b"LG 1").is_err());
    }
}
