//! Issuing-side behaviours that need no PC/SC bench (built-in emulated cards):
//! an HSM-held root key (SoftHSM2 through PKCS#11, non-extractable), a batch
//! with bad rows (reported by row number, the others issued), retention
//! (`resident forget`), replacement of a lost card, and the audit log.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::{citycard, citycard_bin};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token `city-root` (user PIN 4321) in a temporary directory,
/// and the issuer home that keeps its root key there.
struct Hsm {
    tmp: tempfile::TempDir,
    conf: PathBuf,
    home: PathBuf,
}

impl Hsm {
    /// Writes a SoftHSM2 configuration and initialises the token.
    fn token() -> Self {
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
        Self { tmp, conf, home }
    }

    fn h(&self) -> &str {
        self.home.to_str().unwrap()
    }

    /// `citycard ARGS` with the token's configuration and `pin`: (exit
    /// code, stdout and stderr).
    fn run(&self, args: &[&str], pin: &str) -> (i32, String) {
        let out = Command::new(citycard_bin())
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
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
    }

    /// `citycard trust export` to `out` with `pin`.
    fn export(&self, out: &Path, pin: &str) -> (i32, String) {
        self.run(
            &[
                "trust",
                "export",
                "--dir",
                self.h(),
                "--out",
                out.to_str().unwrap(),
            ],
            pin,
        )
    }
}

/// `issuer init` with the root key generated in the token: the home names
/// it by a pkcs11: URI and holds no root key file.
fn issuer_init_keeps_the_root_key_in_the_token(hsm: &Hsm) {
    let (c, text) = hsm.run(
        &[
            "issuer",
            "init",
            "--dir",
            hsm.h(),
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
        !hsm.home.join("root.key.pem").exists(),
        "the root key must not be in a file"
    );
}

/// A station add that fails after its token key was generated (here: the
/// registry is away) leaves no station directory and no token key: the
/// same command works once the registry is back.
fn failed_token_station_add_leaves_no_orphan_key(hsm: &Hsm) {
    let hsm_station = [
        "station",
        "add",
        "s2",
        "--dir",
        hsm.h(),
        "--pkcs11-module",
        MODULE,
        "--token",
        "city-root",
        "--key-label",
        "station-s2",
    ];
    let (registry, away) = (
        hsm.home.join("registry.sqlite"),
        hsm.tmp.path().join("away"),
    );
    std::fs::rename(&registry, &away).unwrap();
    let (c, text) = hsm.run(&hsm_station, "4321");
    assert_ne!(c, 0, "{text}");
    assert!(!hsm.home.join("stations/s2").exists(), "{text}");
    std::fs::rename(&away, &registry).unwrap();
    let (c, text) = hsm.run(&hsm_station, "4321");
    assert_eq!(c, 0, "no orphan token key blocks the retry: {text}");
}

/// The root key in the token is sensitive and not extractable, and it is
/// the root of the exported bundle `b`.
fn token_root_key_is_not_extractable(hsm: &Hsm, b: &citycard_proto::revocation::TrustBundle) {
    std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
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
fn root_key_in_softhsm2() {
    let hsm = Hsm::token();
    issuer_init_keeps_the_root_key_in_the_token(&hsm);
    // Certificates are signed by the key in the token.
    let (c, text) = hsm.run(&["station", "add", "s1", "--dir", hsm.h()], "4321");
    assert_eq!(c, 0, "{text}");
    failed_token_station_add_leaves_no_orphan_key(&hsm);
    let bundle = hsm.tmp.path().join("b.bundle");
    let (c, text) = hsm.export(&bundle, "4321");
    assert_eq!(c, 0, "{text}");
    let b =
        citycard_proto::revocation::TrustBundle::decode(&std::fs::read(&bundle).unwrap()).unwrap();
    b.verify().unwrap();
    // Wrong PIN: a key error, exit 6.
    let (c, text) = hsm.export(&hsm.tmp.path().join("c"), "0000");
    assert_eq!(c, 6, "{text}");
    token_root_key_is_not_extractable(&hsm, &b);
}

/// Batchville's home (station s1, preparer p1) and its emulated reader.
struct Batchville {
    tmp: tempfile::TempDir,
    home: PathBuf,
    reader: String,
}

impl Batchville {
    fn init() -> Self {
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
        let reader = format!("emulated:{}", tmp.path().join("cards").display());
        Self { tmp, home, reader }
    }

    fn h(&self) -> &str {
        self.home.to_str().unwrap()
    }

    fn registry(&self) -> citycard_registry::Registry {
        citycard_registry::Registry::open(self.home.join("registry.sqlite")).unwrap()
    }

    /// `command` at s1 on the emulated reader (cards prepared by p1), then
    /// `extra`.
    fn at_s1<'a>(&'a self, command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            command,
            "--dir",
            self.h(),
            "--station",
            "s1",
            "--reader",
            &self.reader,
            "--prepare-with",
            "p1",
        ];
        args.extend_from_slice(extra);
        args
    }
}

