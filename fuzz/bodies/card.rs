//! Fuzz bodies for the card (`citycard-card`): the persistent-state decoder
//! and the whole applet driven by a sequence of command APDUs. Shared by the
//! cargo-fuzz targets and `crates/citycard-card/tests/robustness.rs` (which
//! includes this file and `proto.rs` with `#[path]`, as modules `card` and
//! `proto` of the crate root). Uses only `citycard-card`, `citycard-proto`,
//! `rand_chacha` and `hex`.
//!
//! Cards in each life-cycle state are built by replaying the committed test
//! vectors (`terminate.json`, `verify-library.json`) on a card in
//! deterministic mode, so a fuzz input can replay the rest of a vector and
//! reach every transition for real.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::OnceLock;

use citycard_card::{Applet, PersistentState, Storage, StorageError};
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle};
use rand_chacha::rand_core::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::proto::{vector_seed, vector_steps};

pub const TERMINATE: &str = include_str!("../../applet-spec/vectors/terminate.json");
pub const LIBRARY: &str = include_str!("../../applet-spec/vectors/verify-library.json");

/// Bytes of the sample resident (testkit `sample_resident`) that must never
/// travel in clear: disclosures are encrypted.
pub const SECRETS: &[&[u8]] = &[
    b"Alex Moreau",
    "Rue L\u{e9}opold 12, 4000 Li\u{e8}ge".as_bytes(),
    b"LG-2026-000042",
];

/// A random generator whose position can be read back (to snapshot a card
/// built by replaying a vector and resume it with the same draws).
#[derive(Clone)]
pub struct SharedRng(pub Rc<RefCell<ChaCha20Rng>>);

impl RngCore for SharedRng {
    fn next_u32(&mut self) -> u32 {
        self.0.borrow_mut().next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.borrow_mut().next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.borrow_mut().fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.0.borrow_mut().try_fill_bytes(dest)
    }
}
impl CryptoRng for SharedRng {}

/// Storage in RAM that can lose power at its `n`-th commit (counted from 0),
/// either before the new state lands (`after = false`: old state kept) or
/// right after (`after = true`: new state kept) — the two outcomes SPEC §3.3
/// allows for a torn atomic write.
#[derive(Clone, Debug, Default)]
pub struct TearStorage {
    pub state: Option<Vec<u8>>,
    pub commits: u64,
    pub tear_at: Option<(u64, bool)>,
    /// Set when the tear happened (shared, so a test can clear it).
    pub tore: Rc<Cell<bool>>,
}

impl Storage for TearStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.state.clone())
    }
    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        let n = self.commits;
        self.commits += 1;
        if let Some((at, after)) = self.tear_at {
            if at == n {
                self.tear_at = None;
                self.tore.set(true);
                if after {
                    self.state = Some(state.to_vec());
                }
                return Err(StorageError::PowerLost);
            }
        }
        self.state = Some(state.to_vec());
        Ok(())
    }
}

pub type Card = Applet<TearStorage, SharedRng>;

/// Where a fuzz case starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Blank,
    Prepared,
    /// ANCHORED with an authenticated station (EXTERNAL AUTHENTICATE done).
    Personalising,
    Issued,
    /// ISSUED with the library reader's certificate cached.
    IssuedCached,
    /// ISSUED with an authenticated station session (TERMINATE allowed).
    IssuedStation,
    Terminated,
}

pub const STARTS: [Start; 7] = [
    Start::Blank,
    Start::Prepared,
    Start::Personalising,
    Start::Issued,
    Start::IssuedCached,
    Start::IssuedStation,
    Start::Terminated,
];

struct Snapshot {
    state: Option<Vec<u8>>,
    rng: ChaCha20Rng,
}

/// Replays steps `range` of `vector` on `card`, asserting each response.
pub fn replay(card: &mut Card, vector: &str, range: core::ops::RangeInclusive<usize>) {
    let steps = vector_steps(vector);
    for i in range {
        let (cmd, expected) = &steps[i];
        let got = card.transmit(cmd).expect("card lost during replay");
        assert_eq!(
            hex::encode_upper(&got),
            hex::encode_upper(expected),
            "replay step {i}"
        );
    }
}

fn snapshot(vector: &str, last: Option<usize>) -> Snapshot {
    let rng = Rc::new(RefCell::new(ChaCha20Rng::from_seed(
        vector_seed(vector).unwrap(),
    )));
    let mut card = Applet::new(TearStorage::default(), SharedRng(rng.clone()));
    if let Some(last) = last {
        replay(&mut card, vector, 0..=last);
    }
    let state = card.storage().state.clone();
    let rng = rng.borrow().clone();
    Snapshot { state, rng }
}

fn snapshots() -> &'static [Snapshot; 5] {
    static S: OnceLock<[Snapshot; 5]> = OnceLock::new();
    S.get_or_init(|| {
        [
            snapshot(TERMINATE, None),
            snapshot(TERMINATE, Some(2)),
            snapshot(TERMINATE, Some(9)),
            snapshot(LIBRARY, Some(16)),
            snapshot(TERMINATE, Some(14)),
        ]
    })
}

