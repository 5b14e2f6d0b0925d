//! Card-side answer (and decoy) building and reader-side opening agree, the
//! two are indistinguishable without the reader's key, and every check in
//! `ReaderSession::open` rejects what it must (spec §7.5, §8).
#![cfg(test)]

use citycard_proto::attr::{AttributeId, AttributeKind, AttributeSet, ALL};
use citycard_proto::auth::{
    self, answer_len, AuthRequest, AuthorisedReader, CardData, CardGroup, ReaderSession, RealAnswer,
};
use citycard_proto::crypto::{self, OpCount};
use citycard_proto::record::{RecordBody, StoredValue};
use citycard_proto::{date::Date, error::Error};
use p256::{PublicKey, SecretKey};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const GROUP: u8 = 1;

struct Fixture {
    keys: Vec<SecretKey>,
    publics: Vec<PublicKey>,
    seeds: Vec<[u8; 16]>,
    records: Vec<Vec<u8>>,
    pseudonym_key: [u8; 16],
    values: Vec<StoredValue>,
    reader_key: SecretKey,
    reader: AuthorisedReader,
}

fn values_all() -> Vec<StoredValue> {
    vec![
        StoredValue::new(AttributeId::CARD_NUMBER, b"LG-1".to_vec()).unwrap(),
        StoredValue::new(AttributeId::NAME, b"Alex".to_vec()).unwrap(),
        StoredValue::new(
            AttributeId::BIRTH_DATE,
            Date::new(2008, 6, 15).unwrap().to_bytes().to_vec(),
        )
        .unwrap(),
        StoredValue::new(AttributeId::ADDRESS, b"Rue 1".to_vec()).unwrap(),
        StoredValue::new(AttributeId::CARE_OF_ADDRESS, b"Asso 2, Liege".to_vec()).unwrap(),
        StoredValue::new(AttributeId::LANGUAGE, b"fr".to_vec()).unwrap(),
        StoredValue::new(AttributeId::GENDER, b"f".to_vec()).unwrap(),
        StoredValue::new(AttributeId::RESIDENT, vec![1]).unwrap(),
        StoredValue::new(AttributeId::new(24).unwrap(), vec![7; 3]).unwrap(),
    ]
}

fn fixture_with(rng: &mut ChaCha20Rng, values: Vec<StoredValue>) -> Fixture {
    let station = crypto::generate(rng);
    let mut keys = Vec::new();
    let mut seeds = Vec::new();
    let mut records = Vec::new();
    for g in 0..3u8 {
        let k = crypto::generate(rng);
        let mut seed = [0u8; 16];
        rand_chacha::rand_core::RngCore::fill_bytes(rng, &mut seed);
        let digests: Vec<_> = values.iter().map(|v| v.digest(&seed)).collect();
        let record = RecordBody::new(
            g,
            &[5; 8],
            Date::new(2026, 11, 1).unwrap(),
            Date::new(2031, 10, 31).unwrap(),
            k.public_key(),
            &digests,
            rng,
        )
        .unwrap()
        .sign(&station)
        .unwrap();
        keys.push(k);
        seeds.push(seed);
        records.push(record.as_bytes().to_vec());
    }
    let reader_key = crypto::generate(rng);
    let reader = AuthorisedReader {
        public_key: reader_key.public_key(),
        grants: ALL.iter().copied().collect(),
        domain: [4; 16],
        group: GROUP,
    };
    Fixture {
        publics: keys.iter().map(SecretKey::public_key).collect(),
        keys,
        seeds,
        records,
        pseudonym_key: [6; 16],
        values,
        reader_key,
        reader,
    }
}

fn fixture(rng: &mut ChaCha20Rng) -> Fixture {
    fixture_with(rng, values_all())
}

/// The card's answer (`real`) or decoy, with its operation counts.
fn answer(
    f: &Fixture,
    session: &ReaderSession,
    real: bool,
    rng: &mut ChaCha20Rng,
) -> (Vec<u8>, OpCount) {
    let cmd = session.request().encode();
    let request = AuthRequest::decode(&cmd).unwrap();
    let card = CardData {
        group0: CardGroup {
            card_key: &f.keys[0],
            record: &f.records[0],
            seed: &f.seeds[0],
        },
        group0_public: &f.publics[0],
        pseudonym_key: &f.pseudonym_key,
        values: &f.values,
    };
    let g = usize::from(GROUP);
    let real = real.then(|| RealAnswer {
        reader: &f.reader,
        group: CardGroup {
            card_key: &f.keys[g],
            record: &f.records[g],
            seed: &f.seeds[g],
        },
    });
    let mut ops = OpCount::default();
    let point = request.reader_point();
    let a = auth::card_answer(&mut ops, &cmd, &request, point, &card, real, rng);
    (a, ops)
}

fn session(rng: &mut ChaCha20Rng, requested: AttributeSet) -> ReaderSession {
    ReaderSession::new(rng, [9; 8], requested, Date::new(2026, 11, 26).unwrap())
}

