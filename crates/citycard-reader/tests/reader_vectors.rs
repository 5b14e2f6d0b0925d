//! The reader vectors of `applet-spec/vectors/reader/` (SPEC §13) through
//! the reader library: each vector's trust bundle, credential file, date and
//! ephemeral keys, a scripted card that answers the vector's answers (in
//! `61xx` pieces, as a card does), and the verdict the vector names. Plus the
//! drift check: the committed files are what the generator produces.

#![cfg(test)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use citycard_proto::revocation::TrustBundle;
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard, attr::AttributeSet};
use citycard_reader::{verify, CardChannel, PartnerCredential, Policy, Trust, Verdict};
use citycard_testkit::reader_vectors::{self, ReaderVector};
use citycard_transport::MemoryTransport;
use rand_chacha::rand_core::{CryptoRng, RngCore};

/// A card that answers the vector's answers in order, checking each command,
/// and serves long answers in `61xx` pieces with GET RESPONSE (SPEC §4).
struct ScriptedCard {
    exchanges: VecDeque<(Vec<u8>, Vec<u8>)>,
    pending: Vec<u8>,
    final_sw: [u8; 2],
    log: Rc<RefCell<Vec<String>>>,
}

impl ScriptedCard {
    /// The next piece of the pending answer, at most `le` bytes, with `61xx` or the final SW.
    fn piece(&mut self, le: usize) -> Vec<u8> {
        let n = le.min(self.pending.len());
        let mut out: Vec<u8> = self.pending.drain(..n).collect();
        match self.pending.len() {
            0 => out.extend_from_slice(&self.final_sw),
            rest => out.extend_from_slice(&[0x61, u8::try_from(rest).unwrap_or(0)]),
        }
        out
    }
}

impl ContactlessCard for ScriptedCard {
    fn atr(&self) -> Vec<u8> {
        citycard_proto::consts::atr().to_vec()
    }

    fn reset(&mut self) {}

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let le_of = |c: &[u8]| match c.last() {
            Some(0) | None => 256,
            Some(n) => usize::from(*n),
        };
        if command.len() == 5 && command[..4] == [0x00, 0xC0, 0x00, 0x00] {
            if self.pending.is_empty() {
                self.log
                    .borrow_mut()
                    .push("GET RESPONSE with nothing pending".into());
                return Ok(vec![0x69, 0x85]);
            }
            return Ok(self.piece(le_of(command)));
        }
        let Some((expected, response)) = self.exchanges.pop_front() else {
            self.log
                .borrow_mut()
                .push(format!("unexpected command {}", hex::encode_upper(command)));
            return Err(CardLost);
        };
        if command != expected.as_slice() {
            self.log.borrow_mut().push(format!(
                "command differs:\n  vector {}\n  reader {}",
                hex::encode_upper(&expected),
                hex::encode_upper(command)
            ));
        }
        let (data, sw) = response.split_at(response.len() - 2);
        self.pending = data.to_vec();
        self.final_sw = [sw[0], sw[1]];
        // SELECT and PSO carry their Le (or none): a whole answer fits.
        let le = if command.len() > 5 && command[4] as usize + 5 == command.len() {
            256
        } else {
            le_of(command)
        };
        Ok(self.piece(le))
    }
}

/// Yields the vector's ephemeral keys, as 32-byte outputs, in order.
struct ScriptedRng {
    bytes: VecDeque<u8>,
    overdrawn: Rc<RefCell<bool>>,
}

