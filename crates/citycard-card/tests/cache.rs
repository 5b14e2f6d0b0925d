//! The certificate cache and the card date (SPEC §5.6, §6.4): least recently
//! verified evicted first at `CACHE_ENTRIES`, one write per power-up, and a
//! card date that moves at most `MAX_CARD_DATE_STEP` days per certificate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::limits::{CACHE_ENTRIES, MAX_CARD_DATE_STEP};
use citycard_proto::{ContactlessCard, Date};
use citycard_testkit::keys::{city, date, test_key, TestCity};
use citycard_testkit::script::{personalise_sample, pso_command, select_command};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = Applet<MemoryStorage, ChaCha20Rng>;

fn issued() -> Card {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([40; 32]));
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    personalise_sample(&mut link, true, 41, 1).unwrap();
    card
}

fn reader_cert(city: &TestCity, n: u8, effective: Date) -> Certificate {
    CertificateBody {
        issuer: "LIEGE".into(),
        holder: format!("partner-{n}"),
        role: Role::Reader,
        grants: AttributeSet::EMPTY.with(AttributeId::RESIDENT),
        domain: Some([n; 16]),
        group: Some(0),
        effective,
        expiry: date((2027, 12, 31)),
        public_key: test_key(&format!("partner {n}")).public_key(),
    }
    .sign(&city.root)
    .unwrap()
}

/// One power-up: SELECT, PSO.
fn show(card: &mut Card, cert: &Certificate) {
    card.reset();
    let apdu = select_command().to_short_bytes().unwrap();
    card.transmit(&apdu).unwrap();
    let r = card
        .transmit(&pso_command(cert).to_short_bytes().unwrap())
        .unwrap();
    assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
}

fn cached(card: &Card) -> Vec<[u8; 8]> {
    card.state()
        .unwrap()
        .cache
        .iter()
        .map(|c| c.fingerprint)
        .collect()
}

#[test]
fn the_least_recently_verified_certificate_is_evicted_at_the_limit() {
    let city = city();
    let mut card = issued();
    let certs: Vec<Certificate> = (0..=CACHE_ENTRIES as u8)
        .map(|n| reader_cert(&city, n, date((2026, 1, 1))))
        .collect();
    for c in &certs[..CACHE_ENTRIES] {
        show(&mut card, c);
    }
    assert_eq!(cached(&card).len(), CACHE_ENTRIES, "at the limit");
    // Verifying the oldest again makes it the most recent...
    show(&mut card, &certs[0]);
    assert_eq!(cached(&card).last(), Some(&certs[0].fingerprint()));
    assert_eq!(cached(&card).len(), CACHE_ENTRIES);
    // ...so one past the limit evicts the second one shown.
    show(&mut card, &certs[CACHE_ENTRIES]);
    let now = cached(&card);
    assert_eq!(now.len(), CACHE_ENTRIES, "past the limit");
    assert!(!now.contains(&certs[1].fingerprint()));
    assert!(now.contains(&certs[0].fingerprint()));
    assert_eq!(now.last(), Some(&certs[CACHE_ENTRIES].fingerprint()));
}

#[test]
fn one_write_per_power_up_and_later_certificates_stay_in_the_session() {
    let city = city();
    let mut card = issued();
    let before = card.storage().commits();
    card.reset();
    card.transmit(&select_command().to_short_bytes().unwrap())
        .unwrap();
    for n in 0..5 {
        let c = reader_cert(&city, n, date((2026, 1, 1)));
        let r = card
            .transmit(&pso_command(&c).to_short_bytes().unwrap())
            .unwrap();
        assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
    }
    assert_eq!(card.storage().commits(), before + 1);
    // Only the first was cached; the last is in the volatile session slot.
    assert_eq!(cached(&card).len(), 1);
    card.reset();
    assert_eq!(cached(&card).len(), 1);
}

#[test]
fn the_card_date_moves_at_most_one_step_per_certificate() {
    let city = city();
    let mut card = issued();
    let start = card.state().unwrap().card_date.unwrap();
    assert_eq!(start, date((2026, 11, 2)), "the preparation date");
    let far = reader_cert(&city, 1, date((2027, 6, 1)));
    show(&mut card, &far);
    let once = card.state().unwrap().card_date.unwrap();
    assert_eq!(once, start.add_days(MAX_CARD_DATE_STEP));
    // The same certificate again (a new power-up) moves it one more step.
    show(&mut card, &far);
    assert_eq!(
        card.state().unwrap().card_date.unwrap(),
        once.add_days(MAX_CARD_DATE_STEP)
    );
    // An older certificate never moves it back.
    show(&mut card, &reader_cert(&city, 2, date((2026, 1, 1))));
    assert_eq!(
        card.state().unwrap().card_date.unwrap(),
        once.add_days(MAX_CARD_DATE_STEP)
    );
}
