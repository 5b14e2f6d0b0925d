//! The skimmer, in process (SPEC §3.2, §6.4, §6.10, §10.6, §10.9): an
//! attacker who holds no partner private key but has captured every public
//! certificate (readers', stations') and can send any APDU. For pairs of
//! cards that differ in exactly one hidden property, the attacker's fixed
//! APDU script gives the same status words, the same response lengths, the
//! same on-card operations (key generations, ECDH, verifications, hashes,
//! MACs, CTR bytes, random bytes) and the same number of persistent writes.
//!
//! Long on purpose: one attacker test per hidden property, all over the same
//! pairs of cards and captured certificates.

#![cfg(test)]

use citycard_card::{Applet, MemoryStorage, OpCount, Storage};
use citycard_proto::apdu::Command;
use citycard_proto::attr::{AttributeId, AttributeSet, ALL};
use citycard_proto::auth::{answer_len, AuthRequest, ReaderSession};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{cla, ins};
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle, crypto, date::Date, error::Error};
use citycard_testkit::keys::{
    city, city_named, date, reader, reader_in_group, test_key, TestCity, TestReader, ISSUE_DATE,
    TODAY, VALID_TO,
};
use citycard_testkit::script::{
    self, personalise, pso_command, sample_resident, select_command, Personalisation, Script,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = Applet<MemoryStorage, ChaCha20Rng>;

/// What makes one card differ from another.
struct Setup<'a> {
    city: &'a TestCity,
    resident: Vec<(AttributeId, Vec<u8>)>,
    groups: u8,
    /// Readers that tapped the card (legitimately) before the skimmer.
    tapped_by: Vec<&'a TestReader>,
}

impl<'a> Setup<'a> {
    fn of(city: &'a TestCity) -> Self {
        Self {
            city,
            resident: sample_resident(),
            groups: 3,
            tapped_by: Vec::new(),
        }
    }
}

/// A card issued as `setup` says, then shown each reader's certificate
/// (SELECT, PSO: what caches it) in its own power-up, then powered off: the
/// skimmer meets it at its next power-up.
fn issue(setup: &Setup<'_>, seed: u8) -> Card {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([seed; 32]));
    {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        let mut rng = ChaCha20Rng::from_seed([seed ^ 0x55; 32]);
        personalise(
            &mut s,
            Personalisation {
                city: setup.city,
                station_ephemeral: test_key("station ephemeral"),
                rng: &mut rng,
                resident: setup.resident.clone(),
                issue_date: date(ISSUE_DATE),
                valid_to: date(VALID_TO),
                groups: setup.groups,
                prepare: true,
            },
        )
        .unwrap();
    }
    for r in &setup.tapped_by {
        card.reset();
        card.transmit(&bytes(&select_command())).unwrap();
        let answer = card.transmit(&bytes(&pso_command(&r.certificate))).unwrap();
        assert_eq!(sw(&answer), 0x9000);
    }
    card.reset();
    card
}

/// What the skimmer sees of one run of its script: per APDU the status word
/// and the response length, then the card's work and writes.
#[derive(Debug, PartialEq, Eq)]
struct Observation {
    exchanges: Vec<(u16, usize)>,
    ops: OpCount,
}

