//! Fixed keys and certificates for tests and test vectors. Never use in production.

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::crypto;
use citycard_proto::date::Date;
use citycard_proto::revocation::{
    RevocationId, RevocationList, RevocationListBody, TrustBundle, TrustBundleBody,
};
use p256::SecretKey;

/// The issuer identifier used in tests.
pub const ISSUER: &str = "LIEGE";
/// The date test readers claim as "today".
pub const TODAY: (u16, u8, u8) = (2026, 11, 26);

/// A private key derived from a label: SHA-256(label) as a scalar.
pub fn test_key(label: &str) -> SecretKey {
    let mut seed = crypto::sha256(&[b"citycard test key ", label.as_bytes()]);
    loop {
        if let Ok(k) = SecretKey::from_slice(&seed) {
            return k;
        }
        seed = crypto::sha256(&[&seed]);
    }
}

/// Hex of a private key (for vector files).
pub fn key_hex(k: &SecretKey) -> String {
    hex::encode(k.to_bytes())
}

/// A date from a tuple (test constants only).
pub fn date((y, m, d): (u16, u8, u8)) -> Date {
    Date::new(y, m, d).expect("test date constant is a valid date")
}

/// A partner reader: its key and root-signed certificate.
pub struct TestReader {
    /// Profile name.
    pub name: &'static str,
    /// Its linkability group.
    pub group: u8,
    /// The reader's static private key.
    pub key: SecretKey,
    /// Its certificate.
    pub certificate: Certificate,
}

/// The whole fixed key set of the test city.
pub struct TestCity {
    /// Root key.
    pub root: SecretKey,
    /// Issuing-station key.
    pub station: SecretKey,
    /// Station certificate.
    pub station_certificate: Certificate,
    /// Preparer key.
    pub preparer: SecretKey,
    /// Preparer certificate (role 03, signed by the root).
    pub preparer_certificate: Certificate,
}

/// The preparation date of test cards.
pub const PREPARATION_DATE: (u16, u8, u8) = (2026, 11, 2);
/// The issue date of test cards (valid-from is the first of its month).
pub const ISSUE_DATE: (u16, u8, u8) = (2026, 11, 20);
/// The last valid day of test cards.
pub const VALID_TO: (u16, u8, u8) = (2031, 10, 31);

/// Builds the test city (root "LIEGE", one station and one preparer valid
/// 2026-01-01..2027-12-31).
pub fn city() -> TestCity {
    city_named(ISSUER, "root")
}

/// Another city's keys under `issuer` with root label `root_label` (for "wrong issuer" tests).
pub fn city_named(issuer: &str, root_label: &str) -> TestCity {
    let root = test_key(&format!("{issuer} {root_label}"));
    let station = test_key(&format!("{issuer} station"));
    let station_certificate = CertificateBody {
        issuer: issuer.into(),
        holder: "station-1".into(),
        role: Role::Station,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: date((2026, 1, 1)),
        expiry: date((2027, 12, 31)),
        public_key: station.public_key(),
    }
    .sign(&root)
    .expect("fixture certificate");
    let preparer = test_key(&format!("{issuer} preparer"));
    let preparer_certificate = CertificateBody {
        issuer: issuer.into(),
        holder: "preparer-1".into(),
        role: Role::Preparer,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: date((2026, 1, 1)),
        expiry: date((2027, 12, 31)),
        public_key: preparer.public_key(),
    }
    .sign(&root)
    .expect("fixture certificate");
    TestCity {
        root,
        station,
        station_certificate,
        preparer,
        preparer_certificate,
    }
}

/// The linkability group of a test reader profile: library 0, transit 1,
/// full identity 2 (anything else 0).
pub fn group_of(profile: &str) -> u8 {
    match profile {
        "transit" => 1,
        "full" => 2,
        _ => 0,
    }
}

