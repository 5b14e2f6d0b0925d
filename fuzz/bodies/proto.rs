//! Fuzz bodies for the `citycard-proto` decoders, shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`) and the normal test suite
//! (`crates/citycard-proto/tests/no_panic.rs` includes this file with
//! `#[path]`). Uses only `citycard-proto`, `p256` (through proto) and `hex`.
//!
//! Every body: never panics on any input, and when a decoder accepts an input
//! its canonical re-encoding is exactly that input (SPEC §1: one encoding per
//! object).
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use citycard_proto::apdu::CommandView;
use citycard_proto::auth::{AuthRequest, ReaderSession};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::pers::{CardAuthAnswer, Prepare, StationAuth};
use citycard_proto::record::{DisclosedEntry, GroupRecord, RecordBody, StoredValue};
use citycard_proto::revocation::{
    RevocationList, RevocationListBody, TrustBundle, TrustBundleBody,
};
use citycard_proto::{attr::AttributeId, attr::AttributeSet, crypto, date::Date, tlv};
use p256::SecretKey;

/// The proto fuzz targets, by name (each is a file in `fuzz/fuzz_targets`).
pub const TARGETS: &[&str] = &[
    "tlv",
    "certificate",
    "record",
    "attribute_entry",
    "auth_request",
    "station_auth",
    "revocation_list",
    "trust_bundle",
    "apdu",
    "session_open",
    "piv_certificate",
    "piv_answers",
];

/// Runs the body of proto target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "tlv" => tlv_body(data),
        "certificate" => certificate(data),
        "record" => record(data),
        "attribute_entry" => attribute_entry(data),
        "auth_request" => auth_request(data),
        "station_auth" => station_auth(data),
        "revocation_list" => revocation_list(data),
        "trust_bundle" => trust_bundle(data),
        "apdu" => apdu(data),
        "session_open" => session_open(data),
        "piv_certificate" => piv_certificate(data),
        "piv_answers" => piv_answers(data),
        other => panic!("unknown proto target {other}"),
    }
}

/// TLV: every accepted field is in minimal (DER) form, so re-encoding its
/// tag and value gives its raw bytes back.
pub fn tlv_body(data: &[u8]) {
    if let Ok(fields) = tlv::read_all(data) {
        let mut total = 0;
        for f in &fields {
            assert_eq!(
                tlv::encode(f.tag, f.value),
                f.raw,
                "non-canonical TLV accepted"
            );
            total += f.raw.len();
            // One level down, as the object decoders do.
            let _ = tlv::read_all(f.value);
        }
        assert_eq!(total, data.len());
    }
    if let Ok(mut s) = tlv::Sequence::new(data) {
        let _ = s.optional(0x80);
        let _ = s.repeated(0x81);
        let _ = s.required(0x82);
        let _ = s.finish();
    }
    let _ = tlv::split_signed(data, 0x7F21, 0x7F4E);
    let _ = tlv::split_signed(data, 0xE1, 0xE2);
}

pub fn certificate(data: &[u8]) {
    if let Ok(c) = Certificate::decode(data) {
        assert_eq!(
            c.as_bytes(),
            data,
            "certificate: accepted bytes differ from encoding"
        );
        let _ = c.fingerprint();
        let body = c.body();
        assert!(
            body.effective <= body.expiry,
            "certificate: expiry before effective"
        );
        let _ = c.is_valid_on(body.effective);
        let _ = c.verify(&body.public_key);
    }
}

pub fn record(data: &[u8]) {
    if let Ok(r) = GroupRecord::decode(data) {
        assert_eq!(
            r.as_bytes(),
            data,
            "record: accepted bytes differ from encoding"
        );
        assert_eq!(data.len(), citycard_proto::limits::RECORD_LEN);
        let _ = r.revocation_id();
        let body = r.body();
        assert!(
            body.slots.windows(2).all(|w| w[0] < w[1]),
            "record: slots not strictly ascending"
        );
        assert_eq!(body.to_be_signed().ok().as_deref(), Some(r.signed_bytes()));
        let _ = r.verify(&body.card_key);
    }
}

