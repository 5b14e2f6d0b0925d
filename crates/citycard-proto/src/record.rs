//! Group records, salts, stored values and disclosed entries (spec §5.3, §5.4).
//!
//! A card holds one record per linkability group it was issued for:
//!
//! ```text
//! E1 Record (exactly RECORD_LEN = 300 bytes)
//!   E2 Body (signed bytes: the whole E2 TLV)
//!     80 01    version = 02
//!     81 01    group g
//!     82 08    station reference: SHA-256("citycard-v2 station-ref" ‖ g ‖ station fingerprint)[0..8]
//!     83 04    valid from
//!     84 04    valid to (last valid day)
//!     85 21    card key K_g (compressed P-256)
//!     86 A0    10 digest slots × 16 bytes, strictly ascending
//!   5F37 40    station signature r‖s (low S) over the E2 TLV
//! ```
//!
//! `salt_{g,i} = AES-CMAC(S_g, "citycard-v2 salt" ‖ id_i)` from the group's salt
//! seed, `digest_{g,i} = SHA-256(id_i ‖ salt_{g,i} ‖ value_i)[0..16]`; the
//! slots not used by a digest are random decoys.

use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;

use crate::attr::{AttributeId, AttributeKind};
use crate::cert::FINGERPRINT_LEN;
use crate::consts::{label, PROTOCOL_VERSION};
use crate::crypto::{self, POINT_LEN, SIGNATURE_LEN};
use crate::date::Date;
use crate::error::{Error, Result};
use crate::limits::{DIGEST_SLOTS, MAX_CARD_LIFETIME_DAYS, MAX_GROUPS, RECORD_LEN};
use crate::tlv::{self, Sequence};

/// Tag of a record.
pub const TAG_RECORD: u32 = 0xE1;
/// Tag of a record body.
pub const TAG_RECORD_BODY: u32 = 0xE2;
/// Tag of a stored value (PUT DATA) and of a disclosed entry (answers).
pub const TAG_ATTRIBUTE: u32 = 0xC1;
/// Tag of a salt seed in PUT DATA: `C2 11 g ‖ S_g`.
pub const TAG_SALT_SEED: u32 = 0xC2;
const TAG_VERSION: u32 = 0x80;
const TAG_GROUP: u32 = 0x81;
const TAG_STATION_REF: u32 = 0x82;
const TAG_FROM: u32 = 0x83;
const TAG_TO: u32 = 0x84;
const TAG_CARD_KEY: u32 = 0x85;
const TAG_SLOTS: u32 = 0x86;

/// Length of a salt.
pub const SALT_LEN: usize = 16;
/// Length of a salt seed.
pub const SEED_LEN: usize = 16;
/// Length of a truncated attribute digest.
pub const DIGEST_LEN: usize = 16;
/// Length of a station reference.
pub const STATION_REF_LEN: usize = 8;
/// Header of a disclosed entry's value before the padded value: id, salt, n.
pub const ENTRY_HEADER_LEN: usize = 1 + SALT_LEN + 1;

/// A digest slot.
pub type Slot = [u8; DIGEST_LEN];

/// The station reference of group `group` for the station certificate with
/// fingerprint `station`.
pub fn station_reference(group: u8, station: &[u8; FINGERPRINT_LEN]) -> [u8; STATION_REF_LEN] {
    crypto::sha256_trunc(&[label::STATION_REF, &[group], station])
}

/// `salt = AES-CMAC(seed, "citycard-v2 salt" ‖ id)`.
pub fn salt(seed: &[u8; SEED_LEN], id: AttributeId) -> [u8; SALT_LEN] {
    crypto::cmac(seed, &[label::SALT, &[id.get()]])
}

/// `digest = SHA-256(id ‖ salt ‖ value)[0..16]`.
pub fn digest(id: AttributeId, salt: &[u8; SALT_LEN], value: &[u8]) -> Slot {
    crypto::sha256_trunc(&[&[id.get()], salt, value])
}

/// The valid-from a station writes for a card issued on `issue_date`: the
/// first day of the issue month, or the station certificate's effective date
/// if that is later (month granularity, spec §5.3, §10.8).
pub fn valid_from_for(issue_date: Date, station_effective: Date) -> Date {
    let start = issue_date.month_start();
    if station_effective > start {
        station_effective
    } else {
        start
    }
}

/// A stored attribute value (no salt): what PUT DATA carries and the card keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// Which attribute.
    pub id: AttributeId,
    /// The encoded value (validated by [`AttributeId::validate_value`]).
    pub value: Vec<u8>,
}

