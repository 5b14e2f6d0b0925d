//! The issuer home: the city's directory with its configuration, root key
//! location, station and partner certificates, and the issuance registry.
//!
//! ```text
//! DIR/issuer.json                 configuration (city, issuer id, root key location, card numbering)
//! DIR/root.key.pem                root key, encrypted PKCS#8 (unless it lives in a PKCS#11 token)
//! DIR/stations/NAME/station.json  station certificate and key location
//! DIR/stations/NAME/station.key.pem   station key (file keys only)
//! DIR/partners/NAME.cert          certificates issued to partners (public; the key went to the partner)
//! DIR/revocation/current.crl      the last published revocation list (group 0;
//!                                 group g: current-group-g.crl)
//! DIR/registry.sqlite             the issuance registry
//! DIR/leases/ID.lock              one per issuing process at work (see `desk`)
//! ```
//!
//! Every file is created 0600 and every directory 0700 (see [`citycard_files`]).
//! Key paths in `issuer.json` and `station.json` are relative to DIR, so a
//! home can be moved or restored elsewhere (`citycard issuer backup`).

use std::fs;
use std::path::{Path, PathBuf};

use citycard_keys::{KeyLocation, SecretSource, Signer};
use citycard_proto::attr::AttributeSet;
use citycard_proto::cert::{Certificate, CertificateBody};
use citycard_proto::{crypto, date::Date};
use serde::{Deserialize, Serialize};

mod partners;
pub use partners::NewPartner;
mod preparers;
mod publish;
mod stations;

use crate::error::IssuerError;
use citycard_files::{create_private_dir, write_file, Overwrite};

/// Current configuration format.
pub const SCHEMA_VERSION: u32 = 1;

/// `issuer.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuerConfig {
    /// Format version.
    pub schema_version: u32,
    /// City name, for people.
    pub city: String,
    /// Issuer id (certificate issuer reference, 1–16 printable ASCII).
    pub issuer_id: String,
    /// Where the root key lives.
    pub root: KeyLocation,
    /// The root public key (compressed point, hex), so that public operations need no key access.
    pub root_public_key: String,
    /// Card numbers are `PREFIX-NNNNNN`.
    pub card_number_prefix: String,
    /// Validity of a new card, in days.
    pub card_validity_days: u32,
    /// How many days the registry keeps a resident's attributes after their
    /// card is issued (to reprint or replace it); `None`, the default, keeps
    /// none at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_attributes_days: Option<u32>,
    /// The registry's server, for offices that share one; `None`, the
    /// default, is `registry.sqlite` in the home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<crate::registry::RegistryServer>,
    /// Linkability groups issued on every card (SPEC §5.3, 1–8). The
    /// registry records every group's card key and revocation id, and each
    /// group has its own revocation list and trust bundle.
    #[serde(default = "one_group")]
    pub groups: u8,
}

fn one_group() -> u8 {
    1
}

/// Refuses a linkability group outside 0–7 (SPEC §5.3).
fn check_group(group: u8) -> Result<(), IssuerError> {
    if usize::from(group) >= citycard_registry::MAX_GROUP_KEYS {
        return Err(IssuerError::Config(format!(
            "group {group}: linkability groups are 0 to {}",
            citycard_registry::MAX_GROUP_KEYS - 1
        )));
    }
    Ok(())
}

/// `stations/NAME/station.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StationConfig {
    /// Format version.
    pub schema_version: u32,
    /// Station name.
    pub name: String,
    /// Where the station key lives.
    pub key: KeyLocation,
    /// The station certificate (hex of the `7F21` encoding).
    pub certificate: String,
    /// The day the station was retired (it may no longer sign; its
    /// certificate stays in the trust bundle until it expires, so the cards
    /// it issued keep verifying).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_on: Option<String>,
}

/// A preparer's configuration (`preparers/<name>/preparer.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreparerConfig {
    /// Format version.
    pub schema_version: u32,
    /// Preparer name.
    pub name: String,
    /// Where the preparer key lives.
    pub key: KeyLocation,
    /// The preparer certificate (hex of the `7F21` encoding, role 03).
    pub certificate: String,
}

