//! The crate's one error type.

use citycard_card::StorageError;

/// Why a PIV state blob could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PivError {
    /// The bytes are not a PIV card state (no `CCPIV` magic): probably a
    /// citycard-profile state file.
    #[error("not a PIV card state")]
    NotPivState,
    /// The state was written by a newer version of this crate.
    #[error("unsupported PIV state version {0}")]
    UnsupportedVersion(u8),
    /// The state blob is truncated or inconsistent.
    #[error("PIV card state is corrupt")]
    Corrupt,
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}
