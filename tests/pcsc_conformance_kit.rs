//! The conformance kits through pcscd + vpcd: `citycard conformance card`
//! passes our emulated card (in `Virtual PCD 00 01`) and names the failing
//! step for every emulator fault; `citycard conformance reader` passes our own
//! `citycard watch` (cards in `Virtual PCD 00 00`).
#![cfg(test)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use citycard_e2e::{bench_available, citycard_bin, vpcd_lock};
use citycard_transport::PcscContext;

/// The reader the card under test sits in, and its vpcd address.
const CARD_READER: &str = "Virtual PCD 00 01";
const CARD_VPCD: &str = "127.0.0.1:35964";

struct Emulator(Child);

impl Emulator {
    fn start(state: &Path, fault: Option<&str>) -> Self {
        let extra: Vec<&str> = fault.map(|f| vec!["--fault", f]).unwrap_or_default();
        Self::start_with(state, &extra)
    }

    fn start_with(state: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(citycard_bin());
        cmd.args(["card", "emulate", "--vpcd", CARD_VPCD, "--state"])
            .arg(state)
            .args(extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let this = Self(child);
        let ctx = PcscContext::establish().unwrap();
        ctx.wait_for_card(CARD_READER, Some(Duration::from_secs(10)))
            .expect("the emulated card appears in Virtual PCD 00 01");
        this
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Ok(ctx) = PcscContext::establish() {
            let _ = ctx.wait_for_removal(CARD_READER, Some(Duration::from_secs(10)));
        }
    }
}

/// `citycard conformance card --reader CARD_READER --json` and `extra`.
fn card_kit_command(extra: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new(citycard_bin());
    c.args(["conformance", "card", "--reader", CARD_READER, "--json"])
        .args(extra);
    c
}

/// Runs the card kit with `--json` against a fresh emulated card; (exit code, report).
fn card_kit(fault: Option<&str>) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let _card = Emulator::start(&dir.path().join("card.state"), fault);
    let junit = dir.path().join("junit.xml");
    let out = card_kit_command(&["--junit".as_ref(), junit.as_ref()])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let failures = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "fail")
        .count();
    assert!(xml.contains(&format!("failures=\"{failures}\"")), "{xml}");
    (out.status.code().unwrap_or(-1), report)
}

fn first_failure(report: &serde_json::Value) -> Option<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["outcome"] == "fail")
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["observed"].as_str().unwrap().to_owned(),
            )
        })
}

/// The `failures` count of a JUnit report.
fn junit_failures(xml: &str) -> u64 {
    let at = xml.find("failures=\"").expect("a failures attribute") + "failures=\"".len();
    xml[at..][..xml[at..].find('"').unwrap()].parse().unwrap()
}

#[test]
fn the_card_kit_passes_our_card_and_names_the_step_of_every_fault() {
    let _lock = vpcd_lock();
    if !bench_available("the_card_kit_passes_our_card_and_names_the_step_of_every_fault") {
        return;
    }
    let (code, report) = card_kit(None);
    assert_eq!(first_failure(&report), None);
    assert_eq!(code, 0);
    assert_eq!(report["spec_version"], 2);
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() > 60);
    assert!(steps.iter().all(|s| s["outcome"] == "pass"));
    let timing = report["timing"].as_array().unwrap();
    assert!(timing
        .iter()
        .any(|t| t["command"] == "GENERAL AUTHENTICATE" && t["count"].as_u64().unwrap() >= 6));

    // Each fault: caught, at the step where it first shows, with what a
    // correct reader would conclude. In version 2 every GENERAL AUTHENTICATE
    // of an issued card is answered (a decoy when the card refuses), so the
    // faults that break an answer's form show at the first one, the decoy
    // before the reader's certificate is cached; those that keep the form
    // show at the first tap, as a decoy (a tag that fails) or a clone.
    let cases: [(&str, &str, &str); 10] = [
        ("clone", "verify.library.first-tap", "clone"),
        ("wrong-sw", "verify.library.uncached", "6A80"),
        ("truncated", "verify.library.uncached", "answer_len"),
        ("over-long", "verify.library.uncached", "answer_len"),
        ("flip-ciphertext", "verify.library.first-tap", "decoy"),
        ("decoy", "verify.library.first-tap", "decoy"),
        // The recorded answer is the first one: the uncached decoy.
        ("replay", "verify.library.first-tap", "decoy"),
        ("stale-record", "verify.library.first-tap", "decoy"),
        ("endless-61xx", "verify.library.uncached", "endless 61xx"),
        ("removed-mid-answer", "verify.library.uncached", "removed"),
    ];
    for (fault, step, says) in cases {
        let (code, report) = card_kit(Some(fault));
        assert_eq!(
            code, 51,
            "{fault}: exit status for a card that does not conform"
        );
        let (id, observed) =
            first_failure(&report).unwrap_or_else(|| panic!("{fault} was not caught"));
        assert_eq!(id, step, "{fault}: {observed}");
        assert!(observed.contains(says), "{fault}: {observed}");
    }
}

