//! The city's preparers (SPEC §6.3): added, listed, loaded for preparing cards.

use std::fs;
use std::path::PathBuf;

use citycard_keys::{KeyLocation, SecretSource, Signer};
use citycard_proto::attr::AttributeSet;
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::date::Date;

use super::*;
use crate::error::IssuerError;
use citycard_files::create_private_dir;

impl IssuerHome {
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
        let pdir = self.preparer_dir(name);
        self.check_new_key_holder(name, "preparer name", &pdir, valid_days)?;
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
        self.with_new_key(&pdir, &key, secrets, |signer| {
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
        })
    }

    pub(super) fn preparer_config(&self, name: &str) -> Result<PreparerConfig, IssuerError> {
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
}
