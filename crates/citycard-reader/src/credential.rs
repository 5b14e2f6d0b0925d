//! The partner credential file: the reader certificate and its private key.
//!
//! Format (JSON, one object; `schema_version` 1):
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "issuer_id": "LIEGE",
//!   "partner": "library",
//!   "certificate": "<hex of the 7F21 reader certificate, SPEC §5.2>",
//!   "private_key": "<PKCS#8 PEM of the reader's P-256 key>"
//! }
//! ```
//!
//! `issuer_id` and `partner` repeat the certificate's issuer and holder
//! references for people reading the file; on load they must match the
//! certificate. The file holds a private key: it is written with mode 0600
//! and never overwritten.

use std::fs;
use std::path::Path;

use citycard_proto::cert::{Certificate, Role};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use serde::{Deserialize, Serialize};

use crate::ReaderError;

/// The credential file format version this crate writes and reads.
pub const CREDENTIAL_SCHEMA_VERSION: u64 = 1;

use citycard_proto::limits::MAX_CREDENTIAL_LEN;

/// A partner's reader credential: its root-signed reader certificate
/// (SPEC §5.2, role reader) and the matching private key.
///
/// `Debug` shows the partner, issuer and certificate fingerprint, never the key.
#[derive(Clone)]
pub struct PartnerCredential {
    certificate: Certificate,
    key: SecretKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    schema_version: u64,
    issuer_id: String,
    partner: String,
    certificate: String,
    private_key: String,
}

impl PartnerCredential {
    /// Joins a reader certificate and its private key.
    ///
    /// # Errors
    ///
    /// [`ReaderError::CredentialNotAReader`] if the certificate's role is not
    /// reader; [`ReaderError::CredentialKeyMismatch`] if `key` is not the key
    /// the certificate certifies. (Whether the certificate is signed by the
    /// city's root is checked by [`Trust::new`](crate::Trust::new).)
    pub fn new(certificate: Certificate, key: SecretKey) -> Result<Self, ReaderError> {
        if certificate.body().role != Role::Reader
            || certificate.body().domain.is_none()
            || certificate.body().group.is_none()
        {
            return Err(ReaderError::CredentialNotAReader);
        }
        if key.public_key() != certificate.body().public_key {
            return Err(ReaderError::CredentialKeyMismatch);
        }
        Ok(Self { certificate, key })
    }

    /// The reader certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The linkability group of the reader certificate (SPEC §5.2).
    pub fn group(&self) -> u8 {
        self.certificate.body().group.unwrap_or(0)
    }

    /// The reader's static private key (for [`ReaderSession::open`](citycard_proto::auth::ReaderSession::open)).
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// The issuer id the certificate names.
    pub fn issuer_id(&self) -> &str {
        &self.certificate.body().issuer
    }

    /// The partner name (the certificate's holder reference).
    pub fn partner(&self) -> &str {
        &self.certificate.body().holder
    }

    /// The credential file's JSON text (pretty-printed, ending in a newline).
    ///
    /// # Errors
    ///
    /// [`ReaderError::Malformed`] if the key cannot be encoded (does not happen
    /// for a valid P-256 key).
    pub fn to_json(&self) -> Result<String, ReaderError> {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| ReaderError::Malformed {
                what: "credential private key",
            })?;
        let file = CredentialFile {
            schema_version: CREDENTIAL_SCHEMA_VERSION,
            issuer_id: self.issuer_id().to_owned(),
            partner: self.partner().to_owned(),
            certificate: hex::encode_upper(self.certificate.as_bytes()),
            private_key: pem.as_str().to_owned(),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|_| ReaderError::Malformed {
            what: "credential file",
        })?;
        text.push('\n');
        // Every file written is one the loader accepts.
        if text.len() > MAX_CREDENTIAL_LEN {
            return Err(ReaderError::Malformed {
                what: "credential file (too large)",
            });
        }
        Ok(text)
    }

    /// Parses a credential file's JSON text.
    ///
    /// # Errors
    ///
    /// [`ReaderError::UnsupportedSchema`], [`ReaderError::Malformed`] (naming
    /// the field; never echoing the key; or longer than
    /// `citycard_proto::limits::MAX_CREDENTIAL_LEN` bytes), or the errors of
    /// [`Self::new`].
    pub fn from_json(text: &str) -> Result<Self, ReaderError> {
        if text.len() > MAX_CREDENTIAL_LEN {
            return Err(ReaderError::Malformed {
                what: "credential file (too large)",
            });
        }
        let file: CredentialFile = serde_json::from_str(text).map_err(|_| ReaderError::Malformed {
            what: "credential file (expected JSON with schema_version, issuer_id, partner, certificate, private_key)",
        })?;
        if file.schema_version != CREDENTIAL_SCHEMA_VERSION {
            return Err(ReaderError::UnsupportedSchema(file.schema_version));
        }
        let cert_bytes =
            hex::decode(file.certificate.trim()).map_err(|_| ReaderError::Malformed {
                what: "credential certificate (hex)",
            })?;
        let certificate = Certificate::decode(&cert_bytes).map_err(|_| ReaderError::Malformed {
            what: "credential certificate",
        })?;
        let key =
            SecretKey::from_pkcs8_pem(&file.private_key).map_err(|_| ReaderError::Malformed {
                what: "credential private key (PKCS#8 PEM, P-256)",
            })?;
        let credential = Self::new(certificate, key)?;
        if file.issuer_id != credential.issuer_id() || file.partner != credential.partner() {
            return Err(ReaderError::Malformed {
                what: "credential file (issuer_id/partner differ from the certificate)",
            });
        }
        Ok(credential)
    }

    /// Writes the credential file at `path` with
    /// [`citycard_files::write_file`]: mode 0600 whatever the umask, never
    /// overwriting an existing file, and atomically (a temporary file in the
    /// same directory, synced, then linked into place), so `path` holds
    /// either nothing or the whole file. A device or FIFO at `path` (e.g.
    /// `/dev/stdout`) is written through, as the CLI's `--out` does.
    ///
    /// # Errors
    ///
    /// [`ReaderError::AlreadyExists`] if a regular file exists at `path`;
    /// [`ReaderError::Io`].
    pub fn write_to(&self, path: &Path) -> Result<(), ReaderError> {
        let text = self.to_json()?;
        citycard_files::write_file(path, text.as_bytes(), citycard_files::Overwrite::Refuse)
            .map_err(ReaderError::file)?;
        Ok(())
    }

    /// Reads and parses a credential file.
    ///
    /// # Errors
    ///
    /// [`ReaderError::Io`], then the errors of [`Self::from_json`].
    pub fn load(path: &Path) -> Result<Self, ReaderError> {
        let text = read_bounded(path, MAX_CREDENTIAL_LEN as u64)?;
        let text = String::from_utf8(text).map_err(|_| ReaderError::Malformed {
            what: "credential file (not UTF-8)",
        })?;
        Self::from_json(&text)
    }
}

/// Reads at most `limit` bytes of a file; a longer file is malformed.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReaderError> {
    use std::io::Read;
    let file = fs::File::open(path).map_err(|e| ReaderError::io(path, e))?;
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ReaderError::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(ReaderError::Malformed {
            what: "file (too large)",
        });
    }
    Ok(buf)
}

impl std::fmt::Debug for PartnerCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCredential")
            .field("issuer_id", &self.issuer_id())
            .field("partner", &self.partner())
            .field("certificate", &hex::encode(self.certificate.fingerprint()))
            .field("private_key", &"REDACTED")
            .finish()
    }
}
