//! The reader protocol: one GENERAL AUTHENTICATE that authenticates the card
//! (ECDH + MAC, deniable), binds the transcript and returns the record and the
//! granted attributes encrypted to the reader's certified key (spec §6.10, §7.5, §8).
//!
//! Command data:
//! ```text
//! 7C
//!   80 08   fingerprint of the reader certificate (already verified by the card)
//!   81 21   reader ephemeral public key E_R
//!   82 04   requested attribute set
//!   83 04   the reader's current date
//! ```
//! Response data: `7C { 86 21 E_C, 87 n ciphertext }`, where the card
//! generated the ephemeral key E_C and
//! ```text
//! echo  = E_R[1..17] (the first 16 bytes of E_R's x-coordinate)
//! K_enc = KDF(ECDH(e_C, R),    "citycard-v1 disclosure" ‖ E_C)[16]
//! K_mac = KDF(ECDH(card, E_R), "citycard-v1 card-auth"  ‖ E_C)[16]
//! P     = 90 echo ‖ E1 record ‖ C1 attributes… ‖ [92 pseudonym] ‖ [93 answered‖holds]
//!         ‖ 9E MAC ‖ [99 padding]
//! MAC   = AES-CMAC(K_mac, "citycard-v1 mac" ‖ command data ‖ E_C ‖ P up to 9E)
//! C     = AES-128-GCM(K_enc, nonce = 0¹², aad = E_C, P)
//! ```

use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;

use crate::apdu::Command;
use crate::attr::{AttributeId, AttributeKind, AttributeSet};
use crate::cert::{DOMAIN_LEN, FINGERPRINT_LEN};
use crate::consts::{cla, ins, label};
use crate::crypto::{self, MAC_LEN, POINT_LEN};
use crate::date::Date;
use crate::error::{Error, Result};
use crate::record::{AttributeEntry, ResidentRecord, TAG_ATTRIBUTE, TAG_RECORD};
use crate::tlv::{self, Sequence};

/// Dynamic authentication data template.
pub const TAG_DYNAMIC: u32 = 0x7C;
const TAG_CERT_REF: u32 = 0x80;
const TAG_READER_EPHEMERAL: u32 = 0x81;
const TAG_REQUEST: u32 = 0x82;
const TAG_DATE: u32 = 0x83;
const TAG_CARD_EPHEMERAL: u32 = 0x86;
const TAG_CIPHERTEXT: u32 = 0x87;
const TAG_TRANSCRIPT: u32 = 0x90;
const TAG_PSEUDONYM: u32 = 0x92;
const TAG_PREDICATES: u32 = 0x93;
const TAG_MAC: u32 = 0x9E;
const TAG_PADDING: u32 = 0x99;

/// Length of a pseudonym.
pub const PSEUDONYM_LEN: usize = 16;
/// Plaintext is padded to a multiple of this many bytes, so the ciphertext
/// length reveals little about the values inside.
pub const PADDING_BLOCK: usize = 32;

/// What the reader asks the card for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRequest {
    /// Fingerprint of the reader certificate the card has verified.
    pub certificate: [u8; FINGERPRINT_LEN],
    /// The reader's ephemeral public key.
    pub reader_ephemeral: PublicKey,
    /// Attributes requested (must be within the certificate's grants).
    pub requested: AttributeSet,
    /// The reader's current date (must be within the certificate's validity).
    pub date: Date,
}

impl AuthRequest {
    /// The command data field (`7C` template).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        tlv::push(&mut v, TAG_CERT_REF, &self.certificate);
        tlv::push(
            &mut v,
            TAG_READER_EPHEMERAL,
            &crypto::encode_point(&self.reader_ephemeral),
        );
        tlv::push(&mut v, TAG_REQUEST, &self.requested.to_bytes());
        tlv::push(&mut v, TAG_DATE, &self.date.to_bytes());
        tlv::encode(TAG_DYNAMIC, &v)
    }

    /// Decodes the command data field.
    pub fn decode(data: &[u8]) -> Result<Self> {
        let outer = tlv::read_exact(data, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let certificate = tlv::fixed::<FINGERPRINT_LEN>(&s.required(TAG_CERT_REF)?)?;
        let reader_ephemeral = crypto::decode_point(s.required(TAG_READER_EPHEMERAL)?.value)?;
        let requested = AttributeSet::from_bytes(s.required(TAG_REQUEST)?.value)?;
        let date = Date::from_bytes(s.required(TAG_DATE)?.value)?;
        s.finish()?;
        Ok(Self {
            certificate,
            reader_ephemeral,
            requested,
            date,
        })
    }
}

