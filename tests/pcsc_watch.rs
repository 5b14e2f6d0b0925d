//! `citycard watch` through pcscd + vpcd: a tap gives one JSON line on
//! stdout; after the city revokes the card and the partner's bundle file is
//! replaced, the next tap says revoked without restarting the service;
//! SIGTERM stops it cleanly.
#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::{bench_available, citycard_bin, vpcd_lock, ServedCard, READER};

/// Kills the service if the test fails half-way.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[test]
fn watch_reports_taps_and_reloads_trust() {
    let _lock = vpcd_lock();
    if !bench_available("watch_reports_taps_and_reloads_trust") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let h = d.join("home").to_str().unwrap().to_string();
    ok(&[
        "issuer",
        "init",
        "--dir",
        &h,
        "--city",
        "Gateville",
        "--issuer-id",
        "GATE",
        "--card-prefix",
        "G",
    ]);
    ok(&["station", "add", "s1", "--dir", &h]);
    ok(&["preparer", "add", "prep-1", "--dir", &h]);
    let cred = d.join("transit.cred");
    ok(&[
        "partner",
        "enrol",
        "transit",
        "--dir",
        &h,
        "--attributes",
        "age_over_65",
        "--out",
        cred.to_str().unwrap(),
    ]);
    let bundle = d.join("gate.bundle");
    ok(&[
        "trust",
        "export",
        "--dir",
        &h,
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let resident = d.join("r.json");
    std::fs::write(&resident, r#"{"resident_id": "W-1", "name": "Ida", "birth_date": "1940-05-05", "address": "Gate St 1"}"#).unwrap();
    let state = d.join("card.state");
    {
        let _card = ServedCard::start(&state, [3; 32]);
        citycard_e2e::prepare_in_reader(&h);
        ok(&[
            "personalise",
            "--dir",
            &h,
            "--station",
            "s1",
            "--reader",
            READER,
            "--resident",
            resident.to_str().unwrap(),
        ]);
    }

    let mut child = Command::new(citycard_bin())
        .args([
            "watch",
            "--trust",
            bundle.to_str().unwrap(),
            "--credential",
            cred.to_str().unwrap(),
            "--readers",
            READER,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child.id());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // One tap-event object per line, as schemas/tap-event.v1.json says.
            let v = citycard_testkit::schemas::assert_valid_text(
                citycard_testkit::schemas::Schema::TapEvent,
                &line,
            );
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(800));

    // A tap.
    let card = ServedCard::start(&state, [4; 32]);
    let tap = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a tap line");
    drop(card);
    assert_eq!(tap["event"], "tap", "{tap}");
    assert_eq!(tap["reader"], READER);
    assert_eq!(tap["verdict"]["verdict"], "genuine", "{tap}");
    assert_eq!(tap["verdict"]["attributes"]["age_over_65"], true, "{tap}");
    assert!(tap["timing_ms"]["total"].as_f64().unwrap() > 0.0);

    // Revoke, publish, replace the bundle file: the service reloads by itself.
    ok(&["revoke", "G-000001", "--dir", &h, "--reason", "stolen"]);
    ok(&[
        "revocation",
        "publish",
        "--dir",
        &h,
        "--out",
        d.join("crl").to_str().unwrap(),
    ]);
    let fresh = d.join("fresh.bundle");
    ok(&[
        "trust",
        "export",
        "--dir",
        &h,
        "--out",
        fresh.to_str().unwrap(),
    ]);
    std::fs::rename(&fresh, &bundle).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let card = ServedCard::start(&state, [5; 32]);
    let tap = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a second tap line");
    drop(card);
    assert_eq!(tap["verdict"]["verdict"], "revoked", "{tap}");

    // SIGTERM: clean stop.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut waited = 0;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        waited += 1;
        assert!(waited < 100, "watch did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0));
    reader.join().unwrap();
}
