//! Unlinkable partners (SPEC §10.8): two partners in different linkability
//! groups tap the same card many times; everything each of them decrypts is
//! collected, and no card-specific value of one appears in the other's — no
//! common 8-byte substring in keys, signatures, station references, digest
//! slots, salts, revocation ids or pseudonyms. What they may share is what
//! the spec allows: fixed headers, the month-granular validity dates and the
//! disclosed values themselves.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::collections::BTreeSet;

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::attr::AttributeSet;
use citycard_proto::auth::Disclosure;
use citycard_proto::crypto;
use citycard_proto::ContactlessCard;
use citycard_testkit::keys::{city, date, reader_in_group, test_key, TestReader, TODAY};
use citycard_testkit::script::{self, personalise_sample, Script};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The card-specific byte strings of one disclosure (values excluded).
fn card_specific(d: &Disclosure) -> Vec<Vec<u8>> {
    let body = d.record.body();
    let mut out = vec![
        body.station_ref.to_vec(),
        crypto::encode_point(&body.card_key).to_vec(),
        d.record.signature().to_vec(),
        d.record.revocation_id().to_vec(),
    ];
    out.extend(body.slots.iter().map(|s| s.to_vec()));
    for e in &d.entries {
        if let Some((salt, _)) = &e.present {
            out.push(salt.to_vec());
        }
    }
    if let Some(p) = d.pseudonym {
        out.push(p.to_vec());
    }
    out
}

fn windows(items: &[Vec<u8>]) -> BTreeSet<[u8; 8]> {
    items
        .iter()
        .flat_map(|i| i.windows(8).map(|w| <[u8; 8]>::try_from(w).unwrap()))
        .collect()
}

fn taps(card: &mut Applet<MemoryStorage, ChaCha20Rng>, r: &TestReader, n: u8) -> Vec<Disclosure> {
    let requested: AttributeSet = r.certificate.body().grants;
    (0..n)
        .map(|i| {
            card.reset();
            let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
            let mut s = Script::new(&mut link);
            script::verify(
                &mut s,
                r,
                requested,
                date(TODAY),
                test_key(&format!("unlinkable {} {i}", r.name)),
                i == 0,
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn partners_of_different_groups_share_no_card_specific_value() {
    let city = city();
    // Two partners, both granted the name and the pseudonym, in groups 0 and 2.
    let a = reader_in_group(&city, "full", 0);
    let b = reader_in_group(&city, "library", 2);
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([77; 32]));
    {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        personalise_sample(&mut link, true, 78, 3).unwrap();
    }
    let da = taps(&mut card, &a, 12);
    let db = taps(&mut card, &b, 12);

    // Each partner always sees the same record (its group's), and its own group.
    for (d, g) in [(&da, 0u8), (&db, 2u8)] {
        assert!(d
            .iter()
            .all(|x| x.record.as_bytes() == d[0].record.as_bytes()));
        assert_eq!(d[0].record.body().group, g);
    }
    let wa = windows(&da.iter().flat_map(card_specific).collect::<Vec<_>>());
    let wb = windows(&db.iter().flat_map(card_specific).collect::<Vec<_>>());
    let common: Vec<_> = wa.intersection(&wb).collect();
    assert!(
        common.is_empty(),
        "{} common 8-byte substrings",
        common.len()
    );

    // The validity dates are shared (month granular), and only them.
    let (ra, rb) = (da[0].record.body(), db[0].record.body());
    assert_eq!((ra.valid_from, ra.valid_to), (rb.valid_from, rb.valid_to));
    assert_eq!(ra.valid_from.day(), 1);
    assert_ne!(ra.card_key, rb.card_key);
    assert_ne!(da[0].record.revocation_id(), db[0].record.revocation_id());
    assert_ne!(da[0].pseudonym, db[0].pseudonym);

    // A value both may read (resident) is the same value, under unrelated salts.
    let mut shared = 0;
    for ea in &da[0].entries {
        let eb = db[0].entries.iter().find(|e| e.id == ea.id);
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