impl core::fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Personal data never reaches logs through Debug.
        f.debug_struct("StoredValue")
            .field("id", &self.id)
            .field("value", &"REDACTED")
            .finish()
    }
}

impl StoredValue {
    /// A validated stored value.
    pub fn new(id: AttributeId, value: Vec<u8>) -> Result<Self> {
        if id.kind() != AttributeKind::Stored {
            return Err(Error::UnknownAttribute(id.get()));
        }
        id.validate_value(&value)?;
        Ok(Self { id, value })
    }

    /// The `C1` TLV: id ‖ value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + self.value.len());
        v.push(self.id.get());
        v.extend_from_slice(&self.value);
        tlv::encode(TAG_ATTRIBUTE, &v)
    }

    /// Decodes the value of a `C1` TLV.
    pub fn decode_value(value: &[u8]) -> Result<Self> {
        let (id, v) = value.split_first().ok_or(Error::BadLength(TAG_ATTRIBUTE))?;
        Self::new(AttributeId::new(*id)?, v.to_vec())
    }

    /// This value's digest with the salt derived from `seed`.
    pub fn digest(&self, seed: &[u8; SEED_LEN]) -> Slot {
        digest(self.id, &salt(seed, self.id), &self.value)
    }
}

/// The `C2` TLV of a salt seed: `C2 11 g ‖ S_g`.
pub fn encode_salt_seed(group: u8, seed: &[u8; SEED_LEN]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + SEED_LEN);
    v.push(group);
    v.extend_from_slice(seed);
    tlv::encode(TAG_SALT_SEED, &v)
}

/// Decodes the value of a `C2` TLV: (group, seed).
pub fn decode_salt_seed(value: &[u8]) -> Result<(u8, [u8; SEED_LEN])> {
    let (g, seed) = value.split_first().ok_or(Error::BadLength(TAG_SALT_SEED))?;
    let seed: [u8; SEED_LEN] = seed
        .try_into()
        .map_err(|_| Error::BadLength(TAG_SALT_SEED))?;
    if usize::from(*g) >= MAX_GROUPS {
        return Err(Error::BadValue(TAG_SALT_SEED));
    }
    Ok((*g, seed))
}

/// A disclosed attribute (spec §5.4): present with its salt and value, or
/// absent (the card does not hold it).
#[derive(Clone, PartialEq, Eq)]
pub struct DisclosedEntry {
    /// Which attribute.
    pub id: AttributeId,
    /// Salt and value, when the card holds the attribute.
    pub present: Option<([u8; SALT_LEN], Vec<u8>)>,
}

impl core::fmt::Debug for DisclosedEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DisclosedEntry")
            .field("id", &self.id)
            .field("present", &self.present.is_some())
            .finish()
    }
}

/// Length of the whole `C1` TLV of a disclosed entry for stored attribute `id`
/// (`None` for ids that are not stored attributes).
pub fn entry_len(id: AttributeId) -> Option<usize> {
    id.fixed_size().map(|n| 2 + ENTRY_HEADER_LEN + n)
}

/// Appends the fixed-size `C1` entry `id ‖ salt ‖ n ‖ value ‖ 00…` to `out`;
/// `present = None` writes `n = 0`, a zero salt and a zero value. Values
/// longer than the fixed size cannot be encoded ([`Error::TooLong`]).
pub fn push_disclosed(
    out: &mut Vec<u8>,
    id: AttributeId,
    present: Option<(&[u8; SALT_LEN], &[u8])>,
) -> Result<()> {
    let size = id.fixed_size().ok_or(Error::UnknownAttribute(id.get()))?;
    let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + size);
    v.push(id.get());
    match present {
        Some((salt, value)) => {
            if value.len() > size {
                return Err(Error::TooLong);
            }
            v.extend_from_slice(salt);
            v.push(value.len() as u8);
            v.extend_from_slice(value);
        }
        None => {
            v.extend_from_slice(&[0; SALT_LEN]);
            v.push(0);
        }
    }
    v.resize(ENTRY_HEADER_LEN + size, 0);
    tlv::push(out, TAG_ATTRIBUTE, &v);
    Ok(())
}

