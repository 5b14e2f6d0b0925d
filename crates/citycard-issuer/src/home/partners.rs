//! Partners: enrolled with a reader credential, listed, renewed.

use std::fs;
use std::path::PathBuf;

use citycard_keys::{SecretSource, Signer};
use citycard_proto::attr::AttributeSet;
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::date::Date;
use p256::SecretKey;

use super::*;
use crate::error::IssuerError;
use citycard_files::{write_file, Overwrite};

impl IssuerHome {
    pub(super) fn partner_path(&self, name: &str) -> PathBuf {
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
        let request = NewPartner {
            name,
            grants,
            group,
            valid_days,
            today,
        };
        let cert = self.enrol_partner_with(&request, secrets, &mut |_, k| {
            key = Some(k.clone());
            Ok(())
        })?;
        let key = key.ok_or_else(|| IssuerError::Config("no partner key".into()))?;
        Ok((cert, key))
    }

    /// Enrols a partner like [`enrol_partner`](Self::enrol_partner); `deliver`
    /// hands the credential (key included) to the partner, e.g. writes it to
    /// the output file; the home keeps only the certificate.
    ///
    /// All or nothing: if `deliver` fails, the partner is not registered
    /// (its certificate file is removed again), so a retry works.
    pub fn enrol_partner_with(
        &self,
        request: &NewPartner<'_>,
        secrets: &dyn SecretSource,
        deliver: &mut dyn FnMut(&Certificate, &SecretKey) -> Result<(), IssuerError>,
    ) -> Result<Certificate, IssuerError> {
        let NewPartner {
            name,
            grants,
            group,
            valid_days,
            today,
        } = *request;
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
        let grant = PartnerGrant {
            name,
            grants,
            group,
            domain,
            effective: today,
            valid_days,
        };
        self.issue_partner(
            root.as_ref(),
            &grant,
            Overwrite::Refuse,
            "partner-enrolled",
            deliver,
        )
    }

    /// Makes a partner's key and root-signed certificate, hands both to
    /// `deliver`, then stores the certificate and audits `action`.
    fn issue_partner(
        &self,
        root: &dyn Signer,
        grant: &PartnerGrant<'_>,
        overwrite: Overwrite,
        action: &str,
        deliver: &mut dyn FnMut(&Certificate, &SecretKey) -> Result<(), IssuerError>,
    ) -> Result<Certificate, IssuerError> {
        let PartnerGrant {
            name,
            grants,
            group,
            domain,
            effective: today,
            valid_days,
        } = *grant;
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

    pub(super) fn partner_certificate(&self, name: &str) -> Result<Certificate, IssuerError> {
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
        let grant = PartnerGrant {
            name,
            grants: old.body().grants,
            group: old.body().group.unwrap_or(0),
            domain,
            effective: today,
            valid_days,
        };
        self.issue_partner(
            root.as_ref(),
            &grant,
            Overwrite::Replace,
            "partner-renewed",
            deliver,
        )
    }
}

/// What a partner's certificate grants, and for how long.
#[derive(Clone, Copy)]
struct PartnerGrant<'a> {
    name: &'a str,
    grants: AttributeSet,
    group: u8,
    domain: [u8; 16],
    effective: Date,
    valid_days: u32,
}

/// A partner to enrol: its name, what it may read, its linkability group and
/// how long its credential is valid.
#[derive(Clone, Copy, Debug)]
pub struct NewPartner<'a> {
    /// The partner's name (1-16 letters, digits, `-`, `_`).
    pub name: &'a str,
    /// The attributes its certificate grants.
    pub grants: AttributeSet,
    /// Its linkability group (0-7).
    pub group: u8,
    /// Days of validity from `today`.
    pub valid_days: u32,
    /// The first valid day.
    pub today: Date,
}
