//! Stored-state fixtures: a card issued with version 1 of the state format
//! must still load, unchanged, in every later version.
#![cfg(test)]

use citycard_card::{MemoryStorage, Storage};
use citycard_piv_card::{PivCard, PivState, Summary};
use citycard_proto::apdu::ContactlessCard;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Version 1: management-key authenticated, a key generated in 9E, a CHUID
/// (`chuid1`) written, one wrong PIN (seed `09`×32).
const V1: &str = include_str!("state_test_data/piv-state-v1.hex");

#[test]
fn version_1_state_loads_and_serves() {
    let bytes = hex::decode(V1.trim()).unwrap();
    let state = PivState::decode(&bytes).unwrap();
    assert_eq!(
        state.encode().as_slice(),
        &bytes[..],
        "re-encodes identically"
    );
    let summary = Summary::of(&state);
    assert_eq!(summary.key_slots, [0x9E]);
    assert_eq!(summary.objects, [0x5FC102]);
    assert_eq!((summary.pin_tries_left, summary.puk_tries_left), (2, 3));
    assert_eq!(summary.management_key_algorithm, 0x03);

    let mut storage = MemoryStorage::new();
    storage.commit(&bytes).unwrap();
    let mut card = PivCard::new(storage, ChaCha20Rng::from_seed([0; 32]));
    assert!(card
        .transmit(&[0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8])
        .unwrap()
        .ends_with(&[0x90, 0x00]));
    let r = card
        .transmit(&[0, 0xCB, 0x3F, 0xFF, 5, 0x5C, 3, 0x5F, 0xC1, 0x02, 0])
        .unwrap();
    assert_eq!(r, b"\x53\x06chuid1\x90\x00");
    assert_eq!(card.transmit(&[0, 0x20, 0, 0x80]).unwrap(), [0x63, 0xC2]);
    let hash = [0x11u8; 32];
    let mut sign = vec![0, 0x87, 0x11, 0x9E, 38, 0x7C, 36, 0x82, 0, 0x81, 32];
    sign.extend_from_slice(&hash);
    let r = card.transmit(&sign).unwrap();
    assert!(r.ends_with(&[0x90, 0x00]));
    let signature = Signature::from_der(&r[4..r.len() - 2]).unwrap();
    let public = state.public_key(0x9E).unwrap();
    assert!(VerifyingKey::from(&public)
        .verify_prehash(&hash, &signature)
        .is_ok());
}
