//! Preparation and personalisation over the in-memory transport (the PC/SC
//! path is covered by the workspace end-to-end tests): the station refuses
//! cards its city did not prepare, issues G groups, and checks the card's
//! issuance check value.
#![cfg(test)]

use citycard_card::{Applet, MemoryStorage};
use citycard_issuer::personalise::{
    inspect, personalise, prepare, PersonaliseError, PreparationTrust, Preparer, Station,
};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::{consts::LifeCycle, crypto, date::Date};
use citycard_transport::{CardChannel, MemoryTransport};
use p256::SecretKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Ch = CardChannel<MemoryTransport<Applet<MemoryStorage, ChaCha20Rng>>>;

struct City {
    root: SecretKey,
    station: SecretKey,
    station_cert: Certificate,
    preparer: SecretKey,
    preparer_cert: Certificate,
}

fn d(y: u16, m: u8, day: u8) -> Date {
    Date::new(y, m, day).unwrap()
}

fn cert(signer: &SecretKey, holder: &str, role: Role, pk: p256::PublicKey) -> Certificate {
    CertificateBody {
        issuer: "LIEGE".into(),
        holder: holder.into(),
        role,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: d(2026, 1, 1),
        expiry: d(2027, 1, 1),
        public_key: pk,
    }
    .sign(signer)
    .unwrap()
}

fn city(seed: u8) -> City {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let root = crypto::generate(&mut rng);
    let station = crypto::generate(&mut rng);
    let preparer = crypto::generate(&mut rng);
    City {
        station_cert: cert(&root, "s1", Role::Station, station.public_key()),
        preparer_cert: cert(&root, "p1", Role::Preparer, preparer.public_key()),
        root,
        station,
        preparer,
    }
}

