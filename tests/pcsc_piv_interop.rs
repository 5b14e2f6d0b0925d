//! The emulated PIV card (`citycard-piv-card`) through the real PC/SC stack
//! (pcscd + vpcd), driven by the real peer tools: OpenSC's `opensc-tool` and
//! `pkcs11-tool` (opensc-pkcs11.so) and Yubico's `yubico-piv-tool`.
//!
//! Needs `tools/testbench start` (pcscd with vpcd) and the tools installed
//! (`tools/testbench install`).
#![cfg(test)]

use std::path::Path;

use citycard_e2e::{
    bench_available, citycard_ok, connect, piv_tool, piv_tool_ok, run_ok, vpcd_lock,
    EmulatorProcess, ServedCard, PKCS11_MODULE, READER,
};
use citycard_emulator::FileStore;
use citycard_piv_card::{PivCard, PIV_AID};
use citycard_proto::crypto::sha256;
use citycard_transport::CardTransport;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use p256::PublicKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const SUBJECT: &str = "citycard piv test";

/// Serves a PIV card over the state file `state` in-process.
fn serve_piv(state: &Path, seed: u8) -> ServedCard {
    let state = state.to_path_buf();
    ServedCard::serve_card(move || {
        PivCard::new(
            FileStore::new(state).expect("state file"),
            ChaCha20Rng::from_seed([seed; 32]),
        )
    })
}

/// `yubico-piv-tool -a generate -s SLOT -A ECCP256`: the PEM public key it prints.
fn generate_with_piv_tool(slot: &str, extra: &[&str]) -> PublicKey {
    let mut args = vec!["-a", "generate", "-s", slot, "-A", "ECCP256"];
    args.extend_from_slice(extra);
    let pem = piv_tool_ok(&args);
    assert!(pem.contains("-----BEGIN PUBLIC KEY-----"), "{pem}");
    PublicKey::from_public_key_pem(pem.trim()).expect("a P-256 public key in PEM")
}

/// Raw APDUs through PC/SC: SELECT, then one APDU; (data, SW).
fn select_then(apdu: &[u8]) -> (Vec<u8>, u16) {
    let mut t = connect();
    let mut select = vec![0x00, 0xA4, 0x04, 0x00, PIV_AID.len() as u8];
    select.extend_from_slice(&PIV_AID);
    select.push(0x00);
    let r = t.transmit_raw(&select).expect("SELECT");
    assert_eq!(r[r.len() - 2..], [0x90, 0x00], "SELECT answered {r:02X?}");
    let r = t.transmit_raw(apdu).expect("APDU");
    let (data, sw) = r.split_at(r.len() - 2);
    (data.to_vec(), u16::from_be_bytes([sw[0], sw[1]]))
}

/// Signs `prehash` with the card's slot 9E (no PIN) over PC/SC; the DER signature.
fn sign_9e(prehash: &[u8; 32]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00, 0x81, 0x20];
    inner.extend_from_slice(prehash);
    let mut apdu = vec![
        0x00,
        0x87,
        0x11,
        0x9E,
        inner.len() as u8 + 2,
        0x7C,
        inner.len() as u8,
    ];
    apdu.extend_from_slice(&inner);
    apdu.push(0x00);
    let (r, sw) = select_then(&apdu);
    assert_eq!(sw, 0x9000, "GENERAL AUTHENTICATE 9E: {sw:04X}");
    assert_eq!((r[0], r[2]), (0x7C, 0x82));
    r[4..4 + r[3] as usize].to_vec()
}