/// Stored values (PUT DATA) and disclosed entries (answers) on the same bytes.
pub fn attribute_entry(data: &[u8]) {
    if let Ok(v) = StoredValue::decode_value(data) {
        assert_eq!(
            v.encode(),
            tlv::encode(citycard_proto::record::TAG_ATTRIBUTE, data),
            "stored value: re-encoding differs"
        );
        let _ = v.digest(&[0; 16]);
    }
    if let Ok(e) = DisclosedEntry::decode_value(data) {
        let mut again = Vec::new();
        citycard_proto::record::push_disclosed(
            &mut again,
            e.id,
            e.present.as_ref().map(|(s, v)| (s, v.as_slice())),
        )
        .unwrap();
        assert_eq!(
            again,
            tlv::encode(citycard_proto::record::TAG_ATTRIBUTE, data),
            "disclosed entry: re-encoding differs"
        );
        let _ = e.digest();
    }
}

pub fn auth_request(data: &[u8]) {
    if let Ok(r) = AuthRequest::decode(data) {
        assert_eq!(r.encode(), data, "auth request: re-encoding differs");
    }
}

/// EXTERNAL AUTHENTICATE data, its answer and PREPARE data on the same bytes.
pub fn station_auth(data: &[u8]) {
    if let Ok(a) = StationAuth::decode(data) {
        assert_eq!(a.encode(), data, "station auth: re-encoding differs");
    }
    if let Ok(a) = CardAuthAnswer::decode(data) {
        assert_eq!(a.encode(), data, "card auth answer: re-encoding differs");
    }
    if let Ok(p) = Prepare::decode(data) {
        assert_eq!(
            p.encode().ok().as_deref(),
            Some(data),
            "prepare: re-encoding differs"
        );
    }
}

pub fn revocation_list(data: &[u8]) {
    if let Ok(l) = RevocationList::decode(data) {
        assert_eq!(l.as_bytes(), data, "revocation list: accepted bytes differ");
        let body = l.body();
        assert!(body.next_update >= body.issued_at);
        assert!(body.revoked.windows(2).all(|w| w[0] < w[1]));
        for id in body.revoked.iter().take(4) {
            assert!(l.is_revoked(id));
        }
        let _ = l.is_revoked(&[0u8; 8]);
    }
}

pub fn trust_bundle(data: &[u8]) {
    if let Ok(b) = TrustBundle::decode(data) {
        assert_eq!(b.as_bytes(), data, "trust bundle: accepted bytes differ");
        let _ = b.verify();
        for s in b.body().stations.iter().take(2) {
            let _ = b.station(&s.fingerprint());
        }
    }
}

pub fn apdu(data: &[u8]) {
    if let Ok(c) = CommandView::parse(data) {
        assert!(c.data.len() <= citycard_proto::apdu::MAX_SHORT_DATA);
        assert!(c.le.is_none_or(|le| (1..=256).contains(&le)));
        assert!(data.len() >= 4);
    }
}

/// `ReaderSession::open` on a response chosen by the fuzzer: it must never
/// open (forging needs the reader's key agreement and the card's MAC).
pub fn session_open(data: &[u8]) {
    let session = ReaderSession::with_ephemeral(
        key("fuzz reader ephemeral"),
        [0x11; 8],
        AttributeSet::from_bytes(&[0, 0, 1, 0x1F]).unwrap_or(AttributeSet::EMPTY),
        Date::new(2026, 11, 26).unwrap(),
    );
    let opened = session.open(data, &key("fuzz reader static"), 0);
    assert!(opened.is_err(), "session opened a response no card made");
}

/// A tiny deterministic generator (xorshift64*) for mutations in the normal
/// test suite, so that this file needs no random crate.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// [`Xorshift`] as a `rand_core` generator (decoy slots of seed records).
pub struct XorshiftRng<'a>(pub &'a mut Xorshift);

impl p256::elliptic_curve::rand_core::RngCore for XorshiftRng<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.0.next() as u8;
        }
    }
    fn try_fill_bytes(
        &mut self,
        dest: &mut [u8],
    ) -> Result<(), p256::elliptic_curve::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl p256::elliptic_curve::rand_core::CryptoRng for XorshiftRng<'_> {}

/// One random mutation of `input` (bit flip, insert, delete, truncate,
/// interesting length bytes, splice from `other`, append noise): the
/// libFuzzer mutations that matter for TLV and APDUs.
pub fn mutate(rng: &mut Xorshift, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len());
        match rng.below(7) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 => v.insert(at.min(v.len()), rng.next() as u8),
            2 if !v.is_empty() => {
                v.remove(at);
            }
            3 => v.truncate(at),
            4 if !v.is_empty() => v[at] = [0x00, 0x7F, 0x80, 0x81, 0x82, 0xFF][rng.below(6)],
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = rng.below(64).min(other.len() - from);
                let tail = v.split_off(at.min(v.len()));
                v.extend_from_slice(&other[from..from + n]);
                v.extend_from_slice(&tail);
            }
            _ => {
                for _ in 0..rng.below(8) {
                    v.push(rng.next() as u8);
                }
            }
        }
    }
    v
}

