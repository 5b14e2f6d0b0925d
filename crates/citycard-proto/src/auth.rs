//! The reader protocol: one GENERAL AUTHENTICATE that authenticates the card
//! (ECDH + MAC, deniable), binds the transcript and returns the group record
//! and the granted attributes encrypted to the reader's certified key — or a
//! decoy of the same length that only the reader can tell apart (spec §6.10,
//! §7.5, §8).
//!
//! ```text
//! command data  7C 39 { 80 08 fingerprint, 81 21 E_R, 82 04 request, 83 04 date }
//! Z_enc = ECDH(e_C, R)    Z_mac = ECDH(k_g, E_R)
//! K_enc = KDF(Z_enc, "citycard-v2 disclosure" ‖ E_C ‖ E_R)[0..16]
//! K_tag = KDF(Z_enc, "citycard-v2 tag"        ‖ E_C)[0..16]
//! K_mac = KDF(Z_mac, "citycard-v2 card-auth"  ‖ E_C)[0..16]
//! P     = 90 10 echo ‖ E1 record_g ‖ C1 entries (fixed size) ‖ [92 pseudonym]
//!         ‖ [93 answered ‖ holds] ‖ 9E 10 MAC
//! MAC   = AES-CMAC(K_mac, "citycard-v2 mac" ‖ cmd ‖ E_C ‖ P before 9E)
//! C     = seal(K_enc, K_tag, 0¹⁶, E_C, P)
//! answer = 7C { 86 21 E_C, 87 L C }, exactly answer_len(request) bytes
//! ```

use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;

use crate::apdu::Command;
use crate::attr::{AttributeId, AttributeKind, AttributeSet};
use crate::cert::{DOMAIN_LEN, FINGERPRINT_LEN};
use crate::consts::{cla, ins, label};
use crate::crypto::{self, OpCount, MAC_LEN, POINT_LEN, TAG_LEN};
use crate::date::Date;
use crate::error::{Error, Result};
use crate::limits::RECORD_LEN;
use crate::record::{
    self, entry_len, DisclosedEntry, GroupRecord, StoredValue, SEED_LEN, TAG_ATTRIBUTE,
};
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

/// Length of a pseudonym.
pub const PSEUDONYM_LEN: usize = 16;
/// Length of the echo of E_R at the start of the plaintext.
pub const ECHO_LEN: usize = 16;
/// Length of the GENERAL AUTHENTICATE command data (`7C 39 …`).
pub const REQUEST_LEN: usize = 59;

/// What the reader asks the card for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthRequest {
    /// Fingerprint of the reader certificate the card has verified.
    pub certificate: [u8; FINGERPRINT_LEN],
    /// The reader's ephemeral public key as sent (33 bytes; the card answers a
    /// decoy when it is not a valid point).
    pub reader_ephemeral: [u8; POINT_LEN],
    /// Attributes requested (must be within the certificate's grants).
    pub requested: AttributeSet,
    /// The reader's current date (must be within the certificate's validity).
    pub date: Date,
}