/// A preparer loaded for preparing cards.
pub struct LoadedPreparer {
    /// Name.
    pub name: String,
    /// Signs prepared-card certificates.
    pub signer: Box<dyn Signer>,
    /// The preparer certificate.
    pub certificate: Certificate,
}

/// A station loaded for issuing.
pub struct LoadedStation {
    /// Name.
    pub name: String,
    /// Signs records and station authentications.
    pub signer: Box<dyn Signer>,
    /// The station certificate.
    pub certificate: Certificate,
    /// The desk lease this process holds while it issues with the station
    /// (see [`crate::desk`]); the intents it begins name it, so no other
    /// desk reconciles them while it works. `None`: intents without owner.
    pub desk_lease: Option<String>,
}

/// Who a new issuer home issues for.
#[derive(Clone, Copy, Debug)]
pub struct CityIdentity<'a> {
    /// The city's name (`Liège`).
    pub city: &'a str,
    /// The issuer id in certificates and records (`LIEGE`), 1-16 printable ASCII.
    pub issuer_id: &'a str,
    /// The card number prefix (`LG` gives `LG-000001`).
    pub card_number_prefix: &'a str,
}

/// The city's issuer home.
#[derive(Clone, Debug)]
pub struct IssuerHome {
    dir: PathBuf,
    config: IssuerConfig,
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), IssuerError> {
    write_file(path, bytes, Overwrite::Refuse)?;
    Ok(())
}

fn check_name(name: &str, what: &'static str) -> Result<(), IssuerError> {
    let ok = !name.is_empty()
        && name.len() <= 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(IssuerError::InvalidName {
            what,
            name: name.into(),
        })
    }
}

/// Where an absolute key path of an older home sits inside that home:
/// `root.key.pem` or `stations/NAME/{station,check}.key.pem`.
fn home_relative(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    if name == "root.key.pem" {
        return Some(PathBuf::from(name));
    }
    let station = path.parent()?;
    let station_name = station.file_name()?;
    (station.parent()?.file_name()? == "stations")
        .then(|| PathBuf::from("stations").join(station_name).join(name))
}

/// A certificate stored in a station file (hex of its encoding).
fn decode_certificate(hex_text: &str) -> Result<Certificate, IssuerError> {
    let bytes = hex::decode(hex_text).map_err(|e| IssuerError::Config(e.to_string()))?;
    Ok(Certificate::decode(&bytes)?)
}

/// Today (UTC) and now (Unix seconds) from the system clock.
pub fn now() -> Result<(Date, u64), IssuerError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| IssuerError::Config("the system clock is before 1970".into()))?
        .as_secs();
    let days = i64::try_from(secs / 86_400)
        .map_err(|_| IssuerError::Config("clock out of range".into()))?;
    Ok((Date::from_days_since_epoch(days)?, secs))
}

/// The longest retention period `issuer init --retain-attributes` accepts, in days.
pub const MAX_RETENTION_DAYS: u32 = 10 * 366;

/// A station as `station list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationInfo {
    /// Name.
    pub name: String,
    /// First valid day of its certificate.
    pub effective: Date,
    /// Last valid day.
    pub expiry: Date,
    /// Where its key lives (a locator, never secret).
    pub key: String,
    /// SHA-256 of the certificate (hex).
    pub fingerprint: String,
    /// The day it was retired, if it was.
    pub retired_on: Option<String>,
}

/// A partner as `partner list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerInfo {
    /// Name.
    pub name: String,
    /// What its certificate grants.
    pub grants: AttributeSet,
    /// First valid day.
    pub effective: Date,
    /// Last valid day.
    pub expiry: Date,
    /// SHA-256 of the certificate (hex).
    pub fingerprint: String,
}

/// SHA-256 of a public key's compressed encoding (hex): what partners check
/// on paper.
pub fn key_fingerprint(key: &p256::PublicKey) -> String {
    hex::encode(crypto::sha256(&[&crypto::encode_point(key)]))
}

