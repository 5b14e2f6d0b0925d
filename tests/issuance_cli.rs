//! Issuing-side behaviours that need no PC/SC bench (built-in emulated cards):
//! an HSM-held root key (SoftHSM2 through PKCS#11, non-extractable), a batch
//! with bad rows (reported by row number, the others issued), retention
//! (`resident forget`), replacement of a lost card, and the audit log.
#![cfg(test)]

use std::process::{Command, Stdio};

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::{citycard, citycard_bin};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

#[test]
fn root_key_in_softhsm2() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "city-root",
            "--pin",
            "4321",
            "--so-pin",
            "87654321",
        ])
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = tmp.path().join("home");
    let h = home.to_str().unwrap();
    let run = |args: &[&str], pin: &str| {
        let out = Command::new(citycard_bin())
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env("CITYCARD_PKCS11_PIN", pin)
            .env("CITYCARD_PASSPHRASE", "station passphrase")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (c, text) = run(
        &[
            "issuer",
            "init",
            "--dir",
            h,
            "--city",
            "HSM City",
            "--issuer-id",
            "HSMCITY",
            "--pkcs11-module",
            MODULE,
            "--token",
            "city-root",
            "--key-label",
            "root",
        ],
        "4321",
    );
    assert_eq!(c, 0, "{text}");
    assert!(text.contains("pkcs11:"), "{text}");
    assert!(
        !home.join("root.key.pem").exists(),
        "the root key must not be in a file"
    );
    // Certificates are signed by the key in the token.
    let (c, text) = run(&["station", "add", "s1", "--dir", h], "4321");
    assert_eq!(c, 0, "{text}");
    // A station add that fails after its token key was generated (here: the
    // registry is away) leaves no station directory and no token key: the
    // same command works once the registry is back.
    let hsm_station = [
        "station",
        "add",
        "s2",
        "--dir",
        h,
        "--pkcs11-module",
        MODULE,
        "--token",
        "city-root",
        "--key-label",
        "station-s2",
    ];
    std::fs::rename(home.join("registry.sqlite"), tmp.path().join("away")).unwrap();
    let (c, text) = run(&hsm_station, "4321");
    assert_ne!(c, 0, "{text}");
    assert!(!home.join("stations/s2").exists(), "{text}");
    std::fs::rename(tmp.path().join("away"), home.join("registry.sqlite")).unwrap();
    let (c, text) = run(&hsm_station, "4321");
    assert_eq!(c, 0, "no orphan token key blocks the retry: {text}");
    let bundle = tmp.path().join("b.bundle");
    let (c, text) = run(
        &[
            "trust",
            "export",
            "--dir",
            h,
            "--out",
            bundle.to_str().unwrap(),
        ],
        "4321",
    );
    assert_eq!(c, 0, "{text}");
    let b = citycard_proto::TrustBundle::decode(&std::fs::read(&bundle).unwrap()).unwrap();
    b.verify().unwrap();
    // Wrong PIN: a key error, exit 6.
    let (c, text) = run(
        &[
            "trust",
            "export",
            "--dir",
            h,
            "--out",
            tmp.path().join("c").to_str().unwrap(),
        ],
        "0000",
    );
    assert_eq!(c, 6, "{text}");
    // The root key in the token is sensitive and not extractable.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let loc = citycard_keys::Pkcs11Location {
        module: MODULE.into(),
        token: "city-root".into(),
        key_label: "root".into(),
    };
    let signer =
        citycard_keys::Pkcs11Signer::open(&loc, &citycard_keys::FixedSecrets::new("", "4321"))
            .unwrap();
    let p = signer.protection().unwrap();
    assert!(
        p.sensitive && !p.extractable && p.never_extractable && !p.value_readable,
        "{p:?}"
    );
    assert_eq!(citycard_keys::Signer::public_key(&signer), b.body().root);
}