/// Runs `body` over `seeds` and `n` mutations of them (the normal suite's
/// stand-in for a fuzzer run).
pub fn run_mutations(seeds: &[&[u8]], n: usize, rng_seed: u64, mut body: impl FnMut(&[u8])) {
    for s in seeds {
        body(s);
    }
    if seeds.is_empty() {
        return;
    }
    let mut rng = Xorshift(rng_seed | 1);
    for i in 0..n {
        let base = seeds[i % seeds.len()];
        let other = seeds[(i * 7 + 3) % seeds.len()];
        body(&mutate(&mut rng, base, other));
    }
    for len in 0..48 {
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        body(&noise);
    }
}

/// A fixed test key derived from a label.
pub fn key(label: &str) -> SecretKey {
    let mut counter = 0u8;
    loop {
        let h = crypto::sha256(&[b"citycard fuzz key ", label.as_bytes(), &[counter]]);
        if let Ok(k) = SecretKey::from_slice(&h) {
            return k;
        }
        counter += 1;
    }
}

/// Every committed test vector file, as text.
pub const VECTORS: &[&str] = &[
    include_str!("../../applet-spec/vectors/error-activate-wrong-key.json"),
    include_str!("../../applet-spec/vectors/error-malformed.json"),
    include_str!("../../applet-spec/vectors/error-not-selected.json"),
    include_str!("../../applet-spec/vectors/error-station.json"),
    include_str!("../../applet-spec/vectors/error-verify-uniform.json"),
    include_str!("../../applet-spec/vectors/personalise.json"),
    include_str!("../../applet-spec/vectors/prepare.json"),
    include_str!("../../applet-spec/vectors/select.json"),
    include_str!("../../applet-spec/vectors/terminate.json"),
    include_str!("../../applet-spec/vectors/verify-cache-first.json"),
    include_str!("../../applet-spec/vectors/verify-full.json"),
    include_str!("../../applet-spec/vectors/verify-library.json"),
    include_str!("../../applet-spec/vectors/verify-transit.json"),
];

/// The PIV profile's vectors (`applet-spec/vectors/piv/`).
pub const PIV_VECTORS: &[&str] = &[
    include_str!("../../applet-spec/vectors/piv/certificate.json"),
    include_str!("../../applet-spec/vectors/piv/tap.json"),
];

/// PIV certificate container and Card Authentication certificate
/// (piv-profile.md §2–3): never panics; an accepted certificate is
/// canonical (its body re-encodes to exactly the signed bytes, the whole to
/// exactly the input) and its serial is its key's revocation id.
pub fn piv_certificate(data: &[u8]) {
    use citycard_proto::piv::{self, CardAuthenticationCertificate};
    let der = piv::parse_certificate_container(data).unwrap_or(data);
    if let Ok(c) = CardAuthenticationCertificate::decode(der) {
        assert_eq!(c.as_bytes(), der, "piv certificate: accepted bytes differ");
        assert_eq!(
            c.body().to_be_signed().ok().as_deref(),
            Some(c.signed_bytes()),
            "piv certificate: body does not re-encode to the signed bytes"
        );
        assert!(c.body().valid_from <= c.body().valid_to);
        let _ = c.verify(&c.body().card_key);
    }
}

/// Every PIV answer parser on the same bytes (APT, GET DATA, generated key,
/// signature, management-key steps): never panics.
pub fn piv_answers(data: &[u8]) {
    use citycard_proto::piv::{self, ManagementAlgorithm};
    let _ = piv::parse_application_property_template(data);
    if let Ok(content) = piv::parse_data_object(data) {
        let _ = piv::parse_certificate_container(content);
    }
    let _ = piv::parse_generated_public_key(data);
    if let Ok(sig) = piv::parse_signature(data) {
        let key = SecretKey::from_slice(&[7; 32]).unwrap().public_key();
        let _ = piv::verify_challenge(&key, &[0; 32], &sig);
    }
    for alg in [ManagementAlgorithm::TripleDes, ManagementAlgorithm::Aes128] {
        let _ = piv::parse_management_witness(data, alg);
        let _ = piv::parse_management_response(data, alg);
    }
}

