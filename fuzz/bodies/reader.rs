//! Fuzz bodies for the reader side: `citycard_reader::verify` against a
//! malicious card whose every response comes from the fuzz input, the
//! partner-credential JSON and the test-vector JSON. Shared by the cargo-fuzz
//! targets and `crates/citycard-reader/tests/malicious_card.rs` (which
//! includes this file with `#[path]` as module `reader`).
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard};
use citycard_reader::{verify, CardChannel, PartnerCredential, Policy, Trust, Verdict};
use citycard_testkit::keys::{self, city, date, reader as test_reader, trust_bundle, BundleSpec};
use citycard_transport::MemoryTransport;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Most APDUs one `verify` may send: SELECT, PSO, GENERAL AUTHENTICATE
/// twice, each with up to `MAX_GET_RESPONSE` GET RESPONSE and one `6Cxx`
/// retry per round, plus chaining of the certificate.
pub const MAX_APDUS: usize = 5 * (2 * (citycard_reader::MAX_GET_RESPONSE + 1) + 1);

/// 2026-11-26 12:00 UTC.
pub fn now() -> u64 {
    date(keys::TODAY).days_since_epoch() as u64 * 86_400 + 43_200
}

pub fn policy() -> Policy {
    Policy::at(now())
}

/// The fixed trust of the library reader of the test city.
pub fn trust() -> Trust {
    let city = city();
    let bundle = trust_bundle(&city, BundleSpec::of(&city, now() - 3_600, now() + 86_400));
    let r = test_reader(&city, "library");
    Trust::new(
        bundle,
        PartnerCredential::new(r.certificate, r.key).unwrap(),
    )
    .unwrap()
}

thread_local! {
    static TRUST: Trust = trust();
}

/// A card that answers with the queued responses, then is "removed".
pub struct Scripted {
    pub responses: VecDeque<Vec<u8>>,
    pub commands: Rc<RefCell<Vec<Vec<u8>>>>,
    /// Called before each answer (a slow card sleeps here).
    pub delay: Option<std::time::Duration>,
}

impl ContactlessCard for Scripted {
    fn atr(&self) -> Vec<u8> {
        citycard_proto::consts::atr().to_vec()
    }
    fn reset(&mut self) {}
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        self.commands.borrow_mut().push(command.to_vec());
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        self.responses.pop_front().ok_or(CardLost)
    }
}

/// Splits fuzz input into responses (length byte, `FF` = 255 + next byte).
pub fn responses(mut data: &[u8]) -> VecDeque<Vec<u8>> {
    let mut out = VecDeque::new();
    while let Some((&len, rest)) = data.split_first() {
        let (len, rest) = if len == 0xFF {
            match rest.split_first() {
                Some((&extra, r)) => (255 + usize::from(extra), r),
                None => (255, rest),
            }
        } else {
            (usize::from(len), rest)
        };
        let take = len.min(rest.len());
        out.push_back(rest[..take].to_vec());
        data = &rest[take..];
    }
    out
}

pub fn encode_responses(responses: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in responses {
        // Longer answers are split by the card into 61xx rounds anyway.
        let r = &r[..r.len().min(510)];
        if r.len() >= 255 {
            out.push(0xFF);
            out.push((r.len() - 255) as u8);
        } else {
            out.push(r.len() as u8);
        }
        out.extend_from_slice(r);
    }
    out
}

/// Runs `verify` against `card`; returns the verdict and the APDUs sent.
pub fn verify_against<C: ContactlessCard>(card: C, always_pso: bool, rng_seed: u8) -> Verdict {
    TRUST.with(|trust| {
        let mut channel = CardChannel::new(MemoryTransport::new(card));
        let policy = policy().with_always_send_certificate(always_pso);
        verify(
            &mut channel,
            trust,
            &policy,
            &mut ChaCha20Rng::from_seed([rng_seed; 32]),
        )
    })
}

/// The `reader` fuzz target: byte 0 bit 0 = always send the certificate;
/// the rest is every response the card gives, in order.
pub fn reader(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let commands = Rc::new(RefCell::new(Vec::new()));
    let card = Scripted {
        responses: responses(rest),
        commands: commands.clone(),
        delay: None,
    };
    let verdict = verify_against(card, flags & 1 == 1, 0xF0);
    assert!(!verdict.is_genuine(), "a scripted card was found genuine");
    let n = commands.borrow().len();
    assert!(n <= MAX_APDUS, "verify sent {n} APDUs");
    let _ = verdict.to_json();
}

/// The `partner_credential` fuzz target.
pub fn partner_credential(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = PartnerCredential::from_json(text) {
        let again = PartnerCredential::from_json(&c.to_json().unwrap()).unwrap();
        assert_eq!(again.certificate().as_bytes(), c.certificate().as_bytes());
    }
}

/// The `vector_json` fuzz target: parse a vector file; if it parses, run it
/// against a reference card (mismatches are fine, panics are not).
pub fn vector_json(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<citycard_testkit::vectors::Vector>(data) else {
        return;
    };
    if v.steps.len() > 64 {
        return;
    }
    let Ok(mut card) = citycard_testkit::vectors::card_for(&v) else {
        return;
    };
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    let _ = citycard_testkit::vectors::run(&v, &mut link);
}

/// A card that records the responses of a real card.
struct Recording<C> {
    inner: C,
    log: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl<C: ContactlessCard> ContactlessCard for Recording<C> {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let r = self.inner.transmit(command)?;
        self.log.borrow_mut().push(r.clone());
        Ok(r)
    }
}

/// A reference card personalised with the sample resident.
pub fn issued_card(seed: u8) -> Applet<MemoryStorage, ChaCha20Rng> {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([seed; 32]));
    {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        citycard_testkit::script::personalise_sample(&mut link, true, seed, 3).unwrap();
    }
    card
}

/// The responses of a genuine card to a `verify` with another random
/// generator (so replaying them in the fuzz target is a replay, not genuine).
pub fn genuine_transcript(always_pso: bool) -> Vec<Vec<u8>> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let card = Recording {
        inner: issued_card(7),
        log: log.clone(),
    };
    let verdict = verify_against(card, always_pso, 0x0F);
    assert!(verdict.is_genuine(), "{verdict:?}");
    let out = log.borrow().clone();
    out
}

pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for always in [false, true] {
        let t = genuine_transcript(always);
        let mut s = vec![u8::from(always)];
        s.extend(encode_responses(&t));
        out.push(("reader", s));
    }
    let fci = hex::decode("6F14840AF0434954594341524401A5068001018101079000").unwrap();
    for tail in [vec![], vec![vec![0x69, 0x82]], vec![vec![0x61, 0x00]]] {
        let mut all = vec![fci.clone()];
        all.extend(tail);
        let mut s = vec![0];
        s.extend(encode_responses(&all));
        out.push(("reader", s));
    }
    let city = city();
    let r = test_reader(&city, "library");
    let c = PartnerCredential::new(r.certificate, r.key).unwrap();
    out.push(("partner_credential", c.to_json().unwrap().into_bytes()));
    for text in crate::proto::VECTORS {
        out.push(("vector_json", text.as_bytes().to_vec()));
    }
    out
}
