//! The card's persistent state and its encoding (spec §3.3).
//!
//! Encoding: a sequence of primitive TLVs, in this order, each optional
//! unless marked:
//! ```text
//! 80 01  format version = 01 (required)
//! 81 01  life cycle (required)
//! 82 ..  anchor: issuer length ‖ issuer ‖ root key (33)
//! 83 20  card private key
//! 84 10  pseudonym key
//! 85 ..  record (E1 TLV)
//! 86 ..  stored attributes (C1 TLVs)
//! 87 04  card date (highest certificate effective date seen)
//! 88 ..  reader certificate cache: n × 69-byte entries
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use citycard_proto::attr::AttributeSet;
use citycard_proto::auth::AuthorisedReader;
use citycard_proto::cert::{DOMAIN_LEN, FINGERPRINT_LEN};
use citycard_proto::crypto::{self, POINT_LEN};
use citycard_proto::record::{AttributeEntry, TAG_ATTRIBUTE};
use citycard_proto::tlv;
use citycard_proto::{Date, LifeCycle};
use p256::{PublicKey, SecretKey};
use zeroize::Zeroizing;

/// Number of reader certificates the card remembers.
pub const CACHE_ENTRIES: usize = 8;
const CACHE_ENTRY_LEN: usize = FINGERPRINT_LEN + POINT_LEN + 4 + DOMAIN_LEN + 4 + 4;

/// The issuer trust anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Issuer identifier (certificate CAR).
    pub issuer: String,
    /// Root public key.
    pub root: PublicKey,
}

/// The card's personal data and keys.
#[derive(Clone)]
pub struct Personalisation {
    /// The card's private key (generated on the card).
    pub card_key: SecretKey,
    /// The pseudonym key (generated on the card).
    pub pseudonym_key: Zeroizing<[u8; 16]>,
    /// The station-signed record (E1 TLV).
    pub record: Vec<u8>,
    /// Stored attributes with their salts.
    pub attributes: Vec<AttributeEntry>,
}

impl core::fmt::Debug for Personalisation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Personalisation(REDACTED)")
    }
}

/// A reader certificate the card has verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedReader {
    /// Certificate fingerprint.
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// What the certificate says.
    pub reader: AuthorisedReader,
    /// Effective date.
    pub effective: Date,
    /// Expiry date.
    pub expiry: Date,
}

/// Everything the card keeps across power cycles.
#[derive(Clone, Debug)]
pub struct PersistentState {
    /// Life-cycle state.
    pub life_cycle: LifeCycle,
    /// Issuer anchor (absent while blank).
    pub anchor: Option<Anchor>,
    /// Keys and data (present once issued).
    pub personalisation: Option<Personalisation>,
    /// The highest certificate effective date the card has seen (its notion of "today or later").
    pub card_date: Option<Date>,
    /// Verified reader certificates, oldest first.
    pub cache: Vec<CachedReader>,
}

/// Why stored state could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptState;

impl crate::storage::StateBlob for PersistentState {
    fn fresh() -> Self {
        Self::blank()
    }

    fn decode_blob(bytes: &[u8]) -> Option<Self> {
        Self::decode(bytes).ok()
    }

    fn encode_blob(&self) -> Zeroizing<Vec<u8>> {
        self.encode()
    }
}

impl PersistentState {
    /// A card fresh from the factory.
    pub fn blank() -> Self {
        Self {
            life_cycle: LifeCycle::Blank,
            anchor: None,
            personalisation: None,
            card_date: None,
            cache: Vec::new(),
        }
    }