/// A card in `start`, selected, whose storage tears at commit `tear_at`
/// (counted after the replayed setup: `IssuedStation`'s station PSO, the
/// power-up's first, makes one commit before).
pub fn card_with(start: Start, tear_at: Option<(u64, bool)>) -> Card {
    let snaps = snapshots();
    let (snap, vector, extra): (&Snapshot, &str, Option<core::ops::RangeInclusive<usize>>) =
        match start {
            Start::Blank => (&snaps[0], TERMINATE, None),
            Start::Prepared => (&snaps[1], TERMINATE, None),
            Start::Personalising => (&snaps[1], TERMINATE, Some(3..=5)),
            Start::Issued => (&snaps[2], TERMINATE, None),
            Start::IssuedStation => (&snaps[2], TERMINATE, Some(11..=13)),
            Start::IssuedCached => (&snaps[3], LIBRARY, None),
            Start::Terminated => (&snaps[4], TERMINATE, None),
        };
    // The station's PSO of `IssuedStation`'s setup is commit 0: tears count after it.
    let setup_commits = u64::from(start == Start::IssuedStation);
    let storage = TearStorage {
        state: snap.state.clone(),
        commits: 0,
        tear_at: tear_at.map(|(n, after)| (n + setup_commits, after)),
        tore: Rc::new(Cell::new(false)),
    };
    let mut card = Applet::new(storage, SharedRng(Rc::new(RefCell::new(snap.rng.clone()))));
    // SELECT (the same APDU as every SELECT of the vectors): draws nothing.
    let select = &vector_steps(vector)[0].0;
    let _ = card.transmit(select);
    if let Some(extra) = extra {
        replay(&mut card, vector, extra);
    }
    card
}

pub fn card(start: Start) -> Card {
    card_with(start, None)
}

/// The SPEC §3.1 transitions a persistent life cycle may take, and the
/// instruction that takes it.
pub fn allowed_transition(from: LifeCycle, to: LifeCycle, ins: u8) -> bool {
    from == to
        || matches!(
            (from, to, ins),
            (LifeCycle::Blank, LifeCycle::Prepared, 0x12)
                | (LifeCycle::Prepared, LifeCycle::Issued, 0x44)
                | (LifeCycle::Issued, LifeCycle::Terminated, 0xE6)
        )
}

/// The stored state is consistent with its life cycle (§3.1, §5.6).
pub fn check_state(state: &PersistentState) {
    let anchored = state.anchor.is_some();
    let personalised = state.personalisation.is_some();
    match state.life_cycle {
        LifeCycle::Blank => assert!(!anchored && !personalised && state.cache.is_empty()),
        LifeCycle::Prepared => assert!(anchored && !personalised && state.cache.is_empty()),
        LifeCycle::Issued => assert!(anchored && personalised),
        LifeCycle::Terminated => assert!(!personalised && state.cache.is_empty()),
    }
    assert!(state.cache.len() <= citycard_proto::limits::CACHE_ENTRIES);
}

/// Reloads the card from its storage (a power cycle) and checks that what it
/// stored is an allowed state.
pub fn check_reload(card: &mut Card) -> LifeCycle {
    card.reset();
    let state = card.state().expect("stored state unreadable after reset");
    check_state(state);
    if let Some(bytes) = card.storage().state.clone() {
        let decoded = PersistentState::decode(&bytes).expect("stored state does not decode");
        assert_eq!(decoded.life_cycle, state.life_cycle);
    }
    state.life_cycle
}

/// Sends one APDU and checks the per-command invariants. Returns false when
/// the card lost power (torn write); the caller resets it.
pub fn step(card: &mut Card, apdu: &[u8]) -> bool {
    let before = card.life_cycle().expect("card state unreadable");
    let ins = apdu.get(1).copied().unwrap_or(0);
    let response = card.transmit(apdu);
    let after = match card.storage().tore.get() {
        // After a tear the in-memory state is whatever the applet had; the
        // truth is what a reload finds.
        true => return false,
        false => card.life_cycle().expect("card state unreadable"),
    };
    assert!(
        allowed_transition(before, after, ins),
        "life cycle {before:?} -> {after:?} by INS {ins:02X}"
    );
    let Ok(response) = response else {
        return false;
    };
    assert!(response.len() >= 2, "response without status word");
    assert!(response.len() <= 258, "response longer than 256 + SW");
    for secret in SECRETS {
        assert!(
            !response.windows(secret.len()).any(|w| w == *secret),
            "personal data in clear in a response to {}",
            hex::encode_upper(apdu)
        );
    }
    let sw1 = response[response.len() - 2];
    if ins == 0x86 && (sw1 == 0x90 || sw1 == 0x61) && apdu.first() == Some(&0x00) {
        assert_eq!(
            after,
            LifeCycle::Issued,
            "GENERAL AUTHENTICATE answered outside ISSUED"
        );
    }
    if let Some(state) = card.state() {
        check_state(state);
    }
    true
}