/// The string value of the first `"key": "…"` at or after `from`.
fn json_string_after<'a>(text: &'a str, key: &str, from: usize) -> Option<(usize, &'a str)> {
    let pat = format!("\"{key}\": \"");
    let start = text.get(from..)?.find(&pat)? + from + pat.len();
    let len = text.get(start..)?.find('"')?;
    Some((start + len, text.get(start..start + len)?))
}

/// A vector file's card seed (None when null).
pub fn vector_seed(text: &str) -> Option<[u8; 32]> {
    let (_, s) = json_string_after(text, "card_seed", 0)?;
    hex::decode(s).ok()?.try_into().ok()
}

/// A vector file's steps as (command, response) bytes, without a JSON parser
/// (this file must build with `citycard-proto`'s dev-dependencies only).
pub fn vector_steps(text: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some((end, cmd)) = json_string_after(text, "command", pos) {
        let next_cmd = text
            .get(end..)
            .and_then(|t| t.find("\"command\""))
            .map_or(text.len(), |i| i + end);
        let resp = json_string_after(text, "response", end)
            .filter(|(e, _)| *e < next_cmd)
            .map(|(_, r)| hex::decode(r).unwrap_or_default())
            .unwrap_or_default();
        out.push((hex::decode(cmd).unwrap_or_default(), resp));
        pos = end;
    }
    out
}

/// A vector file's notes, one per step (empty when absent).
pub fn vector_notes(text: &str) -> Vec<String> {
    let steps = vector_steps(text).len();
    let mut notes = Vec::new();
    let mut pos = 0;
    for _ in 0..steps {
        let Some((end, _)) = json_string_after(text, "command", pos) else {
            break;
        };
        let next_cmd = text
            .get(end..)
            .and_then(|t| t.find("\"command\""))
            .map_or(text.len(), |i| i + end);
        let note = json_string_after(text, "note", end)
            .filter(|(e, _)| *e < next_cmd)
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        notes.push(note);
        pos = end;
    }
    notes
}