/// Answers to age predicates: which were answered, and which are true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Predicates {
    /// Predicates the card could evaluate (it holds a birth date).
    pub answered: AttributeSet,
    /// Predicates that hold on the reader's date.
    pub holds: AttributeSet,
}

/// What the card knows about a reader whose certificate it verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorisedReader {
    /// The reader's certified static key.
    pub public_key: PublicKey,
    /// Attributes the certificate grants.
    pub grants: AttributeSet,
    /// Pseudonym domain.
    pub domain: [u8; DOMAIN_LEN],
}

/// The card's long-term secrets and data, as the response builder needs them.
pub struct CardData<'a> {
    /// The card's private key.
    pub card_key: &'a SecretKey,
    /// The card's pseudonym key.
    pub pseudonym_key: &'a [u8; 16],
    /// The encoded `E1` record.
    pub record: &'a [u8],
    /// Stored attributes with salts.
    pub attributes: &'a [AttributeEntry],
}

/// The pseudonym the card gives a partner domain.
/// `AES-CMAC(pseudonym key, "citycard-v1 pseudonym" ‖ domain)`.
pub fn pseudonym(pseudonym_key: &[u8; 16], domain: &[u8; DOMAIN_LEN]) -> [u8; PSEUDONYM_LEN] {
    crypto::cmac(pseudonym_key, &[label::PSEUDONYM, domain])
}

fn evaluate_predicates(
    requested: AttributeSet,
    attributes: &[AttributeEntry],
    date: Date,
) -> Predicates {
    let birth = attributes
        .iter()
        .find(|a| a.id == AttributeId::BIRTH_DATE)
        .and_then(|a| Date::from_bytes(&a.value).ok());
    let mut answered = AttributeSet::EMPTY;
    let mut holds = AttributeSet::EMPTY;
    for id in requested
        .iter()
        .filter(|id| id.kind() == AttributeKind::Predicate)
    {
        if let (Some(birth), Some(threshold)) = (birth, id.age_threshold()) {
            answered = answered.with(id);
            if birth.years_until(date) >= threshold {
                holds = holds.with(id);
            }
        }
    }
    Predicates { answered, holds }
}

/// The echo of the command in the response: the first 16 bytes of the x-coordinate of E_R.
fn echo_of(reader_ephemeral: &PublicKey) -> [u8; 16] {
    let point = crypto::encode_point(reader_ephemeral);
    let mut out = [0u8; 16];
    out.copy_from_slice(point.get(1..17).unwrap_or(&[0; 16]));
    out
}

fn disclosure_key(z_enc: &[u8], e_c: &[u8; POINT_LEN]) -> zeroize::Zeroizing<[u8; 16]> {
    crypto::kdf::<16>(z_enc, &[label::DISCLOSURE, e_c])
}

fn card_auth_key(z_mac: &[u8], e_c: &[u8; POINT_LEN]) -> zeroize::Zeroizing<[u8; 16]> {
    crypto::kdf::<16>(z_mac, &[label::CARD_AUTH, e_c])
}

