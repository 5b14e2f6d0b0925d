//! The crate's one error type.

use citycard_proto::sw::StatusWord;

/// Everything that can go wrong while exchanging APDUs with a card.
///
/// Status words are *not* errors here: a card answering `6982` is a successful
/// exchange whose [`Response`](citycard_proto::apdu::Response) carries that status word.
/// Errors mean that no trustworthy response exists (the card vanished, the
/// reader failed, or the card broke the transport rules).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The PC/SC service knows no reader at all.
    #[error("no smart-card reader available")]
    NoReadersAvailable,
    /// No reader matches the requested name.
    #[error("reader {name:?} not found; available readers: {}", list(.available))]
    ReaderNotFound {
        /// The name that was asked for.
        name: String,
        /// The readers that do exist.
        available: Vec<String>,
    },
    /// The requested name is a substring of several readers' names.
    #[error("reader name {name:?} is ambiguous; it matches: {}", list(.matches))]
    AmbiguousReader {
        /// The name that was asked for.
        name: String,
        /// Every reader whose name contains it (case-insensitively).
        matches: Vec<String>,
    },
    /// The PC/SC service (pcscd) is not running or stopped.
    #[error("the PC/SC service is not running")]
    NoService,
    /// No card is present in the reader.
    #[error("no card in the reader")]
    NoCard,
    /// The card was removed (or lost power) since the last operation; no
    /// response exists. Volatile card state is lost: `reset` before going on.
    #[error("the card was removed or lost power")]
    CardRemoved,
    /// Another application reset the card since the last operation. The
    /// handle has been reconnected and is usable again, but the card's
    /// volatile state (selected application, sessions) is lost: start over
    /// from SELECT.
    #[error("the card was reset by another application")]
    CardReset,
    /// Waiting for a card event or for the reader took longer than allowed.
    #[error("timed out")]
    Timeout,
    /// A blocking wait was cancelled (`PcscContext::cancel`).
    #[error("cancelled")]
    Cancelled,
    /// The card answered fewer than the two status bytes.
    #[error("malformed response: {len} byte(s), a response needs at least SW1 SW2")]
    MalformedResponse {
        /// Length of what the card sent.
        len: usize,
    },
    /// The response data (all GET RESPONSE rounds together, SW excluded)
    /// exceeded the channel's `max_response_len`.
    #[error("response longer than the limit of {limit} bytes")]
    ResponseTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The card kept answering `61xx` after `max_get_response` GET RESPONSE
    /// commands.
    #[error("card still announced more data after {limit} GET RESPONSE commands")]
    TooManyGetResponse {
        /// The configured limit.
        limit: usize,
    },
    /// An intermediate command of a chain was not answered `9000`
    /// (only when `ChannelConfig::chaining_refusal_is_error` is set; by
    /// default that status word is returned as the response instead).
    #[error("card refused command chaining: {0}")]
    ChainingRefused(StatusWord),
    /// The command's Le is outside `1..=256`.
    #[error("invalid Le {0}: a short APDU expects 1 to 256 bytes")]
    InvalidLe(usize),
    /// A raw command APDU that no reader would transmit: shorter than the
    /// 4-byte header or longer than a short APDU (4 + 1 + 255 + 1 bytes).
    #[error("raw command APDU of {len} bytes is not a valid short APDU")]
    InvalidCommandLength {
        /// Length of the raw command.
        len: usize,
    },
    /// The backend ran a transaction but never called the closure.
    #[error("the transport did not run the transaction body")]
    TransactionNotRun,
    /// The PC/SC backend is not connected (already disconnected).
    #[error("not connected to a card")]
    NotConnected,
    /// Any other PC/SC error.
    #[cfg(feature = "pcsc")]
    #[error("PC/SC error: {0}")]
    Pcsc(pcsc::Error),
    /// An I/O error from a backend that talks over a socket or a file.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Any other backend-specific failure (for backends outside this crate).
    #[error("backend error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync + 'static>),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(feature = "pcsc")]
impl From<pcsc::Error> for TransportError {
    /// Maps the PC/SC errors a host reacts to onto distinct variants; the rest
    /// stays as [`TransportError::Pcsc`].
    fn from(err: pcsc::Error) -> Self {
        match err {
            pcsc::Error::NoReadersAvailable => Self::NoReadersAvailable,
            pcsc::Error::NoSmartcard => Self::NoCard,
            pcsc::Error::RemovedCard => Self::CardRemoved,
            pcsc::Error::ResetCard => Self::CardReset,
            pcsc::Error::Timeout => Self::Timeout,
            pcsc::Error::Cancelled => Self::Cancelled,
            pcsc::Error::NoService | pcsc::Error::ServiceStopped => Self::NoService,
            other => Self::Pcsc(other),
        }
    }
}
