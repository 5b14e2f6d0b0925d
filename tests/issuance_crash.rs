//! Crash safety of batch issuance: `citycard batch` is killed with SIGKILL at
//! random moments, again and again, and resumed; at the end every resident has
//! exactly one card, no committed record was lost, and issued + spoiled =
//! intents. Uses the built-in emulated cards (`--reader emulated:DIR`), so no
//! PC/SC bench is needed; `tools/crash-soak` runs more iterations.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use citycard_e2e::{citycard, citycard_bin};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Residents in the batch file.
const ROWS: usize = 120;

/// Crashville's home (station s1, preparer p1), a batch file of `ROWS`
/// residents and the emulated reader's card directory.
struct Crashville {
    /// Holds everything below; removed when the test ends.
    _tmp: tempfile::TempDir,
    home: PathBuf,
    csv: PathBuf,
    cards: PathBuf,
    reader: String,
}

impl Crashville {
    fn init() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let h = home.to_str().unwrap();
        assert_eq!(
            citycard(&[
                "issuer",
                "init",
                "--dir",
                h,
                "--city",
                "Crashville",
                "--issuer-id",
                "CRASH",
                "--card-prefix",
                "CR"
            ])
            .0,
            0
        );
        assert_eq!(citycard(&["station", "add", "s1", "--dir", h]).0, 0);
        assert_eq!(citycard(&["preparer", "add", "p1", "--dir", h]).0, 0);
        let csv = tmp.path().join("batch.csv");
        let mut text = String::from("resident_id,name,address\n");
        for i in 0..ROWS {
            text.push_str(&format!("R-{i:03},Person {i},Street {i}\n"));
        }
        std::fs::write(&csv, text).unwrap();
        let cards = tmp.path().join("cards");
        let reader = format!("emulated:{}", cards.display());
        Self {
            _tmp: tmp,
            home,
            csv,
            cards,
            reader,
        }
    }

    /// The arguments of `batch --resume --json` of the whole file at s1.
    fn batch_args(&self) -> [&str; 12] {
        [
            "batch",
            "--dir",
            self.home.to_str().unwrap(),
            "--station",
            "s1",
            "--reader",
            &self.reader,
            "--prepare-with",
            "p1",
            self.csv.to_str().unwrap(),
            "--resume",
            "--json",
        ]
    }

    fn registry(&self) -> citycard_registry::Registry {
        citycard_registry::Registry::open(self.home.join("registry.sqlite")).unwrap()
    }
}

/// Card number → row, as reported committed by the batch runs.
type Committed = BTreeMap<String, u64>;

/// Run `run`: starts the batch, SIGKILLs it after a random delay and
/// records the cards it reported issued (none reported twice).
fn batch_killed_at_random(
    c: &Crashville,
    run: u32,
    rng: &mut ChaCha20Rng,
    committed: &mut Committed,
) {
    let mut child = Command::new(citycard_bin())
        .args(c.batch_args())
        .env("CITYCARD_PASSPHRASE", "correct horse battery staple")
        .env("CITYCARD_OPERATOR", "crash-test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let delay = 150 + rng.next_u32() % 600;
    std::thread::sleep(Duration::from_millis(u64::from(delay)));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["status"] == "issued" {
            let number = v["card_number"].as_str().unwrap().to_string();
            assert!(
                committed
                    .insert(number.clone(), v["line"].as_u64().unwrap())
                    .is_none(),
                "run {run}: {number} reported twice"
            );
        }
    }
}

/// The batch resumed to its end: exit 0, no open intent, every row issued
/// once (the registry's issued count equals the rows). Records the cards
/// it issued.
fn resumed_batch_finishes_every_row(c: &Crashville, committed: &mut Committed) {
    let (code, out, err) = citycard(&c.batch_args());
    assert_eq!(code, 0, "{out}\n{err}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["status"] == "issued" {
            committed.insert(
                v["card_number"].as_str().unwrap().to_string(),
                v["line"].as_u64().unwrap(),
            );
        }
    }
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let reg = &summary["summary"]["registry"];
    assert_eq!(reg["open_intents"], 0);
    assert_eq!(reg["issued"], ROWS, "{summary}");
}

/// Every card number reported as committed is still issued.
fn no_committed_card_lost(registry: &citycard_registry::Registry, committed: &Committed) {
    let mut residents = BTreeSet::new();
    for (number, row) in committed {
        let card = registry
            .card(number)
            .unwrap()
            .unwrap_or_else(|| panic!("committed card {number} (row {row}) lost"));
        assert!(
            matches!(card.state, citycard_registry::CardState::Issued),
            "{number}: {card:?}"
        );
        residents.insert(card.resident_ref.clone());
    }
}

/// Every resident has exactly one live card (the registry's partial unique
/// index forbids two; the issued count equal to the rows forbids none).
fn every_resident_has_one_live_card(registry: &citycard_registry::Registry) {
    for i in 0..ROWS {
        let live = registry.live_card_of(&format!("R-{i:03}")).unwrap();
        assert!(
            live.is_some_and(|c| matches!(c.state, citycard_registry::CardState::Issued)),
            "R-{i:03} has no issued card"
        );
    }
}

#[test]
fn kill_dash_nine_during_batch_then_resume_loses_nothing() {
    let runs: u32 = std::env::var("CITYCARD_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let city = Crashville::init();
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let mut committed = Committed::new();
    for run in 0..runs {
        batch_killed_at_random(&city, run, &mut rng, &mut committed);
    }
    resumed_batch_finishes_every_row(&city, &mut committed);
    let registry = city.registry();
    no_committed_card_lost(&registry, &committed);
    every_resident_has_one_live_card(&registry);
    let counts = registry.counts().unwrap();
    assert_eq!(counts.issued as usize, ROWS);
    eprintln!(
        "crash test: {runs} kills, {} spoiled intents, {} cards used",
        counts.spoiled,
        std::fs::read_dir(&city.cards).unwrap().count()
    );
}