impl AuthRequest {
    /// The command data field (`7C` template).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(REQUEST_LEN);
        tlv::push(&mut v, TAG_CERT_REF, &self.certificate);
        tlv::push(&mut v, TAG_READER_EPHEMERAL, &self.reader_ephemeral);
        tlv::push(&mut v, TAG_REQUEST, &self.requested.to_bytes());
        tlv::push(&mut v, TAG_DATE, &self.date.to_bytes());
        tlv::encode(TAG_DYNAMIC, &v)
    }

    /// Decodes the command data field. Fails (`6A80` on the card) only on the
    /// command's form: the template, the attribute set and the date encoding.
    pub fn decode(data: &[u8]) -> Result<Self> {
        let outer = tlv::read_exact(data, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let certificate = tlv::fixed::<FINGERPRINT_LEN>(&s.required(TAG_CERT_REF)?)?;
        let reader_ephemeral = tlv::fixed::<POINT_LEN>(&s.required(TAG_READER_EPHEMERAL)?)?;
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

    /// E_R as a point, when it is one.
    pub fn reader_point(&self) -> Option<PublicKey> {
        crypto::decode_point(&self.reader_ephemeral).ok()
    }
}

fn requests_predicate(requested: AttributeSet) -> bool {
    requested
        .iter()
        .any(|id| id.kind() == AttributeKind::Predicate)
}

/// |P| for `requested` (spec §7.5): `18 + 300 + Σ(20 + fixed size) +
/// 18·[pseudonym] + 10·[predicate] + 18`.
pub fn plaintext_len(requested: AttributeSet) -> usize {
    let entries: usize = requested.iter().filter_map(entry_len).sum();
    2 + ECHO_LEN
        + RECORD_LEN
        + entries
        + if requested.contains(AttributeId::PSEUDONYM) {
            2 + PSEUDONYM_LEN
        } else {
            0
        }
        + if requests_predicate(requested) { 10 } else { 0 }
        + 2
        + MAC_LEN
}

fn tlv_len(value_len: usize) -> usize {
    let header = match value_len {
        0..=0x7F => 2,
        0x80..=0xFF => 3,
        _ => 4,
    };
    header + value_len
}

/// The exact length of the card's answer data to a request for `requested`,
/// real or decoy: `7C L { 86 21 E_C, 87 L' (|P| + 16) }`.
pub fn answer_len(requested: AttributeSet) -> usize {
    tlv_len(2 + POINT_LEN + tlv_len(plaintext_len(requested) + TAG_LEN))
}

/// Answers to age predicates: which were answered, and which are true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Predicates {
    /// Predicates the card could evaluate (it holds a birth date).
    pub answered: AttributeSet,
    /// Predicates that hold on the first day of the reader's month.
    pub holds: AttributeSet,
}

/// Evaluates the requested age predicates for `birth` on `month_start(date)` (spec §7.7).
pub fn evaluate_predicates(requested: AttributeSet, birth: Option<Date>, date: Date) -> Predicates {
    let on = date.month_start();
    let mut answered = AttributeSet::EMPTY;
    let mut holds = AttributeSet::EMPTY;
    for id in requested
        .iter()
        .filter(|id| id.kind() == AttributeKind::Predicate)
    {
        if let (Some(birth), Some(threshold)) = (birth, id.age_threshold()) {
            answered = answered.with(id);
            if birth.years_until(on) >= threshold {
                holds = holds.with(id);
            }
        }
    }
    Predicates { answered, holds }
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
    /// Linkability group.
    pub group: u8,
}

/// The pseudonym the card gives a partner domain:
/// `AES-CMAC(pseudonym key, "citycard-v2 pseudonym" ‖ domain)`.
pub fn pseudonym(pseudonym_key: &[u8; 16], domain: &[u8; DOMAIN_LEN]) -> [u8; PSEUDONYM_LEN] {
    crypto::cmac(pseudonym_key, &[label::PSEUDONYM, domain])
}

/// The echo of the command in the answer: E_R[1..17].
fn echo_of(reader_ephemeral: &[u8; POINT_LEN]) -> [u8; ECHO_LEN] {
    let mut out = [0u8; ECHO_LEN];
    for (o, b) in out.iter_mut().zip(reader_ephemeral.iter().skip(1)) {
        *o = *b;
    }
    out
}

/// One group as the card holds it.
pub struct CardGroup<'a> {
    /// The group's private card key k_g.
    pub card_key: &'a SecretKey,
    /// The encoded `E1` record (exactly [`RECORD_LEN`] bytes).
    pub record: &'a [u8],
    /// The group's salt seed.
    pub seed: &'a [u8; SEED_LEN],
}

