//! The card's persistent state and its encoding (spec §3.3, §5.6).
//!
//! Encoding (internal to the reference card): a sequence of primitive TLVs,
//! in this order, each optional unless marked:
//! ```text
//! 80 01  format version = 02 (required)
//! 81 01  life cycle (required)
//! 82 ..  anchor: issuer length ‖ issuer ‖ root key (33)
//! 83 20  attestation private key k_A
//! 84 ..  preparation certificate (7F21, role 04)
//! 85 10  pseudonym key
//! 86 ..  groups: G × (card private key (32) ‖ salt seed (16) ‖ record (300))
//! 87 ..  stored values (C1 TLVs, ids ascending)
//! 88 04  card date
//! 89 ..  reader certificate cache, least recently verified first:
//!        n × (fingerprint 8 ‖ key 33 ‖ grants 4 ‖ domain 16 ‖ group 1 ‖ effective 4 ‖ expiry 4)
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use citycard_proto::attr::AttributeSet;
use citycard_proto::auth::AuthorisedReader;
use citycard_proto::cert::{DOMAIN_LEN, FINGERPRINT_LEN};
use citycard_proto::crypto::{self, POINT_LEN};
use citycard_proto::limits::{
    CACHE_ENTRIES, MAX_CERTIFICATE_LEN, MAX_GROUPS, MAX_STORED_ATTRIBUTES, RECORD_LEN,
};
use citycard_proto::record::{StoredValue, SEED_LEN, TAG_ATTRIBUTE};
use citycard_proto::tlv;
use citycard_proto::{consts::LifeCycle, date::Date};
use p256::{PublicKey, SecretKey};
use zeroize::Zeroizing;

const FORMAT_VERSION: u8 = 2;
const CACHE_ENTRY_LEN: usize = FINGERPRINT_LEN + POINT_LEN + 4 + DOMAIN_LEN + 1 + 4 + 4;
const GROUP_LEN: usize = 32 + SEED_LEN + RECORD_LEN;

/// The issuer trust anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// Issuer identifier (certificate CAR).
    pub issuer: String,
    /// Root public key.
    pub root: PublicKey,
}

/// What preparation installed besides the anchor.
#[derive(Clone)]
pub struct Preparation {
    /// The attestation private key k_A (generated on the card).
    pub attestation_key: SecretKey,
    /// The preparer-signed certificate of K_A (role 04).
    pub certificate: Vec<u8>,
}

impl core::fmt::Debug for Preparation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Preparation(REDACTED)")
    }
}

/// One linkability group's keys and record.
#[derive(Clone)]
pub struct GroupData {
    /// The group's card key k_g (generated on the card).
    pub card_key: SecretKey,
    /// The group's salt seed S_g.
    pub seed: Zeroizing<[u8; SEED_LEN]>,
    /// The station-signed record (E1 TLV, exactly 300 bytes).
    pub record: Vec<u8>,
}

/// The card's personal data and keys.
#[derive(Clone)]
pub struct Personalisation {
    /// One entry per group, group 0 first.
    pub groups: Vec<GroupData>,
    /// The pseudonym key (generated on the card).
    pub pseudonym_key: Zeroizing<[u8; 16]>,
    /// Stored values, ids ascending.
    pub values: Vec<StoredValue>,
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
    /// Issuer anchor (from preparation).
    pub anchor: Option<Anchor>,
    /// Attestation key and preparation certificate.
    pub preparation: Option<Preparation>,
    /// Keys and data (present once issued).
    pub personalisation: Option<Personalisation>,
    /// The card date (spec §5.6): set at preparation, raised at ACTIVATE,
    /// raised to a reader certificate's effective date when that is at most
    /// `MAX_CARD_DATE_STEP` days ahead; it only grows.
    pub card_date: Option<Date>,
    /// Verified reader certificates, least recently verified first.
    pub cache: Vec<CachedReader>,
}

/// Why stored state could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptState;

