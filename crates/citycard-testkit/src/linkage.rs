//! What two partners could join (SPEC §10.8): everything a partner receives
//! from a card over its taps — every response in clear and every plaintext it
//! decrypts, whole — and the comparison the unlinkability tests make between
//! the collections of two partners.
//!
//! Two partners *share* a value when it occurs in both collections: a whole
//! field value, or any 8 consecutive bytes. The comparison leaves out only
//! what the specification lets them share:
//!
//! - **fixed headers**: the tag and length bytes of every TLV (at every
//!   level of the answer, the plaintext and the record), the status words,
//!   and the SELECT answer (the FCI, the same for every issued card — the
//!   tests check it against a second card);
//! - the month-granular **validity dates** of the record (`83`, `84`);
//! - the **disclosed attribute values** themselves: in a present entry the
//!   length byte, the value and its zero padding; an absent entry's zero
//!   salt and value; the predicate answers.
//!
//! Everything else — the record's station reference, card key, digest slots
//! and signature, salts, the revocation id, pseudonym, the card's ephemeral
//! key, the ciphertext, echo and MAC, and any byte a decoder would ignore —
//! is compared: an 8-byte run of it in both collections is a shared value.

use std::collections::{BTreeMap, BTreeSet};

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::Disclosure;
use citycard_proto::consts::{ins, label};
use citycard_proto::record::TAG_ATTRIBUTE;
use citycard_proto::{crypto, date::Date, error::Error, tlv};
use p256::SecretKey;

use crate::keys::{TestCity, TestReader};
use crate::script::{self, Issued, Personalisation, RawLink, Script, ScriptError};

/// Length of the substrings compared.
pub const WINDOW: usize = 8;

const TAG_DYNAMIC: u32 = 0x7C;
const TAG_CARD_EPHEMERAL: u32 = 0x86;
const TAG_CIPHERTEXT: u32 = 0x87;
const TAG_ECHO: u32 = 0x90;
const TAG_RECORD: u32 = 0xE1;
const TAG_RECORD_BODY: u32 = 0xE2;
const TAG_FROM: u32 = 0x83;
const TAG_TO: u32 = 0x84;
const TAG_PSEUDONYM: u32 = 0x92;
const TAG_PREDICATES: u32 = 0x93;
const TAG_MAC: u32 = 0x9E;

/// A named field value (`card key`, `salt 3`…).
pub type Field = (String, Vec<u8>);

/// What [`walk`] calls for each primitive TLV: its tag, the enclosing tag,
/// the range of its value, and the mask to update.
type OnValue<'a> = dyn FnMut(u32, u32, std::ops::Range<usize>, &mut [bool]) + 'a;

/// Bytes a partner received, with the bytes the comparison leaves out.
#[derive(Clone, Debug, Default)]
pub struct Masked {
    /// The bytes, whole.
    pub bytes: Vec<u8>,
    /// `true` for a byte that is a fixed header, a validity date or a
    /// disclosed value.
    pub masked: Vec<bool>,
}

impl Masked {
    /// The 8-byte substrings without a masked byte.
    fn windows(&self) -> impl Iterator<Item = [u8; WINDOW]> + '_ {
        self.bytes
            .windows(WINDOW)
            .zip(self.masked.windows(WINDOW))
            .filter(|(_, m)| !m.iter().any(|x| *x))
            .map(|(w, _)| to_window(w))
    }

    /// Bytes the comparison leaves out.
    pub fn masked_count(&self) -> usize {
        self.masked.iter().filter(|m| **m).count()
    }
}

/// Everything one partner received from one card over its taps.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// Every SELECT answer (FCI), status word excluded.
    pub fci: Vec<Vec<u8>>,
    /// Every GENERAL AUTHENTICATE answer as it travelled in clear (GET
    /// RESPONSE remainders joined, status words excluded).
    pub answers: Vec<Masked>,
    /// The data of every other response (PSO), status word excluded.
    pub other: Vec<Vec<u8>>,
    /// Every plaintext it decrypted, whole.
    pub plaintexts: Vec<Masked>,
    /// Every field value it decoded, by name (`record`, `card key`, `salt 3`…).
    pub fields: Vec<Field>,
    /// The decoded disclosures, one per tap.
    pub disclosures: Vec<Disclosure>,
}

