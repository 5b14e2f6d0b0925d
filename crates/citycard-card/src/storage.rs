//! Persistent storage for the card: one state blob, committed atomically.
//!
//! The applet serialises its whole persistent state and commits it in one
//! call, so atomicity of `commit` is the only tear-safety property the card
//! needs from its storage (a JavaCard does the same with a transaction).
//! Spec: `applet-spec/SPEC.md` §3.3 (tear safety).

use alloc::vec::Vec;
use citycard_proto::sw::StatusWord;
use zeroize::Zeroizing;

/// Why storage could not load or commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// Power was lost during or right after the write (a torn transaction).
    /// The card must stop answering until it is reset.
    #[error("power lost during a persistent write")]
    PowerLost,
    /// The medium failed (I/O error, disk full). The previous state is kept.
    #[error("storage failure: {0}")]
    Failed(alloc::string::String),
    /// The stored bytes are corrupt (checksum or framing).
    #[error("stored state is corrupt")]
    Corrupt,
}

/// A place where the card keeps its persistent state ("EEPROM").
///
/// Contract: after `commit(new)` returns `Ok`, `load` returns `new`; if power is
/// lost at any moment during `commit`, the next `load` returns either the
/// previous state or `new`, never a mix.
pub trait Storage {
    /// The last committed state, or `None` for a card that never committed.
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Atomically replaces the committed state with `state`.
    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError>;
}

/// A card application's whole persistent state, as one blob.
pub trait StateBlob: Sized {
    /// The state of a card that never committed (blank, factory-fresh).
    fn fresh() -> Self;
    /// Decodes a committed blob; `None` when it is corrupt.
    fn decode_blob(bytes: &[u8]) -> Option<Self>;
    /// Encodes the whole state for one atomic commit.
    fn encode_blob(&self) -> Zeroizing<Vec<u8>>;
}

/// The persistent half of every card application: the storage, the state as
/// loaded at power-up, and whether the card still has power. Both the
/// reference card and the PIV card hold one; this is where loading and the
/// one atomic commit per state change live.
pub struct Persistent<S, T> {
    storage: S,
    state: Option<T>,
    powered: bool,
}

impl<S: Storage, T: StateBlob> Persistent<S, T> {
    /// Over `storage`, not loaded yet: call [`power_up`](Self::power_up).
    pub fn new(storage: S) -> Self {
        Self {
            storage,
            state: None,
            powered: true,
        }
    }

    /// Power-up: (re)loads the state — [`StateBlob::fresh`] when storage never
    /// committed, `None` when it is unreadable or corrupt (the card is then
    /// mute: `6F00`) — and restores power.
    pub fn power_up(&mut self) {
        self.powered = true;
        self.state = match self.storage.load() {
            Ok(None) => Some(T::fresh()),
            Ok(Some(bytes)) => T::decode_blob(&bytes),
            Err(_) => None,
        };
    }

    /// The state as loaded or last committed; `None` when unreadable.
    pub fn state(&self) -> Option<&T> {
        self.state.as_ref()
    }

    /// Commits `next` atomically; on success it becomes the state. Any
    /// failure answers `6581` (memory failure) and keeps the old state; a torn
    /// write also cuts the power, so the card answers nothing more until it is
    /// reset.
    pub fn commit(&mut self, next: T) -> Result<(), StatusWord> {
        match self.storage.commit(&next.encode_blob()) {
            Ok(()) => {
                self.state = Some(next);
                Ok(())
            }
            Err(StorageError::PowerLost) => {
                self.powered = false;
                Err(StatusWord::MemoryFailure)
            }
            Err(_) => Err(StatusWord::MemoryFailure),
        }
    }

    /// `false` after a torn write, until the next power-up.
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }
}

/// Storage in RAM, for unit tests and the in-process card.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    state: Option<Vec<u8>>,
    commits: u64,
}

impl MemoryStorage {
    /// An empty store (a card fresh from the factory).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of successful commits so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

impl Storage for MemoryStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.state.clone())
    }

    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        self.state = Some(state.to_vec());
        self.commits += 1;
        Ok(())
    }
}

impl<S: Storage + ?Sized> Storage for &mut S {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).load()
    }
    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        (**self).commit(state)
    }
}

impl<S: Storage + ?Sized> Storage for alloc::boxed::Box<S> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).load()
    }
    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        (**self).commit(state)
    }
}
