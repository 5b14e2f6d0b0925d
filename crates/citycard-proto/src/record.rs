//! The issuer-signed resident record and salted attribute digests (spec §5.3).
//!
//! ```text
//! E1 Record
//!   E2 Body (signed bytes: the whole E2 TLV)
//!     80 01      version = 01
//!     81 08      fingerprint of the signing station's certificate
//!     82 04      valid from (issue date)
//!     83 04      valid to (expiry date)
//!     84 21      card public key (generated on the card), compressed P-256
//!     85 17·n    n × (attribute id ‖ 16-byte digest), ids strictly ascending
//!   5F37 40      station signature r‖s over the E2 TLV
//! ```
//!
//! digest(id, salt, value) = first 16 bytes of SHA-256(id ‖ salt ‖ value), with
//! a fresh random 16-byte salt per attribute per card.

use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};

use crate::attr::{AttributeId, AttributeKind};
use crate::cert::FINGERPRINT_LEN;
use crate::crypto::{self, POINT_LEN, SIGNATURE_LEN};
use crate::date::Date;
use crate::error::{Error, Result};
use crate::tlv::{self, Sequence};

/// Tag of a record.
pub const TAG_RECORD: u32 = 0xE1;
/// Tag of a record body.
pub const TAG_RECORD_BODY: u32 = 0xE2;
/// Tag of one stored attribute entry (id ‖ salt ‖ value).
pub const TAG_ATTRIBUTE: u32 = 0xC1;
const TAG_VERSION: u32 = 0x80;
const TAG_STATION: u32 = 0x81;
const TAG_FROM: u32 = 0x82;
const TAG_TO: u32 = 0x83;
const TAG_CARD_KEY: u32 = 0x84;
const TAG_DIGESTS: u32 = 0x85;

/// Length of a salt.
pub const SALT_LEN: usize = 16;
/// Length of a truncated attribute digest.
pub const DIGEST_LEN: usize = 16;
/// Most stored attributes a record may carry.
pub const MAX_ATTRIBUTES: usize = 17;

/// A stored attribute with its salt, as the card holds it and discloses it.
#[derive(Clone, PartialEq, Eq)]
pub struct AttributeEntry {
    /// Which attribute.
    pub id: AttributeId,
    /// Random per-card salt.
    pub salt: [u8; SALT_LEN],
    /// The encoded value (validated by [`AttributeId::validate_value`]).
    pub value: Vec<u8>,
}

impl core::fmt::Debug for AttributeEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Personal data never reaches logs through Debug.
        f.debug_struct("AttributeEntry")
            .field("id", &self.id)
            .field("value", &"REDACTED")
            .finish()
    }
}

impl AttributeEntry {
    /// A validated entry.
    pub fn new(id: AttributeId, salt: [u8; SALT_LEN], value: Vec<u8>) -> Result<Self> {
        if id.kind() != AttributeKind::Stored {
            return Err(Error::UnknownAttribute(id.get()));
        }
        id.validate_value(&value)?;
        Ok(Self { id, salt, value })
    }

    /// The salted digest that the record signs.
    pub fn digest(&self) -> [u8; DIGEST_LEN] {
        let h = crypto::sha256(&[&[self.id.get()], &self.salt, &self.value]);
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(h.get(..DIGEST_LEN).unwrap_or(&[0; DIGEST_LEN]));
        out
    }

    /// The `C1` TLV: id ‖ salt ‖ value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + SALT_LEN + self.value.len());
        v.push(self.id.get());
        v.extend_from_slice(&self.salt);
        v.extend_from_slice(&self.value);
        tlv::encode(TAG_ATTRIBUTE, &v)
    }

    /// Decodes the value of a `C1` TLV.
    pub fn decode_value(value: &[u8]) -> Result<Self> {
        let (id, rest) = value.split_first().ok_or(Error::BadLength(TAG_ATTRIBUTE))?;
        let (salt, v) = rest
            .split_first_chunk::<SALT_LEN>()
            .ok_or(Error::BadLength(TAG_ATTRIBUTE))?;
        Self::new(AttributeId::new(*id)?, *salt, v.to_vec())
    }
}

/// The signed content of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBody {
    /// Fingerprint of the station certificate whose key signs this record.
    pub station: [u8; FINGERPRINT_LEN],
    /// Issue date.
    pub valid_from: Date,
    /// Expiry date (last valid day).
    pub valid_to: Date,
    /// The card's public key.
    pub card_key: PublicKey,
    /// (id, digest) for every stored attribute, ids strictly ascending.
    pub digests: Vec<(AttributeId, [u8; DIGEST_LEN])>,
}

impl RecordBody {
    /// A body for `entries` (digests computed and sorted here).
    pub fn new(
        station: [u8; FINGERPRINT_LEN],
        valid_from: Date,
        valid_to: Date,
        card_key: PublicKey,
        entries: &[AttributeEntry],
    ) -> Result<Self> {
        let mut digests: Vec<_> = entries.iter().map(|e| (e.id, e.digest())).collect();
        digests.sort_by_key(|(id, _)| *id);
        let body = Self {
            station,
            valid_from,
            valid_to,
            card_key,
            digests,
        };
        body.validate()?;
        Ok(body)
    }