impl IssuerHome {
    /// Creates a new issuer home in `dir` (which must not already hold one):
    /// the root key (in a file encrypted with the passphrase, or in a PKCS#11
    /// token), the configuration and an empty registry. `retain_attributes_days`
    /// is the retention period of resident attributes (`None`: keep none).
    ///
    /// All or nothing: if any step fails, what this call created (files,
    /// directories, a token key) is removed again, so the same command can be
    /// retried.
    pub fn init(
        dir: &Path,
        city: &str,
        issuer_id: &str,
        card_number_prefix: &str,
        root: Option<KeyLocation>,
        retain_attributes_days: Option<u32>,
        secrets: &dyn SecretSource,
    ) -> Result<Self, IssuerError> {
        Self::init_with_registry(
            dir,
            &CityIdentity {
                city,
                issuer_id,
                card_number_prefix,
            },
            root,
            retain_attributes_days,
            None,
            secrets,
        )
    }

    /// [`IssuerHome::init`] with the registry on a PostgreSQL server
    /// (`Some`): its tables are created if the database is empty; a
    /// database that already holds the city's registry (another office's)
    /// is used as it is.
    pub fn init_with_registry(
        dir: &Path,
        identity: &CityIdentity<'_>,
        root: Option<KeyLocation>,
        retain_attributes_days: Option<u32>,
        registry: Option<crate::registry::RegistryServer>,
        secrets: &dyn SecretSource,
    ) -> Result<Self, IssuerError> {
        let CityIdentity {
            city,
            issuer_id,
            card_number_prefix,
        } = *identity;
        if city.trim().is_empty() || city.len() > 64 {
            return Err(IssuerError::InvalidName {
                what: "city",
                name: city.into(),
            });
        }
        if issuer_id.is_empty()
            || issuer_id.len() > 16
            || !issuer_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(IssuerError::InvalidName {
                what: "issuer id",
                name: issuer_id.into(),
            });
        }
        if card_number_prefix.is_empty()
            || card_number_prefix.len() > 8
            || !card_number_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(IssuerError::InvalidName {
                what: "card number prefix",
                name: card_number_prefix.into(),
            });
        }
        if let Some(days) = retain_attributes_days {
            if days == 0 || days > MAX_RETENTION_DAYS {
                return Err(IssuerError::InvalidValidity(days));
            }
        }
        let config_path = dir.join("issuer.json");
        if config_path.exists() || dir.join("registry.sqlite").exists() {
            return Err(IssuerError::AlreadyExists(dir.to_path_buf()));
        }
        let created_dir = create_private_dir(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(citycard_files::DIR_MODE))
                .map_err(|e| IssuerError::io(dir, e))?;
        }
        let root = root.unwrap_or_else(|| KeyLocation::File(PathBuf::from("root.key.pem")));
        let home = Self {
            dir: dir.to_path_buf(),
            config: IssuerConfig {
                schema_version: SCHEMA_VERSION,
                city: city.into(),
                issuer_id: issuer_id.into(),
                root: root.clone(),
                root_public_key: String::new(),
                card_number_prefix: card_number_prefix.into(),
                card_validity_days: 5 * 365,
                retain_attributes_days,
                registry: registry.clone(),
                groups: one_group(),
            },
        };
        let mut key_made = false;
        let made = (|| -> Result<IssuerConfig, IssuerError> {
            for sub in ["stations", "preparers", "partners", "revocation", "leases"] {
                create_private_dir(&dir.join(sub))?;
            }
            let signer = citycard_keys::generate(&home.resolve(&root), secrets)?;
            key_made = true;
            let mut config = home.config.clone();
            config.root_public_key = hex::encode(crypto::encode_point(&signer.public_key()));
            match &registry {
                None => drop(citycard_registry::Registry::create(
                    dir.join("registry.sqlite"),
                )?),
                Some(server) => drop(server.connect_or_create(dir)?),
            }
            let json = serde_json::to_vec_pretty(&config)
                .map_err(|e| IssuerError::Config(e.to_string()))?;
            write_new(&config_path, &json)?;
            Ok(config)
        })();
        match made {
            Ok(config) => Ok(Self {
                dir: dir.to_path_buf(),
                config,
            }),
            Err(e) => {
                if key_made {
                    let _ = citycard_keys::destroy(&home.resolve(&root), secrets);
                }
                for f in [
                    "registry.sqlite",
                    "registry.sqlite-wal",
                    "registry.sqlite-shm",
                ] {
                    let _ = fs::remove_file(dir.join(f));
                }
                for sub in ["stations", "preparers", "partners", "revocation", "leases"] {
                    let _ = fs::remove_dir(dir.join(sub));
                }
                if created_dir {
                    let _ = fs::remove_dir(dir);
                }
                Err(e)
            }
        }
    }

    /// Replaces `issuer.json` (atomically) with `config`.
    pub(crate) fn save_config(&mut self, config: IssuerConfig) -> Result<(), IssuerError> {
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| IssuerError::Config(e.to_string()))?;
        write_file(&self.dir.join("issuer.json"), &json, Overwrite::Replace)?;
        self.config = config;
        Ok(())
    }

    /// Opens an existing home.
    pub fn open(dir: &Path) -> Result<Self, IssuerError> {
        let path = dir.join("issuer.json");
        let text = fs::read_to_string(&path)
            .map_err(|_| IssuerError::NotAnIssuerHome(dir.to_path_buf()))?;
        let config: IssuerConfig = serde_json::from_str(&text)
            .map_err(|e| IssuerError::Config(format!("{}: {e}", path.display())))?;
        if config.schema_version != SCHEMA_VERSION {
            return Err(IssuerError::Config(format!(
                "{}: unsupported schema_version {}",
                path.display(),
                config.schema_version
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A key location as stored (file paths relative to the home) made
    /// usable from here: a relative file path is taken from the home
    /// directory. Absolute paths (homes made before paths were relative)
    /// are used as they are.
    pub fn resolve(&self, loc: &KeyLocation) -> KeyLocation {
        match loc {
            KeyLocation::File(p) if p.is_relative() => KeyLocation::File(self.dir.join(p)),
            KeyLocation::File(p) => match home_relative(p) {
                // A home made before paths were relative, since moved or
                // copied: its own key file, never the original home's.
                Some(rel) if self.dir.join(&rel).is_file() => KeyLocation::File(self.dir.join(rel)),
                _ => loc.clone(),
            },
            other => other.clone(),
        }
    }

    /// The root public key.
    pub fn root_public_key(&self) -> Result<p256::PublicKey, IssuerError> {
        let bytes = hex::decode(&self.config.root_public_key)
            .map_err(|e| IssuerError::Config(e.to_string()))?;
        Ok(crypto::decode_point(&bytes)?)
    }

    /// The root key's fingerprint (SHA-256 of the compressed key, hex): what
    /// partners compare on paper.
    pub fn root_fingerprint(&self) -> Result<String, IssuerError> {
        Ok(key_fingerprint(&self.root_public_key()?))
    }

    /// Opens the root key (asks for the passphrase or PIN).
    pub fn root_signer(&self, secrets: &dyn SecretSource) -> Result<Box<dyn Signer>, IssuerError> {
        let signer = citycard_keys::open(&self.resolve(&self.config.root), secrets)?;
        if hex::encode(crypto::encode_point(&signer.public_key())) != self.config.root_public_key {
            return Err(IssuerError::Config(
                "the root key does not match issuer.json".into(),
            ));
        }
        Ok(signer)
    }

    /// Opens the registry, and erases attributes whose retention period ended.
    pub fn registry(
        &self,
    ) -> Result<Box<dyn citycard_registry::IssuanceRegistry + Send>, IssuerError> {
        let mut reg = self.open_registry()?;
        let (_, now) = now()?;
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        reg.purge_expired_attributes(now, "retention")?;
        Ok(reg)
    }

    /// Until when (unix seconds) attributes of a card issued at `now` are
    /// kept: `None` (keep none) unless the home has a retention period.
    pub fn retain_until(&self, now_unix: u64) -> Option<i64> {
        self.config.retain_attributes_days.map(|days| {
            i64::try_from(now_unix.saturating_add(u64::from(days) * 86_400)).unwrap_or(i64::MAX)
        })
    }

    /// Checks a new station's or preparer's name (`what`: "station name",
    /// "preparer name") and validity, and that its directory `dir` does not
    /// exist yet.
    fn check_new_key_holder(
        &self,
        name: &str,
        what: &'static str,
        dir: &Path,
        valid_days: u32,
    ) -> Result<(), IssuerError> {
        check_name(name, what)?;
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        if dir.exists() {
            return Err(IssuerError::AlreadyExists(dir.to_path_buf()));
        }
        Ok(())
    }

    /// Generates the key at `key`, then runs `make` with its signer. All or
    /// nothing: if anything fails, the key (file or token object) is
    /// destroyed again and `dir` (the new station's or preparer's directory)
    /// removed, so the same command can be retried.
    fn with_new_key<T>(
        &self,
        dir: &Path,
        key: &KeyLocation,
        secrets: &dyn SecretSource,
        make: impl FnOnce(&dyn Signer) -> Result<T, IssuerError>,
    ) -> Result<T, IssuerError> {
        let location = self.resolve(key);
        let made = match citycard_keys::generate(&location, secrets) {
            Ok(signer) => make(signer.as_ref()).inspect_err(|_| {
                let _ = citycard_keys::destroy(&location, secrets);
            }),
            Err(e) => Err(e.into()),
        };
        if made.is_err() {
            let _ = fs::remove_dir_all(dir);
        }
        made
    }

    fn sign_certificate(
        &self,
        root: &dyn Signer,
        body: CertificateBody,
    ) -> Result<Certificate, IssuerError> {
        let tbs = body.to_be_signed()?;
        let sig = root.sign(&tbs)?;
        let cert = Certificate::assemble(&tbs, &sig)?;
        cert.verify(&self.root_public_key()?)?;
        Ok(cert)
    }

    fn station_dir(&self, name: &str) -> PathBuf {
        self.dir.join("stations").join(name)
    }

    fn preparer_dir(&self, name: &str) -> PathBuf {
        self.dir.join("preparers").join(name)
    }
}

/// The UTC date of a Unix time.
fn date_of(unix: u64) -> Result<Date, IssuerError> {
    let days = i64::try_from(unix / 86_400)
        .map_err(|_| IssuerError::Config("clock out of range".into()))?;
    Ok(Date::from_days_since_epoch(days)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A home made when key paths were absolute, then copied: the copy signs
    /// with its own key files, not the original's.
    #[test]
    fn absolute_key_paths_of_an_older_home_resolve_inside_the_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("copy");
        fs::create_dir_all(copy.join("stations/desk-1")).unwrap();
        fs::write(copy.join("root.key.pem"), "x").unwrap();
        fs::write(copy.join("stations/desk-1/station.key.pem"), "x").unwrap();
        let home = IssuerHome {
            dir: copy.clone(),
            config: IssuerConfig {
                schema_version: SCHEMA_VERSION,
                city: "X".into(),
                issuer_id: "X".into(),
                root: KeyLocation::File("/srv/original/root.key.pem".into()),
                root_public_key: String::new(),
                card_number_prefix: "X".into(),
                card_validity_days: 1,
                retain_attributes_days: None,
                registry: None,
                groups: 1,
            },
        };
        let resolved = |p: &str| home.resolve(&KeyLocation::File(p.into()));
        assert_eq!(
            resolved("/srv/original/root.key.pem"),
            KeyLocation::File(copy.join("root.key.pem"))
        );
        assert_eq!(
            resolved("/srv/original/stations/desk-1/station.key.pem"),
            KeyLocation::File(copy.join("stations/desk-1/station.key.pem"))
        );
        assert_eq!(
            resolved("stations/desk-1/station.key.pem"),
            KeyLocation::File(copy.join("stations/desk-1/station.key.pem"))
        );
        // A key file the copy does not have is left where it is named.
        assert_eq!(
            resolved("/srv/original/stations/desk-2/station.key.pem"),
            KeyLocation::File("/srv/original/stations/desk-2/station.key.pem".into())
        );
    }
}
