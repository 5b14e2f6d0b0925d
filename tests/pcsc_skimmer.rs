//! The skimmer through pcscd (SPEC §10.6): an attacker with an NFC reader and
//! every public certificate, but no partner key, cannot tell a card that met
//! the library from one that did not — the same status words and the same
//! response lengths for the same APDUs — and what it receives does not open.
//! (The operation counts are compared in process: `crates/citycard-card/tests/skimmer.rs`.)
#![cfg(test)]

use std::path::Path;

use citycard_card::Applet;
use citycard_e2e::{bench_available, connect, vpcd_lock, ServedCard};
use citycard_emulator::FileStore;
use citycard_proto::apdu::Command;
use citycard_proto::auth::{AuthRequest, ReaderSession};
use citycard_proto::consts::{cla, ins};
use citycard_proto::{apdu::ContactlessCard, crypto, error::Error};
use citycard_testkit::keys::{city, date, reader, test_key, TestReader, TODAY};
use citycard_testkit::script::{personalise_sample, pso_command, select_command};
use citycard_transport::CardTransport;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// An issued card in `state`; `met` shows it the library certificate first
/// (what a visit to the library leaves: the certificate cached).
fn issue(state: &Path, seed: u8, met: Option<&TestReader>) {
    let store = FileStore::new(state).unwrap();
    let mut card = Applet::new(store, ChaCha20Rng::from_seed([seed; 32]));
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    personalise_sample(&mut link, true, seed, 3).unwrap();
    if let Some(r) = met {
        card.reset();
        card.transmit(&select_command().to_short_bytes().unwrap())
            .unwrap();
        let a = card
            .transmit(&pso_command(&r.certificate).to_short_bytes().unwrap())
            .unwrap();
        assert_eq!(a[a.len() - 2..], [0x90, 0x00]);
    }
}

fn ga(r: &TestReader, label: &str) -> Vec<u8> {
    let data = AuthRequest {
        certificate: r.certificate.fingerprint(),
        reader_ephemeral: crypto::encode_point(&test_key(label).public_key()),
        requested: r.certificate.body().grants,
        date: date(TODAY),
    }
    .encode();
    Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
        .with_data(data)
        .with_le(256)
        .to_short_bytes()
        .unwrap()
}

/// The skimmer's APDUs through pcscd; per exchange (SW, response length).
fn skim(apdus: &[Vec<u8>]) -> Vec<(u16, usize)> {
    let mut t = connect();
    let mut seen = Vec::new();
    for apdu in apdus {
        let mut r = t.transmit_raw(apdu).unwrap();
        loop {
            let sw = u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
            seen.push((sw, r.len()));
            if sw >> 8 != 0x61 {
                break;
            }
            r = t.transmit_raw(&[0x00, 0xC0, 0x00, 0x00, sw as u8]).unwrap();
        }
    }
    seen
}

#[test]
fn a_skimmer_cannot_tell_which_card_met_the_library() {
    let _lock = vpcd_lock();
    if !bench_available("a_skimmer_cannot_tell_which_card_met_the_library") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let city = city();
    let library = reader(&city, "library");
    let full = reader(&city, "full");
    let met = tmp.path().join("met.state");
    let fresh = tmp.path().join("fresh.state");
    issue(&met, 11, Some(&library));
    issue(&fresh, 12, None);
    // First, what a skimmer gets does not open without the library's key,
    // whereas the library (which holds it) gets an answer from the card that
    // met it and a decoy from the other: the two paths differ. (Checked
    // before the skimmer's script, whose PSO caches the certificate.)
    let attacker = test_key("skimmer's own key");
    for (state, seed, real) in [(&met, 23u8, true), (&fresh, 24, false)] {
        let _card = ServedCard::start(state, [seed; 32]);
        let mut t = connect();
        t.transmit_raw(&select_command().to_short_bytes().unwrap())
            .unwrap();
        let session = ReaderSession::with_ephemeral(
            test_key(&format!("probe {seed}")),
            library.certificate.fingerprint(),
            library.certificate.body().grants,
            date(TODAY),
        );
        let mut r = t
            .transmit_raw(&session.command().to_short_bytes().unwrap())
            .unwrap();
        let mut answer = r[..r.len() - 2].to_vec();
        while r[r.len() - 2] == 0x61 {
            r = t
                .transmit_raw(&[0x00, 0xC0, 0x00, 0x00, r[r.len() - 1]])
                .unwrap();
            answer.extend_from_slice(&r[..r.len() - 2]);
        }
        assert_eq!(
            session.open(&answer, &attacker, library.group).unwrap_err(),
            Error::Decoy
        );
        assert_eq!(
            session.open(&answer, &library.key, library.group).is_ok(),
            real
        );
    }
    let apdus = vec![
        select_command().to_short_bytes().unwrap(),
        ga(&library, "skim 1"),
        ga(&full, "skim 2"),
        pso_command(&library.certificate).to_short_bytes().unwrap(),
        pso_command(&full.certificate).to_short_bytes().unwrap(),
        ga(&library, "skim 3"),
    ];
    let seen_met = {
        let _card = ServedCard::start(&met, [21; 32]);
        skim(&apdus)
    };
    let seen_fresh = {
        let _card = ServedCard::start(&fresh, [22; 32]);
        skim(&apdus)
    };
    assert_eq!(seen_met, seen_fresh, "the skimmer tells the cards apart");
    assert!(seen_met.iter().any(|(sw, _)| sw >> 8 == 0x61));
}