    /// Serialises the state.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(1024));
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x81, &[self.life_cycle.to_byte()]);
        if let Some(a) = &self.anchor {
            let mut x = Vec::with_capacity(50);
            x.push(a.issuer.len() as u8);
            x.extend_from_slice(a.issuer.as_bytes());
            x.extend_from_slice(&crypto::encode_point(&a.root));
            tlv::push(&mut v, 0x82, &x);
        }
        if let Some(p) = &self.personalisation {
            tlv::push(&mut v, 0x83, &p.card_key.to_bytes());
            tlv::push(&mut v, 0x84, p.pseudonym_key.as_slice());
            tlv::push(&mut v, 0x85, &p.record);
            let mut attrs = Zeroizing::new(Vec::new());
            for a in &p.attributes {
                attrs.extend_from_slice(&a.encode());
            }
            tlv::push(&mut v, 0x86, &attrs);
        }
        if let Some(d) = self.card_date {
            tlv::push(&mut v, 0x87, &d.to_bytes());
        }
        if !self.cache.is_empty() {
            let mut c = Vec::with_capacity(self.cache.len() * CACHE_ENTRY_LEN);
            for e in &self.cache {
                c.extend_from_slice(&e.fingerprint);
                c.extend_from_slice(&crypto::encode_point(&e.reader.public_key));
                c.extend_from_slice(&e.reader.grants.to_bytes());
                c.extend_from_slice(&e.reader.domain);
                c.extend_from_slice(&e.effective.to_bytes());
                c.extend_from_slice(&e.expiry.to_bytes());
            }
            tlv::push(&mut v, 0x88, &c);
        }
        v
    }

    /// Decodes stored state; any inconsistency is [`CorruptState`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptState> {
        let mut s = tlv::Sequence::new(bytes).map_err(|_| CorruptState)?;
        let version = s.required(0x80).map_err(|_| CorruptState)?;
        if version.value != [1] {
            return Err(CorruptState);
        }
        let lc = s.required(0x81).map_err(|_| CorruptState)?;
        let life_cycle = match lc.value {
            [b] => LifeCycle::from_byte(*b).ok_or(CorruptState)?,
            _ => return Err(CorruptState),
        };
        let anchor = match s.optional(0x82).map_err(|_| CorruptState)? {
            None => None,
            Some(f) => {
                let (len, rest) = f.value.split_first().ok_or(CorruptState)?;
                let issuer = rest.get(..usize::from(*len)).ok_or(CorruptState)?;
                let root = rest.get(usize::from(*len)..).ok_or(CorruptState)?;
                Some(Anchor {
                    issuer: String::from(core::str::from_utf8(issuer).map_err(|_| CorruptState)?),
                    root: crypto::decode_point(root).map_err(|_| CorruptState)?,
                })
            }
        };
        let personalisation = match s.optional(0x83).map_err(|_| CorruptState)? {
            None => None,
            Some(k) => {
                let card_key = SecretKey::from_slice(k.value).map_err(|_| CorruptState)?;
                let pk = s.required(0x84).map_err(|_| CorruptState)?;
                let pseudonym_key =
                    Zeroizing::new(tlv::fixed::<16>(&pk).map_err(|_| CorruptState)?);
                let record = s.required(0x85).map_err(|_| CorruptState)?.value.to_vec();
                let attrs = s.required(0x86).map_err(|_| CorruptState)?;
                let mut attributes = Vec::new();
                for f in tlv::read_all(attrs.value).map_err(|_| CorruptState)? {
                    if f.tag != TAG_ATTRIBUTE {
                        return Err(CorruptState);
                    }
                    attributes
                        .push(AttributeEntry::decode_value(f.value).map_err(|_| CorruptState)?);
                }
                Some(Personalisation {
                    card_key,
                    pseudonym_key,
                    record,
                    attributes,
                })
            }
        };
        let card_date = match s.optional(0x87).map_err(|_| CorruptState)? {
            None => None,
            Some(f) => Some(Date::from_bytes(f.value).map_err(|_| CorruptState)?),
        };
        let mut cache = Vec::new();
        if let Some(f) = s.optional(0x88).map_err(|_| CorruptState)? {
            if f.value.len() % CACHE_ENTRY_LEN != 0
                || f.value.len() / CACHE_ENTRY_LEN > CACHE_ENTRIES
            {
                return Err(CorruptState);
            }
            for e in f.value.chunks_exact(CACHE_ENTRY_LEN) {
                let (fp, rest) = e
                    .split_first_chunk::<FINGERPRINT_LEN>()
                    .ok_or(CorruptState)?;
                let (pk, rest) = rest.split_first_chunk::<POINT_LEN>().ok_or(CorruptState)?;
                let (grants, rest) = rest.split_first_chunk::<4>().ok_or(CorruptState)?;
                let (domain, rest) = rest.split_first_chunk::<DOMAIN_LEN>().ok_or(CorruptState)?;
                let (eff, exp) = rest.split_first_chunk::<4>().ok_or(CorruptState)?;
                cache.push(CachedReader {
                    fingerprint: *fp,
                    reader: AuthorisedReader {
                        public_key: crypto::decode_point(pk).map_err(|_| CorruptState)?,
                        grants: AttributeSet::from_bytes(grants).map_err(|_| CorruptState)?,
                        domain: *domain,
                    },
                    effective: Date::from_bytes(eff).map_err(|_| CorruptState)?,
                    expiry: Date::from_bytes(exp).map_err(|_| CorruptState)?,
                });
            }
        }
        s.finish().map_err(|_| CorruptState)?;
        // Cross-field consistency: what each life-cycle state must (not) have.
        let consistent = match life_cycle {
            LifeCycle::Blank => anchor.is_none() && personalisation.is_none(),
            LifeCycle::Anchored => anchor.is_some() && personalisation.is_none(),
            LifeCycle::Issued => anchor.is_some() && personalisation.is_some(),
            LifeCycle::Terminated => true,
        };
        if !consistent {
            return Err(CorruptState);
        }
        Ok(Self {
            life_cycle,
            anchor,
            personalisation,
            card_date,
            cache,
        })
    }
}
