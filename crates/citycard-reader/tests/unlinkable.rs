//! Unlinkable partners (SPEC §10.8), in process: a card issued with all eight
//! linkability groups; two partners in different groups tap it many times
//! each. Everything each of them receives is collected — every response
//! byte and every plaintext it decrypts, whole, not only the decoded fields
//! — and the two collections share no field value and no 8-byte substring
//! outside fixed headers (TLV tags and lengths, status words, the SELECT
//! answer, which a second card issued to another resident repeats), the
//! month-granular validity dates and the disclosed values themselves
//! (`citycard_testkit::linkage`). A partner in the *same* group as the first
//! does share the record with it (the residue SPEC §11 states), which shows
//! that the comparison finds a shared record.
//! The same test through pcscd + vpcd: `tests/pcsc_groups.rs`.

#![cfg(test)]

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::apdu::ContactlessCard;
use citycard_proto::attr::AttributeId;
use citycard_testkit::keys::{city, date, reader_in_group, test_key, TestReader, TODAY};
use citycard_testkit::linkage::{self, Received};
use citycard_testkit::script::sample_resident;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = Applet<MemoryStorage, ChaCha20Rng>;

/// A card issued with all eight groups to `resident`.
fn issued(seed: u8, resident: Vec<(AttributeId, Vec<u8>)>) -> Card {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([seed; 32]));
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    let issued = linkage::issue(&mut link, &city(), resident, 8, seed).unwrap();
    assert_eq!(issued.records.len(), 8);
    card
}

/// `rounds` rounds in which each reader taps once (a new power-up per tap;
/// the first tap of each reader sends its certificate, later ones use the
/// cache); what each received.
fn taps(card: &mut Card, label: &str, readers: &[&TestReader], rounds: u8) -> Vec<Received> {
    let mut received = vec![Received::default(); readers.len()];
    for round in 0..rounds {
        for (r, into) in readers.iter().zip(received.iter_mut()) {
            card.reset();
            let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
            linkage::tap(
                &mut link,
                r,
                date(TODAY),
                test_key(&format!("unlinkable {label} {} {round}", r.name)),
                round == 0,
                into,
            )
            .unwrap();
        }
    }
    received
}

#[test]
fn partners_of_different_groups_share_no_card_specific_value() {
    let city = city();
    // Two partners in groups 0 and 7, both granted the resident flag and a
    // pseudonym; a third partner in group 0 with the first.
    let a = reader_in_group(&city, "full", 0);
    let b = reader_in_group(&city, "library", 7);
    let same_group = reader_in_group(&city, "transit", 0);
    let mut card = issued(77, sample_resident());
    let seen = taps(&mut card, "card", &[&a, &b, &same_group], 12);
    let (ra, rb, rc) = (&seen[0], &seen[1], &seen[2]);
    // Another card, to another resident.
    let mut other = issued(91, linkage::other_resident());
    let other_seen = taps(&mut other, "other card", &[&a, &b, &same_group], 1);
    // The SELECT answer is a fixed header: the same on every tap of every card.
    let fci = &seen[0].fci[0];
    for r in seen.iter().chain(&other_seen) {
        assert!(r.fci.iter().all(|f| f == fci));
    }

    // Each partner always sees the same record (its group's).
    for (r, g) in [(ra, 0u8), (rb, 7u8), (rc, 0u8)] {
        assert_eq!(r.disclosures.len(), 12);
        let first = r.disclosures[0].record.as_bytes();
        assert!(r.disclosures.iter().all(|d| d.record.as_bytes() == first));
        assert_eq!(r.disclosures[0].record.body().group, g);
        assert!(r.plaintexts.iter().all(|p| p.masked_count() > 0));
    }

    // Different groups: nothing in common.
    let ab = linkage::common(ra, rb);
    assert!(ab.is_empty(), "partners of groups 0 and 7 share: {ab}");

    // Same group: the record (card key, signature, revocation id, slots) is
    // shared — the comparison does find a common record.
    let ac = linkage::common(ra, rc);
    for field in ["record", "card key", "signature", "revocation id"] {
        assert!(
            ac.fields.iter().any(|(n, m, _)| n == field && m == field),
            "{field}: {ac}"
        );
    }
    assert!(ac.windows.len() > 200, "{ac}");
    // … but not the pseudonym (per partner domain).
    assert!(!ac.fields.iter().any(|(n, _, _)| n == "pseudonym"), "{ac}");

    // The validity dates are shared (month granular), keys are not.
    let (da, db) = (&ra.disclosures[0], &rb.disclosures[0]);
    let (ba, bb) = (da.record.body(), db.record.body());
    assert_eq!((ba.valid_from, ba.valid_to), (bb.valid_from, bb.valid_to));
    assert_eq!(ba.valid_from.day(), 1);
    assert_ne!(ba.card_key, bb.card_key);

    // A value both may read (resident) is the same value, under unrelated salts.
    let mut shared = 0;
    for ea in &da.entries {
        let eb = db.entries.iter().find(|e| e.id == ea.id);
        if let (Some((sa, va)), Some((sb, vb))) = (&ea.present, eb.and_then(|e| e.present.as_ref()))
        {
            assert_eq!(va, vb, "{}", ea.id);
            assert_ne!(sa, sb, "{}", ea.id);
            shared += 1;
        }
    }
    assert!(
        shared >= 1,
        "the partners share no attribute: the test checks nothing"
    );
}
