//! Keys on a PKCS#11 token, against a real SoftHSM2.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and the process
//! initialises each module once, so this test binary has one token directory
//! (in a temporary directory) with one token per test, all created with
//! `softhsm2-util` before the library is first loaded.
#![cfg(test)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{module_path, PIN};

use citycard_keys::{
    generate, open, FixedSecrets, KeyError, KeyLocation, Pkcs11Location, Pkcs11Signer, Signer,
};

/// One token per test, so tests can run in parallel and log in independently.
const TOKENS: &[&str] = &["gen", "attrs", "pin", "dup", "missing-key", "debug", "many"];

struct Hsm {
    module: PathBuf,
    _dir: tempfile::TempDir,
}

fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let module = module_path();
        // Before any thread loads the module; every test calls hsm() first.
        let dir = common::init_tokens(TOKENS);
        Hsm { module, _dir: dir }
    })
}

fn loc(token: &str, key_label: &str) -> Pkcs11Location {
    Pkcs11Location {
        module: hsm().module.clone(),
        token: token.into(),
        key_label: key_label.into(),
    }
}

fn pin() -> FixedSecrets {
    FixedSecrets::new("unused passphrase", PIN)
}

#[test]
fn generate_sign_verify_reopen() {
    let l = KeyLocation::Pkcs11(loc("gen", "station-1"));
    let signer = generate(&l, &pin()).unwrap();
    assert!(
        signer
            .locator()
            .starts_with("pkcs11:token=gen;object=station-1;type=private"),
        "{}",
        signer.locator()
    );
    assert_eq!(signer.locator(), l.locator());

    let msg = b"resident record #1";
    let sig = signer.sign(msg).unwrap();
    citycard_proto::crypto::verify(&signer.public_key(), msg, &sig).unwrap();
    assert!(citycard_proto::crypto::verify(&signer.public_key(), b"tampered", &sig).is_err());

    // A second signer, in its own session, while the first is open.
    let again = open(&l, &pin()).unwrap();
    assert_eq!(again.public_key(), signer.public_key());
    let sig2 = again.sign(msg).unwrap();
    citycard_proto::crypto::verify(&signer.public_key(), msg, &sig2).unwrap();

    // And after every session on the token is closed (which logs out).
    let public = signer.public_key();
    drop(signer);
    drop(again);
    let third = open(&l, &pin()).unwrap();
    assert_eq!(third.public_key(), public);
    citycard_proto::crypto::verify(&public, b"x", &third.sign(b"x").unwrap()).unwrap();

    // The signer can move to another thread (Signer: Send).
    let handle = std::thread::spawn(move || {
        third
            .sign(b"from a thread")
            .map(|s| (s, third.public_key()))
    });
    let (s, pk) = handle.join().unwrap().unwrap();
    citycard_proto::crypto::verify(&pk, b"from a thread", &s).unwrap();
}

#[test]
fn signatures_are_raw_low_s_and_always_verify() {
    let signer = Pkcs11Signer::generate(&loc("many", "k"), &pin()).unwrap();
    for i in 0u32..64 {
        let msg = i.to_be_bytes();
        let sig = signer.sign(&msg).unwrap();
        assert_eq!(sig.len(), 64);
        citycard_proto::crypto::verify(&signer.public_key(), &msg, &sig).unwrap();
        let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        assert!(parsed.normalize_s().is_none(), "high s in signature {i}");
    }
}

#[test]
fn private_key_is_sensitive_and_not_extractable() {
    let signer = Pkcs11Signer::generate(&loc("attrs", "root"), &pin()).unwrap();
    let p = signer.protection().unwrap();
    assert!(p.sensitive, "{p:?}");
    assert!(!p.extractable, "{p:?}");
    assert!(p.always_sensitive, "{p:?}");
    assert!(p.never_extractable, "{p:?}");
    assert!(p.on_token, "{p:?}");
    assert!(
        !p.value_readable,
        "CKA_VALUE of the private key was readable: {p:?}"
    );
    // Same answer through a fresh session.
    let reopened = Pkcs11Signer::open(&loc("attrs", "root"), &pin()).unwrap();
    assert_eq!(reopened.protection().unwrap(), p);
}

#[test]
fn wrong_pin_is_distinct() {
    let bad = FixedSecrets::new("", "0000");
    let err = Pkcs11Signer::generate(&loc("pin", "k"), &bad).unwrap_err();
    assert!(
        matches!(err, KeyError::WrongPin(ref t) if t == "pin"),
        "{err:?}"
    );

    let signer = Pkcs11Signer::generate(&loc("pin", "k"), &pin()).unwrap();
    drop(signer); // closes the only session, which logs out
    let err = Pkcs11Signer::open(&loc("pin", "k"), &bad).unwrap_err();
    assert!(matches!(err, KeyError::WrongPin(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains("0000"));
    // The right PIN still works (SoftHSM2 has not locked it).
    Pkcs11Signer::open(&loc("pin", "k"), &pin()).unwrap();
}

#[test]
fn unknown_token_is_token_not_found() {
    let err = open(&KeyLocation::Pkcs11(loc("no-such-token", "k")), &pin()).unwrap_err();
    assert!(
        matches!(err, KeyError::TokenNotFound(ref t) if t == "no-such-token"),
        "{err:?}"
    );
    let err = generate(&KeyLocation::Pkcs11(loc("no-such-token", "k")), &pin()).unwrap_err();
    assert!(matches!(err, KeyError::TokenNotFound(_)), "{err:?}");
}

#[test]
fn unknown_key_is_key_not_found() {
    let err = open(&KeyLocation::Pkcs11(loc("missing-key", "nope")), &pin()).unwrap_err();
    assert!(matches!(err, KeyError::KeyNotFound { .. }), "{err:?}");
}

#[test]
fn generate_twice_is_already_exists() {
    let l = KeyLocation::Pkcs11(loc("dup", "station-2"));
    let first = generate(&l, &pin()).unwrap();
    let err = generate(&l, &pin()).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists(_)), "{err:?}");
    // Still exactly one key, the first one.
    assert_eq!(open(&l, &pin()).unwrap().public_key(), first.public_key());
    // Another label on the same token is fine.
    let other = generate(&KeyLocation::Pkcs11(loc("dup", "station-3")), &pin()).unwrap();
    assert_ne!(other.public_key(), first.public_key());
}

#[test]
fn bad_module_is_module_load_error() {
    let _ = hsm();
    let l = Pkcs11Location {
        module: "/nonexistent/libnothing.so".into(),
        token: "gen".into(),
        key_label: "k".into(),
    };
    let err = open(&KeyLocation::Pkcs11(l), &pin()).unwrap_err();
    assert!(matches!(err, KeyError::ModuleLoad { .. }), "{err:?}");
}

#[test]
fn debug_output_has_no_pin() {
    let signer = Pkcs11Signer::generate(&loc("debug", "k"), &pin()).unwrap();
    let boxed: Box<dyn Signer> = Box::new(Pkcs11Signer::open(&loc("debug", "k"), &pin()).unwrap());
    for d in [
        format!("{signer:?}"),
        format!("{boxed:?}"),
        format!("{:?}", pin()),
    ] {
        assert!(!d.contains(PIN), "{d}");
        assert!(!d.contains("unused passphrase"), "{d}");
    }
}
