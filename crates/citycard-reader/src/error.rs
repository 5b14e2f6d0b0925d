//! The crate's one error type: what can go wrong while loading the reader's
//! trust material. (Card outcomes are not errors: they are [`Verdict`](crate::Verdict)s.)

/// Why a trust bundle or partner credential cannot be used.
///
/// Messages never contain key material.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file or value is not in the expected format.
    #[error("malformed {what}")]
    Malformed {
        /// What was being read (e.g. "trust bundle", "credential certificate").
        what: &'static str,
    },
    /// The trust bundle's own signature, or one of the station certificates or
    /// the revocation list inside it, does not verify with the bundle's root.
    #[error("the trust bundle does not verify with its root key")]
    BundleSignature,
    /// The bundle's root key is not the one the partner pinned
    /// ([`Trust::with_expected_root`](crate::Trust::with_expected_root)).
    #[error("the trust bundle's root key is not the expected one (fingerprint {found})")]
    UnexpectedRoot {
        /// Hex SHA-256 of the bundle's root point.
        found: String,
    },
    /// The credential's certificate is not a reader certificate.
    #[error("the credential's certificate is not a reader certificate")]
    CredentialNotAReader,
    /// The credential's certificate names another issuer than the bundle.
    #[error("the credential is for issuer {credential:?}, the trust bundle for {bundle:?}")]
    CredentialNotForThisIssuer {
        /// Issuer id in the reader certificate.
        credential: String,
        /// Issuer id of the trust bundle.
        bundle: String,
    },
    /// The credential's linkability group is not the trust bundle's (its
    /// revocation list would be another group's, SPEC §5.8).
    #[error(
        "the credential is for linkability group {credential}, the trust bundle for group {bundle}"
    )]
    CredentialNotForThisGroup {
        /// Group in the reader certificate.
        credential: u8,
        /// Group of the trust bundle.
        bundle: u8,
    },
    /// The credential's certificate is not signed by the bundle's root.
    #[error("the credential's certificate is not signed by the trust bundle's root")]
    CredentialSignature,
    /// The credential's private key does not belong to its certificate.
    #[error("the credential's private key does not match its certificate")]
    CredentialKeyMismatch,
    /// The credential file's schema version is not supported.
    #[error("unsupported credential schema version {0}")]
    UnsupportedSchema(u64),
    /// The file to write already exists (credentials are never overwritten).
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// A reload offered a trust bundle older than the one in use (an older
    /// bundle would un-revoke cards); the current trust stays.
    #[error("the new trust bundle (issued at {new_issued_at}) is older than the one in use (issued at {current_issued_at})")]
    BundleRollback {
        /// Issue time of the bundle in use, Unix seconds.
        current_issued_at: u64,
        /// Issue time of the refused bundle, Unix seconds.
        new_issued_at: u64,
    },
    /// The bundle's revocation list is older than one this installation
    /// already loaded (recorded in its revocation state file next to the
    /// credential): loading it would un-revoke cards.
    #[error("the trust bundle's revocation list #{found} is older than list #{seen} already loaded here ({state}); get the city's current bundle")]
    RevocationListRollback {
        /// The highest list number seen by this installation.
        seen: u32,
        /// The refused bundle's list number.
        found: u32,
        /// The state file.
        state: String,
    },
    /// A reload from files was asked of a trust source built without files.
    #[error("this trust source has no files to reload from")]
    NoTrustFiles,
    /// The PC/SC service could not be used (the tap service at start-up).
    #[error("PC/SC: {0}")]
    Pcsc(#[source] citycard_transport::TransportError),
    /// A reader named in the tap service's selection matched no reader for
    /// longer than the configured wait.
    #[error("no reader matches {names:?} (readers: {available:?})")]
    NoMatchingReader {
        /// The names that match nothing.
        names: Vec<String>,
        /// The readers present.
        available: Vec<String>,
    },
    /// The tap service could not start one of its threads.
    #[error("cannot start the {what}: {source}")]
    WatchThread {
        /// Which thread ("monitor thread", "trust file watcher").
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The tap service's monitor thread panicked.
    #[error("the monitor thread panicked")]
    WatchPanicked,
}

impl ReaderError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// A file writer's error: an existing file is [`Self::AlreadyExists`],
    /// anything else [`Self::Io`].
    pub(crate) fn file(e: citycard_files::FileError) -> Self {
        match e {
            citycard_files::FileError::AlreadyExists(path) => {
                Self::AlreadyExists(path.display().to_string())
            }
            other => {
                let (path, source) = other.into_io();
                Self::io(&path, source)
            }
        }
    }
}