/// Card side: builds the GENERAL AUTHENTICATE response data for a request the
/// card has already checked against `reader` (grants, date). Generates the
/// card's ephemeral key from `rng`.
pub fn card_respond(
    command_data: &[u8],
    request: &AuthRequest,
    reader: &AuthorisedReader,
    card: &CardData<'_>,
    rng: &mut impl CryptoRngCore,
) -> Vec<u8> {
    let ephemeral = crypto::generate(rng);
    let e_c = crypto::encode_point(&ephemeral.public_key());
    let z_enc = crypto::ecdh(&ephemeral, &reader.public_key);
    let z_mac = crypto::ecdh(card.card_key, &request.reader_ephemeral);
    let k_enc = disclosure_key(z_enc.as_slice(), &e_c);
    let k_mac = card_auth_key(z_mac.as_slice(), &e_c);

    let mut p = Vec::with_capacity(512);
    tlv::push(&mut p, TAG_TRANSCRIPT, &echo_of(&request.reader_ephemeral));
    p.extend_from_slice(card.record);
    for entry in card
        .attributes
        .iter()
        .filter(|a| request.requested.contains(a.id))
    {
        p.extend_from_slice(&entry.encode());
    }
    if request.requested.contains(AttributeId::PSEUDONYM) {
        tlv::push(
            &mut p,
            TAG_PSEUDONYM,
            &pseudonym(card.pseudonym_key, &reader.domain),
        );
    }
    let predicates = evaluate_predicates(request.requested, card.attributes, request.date);
    if request
        .requested
        .iter()
        .any(|id| id.kind() == AttributeKind::Predicate)
    {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&predicates.answered.to_bytes());
        v[4..].copy_from_slice(&predicates.holds.to_bytes());
        tlv::push(&mut p, TAG_PREDICATES, &v);
    }
    let mac = crypto::cmac(&k_mac, &[label::MAC, command_data, &e_c, &p]);
    tlv::push(&mut p, TAG_MAC, &mac);
    pad(&mut p);
    let ciphertext = crypto::seal(&k_enc, &[0; 12], &e_c, &p);
    let mut v = Vec::with_capacity(ciphertext.len() + 40);
    tlv::push(&mut v, TAG_CARD_EPHEMERAL, &e_c);
    tlv::push(&mut v, TAG_CIPHERTEXT, &ciphertext);
    tlv::encode(TAG_DYNAMIC, &v)
}

/// Appends a `99` padding TLV so the length is a multiple of [`PADDING_BLOCK`].
fn pad(p: &mut Vec<u8>) {
    let rem = p.len() % PADDING_BLOCK;
    if rem == 0 {
        return;
    }
    let mut need = PADDING_BLOCK - rem;
    if need < 2 {
        need += PADDING_BLOCK;
    }
    // A padding TLV of total length `need`: header 2 bytes below 130, 3 above.
    let value_len = if need - 2 < 0x80 { need - 2 } else { need - 3 };
    tlv::push(p, TAG_PADDING, &alloc::vec![0u8; value_len]);
}

/// What a card disclosed, after decryption, transcript check, card
/// authentication (MAC) and digest checks. The record's issuer signature is
/// NOT yet verified: that needs the trust bundle (see the reader crate).
#[derive(Clone, Debug)]
pub struct Disclosure {
    /// The card's record (structure checked, signature not yet).
    pub record: ResidentRecord,
    /// Disclosed stored attributes, each matching its signed digest.
    pub attributes: Vec<AttributeEntry>,
    /// Pseudonym for the reader's domain, if requested.
    pub pseudonym: Option<[u8; PSEUDONYM_LEN]>,
    /// Predicate answers, if any were requested.
    pub predicates: Option<Predicates>,
}

/// Reader side of one GENERAL AUTHENTICATE.
pub struct ReaderSession {
    ephemeral: SecretKey,
    request: AuthRequest,
    command_data: Vec<u8>,
}

impl ReaderSession {
    /// A session with a fresh ephemeral key from `rng`.
    pub fn new(
        rng: &mut impl CryptoRngCore,
        certificate: [u8; FINGERPRINT_LEN],
        requested: AttributeSet,
        date: Date,
    ) -> Self {
        Self::with_ephemeral(crypto::generate(rng), certificate, requested, date)
    }

    /// A session with a given ephemeral key (test vectors).
    pub fn with_ephemeral(
        ephemeral: SecretKey,
        certificate: [u8; FINGERPRINT_LEN],
        requested: AttributeSet,
        date: Date,
    ) -> Self {
        let request = AuthRequest {
            certificate,
            reader_ephemeral: ephemeral.public_key(),
            requested,
            date,
        };
        let command_data = request.encode();
        Self {
            ephemeral,
            request,
            command_data,
        }
    }

    /// The request.
    pub fn request(&self) -> &AuthRequest {
        &self.request
    }

    /// The GENERAL AUTHENTICATE command (`00 86 00 00 Lc 7C… 00`).
    pub fn command(&self) -> Command {
        Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
            .with_data(self.command_data.clone())
            .with_le(256)
    }

