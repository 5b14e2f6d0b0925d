//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

use citycard_card::StorageError;

/// Why an emulator operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// The state file path has no file name (it names a directory or the root),
    /// so no temporary file can be placed beside it.
    #[error("state file path {0:?} has no file name")]
    InvalidStatePath(PathBuf),
    /// The card's storage failed.
    #[error("card storage: {0}")]
    Storage(#[from] StorageError),
    /// vpcd could not be reached within the reconnect budget of [`crate::ReconnectPolicy`].
    #[error("vpcd at {addr} unreachable after {attempts} connection attempts: {source}")]
    VpcdUnreachable {
        /// The address tried.
        addr: SocketAddr,
        /// How many consecutive attempts failed.
        attempts: u32,
        /// The error of the last attempt.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error on an established vpcd connection that is not a disconnect
    /// (for example, the socket options could not be set).
    #[error("vpcd connection to {addr}: {source}")]
    VpcdIo {
        /// The vpcd address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