fn sw(r: &[u8]) -> u16 {
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

/// Runs the skimmer's APDUs (fetching `61xx` remainders, as any reader
/// would) on a card fresh from a power-up.
fn observe(card: &mut Card, apdus: &[Vec<u8>]) -> Observation {
    card.reset();
    card.reset_ops();
    let mut exchanges = Vec::new();
    for apdu in apdus {
        let mut r = card.transmit(apdu).unwrap();
        exchanges.push((sw(&r), r.len()));
        while sw(&r) >> 8 == 0x61 {
            let le = (sw(&r) & 0xFF) as u8;
            r = card.transmit(&[0x00, 0xC0, 0x00, 0x00, le]).unwrap();
            exchanges.push((sw(&r), r.len()));
        }
    }
    Observation {
        exchanges,
        ops: card.ops(),
    }
}

fn ga(fingerprint: [u8; 8], requested: AttributeSet, on: Date, label: &str) -> Vec<u8> {
    let e = test_key(label);
    let data = AuthRequest {
        certificate: fingerprint,
        reader_ephemeral: crypto::encode_point(&e.public_key()),
        requested,
        date: on,
    }
    .encode();
    Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
        .with_data(data)
        .with_le(256)
        .to_short_bytes()
        .unwrap()
}

fn bytes(c: &Command) -> Vec<u8> {
    c.to_short_bytes().unwrap()
}

fn full_request() -> AttributeSet {
    ALL.iter().copied().collect()
}

/// The skimmer's script: SELECT, GENERAL AUTHENTICATE with each captured
/// reader certificate's fingerprint (what a partner would ask, and more),
/// PSO of each captured certificate (planting a tag), then the GENERAL
/// AUTHENTICATEs again.
fn skimmer_script(captured: &[&TestReader], station: &Certificate, on: Date) -> Vec<Vec<u8>> {
    let mut apdus = vec![bytes(&select_command())];
    for (i, r) in captured.iter().enumerate() {
        let fp = r.certificate.fingerprint();
        apdus.push(ga(
            fp,
            r.certificate.body().grants,
            on,
            &format!("skim {i}"),
        ));
        apdus.push(ga(fp, full_request(), on, &format!("skim full {i}")));
    }
    for r in captured {
        apdus.push(bytes(&pso_command(&r.certificate)));
    }
    apdus.push(bytes(&pso_command(station)));
    for (i, r) in captured.iter().enumerate() {
        let fp = r.certificate.fingerprint();
        apdus.push(ga(
            fp,
            r.certificate.body().grants,
            on,
            &format!("again {i}"),
        ));
    }
    apdus
}

fn assert_indistinguishable(a: &mut Card, b: &mut Card, apdus: &[Vec<u8>], what: &str) {
    let oa = observe(a, apdus);
    let ob = observe(b, apdus);
    assert_eq!(oa, ob, "{what}: the skimmer tells the cards apart");
    // The script really exercised both paths: answers and PSOs happened,
    // and exactly one persistent write per power-up.
    assert!(oa.exchanges.iter().any(|(sw, _)| sw >> 8 == 0x61));
    assert_eq!(oa.ops.writes, 1, "{what}: one write per power-up");
}

#[test]
fn which_partners_the_card_met_is_invisible() {
    let city = city();
    let library = reader(&city, "library");
    let transit = reader(&city, "transit");
    let full = reader(&city, "full");
    let met = Setup {
        tapped_by: vec![&library, &transit],
        ..Setup::of(&city)
    };
    let mut a = issue(&met, 1);
    let mut b = issue(&Setup::of(&city), 2);
    assert_eq!(a.state().unwrap().cache.len(), 2);
    assert!(b.state().unwrap().cache.is_empty());
    let apdus = skimmer_script(
        &[&library, &transit, &full],
        &city.station_certificate,
        date(TODAY),
    );
    assert_indistinguishable(&mut a, &mut b, &apdus, "cache contents");
}

#[test]
fn a_planted_certificate_cannot_be_read_back() {
    let city = city();
    let library = reader(&city, "library");
    let mut planted = issue(&Setup::of(&city), 3);
    let mut clean = issue(&Setup::of(&city), 4);
    // The skimmer plants the captured library certificate on one card.
    planted.transmit(&bytes(&select_command())).unwrap();
    let r = planted
        .transmit(&bytes(&pso_command(&library.certificate)))
        .unwrap();
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(planted.state().unwrap().cache.len(), 1);
    // Later, the same or another skimmer cannot tell the tagged card.
    let apdus = vec![
        bytes(&select_command()),
        ga(
            library.certificate.fingerprint(),
            library.certificate.body().grants,
            date(TODAY),
            "probe",
        ),
    ];
    let oa = observe(&mut planted, &apdus);
    let ob = observe(&mut clean, &apdus);
    assert_eq!(oa, ob);
    assert_eq!(oa.ops.writes, 0, "GENERAL AUTHENTICATE never writes");
    // And what it receives does not open without the library's key: the
    // planted card's real answer and the clean card's decoy both fail the tag.
    let attacker = test_key("skimmer's own key");
    for card in [&mut planted, &mut clean] {
        card.reset();
        card.transmit(&bytes(&select_command())).unwrap();
        let session = ReaderSession::with_ephemeral(
            test_key("probe 2"),
            library.certificate.fingerprint(),
            library.certificate.body().grants,
            date(TODAY),
        );
        let answer = fetch(card, &bytes(&session.command()));
        assert_eq!(answer.len(), answer_len(library.certificate.body().grants));
        assert_eq!(
            session.open(&answer, &attacker, library.group).unwrap_err(),
            Error::Decoy
        );
    }
    // The legitimate reader can: the planted card answers, the clean one refuses.
    planted.reset();
    let mut link = |apdu: &[u8]| planted.transmit(apdu).map_err(|e| e.to_string());
    let mut s = Script::new(&mut link);
    let d = script::verify(
        &mut s,
        &library,
        library.certificate.body().grants,
        date(TODAY),
        test_key("legit later"),
        false,
    );
    assert!(d.is_ok());
}

fn fetch(card: &mut Card, apdu: &[u8]) -> Vec<u8> {
    let mut r = card.transmit(apdu).unwrap();
    let mut answer = r[..r.len() - 2].to_vec();
    while sw(&r) >> 8 == 0x61 {
        r = card
            .transmit(&[0x00, 0xC0, 0x00, 0x00, (sw(&r) & 0xFF) as u8])
            .unwrap();
        answer.extend_from_slice(&r[..r.len() - 2]);
    }
    assert_eq!(sw(&r), 0x9000);
    answer
}

#[test]
fn holding_an_optional_attribute_is_invisible() {
    let city = city();
    let full = reader(&city, "full");
    for (id, value) in [
        (AttributeId::GENDER, b"nonbinary".to_vec()),
        (
            AttributeId::CARE_OF_ADDRESS,
            "Asso Rue 3, Liège".as_bytes().to_vec(),
        ),
        (AttributeId::new(24).unwrap(), vec![0xA5; 7]),
    ] {
        let mut with = Setup {
            tapped_by: vec![&full],
            ..Setup::of(&city)
        };
        with.resident.push((id, value));
        let without = Setup {
            tapped_by: vec![&full],
            ..Setup::of(&city)
        };
        let mut a = issue(&with, 5);
        let mut b = issue(&without, 6);
        let apdus = skimmer_script(&[&full], &city.station_certificate, date(TODAY));
        assert_indistinguishable(&mut a, &mut b, &apdus, id.name());
    }
}

#[test]
fn value_lengths_are_invisible() {
    let city = city();
    let full = reader(&city, "full");
    let short = Setup {
        tapped_by: vec![&full],
        resident: vec![
            (AttributeId::NAME, b"Al".to_vec()),
            (AttributeId::ADDRESS, b"R 1".to_vec()),
            (AttributeId::LANGUAGE, b"fr".to_vec()),
        ],
        ..Setup::of(&city)
    };
    let long = Setup {
        tapped_by: vec![&full],
        resident: vec![
            (AttributeId::NAME, vec![b'n'; 64]),
            (AttributeId::ADDRESS, vec![b'a'; 96]),
            (AttributeId::LANGUAGE, b"wln".to_vec()),
        ],
        ..Setup::of(&city)
    };
    let mut a = issue(&short, 7);
    let mut b = issue(&long, 8);
    let apdus = skimmer_script(&[&full], &city.station_certificate, date(TODAY));
    assert_indistinguishable(&mut a, &mut b, &apdus, "value lengths");
}

#[test]
fn the_city_is_invisible() {
    // Same issuer id, another root: another city's card refuses every
    // certificate the skimmer captured from this city.
    let liege = city();
    let other = city_named("LIEGE", "other city root");
    let library = reader(&liege, "library");
    let full = reader(&liege, "full");
    let mut a = issue(
        &Setup {
            tapped_by: vec![&library],
            ..Setup::of(&liege)
        },
        9,
    );
    let mut b = issue(&Setup::of(&other), 10);
    let apdus = skimmer_script(&[&library, &full], &liege.station_certificate, date(TODAY));
    assert_indistinguishable(&mut a, &mut b, &apdus, "city");
}

#[test]
fn the_card_date_is_invisible() {
    let city = city();
    let library = reader(&city, "library");
    // A partner certificate effective later moved one card's date to 2026-11-25.
    let later = TestReader {
        name: "later",
        group: 0,
        key: test_key("reader later"),
        certificate: CertificateBody {
            issuer: "LIEGE".into(),
            holder: "later".into(),
            role: Role::Reader,
            grants: AttributeSet::EMPTY.with(AttributeId::RESIDENT),
            domain: Some([8; 16]),
            group: Some(0),
            effective: date((2026, 11, 25)),
            expiry: date((2027, 12, 31)),
            public_key: test_key("reader later").public_key(),
        }
        .sign(&city.root)
        .unwrap(),
    };
    let mut moved = issue(
        &Setup {
            tapped_by: vec![&library, &later],
            ..Setup::of(&city)
        },
        11,
    );
    assert_eq!(moved.state().unwrap().card_date, Some(date((2026, 11, 25))));
    let mut still = issue(
        &Setup {
            tapped_by: vec![&library],
            ..Setup::of(&city)
        },
        12,
    );
    assert_eq!(still.state().unwrap().card_date, Some(date((2026, 11, 2))));
    // On 2026-11-20 the first card refuses (date before its card date), the
    // second answers: the skimmer sees the same.
    let apdus = skimmer_script(&[&library], &city.station_certificate, date((2026, 11, 20)));
    assert_indistinguishable(&mut moved, &mut still, &apdus, "card date");
}

#[test]
fn the_issuing_station_is_invisible() {
    let city_a = city();
    let mut city_b = city();
    city_b.station = test_key("LIEGE station 2");
    city_b.station_certificate = CertificateBody {
        holder: "station-2".into(),
        public_key: city_b.station.public_key(),
        ..city_a.station_certificate.body().clone()
    }
    .sign(&city_a.root)
    .unwrap();
    let library = reader(&city_a, "library");
    let mut a = issue(
        &Setup {
            tapped_by: vec![&library],
            ..Setup::of(&city_a)
        },
        13,
    );
    let mut b = issue(
        &Setup {
            tapped_by: vec![&library],
            ..Setup::of(&city_b)
        },
        14,
    );
    let apdus = skimmer_script(&[&library], &city_a.station_certificate, date(TODAY));
    assert_indistinguishable(&mut a, &mut b, &apdus, "issuing station");
}

#[test]
fn a_reader_of_a_group_the_card_lacks_gets_a_decoy_like_any_refusal() {
    let city = city();
    let in_group_5 = reader_in_group(&city, "library", 5);
    let library = reader(&city, "library");
    // Both cards have the certificate cached; one has only 3 groups.
    let mut three = issue(
        &Setup {
            tapped_by: vec![&in_group_5],
            ..Setup::of(&city)
        },
        15,
    );
    let mut eight = issue(
        &Setup {
            groups: 8,
            tapped_by: vec![&in_group_5],
            ..Setup::of(&city)
        },
        16,
    );
    let apdus = skimmer_script(
        &[&in_group_5, &library],
        &city.station_certificate,
        date(TODAY),
    );
    assert_indistinguishable(&mut three, &mut eight, &apdus, "number of groups");
}

#[test]
fn a_sniffed_issuance_gives_nothing_reusable() {
    let city = city();
    // Record every APDU of one issuance.
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([20; 32]));
    let steps = {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        let mut rng = ChaCha20Rng::from_seed([21; 32]);
        personalise(
            &mut s,
            Personalisation {
                city: &city,
                station_ephemeral: test_key("station ephemeral"),
                rng: &mut rng,
                resident: sample_resident(),
                issue_date: date(ISSUE_DATE),
                valid_to: date(VALID_TO),
                groups: 2,
                prepare: true,
            },
        )
        .unwrap();
        s.steps
    };
    assert_eq!(card.life_cycle(), Some(LifeCycle::Issued));
    let raw: Vec<(Vec<u8>, Vec<u8>)> = steps
        .iter()
        .map(|s| {
            (
                hex::decode(&s.command).unwrap(),
                hex::decode(s.response.as_ref().unwrap()).unwrap(),
            )
        })
        .collect();
    // Nothing personal travels in clear, in either direction.
    for (id, value) in sample_resident() {
        if value.len() < 4 {
            continue;
        }
        for (c, r) in &raw {
            for bytes in [c, r] {
                assert!(
                    !bytes.windows(value.len()).any(|w| w == value.as_slice()),
                    "{id} in clear"
                );
            }
        }
    }
    // Replaying the sniffed commands to another prepared card issues nothing:
    // its challenge differs, so the station's signature and every secured
    // command fail.
    let mut other = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([22; 32]));
    {
        let mut link = |apdu: &[u8]| other.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        s.expect_ok("select", &select_command()).unwrap();
        script::prepare(&mut s, &city, date((2026, 11, 2))).unwrap();
    }
    let mut refused = 0;
    for (c, _) in raw.iter().skip_while(|(c, _)| c.get(1) != Some(&0x2A)) {
        let r = other.transmit(c).unwrap();
        if matches!(c.get(1), Some(&0x82) | Some(&0xDA) | Some(&0x44)) && c[0] & 0x10 == 0 {
            assert_eq!(sw(&r), 0x6982, "{}", hex::encode_upper(c));
            refused += 1;
        }
    }
    assert!(refused >= 3);
    assert_eq!(other.life_cycle(), Some(LifeCycle::Prepared));
    // Replayed to the issued card itself: it is locked. The replayed station
    // PSO is the power-up's first, so the card rewrites its unchanged state
    // (W3); nothing else is written and nothing changes.
    card.reset();
    let before = card.storage().clone().load().unwrap();
    for (c, _) in &raw {
        let _ = card.transmit(c);
    }
    assert_eq!(card.life_cycle(), Some(LifeCycle::Issued));
    assert_eq!(card.storage().commits(), 3);
    assert_eq!(card.storage().clone().load().unwrap(), before);
}

