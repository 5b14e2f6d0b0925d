//! Keys in passphrase-encrypted PKCS#8 files.

use std::path::{Path, PathBuf};

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use p256::SecretKey;
use pkcs8::der::Decode as _;
use pkcs8::EncryptedPrivateKeyInfo;
use zeroize::Zeroizing;

use crate::{KeyError, SecretSource, Signer, SIGNATURE_LEN};

/// The PEM label of an encrypted PKCS#8 key.
const PEM_LABEL: &str = "ENCRYPTED PRIVATE KEY";
/// scrypt cost: N = 2^14 (see [`encrypt_pem`]).
const SCRYPT_LOG_N: u8 = 14;
/// Key files larger than this are not key files.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// A P-256 key held in memory, loaded from (or created as) an encrypted
/// PKCS#8 PEM file: PBES2 with scrypt (N = 2^14, r = 8, p = 1) and
/// AES-256-CBC, readable by OpenSSL.
///
/// The key is wiped from memory when the signer is dropped; `Debug` prints
/// only the path.
pub struct FileSigner {
    path: PathBuf,
    key: SigningKey,
}

impl std::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSigner")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileSigner {
    /// Generates a key and writes it, encrypted under a new passphrase from
    /// `secrets`, to `path` with mode 0600.
    ///
    /// Never replaces an existing file, nor writes into a device or FIFO:
    /// anything at `path` is [`KeyError::AlreadyExists`]. The key is written
    /// with [`citycard_files::write_file`] (a temporary file in the same
    /// directory, synced, then linked into place only if `path` still does
    /// not exist).
    pub fn generate(path: &Path, secrets: &dyn SecretSource) -> Result<Self, KeyError> {
        let exists = || KeyError::AlreadyExists(format!("file:{}", path.display()));
        if path.symlink_metadata().is_ok() {
            return Err(exists());
        }
        let passphrase = secrets.new_passphrase(&path.display().to_string())?;
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        if passphrase.chars().count() < crate::MIN_PASSPHRASE_LEN {
            return Err(KeyError::WeakPassphrase {
                min: crate::MIN_PASSPHRASE_LEN,
            });
        }
        let secret = SecretKey::random(&mut rand_core::OsRng);
        let pem = encrypt_pem(&secret, passphrase.as_bytes()).ok_or_else(|| KeyError::Corrupt {
            path: path.to_owned(),
            reason: "could not encode the new key",
        })?;

        citycard_files::write_file(path, pem.as_bytes(), citycard_files::Overwrite::Refuse)
            .map_err(|e| match e {
                citycard_files::FileError::AlreadyExists(_) => exists(),
                other => {
                    let (path, source) = other.into_io();
                    KeyError::Io { path, source }
                }
            })?;
        Ok(FileSigner {
            path: path.to_owned(),
            key: SigningKey::from(secret),
        })
    }

    /// Opens the key file at `path` with the passphrase from `secrets`.
    pub fn open(path: &Path, secrets: &dyn SecretSource) -> Result<Self, KeyError> {
        let corrupt = |reason| KeyError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let meta = key_file_metadata(path)?;
        if !meta.is_file() || meta.len() > MAX_FILE_LEN {
            return Err(corrupt("not a key file"));
        }
        let bytes = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| corrupt("not a PEM file"))?;
        let (label, doc) =
            pkcs8::Document::from_pem(text).map_err(|_| corrupt("not a PEM file"))?;
        if label != PEM_LABEL {
            return Err(corrupt("not an encrypted PKCS#8 key"));
        }
        let info = EncryptedPrivateKeyInfo::from_der(doc.as_bytes())
            .map_err(|_| corrupt("not an encrypted PKCS#8 key"))?;

        let passphrase = secrets.passphrase(&path.display().to_string())?;
        let plain = info.decrypt(passphrase.as_bytes()).map_err(|e| match e {
            // A bad CBC padding comes back as `EncryptFailed` from pkcs5 0.7;
            // a lucky padding then fails as DER.
            pkcs8::Error::EncryptedPrivateKey(
                pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
            )
            | pkcs8::Error::Asn1(_) => KeyError::WrongPassphrase,
            _ => corrupt("unsupported key encryption"),
        })?;
        let secret = SecretKey::from_pkcs8_der(plain.as_bytes())
            .map_err(|_| corrupt("not a P-256 private key"))?;
        Ok(FileSigner {
            path: path.to_owned(),
            key: SigningKey::from(secret),
        })
    }

    /// The path of the key file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Signer for FileSigner {
    fn public_key(&self) -> p256::PublicKey {
        p256::PublicKey::from(self.key.verifying_key())
    }

    /// Always low S (SPEC §1: verifiers refuse high-S signatures).
    fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], KeyError> {
        let sig: Signature = self.key.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok(sig.to_bytes().into())
    }

    fn locator(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

/// Encrypted PKCS#8 PEM of `secret`: PBES2, scrypt (N = 2^14, r = 8, p = 1)
/// and AES-256-CBC with a random 16-byte salt and IV.
///
/// N = 2^14 with r = 8 (16 MiB) is the most OpenSSL 3 accepts for PKCS#8, so
/// the file stays readable by standard tools (`openssl pkey`) for recovery;
/// the `pkcs8` crate's own default (N = 2^17) is not.
fn encrypt_pem(secret: &SecretKey, passphrase: &[u8]) -> Option<Zeroizing<String>> {
    use pkcs8::pkcs5::{pbes2, scrypt};
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    getrandom::getrandom(&mut salt).ok()?;
    getrandom::getrandom(&mut iv).ok()?;
    let params = scrypt::Params::new(SCRYPT_LOG_N, 8, 1, 32).ok()?;
    let params = pbes2::Parameters::scrypt_aes256cbc(params, &salt, &iv).ok()?;
    let der = secret.to_pkcs8_der().ok()?;
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes()).ok()?;
    let encrypted = info.encrypt_with_params(params, passphrase).ok()?;
    encrypted.to_pem(PEM_LABEL, LineEnding::LF).ok()
}

/// The metadata of a key file: [`KeyError::NotFound`] if there is none,
/// [`KeyError::Io`] for any other failure.
pub(crate) fn key_file_metadata(path: &Path) -> Result<std::fs::Metadata, KeyError> {
    std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => KeyError::NotFound(path.to_owned()),
        _ => KeyError::Io {
            path: path.to_owned(),
            source,
        },
    })
}
