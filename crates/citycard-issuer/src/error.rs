//! The issuer crate's error type.

use std::path::{Path, PathBuf};

use citycard_proto::date::Date;

/// Everything that can go wrong on the issuing side. Each variant maps to a
/// distinct CLI exit code (see the README).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The directory already holds an issuer home, or a file would be overwritten.
    #[error("{} already exists; refusing to overwrite", .0.display())]
    AlreadyExists(PathBuf),
    /// The directory holds no issuer home.
    #[error("{} is not an issuer home (no issuer.json; run `citycard issuer init`)", .0.display())]
    NotAnIssuerHome(PathBuf),
    /// A configuration file is unreadable or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A name (station, partner, issuer id, prefix) is not acceptable.
    #[error("invalid {what} {name:?}: use 1-16 letters, digits, '-' or '_'")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A validity period is out of range.
    #[error("invalid validity: {0} days")]
    InvalidValidity(u32),
    /// No such station.
    #[error("unknown station {0:?}")]
    UnknownStation(String),
    /// No such partner.
    #[error("unknown partner {0:?}")]
    UnknownPartner(String),
    /// The station was retired: it may no longer sign.
    #[error("station {0:?} is retired: it may no longer sign")]
    StationRetired(String),
    /// The station certificate is not valid today: it may not sign.
    #[error(
        "station {name} is valid from {effective} to {expiry}; today is {today}: refusing to sign"
    )]
    StationNotValid {
        /// Station.
        name: String,
        /// First valid day.
        effective: Date,
        /// Last valid day.
        expiry: Date,
        /// Today.
        today: Date,
    },
    /// The configured PIV management key is the public factory key.
    #[error("the management key {0} is the factory default (0102030405060708 x3), which anyone can use to rewrite the card: set the city's own key on the card (yubico-piv-tool -a set-mgm-key) and configure it, or pass --allow-default-management-key for test cards")]
    DefaultManagementKey(String),
    /// The card reader failed.
    #[error("reader: {0}")]
    Reader(#[source] citycard_transport::TransportError),
    /// The PC/SC service could not be reached.
    #[error("reader: cannot reach pcscd (is it running?): {0}")]
    NoPcscService(#[source] citycard_transport::TransportError),
    /// An emulated card's state file could not be used.
    #[error("reader: {0}")]
    EmulatedCard(#[source] citycard_emulator::EmulatorError),
    /// A blank emulated card could not be prepared for the desk.
    #[error("reader: preparing the emulated card: {0}")]
    EmulatedPreparation(#[source] Box<crate::personalise::PersonaliseError>),
    /// No card was inserted in time.
    #[error("no card inserted in {reader} within {secs}s")]
    NoCard {
        /// The reader.
        reader: String,
        /// How long it waited.
        secs: u64,
    },
    /// Another issuing process is working with this reader (one process per reader).
    #[error("the reader {reader} is in use by another issuing process ({holder}); use another reader, or wait for it to finish")]
    ReaderBusy {
        /// The reader (desk identity).
        reader: String,
        /// The other process (`host:pid`).
        holder: String,
    },
    /// The operator interrupted the run (Ctrl-C) while it waited for a card.
    #[error("interrupted by the operator")]
    Interrupted,
    /// Intents left open by a stopped run on this reader must be reconciled first.
    #[error("{count} intent(s) left open by a stopped run on this reader; rerun with --resume to reconcile them against the card in the reader and continue")]
    NeedsResume {
        /// How many.
        count: usize,
    },
    /// Key storage or signing failed (wrong passphrase, token missing…).
    #[error(transparent)]
    Key(#[from] citycard_keys::KeyError),
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] citycard_registry::RegistryError),
    /// A protocol object could not be built or decoded.
    #[error("protocol: {0}")]
    Protocol(#[from] citycard_proto::error::Error),
    /// The last published revocation list misses cards revoked since: a
    /// bundle with it would tell partners nothing about them.
    #[error("the last published revocation list (#{sequence}) misses {missing} revoked card(s); run `citycard revocation publish`, which writes the bundle partners load")]
    RevocationListOutdated {
        /// Sequence number of the last published list.
        sequence: u32,
        /// Revocation ids the registry has and the list lacks.
        missing: usize,
    },
    /// A file or directory could not be written ([`citycard_files`]). An
    /// existing file is never this variant: it becomes
    /// [`IssuerError::AlreadyExists`] (see the `From` conversion).
    #[error(transparent)]
    File(citycard_files::FileError),
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl IssuerError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A file that already exists is [`IssuerError::AlreadyExists`], whoever
/// found it (the CLI's exit code for it is the same); anything else is
/// [`IssuerError::File`].
impl From<citycard_files::FileError> for IssuerError {
    fn from(e: citycard_files::FileError) -> Self {
        match e {
            citycard_files::FileError::AlreadyExists(path) => Self::AlreadyExists(path),
            other => Self::File(other),
        }
    }
}