/// The work of one exchange with the byte counts that depend on the public
/// command taken out: hashing and verification over the certificate sent
/// are functions of the command bytes (which the sender knows); everything
/// else must be equal on every path.
#[derive(Debug, PartialEq, Eq)]
struct Work {
    ops: OpCount,
}

impl Work {
    /// `ops` with the certificate's own lengths (`cert_len` hashed for the
    /// fingerprint, `signed_len` verified) subtracted.
    fn of(mut ops: OpCount, cert_len: usize, signed_len: usize) -> Self {
        ops.sha256_bytes -= cert_len as u64;
        ops.verify_bytes -= signed_len as u64;
        Self { ops }
    }
}

/// The high-S twin `(r, n − s)` of a certificate's signature: the same
/// certificate body with the other, non-canonical, valid plain-ECDSA signature.
fn high_s_twin(cert: &Certificate) -> Certificate {
    use p256::ecdsa::Signature;
    let bytes = cert.as_bytes();
    let sig = Signature::from_slice(&bytes[bytes.len() - 64..]).unwrap();
    let twin = Signature::from_scalars(*sig.r(), -*sig.s()).unwrap();
    let mut twin_bytes = bytes.to_vec();
    let n = twin_bytes.len();
    twin_bytes[n - 64..].copy_from_slice(&twin.to_bytes());
    assert_ne!(twin_bytes, bytes);
    Certificate::decode(&twin_bytes).unwrap()
}

