//! The issuer home: the city's directory with its configuration, root key
//! location, station and partner certificates, and the issuance registry.
//!
//! ```text
//! DIR/issuer.json                 configuration (city, issuer id, root key location, card numbering)
//! DIR/root.key.pem                root key, encrypted PKCS#8 (unless it lives in a PKCS#11 token)
//! DIR/stations/NAME/station.json  station certificate and key location
//! DIR/stations/NAME/station.key.pem   station key (file keys only)
//! DIR/stations/NAME/check.key.pem     the station's read-back reader key (encrypted PKCS#8)
//! DIR/partners/NAME.cert          certificates issued to partners (public; the key went to the partner)
//! DIR/revocation/current.crl      the last published revocation list (group 0;
//!                                 group g: current-group-g.crl)
//! DIR/registry.sqlite             the issuance registry
//! DIR/leases/ID.lock              one per issuing process at work (see `desk`)
//! ```
//!
//! Every file is created 0600 and every directory 0700 (see [`crate::files`]).
//! Key paths in `issuer.json` and `station.json` are relative to DIR, so a
//! home can be moved or restored elsewhere (`citycard issuer backup`).

use std::fs;
use std::path::{Path, PathBuf};

use citycard_keys::{KeyLocation, SecretSource, Signer};
use citycard_proto::attr::{AttributeKind, AttributeSet, ALL};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::revocation::{
    RevocationList, RevocationListBody, TrustBundle, TrustBundleBody,
};
use citycard_proto::{crypto, Date};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use serde::{Deserialize, Serialize};

use crate::error::IssuerError;
use crate::files::{create_private_dir, write_file, Overwrite};

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
    /// The station's read-back reader certificate (hex).
    pub check_certificate: String,
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
    /// The read-back reader key.
    pub check_key: SecretKey,
    /// The read-back reader certificate.
    pub check_certificate: Certificate,
    /// The desk lease this process holds while it issues with the station
    /// (see [`crate::desk`]); the intents it begins name it, so no other
    /// desk reconciles them while it works. `None`: intents without owner.
    pub desk_lease: Option<String>,
}

