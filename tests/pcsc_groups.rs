//! Unlinkable partners through pcscd + vpcd (SPEC §10.8): a card issued with
//! all eight linkability groups, served by `citycard card emulate` (the
//! binary, drawing its randomness from the operating system) in the vpcd
//! reader; two partners in different groups tap it several times each
//! through pcscd. Everything each receives — every response byte and every
//! plaintext it decrypts, whole — is collected: the two share no field value
//! and no 8-byte substring outside fixed headers (TLV tags and lengths, status
//! words, the SELECT answer, which a second card repeats), the validity dates
//! and the disclosed values (`citycard_testkit::linkage`). A partner in the
//! same group as the first does share the record (the residue of SPEC §11). The in-process version: `crates/citycard-reader/tests/unlinkable.rs`.
#![cfg(test)]

use std::path::Path;

use citycard_card::Applet;
use citycard_e2e::{bench_available, connect, raw_link, vpcd_lock, EmulatorProcess};
use citycard_emulator::FileStore;
use citycard_proto::attr::AttributeId;
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle};
use citycard_testkit::keys::{city, date, reader_in_group, test_key, TestReader, TODAY};
use citycard_testkit::linkage::{self, Received};
use citycard_testkit::script::sample_resident;
use citycard_transport::CardTransport;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Prepares and issues the card in `state` (a file the emulator serves) with
/// all eight groups to `resident`.
fn issue(state: &Path, seed: u8, resident: Vec<(AttributeId, Vec<u8>)>) {
    let store = FileStore::new(state).unwrap();
    let mut card = Applet::new(store, ChaCha20Rng::from_seed([seed; 32]));
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    let issued = linkage::issue(&mut link, &city(), resident, 8, seed).unwrap();
    assert_eq!(issued.records.len(), 8);
    assert_eq!(card.life_cycle(), Some(LifeCycle::Issued));
}

/// Serves `state` with `citycard card emulate` and lets each reader tap once
/// per round through pcscd (the card reset before every tap, as a card
/// entering the field; the first tap of each reader sends its certificate).
fn taps_through_pcscd(
    state: &Path,
    label: &str,
    readers: &[&TestReader],
    rounds: u8,
) -> Vec<Received> {
    let _card = EmulatorProcess::start(state, &[]);
    let mut t = connect();
    let mut received = vec![Received::default(); readers.len()];
    for round in 0..rounds {
        for (r, into) in readers.iter().zip(received.iter_mut()) {
            t.reset().unwrap();
            let mut link = raw_link(&mut t);
            linkage::tap(
                &mut link,
                r,
                date(TODAY),
                test_key(&format!("pcsc groups {label} {} {round}", r.name)),
                round == 0,
                into,
            )
            .unwrap();
        }
    }
    received
}

#[test]
fn partners_of_different_groups_share_nothing_through_pcscd() {
    let _lock = vpcd_lock();
    if !bench_available("partners_of_different_groups_share_nothing_through_pcscd") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (card, other) = (
        tmp.path().join("card.state"),
        tmp.path().join("other.state"),
    );
    issue(&card, 31, sample_resident());
    issue(&other, 32, linkage::other_resident());
    let city = city();
    // Partners in groups 1 and 6; a third partner in group 1.
    let a = reader_in_group(&city, "full", 1);
    let b = reader_in_group(&city, "library", 6);
    let same_group = reader_in_group(&city, "transit", 1);

    let seen = taps_through_pcscd(&card, "card", &[&a, &b, &same_group], 5);
    let (ra, rb, rc) = (&seen[0], &seen[1], &seen[2]);
    let other_seen = taps_through_pcscd(&other, "other card", &[&a, &b, &same_group], 1);
    // The SELECT answer is a fixed header: the same on every tap of every card.
    let fci = &seen[0].fci[0];
    for r in seen.iter().chain(&other_seen) {
        assert!(r.fci.iter().all(|f| f == fci));
    }

    for (r, g) in [(ra, 1u8), (rb, 6u8), (rc, 1u8)] {
        assert_eq!(r.disclosures.len(), 5);
        let first = r.disclosures[0].record.as_bytes();
        assert!(r.disclosures.iter().all(|d| d.record.as_bytes() == first));
        assert_eq!(r.disclosures[0].record.body().group, g);
        // The whole exchange was collected: a SELECT answer, an answer and
        // a plaintext per tap, the PSO of the first.
        assert_eq!(
            (r.fci.len(), r.answers.len(), r.plaintexts.len()),
            (5, 5, 5)
        );
        assert_eq!(r.other.len(), 1);
    }

    let ab = linkage::common(ra, rb);
    assert!(ab.is_empty(), "partners of groups 1 and 6 share: {ab}");

    // The residue: same group, same record.
    let ac = linkage::common(ra, rc);
    for field in ["record", "card key", "signature", "revocation id"] {
        assert!(
            ac.fields.iter().any(|(n, m, _)| n == field && m == field),
            "{field}: {ac}"
        );
    }
    assert!(!ac.fields.iter().any(|(n, _, _)| n == "pseudonym"), "{ac}");

    // Both read the resident flag: the same value, unrelated salts.
    let resident = |r: &Received| {
        r.disclosures[0]
            .entries
            .iter()
            .find(|e| e.id == AttributeId::RESIDENT)
            .and_then(|e| e.present.clone())
            .unwrap()
    };
    let ((sa, va), (sb, vb)) = (resident(ra), resident(rb));
    assert_eq!(va, vb);
    assert_ne!(sa, sb);
}