/// A reader certificate of `city` for the library, with `edit` applied to its body.
fn library_with(city: &TestCity, edit: impl FnOnce(&mut CertificateBody)) -> Certificate {
    let mut body = reader(city, "library").certificate.body().clone();
    edit(&mut body);
    body.sign(&city.root).unwrap()
}

/// The library reader's certificate with the body field `tag` (domain `53`
/// or group `54`) left out, signed by `city`'s root: well signed, but not a
/// well-formed reader certificate (SPEC §5.2).
fn library_without(city: &TestCity, tag: u32) -> Vec<u8> {
    use citycard_proto::{crypto, tlv};
    let library = reader(city, "library").certificate;
    let body = tlv::read_exact(library.signed_bytes(), 0x7F4E).unwrap();
    let mut value = Vec::new();
    for f in tlv::read_all(body.value).unwrap() {
        if f.tag != tag {
            value.extend_from_slice(f.raw);
        }
    }
    let body = tlv::encode(0x7F4E, &value);
    let signature = crypto::sign(&city.root, &body);
    let raw = tlv::join_signed(0x7F21, &body, &signature);
    assert!(Certificate::decode(&raw).is_err());
    raw
}

/// PSO on an issued card: the work of the first PSO of a power-up (one
/// write) and of a later one (none), for the certificate bytes `cert`.
fn pso_work(cert: &[u8], seed: u8) -> (Work, Work, Vec<u16>) {
    let city = city();
    let mut card = issue(&Setup::of(&city), seed);
    let pso = Command::new(cla::ISO, ins::PSO, 0x00, 0xBE)
        .with_data(cert.to_vec())
        .to_short_bytes()
        .unwrap();
    let mut sws = Vec::new();
    card.reset();
    card.transmit(&bytes(&select_command())).unwrap();
    card.reset_ops();
    sws.push(sw(&card.transmit(&pso).unwrap()));
    let first = card.ops();
    card.reset_ops();
    sws.push(sw(&card.transmit(&pso).unwrap()));
    let later = card.ops();
    let (len, signed) = match Certificate::decode(cert) {
        Ok(c) => (c.as_bytes().len(), c.signed_bytes().len()),
        Err(_) => (0, 0),
    };
    (
        Work::of(first, len, signed),
        Work::of(later, len, signed),
        sws,
    )
}