#[test]
fn batch_with_bad_rows_forget_and_replace() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = home.to_str().unwrap();
    ok(&[
        "issuer",
        "init",
        "--dir",
        h,
        "--city",
        "Batchville",
        "--issuer-id",
        "BATCH",
        "--card-prefix",
        "BV",
    ]);
    ok(&["station", "add", "s1", "--dir", h]);
    ok(&["preparer", "add", "p1", "--dir", h]);
    let csv = tmp.path().join("rows.csv");
    std::fs::write(
        &csv,
        "resident_id,name,address,birth_date\nA-1,Ann Lee,Rue 1,1980-01-01\nA-2,,Rue 2,\nA-3,Bo Yu,Rue 3,1980-02-30\nA-4,Cy Ng,Rue 4,\nA-1,Ann Again,Rue 1,\n",
    )
    .unwrap();
    let reader = format!("emulated:{}", tmp.path().join("cards").display());
    let (code, out, err) = citycard(&[
        "batch",
        "--dir",
        h,
        "--station",
        "s1",
        "--reader",
        &reader,
        "--prepare-with",
        "p1",
        csv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 50, "some rows fail, the batch goes on: {out}\n{err}");
    assert!(err.contains("line 3: resident A-2: name: missing"), "{err}");
    assert!(err.contains("line 4: resident A-3: birth_date"), "{err}");
    assert!(
        err.contains("line 6: resident A-1:") && err.contains("live card"),
        "a resident is never issued twice: {err}"
    );
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let issued: Vec<_> = rows.iter().filter(|r| r["ok"] == true).collect();
    assert_eq!(issued.len(), 2, "{out}");
    assert_eq!(rows.last().unwrap()["summary"]["registry"]["issued"], 2);

    // A lost card replaced: the old one is revoked in the same transaction.
    let ann = tmp.path().join("ann.json");
    std::fs::write(
        &ann,
        r#"{"resident_id": "A-1", "name": "Ann Lee", "address": "Rue 1"}"#,
    )
    .unwrap();
    let (code, out, err) = citycard(&[
        "personalise",
        "--dir",
        h,
        "--station",
        "s1",
        "--reader",
        &reader,
        "--prepare-with",
        "p1",
        "--resident",
        ann.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 8, "{out}{err}");
    let out = ok(&[
        "personalise",
        "--dir",
        h,
        "--station",
        "s1",
        "--reader",
        &reader,
        "--prepare-with",
        "p1",
        "--resident",
        ann.to_str().unwrap(),
        "--replace",
        "lost",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let new_number = v["card_number"].as_str().unwrap().to_string();
    let reg = citycard_registry::Registry::open(home.join("registry.sqlite")).unwrap();
    let old = reg
        .card(issued[0]["card_number"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert!(
        matches!(old.state, citycard_registry::CardState::Revoked { .. }),
        "{old:?}"
    );
    assert_eq!(
        reg.live_card_of("A-1").unwrap().unwrap().card_number,
        new_number
    );
    drop(reg);

    // Retention: forget erases the stored attributes; revocation still works.
    ok(&["resident", "forget", "A-1", "--dir", h, "--force"]);
    let reg = citycard_registry::Registry::open(home.join("registry.sqlite")).unwrap();
    assert!(reg.resident_attributes("A-1").unwrap().is_none());
    drop(reg);
    ok(&["revoke", &new_number, "--dir", h, "--reason", "withdrawn"]);
    let db = std::fs::read(home.join("registry.sqlite")).unwrap();
    assert!(
        !db.windows(7).any(|w| w == b"Ann Lee"),
        "forgotten name still in the database file"
    );

    // The audit log names operators and actions, never personal attributes.
    let reg = citycard_registry::Registry::open(home.join("registry.sqlite")).unwrap();
    let log = reg.audit_log().unwrap();
    assert!(log.iter().any(|e| e.action.contains("revok")), "{log:?}");
    let text = format!("{log:?}");
    for personal in ["Ann", "Cy Ng", "Rue", "1980"] {
        assert!(
            !text.contains(personal),
            "audit log contains {personal}: {text}"
        );
    }
}

#[test]
fn an_expired_station_may_not_sign() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = home.to_str().unwrap();
    ok(&[
        "issuer",
        "init",
        "--dir",
        h,
        "--city",
        "Oldtown",
        "--issuer-id",
        "OLD",
        "--card-prefix",
        "OT",
    ]);
    // A station certified in 2020 for 30 days (added through the library with a past date).
    let issuer = citycard_issuer::IssuerHome::open(&home).unwrap();
    let secrets = citycard_keys::FixedSecrets::new("correct horse battery staple", "");
    issuer
        .add_station(
            "old",
            30,
            None,
            &secrets,
            citycard_proto::Date::new(2020, 1, 1).unwrap(),
        )
        .unwrap();
    let r = tmp.path().join("r.json");
    std::fs::write(
        &r,
        r#"{"resident_id": "O-1", "name": "Olga", "address": "Old St 1"}"#,
    )
    .unwrap();
    let reader = format!("emulated:{}", tmp.path().join("cards").display());
    let (code, out, err) = citycard(&[
        "personalise",
        "--dir",
        h,
        "--station",
        "old",
        "--reader",
        &reader,
        "--resident",
        r.to_str().unwrap(),
    ]);
    assert_eq!(code, 7, "{out}{err}");
    assert!(err.contains("refusing to sign"), "{err}");
    // Nothing was written: no intent, no card.
    let reg = citycard_registry::Registry::open(home.join("registry.sqlite")).unwrap();
    let c = reg.counts().unwrap();
    assert_eq!((c.issued, c.spoiled, c.open_intents), (0, 0, 0));
}