fn full() -> AttributeSet {
    ALL.iter().copied().collect()
}

#[test]
fn answer_opens_with_exactly_the_requested_entries() {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let f = fixture(&mut rng);
    let requested: AttributeSet = [
        AttributeId::PSEUDONYM,
        AttributeId::NAME,
        AttributeId::RESIDENT,
        AttributeId::AGE_OVER_18,
        AttributeId::AGE_OVER_65,
    ]
    .into_iter()
    .collect();
    let s = session(&mut rng, requested);
    let (a, _) = answer(&f, &s, true, &mut rng);
    let d = s.open(&a, &f.reader_key, GROUP).unwrap();
    assert_eq!(d.record.body().group, GROUP);
    assert_eq!(d.record.as_bytes(), &f.records[1][..]);
    let present: Vec<_> = d.present().map(|(id, v)| (id, v.to_vec())).collect();
    assert_eq!(
        present,
        vec![
            (AttributeId::NAME, b"Alex".to_vec()),
            (AttributeId::RESIDENT, vec![1])
        ]
    );
    assert_eq!(
        d.pseudonym,
        Some(auth::pseudonym(&f.pseudonym_key, &f.reader.domain))
    );
    let p = d.predicates.unwrap();
    assert!(p.answered.contains(AttributeId::AGE_OVER_18));
    // Born 2008-06-15: evaluated on 2026-11-01, 18 holds; 65 does not.
    assert!(p.holds.contains(AttributeId::AGE_OVER_18));
    assert!(!p.holds.contains(AttributeId::AGE_OVER_65));
}

#[test]
fn decoy_and_answer_have_the_same_length_and_work_for_every_request() {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let f = fixture(&mut rng);
    let ids: Vec<AttributeId> = ALL.to_vec();
    // Every single id, every pair, and a spread of larger sets.
    let mut requests: Vec<AttributeSet> = vec![AttributeSet::EMPTY, full()];
    for (i, a) in ids.iter().enumerate() {
        requests.push(AttributeSet::EMPTY.with(*a));
        for b in &ids[i + 1..] {
            requests.push(AttributeSet::EMPTY.with(*a).with(*b));
        }
    }
    for mask in (0u32..1 << 12).step_by(37) {
        requests.push(
            ids.iter()
                .enumerate()
                .filter(|(i, _)| mask >> (i % 12) & 1 == 1)
                .map(|(_, id)| *id)
                .collect(),
        );
    }
    for requested in requests {
        let s = session(&mut rng, requested);
        let (real, real_ops) = answer(&f, &s, true, &mut rng);
        let (decoy, decoy_ops) = answer(&f, &s, false, &mut rng);
        assert_eq!(real.len(), answer_len(requested), "{requested}");
        assert_eq!(decoy.len(), answer_len(requested), "{requested}");
        assert_eq!(real_ops, decoy_ops, "{requested}");
        assert!(s.open(&real, &f.reader_key, GROUP).is_ok(), "{requested}");
        assert_eq!(
            s.open(&decoy, &f.reader_key, GROUP).unwrap_err(),
            Error::Decoy,
            "a decoy opened for {requested}"
        );
    }
}

#[test]
fn the_spec_cost_table_lengths() {
    let set = |ids: &[AttributeId]| ids.iter().copied().collect::<AttributeSet>();
    let library = set(&[AttributeId::PSEUDONYM, AttributeId::RESIDENT]);
    let transit = set(&[AttributeId::AGE_OVER_65]);
    let full = set(&[
        AttributeId::PSEUDONYM,
        AttributeId::CARD_NUMBER,
        AttributeId::NAME,
        AttributeId::BIRTH_DATE,
        AttributeId::ADDRESS,
        AttributeId::LANGUAGE,
        AttributeId::RESIDENT,
    ]);
    assert_eq!(auth::plaintext_len(library), 375);
    assert_eq!(answer_len(library), 434);
    assert_eq!(answer_len(transit), 405);
    assert_eq!(answer_len(full), 721);
}

#[test]
fn holding_an_attribute_or_not_gives_the_same_answer_length_and_work() {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let with = fixture(&mut rng);
    for id in ALL.iter().filter(|id| id.kind() == AttributeKind::Stored) {
        // Without `id`, and with every value at its longest instead.
        let without: Vec<StoredValue> = values_all().into_iter().filter(|v| v.id != *id).collect();
        let f_without = fixture_with(&mut rng, without);
        let s = session(&mut rng, full());
        let (a, ops_a) = answer(&with, &s, true, &mut rng);
        let (b, ops_b) = answer(&f_without, &s, true, &mut rng);
        assert_eq!(a.len(), b.len(), "{id}");
        assert_eq!(ops_a, ops_b, "{id}");
        let d = s.open(&b, &f_without.reader_key, GROUP).unwrap();
        let e = d.entries.iter().find(|e| e.id == *id).unwrap();
        assert!(e.present.is_none(), "{id} reported present");
    }
    let long: Vec<StoredValue> = vec![
        StoredValue::new(AttributeId::NAME, vec![b'n'; 64]).unwrap(),
        StoredValue::new(AttributeId::CARE_OF_ADDRESS, vec![b'c'; 96]).unwrap(),
        StoredValue::new(AttributeId::GENDER, vec![b'g'; 16]).unwrap(),
    ];
    let f_long = fixture_with(&mut rng, long);
    let s = session(&mut rng, full());
    let (a, ops_a) = answer(&with, &s, true, &mut rng);
    let (b, ops_b) = answer(&f_long, &s, true, &mut rng);
    assert_eq!((a.len(), ops_a), (b.len(), ops_b));
}