/// The certificates a skimmer can send in PSO, each labelled with its
/// refusal reason (or how it is accepted): the accepted library
/// certificate; another root; wrong issuer; expired; future-dated
/// (accepted, card date unmoved); preparer role; bad signature; high-S
/// twin; a station certificate (accepted as a station).
fn pso_paths(city: &TestCity, library: &Certificate) -> Vec<(&'static str, Vec<u8>)> {
    let mut bad_signature = library.as_bytes().to_vec();
    let n = bad_signature.len();
    bad_signature[n - 40] ^= 0x01;
    vec![
        ("accepted", library.as_bytes().to_vec()),
        (
            "another root",
            reader(&city_named("LIEGE", "other root"), "library")
                .certificate
                .as_bytes()
                .to_vec(),
        ),
        (
            "wrong issuer",
            library_with(city, |b| b.issuer = "NAMUR".into())
                .as_bytes()
                .to_vec(),
        ),
        (
            "expired",
            library_with(city, |b| b.expiry = date((2026, 10, 31)))
                .as_bytes()
                .to_vec(),
        ),
        (
            "not yet valid (future-dated: accepted, card date unmoved)",
            library_with(city, |b| b.effective = date((2027, 6, 1)))
                .as_bytes()
                .to_vec(),
        ),
        (
            "preparer role",
            city.preparer_certificate.as_bytes().to_vec(),
        ),
        ("bad signature", bad_signature),
        ("high-S twin", high_s_twin(library).as_bytes().to_vec()),
        (
            "station (accepted as a station)",
            city.station_certificate.as_bytes().to_vec(),
        ),
    ]
}

