//! The card kit against the reference card in memory: every step passes; a
//! card that leaks which check failed does not.
#![cfg(test)]

use citycard_card::{Applet, MemoryStorage};
use citycard_conformance::{run_card_kit, Outcome};
use citycard_proto::auth::AuthRequest;
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard};
use citycard_transport::MemoryTransport;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn reference_card() -> Applet<MemoryStorage, ChaCha20Rng> {
    Applet::new(MemoryStorage::default(), ChaCha20Rng::from_entropy())
}

#[test]
fn the_reference_card_conforms() {
    let mut t = MemoryTransport::new(reference_card());
    let report = run_card_kit(&mut t, "in-memory reference card").unwrap();
    let failed: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.outcome != Outcome::Pass)
        .map(|s| format!("{} expected {} observed {}", s.id, s.expected, s.observed))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(report.passed());
    assert!(report.steps.len() > 60);
    assert!(report
        .timing
        .iter()
        .any(|t| t.command == "GENERAL AUTHENTICATE"));
}

/// A card that answers `6A88` instead of a decoy when the reader's date is
/// outside its certificate: an oracle.
struct Leaky<C>(C);

impl<C: ContactlessCard> ContactlessCard for Leaky<C> {
    fn atr(&self) -> Vec<u8> {
        self.0.atr()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let r = self.0.transmit(command)?;
        let is_ga = command.get(1) == Some(&0x86);
        if is_ga && (r.len() > 2 || r.first() == Some(&0x61)) {
            let lc = usize::from(command[4]);
            if let Ok(req) = AuthRequest::decode(&command[5..5 + lc]) {
                let today = citycard_conformance::city::today().unwrap();
                if req.date.days_since_epoch() > today.days_since_epoch() + 90 {
                    return Ok(vec![0x6A, 0x88]);
                }
            }
        }
        Ok(r)
    }
}

/// The ids of the steps that failed, in order.
fn failed_steps(report: &citycard_conformance::Report) -> Vec<&str> {
    report
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Fail)
        .map(|s| s.id.as_str())
        .collect()
}

#[test]
fn a_card_that_leaks_which_check_failed_fails_with_the_step_named() {
    let mut t = MemoryTransport::new(Leaky(reference_card()));
    let report = run_card_kit(&mut t, "leaky card").unwrap();
    for s in &report.steps {
        if s.outcome != Outcome::Pass {
            println!("{} expected {} observed {}", s.id, s.expected, s.observed);
        }
    }
    assert!(!report.passed());
    let failed = failed_steps(&report);
    assert_eq!(
        failed,
        [
            "refuse.ga-date-after-certificate",
            "property.uniform-refusal"
        ]
    );
}

/// Changing what a refusal of GENERAL AUTHENTICATE must look like is an edit
/// of the table, not of the kit: with the version-1 expectation (`6982`, no
/// data) in place of a decoy, the same machinery fails the version-2
/// reference card at exactly the decoyed steps.
#[test]
fn what_a_refusal_looks_like_is_a_table_edit() {
    use citycard_conformance::expect::{Entry, Expect, V2};
    use citycard_conformance::{run_card_kit_with, Table};
    let decoyed = |e: &Entry| e.expect == Expect::Decoy && !e.id.starts_with("property.");
    let steps: Vec<Entry> = V2
        .steps
        .iter()
        .map(|e| Entry {
            expect: if decoyed(e) {
                Expect::Sw(0x6982)
            } else {
                e.expect
            },
            ..*e
        })
        .collect();
    let want: Vec<&str> = V2
        .steps
        .iter()
        .filter(|e| decoyed(e))
        .map(|e| e.id)
        .collect();
    assert!(want.len() >= 8, "{want:?}");
    let table: &'static Table = Box::leak(Box::new(Table {
        version: V2.version,
        steps: Box::leak(steps.into_boxed_slice()),
        reader_cases: V2.reader_cases,
        properties: V2.properties,
    }));
    let mut t = MemoryTransport::new(reference_card());
    let report = run_card_kit_with(&mut t, "version-2 card, version-1 refusals", table).unwrap();
    let failed = failed_steps(&report);
    assert_eq!(failed, want);
}
