//! `citycard watch` through pcscd + vpcd: a tap gives one JSON line on
//! stdout; after the city revokes the card and the partner's bundle file is
//! replaced, the next tap says revoked without restarting the service;
//! SIGTERM stops it cleanly.
#![cfg(test)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// Gateville's home with the transit partner enrolled, its exported trust
/// bundle and Ida's personalised card state.
struct Gate {
    tmp: tempfile::TempDir,
    home: String,
    cred: PathBuf,
    bundle: PathBuf,
    state: PathBuf,
}

impl Gate {
    /// Initialises the city (station s1, preparer prep-1), enrols the
    /// transit partner, exports the trust bundle and issues Ida's card.
    fn with_one_card() -> Self {
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
        export(&h, &bundle);
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
        Self {
            tmp,
            home: h,
            cred,
            bundle,
            state,
        }
    }

    /// Revokes the card, publishes, and replaces the partner's bundle file
    /// with a fresh export; then gives the service time to notice.
    fn revoke_and_replace_the_bundle(&self) {
        let (d, h) = (self.tmp.path(), &self.home);
        ok(&["revoke", "G-000001", "--dir", h, "--reason", "stolen"]);
        ok(&[
            "revocation",
            "publish",
            "--dir",
            h,
            "--out",
            d.join("crl").to_str().unwrap(),
        ]);
        let fresh = d.join("fresh.bundle");
        export(h, &fresh);
        std::fs::rename(&fresh, &self.bundle).unwrap();
        std::thread::sleep(Duration::from_millis(2500));
    }
}

/// `citycard trust export` of `home` to `out`.
fn export(home: &str, out: &Path) {
    ok(&[
        "trust",
        "export",
        "--dir",
        home,
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// A running `citycard watch` and the tap events of its stdout, each
/// validated against the tap-event schema.
struct Watch {
    child: Child,
    _guard: KillOnDrop,
    taps: mpsc::Receiver<serde_json::Value>,
    reader: std::thread::JoinHandle<()>,
}

impl Watch {
    fn start(g: &Gate) -> Self {
        let mut child = Command::new(citycard_bin())
            .args([
                "watch",
                "--trust",
                g.bundle.to_str().unwrap(),
                "--credential",
                g.cred.to_str().unwrap(),
                "--readers",
                READER,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let guard = KillOnDrop(child.id());
        let stdout = child.stdout.take().unwrap();
        let (tx, taps) = mpsc::channel::<serde_json::Value>();
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
        Self {
            child,
            _guard: guard,
            taps,
            reader,
        }
    }

    /// Taps the card (served with `seed`) and returns the event it gave.
    fn tap(&self, g: &Gate, seed: u8, expect: &str) -> serde_json::Value {
        let card = ServedCard::start(&g.state, [seed; 32]);
        let tap = self
            .taps
            .recv_timeout(Duration::from_secs(20))
            .expect(expect);
        drop(card);
        tap
    }

    /// SIGTERM: the service stops cleanly (exit 0) within 10 s.
    fn sigterm_stops_it_cleanly(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut waited = 0;
        let code = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s.code();
            }
            waited += 1;
            assert!(waited < 100, "watch did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(code, Some(0));
        self.reader.join().unwrap();
    }
}

/// A tap of the genuine card: one event, genuine, age over 65, timed.
fn first_tap_is_genuine(w: &Watch, g: &Gate) {
    let tap = w.tap(g, 4, "a tap line");
    assert_eq!(tap["event"], "tap", "{tap}");
    assert_eq!(tap["reader"], READER);
    assert_eq!(tap["verdict"]["verdict"], "genuine", "{tap}");
    assert_eq!(tap["verdict"]["attributes"]["age_over_65"], true, "{tap}");
    assert!(tap["timing_ms"]["total"].as_f64().unwrap() > 0.0);
}

#[test]
fn watch_reports_taps_and_reloads_trust() {
    let _lock = vpcd_lock();
    if !bench_available("watch_reports_taps_and_reloads_trust") {
        return;
    }
    let gate = Gate::with_one_card();
    let watch = Watch::start(&gate);
    first_tap_is_genuine(&watch, &gate);
    // The service reloads the replaced bundle by itself.
    gate.revoke_and_replace_the_bundle();
    let tap = watch.tap(&gate, 5, "a second tap line");
    assert_eq!(tap["verdict"]["verdict"], "revoked", "{tap}");
    watch.sigterm_stops_it_cleanly();
}