/// PSO: every path of `pso_paths` gives the status words and the work of
/// the accepted library certificate, for the first PSO of a power-up (one
/// write, one verification, one hash) and for a later one (no write); a
/// reader certificate without a domain or a group is `6A80` with no work.
fn pso_refusals_cost_the_work_of_an_acceptance(city: &TestCity) {
    let library = reader(city, "library").certificate;
    let (first, later, sws) = pso_work(library.as_bytes(), 30);
    assert_eq!(sws, [0x9000, 0x9000]);
    assert_eq!(first.ops.writes, 1);
    assert_eq!(later.ops.writes, 0);
    assert_eq!(first.ops.ecdsa_verify, 1);
    assert_eq!(first.ops.sha256, 1);
    for (i, (what, cert)) in pso_paths(city, &library).iter().enumerate() {
        let (f, l, s) = pso_work(cert, 31 + i as u8);
        assert_eq!(s, sws, "PSO {what}: status words");
        assert_eq!(f, first, "PSO {what}: first PSO of a power-up");
        assert_eq!(l, later, "PSO {what}: later PSO");
    }
    for (what, tag) in [("no domain", 0x53), ("no group", 0x54)] {
        let (f, l, s) = pso_work(&library_without(city, tag), 45);
        assert_eq!(s, [0x6A80, 0x6A80], "PSO {what}");
        assert_eq!(f.ops, OpCount::default(), "PSO {what}: no work");
        assert_eq!(l.ops, OpCount::default(), "PSO {what}: no work");
    }
}