/// What the answer builder needs from the card, whatever it answers.
pub struct CardData<'a> {
    /// Group 0 (its public key stands in for R, its key for k_g in a decoy).
    pub group0: CardGroup<'a>,
    /// K_0, the public key of group 0.
    pub group0_public: &'a PublicKey,
    /// The pseudonym key.
    pub pseudonym_key: &'a [u8; 16],
    /// The stored values, ids ascending.
    pub values: &'a [StoredValue],
}

/// A real answer's inputs: the authorised reader and the card's record of its group.
pub struct RealAnswer<'a> {
    /// The reader, from the cache or the session slot.
    pub reader: &'a AuthorisedReader,
    /// The card's group for it.
    pub group: CardGroup<'a>,
}

/// Card side: the GENERAL AUTHENTICATE answer (`real`) or decoy (`None`),
/// computed with the same operations in the same order on both paths, of
/// exactly [`answer_len`] bytes (spec §7.5). Every operation goes through `ops`.
/// `reader_point` is E_R decoded once by the caller ([`AuthRequest::reader_point`]);
/// a real answer needs it (without it the card answers a decoy).
pub fn card_answer(
    ops: &mut OpCount,
    command_data: &[u8],
    request: &AuthRequest,
    reader_point: Option<PublicKey>,
    card: &CardData<'_>,
    real: Option<RealAnswer<'_>>,
    rng: &mut impl CryptoRngCore,
) -> Vec<u8> {
    let zero_domain = [0u8; DOMAIN_LEN];
    let real = match (real, reader_point) {
        (Some(a), Some(e_r)) => Some((a, e_r)),
        _ => None,
    };
    let decoy = real.is_none();
    let (r, group, e_r, domain) = match &real {
        Some((a, e_r)) => (&a.reader.public_key, &a.group, *e_r, &a.reader.domain),
        None => (
            card.group0_public,
            &card.group0,
            reader_point.unwrap_or(*card.group0_public),
            &zero_domain,
        ),
    };
    let ephemeral = ops.generate(rng);
    let e_c = crypto::encode_point(&ephemeral.public_key());
    let z_enc = ops.ecdh(&ephemeral, r);
    let z_mac = ops.ecdh(group.card_key, &e_r);
    drop(ephemeral);
    let k_enc = crypto::split_keys(&ops.kdf(
        z_enc.as_slice(),
        &[label::DISCLOSURE, &e_c, &request.reader_ephemeral],
    ))
    .0;
    let k_tag = crypto::split_keys(&ops.kdf(z_enc.as_slice(), &[label::TAG, &e_c])).0;
    let k_mac = crypto::split_keys(&ops.kdf(z_mac.as_slice(), &[label::CARD_AUTH, &e_c])).0;

    let p_len = plaintext_len(request.requested);
    let mut p = zeroize::Zeroizing::new(Vec::with_capacity(p_len));
    tlv::push(&mut p, TAG_TRANSCRIPT, &echo_of(&request.reader_ephemeral));
    p.extend_from_slice(group.record);
    p.resize(2 + ECHO_LEN + RECORD_LEN, 0);
    let mut birth = None;
    for id in request.requested.iter() {
        if id.kind() != AttributeKind::Stored {
            continue;
        }
        let salt = ops.cmac(group.seed, &[label::SALT, &[id.get()]]);
        let held = card.values.iter().find(|v| v.id == id);
        let pushed = record::push_disclosed(&mut p, id, held.map(|v| (&salt, v.value.as_slice())));
        if pushed.is_err() {
            // Unreachable for validated values; keep the length anyway.
            let _ = record::push_disclosed(&mut p, id, None);
        }
    }
    if let Some(b) = card.values.iter().find(|v| v.id == AttributeId::BIRTH_DATE) {
        birth = Date::from_bytes(&b.value).ok();
    }
    if request.requested.contains(AttributeId::PSEUDONYM) {
        let nym = ops.cmac(card.pseudonym_key, &[label::PSEUDONYM, domain]);
        tlv::push(&mut p, TAG_PSEUDONYM, &nym);
    }
    if requests_predicate(request.requested) {
        let predicates = evaluate_predicates(request.requested, birth, request.date);
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&predicates.answered.to_bytes());
        v[4..].copy_from_slice(&predicates.holds.to_bytes());
        tlv::push(&mut p, TAG_PREDICATES, &v);
    }
    let mac = ops.cmac(&k_mac, &[label::MAC, command_data, &e_c, &p]);
    tlv::push(&mut p, TAG_MAC, &mac);
    p.resize(p_len, 0);
    if decoy {
        p.fill(0);
    }
    let sealed = ops.seal(&k_enc, &k_tag, &[0; 16], &e_c, &p);
    let mut v = Vec::with_capacity(sealed.len() + 40);
    tlv::push(&mut v, TAG_CARD_EPHEMERAL, &e_c);
    tlv::push(&mut v, TAG_CIPHERTEXT, &sealed);
    tlv::encode(TAG_DYNAMIC, &v)
}

