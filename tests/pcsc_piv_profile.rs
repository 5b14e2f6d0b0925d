//! The PIV profile end to end through pcscd + vpcd, with the peer tools in
//! the loop (`applet-spec/piv-profile.md`): a city sets its management key on
//! an emulated PIV card with `yubico-piv-tool`, issues it with `citycard
//! personalise --profile piv`, and partners verify it with `citycard verify`;
//! OpenSC's `pkcs11-tool` and `yubico-piv-tool` read the certificate our
//! issuer wrote; a key generated in 9E by `yubico-piv-tool` is certified by
//! our issuer and verified by our reader; the factory key, a clone and a
//! revoked card each give their refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::{
    bench_available, citycard, enrol_partner, export_trust, issuer_home, piv_tool_ok, run,
    verify_json, vpcd_lock, EmulatorProcess, PKCS11_MODULE, READER,
};
use citycard_proto::piv::CardAuthenticationCertificate;

/// The city's management key (3DES, 24 bytes), set on each card before issuance.
const CITY_KEY: &str = "5a1e7c3b9d2f4e6a8c0b1d3f5e7a9c2b4d6f8e0a1c3e5b7d";

struct City {
    home: String,
    key_file: PathBuf,
    bundle: PathBuf,
    desk: PathBuf,
    transit: PathBuf,
}

