//! The certificate cache and the card date (SPEC §5.6, §6.4): least recently
//! verified evicted first at `CACHE_ENTRIES`, one write per power-up, and a
//! card date that a certificate moves at most once, to its effective date,
//! and only when that is at most `MAX_CARD_DATE_STEP` days ahead.

#![cfg(test)]

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::limits::{CACHE_ENTRIES, MAX_CARD_DATE_STEP};
use citycard_proto::{apdu::ContactlessCard, date::Date};
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
    reader_cert_until(city, n, effective, date((2027, 12, 31)))
}

/// A reader certificate with validity `effective..=expiry`.
fn reader_cert_until(city: &TestCity, n: u8, effective: Date, expiry: Date) -> Certificate {
    CertificateBody {
        issuer: "LIEGE".into(),
        holder: format!("partner-{n}"),
        role: Role::Reader,
        grants: AttributeSet::EMPTY.with(AttributeId::RESIDENT),
        domain: Some([n; 16]),
        group: Some(0),
        effective,
        expiry,
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

fn card_date(card: &Card) -> Date {
    card.state().unwrap().card_date.unwrap()
}

/// One certificate, however often it is shown and over any number of power
/// cycles, moves the card date once, to its effective date, and only when
/// that is at most `MAX_CARD_DATE_STEP` days ahead; a certificate dated
/// further ahead moves it not at all, however often it is replayed.
#[test]
fn the_card_date_moves_once_per_certificate() {
    let city = city();
    let mut card = issued();
    let start = card_date(&card);
    assert_eq!(start, date((2026, 11, 2)), "the preparation date");

    // Far in the future: replayed 100 times over 100 power-ups, never moves it.
    let far = reader_cert(&city, 1, date((2027, 6, 1)));
    for _ in 0..100 {
        show(&mut card, &far);
        assert_eq!(card_date(&card), start);
    }
    // Within the step: moves it to its effective date, once.
    let near_date = start.add_days(MAX_CARD_DATE_STEP);
    let near = reader_cert(&city, 2, near_date);
    for _ in 0..100 {
        show(&mut card, &near);
        assert_eq!(card_date(&card), near_date);
    }
    // Also within a power-up (later PSOs go to the session slot, no write).
    card.reset();
    card.transmit(&select_command().to_short_bytes().unwrap())
        .unwrap();
    for c in [&near, &far, &near, &far] {
        card.transmit(&pso_command(c).to_short_bytes().unwrap())
            .unwrap();
    }
    card.reset();
    assert_eq!(card_date(&card), near_date);
    // The bound over many replays: the two certificates together moved it
    // by MAX_CARD_DATE_STEP days in all, the far one by nothing.
    assert_eq!(
        start.days_until(card_date(&card)),
        i64::from(MAX_CARD_DATE_STEP)
    );
    // Now the far one is still more than a step ahead: still nothing.
    show(&mut card, &far);
    assert_eq!(card_date(&card), near_date);
    // An older certificate never moves it back.
    show(&mut card, &reader_cert(&city, 3, date((2026, 1, 1))));
    assert_eq!(card_date(&card), near_date);
}

/// A card left unused while the world moved on: its card date is a year
/// behind every current reader's effective date. It accepts a current reader
/// (certificate verified and cached, real answers), its card date stays put
/// instead of jumping, and it keeps accepting current readers.
#[test]
fn an_unused_card_still_accepts_a_current_reader() {
    use citycard_proto::auth::ReaderSession;
    let city = city();
    let mut card = issued();
    let start = card_date(&card);
    // A year and a half later: a reader certificate effective last month.
    let today = date((2028, 5, 20));
    let key = test_key("partner 9");
    let current = reader_cert_until(&city, 9, date((2028, 4, 1)), date((2029, 3, 31)));
    assert_eq!(current.body().public_key, key.public_key());
    for tap in 0..3u8 {
        card.reset();
        card.transmit(&select_command().to_short_bytes().unwrap())
            .unwrap();
        let r = card
            .transmit(&pso_command(&current).to_short_bytes().unwrap())
            .unwrap();
        assert_eq!(r[r.len() - 2..], [0x90, 0x00]);
        let requested = AttributeSet::EMPTY.with(AttributeId::RESIDENT);
        let session = ReaderSession::with_ephemeral(
            test_key(&format!("unused tap {tap}")),
            current.fingerprint(),
            requested,
            today,
        );
        let mut r = card
            .transmit(&session.command().to_short_bytes().unwrap())
            .unwrap();
        let mut answer = r[..r.len() - 2].to_vec();
        while r[r.len() - 2] == 0x61 {
            r = card
                .transmit(&[0x00, 0xC0, 0x00, 0x00, r[r.len() - 1]])
                .unwrap();
            answer.extend_from_slice(&r[..r.len() - 2]);
        }
        let disclosure = session
            .open(&answer, &key, 0)
            .expect("the unused card answers a current reader");
        assert_eq!(disclosure.present().count(), 1, "resident disclosed");
        assert_eq!(card_date(&card), start, "tap {tap}: no jump");
    }
    assert!(cached(&card).contains(&current.fingerprint()));
}