/// What a card disclosed, after the length, tag, echo, card authentication
/// (MAC) and entry checks. The record's station signature is NOT yet
/// verified: that needs the trust bundle (see the reader crate).
#[derive(Clone, Debug)]
pub struct Disclosure {
    /// The card's record for the reader's group (structure checked, signature not yet).
    pub record: GroupRecord,
    /// One entry per requested stored attribute, ids ascending; present ones
    /// match a signed slot.
    pub entries: Vec<DisclosedEntry>,
    /// Pseudonym for the reader's domain, if requested.
    pub pseudonym: Option<[u8; PSEUDONYM_LEN]>,
    /// Predicate answers, if any were requested.
    pub predicates: Option<Predicates>,
}

impl Disclosure {
    /// The present entries as stored values.
    pub fn present(&self) -> impl Iterator<Item = (AttributeId, &[u8])> {
        self.entries
            .iter()
            .filter_map(|e| e.present.as_ref().map(|(_, v)| (e.id, v.as_slice())))
    }
}

/// Reader side of one GENERAL AUTHENTICATE.
pub struct ReaderSession {
    ephemeral: SecretKey,
    request: AuthRequest,
    command_data: Vec<u8>,
}

/// Reads the next TLV of `p` at `*at`, requiring `tag` and `len` value bytes.
fn take<'a>(p: &'a [u8], at: &mut usize, tag: u32, len: usize) -> Result<tlv::Field<'a>> {
    let rest = p.get(*at..).ok_or(Error::MalformedTlv)?;
    let (field, _) = tlv::read_one(rest)?;
    tlv::expect_tag(&field, tag)?;
    if field.value.len() != len {
        return Err(Error::BadLength(tag));
    }
    *at += field.raw.len();
    Ok(field)
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
            reader_ephemeral: crypto::encode_point(&ephemeral.public_key()),
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

    /// The GENERAL AUTHENTICATE command (`00 86 00 00 39 7C… 00`).
    pub fn command(&self) -> Command {
        Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
            .with_data(self.command_data.clone())
            .with_le(256)
    }

    /// Opens the card's answer with the reader's static key and the group of
    /// its certificate (spec §8 step 3a–3d). The first failing check decides:
    /// wrong length → [`Error::BadLength`] (tampered); invalid tag →
    /// [`Error::Decoy`] (a refusal or a modified answer); echo mismatch →
    /// [`Error::TranscriptMismatch`] (replay); record of another group or
    /// malformed → tampered; MAC → [`Error::BadMac`] (clone); entries → tampered.
    pub fn open(&self, answer: &[u8], reader_key: &SecretKey, group: u8) -> Result<Disclosure> {
        if answer.len() != answer_len(self.request.requested) {
            return Err(Error::BadLength(TAG_DYNAMIC));
        }
        let outer = tlv::read_exact(answer, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let e_c_bytes = tlv::fixed::<POINT_LEN>(&s.required(TAG_CARD_EPHEMERAL)?)?;
        let sealed = s.required(TAG_CIPHERTEXT)?.value;
        s.finish()?;
        let Ok(e_c) = crypto::decode_point(&e_c_bytes) else {
            return Err(Error::Decoy);
        };
        let z_enc = crypto::ecdh(reader_key, &e_c);
        let k_tag = crypto::kdf_key(z_enc.as_slice(), &[label::TAG, &e_c_bytes]);
        if !crypto::tag_valid(&k_tag, &[0; 16], &e_c_bytes, sealed) {
            return Err(Error::Decoy);
        }
        let k_enc = crypto::kdf_key(
            z_enc.as_slice(),
            &[
                label::DISCLOSURE,
                &e_c_bytes,
                &self.request.reader_ephemeral,
            ],
        );
        let p =
            zeroize::Zeroizing::new(crypto::open(&k_enc, &k_tag, &[0; 16], &e_c_bytes, sealed)?);
        let mut at = 0;
        let echo =
            take(&p, &mut at, TAG_TRANSCRIPT, ECHO_LEN).map_err(|_| Error::TranscriptMismatch)?;
        if !crypto::mac_eq(echo.value, &echo_of(&self.request.reader_ephemeral)) {
            return Err(Error::TranscriptMismatch);
        }
        let record_bytes = p.get(at..at + RECORD_LEN).ok_or(Error::MalformedTlv)?;
        let record = GroupRecord::decode(record_bytes)?;
        if record.body().group != group {
            return Err(Error::BadValue(0x81));
        }
        at += RECORD_LEN;
        let mut entries = Vec::new();
        for id in self.request.requested.iter() {
            if let Some(size) = id.fixed_size() {
                let f = take(&p, &mut at, TAG_ATTRIBUTE, record::ENTRY_HEADER_LEN + size)?;
                let entry = DisclosedEntry::decode_value(f.value)?;
                if entry.id != id {
                    return Err(Error::Duplicate);
                }
                entries.push(entry);
            }
        }
        let pseudonym = if self.request.requested.contains(AttributeId::PSEUDONYM) {
            Some(tlv::fixed::<PSEUDONYM_LEN>(&take(
                &p,
                &mut at,
                TAG_PSEUDONYM,
                PSEUDONYM_LEN,
            )?)?)
        } else {
            None
        };
        let predicates = if requests_predicate(self.request.requested) {
            let v = tlv::fixed::<8>(&take(&p, &mut at, TAG_PREDICATES, 8)?)?;
            Some(Predicates {
                answered: AttributeSet::from_bytes(&v[..4])?,
                holds: AttributeSet::from_bytes(&v[4..])?,
            })
        } else {
            None
        };
        let covered = p.get(..at).ok_or(Error::MalformedTlv)?;
        let mac = tlv::fixed::<MAC_LEN>(&take(&p, &mut at, TAG_MAC, MAC_LEN)?)?;
        if at != p.len() {
            return Err(Error::MalformedTlv);
        }
        let z_mac = crypto::ecdh(&self.ephemeral, &record.body().card_key);
        let k_mac = crypto::kdf_key(z_mac.as_slice(), &[label::CARD_AUTH, &e_c_bytes]);
        let expected = crypto::cmac(
            &k_mac,
            &[label::MAC, &self.command_data, &e_c_bytes, covered],
        );
        if !crypto::mac_eq(&expected, &mac) {
            return Err(Error::BadMac);
        }
        // After authentication: the card must answer exactly what was asked.
        for entry in &entries {
            record.check_entry(entry)?;
        }
        if let Some(p) = &predicates {
            if !p.answered.is_subset_of(self.request.requested) || !p.holds.is_subset_of(p.answered)
            {
                return Err(Error::BadValue(TAG_PREDICATES));
            }
            if p.answered
                .iter()
                .any(|id| id.kind() != AttributeKind::Predicate)
            {
                return Err(Error::BadValue(TAG_PREDICATES));
            }
        }
        Ok(Disclosure {
            record,
            entries,
            pseudonym,
            predicates,
        })
    }
}