/// Splits a fuzz input into APDUs: a length byte (`FF`: 255 + next byte),
/// then that many bytes. Length `00` means "power-cycle the card".
pub fn apdus(mut data: &[u8]) -> Vec<Option<&[u8]>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let (len, rest) = if len == 0xFF {
            match rest.split_first() {
                Some((&extra, r)) => (255 + usize::from(extra), r),
                None => (255, rest),
            }
        } else {
            (usize::from(len), rest)
        };
        if len == 0 {
            out.push(None);
            data = rest;
            continue;
        }
        let take = len.min(rest.len());
        out.push(Some(&rest[..take]));
        data = &rest[take..];
        if out.len() >= 256 {
            break;
        }
    }
    out
}

/// Encodes APDUs in the format of [`apdus`].
pub fn encode_apdus(start: u8, tear: u8, apdus: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![start, tear];
    for a in apdus {
        if a.len() >= 255 {
            out.push(0xFF);
            out.push((a.len() - 255) as u8);
        } else {
            out.push(a.len() as u8);
        }
        out.extend_from_slice(a);
    }
    out
}

/// The `applet` fuzz target: byte 0 picks the start state, byte 1 a tear
/// (0: none; else commit `(b >> 1) & 7`, before/after by bit 0), the rest is
/// a sequence of APDUs (see [`apdus`]).
pub fn applet(data: &[u8]) {
    let Some((&start, rest)) = data.split_first() else {
        return;
    };
    let Some((&tear, rest)) = rest.split_first() else {
        return;
    };
    let start = STARTS[usize::from(start) % STARTS.len()];
    let tear_at = (tear != 0).then_some((u64::from((tear >> 1) & 7), tear & 1 == 1));
    let mut card = card_with(start, tear_at);
    let mut last = card.life_cycle().unwrap();
    for apdu in apdus(rest) {
        match apdu {
            Some(apdu) => {
                if !step(&mut card, apdu) {
                    let before = last;
                    let now = check_reload(&mut card);
                    let ins = apdu.get(1).copied().unwrap_or(0);
                    assert!(
                        allowed_transition(before, now, ins),
                        "torn write left {before:?} -> {now:?} by INS {ins:02X}"
                    );
                    card.storage().tore.set(false);
                }
            }
            None => {
                let now = check_reload(&mut card);
                assert_eq!(now, last, "power cycle changed the life cycle");
            }
        }
        last = card.life_cycle().unwrap();
    }
}

/// The `persistent_state` fuzz target: decoding never panics, and what
/// decodes re-encodes to a fixed point.
pub fn persistent_state(data: &[u8]) {
    if let Ok(state) = PersistentState::decode(data) {
        let once = state.encode();
        let again = PersistentState::decode(&once).expect("re-encoded state does not decode");
        assert_eq!(
            *again.encode(),
            *once,
            "state encoding is not a fixed point"
        );
    }
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(|x| x.as_slice()).collect()
}

/// Seeds: the stored state of each start, and for each start the rest of the
/// vectors' commands.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for start in STARTS {
        if let Some(s) = card(start).storage().state.clone() {
            out.push(("persistent_state", s));
        }
    }
    let t: Vec<Vec<u8>> = vector_steps(TERMINATE).into_iter().map(|s| s.0).collect();
    let l: Vec<Vec<u8>> = vector_steps(LIBRARY).into_iter().map(|s| s.0).collect();
    let idx = |s: Start| STARTS.iter().position(|x| *x == s).unwrap() as u8;
    out.push(("applet", encode_apdus(idx(Start::Blank), 0, &refs(&t))));
    out.push(("applet", encode_apdus(idx(Start::Blank), 0, &refs(&l))));
    out.push((
        "applet",
        encode_apdus(idx(Start::Prepared), 0, &refs(&t[3..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::Personalising), 0, &refs(&t[6..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::Issued), 0, &refs(&t[10..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::Issued), 0, &refs(&l[13..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::IssuedStation), 0, &refs(&t[14..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::IssuedCached), 0, &refs(&l[17..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::Terminated), 0, &refs(&t[15..])),
    ));
    // With tears at the first and second commit.
    out.push(("applet", encode_apdus(idx(Start::Blank), 1, &refs(&t))));
    out.push(("applet", encode_apdus(idx(Start::Blank), 3, &refs(&t))));
    out.push((
        "applet",
        encode_apdus(idx(Start::Personalising), 1, &refs(&t[6..])),
    ));
    out.push((
        "applet",
        encode_apdus(idx(Start::IssuedStation), 0, &refs(&t[14..])),
    ));
    // Every other vector's commands, from each start.
    for text in crate::proto::VECTORS {
        let cmds: Vec<Vec<u8>> = vector_steps(text).into_iter().map(|s| s.0).collect();
        for start in [Start::Blank, Start::Issued, Start::IssuedCached] {
            out.push(("applet", encode_apdus(idx(start), 0, &refs(&cmds))));
        }
    }
    out
}