/// Decrypts a GENERAL AUTHENTICATE answer (`7C { 86 E_C, 87 C }`) with the
/// reader's static key and the E_R of its request: the whole plaintext,
/// without any of the reader's checks.
pub fn open_plaintext(
    answer: &[u8],
    reader_key: &SecretKey,
    reader_ephemeral: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let outer = tlv::read_exact(answer, TAG_DYNAMIC)?;
    let fields = tlv::read_all(outer.value)?;
    let find = |tag| {
        fields
            .iter()
            .find(|f| f.tag == tag)
            .map(|f| f.value)
            .ok_or(Error::MalformedTlv)
    };
    let e_c_bytes = find(TAG_CARD_EPHEMERAL)?;
    let sealed = find(TAG_CIPHERTEXT)?;
    let e_c = crypto::decode_point(e_c_bytes)?;
    let z = crypto::ecdh(reader_key, &e_c);
    let k_tag = crypto::kdf_key(z.as_slice(), &[label::TAG, e_c_bytes]);
    let k_enc = crypto::kdf_key(
        z.as_slice(),
        &[label::DISCLOSURE, e_c_bytes, reader_ephemeral],
    );
    let p = crypto::open(&k_enc, &k_tag, &[0; 16], e_c_bytes, sealed)?;
    Ok((e_c_bytes.to_vec(), p))
}

/// Masks the tag and length bytes of every TLV in `bytes[range]` (recursing
/// into constructed ones), and calls `value` for each primitive TLV with its
/// tag, its enclosing tag and the range of its value.
fn walk(
    bytes: &[u8],
    start: usize,
    end: usize,
    parent: u32,
    masked: &mut [bool],
    value: &mut OnValue<'_>,
) -> Result<(), Error> {
    let mut at = start;
    while at < end {
        let (f, _) = tlv::read_one(bytes.get(at..end).ok_or(Error::MalformedTlv)?)?;
        let value_at = at + f.raw.len() - f.value.len();
        let next = at + f.raw.len();
        masked[at..value_at].iter_mut().for_each(|m| *m = true);
        let constructed = f.raw.first().is_some_and(|t| t & 0x20 != 0);
        if constructed {
            walk(bytes, value_at, next, f.tag, masked, value)?;
        } else {
            value(f.tag, parent, value_at..next, masked);
        }
        at = next;
    }
    Ok(())
}

/// Masks a decrypted plaintext (SPEC §7.5: `90 echo ‖ E1 record ‖ C1
/// entries ‖ [92 pseudonym] ‖ [93 predicates] ‖ 9E MAC`) and names its
/// fields.
fn dissect(p: &[u8]) -> Result<(Masked, Vec<Field>), Error> {
    let mut masked = vec![false; p.len()];
    let mut fields = Vec::new();
    walk(
        p,
        0,
        p.len(),
        0,
        &mut masked,
        &mut |tag, parent, r, masked| {
            let v = &p[r.clone()];
            let mut mask = |from: usize| masked[from..r.end].iter_mut().for_each(|m| *m = true);
            match (parent, tag) {
                (0, TAG_ECHO) => fields.push(("echo".to_string(), v.to_vec())),
                (TAG_RECORD_BODY, TAG_FROM | TAG_TO) => mask(r.start),
                (0, TAG_ATTRIBUTE) => {
                    // id ‖ salt(16) ‖ n ‖ value ‖ zero padding.
                    let id = v.first().copied().unwrap_or(0);
                    if v.get(17).copied().unwrap_or(0) == 0 {
                        // Absent: zero salt, zero value — the absence is disclosed.
                        mask(r.start + 1);
                    } else {
                        fields.push((format!("salt {id}"), v[1..17.min(v.len())].to_vec()));
                        mask(r.start + 17);
                    }
                }
                (0, TAG_PSEUDONYM) => fields.push(("pseudonym".to_string(), v.to_vec())),
                (0, TAG_PREDICATES) => mask(r.start),
                (0, TAG_MAC) => fields.push(("mac".to_string(), v.to_vec())),
                _ => {}
            }
        },
    )?;
    let (record, _) = tlv::read_one(p.get(18..).ok_or(Error::MalformedTlv)?)?;
    tlv::expect_tag(&record, TAG_RECORD)?;
    fields.push(("record".to_string(), record.raw.to_vec()));
    Ok((
        Masked {
            bytes: p.to_vec(),
            masked,
        },
        fields,
    ))
}