    fn validate(&self) -> Result<()> {
        if self.valid_to < self.valid_from {
            return Err(Error::BadValue(TAG_TO));
        }
        if self.digests.len() > MAX_ATTRIBUTES {
            return Err(Error::TooLong);
        }
        for pair in self.digests.windows(2) {
            if let [(a, _), (b, _)] = pair {
                if a >= b {
                    return Err(Error::Duplicate);
                }
            }
        }
        if self
            .digests
            .iter()
            .any(|(id, _)| id.kind() != AttributeKind::Stored)
        {
            return Err(Error::BadValue(TAG_DIGESTS));
        }
        Ok(())
    }

    /// The bytes the station signs: the encoded `E2` TLV.
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut v = Vec::with_capacity(64 + 17 * self.digests.len());
        tlv::push(&mut v, TAG_VERSION, &[1]);
        tlv::push(&mut v, TAG_STATION, &self.station);
        tlv::push(&mut v, TAG_FROM, &self.valid_from.to_bytes());
        tlv::push(&mut v, TAG_TO, &self.valid_to.to_bytes());
        tlv::push(&mut v, TAG_CARD_KEY, &crypto::encode_point(&self.card_key));
        let mut d = Vec::with_capacity(17 * self.digests.len());
        for (id, digest) in &self.digests {
            d.push(id.get());
            d.extend_from_slice(digest);
        }
        tlv::push(&mut v, TAG_DIGESTS, &d);
        Ok(tlv::encode(TAG_RECORD_BODY, &v))
    }

    /// Signs with a station key held in memory (HSMs sign [`Self::to_be_signed`]
    /// and call [`ResidentRecord::assemble`]).
    pub fn sign(&self, station: &SecretKey) -> Result<ResidentRecord> {
        let tbs = self.to_be_signed()?;
        ResidentRecord::assemble(&tbs, &crypto::sign(station, &tbs))
    }

    fn decode(body_tlv: &[u8]) -> Result<Self> {
        let body = tlv::read_exact(body_tlv, TAG_RECORD_BODY)?;
        let mut s = Sequence::new(body.value)?;
        tlv::expect_version_1(&mut s, TAG_VERSION)?;
        let station = tlv::fixed::<FINGERPRINT_LEN>(&s.required(TAG_STATION)?)?;
        let valid_from = Date::from_bytes(s.required(TAG_FROM)?.value)?;
        let valid_to = Date::from_bytes(s.required(TAG_TO)?.value)?;
        let key = s.required(TAG_CARD_KEY)?;
        if key.value.len() != POINT_LEN {
            return Err(Error::BadLength(TAG_CARD_KEY));
        }
        let card_key = crypto::decode_point(key.value)?;
        let d = s.required(TAG_DIGESTS)?;
        s.finish()?;
        if d.value.len() % (1 + DIGEST_LEN) != 0 {
            return Err(Error::BadLength(TAG_DIGESTS));
        }
        let mut digests = Vec::with_capacity(d.value.len() / (1 + DIGEST_LEN));
        for chunk in d.value.chunks_exact(1 + DIGEST_LEN) {
            let (id, digest) = chunk.split_first().ok_or(Error::BadLength(TAG_DIGESTS))?;
            let digest: [u8; DIGEST_LEN] = digest
                .try_into()
                .map_err(|_| Error::BadLength(TAG_DIGESTS))?;
            digests.push((AttributeId::new(*id)?, digest));
        }
        let body = Self {
            station,
            valid_from,
            valid_to,
            card_key,
            digests,
        };
        body.validate()?;
        Ok(body)
    }

    /// The signed digest for `id`, if the record has one.
    pub fn digest_of(&self, id: AttributeId) -> Option<&[u8; DIGEST_LEN]> {
        self.digests.iter().find(|(i, _)| *i == id).map(|(_, d)| d)
    }
}

/// A signed record as encoded on the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResidentRecord {
    body: RecordBody,
    encoded: Vec<u8>,
    signed: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl ResidentRecord {
    /// Joins a signed body and a raw signature (does not verify).
    pub fn assemble(body_tlv: &[u8], signature: &[u8]) -> Result<Self> {
        Self::decode(&tlv::join_signed(TAG_RECORD, body_tlv, signature))
    }

    /// Decodes a record (structure only; see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let parts = tlv::split_signed(bytes, TAG_RECORD, TAG_RECORD_BODY)?;
        let body = RecordBody::decode(parts.body.raw)?;
        Ok(Self {
            body,
            encoded: bytes.to_vec(),
            signed: parts.body.raw.to_vec(),
            signature: parts.signature,
        })
    }

    /// Verifies the station's signature.
    pub fn verify(&self, station: &PublicKey) -> Result<()> {
        crypto::verify(station, &self.signed, &self.signature)
    }

    /// The decoded body.
    pub fn body(&self) -> &RecordBody {
        &self.body
    }

    /// The full encoding (`E1` TLV).
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// Checks that `entry` matches the digest this record signs for its id.
    pub fn check_entry(&self, entry: &AttributeEntry) -> Result<()> {
        match self.body.digest_of(entry.id) {
            Some(d) if crypto::mac_eq(d, &entry.digest()) => Ok(()),
            _ => Err(Error::DigestMismatch(entry.id.get())),
        }
    }

    /// The revocation identifier of this card: the first 8 bytes of SHA-256
    /// over its compressed public key.
    pub fn revocation_id(&self) -> [u8; 8] {
        crate::revocation::revocation_id(&self.body.card_key)
    }
}
