//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while creating, opening or using a key.
///
/// No variant ever carries a passphrase, a PIN or key material; paths, token
/// labels and key labels are not secret and are included.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The passphrase does not decrypt the key file.
    ///
    /// PKCS#8 encryption (PBES2, AES-CBC) has no integrity tag, so a key file
    /// whose ciphertext was damaged is also reported this way.
    #[error("wrong passphrase for the key file")]
    WrongPassphrase,
    /// A new key file needs a non-empty passphrase.
    #[error("refusing to protect a key file with an empty passphrase")]
    EmptyPassphrase,
    /// A new key file's passphrase is shorter than the minimum.
    #[error("a new key's passphrase must have at least {min} characters (a few words are best)")]
    WeakPassphrase {
        /// [`MIN_PASSPHRASE_LEN`](crate::MIN_PASSPHRASE_LEN).
        min: usize,
    },
    /// The two entries of a new passphrase differ.
    #[error("the passphrases entered do not match")]
    PassphraseMismatch,
    /// No secret could be obtained: no environment variable and no terminal.
    #[error("no {what} available: set {env_var}, or run on a terminal to be prompted")]
    NoSecret {
        /// What was needed ("passphrase", "PIN").
        what: &'static str,
        /// The environment variable that would have supplied it.
        env_var: &'static str,
    },
    /// Reading the secret from the terminal failed.
    #[error("could not read the {what} from the terminal: {source}")]
    Prompt {
        /// What was being read.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No key file at this path.
    #[error("no key file at {0}")]
    NotFound(PathBuf),
    /// A key already exists where a new one was to be created.
    #[error("a key already exists at {0}; refusing to overwrite it")]
    AlreadyExists(String),
    /// The key file is not an encrypted PKCS#8 P-256 key.
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never includes file contents).
        reason: &'static str,
    },
    /// An I/O error on a key file.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load PKCS#11 module {module}: {source}")]
    ModuleLoad {
        /// The module path.
        module: PathBuf,
        /// The underlying error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// No token with this label in any slot of the module.
    #[error("no PKCS#11 token labelled {0:?}")]
    TokenNotFound(String),
    /// No private key with this label on the token.
    #[error("no key labelled {label:?} on PKCS#11 token {token:?}")]
    KeyNotFound {
        /// The token label.
        token: String,
        /// The key label.
        label: String,
    },
    /// More than one token or key matches, so the choice would be a guess.
    #[error("ambiguous: {0}")]
    Ambiguous(String),
    /// The token rejected the user PIN.
    #[error("wrong PIN for PKCS#11 token {0:?}")]
    WrongPin(String),
    /// The token's user PIN is locked after too many wrong tries.
    #[error("the user PIN of PKCS#11 token {0:?} is locked")]
    PinLocked(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 {operation} failed: {source}")]
    Pkcs11 {
        /// The operation that failed.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: cryptoki::error::Error,
    },
    /// A secret key file may be read or written by group or others.
    #[error("{} is accessible to group or others (mode {mode:03o}); run `chmod 600` on it", .path.display())]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A PIV management key (file or token object) is not usable for its algorithm.
    #[error("management key {origin}: {reason}")]
    BadManagementKey {
        /// Where the key is (locator; never the key).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The token returned something that is not a valid P-256 key or signature.
    #[error("PKCS#11 token returned a bad {0}")]
    BadTokenOutput(&'static str),
}

impl KeyError {
    pub(crate) fn pkcs11(operation: &'static str) -> impl FnOnce(cryptoki::error::Error) -> Self {
        move |source| KeyError::Pkcs11 { operation, source }
    }
}