fn verifies(public: &PublicKey, prehash: &[u8], der: &[u8]) -> bool {
    let sig = Signature::from_der(der).expect("DER ECDSA signature");
    VerifyingKey::from(public)
        .verify_prehash(prehash, &sig)
        .is_ok()
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A self-signed X.509 certificate for the card's 9E key, signed by the card
/// itself over PC/SC (yubico-piv-tool 2.2.0's `selfsign-certificate` fails
/// with OpenSSL 3, Yubico/yubico-piv-tool#388, so the test builds it).
fn self_signed_certificate(public: &PublicKey) -> Vec<u8> {
    certificate(public, SUBJECT, public)
}

/// An X.509 certificate for `public` named `CN=subject`, signed by the card's
/// 9E key (whose public key is `card_authentication`).
fn certificate(public: &PublicKey, subject: &str, card_authentication: &PublicKey) -> Vec<u8> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let ecdsa_sha256 = der(
        0x30,
        &der(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]),
    );
    let name = der(
        0x30,
        &der(
            0x31,
            &der(
                0x30,
                &[
                    der(0x06, &[0x55, 0x04, 0x03]),
                    der(0x0C, subject.as_bytes()),
                ]
                .concat(),
            ),
        ),
    );
    let validity = der(
        0x30,
        &[der(0x17, b"250101000000Z"), der(0x17, b"350101000000Z")].concat(),
    );
    let algorithm = der(
        0x30,
        &[
            der(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01]),
            der(0x06, &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]),
        ]
        .concat(),
    );
    let point = public.to_encoded_point(false);
    let spki = der(
        0x30,
        &[
            algorithm,
            der(0x03, &[&[0u8][..], point.as_bytes()].concat()),
        ]
        .concat(),
    );
    let tbs = der(
        0x30,
        &[
            der(0xA0, &der(0x02, &[2])),
            der(0x02, &[0x01]),
            ecdsa_sha256.clone(),
            name.clone(),
            validity,
            name,
            spki,
        ]
        .concat(),
    );
    let digest = sha256(&[&tbs]);
    let signature = sign_9e(&digest);
    assert!(verifies(card_authentication, &digest, &signature));
    der(
        0x30,
        &[
            tbs,
            ecdsa_sha256,
            der(0x03, &[&[0u8][..], &signature].concat()),
        ]
        .concat(),
    )
}

/// Writes `cert` (DER) to `path` and imports it into `slot` with
/// `yubico-piv-tool -a import-certificate`.
fn import_certificate(slot: &str, cert: &[u8], path: &Path) {
    std::fs::write(path, cert).unwrap();
    piv_tool_ok(&[
        "-a",
        "import-certificate",
        "-s",
        slot,
        "-K",
        "DER",
        "-i",
        path.to_str().unwrap(),
    ]);
}

/// Signs the file `data` through OpenSC's PKCS#11 module with the key of
/// PKCS#11 `id` (after a login with the default PIN), the signature to
/// `sig_path`; the DER signature.
fn pkcs11_sign(id: &str, data: &Path, sig_path: &Path) -> Vec<u8> {
    run_ok(
        "pkcs11-tool",
        &[
            "--module",
            PKCS11_MODULE,
            "--login",
            "--pin",
            "123456",
            "--sign",
            "-m",
            "ECDSA-SHA256",
            "--id",
            id,
            "--signature-format",
            "openssl",
            "-i",
            data.to_str().unwrap(),
            "-o",
            sig_path.to_str().unwrap(),
        ],
    );
    std::fs::read(sig_path).unwrap()
}

/// `citycard card show --state STATE`, parsed.
fn card_show(state: &Path) -> serde_json::Value {
    serde_json::from_str(&citycard_ok(&[
        "card",
        "show",
        "--state",
        state.to_str().unwrap(),
    ]))
    .unwrap()
}

