//! Several offices, one registry: 8 issuing processes ("offices", each with
//! its own desk lease) share one registry — a PostgreSQL database, or one
//! SQLite file — drawing residents from one pool, so they race for the same
//! people. Each is killed with SIGKILL at a random moment, several rounds
//! over. Afterwards the offices resume (a desk takes over every intent whose
//! lease is gone and settles it) and the registry must hold: every card an
//! office reported committed, no resident with two live cards, no card
//! number twice, every intent ended issued or spoiled, and every revocation
//! made at any office in the next revocation list.
#![cfg(test)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use citycard_registry::pg::{password_from_env_or_file, PASSWORD_ENV};
use citycard_registry::{
    CardNumber, CardState, Counts, IssuanceRegistry, NewIssuance, PgRegistry, Registry,
    RegistryError, RevocationReason,
};
use common::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rstest::rstest;

const CHILD_LOCATION: &str = "CITYCARD_OFFICES_CHILD_LOCATION";
const CHILD_OFFICE: &str = "CITYCARD_OFFICES_CHILD_OFFICE";
const CHILD_SEED: &str = "CITYCARD_OFFICES_CHILD_SEED";
const OFFICES: u64 = 8;
const ROUNDS: u64 = 3;
const RESIDENTS: u64 = 300;
const LEASE_TTL: i64 = 2;

fn open(location: &str) -> Box<dyn IssuanceRegistry> {
    if citycard_registry::pg::is_postgres_url(location) {
        let password = password_from_env_or_file(None).unwrap();
        Box::new(PgRegistry::connect(location, password.as_deref()).unwrap())
    } else {
        Box::new(Registry::open(location).unwrap())
    }
}

/// One office's process: runs only when started by the parent test below.
#[test]
fn office_child() {
    let Ok(location) = std::env::var(CHILD_LOCATION) else {
        return;
    };
    let office: u64 = std::env::var(CHILD_OFFICE).unwrap().parse().unwrap();
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut reg = open(&location);
    let lease = reg
        .acquire_lease(
            &format!("office-{office}/desk-1"),
            &format!("office-{office}"),
            LEASE_TTL,
        )
        .unwrap();
    let attrs = attributes(NAME);
    let mut issued: Vec<String> = Vec::new();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        reg.renew_lease(&lease.id, LEASE_TTL).unwrap();
        let resident = format!("r-{}", rng.next_u64() % RESIDENTS);
        let replaces = (rng.next_u64() % 4 == 0).then_some(RevocationReason::Lost);
        let begun = reg.begin_intent(&NewIssuance {
            card_number: CardNumber::Next { prefix: "LG" },
            replaces,
            lease: Some(&lease.id),
            station: "office-desk",
            ..issuance("unused", &resident, &attrs)
        });
        let intent = match begun {
            Ok(intent) => intent,
            // Another office has this resident's live card or open intent.
            Err(RegistryError::ResidentHasLiveCard { .. })
            | Err(RegistryError::ResidentHasOpenIntent { .. }) => continue,
            Err(e) => panic!("office {office}: {e}"),
        };
        writeln!(out, "INTENT {} {resident}", intent.card_number).unwrap();
        if let Some((old, _)) = &intent.replaces {
            writeln!(out, "REVOKED {old}").unwrap();
        }
        out.flush().unwrap();
        let (key, rid) = card_key(seed.wrapping_mul(1_000_003).wrapping_add(i));
        reg.attach_card_key(intent.id, &key, &rid, "op-1").unwrap();
        if i % 5 == 4 {
            reg.mark_spoiled(intent.id, "torn", "op-1").unwrap();
            writeln!(out, "SPOILED {}", intent.card_number).unwrap();
        } else {
            reg.commit_issued(intent.id, &key, &rid, "op-1").unwrap();
            writeln!(out, "ISSUED {}", intent.card_number).unwrap();
            issued.push(intent.card_number);
        }
        out.flush().unwrap();
        if i % 6 == 5 {
            // Revoke one of this office's cards (it may have been replaced
            // by another office meanwhile).
            let number = issued.swap_remove((rng.next_u64() as usize) % issued.len());
            match reg.revoke(&number, RevocationReason::Stolen, "op-1") {
                Ok(()) => writeln!(out, "REVOKED {number}").unwrap(),
                Err(RegistryError::AlreadyRevoked { .. }) => {}
                Err(e) => panic!("office {office}: {e}"),
            }
            out.flush().unwrap();
        }
    }
}

