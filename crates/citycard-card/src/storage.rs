//! Persistent storage for the card: one state blob, committed atomically.
//!
//! The applet serialises its whole persistent state and commits it in one
//! call, so atomicity of `commit` is the only tear-safety property the card
//! needs from its storage (a JavaCard does the same with a transaction).
//! Spec: `applet-spec/SPEC.md` §3.3 (tear safety).

use alloc::vec::Vec;
use citycard_proto::StatusWord;

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

/// The state an application starts from at power-up: `fresh()` when storage
/// never committed, the decoded state, or `None` when storage is unreadable
/// or `decode` rejects it (the card is then mute: `6F00`).
pub fn load_state<S: Storage + ?Sized, T>(
    storage: &mut S,
    fresh: impl FnOnce() -> T,
    decode: impl FnOnce(&[u8]) -> Option<T>,
) -> Option<T> {
    match storage.load() {
        Ok(None) => Some(fresh()),
        Ok(Some(bytes)) => decode(&bytes),
        Err(_) => None,
    }
}

/// Commits `state` atomically, as every card application does: any failure
/// answers `6581` (memory failure); a torn write also clears `powered`, so the
/// card answers nothing more until it is reset.
pub fn commit_state<S: Storage + ?Sized>(
    storage: &mut S,
    state: &[u8],
    powered: &mut bool,
) -> Result<(), StatusWord> {
    match storage.commit(state) {
        Ok(()) => Ok(()),
        Err(StorageError::PowerLost) => {
            *powered = false;
            Err(StatusWord::MemoryFailure)
        }
        Err(_) => Err(StatusWord::MemoryFailure),
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