fn city(d: &Path) -> City {
    let home = issuer_home(d, "LIEGE", "LG", &[]);
    let desk = enrol_partner(&home, d, "desk", "card_number,resident,age_over_18");
    let transit = enrol_partner(&home, d, "transit", "age_over_18,age_over_65");
    let bundle = d.join("liege.bundle");
    export_trust(&home, &bundle);
    let key_file = d.join("piv-mgm.key");
    std::fs::write(&key_file, format!("{CITY_KEY}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    City {
        home,
        key_file,
        bundle,
        desk,
        transit,
    }
}

fn resident(d: &Path, id: &str, birth: &str) -> PathBuf {
    let p = d.join(format!("{id}.json"));
    std::fs::write(
        &p,
        format!(r#"{{"resident_id": "{id}", "name": "Zoé Lambert", "birth_date": "{birth}", "address": "Quai de la Batte 7, 4000 Liège", "language": "fr"}}"#),
    )
    .unwrap();
    p
}

fn personalise(c: &City, resident: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "personalise",
        "--profile",
        "piv",
        "--management-key",
        c.key_file.to_str().unwrap(),
        "--dir",
        &c.home,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        resident.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    citycard(&args)
}

fn verify(bundle: &Path, cred: &Path) -> (i32, serde_json::Value, String) {
    verify_json(bundle, cred, &[])
}

#[test]
fn a_city_issues_a_piv_card_that_partners_and_peer_tools_read() {
    let _g = vpcd_lock();
    if !bench_available("a_city_issues_a_piv_card_that_partners_and_peer_tools_read") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let c = city(d);
    let zoe = resident(d, "F-ZOE", "1950-07-01");
    let state = d.join("zoe.piv");
    let emu = EmulatorProcess::start(&state, &["--profile", "piv"]);

    // A factory-fresh card still accepts the public default key: refused, nothing written.
    let (code, out, err) = personalise(&c, &zoe, &[]);
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        err.contains("set-mgm-key") || err.contains("factory"),
        "{err}"
    );
    let (code, v, _) = verify(&c.bundle, &c.desk);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (10, Some("not_a_citycard")),
        "{v}"
    );

    // The city sets its own key with the peer tool, then issues.
    piv_tool_ok(&["-a", "set-mgm-key", "-n", CITY_KEY]);
    let (code, out, err) = personalise(&c, &zoe, &[]);
    assert_eq!(code, 0, "{out}{err}");

    // The desk reads the card number; transit gets the signed age predicate.
    let (code, desk, err) = verify(&c.bundle, &c.desk);
    assert_eq!(code, 0, "{desk} {err}");
    assert_eq!(desk["profile"], "piv", "{desk}");
    let number = desk["attributes"]["card_number"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(number.starts_with("LG-"), "{desk}");
    assert_eq!(desk["attributes"]["resident"], true);
    assert!(!desk.to_string().contains("Zo"), "{desk}");
    let (code, transit, err) = verify(&c.bundle, &c.transit);
    assert_eq!(code, 0, "{transit} {err}");
    assert_eq!(transit["attributes"]["age_over_18"], true, "{transit}");
    assert_eq!(transit["attributes"]["age_over_65"], true, "{transit}");
    assert!(!transit.to_string().contains(&number), "{transit}");

    // OpenSC reads the certificate our issuer wrote as the Card
    // Authentication certificate (PIV id 04), byte for byte a valid one of ours.
    let objects = run(
        "pkcs11-tool",
        &["--module", PKCS11_MODULE, "--list-objects"],
    )
    .1;
    assert!(objects.contains("Card Authentication"), "{objects}");
    let der_path = d.join("cak.der");
    let (code, out, err) = run(
        "pkcs11-tool",
        &[
            "--module",
            PKCS11_MODULE,
            "--read-object",
            "--type",
            "cert",
            "--id",
            "04",
            "--output-file",
            der_path.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let cert = CardAuthenticationCertificate::decode(&std::fs::read(&der_path).unwrap()).unwrap();
    assert_eq!(cert.body().card_number, number);
    // yubico-piv-tool shows the same certificate in slot 9e.
    let status = piv_tool_ok(&["-a", "status"]);
    assert!(status.contains("9e"), "{status}");
    assert!(status.contains(&number), "{status}");
    drop(emu);

    // A clone: same objects, another 9E key.
    let clone = EmulatorProcess::start(&state, &["--profile", "piv", "--fault", "clone"]);
    let (code, v, err) = verify(&c.bundle, &c.desk);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (22, Some("clone")),
        "{v} {err}"
    );
    clone.kill();

    // Revoked after the city publishes.
    ok(&["revoke", &number, "--dir", &c.home, "--reason", "stolen"]);
    ok(&[
        "revocation",
        "publish",
        "--dir",
        &c.home,
        "--out",
        d.join("crl").to_str().unwrap(),
    ]);
    let bundle2 = d.join("liege2.bundle");
    export_trust(&c.home, &bundle2);
    let emu = EmulatorProcess::start(&state, &["--profile", "piv"]);
    let (code, v, err) = verify(&bundle2, &c.desk);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (32, Some("revoked")),
        "{v} {err}"
    );
    emu.kill();
}

#[test]
fn a_key_generated_by_yubico_piv_tool_is_certified_by_citycard_and_verifies() {
    let _g = vpcd_lock();
    if !bench_available("a_key_generated_by_yubico_piv_tool_is_certified_by_citycard_and_verifies")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let c = city(d);
    let sam = resident(d, "F-SAM", "2010-03-03");
    let state = d.join("sam.piv");
    let emu = EmulatorProcess::start(&state, &["--profile", "piv"]);
    piv_tool_ok(&["-a", "set-mgm-key", "-n", CITY_KEY]);
    // The peer tool generates the Card Authentication key on the card.
    let pem_path = d.join("9e.pem");
    let key_arg = format!("--key={CITY_KEY}");
    piv_tool_ok(&[
        &key_arg,
        "-a",
        "generate",
        "-s",
        "9e",
        "-A",
        "ECCP256",
        "-o",
        pem_path.to_str().unwrap(),
    ]);
    // Another key's PEM: the card cannot prove possession, nothing is written.
    let other = d.join("other.pem");
    std::fs::write(
        &other,
        p256::pkcs8::EncodePublicKey::to_public_key_pem(
            &p256::SecretKey::from_slice(&[9; 32]).unwrap().public_key(),
            p256::pkcs8::LineEnding::LF,
        )
        .unwrap(),
    )
    .unwrap();
    let (code, out, err) = personalise(&c, &sam, &["--card-key-from", other.to_str().unwrap()]);
    assert_eq!(code, 13, "{out}{err}");
    let (code, v, _) = verify(&c.bundle, &c.desk);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (10, Some("not_a_citycard")),
        "{v}"
    );

    // The right PEM: certified by our issuer, verified by our reader.
    let (code, out, err) = personalise(&c, &sam, &["--card-key-from", pem_path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, v, err) = verify(&c.bundle, &c.desk);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(v["profile"], "piv");
    // 16 years old: no age predicate is signed, so transit cannot prove one.
    let (code, v, err) = verify(&c.bundle, &c.transit);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(
        v["attributes"]["age_over_18"],
        serde_json::Value::Null,
        "{v}"
    );
    // The text a person at the gate reads says why.
    let (code, text, err) = citycard(&[
        "verify",
        "--reader",
        READER,
        "--trust",
        c.bundle.to_str().unwrap(),
        "--credential",
        c.transit.to_str().unwrap(),
        "--wait",
        "10",
    ]);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains("(PIV profile)"), "{text}");
    assert!(text.contains("age_over_18: not proven"), "{text}");
    emu.kill();
}
