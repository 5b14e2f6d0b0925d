//! PIV management keys as secret key objects on a PKCS#11 token, against a
//! real SoftHSM2 (same set-up as `pkcs11_softhsm.rs`: one token directory per
//! test binary, one token per test), and one mutual authentication with the
//! emulated PIV card driven by the token key.
#![cfg(test)]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::{module_path, PIN};

use citycard_card::MemoryStorage;
use citycard_keys::{
    is_factory_default, open_management_key, FixedSecrets, KeyError, ManagementKey,
    ManagementKeyLocation, Pkcs11Location, Pkcs11ManagementKey, SoftManagementKey,
};
use citycard_piv_card::PivCard;
use citycard_proto::apdu::ContactlessCard;
use citycard_proto::piv::{self, ManagementAlgorithm, DEFAULT_MANAGEMENT_KEY};
use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use rand_chacha::rand_core::SeedableRng;

const TOKENS: &[&str] = &["des3", "aes", "default", "missing", "card"];
const CITY_KEY: [u8; 24] = [
    0x3A, 0x91, 0x5C, 0x07, 0xE2, 0x44, 0x1B, 0x68, 0x9F, 0x10, 0xD3, 0x7E, 0x25, 0xB6, 0x81, 0x4C,
    0x0D, 0xF9, 0x62, 0xA7, 0x33, 0xC8, 0x5E, 0x14,
];

struct Hsm {
    module: PathBuf,
    /// The test's own context for importing keys: initialised here, once,
    /// before anything else loads the module, and never dropped (dropping
    /// finalizes the library under every other test's sessions).
    ctx: Pkcs11,
    _dir: tempfile::TempDir,
}

fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let module = module_path();
        let dir = common::init_tokens(TOKENS);
        let ctx = Pkcs11::new(&module).unwrap();
        ctx.initialize(CInitializeArgs::OsThreads).unwrap();
        Hsm {
            module,
            ctx,
            _dir: dir,
        }
    })
}

fn loc(token: &str, label: &str) -> Pkcs11Location {
    Pkcs11Location {
        module: hsm().module.clone(),
        token: token.into(),
        key_label: label.into(),
    }
}

/// The 3DES management key labelled `label` on `token`.
fn open_3des(
    token: &str,
    label: &str,
    secrets: &FixedSecrets,
) -> Result<Pkcs11ManagementKey, KeyError> {
    Pkcs11ManagementKey::open(&loc(token, label), ManagementAlgorithm::TripleDes, secrets)
}

fn pin() -> FixedSecrets {
    FixedSecrets::new("unused", PIN)
}

/// Imports a secret key the way a city would put its management key on the
/// HSM (sensitive, not extractable, encrypt and decrypt only).
fn import(token: &str, label: &str, key_type: KeyType, value: &[u8]) {
    let ctx = &hsm().ctx;
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(key_type),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Value(value.to_vec()),
        ])
        .unwrap();
}

fn same_as_soft(token_key: &dyn ManagementKey, soft: &SoftManagementKey) {
    let n = soft.algorithm().block_len();
    for seed in 0u8..8 {
        let block: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(31) ^ seed).collect();
        let ct = token_key.encrypt_block(&block).unwrap();
        assert_eq!(ct, soft.encrypt_block(&block).unwrap());
        assert_ne!(ct, block);
        assert_eq!(token_key.decrypt_block(&ct).unwrap(), block);
    }
    assert!(token_key.encrypt_block(&[0; 5]).is_err());
}

#[test]
fn a_3des_token_key_does_what_the_file_key_does() {
    import("des3", "city-mgm", KeyType::DES3, &CITY_KEY);
    let l = ManagementKeyLocation::Pkcs11(loc("des3", "city-mgm"));
    let key = open_management_key(&l, ManagementAlgorithm::TripleDes, &pin()).unwrap();
    assert_eq!(key.algorithm(), ManagementAlgorithm::TripleDes);
    assert!(
        key.locator().contains("type=secret-key"),
        "{}",
        key.locator()
    );
    let soft = SoftManagementKey::new(ManagementAlgorithm::TripleDes, &CITY_KEY, "test").unwrap();
    same_as_soft(key.as_ref(), &soft);
    assert!(!is_factory_default(key.as_ref()).unwrap());
    // The wrong algorithm for the object is refused when opening.
    let err = open_management_key(&l, ManagementAlgorithm::Aes192, &pin()).unwrap_err();
    assert!(matches!(err, KeyError::BadManagementKey { .. }), "{err:?}");
}