/// A batch with bad rows: each reported by its line, the batch goes on
/// (exit 50), a resident is never issued twice, the two good rows issued.
/// Returns Ann's (the first issued) card number.
fn bad_rows_reported_by_line_and_the_others_issued(b: &Batchville) -> String {
    let csv = b.tmp.path().join("rows.csv");
    std::fs::write(
        &csv,
        "resident_id,name,address,birth_date\nA-1,Ann Lee,Rue 1,1980-01-01\nA-2,,Rue 2,\nA-3,Bo Yu,Rue 3,1980-02-30\nA-4,Cy Ng,Rue 4,\nA-1,Ann Again,Rue 1,\n",
    )
    .unwrap();
    let (code, out, err) = citycard(&b.at_s1("batch", &[csv.to_str().unwrap(), "--json"]));
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
    issued[0]["card_number"].as_str().unwrap().to_string()
}

/// Ann again is refused (exit 8); her lost card replaced: the old one
/// (`old_number`) is revoked in the same transaction and the new one is
/// her live card. Returns the new card number.
fn lost_card_replaced_and_the_old_one_revoked(b: &Batchville, old_number: &str) -> String {
    let ann = b.tmp.path().join("ann.json");
    std::fs::write(
        &ann,
        r#"{"resident_id": "A-1", "name": "Ann Lee", "address": "Rue 1"}"#,
    )
    .unwrap();
    let ann = ann.to_str().unwrap();
    let (code, out, err) = citycard(&b.at_s1("personalise", &["--resident", ann, "--json"]));
    assert_eq!(code, 8, "{out}{err}");
    let out = ok(&b.at_s1(
        "personalise",
        &["--resident", ann, "--replace", "lost", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let new_number = v["card_number"].as_str().unwrap().to_string();
    let reg = b.registry();
    let old = reg.card(old_number).unwrap().unwrap();
    assert!(
        matches!(old.state, citycard_registry::CardState::Revoked { .. }),
        "{old:?}"
    );
    assert_eq!(
        reg.live_card_of("A-1").unwrap().unwrap().card_number,
        new_number
    );
    new_number
}

/// Retention: forget erases the stored attributes (the name is nowhere in
/// the database file); revocation still works.
fn forget_erases_attributes_and_revocation_still_works(b: &Batchville, number: &str) {
    ok(&["resident", "forget", "A-1", "--dir", b.h(), "--force"]);
    let reg = b.registry();
    assert!(reg.resident_attributes("A-1").unwrap().is_none());
    drop(reg);
    ok(&["revoke", number, "--dir", b.h(), "--reason", "withdrawn"]);
    let db = std::fs::read(b.home.join("registry.sqlite")).unwrap();
    assert!(
        !db.windows(7).any(|w| w == b"Ann Lee"),
        "forgotten name still in the database file"
    );
}

/// The audit log names operators and actions, never personal attributes.
fn audit_log_names_actions_never_residents(b: &Batchville) {
    let log = b.registry().audit_log().unwrap();
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
fn batch_with_bad_rows_forget_and_replace() {
    let b = Batchville::init();
    let ann_first = bad_rows_reported_by_line_and_the_others_issued(&b);
    let ann_new = lost_card_replaced_and_the_old_one_revoked(&b, &ann_first);
    forget_erases_attributes_and_revocation_still_works(&b, &ann_new);
    audit_log_names_actions_never_residents(&b);
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
            citycard_proto::date::Date::new(2020, 1, 1).unwrap(),
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