/// Seed inputs for every proto target: objects cut out of the vectors'
/// APDUs, plus records, entries, lists and bundles built with fixed keys.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut station_cert = None;
    for text in VECTORS {
        let steps = vector_steps(text);
        let mut i = 0;
        while i < steps.len() {
            let (cmd, resp) = &steps[i];
            out.push(("apdu", cmd.clone()));
            if let Ok(view) = CommandView::parse(cmd) {
                if !view.data.is_empty() {
                    out.push(("tlv", view.data.to_vec()));
                }
                match view.ins {
                    0x2A => {
                        if let Ok(c) = Certificate::decode(view.data) {
                            out.push(("certificate", view.data.to_vec()));
                            if c.body().domain.is_none() {
                                station_cert = Some(c);
                            }
                        }
                    }
                    0x86 => out.push(("auth_request", view.data.to_vec())),
                    0x82 => out.push(("station_auth", view.data.to_vec())),
                    _ => {}
                }
                // A GENERAL AUTHENTICATE answer, fetched with GET RESPONSE.
                if view.ins == 0x86 && resp.len() > 2 {
                    let mut answer = resp[..resp.len() - 2].to_vec();
                    let mut j = i + 1;
                    while j < steps.len() && steps[j].0.get(1) == Some(&0xC0) {
                        let r = &steps[j].1;
                        answer.extend_from_slice(&r[..r.len().saturating_sub(2)]);
                        j += 1;
                    }
                    out.push(("session_open", answer.clone()));
                    out.push(("tlv", answer));
                }
            }
            if resp.len() > 2 {
                out.push(("tlv", resp[..resp.len() - 2].to_vec()));
            }
            i += 1;
        }
    }

    // Records and attribute entries, signed with fixed keys.
    let station = key("fuzz station");
    let root = key("fuzz root");
    let values: Vec<(AttributeId, Vec<u8>)> = vec![
        (AttributeId::CARD_NUMBER, b"LG-2026-000042".to_vec()),
        (AttributeId::NAME, b"Sam Example".to_vec()),
        (AttributeId::BIRTH_DATE, vec![0x07, 0xA2, 3, 14]),
        (AttributeId::ADDRESS, b"Rue Example 1, 4000 Liege".to_vec()),
        (AttributeId::LANGUAGE, b"fr".to_vec()),
        (AttributeId::GENDER, b"x".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
        (AttributeId::new(24).unwrap(), vec![0xAB; 32]),
    ];
    let seed = [0x5Eu8; 16];
    let mut digests = Vec::new();
    for (id, v) in values {
        let value = StoredValue::new(id, v.clone()).unwrap();
        let raw = value.encode();
        out.push((
            "attribute_entry",
            tlv::read_exact(&raw, 0xC1).unwrap().value.to_vec(),
        ));
        let salt = citycard_proto::record::salt(&seed, id);
        let mut disclosed = Vec::new();
        citycard_proto::record::push_disclosed(&mut disclosed, id, Some((&salt, &v))).unwrap();
        out.push((
            "attribute_entry",
            tlv::read_exact(&disclosed, 0xC1).unwrap().value.to_vec(),
        ));
        digests.push(value.digest(&seed));
    }
    let mut decoys = Xorshift(0xDEC0);
    let mut rng = XorshiftRng(&mut decoys);
    for n in [0usize, 1, digests.len()] {
        let body = RecordBody::new(
            1,
            &[0x22; 8],
            Date::new(2026, 11, 1).unwrap(),
            Date::new(2031, 10, 31).unwrap(),
            key("fuzz card").public_key(),
            &digests[..n],
            &mut rng,
        )
        .unwrap();
        let record = body.sign(&station).unwrap();
        out.push(("record", record.as_bytes().to_vec()));
        out.push(("tlv", record.as_bytes().to_vec()));
    }
    // Certificates of every role, signed with fixed keys.
    for (role, domain, group, grants) in [
        (Role::Station, None, None, AttributeSet::EMPTY),
        (
            Role::Reader,
            Some([3u8; 16]),
            Some(2u8),
            AttributeSet::EMPTY.with(AttributeId::NAME),
        ),
        (Role::Preparer, None, None, AttributeSet::EMPTY),
        (Role::PreparedCard, None, None, AttributeSet::EMPTY),
    ] {
        let cert = CertificateBody {
            issuer: "LIEGE".into(),
            holder: "fuzz".into(),
            role,
            grants,
            domain,
            group,
            effective: Date::new(2026, 1, 1).unwrap(),
            expiry: Date::new(2027, 12, 31).unwrap(),
            public_key: station.public_key(),
        }
        .sign(&root)
        .unwrap();
        out.push(("certificate", cert.as_bytes().to_vec()));
        if role == Role::Station && station_cert.is_none() {
            station_cert = Some(cert);
        }
    }
    let prepare = Prepare {
        issuer: "LIEGE".into(),
        root: root.public_key(),
        date: Date::new(2026, 11, 2).unwrap(),
    };
    out.push(("station_auth", prepare.encode().unwrap()));

    // Revocation lists and trust bundles.
    for revoked in [vec![], vec![[1u8; 8], [2u8; 8], [0xFE; 8]]] {
        let body = RevocationListBody {
            issuer: "LIEGE".into(),
            group: 0,
            sequence: 7,
            issued_at: 1_790_000_000,
            next_update: 1_790_086_400,
            revoked,
        };
        let tbs = body.to_be_signed().unwrap();
        let list = RevocationList::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        out.push(("revocation_list", list.as_bytes().to_vec()));
        let bundle = TrustBundleBody {
            issuer: "LIEGE".into(),
            group: 0,
            root: root.public_key(),
            issued_at: 1_790_000_000,
            stations: station_cert.iter().cloned().collect(),
            revocations: list,
        };
        let tbs = bundle.to_be_signed().unwrap();
        let bundle = TrustBundle::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        out.push(("trust_bundle", bundle.as_bytes().to_vec()));
    }
    for text in PIV_VECTORS {
        for key in ["certificate", "container_5FC101"] {
            if let Some((_, h)) = json_string_after(text, key, 0) {
                out.push(("piv_certificate", hex::decode(h).unwrap_or_default()));
            }
        }
        for (_, resp) in vector_steps(text) {
            let data = resp.get(..resp.len().saturating_sub(2)).unwrap_or(&[]);
            out.push(("piv_answers", data.to_vec()));
        }
    }
    out.push(("piv_answers", hex::decode("7F4943864104").unwrap()));
    out.push((
        "piv_answers",
        hex::decode("7C0A80080102030405060708").unwrap(),
    ));
    out
}
