//! The reader against a malicious card (issue 6): the `reader`,
//! `partner_credential` and `vector_json` fuzz bodies over their seeds and
//! mutations, and resource limits — a slow card, `61xx` forever, huge
//! responses, wrong status-word sequences — each ending in a non-genuine
//! verdict within a bounded number of APDUs.
//!
//! Waits: `verify` bounds APDU counts and lengths, not time. A card that
//! answers slowly costs (APDUs × its delay), at most `MAX_APDUS` APDUs; a
//! transmit that never returns blocks `verify` (the transport's own timeout
//! applies: PC/SC's; the tap service reports a stall after
//! `WatchConfig::card_timeout` and keeps serving other readers).
#![cfg(test)]

#[path = "../../../fuzz/bodies/proto.rs"]
mod proto;

#[path = "../../../fuzz/bodies/reader.rs"]
mod reader;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use citycard_proto::{apdu::CardLost, apdu::ContactlessCard};
use citycard_reader::Verdict;
use reader::{Scripted, MAX_APDUS};

const FCI_ISSUED: &str = "6F14840AF0434954594341524401A5068001018101079000";

fn fci() -> Vec<u8> {
    hex::decode(FCI_ISSUED).unwrap()
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    reader::seeds()
        .into_iter()
        .filter(|(t, _)| *t == target)
        .map(|(_, s)| s)
        .collect()
}

#[test]
fn reader_fuzz_body_over_seeds_and_mutations() {
    let s = seeds("reader");
    let refs: Vec<&[u8]> = s.iter().map(|v| v.as_slice()).collect();
    proto::run_mutations(&refs, 1500, 0x4EAD, reader::reader);
}

#[test]
fn credential_and_vector_json_bodies_over_seeds_and_mutations() {
    let s = seeds("partner_credential");
    let refs: Vec<&[u8]> = s.iter().map(|v| v.as_slice()).collect();
    proto::run_mutations(&refs, 1500, 0xC4ED, reader::partner_credential);
    let s = seeds("vector_json");
    let refs: Vec<&[u8]> = s.iter().map(|v| v.as_slice()).collect();
    proto::run_mutations(&refs, 300, 0x7EC7, reader::vector_json);
}

#[test]
fn replayed_genuine_transcript_is_not_genuine() {
    for always in [false, true] {
        let t = reader::genuine_transcript(always);
        let commands = Rc::new(RefCell::new(Vec::new()));
        let card = Scripted {
            responses: t.into(),
            commands,
            delay: None,
        };
        let v = reader::verify_against(card, always, 0x33);
        assert!(matches!(v, Verdict::Replay), "{v:?}");
    }
}

/// A card that answers `f(n, command)` to its n-th command.
struct Fake<F>(F, Rc<RefCell<usize>>);

impl<F: FnMut(usize, &[u8]) -> Vec<u8>> ContactlessCard for Fake<F> {
    fn atr(&self) -> Vec<u8> {
        citycard_proto::consts::atr().to_vec()
    }
    fn reset(&mut self) {}
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let n = {
            let mut c = self.1.borrow_mut();
            *c += 1;
            *c
        };
        Ok((self.0)(n, command))
    }
}

fn run<F: FnMut(usize, &[u8]) -> Vec<u8>>(always: bool, f: F) -> (Verdict, usize) {
    let count = Rc::new(RefCell::new(0));
    let v = reader::verify_against(Fake(f, count.clone()), always, 0x21);
    let n = *count.borrow();
    (v, n)
}

#[test]
fn card_answering_61xx_forever_is_cut_off() {
    for always in [false, true] {
        for sw2 in [0x00u8, 0x01, 0x10, 0xFF] {
            // After the FCI: every answer is 61xx with a little data.
            let (v, n) = run(
                always,
                |n, _| {
                    if n == 1 {
                        fci()
                    } else {
                        vec![0xAA, 0x61, sw2]
                    }
                },
            );
            assert!(!v.is_genuine());
            assert!(matches!(v, Verdict::Tampered { .. }), "{v:?}");
            assert!(n <= MAX_APDUS, "{n} APDUs");
        }
        // 61xx from the very first answer (SELECT).
        let (v, n) = run(always, |_, _| vec![0x61, 0x00]);
        assert!(!v.is_genuine() && n <= MAX_APDUS, "{v:?} after {n}");
    }
}

