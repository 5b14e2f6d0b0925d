//! Issuing stations: added, listed, renewed, retired, loaded for issuing.

use std::fs;
use std::path::PathBuf;

use citycard_keys::{KeyLocation, SecretSource, Signer};
use citycard_proto::attr::AttributeSet;
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::date::Date;

use super::*;
use crate::error::IssuerError;
use citycard_files::{create_private_dir, write_file, Overwrite};

impl IssuerHome {
    pub(super) fn station_certificate(
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
    /// the root for `valid_days` from `today`.
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
        let sdir = self.station_dir(name);
        self.check_new_key_holder(name, "station name", &sdir, valid_days)?;
        let root = self.root_signer(secrets)?;
        create_private_dir(&sdir)?;
        let key = key.unwrap_or_else(|| {
            KeyLocation::File(PathBuf::from("stations").join(name).join("station.key.pem"))
        });
        self.with_new_key(&sdir, &key, secrets, |signer| {
            let expiry = today.add_days(valid_days.saturating_sub(1));
            let certificate =
                self.station_certificate(root.as_ref(), name, signer.public_key(), today, expiry)?;
            let config = StationConfig {
                schema_version: SCHEMA_VERSION,
                name: name.into(),
                key: key.clone(),
                certificate: hex::encode(certificate.as_bytes()),
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
        })
    }

    pub(super) fn station_config(&self, name: &str) -> Result<StationConfig, IssuerError> {
        check_name(name, "station name")?;
        let path = self.station_dir(name).join("station.json");
        let text =
            fs::read_to_string(&path).map_err(|_| IssuerError::UnknownStation(name.into()))?;
        serde_json::from_str(&text)
            .map_err(|e| IssuerError::Config(format!("{}: {e}", path.display())))
    }

    pub(super) fn station_names(&self) -> Result<Vec<String>, IssuerError> {
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

    /// Renews a station's certificate for
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
        let root = self.root_signer(secrets)?;
        let expiry = today.add_days(valid_days.saturating_sub(1));
        let certificate =
            self.station_certificate(root.as_ref(), name, old.body().public_key, today, expiry)?;
        c.certificate = hex::encode(certificate.as_bytes());
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
        // Homes made before protocol version 2 also hold a read-back key.
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
        Ok(LoadedStation {
            name: name.into(),
            signer,
            certificate,
            desk_lease: None,
        })
    }
}
