//! The card's persistent state ("EEPROM"): PIN, PUK, management key, private
//! keys and data objects, serialised as one blob and committed atomically.
//!
//! Format (version 1), all integers big-endian:
//!
//! ```text
//! "CCPIV" 01
//! PIN[8] pin_tries   PUK[8] puk_tries
//! mgmt_alg mgmt_len mgmt_key[mgmt_len]
//! n_keys   { slot alg secret[32] }*
//! n_objects[2] { tag[3] len[2] value[len] }*
//! ```

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use p256::SecretKey;
use zeroize::Zeroizing;

use crate::consts::{
    alg, DEFAULT_MANAGEMENT_KEY, DEFAULT_PIN, DEFAULT_PUK, DEFAULT_TRIES, MAX_OBJECT_LEN,
};
use crate::error::PivError;
use crate::mgmt;

/// The first bytes of every PIV state blob (magic and format version).
pub const MAGIC: [u8; 5] = *b"CCPIV";
/// The state format version this crate writes.
pub const VERSION: u8 = 1;

/// The management key (key reference `9B`): algorithm and key bytes.
#[derive(Clone)]
pub struct ManagementKey {
    /// Algorithm identifier: `03` (3DES), `08`, `0A` or `0C` (AES-128/192/256).
    pub algorithm: u8,
    /// The key (24, 16, 24 or 32 bytes).
    pub key: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ManagementKey")
            .field("algorithm", &self.algorithm)
            .field("key", &"REDACTED")
            .finish()
    }
}

/// Everything the card keeps across power cycles.
#[derive(Clone)]
pub struct PivState {
    /// The PIN reference data, padded with `FF` to 8 bytes.
    pub(crate) pin: Zeroizing<[u8; 8]>,
    /// PIN tries left (0 = blocked).
    pub(crate) pin_tries: u8,
    /// The PUK reference data.
    pub(crate) puk: Zeroizing<[u8; 8]>,
    /// PUK tries left (0 = blocked).
    pub(crate) puk_tries: u8,
    /// The management key.
    pub(crate) management: ManagementKey,
    /// Private keys by key reference (all P-256).
    pub(crate) keys: BTreeMap<u8, SecretKey>,
    /// Data object contents (the value of tag `53`) by object tag.
    pub(crate) objects: BTreeMap<u32, Vec<u8>>,
}

