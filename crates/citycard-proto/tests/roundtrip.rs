//! Card-side response building and reader-side opening agree, and every
//! security check in `ReaderSession::open` rejects what it must.
#![cfg(test)]

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{self, AuthorisedReader, CardData, ReaderSession};
use citycard_proto::crypto;
use citycard_proto::record::{AttributeEntry, RecordBody};
use citycard_proto::{Date, Error};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Fixture {
    card_key: p256::SecretKey,
    pseudonym_key: [u8; 16],
    record: Vec<u8>,
    attributes: Vec<AttributeEntry>,
    reader_key: p256::SecretKey,
    reader: AuthorisedReader,
    station: p256::SecretKey,
}

fn fixture(rng: &mut ChaCha20Rng) -> Fixture {
    let card_key = crypto::generate(rng);
    let station = crypto::generate(rng);
    let attributes = vec![
        AttributeEntry::new(AttributeId::NAME, [1; 16], b"Alex".to_vec()).unwrap(),
        AttributeEntry::new(
            AttributeId::BIRTH_DATE,
            [2; 16],
            Date::new(1958, 3, 14).unwrap().to_bytes().to_vec(),
        )
        .unwrap(),
        AttributeEntry::new(AttributeId::RESIDENT, [3; 16], vec![1]).unwrap(),
    ];
    let record = RecordBody::new(
        [5; 8],
        Date::new(2026, 1, 1).unwrap(),
        Date::new(2030, 1, 1).unwrap(),
        card_key.public_key(),
        &attributes,
    )
    .unwrap()
    .sign(&station)
    .unwrap();
    let reader_key = crypto::generate(rng);
    let grants: AttributeSet = [
        AttributeId::PSEUDONYM,
        AttributeId::RESIDENT,
        AttributeId::NAME,
        AttributeId::AGE_OVER_65,
    ]
    .into_iter()
    .collect();
    Fixture {
        card_key,
        pseudonym_key: [9; 16],
        record: record.as_bytes().to_vec(),
        attributes,
        reader: AuthorisedReader {
            public_key: reader_key.public_key(),
            grants,
            domain: [4; 16],
        },
        reader_key,
        station,
    }
}

fn respond(f: &Fixture, session: &ReaderSession, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let data = session.command().data;
    let req = citycard_proto::auth::AuthRequest::decode(&data).unwrap();
    let card = CardData {
        card_key: &f.card_key,
        pseudonym_key: &f.pseudonym_key,
        record: &f.record,
        attributes: &f.attributes,
    };
    auth::card_respond(&data, &req, &f.reader, &card, rng)
}

#[test]
fn genuine_response_opens_with_exactly_the_requested_attributes() {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let f = fixture(&mut rng);
    let requested: AttributeSet = [
        AttributeId::PSEUDONYM,
        AttributeId::RESIDENT,
        AttributeId::AGE_OVER_65,
    ]
    .into_iter()
    .collect();
    let session = ReaderSession::new(
        &mut rng,
        [0; 8],
        requested,
        Date::new(2026, 11, 26).unwrap(),
    );
    let resp = respond(&f, &session, &mut rng);
    let d = session.open(&resp, &f.reader_key).unwrap();
    d.record.verify(&f.station.public_key()).unwrap();
    assert_eq!(d.attributes.len(), 1);
    assert_eq!(d.attributes[0].id, AttributeId::RESIDENT);
    assert_eq!(
        d.pseudonym,
        Some(auth::pseudonym(&f.pseudonym_key, &[4; 16]))
    );
    let p = d.predicates.unwrap();
    assert!(p.holds.contains(AttributeId::AGE_OVER_65));
    // The name was not requested: its bytes appear nowhere in the response.
    assert!(!resp.windows(4).any(|w| w == b"Alex"));
}

#[test]
fn wrong_reader_key_cannot_decrypt() {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let f = fixture(&mut rng);
    let session = ReaderSession::new(
        &mut rng,
        [0; 8],
        AttributeSet::EMPTY.with(AttributeId::NAME),
        Date::new(2026, 11, 26).unwrap(),
    );
    let resp = respond(&f, &session, &mut rng);
    let other = crypto::generate(&mut rng);
    assert_eq!(
        session.open(&resp, &other).unwrap_err(),
        Error::DecryptionFailed
    );
}

#[test]
fn replayed_response_is_a_transcript_mismatch() {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let f = fixture(&mut rng);
    let set = AttributeSet::EMPTY.with(AttributeId::RESIDENT);
    let today = Date::new(2026, 11, 26).unwrap();
    let first = ReaderSession::new(&mut rng, [0; 8], set, today);
    let recorded = respond(&f, &first, &mut rng);
    first.open(&recorded, &f.reader_key).unwrap();
    let second = ReaderSession::new(&mut rng, [0; 8], set, today);
    assert_eq!(
        second.open(&recorded, &f.reader_key).unwrap_err(),
        Error::TranscriptMismatch
    );
}

#[test]
fn clone_with_the_wrong_private_key_fails_the_mac() {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let mut f = fixture(&mut rng);
    f.card_key = crypto::generate(&mut rng); // same record, different key
    let session = ReaderSession::new(
        &mut rng,
        [0; 8],
        AttributeSet::EMPTY.with(AttributeId::RESIDENT),
        Date::new(2026, 11, 26).unwrap(),
    );
    let resp = respond(&f, &session, &mut rng);
    assert_eq!(
        session.open(&resp, &f.reader_key).unwrap_err(),
        Error::BadMac
    );
}

#[test]
fn every_flipped_ciphertext_byte_is_rejected() {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let f = fixture(&mut rng);
    let session = ReaderSession::new(
        &mut rng,
        [0; 8],
        AttributeSet::EMPTY.with(AttributeId::NAME),
        Date::new(2026, 11, 26).unwrap(),
    );
    let resp = respond(&f, &session, &mut rng);
    for i in 0..resp.len() {
        let mut bad = resp.clone();
        bad[i] ^= 0x40;
        assert!(
            session.open(&bad, &f.reader_key).is_err(),
            "flip at {i} accepted"
        );
    }
}

#[test]
fn truncated_responses_never_panic() {
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let f = fixture(&mut rng);
    let session = ReaderSession::new(
        &mut rng,
        [0; 8],
        AttributeSet::EMPTY.with(AttributeId::NAME),
        Date::new(2026, 11, 26).unwrap(),
    );
    let resp = respond(&f, &session, &mut rng);
    for n in 0..resp.len() {
        assert!(session.open(&resp[..n], &f.reader_key).is_err());
    }
}