/// The reader profiles used in vectors and tests, in their usual group.
pub fn reader(city: &TestCity, profile: &'static str) -> TestReader {
    reader_in_group(city, profile, group_of(profile))
}

/// A reader profile in group `group`.
pub fn reader_in_group(city: &TestCity, profile: &'static str, group: u8) -> TestReader {
    let grants: AttributeSet = match profile {
        "library" => [AttributeId::PSEUDONYM, AttributeId::RESIDENT]
            .into_iter()
            .collect(),
        "transit" => [AttributeId::AGE_OVER_65, AttributeId::AGE_OVER_18]
            .into_iter()
            .collect(),
        _ => [
            AttributeId::PSEUDONYM,
            AttributeId::CARD_NUMBER,
            AttributeId::NAME,
            AttributeId::BIRTH_DATE,
            AttributeId::ADDRESS,
            AttributeId::CARE_OF_ADDRESS,
            AttributeId::LANGUAGE,
            AttributeId::RESIDENT,
            AttributeId::AGE_OVER_18,
        ]
        .into_iter()
        .collect(),
    };
    let key = test_key(&format!("reader {profile}"));
    let mut domain = [0u8; 16];
    domain.copy_from_slice(&crypto::sha256(&[b"domain ", profile.as_bytes()])[..16]);
    let certificate = CertificateBody {
        issuer: city.station_certificate.body().issuer.clone(),
        holder: profile.into(),
        role: Role::Reader,
        grants,
        domain: Some(domain),
        group: Some(group),
        effective: date((2026, 1, 1)),
        expiry: date((2027, 12, 31)),
        public_key: key.public_key(),
    }
    .sign(&city.root)
    .expect("fixture certificate");
    TestReader {
        name: profile,
        group,
        key,
        certificate,
    }
}

/// What a test trust bundle says: its stations, its revocation list's
/// sequence, revoked ids and times, and the bundle's issue time.
pub struct BundleSpec {
    /// Station certificates in the bundle.
    pub stations: Vec<Certificate>,
    /// The list's sequence number.
    pub sequence: u32,
    /// Revoked card ids.
    pub revoked: Vec<RevocationId>,
    /// When the list and the bundle were issued (Unix seconds).
    pub issued_at: u64,
    /// The list's next update (Unix seconds).
    pub next_update: u64,
    /// The linkability group of the list and the bundle.
    pub group: u8,
}

impl BundleSpec {
    /// `city`'s own station, nothing revoked, list sequence 1.
    pub fn of(city: &TestCity, issued_at: u64, next_update: u64) -> Self {
        Self {
            stations: vec![city.station_certificate.clone()],
            sequence: 1,
            revoked: Vec::new(),
            issued_at,
            next_update,
            group: 0,
        }
    }

    /// The same in linkability group `group`.
    #[must_use]
    pub fn in_group(mut self, group: u8) -> Self {
        self.group = group;
        self
    }
}

/// A trust bundle signed by `city`'s root: its revocation list and stations as `spec` says.
pub fn trust_bundle(city: &TestCity, spec: BundleSpec) -> TrustBundle {
    let issuer = city.station_certificate.body().issuer.clone();
    let list = RevocationListBody {
        issuer: issuer.clone(),
        group: spec.group,
        sequence: spec.sequence,
        issued_at: spec.issued_at,
        next_update: spec.next_update,
        revoked: spec.revoked,
    };
    let tbs = list.to_be_signed().expect("fixture revocation list");
    let list = RevocationList::assemble(&tbs, &crypto::sign(&city.root, &tbs))
        .expect("fixture revocation list");
    let body = TrustBundleBody {
        issuer,
        group: spec.group,
        root: city.root.public_key(),
        issued_at: spec.issued_at,
        stations: spec.stations,
        revocations: list,
    };
    let tbs = body.to_be_signed().expect("fixture trust bundle");
    TrustBundle::assemble(&tbs, &crypto::sign(&city.root, &tbs)).expect("fixture trust bundle")
}