    /// Opens the card's response with the reader's static key: decrypts,
    /// checks the transcript echo (replay), the card's MAC (genuineness,
    /// against the card key in the record) and each disclosed attribute's digest.
    pub fn open(&self, response: &[u8], reader_key: &SecretKey) -> Result<Disclosure> {
        let outer = tlv::read_exact(response, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let e_c_bytes = tlv::fixed::<POINT_LEN>(&s.required(TAG_CARD_EPHEMERAL)?)?;
        let ciphertext = s.required(TAG_CIPHERTEXT)?.value;
        s.finish()?;
        let e_c = crypto::decode_point(&e_c_bytes)?;
        let z_enc = crypto::ecdh(reader_key, &e_c);
        let k_enc = disclosure_key(z_enc.as_slice(), &e_c_bytes);
        let plaintext = crypto::open(&k_enc, &[0; 12], &e_c_bytes, ciphertext)?;

        let fields = tlv::read_all(&plaintext)?;
        let mut it = fields.iter();
        let echo = it.next().ok_or(Error::Missing(TAG_TRANSCRIPT))?;
        tlv::expect_tag(echo, TAG_TRANSCRIPT)?;
        if !crypto::mac_eq(echo.value, &echo_of(&self.request.reader_ephemeral)) {
            return Err(Error::TranscriptMismatch);
        }
        let record_field = it.next().ok_or(Error::Missing(TAG_RECORD))?;
        tlv::expect_tag(record_field, TAG_RECORD)?;
        let record = ResidentRecord::decode(record_field.raw)?;
        let mut mac_offset = echo.raw.len() + record_field.raw.len();

        let mut attributes = Vec::new();
        let mut pseudonym = None;
        let mut predicates = None;
        let mut mac = None;
        for f in it.by_ref() {
            match f.tag {
                TAG_ATTRIBUTE if pseudonym.is_none() && predicates.is_none() => {
                    let entry = AttributeEntry::decode_value(f.value)?;
                    if attributes
                        .last()
                        .is_some_and(|last: &AttributeEntry| last.id >= entry.id)
                    {
                        return Err(Error::Duplicate);
                    }
                    attributes.push(entry);
                }
                TAG_PSEUDONYM if pseudonym.is_none() && predicates.is_none() => {
                    pseudonym = Some(tlv::fixed::<PSEUDONYM_LEN>(f)?);
                }
                TAG_PREDICATES if predicates.is_none() => {
                    let v = tlv::fixed::<8>(f)?;
                    predicates = Some(Predicates {
                        answered: AttributeSet::from_bytes(&v[..4])?,
                        holds: AttributeSet::from_bytes(&v[4..])?,
                    });
                }
                TAG_MAC => {
                    mac = Some(tlv::fixed::<MAC_LEN>(f)?);
                    break;
                }
                other => {
                    return Err(Error::UnexpectedTag {
                        expected: TAG_MAC,
                        found: other,
                    })
                }
            }
            mac_offset += f.raw.len();
        }
        let mac = mac.ok_or(Error::Missing(TAG_MAC))?;
        match (it.next(), it.next()) {
            (None, None) => {}
            (Some(p), None) if p.tag == TAG_PADDING && p.value.iter().all(|b| *b == 0) => {}
            _ => return Err(Error::MalformedTlv),
        }

        let z_mac = crypto::ecdh(&self.ephemeral, &record.body().card_key);
        let k_mac = card_auth_key(z_mac.as_slice(), &e_c_bytes);
        let covered = plaintext.get(..mac_offset).ok_or(Error::MalformedTlv)?;
        let expected = crypto::cmac(
            &k_mac,
            &[label::MAC, &self.command_data, &e_c_bytes, covered],
        );
        if !crypto::mac_eq(&expected, &mac) {
            return Err(Error::BadMac);
        }

        // After authentication: the card must answer exactly what was asked.
        for entry in &attributes {
            if !self.request.requested.contains(entry.id) {
                return Err(Error::UnexpectedTag {
                    expected: 0,
                    found: TAG_ATTRIBUTE,
                });
            }
            record.check_entry(entry)?;
        }
        let wants_pseudonym = self.request.requested.contains(AttributeId::PSEUDONYM);
        if wants_pseudonym != pseudonym.is_some() {
            return Err(Error::Missing(TAG_PSEUDONYM));
        }
        let wants_predicates = self
            .request
            .requested
            .iter()
            .any(|id| id.kind() == AttributeKind::Predicate);
        if let Some(p) = &predicates {
            if !p.answered.is_subset_of(self.request.requested) || !p.holds.is_subset_of(p.answered)
            {
                return Err(Error::BadValue(TAG_PREDICATES));
            }
        }
        if wants_predicates != predicates.is_some() {
            return Err(Error::Missing(TAG_PREDICATES));
        }
        Ok(Disclosure {
            record,
            attributes,
            pseudonym,
            predicates,
        })
    }
}
