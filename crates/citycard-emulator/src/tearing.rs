//! Tear faults: a storage wrapper that makes the card lose power in the middle
//! of a persistent write, and the [`PowerLatch`] through which the emulator
//! process learns about it.
//!
//! # Semantics of `--fault tear-after-writes=N`
//!
//! The card's first N persistent writes complete; the (N+1)th is interrupted
//! partway and the card loses power (the emulator process exits with status 75,
//! [`POWER_LOST_EXIT_STATUS`]).
//!
//! Precisely, for a [`TearingStorage`] with `tear_after_writes = N`:
//!
//! * commits 1..=N are passed to the inner storage unchanged (only commits that
//!   return `Ok` count; a commit that fails with [`StorageError::Failed`] is not
//!   a completed write and does not count);
//! * commit N+1 is torn according to the [`TearMode`]: with
//!   [`TearMode::Partway`] (the default) the inner storage writes only part of
//!   the new state ([`TornWrite::commit_interrupted`]) and the previously
//!   committed state survives; with [`TearMode::AfterWrite`] the write
//!   completes but power is lost before the card can answer, so the new state
//!   survives. Either way the commit returns [`StorageError::PowerLost`] and
//!   the [`PowerLatch`] trips;
//! * from then on, every `load` and `commit` returns [`StorageError::PowerLost`]
//!   without touching the inner storage: a card without power does nothing.
//!   [`TearingStorage::into_inner`] gives the inner storage back, as the card
//!   would find it at the next power-up.
//!
//! `N = 0` tears the very first commit.
//!
//! The card turns `PowerLost` from its storage into
//! [`CardLost`](citycard_proto::apdu::CardLost) from `transmit`;
//! [`crate::serve`] then returns [`crate::ServeOutcome::PowerLost`] without
//! answering the command, and the CLI exits with [`POWER_LOST_EXIT_STATUS`]
//! (like a card pulled from the field). The latch covers a card that swallowed
//! the error: `serve` checks it after every command too.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use citycard_card::{MemoryStorage, Storage, StorageError};

/// Exit status of an emulator process whose card lost power (`EX_TEMPFAIL`).
pub const POWER_LOST_EXIT_STATUS: i32 = 75;

/// A storage that can simulate a commit interrupted by power loss.
pub trait TornWrite: Storage {
    /// Starts committing `state` and loses power after `written` bytes of the
    /// medium's encoding of it (clamped to [`encoded_len`](Self::encoded_len)),
    /// leaving the medium exactly as a real power cut there would. The
    /// committed state must be unaffected. Returns [`StorageError::PowerLost`]
    /// (or another error if even the partial write failed).
    fn commit_interrupted(&mut self, state: &[u8], written: usize) -> Result<(), StorageError>;

    /// How many bytes a commit of `state` writes to the medium.
    fn encoded_len(&self, state: &[u8]) -> usize;
}

impl TornWrite for MemoryStorage {
    /// RAM commits are a single pointer swap: an interrupted one changes nothing.
    fn commit_interrupted(&mut self, _state: &[u8], _written: usize) -> Result<(), StorageError> {
        Err(StorageError::PowerLost)
    }

    fn encoded_len(&self, state: &[u8]) -> usize {
        state.len()
    }
}

/// Shared flag that records that the card lost power. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct PowerLatch(Arc<AtomicBool>);