fn corrupt<T>(_: T) -> CorruptState {
    CorruptState
}

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
            preparation: None,
            personalisation: None,
            card_date: None,
            cache: Vec::new(),
        }
    }

    /// Serialises the state.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(4096));
        tlv::push(&mut v, 0x80, &[FORMAT_VERSION]);
        tlv::push(&mut v, 0x81, &[self.life_cycle.to_byte()]);
        if let Some(a) = &self.anchor {
            let mut x = Vec::with_capacity(50);
            x.push(a.issuer.len() as u8);
            x.extend_from_slice(a.issuer.as_bytes());
            x.extend_from_slice(&crypto::encode_point(&a.root));
            tlv::push(&mut v, 0x82, &x);
        }
        if let Some(p) = &self.preparation {
            tlv::push(&mut v, 0x83, &p.attestation_key.to_bytes());
            tlv::push(&mut v, 0x84, &p.certificate);
        }
        if let Some(p) = &self.personalisation {
            tlv::push(&mut v, 0x85, p.pseudonym_key.as_slice());
            let mut groups = Zeroizing::new(Vec::with_capacity(p.groups.len() * GROUP_LEN));
            for g in &p.groups {
                groups.extend_from_slice(&g.card_key.to_bytes());
                groups.extend_from_slice(g.seed.as_slice());
                groups.extend_from_slice(&g.record);
            }
            tlv::push(&mut v, 0x86, &groups);
            let mut values = Zeroizing::new(Vec::new());
            for a in &p.values {
                values.extend_from_slice(&a.encode());
            }
            tlv::push(&mut v, 0x87, &values);
        }
        if let Some(d) = self.card_date {
            tlv::push(&mut v, 0x88, &d.to_bytes());
        }
        if !self.cache.is_empty() {
            let mut c = Vec::with_capacity(self.cache.len() * CACHE_ENTRY_LEN);
            for e in &self.cache {
                c.extend_from_slice(&e.fingerprint);
                c.extend_from_slice(&crypto::encode_point(&e.reader.public_key));
                c.extend_from_slice(&e.reader.grants.to_bytes());
                c.extend_from_slice(&e.reader.domain);
                c.push(e.reader.group);
                c.extend_from_slice(&e.effective.to_bytes());
                c.extend_from_slice(&e.expiry.to_bytes());
            }
            tlv::push(&mut v, 0x89, &c);
        }
        v
    }

    /// Decodes stored state; any inconsistency is [`CorruptState`].
    pub fn decode(bytes: &[u8]) -> Result<Self, CorruptState> {
        let mut fields = Fields::split(bytes)?;
        if fields.take(0x80) != Some(&[FORMAT_VERSION][..]) {
            return Err(CorruptState);
        }
        let life_cycle = match fields.take(0x81) {
            Some([b]) => LifeCycle::from_byte(*b).ok_or(CorruptState)?,
            _ => return Err(CorruptState),
        };
        let anchor = fields.take(0x82).map(decode_anchor).transpose()?;
        let preparation = decode_preparation(&mut fields)?;
        let personalisation = decode_personalisation(&mut fields)?;
        let card_date = fields
            .take(0x88)
            .map(|f| Date::from_bytes(f).map_err(corrupt))
            .transpose()?;
        let cache = match fields.take(0x89) {
            Some(f) => decode_cache(f)?,
            None => Vec::new(),
        };
        fields.finish()?;
        let state = Self {
            life_cycle,
            anchor,
            preparation,
            personalisation,
            card_date,
            cache,
        };
        if state.consistent() {
            Ok(state)
        } else {
            Err(CorruptState)
        }
    }

    /// Cross-field consistency: what each life-cycle state must (not) have.
    fn consistent(&self) -> bool {
        let anchored = self.anchor.is_some() && self.preparation.is_some();
        let empty =
            self.anchor.is_none() && self.preparation.is_none() && self.personalisation.is_none();
        match self.life_cycle {
            LifeCycle::Blank | LifeCycle::Terminated => empty,
            LifeCycle::Prepared => {
                anchored && self.personalisation.is_none() && self.card_date.is_some()
            }
            LifeCycle::Issued => {
                anchored && self.personalisation.is_some() && self.card_date.is_some()
            }
        }
    }
}