#[test]
fn opensc_tool_binds_the_piv_driver() {
    let _lock = vpcd_lock();
    if !bench_available("opensc_tool_binds_the_piv_driver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = serve_piv(&dir.path().join("piv.state"), 1);
    let out = run_ok("opensc-tool", &["-r", READER, "-n"]);
    assert_eq!(out.trim(), "Personal Identity Verification Card");
    // The ATR is ours (PIV AID in the historical bytes), not a YubiKey's.
    let out = run_ok("opensc-tool", &["-r", READER, "-a"]);
    assert_eq!(
        out.trim().to_ascii_uppercase(),
        "3B:8D:80:01:80:FB:A0:00:00:03:08:00:00:10:00:01:00:CD"
    );
}

#[test]
fn yubico_piv_tool_status_shows_what_was_written() {
    let _lock = vpcd_lock();
    if !bench_available("yubico_piv_tool_status_shows_what_was_written") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = serve_piv(&dir.path().join("piv.state"), 2);
    let status = piv_tool_ok(&["-a", "status"]);
    assert!(status.contains("CHUID:\tNo data available"), "{status}");
    assert!(status.contains("PIN tries left:\t3"), "{status}");
    assert!(!status.contains("Slot 9e"), "{status}");

    piv_tool_ok(&["-a", "set-chuid", "-a", "set-ccc"]);
    let public = generate_with_piv_tool("9e", &[]);
    let cert_path = dir.path().join("9e.der");
    import_certificate("9e", &self_signed_certificate(&public), &cert_path);
    // A wrong PIN costs a try.
    let (code, _, err) = piv_tool(&["-a", "verify-pin", "-P", "000000"]);
    assert_ne!(code, 0);
    assert!(err.contains("2 tries left"), "{err}");

    // The CHUID yubico-piv-tool wrote is what GET DATA answers.
    let (chuid, sw) = select_then(&[
        0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00,
    ]);
    assert_eq!(sw, 0x9000);
    assert_eq!(chuid[0], 0x53);
    let chuid_hex: String = chuid[2..].iter().map(|b| format!("{b:02x}")).collect();

    let status = piv_tool_ok(&["-a", "status"]);
    assert!(status.contains(&format!("CHUID:\t{chuid_hex}")), "{status}");
    assert!(status.contains("Slot 9e:"), "{status}");
    assert!(status.contains("Algorithm:\tECCP256"), "{status}");
    assert!(
        status.contains(&format!("Subject DN:\tCN={SUBJECT}")),
        "{status}"
    );
    assert!(status.contains("PIN tries left:\t2"), "{status}");
    assert!(!status.contains("Slot 9a"), "{status}");

    // write-object / read-object of a PIN-protected object (printed information).
    let obj = dir.path().join("printed.bin");
    std::fs::write(&obj, b"resident of citycard").unwrap();
    let obj = obj.to_str().unwrap();
    piv_tool_ok(&[
        "-a",
        "write-object",
        "--id",
        "0x5fc109",
        "-f",
        "binary",
        "-i",
        obj,
    ]);
    let (code, _, _) = piv_tool(&["-a", "read-object", "--id", "0x5fc109", "-f", "binary"]);
    assert_ne!(code, 0, "printed information needs the PIN");
    let out = piv_tool_ok(&[
        "-a",
        "verify-pin",
        "-P",
        "123456",
        "-a",
        "read-object",
        "--id",
        "0x5fc109",
        "-f",
        "binary",
    ]);
    assert_eq!(out, "resident of citycard");
}

#[test]
fn yubico_piv_tool_generates_a_key_the_card_signs_with() {
    let _lock = vpcd_lock();
    if !bench_available("yubico_piv_tool_generates_a_key_the_card_signs_with") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = serve_piv(&dir.path().join("piv.state"), 3);
    let public = generate_with_piv_tool("9e", &[]);
    let challenge = sha256(&[b"a reader's challenge"]);
    let signature = sign_9e(&challenge);
    assert!(verifies(&public, &challenge, &signature));
    assert!(!verifies(&public, &sha256(&[b"another"]), &signature));
    // A second generation replaces the key: the old public key no longer verifies.
    let newer = generate_with_piv_tool("9e", &[]);
    assert_ne!(newer, public);
    let signature = sign_9e(&challenge);
    assert!(verifies(&newer, &challenge, &signature));
    assert!(!verifies(&public, &challenge, &signature));
    // Unsupported algorithms are refused by the card.
    let (code, _, err) = piv_tool(&["-a", "generate", "-s", "9a", "-A", "RSA2048"]);
    assert_ne!(code, 0, "RSA is not supported: {err}");
}

#[test]
fn yubico_piv_tool_set_mgm_key_replaces_the_management_key() {
    let _lock = vpcd_lock();
    if !bench_available("yubico_piv_tool_set_mgm_key_replaces_the_management_key") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = serve_piv(&dir.path().join("piv.state"), 4);
    const NEW: &str = "0102030405060708090A0B0C0D0E0F101112131415161718";
    let out = piv_tool_ok(&["-a", "set-mgm-key", "-n", NEW]);
    assert!(out.contains("Successfully set new management key") || out.is_empty());
    let (code, _, err) = piv_tool(&["-a", "generate", "-s", "9a", "-A", "ECCP256"]);
    assert_ne!(code, 0, "the default key must no longer work");
    assert!(err.contains("Failed authentication"), "{err}");
    let key_arg = format!("-k{NEW}");
    let public = generate_with_piv_tool("9a", &[&key_arg]);
    let (code, _, _) = piv_tool(&["-a", "set-mgm-key", "-n", NEW]);
    assert_ne!(code, 0, "set-mgm-key with the old default key fails");
    // The key is persistent: a fresh card process over the same state.
    drop(_card);
    let _card = serve_piv(&dir.path().join("piv.state"), 5);
    let (code, _, _) = piv_tool(&["-a", "generate", "-s", "9a", "-A", "ECCP256"]);
    assert_ne!(code, 0);
    assert_ne!(generate_with_piv_tool("9a", &[&key_arg]), public);
}

#[test]
fn pkcs11_tool_lists_the_token_and_signs_with_card_authentication() {
    let _lock = vpcd_lock();
    if !bench_available("pkcs11_tool_lists_the_token_and_signs_with_card_authentication") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = serve_piv(&dir.path().join("piv.state"), 6);
    let list = run_ok("pkcs11-tool", &["--module", PKCS11_MODULE, "-L"]);
    let ours = list
        .split("Slot ")
        .find(|s| s.contains(READER))
        .unwrap_or_else(|| panic!("no slot for {READER}:\n{list}"));
    assert!(ours.contains("token label        : PIV_II"), "{ours}");
    assert!(
        ours.contains("token initialized, PIN initialized"),
        "{ours}"
    );

    piv_tool_ok(&["-a", "set-chuid"]);
    let public = generate_with_piv_tool("9e", &[]);
    let cert_path = dir.path().join("9e.der");
    import_certificate("9e", &self_signed_certificate(&public), &cert_path);

    let objects = run_ok("pkcs11-tool", &["--module", PKCS11_MODULE, "-O"]);
    assert!(
        objects.contains("Card Holder Unique Identifier"),
        "{objects}"
    );
    assert!(objects.contains("Private Key Object; EC"), "{objects}");
    assert!(
        objects.contains(&format!("subject:    DN: CN={SUBJECT}")),
        "{objects}"
    );
    // The public key OpenSC reports is the one the card generated.
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let point: String = public
        .to_encoded_point(false)
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        objects.contains(&point),
        "EC_POINT {point} not in:\n{objects}"
    );

    // Sign through OpenSC's PKCS#11 module with the Card Authentication key (ID 04).
    let data = dir.path().join("data.txt");
    std::fs::write(&data, b"a library desk checks a card").unwrap();
    let sig_path = dir.path().join("sig.der");
    let signature = pkcs11_sign("04", &data, &sig_path);
    let digest = sha256(&[b"a library desk checks a card"]);
    assert!(verifies(&public, &digest, &signature));
    assert!(!verifies(
        &public,
        &sha256(&[b"something else"]),
        &signature
    ));

    // Digital Signature (9C, ID 02) needs the PIN right before each use:
    // OpenSC logs in again (context-specific) before the signature.
    let signing = generate_with_piv_tool("9c", &[]);
    let cert = certificate(&signing, "citycard signer", &public);
    import_certificate("9c", &cert, &cert_path);
    let signature = pkcs11_sign("02", &data, &sig_path);
    assert!(verifies(&signing, &digest, &signature));
    assert!(!verifies(&public, &digest, &signature));
}