/// Masks the TLV headers of a GENERAL AUTHENTICATE answer in clear.
fn mask_answer(answer: &[u8]) -> Result<Masked, Error> {
    let mut masked = vec![false; answer.len()];
    walk(
        answer,
        0,
        answer.len(),
        0,
        &mut masked,
        &mut |_, _, _, _| {},
    )?;
    Ok(Masked {
        bytes: answer.to_vec(),
        masked,
    })
}

/// The decoded fields of a disclosure's record.
fn record_fields(d: &Disclosure) -> Vec<Field> {
    let body = d.record.body();
    let mut out = vec![
        ("station reference".to_string(), body.station_ref.to_vec()),
        (
            "card key".to_string(),
            crypto::encode_point(&body.card_key).to_vec(),
        ),
        ("signature".to_string(), d.record.signature().to_vec()),
        (
            "revocation id".to_string(),
            d.record.revocation_id().to_vec(),
        ),
    ];
    out.extend(
        body.slots
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("digest slot {i}"), s.to_vec())),
    );
    out
}

/// The data of the GENERAL AUTHENTICATE answer in recorded `steps`: the
/// GA response and the GET RESPONSE remainders that follow it.
fn ga_answer(responses: &[(Vec<u8>, Vec<u8>)]) -> Option<Vec<u8>> {
    let start = responses
        .iter()
        .rposition(|(c, _)| c.get(1) == Some(&ins::GENERAL_AUTHENTICATE))?;
    let mut answer = Vec::new();
    for (i, (c, r)) in responses.iter().enumerate().skip(start) {
        if i > start && c.get(1) != Some(&ins::GET_RESPONSE) {
            break;
        }
        answer.extend_from_slice(r.get(..r.len().checked_sub(2)?)?);
    }
    Some(answer)
}

/// One tap by `reader` (SELECT, PSO when `send_certificate`, GENERAL
/// AUTHENTICATE for everything its certificate grants, GET RESPONSE) on
/// `link`; adds what it received to `into`.
pub fn tap(
    link: &mut RawLink<'_>,
    reader: &TestReader,
    date: Date,
    ephemeral: SecretKey,
    send_certificate: bool,
    into: &mut Received,
) -> Result<(), ScriptError> {
    let e_r = crypto::encode_point(&ephemeral.public_key());
    let requested: AttributeSet = reader.certificate.body().grants;
    let mut s = Script::new(link);
    let disclosure = script::verify(&mut s, reader, requested, date, ephemeral, send_certificate)?;
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = s
        .steps
        .iter()
        .map(|st| {
            (
                hex::decode(&st.command).unwrap_or_default(),
                hex::decode(st.response.as_deref().unwrap_or_default()).unwrap_or_default(),
            )
        })
        .collect();
    let answer = ga_answer(&exchanges).ok_or_else(|| ScriptError::Link("no GA answer".into()))?;
    for (c, r) in &exchanges {
        let data = r[..r.len().saturating_sub(2)].to_vec();
        match c.get(1).copied() {
            Some(ins::SELECT) => into.fci.push(data),
            Some(ins::GENERAL_AUTHENTICATE | ins::GET_RESPONSE) => {}
            _ => into.other.push(data),
        }
    }
    let (e_c, p) = open_plaintext(&answer, &reader.key, &e_r)?;
    let (plaintext, mut fields) = dissect(&p)?;
    fields.push(("card ephemeral key".into(), e_c));
    fields.extend(record_fields(&disclosure));
    into.answers.push(mask_answer(&answer)?);
    into.plaintexts.push(plaintext);
    into.fields.extend(fields);
    into.disclosures.push(disclosure);
    Ok(())
}

