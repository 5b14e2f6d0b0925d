//! A city office's first day, through the real PC/SC stack (pcscd + vpcd +
//! emulated cards) and the `citycard` binary: init, station, partner,
//! personalise, refusals with distinct exit codes, a batch of 22 cards with
//! card swaps, revoke, publish, trust export; and tearing at every persistent
//! write of personalisation, reconciled by the registry.
#![cfg(test)]

use std::path::Path;
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

#[test]
fn city_office_first_day() {
    let _lock = vpcd_lock();
    if !bench_available("city_office_first_day") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let h = init_home(tmp.path());
    let (c, text) = code(&[
        "issuer",
        "init",
        "--dir",
        &h,
        "--city",
        "X",
        "--issuer-id",
        "X",
    ]);
    assert_eq!(c, 4, "init twice must refuse: {text}");

    let cred = tmp.path().join("library.cred");
    ok(&[
        "partner",
        "enrol",
        "library",
        "--dir",
        &h,
        "--attributes",
        "pseudonym,resident",
        "--valid-days",
        "365",
        "--out",
        cred.to_str().unwrap(),
    ]);
    assert!(cred.exists());

    let alex = tmp.path().join("alex.json");
    write(
        &alex,
        r#"{"resident_id": "F-0001", "name": "Alex Moreau", "birth_date": "1958-03-14", "address": "Rue Léopold 12, 4000 Liège", "language": "fr"}"#,
    );
    let card = ServedCard::start(&tmp.path().join("card1.state"), [1; 32]);
    citycard_e2e::prepare_in_reader(&h);
    let out = ok(&[
        "personalise",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        alex.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["card_number"], "LG-000001");
    assert_eq!(v["ok"], true);

    // The same resident again: refused before any card is touched.
    let (c, text) = code(&[
        "personalise",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        alex.to_str().unwrap(),
    ]);
    assert_eq!(c, 8, "{text}");
    // Another resident on the (now issued) card: wrong card.
    let sam = tmp.path().join("sam.json");
    write(
        &sam,
        r#"{"resident_id": "F-0002", "name": "Sam", "care_of_address": "Asbl Accueil, 4000 Liège"}"#,
    );
    let (c, text) = code(&[
        "personalise",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        sam.to_str().unwrap(),
    ]);
    assert_eq!(c, 10, "{text}");
    drop(card);

    // Bad input: refused with exit 3 and nothing written.
    let bad = tmp.path().join("bad.json");
    write(
        &bad,
        r#"{"resident_id": "F-0003", "name": "Kim", "address": "Rue 1", "nationality": "XX"}"#,
    );
    let (c, text) = code(&[
        "personalise",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(c, 3, "{text}");
    assert!(text.contains("nationality"), "{text}");
    write(
        &bad,
        r#"{"resident_id": "F-0003", "name": "Kim", "address": "Rue 1", "birth_date": "1990-02-30"}"#,
    );
    let (c, text) = code(&[
        "personalise",
        "--dir",
        &h,
        "--station",
        "desk-1",
        "--reader",
        READER,
        "--resident",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(c, 3, "{text}");
    // Wrong passphrase: exit 6.
    let out = std::process::Command::new(citycard_e2e::citycard_bin())
        .args([
            "trust",
            "export",
            "--dir",
            &h,
            "--out",
            tmp.path().join("t.bundle").to_str().unwrap(),
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

    // A batch of 22 residents, cards swapped by the "operator" between rows.
    let csv = tmp.path().join("batch.csv");
    let mut text = String::from("resident_id,name,address,birth_date,language\n");
    for i in 0..22 {
        text.push_str(&format!(
            "B-{i:03},Resident {i},Rue {i} 4000 Liège,19{:02}-01-15,fr\n",
            40 + i
        ));
    }
    write(&csv, &text);
    let stack = CardStack::start_prepared(&tmp.path().join("stack"), &h, 23);
    let out = ok(&[
        "batch",
        "--dir",
        &h,
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
    let issued: Vec<&str> = lines
        .iter()
        .filter(|l| l["ok"] == true)
        .filter_map(|l| l["card_number"].as_str())
        .collect();
    assert_eq!(issued.len(), 22, "{out}");
    assert!(cards >= 22, "cards used: {cards}");
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["issued"], 22);
    assert_eq!(summary["registry"]["issued"], 23);
    assert_eq!(summary["registry"]["open_intents"], 0);

    // Revoke one; twice is refused; publish; export trust.
    ok(&["revoke", issued[3], "--dir", &h, "--reason", "lost"]);
    let (c, text) = code(&["revoke", issued[3], "--dir", &h, "--reason", "lost"]);
    assert_eq!(c, 9, "{text}");
    let published = tmp.path().join("published.bundle");
    ok(&[
        "revocation",
        "publish",
        "--dir",
        &h,
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
    let bundle_path = tmp.path().join("liege.bundle");
    ok(&[
        "trust",
        "export",
        "--dir",
        &h,
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
