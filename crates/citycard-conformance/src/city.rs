//! A throwaway test city, generated fresh for every run: root, station and
//! preparer and reader keys that exist only in memory and die with the run. A
//! card prepared by the kit is anchored to a root nobody holds any more.

use std::time::{SystemTime, UNIX_EPOCH};

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::crypto;
use citycard_proto::date::Date;
use p256::SecretKey;
use rand_core::{OsRng, RngCore};

use crate::ConformanceError;

/// The issuer id of the kit's throwaway cities.
pub const TEST_ISSUER: &str = "CONFORMANCE";
/// The issuer id of the "other city" the kit uses for refusals.
pub const OTHER_ISSUER: &str = "ELSEWHERE";

/// A reader of the throwaway city.
pub struct Reader {
    /// Profile name (`library`, `transit`, `full`).
    pub profile: &'static str,
    /// Static key.
    pub key: SecretKey,
    /// Root-signed certificate.
    pub certificate: Certificate,
    /// What the kit requests with it.
    pub request: AttributeSet,
    /// The linkability group its certificate names.
    pub group: u8,
}

/// How many linkability groups the kit issues (readers are spread over them).
pub const GROUPS: u8 = 2;

/// The throwaway city.
pub struct City {
    /// Issuer id.
    pub issuer: String,
    /// Root key.
    pub root: SecretKey,
    /// Station key.
    pub station: SecretKey,
    /// Station certificate.
    pub station_certificate: Certificate,
    /// Preparer key (signs the preparation certificates of prepared cards).
    pub preparer: SecretKey,
    /// Preparer certificate (role 03, signed by the root).
    pub preparer_certificate: Certificate,
    /// The three reader profiles.
    pub readers: Vec<Reader>,
    /// The date the run takes as today (UTC).
    pub today: Date,
}

/// Today's UTC date from the system clock.
pub fn today() -> Result<Date, ConformanceError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ConformanceError::Clock)?
        .as_secs();
    let days = i64::try_from(secs / 86_400).map_err(|_| ConformanceError::Clock)?;
    Date::from_days_since_epoch(days).map_err(|_| ConformanceError::Clock)
}

/// `date` moved by `days` (negative: earlier).
pub fn shift(date: Date, days: i64) -> Result<Date, ConformanceError> {
    Date::from_days_since_epoch(date.days_since_epoch() + days).map_err(|_| ConformanceError::Clock)
}

/// A fresh random key.
pub fn fresh_key() -> SecretKey {
    crypto::generate(&mut OsRng)
}

/// A reader certificate body for linkability group `group`.
pub fn reader_body(
    issuer: &str,
    holder: &str,
    grants: AttributeSet,
    group: u8,
    effective: Date,
    expiry: Date,
    key: &SecretKey,
) -> CertificateBody {
    let mut domain = [0u8; 16];
    OsRng.fill_bytes(&mut domain);
    CertificateBody {
        issuer: issuer.into(),
        holder: holder.into(),
        role: Role::Reader,
        grants,
        domain: Some(domain),
        group: Some(group),
        effective,
        expiry,
        public_key: key.public_key(),
    }
}

/// A root-signed certificate of `role` (`holder`: `station`, `preparer`) of
/// `issuer` for `key`, valid from 30 days ago for a year.
///
/// # Errors
///
/// Dates out of range, or signing failed.
pub fn office_certificate(
    issuer: &str,
    role: Role,
    holder: &str,
    root: &SecretKey,
    key: &SecretKey,
    today: Date,
) -> Result<Certificate, ConformanceError> {
    Ok(CertificateBody {
        issuer: issuer.into(),
        holder: holder.into(),
        role,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: shift(today, -30)?,
        expiry: shift(today, 365)?,
        public_key: key.public_key(),
    }
    .sign(root)?)
}

impl City {
    /// Generates a city named `issuer` whose certificates are valid around `today`.
    pub fn generate(issuer: &str, today: Date) -> Result<Self, ConformanceError> {
        let root = fresh_key();
        let station = fresh_key();
        let station_certificate =
            office_certificate(issuer, Role::Station, "station", &root, &station, today)?;
        let preparer = fresh_key();
        let preparer_certificate =
            office_certificate(issuer, Role::Preparer, "preparer", &root, &preparer, today)?;
        // (profile, group, grants, request)
        let profiles: [(&'static str, u8, &[AttributeId], &[AttributeId]); 3] = [
            (
                "library",
                0,
                &[AttributeId::PSEUDONYM, AttributeId::RESIDENT],
                &[AttributeId::PSEUDONYM, AttributeId::RESIDENT],
            ),
            (
                "transit",
                1,
                &[AttributeId::AGE_OVER_18, AttributeId::AGE_OVER_65],
                &[AttributeId::AGE_OVER_18, AttributeId::AGE_OVER_65],
            ),
            (
                "full",
                0,
                &[
                    AttributeId::PSEUDONYM,
                    AttributeId::CARD_NUMBER,
                    AttributeId::NAME,
                    AttributeId::BIRTH_DATE,
                    AttributeId::ADDRESS,
                    AttributeId::CARE_OF_ADDRESS,
                    AttributeId::LANGUAGE,
                    AttributeId::RESIDENT,
                    AttributeId::AGE_OVER_18,
                ],
                &[
                    AttributeId::PSEUDONYM,
                    AttributeId::CARD_NUMBER,
                    AttributeId::NAME,
                    AttributeId::BIRTH_DATE,
                    AttributeId::ADDRESS,
                    AttributeId::LANGUAGE,
                    AttributeId::RESIDENT,
                ],
            ),
        ];
        let mut readers = Vec::new();
        for (profile, group, grants, request) in profiles {
            let key = fresh_key();
            let certificate = reader_body(
                issuer,
                profile,
                grants.iter().copied().collect(),
                group,
                shift(today, -10)?,
                shift(today, 180)?,
                &key,
            )
            .sign(&root)?;
            readers.push(Reader {
                profile,
                key,
                certificate,
                request: request.iter().copied().collect(),
                group,
            });
        }
        Ok(Self {
            issuer: issuer.into(),
            root,
            station,
            station_certificate,
            preparer,
            preparer_certificate,
            readers,
            today,
        })
    }

    /// The throwaway resident the kit personalises: invented values, no real person.
    pub fn resident(&self) -> Result<Vec<(AttributeId, Vec<u8>)>, ConformanceError> {
        let birth = Date::new(self.today.year().saturating_sub(40), 6, 15)?;
        Ok(vec![
            (AttributeId::CARD_NUMBER, b"TEST-0000-0001".to_vec()),
            (AttributeId::NAME, "Conformance Test".as_bytes().to_vec()),
            (AttributeId::BIRTH_DATE, birth.to_bytes().to_vec()),
            (AttributeId::ADDRESS, "1 Test Street".as_bytes().to_vec()),
            (AttributeId::LANGUAGE, b"en".to_vec()),
            (AttributeId::RESIDENT, vec![1]),
        ])
    }
}