/// The city's issuer home.
#[derive(Clone, Debug)]
pub struct IssuerHome {
    dir: PathBuf,
    config: IssuerConfig,
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), IssuerError> {
    write_file(path, bytes, Overwrite::Refuse).map(|_| ())
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

/// Every stored attribute (what the read-back credential may read).
pub fn all_stored() -> AttributeSet {
    ALL.iter()
        .copied()
        .filter(|id| id.kind() == AttributeKind::Stored)
        .collect()
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
            city,
            issuer_id,
            card_number_prefix,
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
    #[allow(clippy::too_many_arguments)]
    pub fn init_with_registry(
        dir: &Path,
        city: &str,
        issuer_id: &str,
        card_number_prefix: &str,
        root: Option<KeyLocation>,
        retain_attributes_days: Option<u32>,
        registry: Option<crate::registry::RegistryServer>,
        secrets: &dyn SecretSource,
    ) -> Result<Self, IssuerError> {
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
            fs::set_permissions(dir, fs::Permissions::from_mode(crate::files::DIR_MODE))
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

    /// Adds a preparer (SPEC §6.3): a preparer key (file or PKCS#11)
    /// certified by the root (role 03) for `valid_days` from `today`.
    ///
    /// All or nothing: on any failure the preparer directory and the key
    /// made by this call are removed.
    pub fn add_preparer(
        &self,
        name: &str,
        valid_days: u32,
        key: Option<KeyLocation>,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<Certificate, IssuerError> {
        check_name(name, "preparer name")?;
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        let pdir = self.preparer_dir(name);
        if pdir.exists() {
            return Err(IssuerError::AlreadyExists(pdir));
        }
        let root = self.root_signer(secrets)?;
        create_private_dir(&self.dir.join("preparers"))?;
        create_private_dir(&pdir)?;
        let key = key.unwrap_or_else(|| {
            KeyLocation::File(
                PathBuf::from("preparers")
                    .join(name)
                    .join("preparer.key.pem"),
            )
        });
        let mut key_made = false;
        let made = (|| -> Result<Certificate, IssuerError> {
            let signer = citycard_keys::generate(&self.resolve(&key), secrets)?;
            key_made = true;
            let certificate = self.sign_certificate(
                root.as_ref(),
                CertificateBody {
                    issuer: self.config.issuer_id.clone(),
                    holder: name.into(),
                    role: Role::Preparer,
                    grants: AttributeSet::EMPTY,
                    domain: None,
                    group: None,
                    effective: today,
                    expiry: today.add_days(valid_days.saturating_sub(1)),
                    public_key: signer.public_key(),
                },
            )?;
            let config = PreparerConfig {
                schema_version: SCHEMA_VERSION,
                name: name.into(),
                key: key.clone(),
                certificate: hex::encode(certificate.as_bytes()),
            };
            let json = serde_json::to_vec_pretty(&config)
                .map_err(|e| IssuerError::Config(e.to_string()))?;
            let mut reg = self.registry()?;
            reg.record_action("issuer", Some(name), "preparer-added")?;
            write_new(&pdir.join("preparer.json"), &json)?;
            Ok(certificate)
        })();
        if made.is_err() {
            if key_made {
                let _ = citycard_keys::destroy(&self.resolve(&key), secrets);
            }
            let _ = fs::remove_dir_all(&pdir);
        }
        made
    }

    fn preparer_config(&self, name: &str) -> Result<PreparerConfig, IssuerError> {
        check_name(name, "preparer name")?;
        let path = self.preparer_dir(name).join("preparer.json");
        let text = fs::read_to_string(&path)
            .map_err(|_| IssuerError::Config(format!("unknown preparer {name}")))?;
        serde_json::from_str(&text)
            .map_err(|e| IssuerError::Config(format!("{}: {e}", path.display())))
    }

    /// Every preparer certificate (what stations check cards against).
    pub fn preparer_certificates(&self) -> Result<Vec<Certificate>, IssuerError> {
        let dir = self.dir.join("preparers");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| IssuerError::io(&dir, e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let c = self.preparer_config(&name)?;
            let bytes =
                hex::decode(&c.certificate).map_err(|e| IssuerError::Config(e.to_string()))?;
            out.push(Certificate::decode(&bytes)?);
        }
        Ok(out)
    }

    /// Loads a preparer (opens its key).
    pub fn preparer(
        &self,
        name: &str,
        secrets: &dyn SecretSource,
    ) -> Result<LoadedPreparer, IssuerError> {
        let c = self.preparer_config(name)?;
        let bytes = hex::decode(&c.certificate).map_err(|e| IssuerError::Config(e.to_string()))?;
        let certificate = Certificate::decode(&bytes)?;
        let signer = citycard_keys::open(&self.resolve(&c.key), secrets)?;
        if signer.public_key() != certificate.body().public_key {
            return Err(IssuerError::Config(format!(
                "preparer {name}: key does not match its certificate"
            )));
        }
        Ok(LoadedPreparer {
            name: name.into(),
            signer,
            certificate,
        })
    }

    /// The read-back credential of a station: a reader certificate that may
    /// read every stored attribute, used only to check a card right after
    /// issuing it.
    fn check_certificate(
        &self,
        root: &dyn Signer,
        name: &str,
        key: p256::PublicKey,
        domain: [u8; 16],
        today: Date,
        expiry: Date,
    ) -> Result<Certificate, IssuerError> {
        self.sign_certificate(
            root,
            CertificateBody {
                issuer: self.config.issuer_id.clone(),
                holder: format!("{}-chk", &name[..name.len().min(12)]),
                role: Role::Reader,
                grants: all_stored(),
                domain: Some(domain),
                group: Some(0),
                effective: today,
                expiry,
                public_key: key,
            },
        )
    }

    fn station_certificate(
        &self,
        root: &dyn Signer,
        name: &str,
        key: p256::PublicKey,
        today: Date,
        expiry: Date,
    ) -> Result<Certificate, IssuerError> {
        self.sign_certificate(
            root,
            CertificateBody {
                issuer: self.config.issuer_id.clone(),
                holder: name.into(),
                role: Role::Station,
                grants: AttributeSet::EMPTY,
                domain: None,
                group: None,
                effective: today,
                expiry,
                public_key: key,
            },
        )
    }

    /// Adds an issuing station: a station key (file or PKCS#11) certified by
    /// the root for `valid_days` from `today`, and its read-back credential.
    ///
    /// All or nothing: on any failure the station directory and the key
    /// (file or token object) made by this call are removed, so a retry
    /// with the same name works.
    pub fn add_station(
        &self,
        name: &str,
        valid_days: u32,
        key: Option<KeyLocation>,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<Certificate, IssuerError> {
        check_name(name, "station name")?;
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        let sdir = self.station_dir(name);
        if sdir.exists() {
            return Err(IssuerError::AlreadyExists(sdir));
        }
        let root = self.root_signer(secrets)?;
        let passphrase = secrets.passphrase("the station's read-back key")?;
        if passphrase.chars().count() < citycard_keys::MIN_PASSPHRASE_LEN {
            return Err(citycard_keys::KeyError::WeakPassphrase {
                min: citycard_keys::MIN_PASSPHRASE_LEN,
            }
            .into());
        }
        create_private_dir(&sdir)?;
        let key = key.unwrap_or_else(|| {
            KeyLocation::File(PathBuf::from("stations").join(name).join("station.key.pem"))
        });
        let mut key_made = false;
        let made = (|| -> Result<Certificate, IssuerError> {
            let signer = citycard_keys::generate(&self.resolve(&key), secrets)?;
            key_made = true;
            let expiry = today.add_days(valid_days.saturating_sub(1));
            let certificate =
                self.station_certificate(root.as_ref(), name, signer.public_key(), today, expiry)?;
            let check_key = SecretKey::random(&mut rand_core::OsRng);
            let mut domain = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut domain);
            let check_certificate = self.check_certificate(
                root.as_ref(),
                name,
                check_key.public_key(),
                domain,
                today,
                expiry,
            )?;
            let pem = check_key
                .to_pkcs8_encrypted_pem(
                    &mut rand_core::OsRng,
                    passphrase.as_bytes(),
                    LineEnding::LF,
                )
                .map_err(|_| IssuerError::Config("cannot encrypt the read-back key".into()))?;
            write_new(&sdir.join("check.key.pem"), pem.as_bytes())?;
            let config = StationConfig {
                schema_version: SCHEMA_VERSION,
                name: name.into(),
                key: key.clone(),
                certificate: hex::encode(certificate.as_bytes()),
                check_certificate: hex::encode(check_certificate.as_bytes()),
                retired_on: None,
            };
            let json = serde_json::to_vec_pretty(&config)
                .map_err(|e| IssuerError::Config(e.to_string()))?;
            // The audit entry goes first: if the registry is unavailable,
            // no station exists without its entry.
            let mut reg = self.registry()?;
            reg.record_action("issuer", Some(name), "station-added")?;
            write_new(&sdir.join("station.json"), &json)?;
            Ok(certificate)
        })();
        if made.is_err() {
            if key_made {
                let _ = citycard_keys::destroy(&self.resolve(&key), secrets);
            }
            let _ = fs::remove_dir_all(&sdir);
        }
        made
    }

    fn station_config(&self, name: &str) -> Result<StationConfig, IssuerError> {
        check_name(name, "station name")?;
        let path = self.station_dir(name).join("station.json");
        let text =
            fs::read_to_string(&path).map_err(|_| IssuerError::UnknownStation(name.into()))?;
        serde_json::from_str(&text)
            .map_err(|e| IssuerError::Config(format!("{}: {e}", path.display())))
    }

    fn station_names(&self) -> Result<Vec<String>, IssuerError> {
        let dir = self.dir.join("stations");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| IssuerError::io(&dir, e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|n| self.station_dir(n).join("station.json").is_file())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every station certificate (retired stations included: the cards they
    /// issued keep verifying until the certificate expires).
    pub fn station_certificates(&self) -> Result<Vec<Certificate>, IssuerError> {
        let mut out = Vec::new();
        for name in self.station_names()? {
            let c = self.station_config(&name)?;
            out.push(decode_certificate(&c.certificate)?);
        }
        Ok(out)
    }

    /// Every station, by name.
    pub fn stations(&self) -> Result<Vec<StationInfo>, IssuerError> {
        let mut out = Vec::new();
        for name in self.station_names()? {
            let c = self.station_config(&name)?;
            let cert = decode_certificate(&c.certificate)?;
            out.push(StationInfo {
                name,
                effective: cert.body().effective,
                expiry: cert.body().expiry,
                key: c.key.locator(),
                fingerprint: hex::encode(cert.fingerprint()),
                retired_on: c.retired_on,
            });
        }
        Ok(out)
    }

    /// Renews a station's certificate (and its read-back certificate) for
    /// `valid_days` from `today`, for the same key. The station's file is
    /// replaced in one atomic step; the old certificate simply expires.
    pub fn renew_station(
        &self,
        name: &str,
        valid_days: u32,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<Certificate, IssuerError> {
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        let mut c = self.station_config(name)?;
        if c.retired_on.is_some() {
            return Err(IssuerError::StationRetired(name.into()));
        }
        let old = decode_certificate(&c.certificate)?;
        let old_check = decode_certificate(&c.check_certificate)?;
        let root = self.root_signer(secrets)?;
        let expiry = today.add_days(valid_days.saturating_sub(1));
        let certificate =
            self.station_certificate(root.as_ref(), name, old.body().public_key, today, expiry)?;
        let check_certificate = self.check_certificate(
            root.as_ref(),
            name,
            old_check.body().public_key,
            old_check.body().domain.unwrap_or_default(),
            today,
            expiry,
        )?;
        c.certificate = hex::encode(certificate.as_bytes());
        c.check_certificate = hex::encode(check_certificate.as_bytes());
        let json = serde_json::to_vec_pretty(&c).map_err(|e| IssuerError::Config(e.to_string()))?;
        let mut reg = self.registry()?;
        reg.record_action("issuer", Some(name), "station-renewed")?;
        write_file(
            &self.station_dir(name).join("station.json"),
            &json,
            Overwrite::Replace,
        )?;
        Ok(certificate)
    }

    /// Retires a station: it may no longer sign, and its key is destroyed
    /// (the key file removed, or the token object destroyed). Its
    /// certificate stays in the trust bundle until it expires, so the cards
    /// it issued keep verifying. Refused while one of its intents is open.
    pub fn retire_station(
        &self,
        name: &str,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<(), IssuerError> {
        let mut c = self.station_config(name)?;
        if c.retired_on.is_some() {
            return Err(IssuerError::StationRetired(name.into()));
        }
        let mut reg = self.registry()?;
        if let Some(open) = reg.open_intents()?.into_iter().find(|i| i.station == name) {
            return Err(IssuerError::Registry(
                citycard_registry::RegistryError::ResidentHasOpenIntent {
                    card_number: open.card_number,
                },
            ));
        }
        c.retired_on = Some(today.to_string());
        let json = serde_json::to_vec_pretty(&c).map_err(|e| IssuerError::Config(e.to_string()))?;
        reg.record_action("issuer", Some(name), "station-retired")?;
        write_file(
            &self.station_dir(name).join("station.json"),
            &json,
            Overwrite::Replace,
        )?;
        citycard_keys::destroy(&self.resolve(&c.key), secrets)?;
        let _ = fs::remove_file(self.station_dir(name).join("check.key.pem"));
        Ok(())
    }

    /// Loads a station for issuing on `today`: refuses a retired station and
    /// one outside its validity window.
    pub fn station(
        &self,
        name: &str,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<LoadedStation, IssuerError> {
        let c = self.station_config(name)?;
        if c.retired_on.is_some() {
            return Err(IssuerError::StationRetired(name.into()));
        }
        let certificate = decode_certificate(&c.certificate)?;
        let check_certificate = decode_certificate(&c.check_certificate)?;
        if !certificate.is_valid_on(today) {
            return Err(IssuerError::StationNotValid {
                name: name.into(),
                effective: certificate.body().effective,
                expiry: certificate.body().expiry,
                today,
            });
        }
        let signer = citycard_keys::open(&self.resolve(&c.key), secrets)?;
        if signer.public_key() != certificate.body().public_key {
            return Err(IssuerError::Config(format!(
                "station {name}: key does not match its certificate"
            )));
        }
        let passphrase = secrets.passphrase("the station's read-back key")?;
        let pem_path = self.station_dir(name).join("check.key.pem");
        let pem = fs::read_to_string(&pem_path).map_err(|e| IssuerError::io(&pem_path, e))?;
        let check_key = SecretKey::from_pkcs8_encrypted_pem(&pem, passphrase.as_bytes())
            .map_err(|_| IssuerError::Key(citycard_keys::KeyError::WrongPassphrase))?;
        if check_key.public_key() != check_certificate.body().public_key {
            return Err(IssuerError::Config(format!(
                "station {name}: read-back key does not match"
            )));
        }
        Ok(LoadedStation {
            name: name.into(),
            signer,
            certificate,
            check_key,
            check_certificate,
            desk_lease: None,
        })
    }

    fn partner_path(&self, name: &str) -> PathBuf {
        self.dir.join("partners").join(format!("{name}.cert"))
    }

    /// Enrols a partner: a reader key pair and a root-signed certificate
    /// granting exactly `grants`, with a fresh pseudonym domain. Returns the
    /// credential (key included) for the partner; keeps only the certificate.
    pub fn enrol_partner(
        &self,
        name: &str,
        grants: AttributeSet,
        group: u8,
        valid_days: u32,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<(Certificate, SecretKey), IssuerError> {
        let mut key = None;
        let cert = self.enrol_partner_with(
            name,
            grants,
            group,
            valid_days,
            secrets,
            today,
            &mut |_, k| {
                key = Some(k.clone());
                Ok(())
            },
        )?;
        let key = key.ok_or_else(|| IssuerError::Config("no partner key".into()))?;
        Ok((cert, key))
    }

    /// Enrols a partner like [`enrol_partner`](Self::enrol_partner); `deliver`
    /// hands the credential (key included) to the partner, e.g. writes it to
    /// the output file; the home keeps only the certificate.
    ///
    /// All or nothing: if `deliver` fails, the partner is not registered
    /// (its certificate file is removed again), so a retry works.
    #[allow(clippy::too_many_arguments)]
    pub fn enrol_partner_with(
        &self,
        name: &str,
        grants: AttributeSet,
        group: u8,
        valid_days: u32,
        secrets: &dyn SecretSource,
        today: Date,
        deliver: &mut dyn FnMut(&Certificate, &SecretKey) -> Result<(), IssuerError>,
    ) -> Result<Certificate, IssuerError> {
        check_name(name, "partner name")?;
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        if grants.is_empty() {
            return Err(IssuerError::Config(
                "a partner must be granted at least one attribute".into(),
            ));
        }
        let cert_path = self.partner_path(name);
        if cert_path.exists() {
            return Err(IssuerError::AlreadyExists(cert_path));
        }
        let root = self.root_signer(secrets)?;
        let mut domain = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut domain);
        self.issue_partner(
            root.as_ref(),
            name,
            grants,
            group,
            domain,
            valid_days,
            today,
            Overwrite::Refuse,
            "partner-enrolled",
            deliver,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_partner(
        &self,
        root: &dyn Signer,
        name: &str,
        grants: AttributeSet,
        group: u8,
        domain: [u8; 16],
        valid_days: u32,
        today: Date,
        overwrite: Overwrite,
        action: &str,
        deliver: &mut dyn FnMut(&Certificate, &SecretKey) -> Result<(), IssuerError>,
    ) -> Result<Certificate, IssuerError> {
        let key = SecretKey::random(&mut rand_core::OsRng);
        let cert = self.sign_certificate(
            root,
            CertificateBody {
                issuer: self.config.issuer_id.clone(),
                holder: name.into(),
                role: Role::Reader,
                grants,
                domain: Some(domain),
                group: Some(group),
                effective: today,
                expiry: today.add_days(valid_days.saturating_sub(1)),
                public_key: key.public_key(),
            },
        )?;
        let mut reg = self.registry()?;
        deliver(&cert, &key)?;
        // Delivered: now record it. A failure here leaves the partner with
        // a credential the home does not list; the retry replaces neither.
        write_file(&self.partner_path(name), cert.as_bytes(), overwrite)?;
        reg.record_action("issuer", None, action)?;
        Ok(cert)
    }

    fn partner_certificate(&self, name: &str) -> Result<Certificate, IssuerError> {
        check_name(name, "partner name")?;
        let path = self.partner_path(name);
        let bytes = fs::read(&path).map_err(|_| IssuerError::UnknownPartner(name.into()))?;
        Ok(Certificate::decode(&bytes)?)
    }

    /// Every enrolled partner, by name.
    pub fn partners(&self) -> Result<Vec<PartnerInfo>, IssuerError> {
        let dir = self.dir.join("partners");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| IssuerError::io(&dir, e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter_map(|n| n.strip_suffix(".cert").map(str::to_string))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let cert = self.partner_certificate(&name)?;
                Ok(PartnerInfo {
                    grants: cert.body().grants,
                    effective: cert.body().effective,
                    expiry: cert.body().expiry,
                    fingerprint: hex::encode(cert.fingerprint()),
                    name,
                })
            })
            .collect()
    }

    /// Renews a partner: a new key pair and certificate with the same grants
    /// and the **same pseudonym domain** (so its pseudonyms do not change),
    /// valid `valid_days` from `today`, handed over by `deliver`. The old
    /// credential stays valid until it expires.
    pub fn renew_partner(
        &self,
        name: &str,
        valid_days: u32,
        secrets: &dyn SecretSource,
        today: Date,
        deliver: &mut dyn FnMut(&Certificate, &SecretKey) -> Result<(), IssuerError>,
    ) -> Result<Certificate, IssuerError> {
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        let old = self.partner_certificate(name)?;
        let domain = old
            .body()
            .domain
            .ok_or_else(|| IssuerError::Config(format!("partner {name}: no pseudonym domain")))?;
        let root = self.root_signer(secrets)?;
        self.issue_partner(
            root.as_ref(),
            name,
            old.body().grants,
            old.body().group.unwrap_or(0),
            domain,
            valid_days,
            today,
            Overwrite::Replace,
            "partner-renewed",
            deliver,
        )
    }

    /// Signs and stores a new revocation list of linkability group 0 from
    /// the registry, as of `now_unix` ([`Self::publish_revocations_for`]).
    pub fn publish_revocations(
        &self,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        self.publish_revocations_for(0, next_update_days, secrets, now_unix)
    }

    /// Sets the number of linkability groups issued on every card from now
    /// on (1 to 8, SPEC §5.3).
    pub fn set_groups(&mut self, groups: u8) -> Result<(), IssuerError> {
        if groups == 0 || usize::from(groups) > citycard_registry::MAX_GROUP_KEYS {
            return Err(IssuerError::Config(format!(
                "groups = {groups}: 1 to {} linkability groups",
                citycard_registry::MAX_GROUP_KEYS
            )));
        }
        let mut config = self.config.clone();
        config.groups = groups;
        self.save_config(config)
    }

    /// Signs and stores a new revocation list of linkability group `group`
    /// from the registry, as of `now_unix`: each card's revocation id of that
    /// group, for
    /// revoked cards and spoiled intents that carried a card key, pruned of
    /// cards that can no longer be valid
    /// ([`Registry::revocation_ids_for`](citycard_registry::Registry::revocation_ids_for)).
    pub fn publish_revocations_for(
        &self,
        group: u8,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        if next_update_days == 0 || next_update_days > 366 {
            return Err(IssuerError::InvalidValidity(next_update_days));
        }
        check_group(group)?;
        let root = self.root_signer(secrets)?;
        self.publish_revocations_with(root.as_ref(), group, next_update_days, now_unix)
    }

    fn publish_revocations_with(
        &self,
        root: &dyn Signer,
        group: u8,
        next_update_days: u32,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        let mut reg = self.registry()?;
        let revoked = reg.revocation_ids_for(group, date_of(now_unix)?)?;
        let sequence = reg.next_revocation_sequence()?;
        let body = RevocationListBody {
            issuer: self.config.issuer_id.clone(),
            group,
            sequence,
            issued_at: now_unix,
            next_update: now_unix.saturating_add(u64::from(next_update_days) * 86_400),
            revoked,
        };
        let tbs = body.to_be_signed()?;
        let list = RevocationList::assemble(&tbs, &root.sign(&tbs)?)?;
        list.verify(&self.root_public_key()?)?;
        write_file(
            &self.revocation_list_path(group),
            list.as_bytes(),
            Overwrite::Replace,
        )?;
        reg.record_action("issuer", None, "revocation-list-published")?;
        Ok(list)
    }

    /// Where the last revocation list of `group` is kept.
    fn revocation_list_path(&self, group: u8) -> PathBuf {
        let name = match group {
            0 => "current.crl".to_string(),
            g => format!("current-group-{g}.crl"),
        };
        self.dir.join("revocation").join(name)
    }

    /// The last published revocation list of group 0, if any.
    pub fn current_revocations(&self) -> Result<Option<RevocationList>, IssuerError> {
        self.current_revocations_for(0)
    }

    /// The last published revocation list of `group`, if any.
    pub fn current_revocations_for(
        &self,
        group: u8,
    ) -> Result<Option<RevocationList>, IssuerError> {
        check_group(group)?;
        let path = self.revocation_list_path(group);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(RevocationList::decode(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IssuerError::io(&path, e)),
        }
    }

    /// [`Self::publish_for`] group 0.
    pub fn publish(
        &self,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        self.publish_for(0, next_update_days, secrets, now_unix)
    }

    /// The one step that tells a group's partners about revocations: signs
    /// a new revocation list of `group` ([`Self::publish_revocations_for`])
    /// and the trust bundle that carries it — the file the partners of that
    /// group (their credential names it) load.
    pub fn publish_for(
        &self,
        group: u8,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        if next_update_days == 0 || next_update_days > 366 {
            return Err(IssuerError::InvalidValidity(next_update_days));
        }
        check_group(group)?;
        let root = self.root_signer(secrets)?;
        let list =
            self.publish_revocations_with(root.as_ref(), group, next_update_days, now_unix)?;
        self.bundle_with(root.as_ref(), list, now_unix)
    }

    /// The trust bundle partners load: root key, station certificates and the
    /// last published revocation list (published now, for 7 days, if none
    /// exists), signed by the root.
    ///
    /// # Errors
    ///
    /// [`IssuerError::RevocationListOutdated`] when a card was revoked (or an
    /// intent with a key spoiled) after that list: use [`Self::publish`].
    pub fn export_trust(
        &self,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        self.export_trust_for(0, secrets, now_unix)
    }

    /// [`Self::export_trust`] for the partners of linkability group `group`:
    /// the bundle carries that group's revocation list.
    pub fn export_trust_for(
        &self,
        group: u8,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        let root = self.root_signer(secrets)?;
        let revocations = match self.current_revocations_for(group)? {
            Some(list) => {
                let wanted = self
                    .registry()?
                    .revocation_ids_for(list.body().group, date_of(now_unix)?)?;
                let missing = wanted.iter().filter(|id| !list.is_revoked(id)).count();
                if missing > 0 {
                    return Err(IssuerError::RevocationListOutdated {
                        sequence: list.body().sequence,
                        missing,
                    });
                }
                list
            }
            None => self.publish_revocations_with(root.as_ref(), group, 7, now_unix)?,
        };
        self.bundle_with(root.as_ref(), revocations, now_unix)
    }

    fn bundle_with(
        &self,
        root: &dyn Signer,
        revocations: RevocationList,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        let body = TrustBundleBody {
            issuer: self.config.issuer_id.clone(),
            group: revocations.body().group,
            root: self.root_public_key()?,
            issued_at: now_unix,
            stations: self.station_certificates()?,
            revocations,
        };
        let tbs = body.to_be_signed()?;
        let bundle = TrustBundle::assemble(&tbs, &root.sign(&tbs)?)?;
        bundle.verify()?;
        Ok(bundle)
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
