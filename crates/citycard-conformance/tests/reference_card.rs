//! The card kit against the reference card in memory: every step passes; a
//! card that leaks which check failed does not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use citycard_card::{Applet, MemoryStorage};
use citycard_conformance::{run_card_kit, Outcome};
use citycard_proto::auth::AuthRequest;
use citycard_proto::{CardLost, ContactlessCard};
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

/// A card that answers `6A88` instead of `6982` when the reader's date is
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
        if is_ga && r == [0x69, 0x82] {
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

#[test]
fn a_card_that_leaks_which_check_failed_fails_with_the_step_named() {
    let mut t = MemoryTransport::new(Leaky(reference_card()));
    let report = run_card_kit(&mut t, "leaky card").unwrap();
    assert!(!report.passed());
    let failed: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Fail)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "refuse.ga-date-after-certificate",
            "property.uniform-refusal"
        ]
    );
}

/// A card whose refused GENERAL AUTHENTICATE answers a decoy, as in spec
/// version 2: an answer-shaped `7C { 86 E_C, 87 random }` served with `61xx`.
struct DecoyOnRefusal<C> {
    inner: C,
    pending: Vec<u8>,
}

impl<C: ContactlessCard> ContactlessCard for DecoyOnRefusal<C> {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) {
        self.pending.clear();
        self.inner.reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        if command.get(1) == Some(&0xC0) && !self.pending.is_empty() {
            let mut r = std::mem::take(&mut self.pending);
            r.extend_from_slice(&[0x90, 0x00]);
            return Ok(r);
        }
        self.pending.clear();
        let r = self.inner.transmit(command)?;
        if command.get(1) == Some(&0x86) && r == [0x69, 0x82] {
            let mut decoy = vec![0x7C, 0x81, 0x88, 0x86, 0x21, 0x02];
            decoy.extend_from_slice(&[0x5A; 32]);
            decoy.extend_from_slice(&[0x87, 0x81, 0x60]);
            decoy.extend_from_slice(&[0xA5; 0x60]);
            self.pending = decoy;
            return Ok(vec![0x61, self.pending.len() as u8]);
        }
        Ok(r)
    }
}

/// Switching the expected refusal of GENERAL AUTHENTICATE to a decoy is an
/// edit of the table, not of the kit: the same machinery then passes a card
/// that decoys and fails one that answers `6982`.
#[test]
fn a_version_with_decoys_is_a_table_edit() {
    use citycard_conformance::expect::{Entry, Expect, V1};
    use citycard_conformance::{run_card_kit_with, Table};
    // Refusals of GENERAL AUTHENTICATE by an issued card become decoys.
    let decoyed = |id: &str| id.starts_with("refuse.ga-") || id.ends_with(".uncached");
    let steps: Vec<Entry> = V1
        .steps
        .iter()
        .map(|e| Entry {
            expect: if decoyed(e.id) {
                Expect::Decoy
            } else {
                e.expect
            },
            ..*e
        })
        .collect();
    let table: &'static Table = Box::leak(Box::new(Table {
        version: V1.version,
        steps: Box::leak(steps.into_boxed_slice()),
        reader_cases: V1.reader_cases,
        properties: V1.properties,
    }));
    let issued_decoys = |c| DecoyOnRefusal {
        inner: c,
        pending: Vec::new(),
    };
    let mut t = MemoryTransport::new(issued_decoys(reference_card()));
    let report = run_card_kit_with(&mut t, "decoying card", table).unwrap();
    let failed: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Fail)
        .map(|s| s.id.as_str())
        .collect();
    // Only the pre-issuance GENERAL AUTHENTICATE steps still expect 6982.
    assert_eq!(
        failed,
        ["blank.general-authenticate", "anchor.general-authenticate"]
    );
    // The version-1 card (6982, no decoy) fails every decoyed step.
    let mut t = MemoryTransport::new(reference_card());
    let report = run_card_kit_with(&mut t, "version-1 card", table).unwrap();
    let failed = report
        .steps
        .iter()
        .filter(|s| s.outcome == Outcome::Fail)
        .count();
    assert_eq!(
        failed,
        report.steps.iter().filter(|s| decoyed(&s.id)).count()
    );
}