/// A running office process and the thread collecting its (stdout, stderr).
type RunningOffice = (u64, Child, JoinHandle<(String, String)>);

/// Starts the `OFFICES` office processes of `round` on the registry at
/// `location`, each with its own seed derived from `seed`.
fn start_offices(location: &str, seed: u64, round: u64) -> Vec<RunningOffice> {
    let exe = std::env::current_exe().unwrap();
    (0..OFFICES)
        .map(|office| {
            let mut child = Command::new(&exe)
                .args(["--exact", "office_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_LOCATION, location)
                .env(CHILD_OFFICE, office.to_string())
                .env(CHILD_SEED, (seed ^ (round << 32) ^ office).to_string())
                .env(PASSWORD_ENV, citycard_testkit::pg::PASSWORD)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut stderr = child.stderr.take().unwrap();
            let reader = std::thread::spawn(move || {
                let mut s = String::new();
                stdout.read_to_string(&mut s).unwrap();
                let mut e = String::new();
                stderr.read_to_string(&mut e).unwrap();
                (s, e)
            });
            (office, child, reader)
        })
        .collect()
}

/// What the killed offices reported, over every round.
struct Reports {
    seed: u64,
    /// Per card number: the last state an office reported, and which office.
    reported: BTreeMap<String, (&'static str, u64)>,
    /// Per card number handed out: the resident it was for.
    residents_of: BTreeMap<String, String>,
    killed: u64,
}

impl Reports {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            reported: BTreeMap::new(),
            residents_of: BTreeMap::new(),
            killed: 0,
        }
    }

    /// SIGKILLs each office at a random moment (none may have exited by
    /// itself) and records what it reported.
    fn kill_at_random(&mut self, offices: Vec<RunningOffice>, rng: &mut ChaCha20Rng) {
        let seed = self.seed;
        for (office, mut child, reader) in offices {
            std::thread::sleep(Duration::from_millis(100 + rng.next_u64() % 400));
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            let (out, err) = reader.join().unwrap();
            assert!(
                status.code().is_none(),
                "office {office} exited by itself ({status}): {err} (seed {seed})"
            );
            self.killed += 1;
            self.record(office, &out);
        }
    }

    /// Records the lines of one office's stdout; no card number may be
    /// handed out twice.
    fn record(&mut self, office: u64, out: &str) {
        let seed = self.seed;
        for line in out.lines() {
            let mut words = line.split(' ');
            let (Some(what), Some(number)) = (words.next(), words.next()) else {
                continue;
            };
            let state = match what {
                "INTENT" => {
                    let resident = words.next().unwrap().to_string();
                    assert!(
                        self.residents_of
                            .insert(number.to_string(), resident)
                            .is_none(),
                        "card number {number} handed out twice (seed {seed})"
                    );
                    "intent"
                }
                "ISSUED" => "issued",
                "SPOILED" => "spoiled",
                "REVOKED" => "revoked",
                _ => continue,
            };
            self.reported.insert(number.to_string(), (state, office));
        }
    }
}

/// The offices resume: once every lease is gone (every office was killed),
/// a desk takes over every open intent and settles it.
fn resume_takes_over_every_orphaned_intent(reg: &mut dyn IssuanceRegistry) {
    std::thread::sleep(Duration::from_secs(LEASE_TTL as u64 + 1));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(reg.active_leases(now).unwrap().is_empty());
    let desk = reg.acquire_lease("office-0/desk-1", "resume", 60).unwrap();
    for intent in reg.open_intents().unwrap() {
        let owner = intent.owner.as_ref().map(|l| l.id.as_str());
        assert!(intent.owner.as_ref().is_some_and(|l| l.is_gone_at(now)));
        assert!(reg.take_over_intent(intent.id, owner, &desk.id).unwrap());
        reg.mark_spoiled(intent.id, "office-crash", "op-1").unwrap();
    }
    reg.release_lease(&desk.id).unwrap();
}

/// Every reported record is there, in (at least) the reported state, and
/// settled since if it was an open intent.
fn every_reported_record_is_there(reg: &dyn IssuanceRegistry, r: &Reports) {
    let seed = r.seed;
    for (number, (state, office)) in &r.reported {
        let card = reg.card(number).unwrap().unwrap_or_else(|| {
            panic!("office {office}: committed card {number} lost (seed {seed})")
        });
        assert!(
            card.state != CardState::Intent && reached(state, &card.state),
            "{number} reported {state}, found {:?} (seed {seed})",
            card.state
        );
    }
}

/// Every intent ended issued or spoiled: none open, and as many settled as
/// the audit log says were begun. Returns the counts.
fn every_intent_ended_issued_or_spoiled(reg: &dyn IssuanceRegistry, seed: u64) -> Counts {
    let counts = reg.counts().unwrap();
    assert_eq!(counts.open_intents, 0);
    let audit = reg.audit_log().unwrap();
    let begun = audit.iter().filter(|e| e.action == "intent").count() as u64;
    assert_eq!(counts.issued + counts.spoiled, begun, "seed {seed}");
    counts
}

/// No resident with two live cards; the live card is the newest issued one.
fn no_resident_with_two_live_cards(reg: &dyn IssuanceRegistry, r: &Reports) {
    let mut live_per_resident: BTreeMap<&str, u32> = BTreeMap::new();
    for (number, resident) in &r.residents_of {
        let card = reg.card(number).unwrap().unwrap();
        if card.state == CardState::Issued {
            *live_per_resident.entry(resident).or_default() += 1;
            assert_eq!(
                reg.live_card_of(resident).unwrap().unwrap().card_number,
                *number
            );
        }
    }
    assert!(
        live_per_resident.values().all(|n| *n == 1),
        "seed {}",
        r.seed
    );
}

/// Revocations from every office are on the next list. Returns the offices
/// that revoked.
fn every_revocation_is_listed(reg: &dyn IssuanceRegistry, r: &Reports) -> BTreeSet<u64> {
    let listed: BTreeSet<[u8; 8]> = reg.revocation_ids().unwrap().into_iter().collect();
    let mut revoked_offices = BTreeSet::new();
    for (number, (state, office)) in &r.reported {
        if *state == "revoked" {
            let rid = reg.card(number).unwrap().unwrap().revocation_id.unwrap();
            assert!(
                listed.contains(&rid),
                "{number} revoked at office {office} not listed"
            );
            revoked_offices.insert(*office);
        }
    }
    revoked_offices
}

#[rstest]
fn offices_killed_at_random_lose_nothing_and_break_no_rule(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    if std::env::var(CHILD_LOCATION).is_ok() {
        return;
    }
    let f = fixture_on(backend);
    let (seed, mut rng) = test_seed();
    let mut reports = Reports::new(seed);
    for round in 0..ROUNDS {
        reports.kill_at_random(start_offices(&f.location, seed, round), &mut rng);
    }

    let mut reg = f.reopen();
    resume_takes_over_every_orphaned_intent(reg.as_mut());
    every_reported_record_is_there(reg.as_ref(), &reports);
    let counts = every_intent_ended_issued_or_spoiled(reg.as_ref(), seed);
    no_resident_with_two_live_cards(reg.as_ref(), &reports);
    let revoked_offices = every_revocation_is_listed(reg.as_ref(), &reports);

    let issued = reports
        .reported
        .values()
        .filter(|(s, _)| *s == "issued")
        .count();
    println!(
        "{backend:?}: {} cards, {issued} issued, {} revoked at {} offices, {} kills",
        reports.reported.len(),
        counts.revoked,
        revoked_offices.len(),
        reports.killed
    );
    assert_eq!(reports.killed, OFFICES * ROUNDS);
    assert!(issued >= 50, "too few cards to mean anything: {issued}");
    assert!(
        revoked_offices.len() >= 4,
        "revocations from too few offices"
    );
}