fn attrs() -> Vec<(AttributeId, Vec<u8>)> {
    vec![
        (AttributeId::CARD_NUMBER, b"LG-000001".to_vec()),
        (AttributeId::NAME, b"Alex".to_vec()),
        (AttributeId::ADDRESS, b"Rue 1".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
    ]
}

fn issue(
    ch: &mut Ch,
    c: &City,
    on: Date,
    groups: u8,
    rng: &mut ChaCha20Rng,
) -> Result<citycard_issuer::Personalised, PersonaliseError> {
    issue_until(ch, c, on, d(2031, 5, 31), groups, rng)
}

fn issue_until(
    ch: &mut Ch,
    c: &City,
    on: Date,
    valid_to: Date,
    groups: u8,
    rng: &mut ChaCha20Rng,
) -> Result<citycard_issuer::Personalised, PersonaliseError> {
    let sign = |m: &[u8]| Ok(crypto::sign(&c.station, m));
    let station = Station {
        certificate: &c.station_cert,
        sign: &sign,
    };
    let root = c.root.public_key();
    let preparers = [c.preparer_cert.clone()];
    let trust = PreparationTrust {
        root: &root,
        preparers: &preparers,
    };
    personalise(
        ch,
        &trust,
        &station,
        &citycard_issuer::CardContents {
            attributes: &attrs(),
            issue_date: on,
            valid_to,
            groups,
        },
        rng,
    )
}

/// A card prepared by `by` (its preparer key and certificate) for the city `c`.
fn prepared_card(seed: u8, c: &City, preparer: &SecretKey, preparer_cert: &Certificate) -> Ch {
    let mut ch = CardChannel::new(MemoryTransport::new(Applet::new(
        MemoryStorage::new(),
        ChaCha20Rng::from_seed([seed; 32]),
    )));
    let root = c.root.public_key();
    let sign = |m: &[u8]| Ok(crypto::sign(preparer, m));
    prepare(
        &mut ch,
        &Preparer {
            issuer: "LIEGE",
            root: &root,
            certificate: preparer_cert,
            sign: &sign,
            batch: "B-1",
        },
        d(2026, 5, 20),
    )
    .unwrap();
    ch
}

fn new_card(seed: u8, c: &City) -> Ch {
    prepared_card(seed, c, &c.preparer, &c.preparer_cert)
}

#[test]
fn a_prepared_card_is_issued_for_every_group_and_checked() {
    let c = city(1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    for groups in [1u8, 3, 8] {
        let mut ch = new_card(3 + groups, &c);
        assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Prepared);
        let p = issue(&mut ch, &c, d(2026, 6, 10), groups, &mut rng).unwrap();
        assert_eq!(p.group_keys.len(), usize::from(groups));
        assert_eq!(p.records.len(), usize::from(groups));
        for (g, r) in p.records.iter().enumerate() {
            assert_eq!(usize::from(r.body().group), g);
            assert_eq!(r.body().valid_from, d(2026, 6, 1), "month granular");
            r.verify(&c.station.public_key()).unwrap();
        }
        assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Issued);
        // A second personalisation of the same card is refused before any write.
        match issue(&mut ch, &c, d(2026, 6, 10), groups, &mut rng) {
            Err(PersonaliseError::NotBlank(LifeCycle::Issued)) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_unprepared_card_is_refused_before_any_write() {
    let c = city(1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = CardChannel::new(MemoryTransport::new(Applet::new(
        MemoryStorage::new(),
        ChaCha20Rng::from_seed([7; 32]),
    )));
    match issue(&mut ch, &c, d(2026, 6, 10), 1, &mut rng) {
        Err(PersonaliseError::NotBlank(LifeCycle::Blank)) => {}
        other => panic!("{other:?}"),
    }
}

/// A card whose preparation certificate was signed by a preparer the root
/// never certified (a software card's maker, a phone): the station refuses
/// it after EXTERNAL AUTHENTICATE, before anything signed reaches it.
#[test]
fn a_card_prepared_by_someone_else_is_not_prepared_by_this_city() {
    let c = city(1);
    let rogue = crypto::generate(&mut ChaCha20Rng::from_seed([66; 32]));
    let rogue_cert = cert(&rogue, "p1", Role::Preparer, rogue.public_key());
    let mut ch = prepared_card(8, &c, &rogue, &rogue_cert);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    match issue(&mut ch, &c, d(2026, 6, 10), 2, &mut rng) {
        Err(PersonaliseError::NotPrepared) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Prepared);
}

#[test]
fn another_citys_card_refuses_the_station() {
    let other = city(9);
    let c = city(1);
    let mut ch = new_card(4, &other);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    match issue(&mut ch, &c, d(2026, 6, 10), 1, &mut rng) {
        Err(PersonaliseError::WrongIssuer) => {}
        other => panic!("{other:?}"),
    }
    // Its own city can issue it.
    issue(&mut ch, &other, d(2026, 6, 10), 1, &mut rng).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_pulled_card_is_a_transport_error_and_the_card_stays_not_issued() {
    let c = city(1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(5, &c);
    ch.transport_mut().remove();
    assert!(matches!(
        issue(&mut ch, &c, d(2026, 6, 10), 1, &mut rng),
        Err(PersonaliseError::Transport(_))
    ));
    ch.reset().unwrap();
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Prepared);
}

#[test]
fn a_station_certificate_outside_its_validity_cannot_sign_a_valid_record() {
    let c = city(1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(6, &c);
    // Issue date after the station certificate's expiry: the card refuses at ACTIVATE.
    match issue(&mut ch, &c, d(2027, 6, 1), 1, &mut rng) {
        Err(PersonaliseError::Refused {
            step: "ACTIVATE",
            sw,
        }) => assert_eq!(sw.to_u16(), 0x6A80),
        other => panic!("{other:?}"),
    }
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Prepared);
}

fn refused_at_activate(result: Result<citycard_issuer::Personalised, PersonaliseError>) {
    match result {
        Err(PersonaliseError::Refused {
            step: "ACTIVATE",
            sw,
        }) => assert_eq!(sw.to_u16(), 0x6A80),
        other => panic!("{other:?}"),
    }
}

/// SPEC §6.8, §11: the card lifetime is a protocol constant. A station (even
/// one whose key was stolen) cannot make a card valid for longer than
/// `MAX_CARD_LIFETIME_DAYS`: the card refuses ACTIVATE one day past it and
/// writes nothing; exactly at it, it is issued.
#[test]
fn activate_refuses_a_lifetime_over_the_maximum() {
    use citycard_proto::limits::MAX_CARD_LIFETIME_DAYS;
    let c = city(1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let valid_from = d(2026, 6, 1);
    let mut ch = new_card(20, &c);
    refused_at_activate(issue_until(
        &mut ch,
        &c,
        d(2026, 6, 10),
        valid_from.add_days(MAX_CARD_LIFETIME_DAYS + 1),
        2,
        &mut rng,
    ));
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Prepared);
    let p = issue_until(
        &mut ch,
        &c,
        d(2026, 6, 10),
        valid_from.add_days(MAX_CARD_LIFETIME_DAYS),
        2,
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        p.records[0].body().lifetime_days(),
        i64::from(MAX_CARD_LIFETIME_DAYS)
    );
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Issued);
}

/// SPEC §6.8, §11: a station cannot backdate a card to before it was
/// prepared. The card was prepared on 2026-05-20: valid-from 2026-04-01 (an
/// issue date in April) is refused at ACTIVATE with nothing written;
/// valid-from 2026-05-01, the first day of the preparation month, is allowed.
#[test]
fn activate_refuses_valid_from_before_the_preparation_month() {
    let c = city(1);
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(21, &c);
    refused_at_activate(issue(&mut ch, &c, d(2026, 4, 30), 1, &mut rng));
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Prepared);
    let p = issue(&mut ch, &c, d(2026, 5, 2), 1, &mut rng).unwrap();
    assert_eq!(p.records[0].body().valid_from, d(2026, 5, 1));
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Issued);
}
