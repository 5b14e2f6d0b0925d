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
//! DIR/revocation/current.crl      the last published revocation list
//! DIR/registry.sqlite             the issuance registry
//! ```

use std::fs;
use std::io::Write;
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
    /// Linkability groups issued on every card (SPEC §5.3, 1–8). The
    /// registry records the group-0 card key only, so this stays 1 until it
    /// records every group's key and revocation id.
    #[serde(default = "one_group")]
    pub groups: u8,
}

fn one_group() -> u8 {
    1
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
}

/// The city's issuer home.
#[derive(Clone, Debug)]
pub struct IssuerHome {
    dir: PathBuf,
    config: IssuerConfig,
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), IssuerError> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let _ = fs::remove_file(&tmp);
        let mut f = opts.open(&tmp).map_err(|e| IssuerError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| IssuerError::io(&tmp, e))?;
        f.sync_all().map_err(|e| IssuerError::io(&tmp, e))?;
    }
    if path.exists() {
        let _ = fs::remove_file(&tmp);
        return Err(IssuerError::AlreadyExists(path.to_path_buf()));
    }
    fs::rename(&tmp, path).map_err(|e| IssuerError::io(path, e))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), IssuerError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(|e| IssuerError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| IssuerError::io(&tmp, e))?;
        f.sync_all().map_err(|e| IssuerError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| IssuerError::io(path, e))
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
    /// token), the configuration and an empty registry.
    pub fn init(
        dir: &Path,
        city: &str,
        issuer_id: &str,
        card_number_prefix: &str,
        root: Option<KeyLocation>,
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
        let config_path = dir.join("issuer.json");
        if config_path.exists() || dir.join("registry.sqlite").exists() {
            return Err(IssuerError::AlreadyExists(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).map_err(|e| IssuerError::io(dir, e))?;
        for sub in ["stations", "preparers", "partners", "revocation"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| IssuerError::io(&dir.join(sub), e))?;
        }
        let root = root.unwrap_or_else(|| KeyLocation::File(dir.join("root.key.pem")));
        let signer = citycard_keys::generate(&root, secrets)?;
        let config = IssuerConfig {
            schema_version: SCHEMA_VERSION,
            city: city.into(),
            issuer_id: issuer_id.into(),
            root,
            root_public_key: hex::encode(crypto::encode_point(&signer.public_key())),
            card_number_prefix: card_number_prefix.into(),
            card_validity_days: 5 * 365,
            groups: one_group(),
        };
        citycard_registry::Registry::create(dir.join("registry.sqlite"))?;
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| IssuerError::Config(e.to_string()))?;
        write_new(&config_path, &json)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
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

    /// The root public key.
    pub fn root_public_key(&self) -> Result<p256::PublicKey, IssuerError> {
        let bytes = hex::decode(&self.config.root_public_key)
            .map_err(|e| IssuerError::Config(e.to_string()))?;
        Ok(crypto::decode_point(&bytes)?)
    }

    /// Opens the root key (asks for the passphrase or PIN).
    pub fn root_signer(&self, secrets: &dyn SecretSource) -> Result<Box<dyn Signer>, IssuerError> {
        let signer = citycard_keys::open(&self.config.root, secrets)?;
        if hex::encode(crypto::encode_point(&signer.public_key())) != self.config.root_public_key {
            return Err(IssuerError::Config(
                "the root key does not match issuer.json".into(),
            ));
        }
        Ok(signer)
    }

    /// Opens the registry.
    pub fn registry(&self) -> Result<citycard_registry::Registry, IssuerError> {
        Ok(citycard_registry::Registry::open(
            self.dir.join("registry.sqlite"),
        )?)
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
        fs::create_dir_all(&pdir).map_err(|e| IssuerError::io(&pdir, e))?;
        let key = key.unwrap_or_else(|| KeyLocation::File(pdir.join("preparer.key.pem")));
        let signer = citycard_keys::generate(&key, secrets)?;
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
            key,
            certificate: hex::encode(certificate.as_bytes()),
        };
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| IssuerError::Config(e.to_string()))?;
        write_new(&pdir.join("preparer.json"), &json)?;
        let mut reg = self.registry()?;
        reg.record_action("issuer", Some(name), "preparer-added")?;
        Ok(certificate)
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
        let signer = citycard_keys::open(&c.key, secrets)?;
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

    /// Adds an issuing station: a station key (file or PKCS#11) certified by
    /// the root for `valid_days` from `today`, and its read-back credential.
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
        fs::create_dir_all(&sdir).map_err(|e| IssuerError::io(&sdir, e))?;
        let key = key.unwrap_or_else(|| KeyLocation::File(sdir.join("station.key.pem")));
        let signer = citycard_keys::generate(&key, secrets)?;
        let expiry = today.add_days(valid_days.saturating_sub(1));
        let certificate = self.sign_certificate(
            root.as_ref(),
            CertificateBody {
                issuer: self.config.issuer_id.clone(),
                holder: name.into(),
                role: Role::Station,
                grants: AttributeSet::EMPTY,
                domain: None,
                group: None,
                effective: today,
                expiry,
                public_key: signer.public_key(),
            },
        )?;
        // The read-back credential: a reader key that may read every stored
        // attribute, used only to check a card right after issuing it.
        let check_key = SecretKey::random(&mut rand_core::OsRng);
        let mut domain = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut domain);
        let check_certificate = self.sign_certificate(
            root.as_ref(),
            CertificateBody {
                issuer: self.config.issuer_id.clone(),
                holder: format!("{}-chk", &name[..name.len().min(12)]),
                role: Role::Reader,
                grants: all_stored(),
                domain: Some(domain),
                group: Some(0),
                effective: today,
                expiry,
                public_key: check_key.public_key(),
            },
        )?;
        let passphrase = secrets.passphrase("the station's read-back key")?;
        let pem = check_key
            .to_pkcs8_encrypted_pem(&mut rand_core::OsRng, passphrase.as_bytes(), LineEnding::LF)
            .map_err(|_| IssuerError::Config("cannot encrypt the read-back key".into()))?;
        write_new(&sdir.join("check.key.pem"), pem.as_bytes())?;
        let config = StationConfig {
            schema_version: SCHEMA_VERSION,
            name: name.into(),
            key,
            certificate: hex::encode(certificate.as_bytes()),
            check_certificate: hex::encode(check_certificate.as_bytes()),
        };
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| IssuerError::Config(e.to_string()))?;
        write_new(&sdir.join("station.json"), &json)?;
        let mut reg = self.registry()?;
        reg.record_action("issuer", Some(name), "station-added")?;
        Ok(certificate)
    }

    fn station_config(&self, name: &str) -> Result<StationConfig, IssuerError> {
        check_name(name, "station name")?;
        let path = self.station_dir(name).join("station.json");
        let text =
            fs::read_to_string(&path).map_err(|_| IssuerError::UnknownStation(name.into()))?;
        serde_json::from_str(&text)
            .map_err(|e| IssuerError::Config(format!("{}: {e}", path.display())))
    }

    /// Every station certificate.
    pub fn station_certificates(&self) -> Result<Vec<Certificate>, IssuerError> {
        let mut out = Vec::new();
        let dir = self.dir.join("stations");
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| IssuerError::io(&dir, e))?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        for name in names {
            let c = self.station_config(&name)?;
            let bytes =
                hex::decode(&c.certificate).map_err(|e| IssuerError::Config(e.to_string()))?;
            out.push(Certificate::decode(&bytes)?);
        }
        Ok(out)
    }

    /// Loads a station for issuing on `today`: refuses a station outside its validity window.
    pub fn station(
        &self,
        name: &str,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<LoadedStation, IssuerError> {
        let c = self.station_config(name)?;
        let decode = |h: &str| -> Result<Certificate, IssuerError> {
            let bytes = hex::decode(h).map_err(|e| IssuerError::Config(e.to_string()))?;
            Ok(Certificate::decode(&bytes)?)
        };
        let certificate = decode(&c.certificate)?;
        let check_certificate = decode(&c.check_certificate)?;
        if !certificate.is_valid_on(today) {
            return Err(IssuerError::StationNotValid {
                name: name.into(),
                effective: certificate.body().effective,
                expiry: certificate.body().expiry,
                today,
            });
        }
        let signer = citycard_keys::open(&c.key, secrets)?;
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
        })
    }

    /// Enrols a partner: a reader key pair and a root-signed certificate
    /// granting exactly `grants`, with a fresh pseudonym domain. Returns the
    /// credential (key included) for the partner; keeps only the certificate.
    #[allow(clippy::too_many_arguments)]
    pub fn enrol_partner(
        &self,
        name: &str,
        grants: AttributeSet,
        group: u8,
        valid_days: u32,
        secrets: &dyn SecretSource,
        today: Date,
    ) -> Result<(Certificate, SecretKey), IssuerError> {
        check_name(name, "partner name")?;
        if valid_days == 0 || valid_days > 3 * 366 {
            return Err(IssuerError::InvalidValidity(valid_days));
        }
        if grants.is_empty() {
            return Err(IssuerError::Config(
                "a partner must be granted at least one attribute".into(),
            ));
        }
        let cert_path = self.dir.join("partners").join(format!("{name}.cert"));
        if cert_path.exists() {
            return Err(IssuerError::AlreadyExists(cert_path));
        }
        let root = self.root_signer(secrets)?;
        let key = SecretKey::random(&mut rand_core::OsRng);
        let mut domain = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut domain);
        let cert = self.sign_certificate(
            root.as_ref(),
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
        write_new(&cert_path, cert.as_bytes())?;
        let mut reg = self.registry()?;
        reg.record_action("issuer", None, "partner-enrolled")?;
        Ok((cert, key))
    }

    /// Signs and stores a new revocation list from the registry.
    pub fn publish_revocations(
        &self,
        next_update_days: u32,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<RevocationList, IssuerError> {
        if next_update_days == 0 || next_update_days > 366 {
            return Err(IssuerError::InvalidValidity(next_update_days));
        }
        let root = self.root_signer(secrets)?;
        let mut reg = self.registry()?;
        // Revoked cards, and spoiled intents that carried a card key (cards
        // lost after the station signed for them).
        let revoked = reg.revocation_ids()?;
        let sequence = reg.next_revocation_sequence()?;
        let body = RevocationListBody {
            issuer: self.config.issuer_id.clone(),
            sequence,
            issued_at: now_unix,
            next_update: now_unix.saturating_add(u64::from(next_update_days) * 86_400),
            revoked,
        };
        let tbs = body.to_be_signed()?;
        let list = RevocationList::assemble(&tbs, &root.sign(&tbs)?)?;
        list.verify(&self.root_public_key()?)?;
        replace_file(
            &self.dir.join("revocation").join("current.crl"),
            list.as_bytes(),
        )?;
        reg.record_action("issuer", None, "revocation-list-published")?;
        Ok(list)
    }

    /// The last published revocation list, if any.
    pub fn current_revocations(&self) -> Result<Option<RevocationList>, IssuerError> {
        let path = self.dir.join("revocation").join("current.crl");
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(RevocationList::decode(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IssuerError::io(&path, e)),
        }
    }

    /// The trust bundle partners load: root key, station certificates and the
    /// current revocation list (published now with `next_update_days` if none exists), signed by the root.
    pub fn export_trust(
        &self,
        secrets: &dyn SecretSource,
        now_unix: u64,
    ) -> Result<TrustBundle, IssuerError> {
        let revocations = match self.current_revocations()? {
            Some(list) => list,
            None => self.publish_revocations(7, secrets, now_unix)?,
        };
        let root = self.root_signer(secrets)?;
        let body = TrustBundleBody {
            issuer: self.config.issuer_id.clone(),
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
