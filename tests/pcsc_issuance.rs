//! A city office's first day, through the real PC/SC stack (pcscd + vpcd +
//! emulated cards) and the `citycard` binary: init, station, partner,
//! personalise, refusals with distinct exit codes, a batch of 22 cards with
//! card swaps, revoke, publish, trust export; and tearing at every persistent
//! write of personalisation, reconciled by the registry.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::{
    bench_available, citycard, issuer_home, vpcd_lock, CardStack, EmulatorProcess, ServedCard,
    READER,
};
use citycard_proto::revocation::TrustBundle;

fn code(args: &[&str]) -> (i32, String) {
    let (code, out, err) = citycard(args);
    (code, format!("{out}{err}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn init_home(dir: &Path) -> String {
    issuer_home(dir, "LIEGE", "LG", &["--valid-days", "180"])
}

/// One office's home (issuer initialised, station `desk-1`) in a temporary
/// directory; each step of the first day is a function over it.
struct Office {
    tmp: tempfile::TempDir,
    home: String,
}

impl Office {
    fn open() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = init_home(tmp.path());
        Self { tmp, home }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Writes a resident file named `name` and returns its path.
    fn resident(&self, name: &str, json: &str) -> PathBuf {
        let path = self.path(name);
        write(&path, json);
        path
    }

    /// The arguments of `citycard personalise` at desk-1 for `resident`.
    fn personalise_args<'a>(&'a self, resident: &'a Path) -> Vec<&'a str> {
        vec![
            "personalise",
            "--dir",
            &self.home,
            "--station",
            "desk-1",
            "--reader",
            READER,
            "--resident",
            resident.to_str().unwrap(),
        ]
    }

    /// `citycard personalise` at desk-1 for `resident`: (exit code, output).
    fn personalise(&self, resident: &Path) -> (i32, String) {
        code(&self.personalise_args(resident))
    }
}

/// A second `issuer init` on the same home is refused (exit 4).
fn init_twice_is_refused(o: &Office) {
    let (c, text) = code(&[
        "issuer",
        "init",
        "--dir",
        &o.home,
        "--city",
        "X",
        "--issuer-id",
        "X",
    ]);
    assert_eq!(c, 4, "init twice must refuse: {text}");
}

/// The library is enrolled as a partner and gets its credential file.
fn library_is_enrolled(o: &Office) {
    let cred = o.path("library.cred");
    ok(&[
        "partner",
        "enrol",
        "library",
        "--dir",
        &o.home,
        "--attributes",
        "pseudonym,resident",
        "--valid-days",
        "365",
        "--out",
        cred.to_str().unwrap(),
    ]);
    assert!(cred.exists());
}

/// Alex gets card LG-000001; Alex again is refused (exit 8) before any
/// card is touched; Sam on Alex's (now issued) card is the wrong card
/// (exit 10).
fn first_card_then_duplicate_and_wrong_card_refused(o: &Office) {
    let alex = o.resident(
        "alex.json",
        r#"{"resident_id": "F-0001", "name": "Alex Moreau", "birth_date": "1958-03-14", "address": "Rue Léopold 12, 4000 Liège", "language": "fr"}"#,
    );
    let card = ServedCard::start(&o.path("card1.state"), [1; 32]);
    citycard_e2e::prepare_in_reader(&o.home);
    let mut args = o.personalise_args(&alex);
    args.push("--json");
    let out = ok(&args);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["card_number"], "LG-000001");
    assert_eq!(v["ok"], true);

    // The same resident again: refused before any card is touched.
    let (c, text) = o.personalise(&alex);
    assert_eq!(c, 8, "{text}");
    // Another resident on the (now issued) card: wrong card.
    let sam = o.resident(
        "sam.json",
        r#"{"resident_id": "F-0002", "name": "Sam", "care_of_address": "Asbl Accueil, 4000 Liège"}"#,
    );
    let (c, text) = o.personalise(&sam);
    assert_eq!(c, 10, "{text}");
    drop(card);
}

/// Bad resident input (unknown nationality, impossible birth date) is
/// refused with exit 3 and nothing written.
fn bad_input_is_refused(o: &Office) {
    let bad = o.resident(
        "bad.json",
        r#"{"resident_id": "F-0003", "name": "Kim", "address": "Rue 1", "nationality": "XX"}"#,
    );
    let (c, text) = o.personalise(&bad);
    assert_eq!(c, 3, "{text}");
    assert!(text.contains("nationality"), "{text}");
    write(
        &bad,
        r#"{"resident_id": "F-0003", "name": "Kim", "address": "Rue 1", "birth_date": "1990-02-30"}"#,
    );
    let (c, text) = o.personalise(&bad);
    assert_eq!(c, 3, "{text}");
}

/// A wrong passphrase is refused with exit 6.
fn wrong_passphrase_is_refused(o: &Office) {
    let out = std::process::Command::new(citycard_e2e::citycard_bin())
        .args([
            "trust",
            "export",
            "--dir",
            &o.home,
            "--out",
            o.path("t.bundle").to_str().unwrap(),
        ])
        .env("CITYCARD_PASSPHRASE", "wrong")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A batch of 22 residents, cards swapped by the "operator" between rows:
/// all 22 issued, and the registry counts Alex's card too with no intent
/// left open. Returns the issued card numbers.
fn batch_of_22_with_card_swaps(o: &Office) -> Vec<String> {
    let csv = o.path("batch.csv");
    let mut text = String::from("resident_id,name,address,birth_date,language\n");
    for i in 0..22 {
        text.push_str(&format!(
            "B-{i:03},Resident {i},Rue {i} 4000 Liège,19{:02}-01-15,fr\n",
            40 + i
        ));
    }
    write(&csv, &text);
    let stack = CardStack::start_prepared(&o.path("stack"), &o.home, 23);
    let out = ok(&[
        "batch",
        "--dir",
        &o.home,
        "--station",
        "desk-1",
        "--reader",
        READER,
        csv.to_str().unwrap(),
        "--json",
        "--wait",
        "20",
    ]);
    let cards = stack.stop();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let issued: Vec<String> = lines
        .iter()
        .filter(|l| l["ok"] == true)
        .filter_map(|l| l["card_number"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(issued.len(), 22, "{out}");
    assert!(cards >= 22, "cards used: {cards}");
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["issued"], 22);
    assert_eq!(summary["registry"]["issued"], 23);
    assert_eq!(summary["registry"]["open_intents"], 0);
    issued
}

/// Revoke one card; revoking it twice is refused (exit 9); the published
/// list and the exported trust bundle both carry the one revocation, under
/// the bundle's root.
fn revoke_once_publish_and_export_trust(o: &Office, card: &str) {
    let h = &o.home;
    ok(&["revoke", card, "--dir", h, "--reason", "lost"]);
    let (c, text) = code(&["revoke", card, "--dir", h, "--reason", "lost"]);
    assert_eq!(c, 9, "{text}");
    let published = o.path("published.bundle");
    ok(&[
        "revocation",
        "publish",
        "--dir",
        h,
        "--next-update-days",
        "7",
        "--out",
        published.to_str().unwrap(),
    ]);
    let list = TrustBundle::decode(&std::fs::read(&published).unwrap())
        .unwrap()
        .body()
        .revocations
        .clone();
    assert_eq!(list.body().revoked.len(), 1);
    let bundle_path = o.path("liege.bundle");
    ok(&[
        "trust",
        "export",
        "--dir",
        h,
        "--out",
        bundle_path.to_str().unwrap(),
    ]);
    let bundle = TrustBundle::decode(&std::fs::read(&bundle_path).unwrap()).unwrap();
    bundle.verify().unwrap();
    assert_eq!(bundle.body().stations.len(), 1);
    assert_eq!(bundle.body().revocations.body().revoked.len(), 1);
    assert!(list.verify(&bundle.body().root).is_ok());
}

#[test]
fn city_office_first_day() {
    let _lock = vpcd_lock();
    if !bench_available("city_office_first_day") {
        return;
    }
    let office = Office::open();
    init_twice_is_refused(&office);
    library_is_enrolled(&office);
    first_card_then_duplicate_and_wrong_card_refused(&office);
    bad_input_is_refused(&office);
    wrong_passphrase_is_refused(&office);
    let issued = batch_of_22_with_card_swaps(&office);
    revoke_once_publish_and_export_trust(&office, &issued[3]);
}

#[test]
fn tearing_during_personalisation_is_reconciled() {
    let _lock = vpcd_lock();
    if !bench_available("tearing_during_personalisation_is_reconciled") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let h = init_home(tmp.path());
    // The card comes prepared (W1 at the facility); the one write during
    // `personalise` is W2, ACTIVATE.
    #[allow(clippy::single_element_loop)]
    for (n, what) in [(0u32, "W2")] {
        let resident = tmp.path().join(format!("r{n}.json"));
        write(
            &resident,
            &format!(r#"{{"resident_id": "T-{n}", "name": "Torn {n}", "address": "Rue {n}"}}"#),
        );
        let state = tmp.path().join(format!("torn-{n}.state"));
        citycard_e2e::prepare_state(&h, &state);
        let emu = EmulatorProcess::start(&state, &["--fault", &format!("tear-after-writes={n}")]);
        let (c, text) = code(&[
            "personalise",
            "--dir",
            &h,
            "--station",
            "desk-1",
            "--reader",
            READER,
            "--resident",
            resident.to_str().unwrap(),
        ]);
        assert_eq!(
            c, 40,
            "{what}: a torn card is a card removed mid-way: {text}"
        );
        assert_eq!(emu.wait_exit(Duration::from_secs(10)), Some(75), "{what}");

        // The card comes back (old or new state, never half) and the same
        // command is run again: the open intent is reconciled first.
        let _emu = EmulatorProcess::start(&state, &[]);
        let (c, text) = code(&[
            "personalise",
            "--dir",
            &h,
            "--station",
            "desk-1",
            "--reader",
            READER,
            "--resident",
            resident.to_str().unwrap(),
            "--json",
        ]);
        if n < 1 {
            // The tear happened before the card committed: the intent is spoiled, the card is reused.
            assert_eq!(c, 0, "{what}: second attempt: {text}");
            assert!(text.contains("spoiled [LG-"), "{what}: {text}");
        } else {
            // ACTIVATE had completed: reconciliation commits the first intent,
            // so the resident already has a live card.
            assert!(text.contains("committed [LG-"), "{what}: {text}");
            assert_eq!(c, 8, "{what}: {text}");
        }
    }
}

#[test]
fn batch_stops_on_a_torn_card_and_resumes() {
    let _lock = vpcd_lock();
    if !bench_available("batch_stops_on_a_torn_card_and_resumes") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let h = init_home(tmp.path());
    let csv = tmp.path().join("two.csv");
    write(&csv, "resident_id,name,address\nK-1,Kai,Rue 1\n");
    let state = tmp.path().join("torn.state");
    // The card (prepared: W1 at the facility) loses power at ACTIVATE (W2):
    // the batch stops with exit 11 and the intent stays open.
    citycard_e2e::prepare_state(&h, &state);
    let emu = EmulatorProcess::start(&state, &["--fault", "tear-after-writes=0"]);
    let (c, text) = code(&[
        "batch",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        csv.to_str().unwrap(),
        "--wait",
        "10",
    ]);
    assert_eq!(c, 40, "{text}");
    assert!(text.contains("--resume"), "{text}");
    assert_eq!(emu.wait_exit(Duration::from_secs(10)), Some(75));
    // Without --resume the batch refuses to start over the open intent.
    let _emu = EmulatorProcess::start(&state, &[]);
    let (c, text) = code(&[
        "batch",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        csv.to_str().unwrap(),
        "--wait",
        "10",
    ]);
    assert_eq!(c, 9, "{text}");
    // With the same card back: reconciled (spoiled: the card never committed), then issued.
    let out = ok(&[
        "batch",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        csv.to_str().unwrap(),
        "--resume",
        "--json",
        "--wait",
        "10",
    ]);
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["issued"], 1, "{out}");
    assert_eq!(summary["summary"]["registry"]["spoiled"], 1, "{out}");
    assert_eq!(summary["summary"]["registry"]["open_intents"], 0, "{out}");
}