impl DisclosedEntry {
    /// Decodes the value of a disclosed `C1` entry: the fixed size for its id,
    /// `n` within it, zero padding, a valid value when present and a zero salt
    /// when absent.
    pub fn decode_value(value: &[u8]) -> Result<Self> {
        let bad = Error::BadValue(TAG_ATTRIBUTE);
        let (id, rest) = value.split_first().ok_or(Error::BadLength(TAG_ATTRIBUTE))?;
        let id = AttributeId::new(*id)?;
        let size = id.fixed_size().ok_or(Error::UnknownAttribute(id.get()))?;
        if value.len() != ENTRY_HEADER_LEN + size {
            return Err(Error::BadLength(TAG_ATTRIBUTE));
        }
        let (salt, rest) = rest
            .split_first_chunk::<SALT_LEN>()
            .ok_or(Error::BadLength(TAG_ATTRIBUTE))?;
        let (n, padded) = rest.split_first().ok_or(Error::BadLength(TAG_ATTRIBUTE))?;
        let n = usize::from(*n);
        if n > size {
            return Err(bad);
        }
        let (v, padding) = padded.split_at_checked(n).ok_or(bad)?;
        if padding.iter().any(|b| *b != 0) {
            return Err(bad);
        }
        if n == 0 {
            if salt.iter().any(|b| *b != 0) {
                return Err(bad);
            }
            return Ok(Self { id, present: None });
        }
        id.validate_value(v)?;
        Ok(Self {
            id,
            present: Some((*salt, v.to_vec())),
        })
    }

    /// The digest a present entry must match.
    pub fn digest(&self) -> Option<Slot> {
        self.present
            .as_ref()
            .map(|(salt, value)| digest(self.id, salt, value))
    }
}

/// The signed content of a group record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBody {
    /// The linkability group.
    pub group: u8,
    /// The station reference ([`station_reference`]).
    pub station_ref: [u8; STATION_REF_LEN],
    /// First valid day (month granular, [`valid_from_for`]).
    pub valid_from: Date,
    /// Last valid day.
    pub valid_to: Date,
    /// The card's public key for this group.
    pub card_key: PublicKey,
    /// The digest slots, strictly ascending.
    pub slots: [Slot; DIGEST_SLOTS],
}

impl RecordBody {
    /// A body for group `group` signed by the station whose certificate has
    /// fingerprint `station`: the `digests` of the card's stored values, and
    /// random decoys from `rng` in the remaining slots, all sorted.
    pub fn new(
        group: u8,
        station: &[u8; FINGERPRINT_LEN],
        valid_from: Date,
        valid_to: Date,
        card_key: PublicKey,
        digests: &[Slot],
        rng: &mut (impl CryptoRngCore + ?Sized),
    ) -> Result<Self> {
        if digests.len() > DIGEST_SLOTS {
            return Err(Error::TooLong);
        }
        if digests
            .iter()
            .enumerate()
            .any(|(i, d)| digests.iter().skip(i + 1).any(|e| e == d))
        {
            return Err(Error::Duplicate);
        }
        let mut slots = [[0u8; DIGEST_LEN]; DIGEST_SLOTS];
        loop {
            for (slot, d) in slots.iter_mut().zip(digests) {
                *slot = *d;
            }
            for slot in slots.iter_mut().skip(digests.len()) {
                rng.fill_bytes(slot);
            }
            slots.sort_unstable();
            // A decoy equal to another slot (probability ~2^-125) is redrawn.
            if slots.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
                break;
            }
        }
        let body = Self {
            group,
            station_ref: station_reference(group, station),
            valid_from,
            valid_to,
            card_key,
            slots,
        };
        body.validate()?;
        Ok(body)
    }

    fn validate(&self) -> Result<()> {
        if usize::from(self.group) >= MAX_GROUPS {
            return Err(Error::BadValue(TAG_GROUP));
        }
        if self.valid_to < self.valid_from {
            return Err(Error::BadValue(TAG_TO));
        }
        if !self.slots.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
            return Err(Error::Duplicate);
        }
        Ok(())
    }

    /// valid-to − valid-from, in days.
    pub fn lifetime_days(&self) -> i64 {
        self.valid_from.days_until(self.valid_to)
    }

    /// `true` when the lifetime is at most [`MAX_CARD_LIFETIME_DAYS`].
    pub fn lifetime_allowed(&self) -> bool {
        self.lifetime_days() <= i64::from(MAX_CARD_LIFETIME_DAYS)
    }

    /// The bytes the station signs: the encoded `E2` TLV.
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut v = Vec::with_capacity(230);
        tlv::push(&mut v, TAG_VERSION, &[PROTOCOL_VERSION]);
        tlv::push(&mut v, TAG_GROUP, &[self.group]);
        tlv::push(&mut v, TAG_STATION_REF, &self.station_ref);
        tlv::push(&mut v, TAG_FROM, &self.valid_from.to_bytes());
        tlv::push(&mut v, TAG_TO, &self.valid_to.to_bytes());
        tlv::push(&mut v, TAG_CARD_KEY, &crypto::encode_point(&self.card_key));
        tlv::push(&mut v, TAG_SLOTS, self.slots.as_flattened());
        Ok(tlv::encode(TAG_RECORD_BODY, &v))
    }

    /// Signs with a station key held in memory (HSMs sign [`Self::to_be_signed`]
    /// and call [`GroupRecord::assemble`]).
    pub fn sign(&self, station: &SecretKey) -> Result<GroupRecord> {
        let tbs = self.to_be_signed()?;
        GroupRecord::assemble(&tbs, &crypto::sign(station, &tbs))
    }

    fn decode(body_tlv: &[u8]) -> Result<Self> {
        let body = tlv::read_exact(body_tlv, TAG_RECORD_BODY)?;
        let mut s = Sequence::new(body.value)?;
        tlv::expect_version(&mut s, TAG_VERSION, PROTOCOL_VERSION)?;
        let [group] = tlv::fixed::<1>(&s.required(TAG_GROUP)?)?;
        let station_ref = tlv::fixed::<STATION_REF_LEN>(&s.required(TAG_STATION_REF)?)?;
        let valid_from = Date::from_bytes(s.required(TAG_FROM)?.value)?;
        let valid_to = Date::from_bytes(s.required(TAG_TO)?.value)?;
        let key = tlv::fixed::<POINT_LEN>(&s.required(TAG_CARD_KEY)?)?;
        let card_key = crypto::decode_point(&key)?;
        let raw = tlv::fixed::<{ DIGEST_SLOTS * DIGEST_LEN }>(&s.required(TAG_SLOTS)?)?;
        s.finish()?;
        let mut slots = [[0u8; DIGEST_LEN]; DIGEST_SLOTS];
        for (slot, chunk) in slots.iter_mut().zip(raw.chunks_exact(DIGEST_LEN)) {
            slot.copy_from_slice(chunk);
        }
        let body = Self {
            group,
            station_ref,
            valid_from,
            valid_to,
            card_key,
            slots,
        };
        body.validate()?;
        Ok(body)
    }

    /// `true` when `digest` is one of the slots (every slot is compared).
    pub fn has_slot(&self, digest: &Slot) -> bool {
        self.slots
            .iter()
            .fold(false, |found, slot| crypto::mac_eq(slot, digest) | found)
    }
}