impl core::fmt::Debug for PivState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PivState")
            .field("pin_tries", &self.pin_tries)
            .field("puk_tries", &self.puk_tries)
            .field("management", &self.management)
            .field("key_slots", &self.keys.keys().collect::<Vec<_>>())
            .field("objects", &self.objects.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl citycard_card::storage::StateBlob for PivState {
    fn fresh() -> Self {
        Self::factory()
    }

    fn decode_blob(bytes: &[u8]) -> Option<Self> {
        Self::decode(bytes).ok()
    }

    fn encode_blob(&self) -> Zeroizing<Vec<u8>> {
        self.encode()
    }
}

impl PivState {
    /// A card fresh from the factory: default PIN `123456`, PUK `12345678`,
    /// default 3DES management key, no keys, no data objects.
    pub fn factory() -> Self {
        Self {
            pin: Zeroizing::new(DEFAULT_PIN),
            pin_tries: DEFAULT_TRIES,
            puk: Zeroizing::new(DEFAULT_PUK),
            puk_tries: DEFAULT_TRIES,
            management: ManagementKey {
                algorithm: alg::TDES,
                key: Zeroizing::new(DEFAULT_MANAGEMENT_KEY.to_vec()),
            },
            keys: BTreeMap::new(),
            objects: BTreeMap::new(),
        }
    }

    /// `true` when `bytes` start with the PIV state magic (whatever the version).
    pub fn is_piv_state(bytes: &[u8]) -> bool {
        bytes.starts_with(&MAGIC)
    }

    /// PIN tries left.
    pub fn pin_tries_left(&self) -> u8 {
        self.pin_tries
    }

    /// PUK tries left.
    pub fn puk_tries_left(&self) -> u8 {
        self.puk_tries
    }

    /// The management key's algorithm identifier.
    pub fn management_algorithm(&self) -> u8 {
        self.management.algorithm
    }

    /// Key references that hold a private key, ascending.
    pub fn key_slots(&self) -> impl Iterator<Item = u8> + '_ {
        self.keys.keys().copied()
    }

    /// The public key in slot `slot`, if the slot holds a key.
    pub fn public_key(&self, slot: u8) -> Option<p256::PublicKey> {
        self.keys.get(&slot).map(SecretKey::public_key)
    }

    /// Tags of the stored data objects, ascending.
    pub fn object_tags(&self) -> impl Iterator<Item = u32> + '_ {
        self.objects.keys().copied()
    }

    /// Serialises the state (secrets included; the buffer is zeroized on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.pin.as_slice());
        out.push(self.pin_tries);
        out.extend_from_slice(self.puk.as_slice());
        out.push(self.puk_tries);
        out.push(self.management.algorithm);
        out.push(self.management.key.len() as u8);
        out.extend_from_slice(&self.management.key);
        out.push(self.keys.len() as u8);
        for (slot, key) in &self.keys {
            out.push(*slot);
            out.push(alg::ECC_P256);
            out.extend_from_slice(&key.to_bytes());
        }
        out.extend_from_slice(&(self.objects.len() as u16).to_be_bytes());
        for (tag, value) in &self.objects {
            out.extend_from_slice(tag.to_be_bytes().get(1..).unwrap_or_default());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// Parses a state blob written by [`PivState::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PivError> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(PivError::NotPivState);
        }
        let version = r.byte()?;
        if version != VERSION {
            return Err(PivError::UnsupportedVersion(version));
        }
        let pin = Zeroizing::new(r.array::<8>()?);
        let pin_tries = r.tries()?;
        let puk = Zeroizing::new(r.array::<8>()?);
        let puk_tries = r.tries()?;
        let algorithm = r.byte()?;
        let key_len = usize::from(r.byte()?);
        if mgmt::key_len(algorithm) != Some(key_len) {
            return Err(PivError::Corrupt);
        }
        let key = Zeroizing::new(r.take(key_len)?.to_vec());
        let mut keys = BTreeMap::new();
        for _ in 0..r.byte()? {
            let slot = r.byte()?;
            if r.byte()? != alg::ECC_P256 || !crate::applet::is_key_slot(slot) {
                return Err(PivError::Corrupt);
            }
            let secret = Zeroizing::new(r.array::<32>()?);
            let key = SecretKey::from_slice(secret.as_slice()).map_err(|_| PivError::Corrupt)?;
            if keys.insert(slot, key).is_some() {
                return Err(PivError::Corrupt);
            }
        }
        let mut objects = BTreeMap::new();
        for _ in 0..u16::from_be_bytes(r.array::<2>()?) {
            let [a, b, c] = r.array::<3>()?;
            let tag = u32::from_be_bytes([0, a, b, c]);
            let len = usize::from(u16::from_be_bytes(r.array::<2>()?));
            if len == 0 || len > MAX_OBJECT_LEN || !crate::applet::is_container(tag) {
                return Err(PivError::Corrupt);
            }
            if objects.insert(tag, r.take(len)?.to_vec()).is_some() {
                return Err(PivError::Corrupt);
            }
        }
        if !r.0.is_empty() {
            return Err(PivError::Corrupt);
        }
        Ok(Self {
            pin,
            pin_tries,
            puk,
            puk_tries,
            management: ManagementKey { algorithm, key },
            keys,
            objects,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PivError> {
        if self.0.len() < n {
            return Err(PivError::Corrupt);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, PivError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }
    fn tries(&mut self) -> Result<u8, PivError> {
        match self.byte()? {
            n if n <= DEFAULT_TRIES => Ok(n),
            _ => Err(PivError::Corrupt),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], PivError> {
        self.take(N)?.try_into().map_err(|_| PivError::Corrupt)
    }
}

/// A read-only summary of a PIV card state for `citycard card show`: which
/// slots hold keys, which data objects exist, the retry counters. Never any
/// object content or secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Key references holding a P-256 private key (e.g. `0x9E`).
    pub key_slots: Vec<u8>,
    /// Tags of the stored data objects (e.g. `0x5FC102`).
    pub objects: Vec<u32>,
    /// PIN tries left (0 = blocked).
    pub pin_tries_left: u8,
    /// PUK tries left (0 = blocked).
    pub puk_tries_left: u8,
    /// Algorithm identifier of the management key (`03`, `08`, `0A`, `0C`).
    pub management_key_algorithm: u8,
}

impl Summary {
    /// Summarises a state.
    pub fn of(state: &PivState) -> Self {
        Self {
            key_slots: state.key_slots().collect(),
            objects: state.object_tags().collect(),
            pin_tries_left: state.pin_tries,
            puk_tries_left: state.puk_tries,
            management_key_algorithm: state.management.algorithm,
        }
    }

    /// Summarises a stored state blob.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PivError> {
        PivState::decode(bytes).map(|s| Self::of(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trips_and_rejects_every_truncation() {
        let mut s = PivState::factory();
        s.keys
            .insert(0x9E, SecretKey::from_slice(&[7u8; 32]).unwrap());
        s.objects.insert(0x5FC102, alloc::vec![1, 2, 3]);
        s.pin_tries = 1;
        let bytes = s.encode();
        let back = PivState::decode(&bytes).unwrap();
        assert_eq!(back.encode(), bytes);
        assert_eq!(Summary::of(&back).key_slots, [0x9E]);
        for n in 0..bytes.len() {
            assert!(PivState::decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(PivState::decode(&longer).err(), Some(PivError::Corrupt));
        assert_eq!(PivState::decode(b"CITY").err(), Some(PivError::Corrupt));
        assert_eq!(
            PivState::decode(b"XXXXXXXX").err(),
            Some(PivError::NotPivState)
        );
    }
}
