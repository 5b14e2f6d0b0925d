//! Issued cards live for years: every state file written by a released
//! version (`tests/state_test_data/<version>/`) must still load, and the card
//! must still answer a library tap that verifies (STYLE 12).
#![cfg(test)]

use citycard_card::{Applet, PersistentState, Storage};
use citycard_emulator::FileStore;
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle};
use citycard_testkit::script::tap_library;
use rand_chacha::rand_core::SeedableRng;

#[test]
fn every_released_card_state_still_loads_and_verifies() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/state_test_data");
    let mut versions = 0;
    for entry in std::fs::read_dir(&root).expect("state_test_data") {
        let dir = entry.unwrap().path();
        versions += 1;
        let raw = std::fs::read(dir.join("card-issued.state.bin")).unwrap();
        let state = PersistentState::decode(&raw)
            .unwrap_or_else(|_| panic!("{}: state no longer decodes", dir.display()));
        assert_eq!(state.life_cycle, LifeCycle::Issued);
        assert_eq!(state.cache.len(), 1, "the library certificate is cached");
        // As the emulator's state file: copy it (the card writes to it) and tap.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(dir.join("card-issued.state"), tmp.path().join("card.state")).unwrap();
        let mut store = FileStore::new(tmp.path().join("card.state")).unwrap();
        assert_eq!(
            store.load().unwrap().as_deref(),
            Some(&raw[..]),
            "{}",
            dir.display()
        );
        let mut card = Applet::new(store, rand_chacha::ChaCha20Rng::from_seed([9; 32]));
        assert_eq!(card.life_cycle(), Some(LifeCycle::Issued));
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let d = tap_library(&mut link, false, "fixture tap")
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(d.pseudonym.is_some());
        d.record
            .verify(&citycard_testkit::keys::city().station.public_key())
            .unwrap();
    }
    assert!(versions >= 1);
}

/// A state written by protocol version 1 (never deployed) is not a version-2
/// card: it does not decode, and the card answers `6F00` (state unreadable)
/// instead of guessing.
#[test]
fn a_protocol_1_state_is_refused_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/state_test_data_protocol_v1");
    let raw = std::fs::read(dir.join("card-issued.state.bin")).unwrap();
    assert!(PersistentState::decode(&raw).is_err());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("card-issued.state"), tmp.path().join("card.state")).unwrap();
    let store = FileStore::new(tmp.path().join("card.state")).unwrap();
    let mut card = Applet::new(store, rand_chacha::ChaCha20Rng::from_seed([9; 32]));
    assert_eq!(card.life_cycle(), None);
    let select = citycard_proto::fci::select_command()
        .to_short_bytes()
        .unwrap();
    assert_eq!(card.transmit(&select).unwrap(), vec![0x6F, 0x00]);
}