/// The 8-byte substrings of everything in `r` outside fixed headers,
/// validity dates and disclosed values.
pub fn windows(r: &Received) -> BTreeSet<[u8; WINDOW]> {
    let mut out: BTreeSet<[u8; WINDOW]> = BTreeSet::new();
    for m in r.answers.iter().chain(&r.plaintexts) {
        out.extend(m.windows());
    }
    for data in &r.other {
        out.extend(data.windows(WINDOW).map(to_window));
    }
    // The record as a whole carries headers and dates: its parts are in
    // the plaintext windows and in the fields below.
    for (_, v) in r.fields.iter().filter(|(n, _)| n != "record") {
        out.extend(v.windows(WINDOW).map(to_window));
    }
    out
}

fn to_window(w: &[u8]) -> [u8; WINDOW] {
    let mut a = [0; WINDOW];
    a.copy_from_slice(w);
    a
}

/// What two partners' collections have in common.
#[derive(Clone, Debug, Default)]
pub struct Common {
    /// Field values both received: (name in the first, name in the second, value).
    pub fields: Vec<(String, String, Vec<u8>)>,
    /// 8-byte substrings both received, outside fixed headers, validity
    /// dates and disclosed values.
    pub windows: BTreeSet<[u8; WINDOW]>,
}

impl Common {
    /// Nothing in common.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.windows.is_empty()
    }
}

impl std::fmt::Display for Common {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} common field values, {} common 8-byte substrings",
            self.fields.len(),
            self.windows.len(),
        )?;
        for (a, b, v) in self.fields.iter().take(8) {
            write!(f, "\n  field {a} = {b}: {}", hex::encode_upper(v))?;
        }
        for w in self.windows.iter().take(8) {
            write!(f, "\n  substring {}", hex::encode_upper(w))?;
        }
        Ok(())
    }
}

/// What `a` and `b` (what two partners received from one card) have in
/// common: equal field values, and 8-byte substrings outside fixed headers,
/// validity dates and disclosed values.
pub fn common(a: &Received, b: &Received) -> Common {
    let in_b: BTreeMap<&[u8], &str> = b
        .fields
        .iter()
        .map(|(n, v)| (v.as_slice(), n.as_str()))
        .collect();
    let mut fields: Vec<(String, String, Vec<u8>)> = a
        .fields
        .iter()
        .filter_map(|(n, v)| {
            in_b.get(v.as_slice())
                .map(|m| (n.clone(), (*m).to_string(), v.clone()))
        })
        .collect();
    fields.sort();
    fields.dedup();
    Common {
        fields,
        windows: windows(a).intersection(&windows(b)).copied().collect(),
    }
}

/// The sample resident with other values (other lengths too), for the
/// second card whose repeated bytes are the fixed headers.
pub fn other_resident() -> Vec<(AttributeId, Vec<u8>)> {
    script::sample_resident()
        .into_iter()
        .map(|(id, v)| match id {
            AttributeId::CARD_NUMBER => (id, b"LG-2026-000917".to_vec()),
            AttributeId::NAME => (id, "Maryam Okonkwo-Ferreira".as_bytes().to_vec()),
            AttributeId::BIRTH_DATE => (
                id,
                Date::new(1991, 11, 2)
                    .map(|d| d.to_bytes().to_vec())
                    .unwrap_or(v),
            ),
            AttributeId::ADDRESS => (id, "Quai de la Batte 3, 4020 Liège".as_bytes().to_vec()),
            AttributeId::LANGUAGE => (id, b"nl".to_vec()),
            _ => (id, v),
        })
        .collect()
}

/// Prepares and personalises the blank card on `link` for `resident` with
/// `groups` linkability groups, by the fixed test city's station (seeds and
/// decoys from `seed`).
pub fn issue(
    link: &mut RawLink<'_>,
    city: &TestCity,
    resident: Vec<(AttributeId, Vec<u8>)>,
    groups: u8,
    seed: u8,
) -> Result<Issued, ScriptError> {
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([seed; 32]);
    let mut s = Script::new(link);
    script::personalise(
        &mut s,
        Personalisation {
            city,
            station_ephemeral: crate::keys::test_key(&format!("station ephemeral {seed}")),
            rng: &mut rng,
            resident,
            issue_date: crate::keys::date(crate::keys::ISSUE_DATE),
            valid_to: crate::keys::date(crate::keys::VALID_TO),
            groups,
            prepare: true,
        },
    )
}