impl RngCore for ScriptedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_be_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_be_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest {
            *d = self.bytes.pop_front().unwrap_or_else(|| {
                *self.overdrawn.borrow_mut() = true;
                0x01
            });
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ScriptedRng {}

/// Runs one vector through `citycard_reader::verify`.
fn run(v: &ReaderVector) -> Verdict {
    let bundle = TrustBundle::decode(&hex::decode(&v.trust_bundle).unwrap()).unwrap();
    assert_eq!(
        hex::encode_upper(bundle.body().revocations.as_bytes()),
        v.revocation_list,
        "{}: the list is the bundle's",
        v.name
    );
    let credential = PartnerCredential::from_json(&v.credential_file).unwrap();
    assert_eq!(
        hex::encode_upper(credential.certificate().as_bytes()),
        v.reader_certificate
    );
    assert_eq!(hex::encode(credential.key().to_bytes()), v.reader_key);
    let trust = Trust::new(bundle, credential).unwrap();
    let mut policy = Policy::at(v.now_unix).with_always_send_certificate(v.always_send_certificate);
    assert_eq!(
        policy.today.to_string(),
        v.today,
        "{}: today is now's UTC date",
        v.name
    );
    if let Some(r) = &v.requested {
        policy = policy.with_requested(AttributeSet::from_bytes(&hex::decode(r).unwrap()).unwrap());
    }
    let log = Rc::new(RefCell::new(Vec::new()));
    let card = ScriptedCard {
        exchanges: v
            .exchanges
            .iter()
            .map(|e| {
                (
                    hex::decode(&e.command).unwrap(),
                    hex::decode(&e.response).unwrap(),
                )
            })
            .collect(),
        pending: Vec::new(),
        final_sw: [0x90, 0x00],
        log: log.clone(),
    };
    let overdrawn = Rc::new(RefCell::new(false));
    let mut rng = ScriptedRng {
        bytes: v
            .reader_ephemeral_keys
            .iter()
            .flat_map(|k| hex::decode(k).unwrap())
            .collect(),
        overdrawn: overdrawn.clone(),
    };
    let mut channel = CardChannel::new(MemoryTransport::new(card));
    let verdict = verify(&mut channel, &trust, &policy, &mut rng);
    assert!(
        log.borrow().is_empty(),
        "{}: the reader did not follow the vector: {:?}",
        v.name,
        log.borrow()
    );
    assert!(
        !*overdrawn.borrow(),
        "{}: more ephemeral keys drawn than listed",
        v.name
    );
    let left = channel.transport().card().exchanges.len();
    assert_eq!(
        left, 0,
        "{}: {left} exchanges of the vector not used",
        v.name
    );
    verdict
}

fn genuine_fields(verdict: &Verdict) -> serde_json::Value {
    let g = verdict.genuine().unwrap();
    let attributes: BTreeMap<String, String> = g
        .attributes
        .iter()
        .map(|(id, v)| (id.name().to_string(), hex::encode_upper(v)))
        .collect();
    let predicates: BTreeMap<String, Option<bool>> = g
        .predicates
        .iter()
        .map(|(id, v)| (id.name().to_string(), *v))
        .collect();
    serde_json::json!({
        "attributes": attributes,
        "pseudonym": g.pseudonym.map(hex::encode_upper),
        "predicates": predicates,
        "expires": g.expires.to_string(),
    })
}

#[test]
fn every_reader_vector_gives_its_verdict() {
    let vectors = reader_vectors::load_all(&reader_vectors::dir()).unwrap();
    let mut kinds = BTreeSet::new();
    for v in &vectors {
        let verdict = run(v);
        assert_eq!(verdict.kind(), v.verdict.kind, "{}: {verdict:?}", v.name);
        if let Some(expected) = &v.verdict.genuine {
            assert_eq!(
                genuine_fields(&verdict),
                serde_json::to_value(expected).unwrap(),
                "{}",
                v.name
            );
        }
        kinds.insert(v.verdict.kind.clone());
    }
    for kind in [
        "genuine",
        "clone",
        "replay",
        "tampered",
        "card_refused",
        "revoked",
        "expired",
        "unknown_issuer",
    ] {
        assert!(kinds.contains(kind), "no reader vector gives {kind}");
    }
    // Two linkability groups among the genuine vectors.
    let groups: BTreeSet<u8> = vectors
        .iter()
        .filter(|v| v.verdict.kind == "genuine")
        .map(|v| {
            PartnerCredential::from_json(&v.credential_file)
                .unwrap()
                .group()
        })
        .collect();
    assert!(groups.len() >= 2, "genuine vectors in groups {groups:?}");
}

#[test]
fn a_reader_that_deviates_from_a_vector_is_caught() {
    // The scripted card notices a reader that sends another command: the
    // same vector with the certificate-first policy flipped.
    let mut v = reader_vectors::load_all(&reader_vectors::dir())
        .unwrap()
        .into_iter()
        .find(|v| v.name == "reader-genuine")
        .unwrap();
    v.always_send_certificate = true;
    let caught = std::panic::catch_unwind(|| run(&v));
    assert!(caught.is_err(), "a deviating reader went unnoticed");
}

#[test]
fn committed_reader_vectors_are_current() {
    let dir = reader_vectors::dir();
    let generated = reader_vectors::generate_all();
    assert!(generated.len() >= 12);
    let committed = reader_vectors::load_all(&dir).unwrap();
    assert_eq!(
        committed.len(),
        generated.len(),
        "run `cargo run -p citycard-testkit --bin gen-vectors`"
    );
    for v in &generated {
        let text = std::fs::read_to_string(dir.join(format!("{}.json", v.name))).unwrap();
        assert_eq!(
            text,
            reader_vectors::to_json(v),
            "applet-spec/vectors/reader/{}.json is stale: run `cargo run -p citycard-testkit --bin gen-vectors`",
            v.name
        );
    }
}