/// The state's fields in order, taken one expected tag at a time.
struct Fields<'a> {
    fields: core::iter::Peekable<alloc::vec::IntoIter<(u8, &'a [u8])>>,
}

impl<'a> Fields<'a> {
    /// Splits the encoding into its fields (the state is larger than one TLV
    /// input of the protocol, so it is split by hand).
    fn split(bytes: &'a [u8]) -> Result<Self, CorruptState> {
        let mut fields = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (f, r) = read_state_field(rest)?;
            fields.push(f);
            rest = r;
        }
        Ok(Self {
            fields: fields.into_iter().peekable(),
        })
    }

    /// The value of the next field if it has `tag`.
    fn take(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.fields.peek() {
            Some((t, _)) if *t == tag => self.fields.next().map(|(_, v)| v),
            _ => None,
        }
    }

    /// Fails if a field is left over (unknown, duplicate or out of order).
    fn finish(mut self) -> Result<(), CorruptState> {
        match self.fields.next() {
            Some(_) => Err(CorruptState),
            None => Ok(()),
        }
    }
}

/// `82`: issuer length ‖ issuer ‖ root key.
fn decode_anchor(f: &[u8]) -> Result<Anchor, CorruptState> {
    let (len, rest) = f.split_first().ok_or(CorruptState)?;
    let issuer = rest.get(..usize::from(*len)).ok_or(CorruptState)?;
    let root = rest.get(usize::from(*len)..).ok_or(CorruptState)?;
    Ok(Anchor {
        issuer: String::from(core::str::from_utf8(issuer).map_err(corrupt)?),
        root: crypto::decode_point(root).map_err(corrupt)?,
    })
}

/// `83` attestation key, then `84` preparation certificate (both or neither).
fn decode_preparation(fields: &mut Fields<'_>) -> Result<Option<Preparation>, CorruptState> {
    let Some(k) = fields.take(0x83) else {
        return Ok(None);
    };
    let attestation_key = SecretKey::from_slice(k).map_err(corrupt)?;
    let certificate = fields.take(0x84).ok_or(CorruptState)?;
    if certificate.len() > MAX_CERTIFICATE_LEN {
        return Err(CorruptState);
    }
    Ok(Some(Preparation {
        attestation_key,
        certificate: certificate.to_vec(),
    }))
}

/// `85` pseudonym key, `86` groups, `87` stored values (all or none).
fn decode_personalisation(
    fields: &mut Fields<'_>,
) -> Result<Option<Personalisation>, CorruptState> {
    let Some(pk) = fields.take(0x85) else {
        return Ok(None);
    };
    let pseudonym_key = Zeroizing::new(<[u8; 16]>::try_from(pk).map_err(corrupt)?);
    let groups = decode_groups(fields.take(0x86).ok_or(CorruptState)?)?;
    let values = decode_values(fields.take(0x87).ok_or(CorruptState)?)?;
    Ok(Some(Personalisation {
        groups,
        pseudonym_key,
        values,
    }))
}

/// `86`: 1 to `MAX_GROUPS` × (card key ‖ salt seed ‖ record).
fn decode_groups(raw: &[u8]) -> Result<Vec<GroupData>, CorruptState> {
    if raw.is_empty() || raw.len() % GROUP_LEN != 0 || raw.len() / GROUP_LEN > MAX_GROUPS {
        return Err(CorruptState);
    }
    let mut groups = Vec::new();
    for chunk in raw.chunks_exact(GROUP_LEN) {
        let (key, rest) = chunk.split_at_checked(32).ok_or(CorruptState)?;
        let (seed, record) = rest.split_at_checked(SEED_LEN).ok_or(CorruptState)?;
        groups.push(GroupData {
            card_key: SecretKey::from_slice(key).map_err(corrupt)?,
            seed: Zeroizing::new(seed.try_into().map_err(corrupt)?),
            record: record.to_vec(),
        });
    }
    Ok(groups)
}