#[test]
fn aes_token_keys_are_checked_for_length() {
    import("aes", "mgm-192", KeyType::AES, &CITY_KEY);
    let l = loc("aes", "mgm-192");
    let key = Pkcs11ManagementKey::open(&l, ManagementAlgorithm::Aes192, &pin()).unwrap();
    let soft = SoftManagementKey::new(ManagementAlgorithm::Aes192, &CITY_KEY, "test").unwrap();
    same_as_soft(&key, &soft);
    for wrong in [
        ManagementAlgorithm::Aes128,
        ManagementAlgorithm::Aes256,
        ManagementAlgorithm::TripleDes,
    ] {
        let err = Pkcs11ManagementKey::open(&l, wrong, &pin()).unwrap_err();
        assert!(
            matches!(err, KeyError::BadManagementKey { .. }),
            "{wrong:?}: {err:?}"
        );
    }
}

#[test]
fn the_factory_key_on_a_token_is_recognised() {
    import("default", "mgm", KeyType::DES3, &DEFAULT_MANAGEMENT_KEY);
    let key = open_3des("default", "mgm", &pin()).unwrap();
    assert!(is_factory_default(&key).unwrap());
}

#[test]
fn a_missing_key_and_a_wrong_pin_are_distinct_errors() {
    let err = open_3des("missing", "nope", &pin()).unwrap_err();
    assert!(matches!(err, KeyError::KeyNotFound { .. }), "{err:?}");
    let err = open_3des("missing", "nope", &FixedSecrets::new("", "0000")).unwrap_err();
    assert!(matches!(err, KeyError::WrongPin(_)), "{err:?}");
}

fn exchange(
    card: &mut impl ContactlessCard,
    cmd: &citycard_proto::apdu::Command,
) -> (Vec<u8>, u16) {
    let mut r = card.transmit(&cmd.to_short_bytes().unwrap()).unwrap();
    let sw = r.split_off(r.len() - 2);
    (r, u16::from_be_bytes([sw[0], sw[1]]))
}

/// The token key authenticates to a PIV card whose management key it is
/// (the emulated card, its key set with the Yubico SET MANAGEMENT KEY command).
#[test]
fn the_token_key_authenticates_to_a_piv_card() {
    import("card", "mgm", KeyType::DES3, &CITY_KEY);
    let key = open_3des("card", "mgm", &pin()).unwrap();
    let factory = SoftManagementKey::factory_default(ManagementAlgorithm::TripleDes);
    let mut card = PivCard::new(
        MemoryStorage::new(),
        rand_chacha::ChaCha20Rng::from_seed([4; 32]),
    );
    let authenticate = |card: &mut PivCard<_, _>, k: &dyn ManagementKey| -> bool {
        let alg = k.algorithm();
        let (data, sw) = exchange(card, &piv::management_witness_request(alg));
        assert_eq!(sw, 0x9000);
        let witness = piv::parse_management_witness(&data, alg).unwrap();
        let plain = k.decrypt_block(&witness).unwrap();
        let challenge = vec![0x42; alg.block_len()];
        let (data, sw) = exchange(
            card,
            &piv::management_response_command(alg, &plain, &challenge),
        );
        if sw != 0x9000 {
            return false;
        }
        piv::parse_management_response(&data, alg).unwrap() == k.encrypt_block(&challenge).unwrap()
    };
    assert_eq!(exchange(&mut card, &piv::select_command()).1, 0x9000);
    assert!(!authenticate(&mut card, &key));
    assert!(authenticate(&mut card, &factory));
    let mut set = vec![0x03, 0x9B, 24];
    set.extend_from_slice(&CITY_KEY);
    let (_, sw) = exchange(
        &mut card,
        &citycard_proto::apdu::Command::new(0x00, 0xFF, 0xFF, 0xFF).with_data(set),
    );
    assert_eq!(sw, 0x9000);
    assert!(authenticate(&mut card, &key));
    assert!(!authenticate(&mut card, &factory));
}