#[test]
fn a_replayed_answer_is_detected_after_the_tag() {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let f = fixture(&mut rng);
    let requested = AttributeSet::EMPTY.with(AttributeId::RESIDENT);
    let first = session(&mut rng, requested);
    let (a, _) = answer(&f, &first, true, &mut rng);
    first.open(&a, &f.reader_key, GROUP).unwrap();
    let second = session(&mut rng, requested);
    assert_eq!(
        second.open(&a, &f.reader_key, GROUP).unwrap_err(),
        Error::TranscriptMismatch
    );
}

#[test]
fn a_clone_with_another_card_key_fails_the_mac() {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let mut f = fixture(&mut rng);
    f.keys[usize::from(GROUP)] = crypto::generate(&mut rng);
    let s = session(&mut rng, AttributeSet::EMPTY.with(AttributeId::PSEUDONYM));
    let (a, _) = answer(&f, &s, true, &mut rng);
    assert_eq!(s.open(&a, &f.reader_key, GROUP).unwrap_err(), Error::BadMac);
}

#[test]
fn another_readers_key_another_group_and_any_modification_are_refused() {
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let f = fixture(&mut rng);
    let s = session(&mut rng, AttributeSet::EMPTY.with(AttributeId::NAME));
    let (a, _) = answer(&f, &s, true, &mut rng);
    let other = crypto::generate(&mut rng);
    assert_eq!(s.open(&a, &other, GROUP).unwrap_err(), Error::Decoy);
    assert!(s.open(&a, &f.reader_key, 0).is_err());
    for i in 0..a.len() {
        let mut bad = a.clone();
        bad[i] ^= 0x01;
        assert!(s.open(&bad, &f.reader_key, GROUP).is_err(), "flip at {i}");
    }
    for n in 0..a.len() {
        assert!(matches!(
            s.open(&a[..n], &f.reader_key, GROUP),
            Err(Error::BadLength(_))
        ));
    }
}

#[test]
fn an_invalid_reader_point_gets_a_decoy_of_the_same_length() {
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let f = fixture(&mut rng);
    let requested = AttributeSet::EMPTY.with(AttributeId::RESIDENT);
    let mut request = AuthRequest {
        certificate: [9; 8],
        reader_ephemeral: [0x02; 33],
        requested,
        date: Date::new(2026, 11, 26).unwrap(),
    };
    request.reader_ephemeral[1..].fill(0xFF);
    assert!(request.reader_point().is_none());
    let cmd = request.encode();
    let card = CardData {
        group0: CardGroup {
            card_key: &f.keys[0],
            record: &f.records[0],
            seed: &f.seeds[0],
        },
        group0_public: &f.publics[0],
        pseudonym_key: &f.pseudonym_key,
        values: &f.values,
    };
    let mut ops = OpCount::default();
    let decoy = auth::card_answer(&mut ops, &cmd, &request, None, &card, None, &mut rng);
    assert_eq!(decoy.len(), answer_len(requested));
    assert_eq!((ops.keygen, ops.ecdh, ops.sha256), (1, 2, 3));
}

#[test]
fn predicates_are_evaluated_on_the_first_of_the_month() {
    let born = Date::new(2008, 6, 15).unwrap();
    let requested = AttributeSet::EMPTY.with(AttributeId::AGE_OVER_18);
    let on =
        |y, m, d| auth::evaluate_predicates(requested, Some(born), Date::new(y, m, d).unwrap());
    // On the birthday itself the month has not turned yet.
    assert!(on(2026, 6, 30).holds.is_empty());
    assert!(on(2026, 6, 15).holds.is_empty());
    assert!(on(2026, 7, 1).holds.contains(AttributeId::AGE_OVER_18));
    let leap = Date::new(2008, 2, 29).unwrap();
    let p = auth::evaluate_predicates(requested, Some(leap), Date::new(2026, 3, 1).unwrap());
    assert!(p.holds.contains(AttributeId::AGE_OVER_18));
    let none = auth::evaluate_predicates(requested, None, Date::new(2026, 3, 1).unwrap());
    assert!(none.answered.is_empty());
}