#[test]
fn citycard_emulate_profile_piv_persists_and_the_clone_fault_signs_with_another_key() {
    let _lock = vpcd_lock();
    if !bench_available(
        "citycard_emulate_profile_piv_persists_and_the_clone_fault_signs_with_another_key",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("piv.state");
    let seed = "42".repeat(32);
    let emulator = EmulatorProcess::start(&state, &["--profile", "piv", "--seed", &seed]);
    let out = run_ok("opensc-tool", &["-r", READER, "-n"]);
    assert_eq!(out.trim(), "Personal Identity Verification Card");
    let public = generate_with_piv_tool("9e", &[]);
    piv_tool_ok(&["-a", "set-chuid"]);
    emulator.kill();

    let show = card_show(&state);
    assert_eq!(show["profile"], "piv");
    assert_eq!(show["key_slots"], serde_json::json!(["9e"]));
    assert_eq!(show["objects"], serde_json::json!(["5fc102"]));
    assert_eq!(show["pin_tries_left"], 3);

    let challenge = sha256(&[b"gate challenge"]);
    let clone = EmulatorProcess::start(&state, &["--profile", "piv", "--fault", "clone"]);
    let signature = sign_9e(&challenge);
    assert!(
        !verifies(&public, &challenge, &signature),
        "a clone's signature must not verify"
    );
    // The clone still shows the same data objects.
    let status = piv_tool_ok(&["-a", "status"]);
    assert!(!status.contains("CHUID:\tNo data available"), "{status}");
    clone.kill();

    let genuine = EmulatorProcess::start(&state, &["--profile", "piv"]);
    let signature = sign_9e(&challenge);
    assert!(verifies(&public, &challenge, &signature));
    genuine.kill();
}

#[test]
fn a_torn_key_generation_leaves_the_old_state() {
    let _lock = vpcd_lock();
    if !bench_available("a_torn_key_generation_leaves_the_old_state") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("piv.state");
    // The first write (the CHUID) completes, the second (key generation) is torn.
    let emulator = EmulatorProcess::start(
        &state,
        &["--profile", "piv", "--fault", "tear-after-writes=1"],
    );
    piv_tool_ok(&["-a", "set-chuid"]);
    let (code, out, _) = piv_tool(&["-a", "generate", "-s", "9e", "-A", "ECCP256"]);
    assert_ne!(code, 0, "a torn generation cannot print a key: {out}");
    assert_eq!(
        emulator.wait_exit(std::time::Duration::from_secs(10)),
        Some(75),
        "the emulator exits like a pulled card"
    );
    // The card died in the middle of yubico-piv-tool's transaction: pcscd
    // marks the reader MUTE (which `wait_for_removal` counts as empty) and
    // only notices the card is gone at its next presence poll. A new card
    // connected before that poll is never powered up; give pcscd the poll.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let show = card_show(&state);
    assert_eq!(show["objects"], serde_json::json!(["5fc102"]));
    assert_eq!(show["key_slots"], serde_json::json!([]));
    // The card works on: the next generation succeeds and persists.
    let _card = EmulatorProcess::start(&state, &["--profile", "piv"]);
    let public = generate_with_piv_tool("9e", &[]);
    let challenge = sha256(&[b"after the tear"]);
    assert!(verifies(&public, &challenge, &sign_9e(&challenge)));
}
