//! Stations, preparers and partners: their keys, certificates and lists.

use std::path::{Path, PathBuf};

use citycard_proto::cert::Certificate;
use citycard_proto::date::Date;
use serde::Serialize;

use crate::home::{PartnerInfo, StationInfo};

use super::*;

/// Whose key a [`KeyCertified`] document names: the document's key for the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// An issuing station (`station add|renew`).
    Station,
    /// A preparer (`preparer add`).
    Preparer,
}

impl KeyRole {
    /// `station` or `preparer`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Station => "station",
            Self::Preparer => "preparer",
        }
    }
}

/// `station add|renew`, `preparer add`: a key certified by the root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyCertified {
    /// First valid day of the certificate.
    pub effective: String,
    /// Last valid day.
    pub expiry: String,
    /// SHA-256 of the certificate (hex).
    pub fingerprint: String,
    /// Always `true`.
    pub ok: bool,
    /// The preparer's name (absent for a station).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preparer: Option<String>,
    /// Always 1.
    pub schema_version: u64,
    /// The station's name (absent for a preparer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
}

impl KeyCertified {
    /// The document of `cert`, certifying the key of `role` `name`.
    pub fn new(role: KeyRole, name: &str, cert: &Certificate) -> Self {
        let b = cert.body();
        let named = |r: KeyRole| (r == role).then(|| name.to_string());
        Self {
            effective: b.effective.to_string(),
            expiry: b.expiry.to_string(),
            fingerprint: hex::encode(cert.fingerprint()),
            ok: true,
            preparer: named(KeyRole::Preparer),
            schema_version: SCHEMA_VERSION,
            station: named(KeyRole::Station),
        }
    }
}

/// `station retire`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StationRetired {
    /// Always `true`.
    pub ok: bool,
    /// The day it was retired.
    pub retired_on: String,
    /// Always 1.
    pub schema_version: u64,
    /// The station.
    pub station: String,
}

impl StationRetired {
    /// Station `name` retired on `day`.
    pub fn new(name: &str, day: Date) -> Self {
        Self {
            ok: true,
            retired_on: day.to_string(),
            schema_version: SCHEMA_VERSION,
            station: name.to_string(),
        }
    }
}

/// One station of [`StationList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StationEntry {
    /// First valid day of its certificate.
    pub effective: String,
    /// Last valid day.
    pub expiry: String,
    /// SHA-256 of the certificate (hex).
    pub fingerprint: String,
    /// Where its key lives (a locator).
    pub key: String,
    /// Name.
    pub name: String,
    /// The day it was retired (`null`: active).
    pub retired_on: Option<String>,
}

impl From<&StationInfo> for StationEntry {
    fn from(s: &StationInfo) -> Self {
        Self {
            effective: s.effective.to_string(),
            expiry: s.expiry.to_string(),
            fingerprint: s.fingerprint.clone(),
            key: s.key.clone(),
            name: s.name.clone(),
            retired_on: s.retired_on.clone(),
        }
    }
}

/// `station list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StationList {
    /// Always `true`.
    pub ok: bool,
    /// Always 1.
    pub schema_version: u64,
    /// The stations.
    pub stations: Vec<StationEntry>,
}

impl StationList {
    /// The document listing `stations`.
    pub fn new(stations: &[StationInfo]) -> Self {
        Self {
            ok: true,
            schema_version: SCHEMA_VERSION,
            stations: stations.iter().map(StationEntry::from).collect(),
        }
    }
}

/// `preparer prepare`: one card prepared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardPrepared {
    /// The preparation batch named in the card's certificate.
    pub batch: String,
    /// Always `true`.
    pub ok: bool,
    /// The preparer.
    pub preparer: String,
    /// Always 1.
    pub schema_version: u64,
}

impl CardPrepared {
    /// A card prepared by `preparer` in `batch`.
    pub fn new(preparer: &str, batch: &str) -> Self {
        Self {
            batch: batch.to_string(),
            ok: true,
            preparer: preparer.to_string(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// `partner enrol|renew`: the credential written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartnerCredential {
    /// First valid day of the certificate.
    pub effective: String,
    /// Last valid day.
    pub expiry: String,
    /// The attributes granted (comma-separated names).
    pub grants: String,
    /// Always `true`.
    pub ok: bool,
    /// The credential file.
    pub out: PathBuf,
    /// The partner.
    pub partner: String,
    /// Always 1.
    pub schema_version: u64,
}

impl PartnerCredential {
    /// Partner `name`'s certificate `cert`, its credential written to `out`.
    pub fn new(name: &str, cert: &Certificate, out: &Path) -> Self {
        let b = cert.body();
        Self {
            effective: b.effective.to_string(),
            expiry: b.expiry.to_string(),
            grants: b.grants.to_string(),
            ok: true,
            out: out.to_path_buf(),
            partner: name.to_string(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// One partner of [`PartnerList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartnerEntry {
    /// First valid day.
    pub effective: String,
    /// Last valid day.
    pub expiry: String,
    /// SHA-256 of the certificate (hex).
    pub fingerprint: String,
    /// The attributes granted (comma-separated names).
    pub grants: String,
    /// Name.
    pub name: String,
}

impl From<&PartnerInfo> for PartnerEntry {
    fn from(p: &PartnerInfo) -> Self {
        Self {
            effective: p.effective.to_string(),
            expiry: p.expiry.to_string(),
            fingerprint: p.fingerprint.clone(),
            grants: p.grants.to_string(),
            name: p.name.clone(),
        }
    }
}

/// `partner list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartnerList {
    /// Always `true`.
    pub ok: bool,
    /// The partners.
    pub partners: Vec<PartnerEntry>,
    /// Always 1.
    pub schema_version: u64,
}

impl PartnerList {
    /// The document listing `partners`.
    pub fn new(partners: &[PartnerInfo]) -> Self {
        Self {
            ok: true,
            partners: partners.iter().map(PartnerEntry::from).collect(),
            schema_version: SCHEMA_VERSION,
        }
    }
}
