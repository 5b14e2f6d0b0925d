//! Crash test: a child process writes intents, commits, spoils and revokes in
//! a loop and is killed with SIGKILL at a random moment; afterwards the
//! registry opens, passes `integrity_check`, and holds every record the child
//! reported — the child prints a line only after the call returned, i.e.
//! after the commit was on disk.
#![cfg(test)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use citycard_registry::{NewIssuance, Registry, RevocationReason};
use common::*;
use rand_chacha::rand_core::RngCore;

const CHILD_DB: &str = "CITYCARD_REGISTRY_CRASH_CHILD_DB";
const CHILD_RUN: &str = "CITYCARD_REGISTRY_CRASH_CHILD_RUN";
const RUNS: u64 = 40;

/// The child's side: runs only when started by the parent test below.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let run: u64 = std::env::var(CHILD_RUN).unwrap().parse().unwrap();
    let mut reg = Registry::open(&path).unwrap();
    let attrs = attributes(NAME);
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let resident = format!("r-{run}-{i}");
        let number = reg.next_card_number("LG").unwrap();
        let intent = reg
            .begin_intent(&NewIssuance {
                batch: Some(("crash", run * 1_000_000 + i)),
                ..issuance(&number, &resident, &attrs)
            })
            .unwrap();
        writeln!(out, "INTENT {number}").unwrap();
        out.flush().unwrap();
        if i % 5 == 4 {
            reg.mark_spoiled(intent.id, "torn", "op-1").unwrap();
            writeln!(out, "SPOILED {number}").unwrap();
        } else {
            let (key, rid) = card_key(run * 1_000_000 + i);
            reg.commit_issued(intent.id, &key, &rid, "op-1").unwrap();
            writeln!(out, "ISSUED {number}").unwrap();
            if i % 7 == 3 {
                out.flush().unwrap();
                reg.revoke(&number, RevocationReason::Lost, "op-1").unwrap();
                writeln!(out, "REVOKED {number}").unwrap();
            }
        }
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_at_random_points_loses_no_committed_record() {
    if std::env::var(CHILD_DB).is_ok() {
        return;
    }
    let f = fixture();
    drop(f.reg);
    let exe = std::env::current_exe().unwrap();
    let (seed, mut rng) = test_seed();
    // What the child reported, per card number: the last state it reached.
    let mut reported: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut killed_mid_run = 0;
    for run in 0..RUNS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DB, &f.path)
            .env(CHILD_RUN, run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).unwrap();
            s
        });
        std::thread::sleep(Duration::from_millis(20 + rng.next_u64() % 280));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if status.code().is_none() {
            killed_mid_run += 1;
        }
        let out = reader.join().unwrap();
        for line in out.lines() {
            let Some((what, number)) = line.split_once(' ') else {
                continue;
            };
            let state = match what {
                "INTENT" => "intent",
                "ISSUED" => "issued",
                "SPOILED" => "spoiled",
                "REVOKED" => "revoked",
                _ => continue,
            };
            reported.insert(number.to_string(), state);
        }

        // The registry opens, is intact, and holds every reported record.
        let mut reg = Registry::open(&f.path).unwrap();
        reg.integrity_check().unwrap();
        for (number, state) in &reported {
            let card = reg
                .card(number)
                .unwrap()
                .unwrap_or_else(|| panic!("run {run}: committed card {number} lost (seed {seed})"));
            assert!(
                reached(state, &card.state),
                "run {run}: {number} reported {state}, found {:?} (seed {seed})",
                card.state
            );
        }
        // Reconcile as the tool does on start: open intents are marked spoiled.
        for intent in reg.open_intents().unwrap() {
            reg.mark_spoiled(intent.id, "crash", "op-1").unwrap();
        }
        let counts = reg.counts().unwrap();
        let begun = reg
            .audit_log()
            .unwrap()
            .iter()
            .filter(|e| e.action == "intent")
            .count() as u64;
        assert_eq!(
            counts.issued + counts.spoiled,
            begun,
            "run {run} (seed {seed})"
        );
        assert_eq!(counts.open_intents, 0);
    }
    let issued = reported
        .values()
        .filter(|s| **s != "intent" && **s != "spoiled")
        .count();
    println!(
        "{} records reported, {issued} issued, {killed_mid_run} runs killed",
        reported.len()
    );
    assert_eq!(
        killed_mid_run, RUNS,
        "every child must have been killed, not exited"
    );
    assert!(
        issued >= RUNS as usize,
        "too few records written to mean anything: {issued}"
    );
}