#[test]
fn the_reader_kit_passes_citycard_watch() {
    let _lock = vpcd_lock();
    if !bench_available("the_reader_kit_passes_citycard_watch") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kit_dir = dir.path().join("kit");
    let watch = format!(
        "exec {} watch --trust {{trust}} --credential {{credential}} --readers 'Virtual PCD 00 00'",
        citycard_bin().display()
    );
    let started = Instant::now();
    let out = Command::new(citycard_bin())
        .args(["conformance", "reader", "--json", "--dir"])
        .arg(&kit_dir)
        .args(["--reader-command", &watch, "--timeout", "15"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let steps = report["steps"].as_array().unwrap();
    let failed: Vec<String> = steps
        .iter()
        .filter(|s| s["outcome"] != "pass")
        .map(|s| {
            format!(
                "{}: expected {} observed {}",
                s["id"], s["expected"], s["observed"]
            )
        })
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(out.status.code(), Some(0));
    let names: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    for case in [
        "reader.genuine",
        "reader.clone",
        "reader.revoked",
        "reader.expired",
        "reader.other-city",
        "reader.replay",
        "reader.decoy",
        "reader.removed-mid-answer",
    ] {
        assert!(names.contains(&case), "{case} missing from {names:?}");
    }
    eprintln!(
        "reader kit: {} cards in {:?}",
        steps.len(),
        started.elapsed()
    );
}

#[test]
fn the_reader_kit_fails_a_reader_that_calls_every_card_genuine() {
    let _lock = vpcd_lock();
    if !bench_available("the_reader_kit_fails_a_reader_that_calls_every_card_genuine") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A "reader" that says genuine once a second, whatever is presented.
    let liar = "while true; do echo '{\"verdict\":\"genuine\"}'; sleep 1; done";
    let junit = dir.path().join("reader.xml");
    let out = Command::new(citycard_bin())
        .args([
            "conformance",
            "reader",
            "--json",
            "--startup-secs",
            "0",
            "--settle-ms",
            "100",
            "--dir",
        ])
        .arg(dir.path().join("kit"))
        .args(["--reader-command", liar, "--timeout", "3", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(51));
    let steps = report["steps"].as_array().unwrap();
    let genuine = steps.iter().find(|s| s["id"] == "reader.genuine").unwrap();
    assert_eq!(genuine["outcome"], "pass");
    let clone = steps.iter().find(|s| s["id"] == "reader.clone").unwrap();
    assert_eq!(clone["outcome"], "fail");
    assert_eq!(clone["observed"], "genuine");
    // The JUnit report counts the same failures.
    let failed = steps.iter().filter(|s| s["outcome"] == "fail").count();
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(failed > 0);
    assert_eq!(junit_failures(&xml), failed as u64, "{xml}");
}

/// The other way to connect a reader: its verdicts on the kit's standard
/// input. Our `citycard watch` is started once the kit has written its
/// files, its output piped into the kit; the JUnit report has no failure.
#[test]
fn the_reader_kit_reads_verdicts_on_stdin_and_writes_junit() {
    let _lock = vpcd_lock();
    if !bench_available("the_reader_kit_reads_verdicts_on_stdin_and_writes_junit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kit_dir = dir.path().join("kit");
    let junit = dir.path().join("reader.xml");
    let mut kit = Command::new(citycard_bin())
        .args(["conformance", "reader", "--dir"])
        .arg(&kit_dir)
        .args(["--timeout", "15", "--junit"])
        .arg(&junit)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The kit writes the bundle, then the credential, before its first card.
    let credential = kit_dir.join("library.cred");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !credential.exists() {
        assert!(Instant::now() < deadline, "the kit wrote no credential");
        assert!(kit.try_wait().unwrap().is_none(), "the kit stopped early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut watch = Command::new(citycard_bin())
        .arg("watch")
        .arg("--trust")
        .arg(kit_dir.join("conformance.bundle"))
        .arg("--credential")
        .arg(&credential)
        .args(["--readers", "Virtual PCD 00 00"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(kit.stdin.take().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = kit.wait_with_output();
    let _ = watch.kill();
    let _ = watch.wait();
    let out = out.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("reader.clone"),
        "a text report by default: {text}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(junit_failures(&xml), 0, "{xml}");
    let cases = xml.matches("<testcase ").count();
    assert!(cases >= 8, "{xml}");
    assert!(xml.contains("name=\"reader.genuine\""), "{xml}");
    assert!(
        xml.contains("verdicts on stdin"),
        "the target names the mode: {xml}"
    );
}

#[test]
fn vectors_replay_on_a_card_in_deterministic_mode_only() {
    let _lock = vpcd_lock();
    if !bench_available("vectors_replay_on_a_card_in_deterministic_mode_only") {
        return;
    }
    let vector =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../applet-spec/vectors/verify-library.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&vector).unwrap()).unwrap();
    let seed = v["card_seed"].as_str().unwrap().to_owned();
    let replay = |extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let _card = Emulator::start_with(&dir.path().join("card.state"), extra);
        let out = card_kit_command(&["--vector".as_ref(), vector.as_ref()])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    // A test build loaded with the vector's seed replays it byte for byte.
    let (code, report) = replay(&["--seed", &seed]);
    assert_eq!(first_failure(&report), None);
    assert_eq!(code, Some(0));
    assert_eq!(
        report["steps"].as_array().unwrap().len(),
        v["steps"].as_array().unwrap().len()
    );
    // A card without deterministic mode (as every production card) does not,
    // and the report says why.
    let (code, report) = replay(&[]);
    assert_eq!(code, Some(51));
    let (_, observed) = first_failure(&report).unwrap();
    assert!(observed.contains("production build"), "{observed}");
}