/// The GENERAL AUTHENTICATE commands a skimmer can send to a card that
/// cached `library` and `full` (not `in_group_5`'s group), each as (label,
/// APDU, the accepted APDU with the same request to compare with).
fn ga_paths(
    city: &TestCity,
    library: &TestReader,
    full: &TestReader,
    in_group_5: &TestReader,
) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    let lib_fp = library.certificate.fingerprint();
    let lib_req = library.certificate.body().grants;
    let beyond = lib_req.with(AttributeId::NAME);
    let today = date(TODAY);
    let mut bad_point = ga(lib_fp, lib_req, today, "bad point");
    for b in bad_point.iter_mut().skip(5 + 14).take(32) {
        *b = 0xFF;
    }
    let stranger = reader(city, "stranger").certificate.fingerprint();
    let accepted_lib = ga(lib_fp, lib_req, today, "accepted");
    let accepted_beyond = ga(
        full.certificate.fingerprint(),
        beyond,
        today,
        "accepted beyond",
    );
    vec![
        (
            "date before the certificate's validity",
            ga(lib_fp, lib_req, date((2025, 12, 31)), "early"),
            accepted_lib.clone(),
        ),
        (
            "date after the certificate's validity",
            ga(lib_fp, lib_req, date((2028, 1, 1)), "late"),
            accepted_lib.clone(),
        ),
        (
            "date before the card date",
            ga(lib_fp, lib_req, date((2026, 11, 1)), "before card date"),
            accepted_lib.clone(),
        ),
        (
            "request beyond the grants",
            ga(lib_fp, beyond, today, "beyond"),
            accepted_beyond,
        ),
        ("invalid E_R", bad_point, accepted_lib.clone()),
        (
            "uncached certificate",
            ga(stranger, lib_req, today, "stranger"),
            accepted_lib.clone(),
        ),
        (
            "group the card lacks",
            ga(
                in_group_5.certificate.fingerprint(),
                lib_req,
                today,
                "group 5",
            ),
            accepted_lib,
        ),
    ]
}

