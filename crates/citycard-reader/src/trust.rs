//! [`Trust`]: the city's trust bundle and the partner's credential, checked
//! against each other once, at load time (SPEC §5.8).

use std::path::Path;

use citycard_proto::crypto;
use citycard_proto::revocation::{TrustBundle, MAX_BUNDLE_LEN};

use crate::credential::read_bounded;
use crate::{PartnerCredential, ReaderError};

/// The root key fingerprint a city gives partners out of band: SHA-256 of the
/// 33-byte compressed root point (SPEC §5.8).
pub fn root_fingerprint(root: &p256::PublicKey) -> [u8; 32] {
    crypto::sha256(&[&crypto::encode_point(root)])
}

/// Everything a reader needs to verify cards offline: a verified trust bundle
/// (root, station certificates, revocation list) and a partner credential
/// whose certificate that root signed.
///
/// A `Trust` is immutable and cheap to share (`Arc<Trust>`); to take a new
/// bundle, build a new `Trust` and swap it in.
#[derive(Clone, Debug)]
pub struct Trust {
    bundle: TrustBundle,
    credential: PartnerCredential,
}

impl Trust {
    /// Checks `bundle` and `credential` against each other:
    ///
    /// 1. the bundle's signature, station certificates and revocation list
    ///    verify with its root ([`ReaderError::BundleSignature`]);
    /// 2. the credential's certificate is a reader certificate
    ///    ([`ReaderError::CredentialNotAReader`]) of the same issuer id
    ///    ([`ReaderError::CredentialNotForThisIssuer`]), signed by the bundle's
    ///    root ([`ReaderError::CredentialSignature`]), and the credential's key
    ///    is the certified one ([`ReaderError::CredentialKeyMismatch`]).
    ///
    /// The credential's validity dates are not checked here: an expired
    /// credential gives the verdict [`Verdict::CredentialExpired`](crate::Verdict::CredentialExpired)
    /// at the desk, with the dates in it.
    ///
    /// # Errors
    ///
    /// As listed above.
    pub fn new(bundle: TrustBundle, credential: PartnerCredential) -> Result<Self, ReaderError> {
        bundle.verify().map_err(|_| ReaderError::BundleSignature)?;
        let cert = credential.certificate();
        if cert.body().role != citycard_proto::Role::Reader || cert.body().domain.is_none() {
            return Err(ReaderError::CredentialNotAReader);
        }
        if cert.body().issuer != bundle.body().issuer {
            return Err(ReaderError::CredentialNotForThisIssuer {
                credential: cert.body().issuer.clone(),
                bundle: bundle.body().issuer.clone(),
            });
        }
        cert.verify(&bundle.body().root)
            .map_err(|_| ReaderError::CredentialSignature)?;
        if credential.key().public_key() != cert.body().public_key {
            return Err(ReaderError::CredentialKeyMismatch);
        }
        Ok(Self { bundle, credential })
    }

    /// Loads a trust bundle file (the binary `E5` encoding, or the same in hex)
    /// and a credential file ([`PartnerCredential::load`]), then [`Self::new`].
    ///
    /// # Errors
    ///
    /// [`ReaderError::Io`], [`ReaderError::Malformed`] (`what` = "trust
    /// bundle"), and the errors of [`PartnerCredential::load`] and [`Self::new`].
    pub fn load(bundle_path: &Path, credential_path: &Path) -> Result<Self, ReaderError> {
        let raw = read_bounded(bundle_path, 2 * MAX_BUNDLE_LEN as u64 + 2)?;
        let bytes = if raw.first() == Some(&0xE5) {
            raw
        } else {
            let text = std::str::from_utf8(&raw).map_err(|_| ReaderError::Malformed {
                what: "trust bundle",
            })?;
            hex::decode(text.trim()).map_err(|_| ReaderError::Malformed {
                what: "trust bundle",
            })?
        };
        let bundle = TrustBundle::decode(&bytes).map_err(|_| ReaderError::Malformed {
            what: "trust bundle",
        })?;
        let credential = PartnerCredential::load(credential_path)?;
        Self::new(bundle, credential)
    }

    /// Pins the root: fails unless the bundle's root key has this fingerprint
    /// ([`root_fingerprint`], the value the city gives out of band).
    ///
    /// # Errors
    ///
    /// [`ReaderError::UnexpectedRoot`].
    pub fn with_expected_root(self, fingerprint: &[u8; 32]) -> Result<Self, ReaderError> {
        let found = self.root_fingerprint();
        if crypto::mac_eq(&found, fingerprint) {
            Ok(self)
        } else {
            Err(ReaderError::UnexpectedRoot {
                found: hex::encode(found),
            })
        }
    }

    /// The fingerprint of the bundle's root key.
    pub fn root_fingerprint(&self) -> [u8; 32] {
        root_fingerprint(&self.bundle.body().root)
    }

    /// The verified trust bundle.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The partner credential.
    pub fn credential(&self) -> &PartnerCredential {
        &self.credential
    }

    /// The issuer id (the city).
    pub fn issuer_id(&self) -> &str {
        &self.bundle.body().issuer
    }
}