impl PowerLatch {
    /// A latch with power on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that power was lost.
    pub fn trip(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// `true` once power was lost.
    pub fn is_lost(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where the torn commit (number N+1) stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TearMode {
    /// Power is lost halfway through writing the new state: the old state survives.
    #[default]
    Partway,
    /// Power is lost after exactly this many bytes of the medium's encoding
    /// (clamped to its length): the old state survives.
    AtByte(usize),
    /// The write completes, then power is lost before the card answers: the
    /// new state survives, but the command gets no response.
    AfterWrite,
}

/// A [`Storage`] wrapper that tears commit number `tear_after_writes + 1`;
/// see the [module documentation](self) for the exact semantics.
#[derive(Debug)]
pub struct TearingStorage<S> {
    inner: S,
    tear_after_writes: u32,
    mode: TearMode,
    completed: u32,
    latch: PowerLatch,
}

impl<S> TearingStorage<S> {
    /// Wraps `inner`: the first `tear_after_writes` commits complete, the next
    /// one is torn ([`TearMode::Partway`]).
    pub fn new(inner: S, tear_after_writes: u32) -> Self {
        Self {
            inner,
            tear_after_writes,
            mode: TearMode::default(),
            completed: 0,
            latch: PowerLatch::new(),
        }
    }

    /// Sets where the torn commit stops.
    pub fn with_mode(mut self, mode: TearMode) -> Self {
        self.mode = mode;
        self
    }

    /// Uses `latch` (for example one shared with [`crate::ServeOptions`]) instead of a fresh one.
    pub fn with_latch(mut self, latch: PowerLatch) -> Self {
        self.latch = latch;
        self
    }

    /// The latch that trips when the card loses power; clone it before handing the
    /// storage to the card.
    pub fn latch(&self) -> PowerLatch {
        self.latch.clone()
    }

    /// `true` once the torn commit happened.
    pub fn power_lost(&self) -> bool {
        self.latch.is_lost()
    }

    /// Number of commits that completed.
    pub fn completed_writes(&self) -> u32 {
        self.completed
    }

    /// The inner storage, as the card finds it at the next power-up.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: TornWrite> Storage for TearingStorage<S> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        if self.latch.is_lost() {
            return Err(StorageError::PowerLost);
        }
        self.inner.load()
    }

    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        if self.latch.is_lost() {
            return Err(StorageError::PowerLost);
        }
        if self.completed < self.tear_after_writes {
            let result = self.inner.commit(state);
            match &result {
                Ok(()) => self.completed = self.completed.saturating_add(1),
                Err(StorageError::PowerLost) => self.latch.trip(),
                Err(_) => {}
            }
            return result;
        }
        self.latch.trip();
        let written = match self.mode {
            TearMode::Partway => Some(self.inner.encoded_len(state) / 2),
            TearMode::AtByte(n) => Some(n),
            TearMode::AfterWrite => None,
        };
        match written {
            Some(n) => match self.inner.commit_interrupted(state, n) {
                Ok(()) | Err(StorageError::PowerLost) => Err(StorageError::PowerLost),
                Err(other) => Err(other),
            },
            None => {
                self.inner.commit(state)?;
                Err(StorageError::PowerLost)
            }
        }
    }
}

/// A fault injected into the emulator, as given to `--fault`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `tear-after-writes=N`: the card's first N persistent writes complete; the
    /// (N+1)th is interrupted partway and the card loses power (the emulator
    /// process exits with status 75).
    TearAfterWrites(u32),
    /// `latency-ms=N`: every APDU response is delayed by N milliseconds.
    Latency(Duration),
    /// A card that answers wrongly on purpose (`wrong-sw`, `truncated`, …):
    /// see [`crate::answer_fault`].
    Answer(crate::AnswerFault),
}

/// Why a `--fault` value could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault {0:?}: expected tear-after-writes=N, latency-ms=N, wrong-sw, truncated, over-long, flip-ciphertext, replay, decoy, stale-record, endless-61xx or removed-mid-answer")]
pub struct FaultParseError(pub String);