/// GENERAL AUTHENTICATE on a card that cached the library and full
/// readers: every path of `ga_paths` gives the answers and the work (one
/// key generation, two ECDH) of its accepted counterpart.
fn general_authenticate_refusals_cost_the_work_of_an_acceptance(city: &TestCity) {
    let library = reader(city, "library");
    let full = reader(city, "full");
    let in_group_5 = reader_in_group(city, "library", 5);
    let mut card = issue(
        &Setup {
            tapped_by: vec![&library, &full, &in_group_5],
            ..Setup::of(city)
        },
        50,
    );
    let select = bytes(&select_command());
    for (what, apdu, accepted) in ga_paths(city, &library, &full, &in_group_5) {
        let oa = observe(&mut card, &[select.clone(), accepted]);
        let ob = observe(&mut card, &[select.clone(), apdu]);
        assert_eq!(ob, oa, "GENERAL AUTHENTICATE {what}");
        assert_eq!(oa.ops.keygen, 1);
        assert_eq!(oa.ops.ecdh, 2);
    }
}

/// SPEC §6.4, §6.10, §10.6: the card performs the same operations, in the
/// same amounts, whether it accepts or refuses — for every refusal reason of
/// PSO (another root, wrong issuer, expired, preparer role, bad signature,
/// high-S twin; a future-dated certificate, accepted without moving the card
/// date; a station certificate) and of GENERAL AUTHENTICATE (date before the
/// certificate's validity, after it, before the card date; a request beyond
/// the grants; an invalid E_R; an uncached certificate; a group the card
/// lacks). A reader certificate without a domain or a group is not a
/// well-formed certificate: `6A80` and no work at all, which depends on the
/// command bytes only.
#[test]
fn every_refusal_costs_the_work_of_an_acceptance() {
    let city = city();
    pso_refusals_cost_the_work_of_an_acceptance(&city);
    general_authenticate_refusals_cost_the_work_of_an_acceptance(&city);
}

/// The high-S twin of a genuine reader certificate's signature verifies under
/// plain ECDSA but not under the protocol's low-S rule: on an issued card PSO
/// answers `9000` with the same work and write as for the genuine
/// certificate, caches nothing, and a GENERAL AUTHENTICATE naming the twin's
/// fingerprint is a decoy; on a prepared card it is refused with `6982`.
#[test]
fn a_high_s_twin_certificate_is_refused_with_the_uniform_answer() {
    let city = city();
    let library = reader(&city, "library");
    let twin = high_s_twin(&library.certificate);
    assert_ne!(twin.fingerprint(), library.certificate.fingerprint());
    assert!(twin.verify(&city.root.public_key()).is_err());
    let mut card = issue(&Setup::of(&city), 60);
    let before = card.state().unwrap().cache.clone();
    let twin_pso = observe(
        &mut card,
        &[bytes(&select_command()), bytes(&pso_command(&twin))],
    );
    assert_eq!(
        card.state().unwrap().cache,
        before,
        "the twin is not cached"
    );
    let mut other = issue(&Setup::of(&city), 61);
    let good_pso = observe(
        &mut other,
        &[
            bytes(&select_command()),
            bytes(&pso_command(&library.certificate)),
        ],
    );
    assert_eq!(twin_pso, good_pso, "same answers, same work, same write");
    assert_eq!(other.state().unwrap().cache.len(), 1);
    // The twin's fingerprint opens nothing: a decoy to the legitimate key too.
    card.reset();
    card.transmit(&bytes(&select_command())).unwrap();
    card.transmit(&bytes(&pso_command(&twin))).unwrap();
    let session = ReaderSession::with_ephemeral(
        test_key("twin probe"),
        twin.fingerprint(),
        library.certificate.body().grants,
        date(TODAY),
    );
    let answer = fetch(&mut card, &bytes(&session.command()));
    assert_eq!(
        session
            .open(&answer, &library.key, library.group)
            .unwrap_err(),
        Error::Decoy
    );
    // A prepared card (station PSO): the twin of the station certificate is 6982.
    let mut prepared = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([62; 32]));
    {
        let mut link = |apdu: &[u8]| prepared.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        s.expect_ok("select", &select_command()).unwrap();
        script::prepare(&mut s, &city, date((2026, 11, 2))).unwrap();
    }
    let r = prepared
        .transmit(&bytes(&pso_command(&high_s_twin(
            &city.station_certificate,
        ))))
        .unwrap();
    assert_eq!(sw(&r), 0x6982);
}