/// `87`: at most `MAX_STORED_ATTRIBUTES` `C1` TLVs.
fn decode_values(raw: &[u8]) -> Result<Vec<StoredValue>, CorruptState> {
    let mut values = Vec::new();
    for f in tlv::read_all(raw).map_err(corrupt)? {
        if f.tag != TAG_ATTRIBUTE {
            return Err(CorruptState);
        }
        values.push(StoredValue::decode_value(f.value).map_err(corrupt)?);
    }
    if values.len() > MAX_STORED_ATTRIBUTES {
        return Err(CorruptState);
    }
    Ok(values)
}

/// `89`: at most `CACHE_ENTRIES` fixed-size entries.
fn decode_cache(f: &[u8]) -> Result<Vec<CachedReader>, CorruptState> {
    if f.len() % CACHE_ENTRY_LEN != 0 || f.len() / CACHE_ENTRY_LEN > CACHE_ENTRIES {
        return Err(CorruptState);
    }
    f.chunks_exact(CACHE_ENTRY_LEN)
        .map(decode_cache_entry)
        .collect()
}

/// fingerprint 8 ‖ key 33 ‖ grants 4 ‖ domain 16 ‖ group 1 ‖ effective 4 ‖ expiry 4.
fn decode_cache_entry(e: &[u8]) -> Result<CachedReader, CorruptState> {
    let (fp, rest) = e
        .split_first_chunk::<FINGERPRINT_LEN>()
        .ok_or(CorruptState)?;
    let (pk, rest) = rest.split_first_chunk::<POINT_LEN>().ok_or(CorruptState)?;
    let (grants, rest) = rest.split_first_chunk::<4>().ok_or(CorruptState)?;
    let (domain, rest) = rest.split_first_chunk::<DOMAIN_LEN>().ok_or(CorruptState)?;
    let (group, rest) = rest.split_first().ok_or(CorruptState)?;
    let (eff, exp) = rest.split_first_chunk::<4>().ok_or(CorruptState)?;
    Ok(CachedReader {
        fingerprint: *fp,
        reader: AuthorisedReader {
            public_key: crypto::decode_point(pk).map_err(corrupt)?,
            grants: AttributeSet::from_bytes(grants).map_err(corrupt)?,
            domain: *domain,
            group: *group,
        },
        effective: Date::from_bytes(eff).map_err(corrupt)?,
        expiry: Date::from_bytes(exp).map_err(corrupt)?,
    })
}

/// One state field (tag, value) and the bytes after it.
type FieldAndRest<'a> = ((u8, &'a [u8]), &'a [u8]);

/// One primitive state field: a one-byte tag and a DER length of up to two bytes.
fn read_state_field(input: &[u8]) -> Result<FieldAndRest<'_>, CorruptState> {
    let (tag, rest) = input.split_first().ok_or(CorruptState)?;
    let (first, rest) = rest.split_first().ok_or(CorruptState)?;
    let (len, rest) = match *first {
        n @ 0..=0x7F => (usize::from(n), rest),
        0x81 => {
            let (n, rest) = rest.split_first().ok_or(CorruptState)?;
            if *n < 0x80 {
                return Err(CorruptState);
            }
            (usize::from(*n), rest)
        }
        0x82 => {
            let (n, rest) = rest.split_first_chunk::<2>().ok_or(CorruptState)?;
            let n = usize::from(u16::from_be_bytes(*n));
            if n < 0x100 {
                return Err(CorruptState);
            }
            (n, rest)
        }
        _ => return Err(CorruptState),
    };
    let (value, rest) = rest.split_at_checked(len).ok_or(CorruptState)?;
    Ok(((*tag, value), rest))
}
