#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod error;
mod file;
mod location;
mod management;
mod pkcs11;
mod secrets;

pub use error::KeyError;
pub use file::FileSigner;
pub use location::{KeyLocation, LocatorParseError, Pkcs11Location};
pub use management::{
    is_factory_default, open_management_key, ManagementKey, ManagementKeyLocation,
    Pkcs11ManagementKey, SoftManagementKey, FACTORY_DEFAULT_ALGORITHMS,
};
pub use pkcs11::{KeyProtection, Pkcs11Signer};
pub use secrets::{FixedSecrets, SecretSource, PASSPHRASE_ENV, PIN_ENV};

/// The length of a raw ECDSA P-256 signature (`r‖s`).
pub const SIGNATURE_LEN: usize = 64;

/// The minimum length, in characters, of the passphrase that protects a new
/// key file: shorter ones are refused with [`KeyError::WeakPassphrase`].
/// Existing keys open with whatever passphrase they were made with.
pub const MIN_PASSPHRASE_LEN: usize = 12;

/// A P-256 signing key of the city, wherever it lives.
///
/// Every implementation produces ECDSA P-256 / SHA-256 signatures in the raw
/// `r‖s` form that [`citycard_proto::crypto::verify`] accepts, always with a
/// low `s` (the form `p256` itself produces).
pub trait Signer: Send {
    /// The public half of the key.
    fn public_key(&self) -> p256::PublicKey;

    /// ECDSA P-256 / SHA-256 over `message` (the signer hashes), raw `r‖s`.
    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], KeyError>;

    /// Where the key lives, for logs and configuration (never secret):
    /// `file:/path` or `pkcs11:token=…;object=…;type=private?module-path=…`.
    fn locator(&self) -> String;
}

impl<S: Signer + ?Sized> Signer for Box<S> {
    fn public_key(&self) -> p256::PublicKey {
        (**self).public_key()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], KeyError> {
        (**self).sign(message)
    }

    fn locator(&self) -> String {
        (**self).locator()
    }
}

impl std::fmt::Debug for dyn Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("locator", &self.locator())
            .finish_non_exhaustive()
    }
}

/// Creates a new key at `loc` and returns a signer for it.
///
/// Refuses to replace an existing key ([`KeyError::AlreadyExists`]). A file
/// key asks `secrets` for a new passphrase ([`SecretSource::new_passphrase`]);
/// a PKCS#11 key asks for the token's user PIN and is generated on the token,
/// sensitive and not extractable.
pub fn generate(
    loc: &KeyLocation,
    secrets: &dyn SecretSource,
) -> Result<Box<dyn Signer>, KeyError> {
    match loc {
        KeyLocation::File(path) => Ok(Box::new(FileSigner::generate(path, secrets)?)),
        KeyLocation::Pkcs11(p) => Ok(Box::new(Pkcs11Signer::generate(p, secrets)?)),
    }
}

/// Destroys the key at `loc`: removes the key file, or destroys the key
/// pair on the token (asking for its PIN). For undoing a half-finished
/// setup and for retiring a key; a key that is already gone is not an error.
pub fn destroy(loc: &KeyLocation, secrets: &dyn SecretSource) -> Result<(), KeyError> {
    match loc {
        KeyLocation::File(path) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyError::Io {
                path: path.clone(),
                source,
            }),
        },
        KeyLocation::Pkcs11(p) => pkcs11::destroy(p, secrets).map(|_| ()),
    }
}

/// Opens the existing key at `loc`.
///
/// Fails with [`KeyError::NotFound`] / [`KeyError::KeyNotFound`] when there is
/// no key, [`KeyError::WrongPassphrase`] / [`KeyError::WrongPin`] when the
/// secret does not unlock it.
pub fn open(loc: &KeyLocation, secrets: &dyn SecretSource) -> Result<Box<dyn Signer>, KeyError> {
    match loc {
        KeyLocation::File(path) => Ok(Box::new(FileSigner::open(path, secrets)?)),
        KeyLocation::Pkcs11(p) => Ok(Box::new(Pkcs11Signer::open(p, secrets)?)),
    }
}