impl FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FaultParseError(s.to_owned());
        if let Ok(answer) = s.parse::<crate::AnswerFault>() {
            return Ok(Fault::Answer(answer));
        }
        let (key, value) = s.split_once('=').ok_or_else(err)?;
        match key.trim() {
            "tear-after-writes" => value
                .trim()
                .parse()
                .map(Fault::TearAfterWrites)
                .map_err(|_| err()),
            "latency-ms" => value
                .trim()
                .parse()
                .map(|ms| Fault::Latency(Duration::from_millis(ms)))
                .map_err(|_| err()),
            _ => Err(err()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use crate::FileStore;

    fn file_store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("card.state")).unwrap();
        (dir, store)
    }

    #[test]
    fn first_n_complete_then_torn_then_dead() {
        for n in 0..5u32 {
            let (_dir, store) = file_store();
            let mut tearing = TearingStorage::new(store, n);
            let latch = tearing.latch();
            for i in 1..=n {
                tearing.commit(format!("state {i}").as_bytes()).unwrap();
                assert!(!latch.is_lost());
                assert_eq!(
                    tearing.load().unwrap(),
                    Some(format!("state {i}").into_bytes())
                );
            }
            assert_eq!(tearing.completed_writes(), n);
            assert_eq!(tearing.commit(b"torn state"), Err(StorageError::PowerLost));
            assert!(latch.is_lost() && tearing.power_lost());
            // Dead card: nothing works any more.
            assert_eq!(tearing.commit(b"later"), Err(StorageError::PowerLost));
            assert_eq!(tearing.load(), Err(StorageError::PowerLost));
            assert_eq!(tearing.completed_writes(), n);
            // Next power-up: the old state (or none) survived, not the torn one.
            let mut inner = tearing.into_inner();
            assert!(
                inner.temp_path().exists(),
                "the torn commit wrote part of a temp file"
            );
            let expected = (n > 0).then(|| format!("state {n}").into_bytes());
            assert_eq!(inner.load().unwrap(), expected);
            assert!(!inner.temp_path().exists());
        }
    }

    #[test]
    fn torn_temp_file_is_partial() {
        let (_dir, store) = file_store();
        let mut tearing = TearingStorage::new(store, 0);
        let state = vec![7u8; 100];
        assert_eq!(tearing.commit(&state), Err(StorageError::PowerLost));
        let inner = tearing.into_inner();
        let written = std::fs::metadata(inner.temp_path()).unwrap().len();
        assert_eq!(
            written,
            ((crate::filestore::STATE_HEADER_LEN + 100) / 2) as u64
        );
    }

    #[test]
    fn at_byte_mode_stops_there() {
        let (_dir, store) = file_store();
        let mut tearing = TearingStorage::new(store, 1).with_mode(TearMode::AtByte(3));
        tearing.commit(b"one").unwrap();
        assert_eq!(tearing.commit(b"two"), Err(StorageError::PowerLost));
        let mut inner = tearing.into_inner();
        assert_eq!(std::fs::metadata(inner.temp_path()).unwrap().len(), 3);
        assert_eq!(inner.load().unwrap().as_deref(), Some(&b"one"[..]));
    }

    #[test]
    fn after_write_mode_keeps_the_new_state() {
        let (_dir, store) = file_store();
        let mut tearing = TearingStorage::new(store, 1).with_mode(TearMode::AfterWrite);
        tearing.commit(b"one").unwrap();
        assert_eq!(tearing.commit(b"two"), Err(StorageError::PowerLost));
        assert!(tearing.power_lost());
        assert_eq!(
            tearing.into_inner().load().unwrap().as_deref(),
            Some(&b"two"[..])
        );
    }

    #[test]
    fn failed_commits_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let store = FileStore::new(missing.join("card.state")).unwrap();
        let mut tearing = TearingStorage::new(store, 1);
        assert!(matches!(tearing.commit(b"x"), Err(StorageError::Failed(_))));
        assert_eq!(tearing.completed_writes(), 0);
        std::fs::create_dir(&missing).unwrap();
        tearing.commit(b"y").unwrap();
        assert_eq!(tearing.commit(b"z"), Err(StorageError::PowerLost));
    }

    #[test]
    fn memory_storage_tears_too() {
        let mut tearing = TearingStorage::new(MemoryStorage::new(), 2);
        tearing.commit(b"a").unwrap();
        tearing.commit(b"b").unwrap();
        assert_eq!(tearing.commit(b"c"), Err(StorageError::PowerLost));
        assert_eq!(
            tearing.into_inner().load().unwrap().as_deref(),
            Some(&b"b"[..])
        );
    }

    #[test]
    fn shared_latch() {
        let latch = PowerLatch::new();
        let mut tearing = TearingStorage::new(MemoryStorage::new(), 0).with_latch(latch.clone());
        assert!(!latch.is_lost());
        tearing.commit(b"a").unwrap_err();
        assert!(latch.is_lost());
    }

    #[test]
    fn parses_faults() {
        assert_eq!("tear-after-writes=3".parse(), Ok(Fault::TearAfterWrites(3)));
        assert_eq!(
            "decoy".parse(),
            Ok(Fault::Answer(crate::AnswerFault::Decoy))
        );
        assert_eq!(
            "latency-ms=250".parse(),
            Ok(Fault::Latency(Duration::from_millis(250)))
        );
        for bad in [
            "",
            "tear-after-writes",
            "tear-after-writes=-1",
            "latency-ms=x",
            "other=1",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
