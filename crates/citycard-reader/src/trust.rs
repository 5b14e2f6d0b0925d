//! [`Trust`]: the city's trust bundle and the partner's credential, checked
//! against each other once, at load time (SPEC §5.8).

use std::path::{Path, PathBuf};

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
        if cert.body().role != citycard_proto::cert::Role::Reader || cert.body().domain.is_none() {
            return Err(ReaderError::CredentialNotAReader);
        }
        if cert.body().issuer != bundle.body().issuer {
            return Err(ReaderError::CredentialNotForThisIssuer {
                credential: cert.body().issuer.clone(),
                bundle: bundle.body().issuer.clone(),
            });
        }
        if credential.group() != bundle.body().group {
            return Err(ReaderError::CredentialNotForThisGroup {
                credential: credential.group(),
                bundle: bundle.body().group,
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
    /// and a credential file ([`PartnerCredential::load`]), then [`Self::new`],
    /// then checks and records the revocation list number in this
    /// installation's revocation state ([`revocation_state_path`]): a list
    /// older than one already loaded here is refused, a newer one recorded.
    ///
    /// # Errors
    ///
    /// [`ReaderError::Io`], [`ReaderError::Malformed`] (`what` = "trust
    /// bundle" or "revocation state"), [`ReaderError::RevocationListRollback`],
    /// and the errors of [`PartnerCredential::load`] and [`Self::new`].
    pub fn load(bundle_path: &Path, credential_path: &Path) -> Result<Self, ReaderError> {
        let trust = Self::load_unrecorded(bundle_path, credential_path)?;
        record_revocation_state(&revocation_state_path(credential_path), trust.bundle())?;
        Ok(trust)
    }

    /// [`Self::load`] without the revocation state: for inspecting a bundle
    /// (nothing is recorded, an older list is not refused).
    ///
    /// # Errors
    ///
    /// Those of [`Self::load`] but [`ReaderError::RevocationListRollback`].
    pub fn load_unrecorded(
        bundle_path: &Path,
        credential_path: &Path,
    ) -> Result<Self, ReaderError> {
        let bundle = load_bundle(bundle_path)?;
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

/// Reads and decodes a trust bundle file (binary `E5`, or the same in hex),
/// at most [`MAX_BUNDLE_LEN`] bytes. Does not verify it.
///
/// # Errors
///
/// [`ReaderError::Io`], [`ReaderError::Malformed`] (`what` = "trust bundle").
pub fn load_bundle(path: &Path) -> Result<TrustBundle, ReaderError> {
    let raw = read_bounded(path, 2 * MAX_BUNDLE_LEN as u64 + 2)?;
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
    TrustBundle::decode(&bytes).map_err(|_| ReaderError::Malformed {
        what: "trust bundle",
    })
}

/// Where an installation records the highest revocation list number it has
/// loaded: next to the credential, `<credential file>.revocation-state`.
pub fn revocation_state_path(credential_path: &Path) -> PathBuf {
    let mut name = credential_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".revocation-state");
    credential_path.with_file_name(name)
}

/// The revocation state file: per issuer and linkability group, the highest
/// list number loaded.
#[derive(serde::Serialize, serde::Deserialize, Debug, Default, PartialEq, Eq)]
struct RevocationState {
    schema_version: u32,
    /// `"ISSUER/group"` → highest list number.
    highest: std::collections::BTreeMap<String, u32>,
}

/// Largest revocation state file read.
const MAX_STATE_LEN: u64 = 64 * 1024;

/// Refuses `bundle` if its list is older than the one recorded in `state`,
/// and records its number if it is newer (atomically, with
/// [`citycard_files::write_file`]: a temporary file in the same directory,
/// created 0600, renamed over the state). A state that is not a regular file
/// (a device, a FIFO) is refused: the number would not be recorded.
///
/// # Errors
///
/// [`ReaderError::RevocationListRollback`], [`ReaderError::Io`],
/// [`ReaderError::Malformed`] (`what` = "revocation state").
pub fn record_revocation_state(state: &Path, bundle: &TrustBundle) -> Result<(), ReaderError> {
    let mut current = match std::fs::symlink_metadata(state) {
        Ok(_) => {
            let raw = read_bounded(state, MAX_STATE_LEN)?;
            serde_json::from_slice::<RevocationState>(&raw).map_err(|_| ReaderError::Malformed {
                what: "revocation state",
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RevocationState {
            schema_version: 1,
            highest: Default::default(),
        },
        Err(e) => return Err(ReaderError::io(state, e)),
    };
    let list = bundle.body().revocations.body();
    let key = format!("{}/{}", list.issuer, list.group);
    let seen = current.highest.get(&key).copied();
    match seen {
        Some(seen) if list.sequence < seen => Err(ReaderError::RevocationListRollback {
            seen,
            found: list.sequence,
            state: state.display().to_string(),
        }),
        Some(seen) if list.sequence == seen => Ok(()),
        _ => {
            current.highest.insert(key, list.sequence);
            let json = serde_json::to_vec_pretty(&current).map_err(|_| ReaderError::Malformed {
                what: "revocation state",
            })?;
            if citycard_files::is_special(state) {
                return Err(ReaderError::io(
                    state,
                    std::io::Error::other("not a regular file; refusing to record the state there"),
                ));
            }
            citycard_files::write_file(state, &json, citycard_files::Overwrite::Replace)
                .map_err(ReaderError::file)?;
            Ok(())
        }
    }
}

/// Default warning window before a revocation list's next update: one day.
///
/// Cities publish lists good for two days every six hours (docs/revocation.md),
/// so a partner's list is normally at least 42 hours from its next update: a
/// warning then means the city has not published for a day, a day before
/// every card would be refused. (A window as long as the list's lifetime
/// would warn all the time.)
pub const DEFAULT_WARN_BEFORE_SECS: u64 = 86_400;

/// How close the revocation list is to its next update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// More than the warning window before the next update.
    Fresh,
    /// Within the warning window: the city should publish soon.
    ExpiresSoon {
        /// The list's next update, Unix seconds.
        next_update: u64,
        /// Seconds left.
        remaining_secs: u64,
    },
    /// Past the next update: readers refuse every card by default.
    Stale {
        /// The list's next update, Unix seconds.
        next_update: u64,
    },
}

impl Trust {
    /// The revocation list's freshness at `now_unix`, warning from
    /// `warn_before_secs` before its next update.
    pub fn freshness(&self, now_unix: u64, warn_before_secs: u64) -> Freshness {
        freshness(self.bundle(), now_unix, warn_before_secs)
    }
}

/// The freshness of `bundle`'s revocation list at `now_unix`.
pub fn freshness(bundle: &TrustBundle, now_unix: u64, warn_before_secs: u64) -> Freshness {
    let next_update = bundle.body().revocations.body().next_update;
    if now_unix > next_update {
        Freshness::Stale { next_update }
    } else if next_update - now_unix <= warn_before_secs {
        Freshness::ExpiresSoon {
            next_update,
            remaining_secs: next_update - now_unix,
        }
    } else {
        Freshness::Fresh
    }
}

/// A duration for people: `3 d 4 h`, `5 h 12 min`, `40 min`, `12 s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{secs} s")
    }
}

impl Freshness {
    /// The warning a reader gives about this freshness, if any: its kind
    /// (`revocation_list_expiring` or `revocation_list_stale`) and a message
    /// for people; `None` when the list is fresh.
    pub fn warning(&self, now_unix: u64) -> Option<(&'static str, String)> {
        match *self {
            Self::Fresh => None,
            Self::ExpiresSoon { remaining_secs, .. } => Some((
                "revocation_list_expiring",
                format!(
                    "the revocation list reaches its next update in {}; get the city's new trust bundle before then",
                    human_duration(remaining_secs)
                ),
            )),
            Self::Stale { next_update } => Some((
                "revocation_list_stale",
                format!(
                    "the revocation list passed its next update {} ago; get the city's new trust bundle",
                    human_duration(now_unix.saturating_sub(next_update))
                ),
            )),
        }
    }
}