/// A signed group record as encoded on the card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    body: RecordBody,
    encoded: Vec<u8>,
    signed: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl GroupRecord {
    /// Joins a signed body and a raw signature (does not verify).
    pub fn assemble(body_tlv: &[u8], signature: &[u8]) -> Result<Self> {
        Self::decode(&tlv::join_signed(TAG_RECORD, body_tlv, signature))
    }

    /// Decodes a record (structure only, exactly [`RECORD_LEN`] bytes; see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != RECORD_LEN {
            return Err(Error::BadLength(TAG_RECORD));
        }
        let parts = tlv::split_signed(bytes, TAG_RECORD, TAG_RECORD_BODY)?;
        let body = RecordBody::decode(parts.body.raw)?;
        Ok(Self {
            body,
            encoded: bytes.to_vec(),
            signed: parts.body.raw.to_vec(),
            signature: parts.signature,
        })
    }

    /// Verifies the station's signature (low S).
    pub fn verify(&self, station: &PublicKey) -> Result<()> {
        crypto::verify(station, &self.signed, &self.signature)
    }

    /// The signed bytes (the `E2` TLV).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// The raw signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The decoded body.
    pub fn body(&self) -> &RecordBody {
        &self.body
    }

    /// The full encoding (`E1` TLV).
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// Checks a present disclosed entry against the slots.
    pub fn check_entry(&self, entry: &DisclosedEntry) -> Result<()> {
        match entry.digest() {
            Some(d) if self.body.has_slot(&d) => Ok(()),
            Some(_) => Err(Error::DigestMismatch(entry.id.get())),
            None => Ok(()),
        }
    }

    /// The revocation identifier of this group record: SHA-256(K_g)[0..8].
    pub fn revocation_id(&self) -> [u8; 8] {
        crate::revocation::revocation_id(&self.body.card_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn sample(rng: &mut rand_chacha::ChaCha20Rng, digests: &[Slot]) -> (SecretKey, GroupRecord) {
        let station = crypto::generate(rng);
        let card = crypto::generate(rng);
        let body = RecordBody::new(
            2,
            &[7; 8],
            Date::new(2026, 11, 1).unwrap(),
            Date::new(2031, 10, 31).unwrap(),
            card.public_key(),
            digests,
            rng,
        )
        .unwrap();
        let record = body.sign(&station).unwrap();
        (station, record)
    }

    #[test]
    fn every_record_is_300_bytes_and_round_trips() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        for n in [0usize, 1, 6, 10] {
            let digests: Vec<Slot> = (0..n).map(|i| [i as u8 + 1; 16]).collect();
            let (station, record) = sample(&mut rng, &digests);
            assert_eq!(record.as_bytes().len(), RECORD_LEN);
            assert_eq!(&record.as_bytes()[..4], &[0xE1, 0x82, 0x01, 0x28]);
            assert_eq!(&record.as_bytes()[4..7], &[0xE2, 0x81, 0xE2]);
            let again = GroupRecord::decode(record.as_bytes()).unwrap();
            again.verify(&station.public_key()).unwrap();
            for d in &digests {
                assert!(again.body().has_slot(d));
            }
            assert!(again.body().slots.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn too_many_digests_and_bad_bytes_are_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([2; 32]);
        let card = crypto::generate(&mut rng);
        let d = Date::new(2026, 11, 1).unwrap();
        let eleven: Vec<Slot> = (0..11).map(|i| [i as u8; 16]).collect();
        assert!(RecordBody::new(0, &[0; 8], d, d, card.public_key(), &eleven, &mut rng).is_err());
        assert!(RecordBody::new(8, &[0; 8], d, d, card.public_key(), &[], &mut rng).is_err());
        let (station, record) = sample(&mut rng, &[[9; 16]]);
        for i in 0..record.as_bytes().len() {
            let mut bad = record.as_bytes().to_vec();
            bad[i] ^= 0x01;
            let ok = GroupRecord::decode(&bad).and_then(|r| r.verify(&station.public_key()));
            assert!(ok.is_err(), "flip at {i} accepted");
        }
        assert!(GroupRecord::decode(&record.as_bytes()[..299]).is_err());
    }

    #[test]
    fn salts_and_station_references_are_per_group() {
        let seed_a = [1u8; 16];
        let seed_b = [2u8; 16];
        assert_ne!(
            salt(&seed_a, AttributeId::NAME),
            salt(&seed_b, AttributeId::NAME)
        );
        assert_ne!(
            salt(&seed_a, AttributeId::NAME),
            salt(&seed_a, AttributeId::ADDRESS)
        );
        assert_eq!(
            salt(&seed_a, AttributeId::NAME),
            crypto::cmac(&seed_a, &[b"citycard-v2 salt", &[2]])
        );
        assert_ne!(station_reference(0, &[1; 8]), station_reference(1, &[1; 8]));
    }

    #[test]
    fn disclosed_entries_have_a_fixed_size_present_or_absent() {
        for id in crate::attr::ALL {
            let Some(len) = entry_len(id) else { continue };
            let mut absent = Vec::new();
            push_disclosed(&mut absent, id, None).unwrap();
            assert_eq!(absent.len(), len);
            let value: Vec<u8> = match id.get() {
                3 => Date::new(2000, 1, 1).unwrap().to_bytes().to_vec(),
                6 => b"fr".to_vec(),
                8 => alloc::vec![1],
                _ => b"x".to_vec(),
            };
            let mut present = Vec::new();
            push_disclosed(&mut present, id, Some((&[5; 16], &value))).unwrap();
            assert_eq!(present.len(), len, "{id}");
            let f = tlv::read_exact(&present, TAG_ATTRIBUTE).unwrap();
            let e = DisclosedEntry::decode_value(f.value).unwrap();
            assert_eq!(e.present, Some(([5; 16], value.clone())));
            let f = tlv::read_exact(&absent, TAG_ATTRIBUTE).unwrap();
            assert_eq!(DisclosedEntry::decode_value(f.value).unwrap().present, None);
            // Padding, a salt on an absent entry and n beyond the size are refused.
            let mut bad = present.clone();
            *bad.last_mut().unwrap() = 1;
            if value.len() < id.fixed_size().unwrap() {
                let f = tlv::read_exact(&bad, TAG_ATTRIBUTE).unwrap();
                assert!(DisclosedEntry::decode_value(f.value).is_err());
            }
            let mut bad = absent.clone();
            bad[4] = 1;
            let f = tlv::read_exact(&bad, TAG_ATTRIBUTE).unwrap();
            assert!(DisclosedEntry::decode_value(f.value).is_err());
        }
    }

    #[test]
    fn valid_from_is_month_granular() {
        let eff = Date::new(2026, 1, 15).unwrap();
        assert_eq!(
            valid_from_for(Date::new(2026, 11, 26).unwrap(), eff),
            Date::new(2026, 11, 1).unwrap()
        );
        assert_eq!(valid_from_for(Date::new(2026, 1, 20).unwrap(), eff), eff);
    }
}