#[test]
fn huge_responses_are_refused() {
    for size in [300usize, 4097, 70_000, 1 << 20] {
        let (v, n) = run(false, |n, _| {
            if n == 1 {
                fci()
            } else {
                let mut r = vec![0x7C; size];
                r.extend_from_slice(&[0x90, 0x00]);
                r
            }
        });
        assert!(!v.is_genuine(), "{size}: {v:?}");
        assert!(n <= MAX_APDUS);
        // A huge SELECT answer too.
        let (v, _) = run(false, |_, _| {
            let mut r = vec![0x6F; size];
            r.extend_from_slice(&[0x90, 0x00]);
            r
        });
        assert!(
            matches!(v, Verdict::NotACitycard | Verdict::Tampered { .. }),
            "{size}: {v:?}"
        );
    }
    // Many 61xx rounds of 256 bytes each: over MAX_RESPONSE_LEN.
    let (v, n) = run(false, |n, _| {
        if n == 1 {
            fci()
        } else {
            let mut r = vec![0x55; 256];
            r.extend_from_slice(&[0x61, 0x00]);
            r
        }
    });
    assert!(matches!(v, Verdict::Tampered { .. }), "{v:?}");
    assert!(n <= 2 + citycard_reader::MAX_RESPONSE_LEN / 256 + 1, "{n}");
}

#[test]
fn wrong_status_word_sequences_give_non_genuine_verdicts() {
    let sws: [&[u8]; 12] = [
        &[],
        &[0x90],
        &[0x90, 0x00],
        &[0x69, 0x82],
        &[0x69, 0x85],
        &[0x6C, 0x10],
        &[0x6C, 0x00],
        &[0x67, 0x00],
        &[0x62, 0x83],
        &[0x6A, 0x82],
        &[0x6F, 0x00],
        &[0x63, 0xC1],
    ];
    for always in [false, true] {
        for a in sws {
            for b in sws {
                for c in sws {
                    let script: Vec<Vec<u8>> = vec![fci(), a.to_vec(), b.to_vec(), c.to_vec()];
                    let commands = Rc::new(RefCell::new(Vec::new()));
                    let card = Scripted {
                        responses: VecDeque::from(script),
                        commands: commands.clone(),
                        delay: None,
                    };
                    let v = reader::verify_against(card, always, 0x44);
                    assert!(!v.is_genuine());
                    assert!(commands.borrow().len() <= MAX_APDUS);
                }
            }
        }
        // 6Cxx forever: one retry per APDU, then the answer is returned.
        let (v, n) = run(always, |n, _| if n == 1 { fci() } else { vec![0x6C, 0x10] });
        assert!(!v.is_genuine() && n <= MAX_APDUS, "{v:?} {n}");
    }
}

#[test]
fn slow_card_is_bounded_by_the_apdu_count() {
    // 20 ms per answer, 61xx forever: the time is APDUs × delay, and the
    // APDUs are bounded, so verify returns (non-genuine) in bounded time.
    let delay = Duration::from_millis(20);
    let commands = Rc::new(RefCell::new(Vec::new()));
    let mut responses = VecDeque::from(vec![fci()]);
    responses.extend(std::iter::repeat_n(vec![0x61, 0x10], 200));
    let card = Scripted {
        responses,
        commands: commands.clone(),
        delay: Some(delay),
    };
    let t0 = Instant::now();
    let v = reader::verify_against(card, false, 0x55);
    let elapsed = t0.elapsed();
    let n = commands.borrow().len();
    assert!(!v.is_genuine(), "{v:?}");
    assert!(n <= MAX_APDUS, "{n}");
    assert!(
        elapsed < delay * (MAX_APDUS as u32 + 5),
        "{elapsed:?} for {n} APDUs"
    );
    // A slow genuine card is still genuine (no timeout in verify itself).
    let card = SlowCard(reader::issued_card(9), Duration::from_millis(10));
    let v = reader::verify_against(card, false, 0x56);
    assert!(v.is_genuine(), "{v:?}");
}

struct SlowCard<C>(C, Duration);

impl<C: ContactlessCard> ContactlessCard for SlowCard<C> {
    fn atr(&self) -> Vec<u8> {
        self.0.atr()
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        std::thread::sleep(self.1);
        self.0.transmit(command)
    }
}

#[test]
fn card_removed_mid_tap_is_not_genuine() {
    let t = reader::genuine_transcript(false);
    for keep in 0..t.len() {
        let card = Scripted {
            responses: t[..keep].to_vec().into(),
            commands: Rc::new(RefCell::new(Vec::new())),
            delay: None,
        };
        let v = reader::verify_against(card, false, 0x0F);
        assert!(!v.is_genuine(), "{keep}: {v:?}");
    }
}
