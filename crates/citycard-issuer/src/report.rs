//! The JSON documents the office commands print with `--json`
//! (`docs/office.md`, "JSON output"), as serde types: one per document, each
//! built from the issuer's or the registry's typed values, so that programs
//! and tests reach the exact document without running the `citycard` binary.
//!
//! Every document an office command prints has `schema_version`
//! ([`SCHEMA_VERSION`]); all but [`TrustShow`] and [`BatchFinished`] have
//! `ok`. A failure is a [`Failure`]. Dates are `YYYY-MM-DD`, instants unix
//! seconds, fingerprints lowercase hex.
//!
//! Fields are declared in alphabetical order, at every level: serialised,
//! each document is byte for byte what the commands printed before the
//! documents were typed (a `serde_json::Value` map, whose keys are sorted).
//! A test holds every document to it. An optional key that is absent, not
//! `null`, says so on its field.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use citycard_card::PersistentState;
use citycard_piv_card::Summary;
use citycard_proto::cert::Certificate;
use citycard_proto::revocation::TrustBundle;
use citycard_proto::{AttributeId, Date};
use citycard_registry::{AuditEntry, CardRecord, CardState, Counts, Intent, RevocationReason};
use citycard_transport::TraceStats;
use serde::{Serialize, Serializer};

use crate::backup::BackupReport;
use crate::batch::{BatchSummary, RowOutcome, RowReport};
use crate::home::{key_fingerprint, IssuerHome, PartnerInfo, StationInfo};
use crate::issue::{Issued, Reconciled};
use crate::piv::PivIssued;
use crate::registry::MigrateReport;
use crate::IssuerError;

/// Version of every document of this module that carries `schema_version`.
pub const SCHEMA_VERSION: u64 = 1;

/// A command that failed: `{"ok": false, "error": …, "exit_code": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What went wrong, for people.
    pub error: String,
    /// The command's exit code.
    pub exit_code: u8,
    /// Always `false`.
    pub ok: bool,
    /// Always 1.
    pub schema_version: u64,
}

impl Failure {
    /// The failure document for `message` and the exit code `exit_code`.
    pub fn new(message: impl Display, exit_code: u8) -> Self {
        Self {
            error: message.to_string(),
            exit_code,
            ok: false,
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// `issuer init`: the new home.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuerInit {
    /// City name.
    pub city: String,
    /// The home directory, as given.
    pub dir: PathBuf,
    /// Linkability groups on every card.
    pub groups: u8,
    /// Issuer id.
    pub issuer_id: String,
    /// Always `true`.
    pub ok: bool,
    /// Where the registry is (a path or a URL without password).
    pub registry: String,
    /// Days resident attributes are kept after issue (`null`: none kept).
    pub retain_attributes_days: Option<u32>,
    /// SHA-256 of the root public key (hex), for partners.
    pub root_fingerprint: String,
    /// Where the root key lives (a locator, never secret).
    pub root_key: String,
    /// Always 1.
    pub schema_version: u64,
}

impl IssuerInit {
    /// The document of a home just created in `dir`.
    pub fn new(home: &IssuerHome, dir: &Path) -> Result<Self, IssuerError> {
        let c = home.config();
        Ok(Self {
            city: c.city.clone(),
            dir: dir.to_path_buf(),
            groups: c.groups,
            issuer_id: c.issuer_id.clone(),
            ok: true,
            registry: home.registry_location(),
            retain_attributes_days: c.retain_attributes_days,
            root_fingerprint: home.root_fingerprint()?,
            root_key: c.root.locator(),
            schema_version: SCHEMA_VERSION,
        })
    }
}

/// Card record counts, as `issuer show` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CardCounts {
    /// Cards that reached the issued state (including those revoked since).
    pub issued: u64,
    /// Issued and not revoked.
    pub live: u64,
    /// Intents neither issued nor spoiled yet.
    pub open_intents: u64,
    /// Issued cards revoked since.
    pub revoked: u64,
    /// Intents marked spoiled.
    pub spoiled: u64,
}

impl From<&Counts> for CardCounts {
    fn from(c: &Counts) -> Self {
        Self {
            issued: c.issued,
            live: c.live(),
            open_intents: c.open_intents,
            revoked: c.revoked,
            spoiled: c.spoiled,
        }
    }
}

/// `issuer show`: the home at a glance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuerShow {
    /// Card number prefix (`PREFIX-NNNNNN`).
    pub card_prefix: String,
    /// Validity of a new card, in days.
    pub card_validity_days: u32,
    /// Card record counts.
    pub cards: CardCounts,
    /// City name.
    pub city: String,
    /// Desks holding a live lease now.
    pub desks_at_work: usize,
    /// Issuer id.
    pub issuer_id: String,
    /// Always `true`.
    pub ok: bool,
    /// Partners enrolled.
    pub partners: usize,
    /// Where the registry is (a path or a URL without password).
    pub registry: String,
    /// Residents whose attributes the registry keeps now.
    pub residents_with_attributes: u64,
    /// Days resident attributes are kept after issue (`null`: none kept).
    pub retain_attributes_days: Option<u32>,
    /// SHA-256 of the root public key (hex).
    pub root_fingerprint: String,
    /// Where the root key lives (a locator, never secret).
    pub root_key: String,
    /// Always 1.
    pub schema_version: u64,
    /// Stations, retired ones included.
    pub stations: usize,
    /// Of the stations, those retired.
    pub stations_retired: usize,
}

impl IssuerShow {
    /// Reads the home's registry, stations and partners.
    pub fn of(home: &IssuerHome) -> Result<Self, IssuerError> {
        let root_fingerprint = home.root_fingerprint()?;
        let reg = home.registry()?;
        let counts = reg.counts()?;
        let (_, now) = crate::home::now()?;
        let desks = reg.active_leases(i64::try_from(now).unwrap_or(i64::MAX))?;
        let kept = reg.residents_with_attributes()?;
        let stations = home.stations()?;
        let partners = home.partners()?;
        let c = home.config();
        Ok(Self {
            card_prefix: c.card_number_prefix.clone(),
            card_validity_days: c.card_validity_days,
            cards: CardCounts::from(&counts),
            city: c.city.clone(),
            desks_at_work: desks.len(),
            issuer_id: c.issuer_id.clone(),
            ok: true,
            partners: partners.len(),
            registry: home.registry_location(),
            residents_with_attributes: kept,
            retain_attributes_days: c.retain_attributes_days,
            root_fingerprint,
            root_key: c.root.locator(),
            schema_version: SCHEMA_VERSION,
            stations: stations.len(),
            stations_retired: stations.iter().filter(|s| s.retired_on.is_some()).count(),
        })
    }
}

/// `issuer backup`: the archive written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuerBackup {
    /// Card records in the registry snapshot.
    pub cards: u64,
    /// Paths in the archive, relative to the home.
    pub files: Vec<PathBuf>,
    /// Always `true`.
    pub ok: bool,
    /// The archive.
    pub out: PathBuf,
    /// Always 1.
    pub schema_version: u64,
}

impl IssuerBackup {
    /// The document of a backup written to `out`.
    pub fn new(out: &Path, report: &BackupReport) -> Self {
        Self {
            cards: report.cards,
            files: report.files.clone(),
            ok: true,
            out: out.to_path_buf(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// `issuer migrate`: a schema upgrade or a move to PostgreSQL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IssuerMigrate {
    /// The schema went from one version to another.
    Upgraded(SchemaUpgraded),
    /// The registry moved to a server.
    Moved(RegistryMoved),
}

/// `issuer migrate` without `--to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SchemaUpgraded {
    /// Schema version before.
    pub from_version: i64,
    /// Always `true`.
    pub ok: bool,
    /// Which registry (a path or a URL).
    pub registry: String,
    /// Always 1.
    pub schema_version: u64,
    /// Schema version after (equal to `from_version`: up to date).
    pub to_version: i64,
}

/// `issuer migrate --to URL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistryMoved {
    /// Audit entries copied.
    pub audit_entries: u64,
    /// Card records copied.
    pub cards: u64,
    /// Desk leases copied.
    pub leases: u64,
    /// Always `true`.
    pub ok: bool,
    /// Where the old SQLite file was kept.
    pub old_file: PathBuf,
    /// The new registry's URL.
    pub registry: String,
    /// Residents with kept attributes copied.
    pub residents: u64,
    /// Always 1.
    pub schema_version: u64,
}

impl From<&MigrateReport> for IssuerMigrate {
    fn from(r: &MigrateReport) -> Self {
        match r {
            MigrateReport::Upgraded { location, from, to } => Self::Upgraded(SchemaUpgraded {
                from_version: *from,
                ok: true,
                registry: location.clone(),
                schema_version: SCHEMA_VERSION,
                to_version: *to,
            }),
            MigrateReport::Moved {
                url,
                copied,
                old_file,
            } => Self::Moved(RegistryMoved {
                audit_entries: copied.audit_entries,
                cards: copied.cards,
                leases: copied.leases,
                ok: true,
                old_file: old_file.clone(),
                registry: url.clone(),
                residents: copied.residents,
                schema_version: SCHEMA_VERSION,
            }),
        }
    }
}

/// `issuer reconcile --spoil`: the intents settled without a card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReconcileSpoiled {
    /// Of the spoiled intents, those whose revocation id goes on the next list.
    pub listed: Vec<String>,
    /// Always `true`.
    pub ok: bool,
    /// Always 1.
    pub schema_version: u64,
    /// Card numbers of the intents marked spoiled.
    pub spoiled: Vec<String>,
}

impl From<&Reconciled> for ReconcileSpoiled {
    fn from(r: &Reconciled) -> Self {
        Self {
            listed: r.listed.clone(),
            ok: true,
            schema_version: SCHEMA_VERSION,
            spoiled: r.spoiled.clone(),
        }
    }
}

/// One intent left open by a stopped run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Orphan {
    /// Whether the card's key was recorded (the card may be complete).
    pub card_key_recorded: bool,
    /// The card number.
    pub card_number: String,
    /// The reader (desk) whose lease owned it, if any.
    pub reader: Option<String>,
    /// The issuing station.
    pub station: String,
}

impl From<&Intent> for Orphan {
    fn from(i: &Intent) -> Self {
        Self {
            card_key_recorded: i.card_key.is_some(),
            card_number: i.card_number.clone(),
            reader: i.owner.as_ref().map(|o| o.desk.clone()),
            station: i.station.clone(),
        }
    }
}

/// `issuer reconcile`: the intents of stopped runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReconcileOrphans {
    /// Always `true`.
    pub ok: bool,
    /// The intents.
    pub orphans: Vec<Orphan>,
    /// Always 1.
    pub schema_version: u64,
}

impl ReconcileOrphans {
    /// The document listing `orphans`.
    pub fn new(orphans: &[Intent]) -> Self {
        Self {
            ok: true,
            orphans: orphans.iter().map(Orphan::from).collect(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

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

/// `revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Revoked {
    /// The card revoked.
    pub card_number: String,
    /// Always `true`.
    pub ok: bool,
    /// Why (`lost`, `stolen`, `damaged`, `withdrawn`).
    pub reason: String,
    /// Always 1.
    pub schema_version: u64,
}

impl Revoked {
    /// Card `card_number` revoked for `reason`.
    pub fn new(card_number: &str, reason: RevocationReason) -> Self {
        Self {
            card_number: card_number.to_string(),
            ok: true,
            reason: reason.as_str().to_string(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// `revocation publish`: the bundle with the new list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevocationPublished {
    /// Size of the bundle.
    pub bytes: usize,
    /// The linkability group of the list.
    pub group: u8,
    /// Days until the next scheduled update.
    pub next_update_days: u32,
    /// Always `true`.
    pub ok: bool,
    /// The bundle file.
    pub out: PathBuf,
    /// Revoked cards on the list.
    pub revoked: usize,
    /// Always 1.
    pub schema_version: u64,
    /// The list's sequence number.
    pub sequence: u32,
}

impl RevocationPublished {
    /// `bundle`, written to `out`, next update in `next_update_days`.
    pub fn new(out: &Path, bundle: &TrustBundle, next_update_days: u32) -> Self {
        let list = bundle.body().revocations.body();
        Self {
            bytes: bundle.as_bytes().len(),
            group: list.group,
            next_update_days,
            ok: true,
            out: out.to_path_buf(),
            revoked: list.revoked.len(),
            schema_version: SCHEMA_VERSION,
            sequence: list.sequence,
        }
    }
}

/// `trust export`: the bundle written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrustExported {
    /// Size of the bundle.
    pub bytes: usize,
    /// Always `true`.
    pub ok: bool,
    /// The bundle file.
    pub out: PathBuf,
    /// The sequence number of the revocation list it carries.
    pub revocation_sequence: u32,
    /// Revoked cards on that list.
    pub revoked: usize,
    /// Always 1.
    pub schema_version: u64,
    /// Station certificates.
    pub stations: usize,
}

impl TrustExported {
    /// `bundle`, written to `out`.
    pub fn new(out: &Path, bundle: &TrustBundle) -> Self {
        let b = bundle.body();
        Self {
            bytes: bundle.as_bytes().len(),
            ok: true,
            out: out.to_path_buf(),
            revocation_sequence: b.revocations.body().sequence,
            revoked: b.revocations.body().revoked.len(),
            schema_version: SCHEMA_VERSION,
            stations: b.stations.len(),
        }
    }
}

/// The revocation list of a [`TrustShow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RevocationListSummary {
    /// Seconds since it was issued.
    pub age_secs: u64,
    /// Issue time, unix seconds.
    pub issued_at: u64,
    /// Next scheduled update, unix seconds.
    pub next_update: u64,
    /// Revoked cards.
    pub revoked: usize,
    /// Sequence number.
    pub sequence: u32,
    /// Past its next update: readers refuse cards.
    pub stale: bool,
}

/// `trust show FILE` (no `ok`: the exit code says whether the signatures hold).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrustShow {
    /// Issue time of the bundle, unix seconds.
    pub bundle_issued_at: u64,
    /// Size of the bundle.
    pub bytes: usize,
    /// The linkability group it serves.
    pub group: u8,
    /// Issuer id.
    pub issuer: String,
    /// Its revocation list.
    pub revocation_list: RevocationListSummary,
    /// SHA-256 of the root public key (hex).
    pub root_fingerprint: String,
    /// Always 1.
    pub schema_version: u64,
    /// Whether the root's signatures (bundle and list) verify.
    pub signature_valid: bool,
    /// Station certificates.
    pub stations: usize,
}

impl TrustShow {
    /// `bundle` as seen at `now_unix`.
    pub fn new(bundle: &TrustBundle, now_unix: u64) -> Self {
        let body = bundle.body();
        let list = body.revocations.body();
        Self {
            bundle_issued_at: body.issued_at,
            bytes: bundle.as_bytes().len(),
            group: body.group,
            issuer: body.issuer.clone(),
            revocation_list: RevocationListSummary {
                age_secs: now_unix.saturating_sub(list.issued_at),
                issued_at: list.issued_at,
                next_update: list.next_update,
                revoked: list.revoked.len(),
                sequence: list.sequence,
                stale: now_unix > list.next_update,
            },
            root_fingerprint: key_fingerprint(&body.root),
            schema_version: SCHEMA_VERSION,
            signature_valid: bundle.verify().is_ok(),
            stations: body.stations.len(),
        }
    }
}

/// `resident forget`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResidentForgotten {
    /// Stored attributes erased.
    pub attributes_erased: usize,
    /// Card records unlinked from the resident.
    pub cards_unlinked: usize,
    /// Always `true`.
    pub ok: bool,
    /// The resident id.
    pub resident_id: String,
    /// Always 1.
    pub schema_version: u64,
    /// Whether the write-ahead log was truncated (no copy of the erased pages left).
    pub wal_truncated: bool,
}

impl ResidentForgotten {
    /// Resident `resident_id` forgotten, as `report` says.
    pub fn new(resident_id: &str, report: &citycard_registry::ForgetReport) -> Self {
        Self {
            attributes_erased: report.attributes_erased,
            cards_unlinked: report.cards_unlinked,
            ok: true,
            resident_id: resident_id.to_string(),
            schema_version: SCHEMA_VERSION,
            wal_truncated: report.wal_truncated,
        }
    }
}

/// One stored attribute of a [`ResidentShow`], for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownAttribute {
    /// The attribute's name (`name`, `birth_date`, …).
    pub name: String,
    /// Its value: dates `YYYY-MM-DD`, text as it is, anything else hex.
    pub value: String,
}

impl ShownAttribute {
    /// Attribute `id` with the stored bytes `value`.
    pub fn new(id: AttributeId, value: &[u8]) -> Self {
        let shown = if id == AttributeId::BIRTH_DATE {
            Date::from_bytes(value).ok().map(|d| d.to_string())
        } else {
            None
        };
        let shown = shown.unwrap_or_else(|| match std::str::from_utf8(value) {
            Ok(s) if id != AttributeId::RESIDENT => s.to_string(),
            _ => hex::encode(value),
        });
        Self {
            name: id.name().to_string(),
            value: shown,
        }
    }
}

/// The attributes as one JSON object, name to value.
fn attributes_as_map<S: Serializer>(a: &[ShownAttribute], s: S) -> Result<S::Ok, S::Error> {
    a.iter()
        .map(|x| (x.name.as_str(), x.value.as_str()))
        .collect::<BTreeMap<_, _>>()
        .serialize(s)
}

/// `resident show`: what the registry holds about a resident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResidentShow {
    /// Stored attributes, in the registry's order (one JSON object).
    #[serde(serialize_with = "attributes_as_map")]
    pub attributes: Vec<ShownAttribute>,
    /// The live card, if any.
    pub live_card: Option<String>,
    /// Its state (`intent`, `issued`).
    pub live_card_state: Option<String>,
    /// Always `true`.
    pub ok: bool,
    /// The resident id.
    pub resident_id: String,
    /// Until when the attributes are kept, unix seconds.
    pub retained_until: Option<i64>,
    /// Always 1.
    pub schema_version: u64,
}

impl ResidentShow {
    /// Resident `resident_id`: `live` card, stored `attributes`, kept until
    /// `retained_until`.
    pub fn new(
        resident_id: &str,
        live: Option<&CardRecord>,
        attributes: &[(AttributeId, Vec<u8>)],
        retained_until: Option<i64>,
    ) -> Self {
        Self {
            attributes: attributes
                .iter()
                .map(|(id, v)| ShownAttribute::new(*id, v))
                .collect(),
            live_card: live.map(|c| c.card_number.clone()),
            live_card_state: live.map(|c| c.state.name().to_string()),
            ok: true,
            resident_id: resident_id.to_string(),
            retained_until,
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// `card show NUMBER --dir DIR`: the registry's record of one card (no
/// attributes, no resident).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardShow {
    /// Card number.
    pub card_number: String,
    /// When the intent was begun, unix seconds.
    pub created_at: i64,
    /// Last valid day.
    pub expires_on: String,
    /// First valid day.
    pub issued_on: String,
    /// Always `true`.
    pub ok: bool,
    /// Why it was spoiled or revoked.
    pub reason: Option<String>,
    /// The card it replaced.
    pub replaces: Option<String>,
    /// Its revocation id (hex), once its key was recorded.
    pub revocation_id: Option<String>,
    /// When it was revoked, unix seconds.
    pub revoked_at: Option<i64>,
    /// Always 1.
    pub schema_version: u64,
    /// `intent`, `issued`, `spoiled` or `revoked`.
    pub state: String,
    /// Issuing station.
    pub station: String,
}

impl From<&CardRecord> for CardShow {
    fn from(card: &CardRecord) -> Self {
        let (reason, revoked_at) = match &card.state {
            CardState::Spoiled { reason } => (Some(reason.clone()), None),
            CardState::Revoked { reason, at } => (Some(reason.to_string()), Some(*at)),
            _ => (None, None),
        };
        Self {
            card_number: card.card_number.clone(),
            created_at: card.created_at,
            expires_on: card.expires_on.to_string(),
            issued_on: card.issued_on.to_string(),
            ok: true,
            reason,
            replaces: card.replaces.as_ref().map(|(c, _)| c.clone()),
            revocation_id: card.revocation_id.map(hex::encode),
            revoked_at,
            schema_version: SCHEMA_VERSION,
            state: card.state.name().to_string(),
            station: card.station.clone(),
        }
    }
}

/// One line of `audit export` (never personal attributes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditLine<'a> {
    /// What happened (`intent`, `issued`, `revoked:lost`, …).
    pub action: &'a str,
    /// Who (operator id).
    pub actor: &'a str,
    /// When, unix seconds.
    pub at: i64,
    /// Which card, where one is involved.
    pub card_number: Option<&'a str>,
    /// Always 1.
    pub schema_version: u64,
    /// Sequence number.
    pub seq: i64,
    /// Which station, where one is involved.
    pub station: Option<&'a str>,
}

impl<'a> From<&'a AuditEntry> for AuditLine<'a> {
    fn from(e: &'a AuditEntry) -> Self {
        Self {
            action: &e.action,
            actor: &e.actor,
            at: e.at,
            card_number: e.card_number.as_deref(),
            schema_version: SCHEMA_VERSION,
            seq: e.seq,
            station: e.station.as_deref(),
        }
    }
}

/// What a PIV card carries: the keys [`CardIssued`] and [`BatchLine`] add
/// for the PIV profile.
struct PivKeys {
    key_generated: bool,
    not_on_card: Vec<String>,
    predicates: Vec<String>,
}

impl PivKeys {
    fn of(p: &PivIssued) -> Self {
        Self {
            key_generated: p.key_generated,
            not_on_card: p.not_on_card.iter().map(|id| id.name().into()).collect(),
            predicates: p.predicates.iter().map(|id| id.name().into()).collect(),
        }
    }
}

/// `personalise`: one card issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CardIssued {
    /// Command APDUs exchanged.
    pub apdus: u64,
    /// Bytes of responses.
    pub bytes_received: u64,
    /// Bytes of commands.
    pub bytes_sent: u64,
    /// The card number.
    pub card_number: String,
    /// Last valid day.
    pub expires_on: String,
    /// First valid day.
    pub issued_on: String,
    /// PIV only (absent otherwise): whether the `9E` key was generated on the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_generated: Option<bool>,
    /// PIV only: the resident's attributes not written to the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_on_card: Option<Vec<String>>,
    /// Always `true`.
    pub ok: bool,
    /// PIV only: the age predicates signed in the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicates: Option<Vec<String>>,
    /// PIV only: `piv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The holder.
    pub resident_id: String,
    /// Always 1.
    pub schema_version: u64,
}

impl CardIssued {
    /// Card `issued` to `resident_id` (`piv`: what a PIV card carries) in
    /// the exchanges counted by `stats`.
    pub fn new(
        resident_id: &str,
        issued: &Issued,
        piv: Option<&PivIssued>,
        stats: &TraceStats,
    ) -> Self {
        let piv = piv.map(PivKeys::of);
        Self {
            apdus: stats.apdus,
            bytes_received: stats.bytes_received,
            bytes_sent: stats.bytes_sent,
            card_number: issued.card_number.clone(),
            expires_on: issued.expires_on.to_string(),
            issued_on: issued.issued_on.to_string(),
            key_generated: piv.as_ref().map(|p| p.key_generated),
            not_on_card: piv.as_ref().map(|p| p.not_on_card.clone()),
            ok: true,
            profile: piv.as_ref().map(|_| "piv".to_string()),
            predicates: piv.map(|p| p.predicates),
            resident_id: resident_id.to_string(),
            schema_version: SCHEMA_VERSION,
        }
    }
}

/// `batch --json`: one line per row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchLine {
    /// Issued or skipped: the card number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_number: Option<String>,
    /// Refused or failed: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Refused or failed: the exit code the error maps to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    /// Refused: the field concerned (`record` for the whole row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Issued on a PIV card: whether the `9E` key was generated on the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_generated: Option<bool>,
    /// The row's line in the file.
    pub line: u64,
    /// Issued on a PIV card: the resident's attributes not written to the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_on_card: Option<Vec<String>>,
    /// Issued or skipped.
    pub ok: bool,
    /// Issued on a PIV card: the age predicates signed in the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicates: Option<Vec<String>>,
    /// Issued on a PIV card: `piv`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The row's `resident_id` (`null` if it has no well-formed one).
    pub resident_id: Option<String>,
    /// Always 1.
    pub schema_version: u64,
    /// `issued`, `skipped`, `refused` or `failed`.
    pub status: String,
}

impl BatchLine {
    /// The line of `row`; `exit_code` is the exit code a refused or failed
    /// row's error maps to (unused for the others).
    pub fn new(row: &RowReport, exit_code: u8) -> Self {
        let mut doc = Self {
            card_number: None,
            error: None,
            exit_code: None,
            field: None,
            key_generated: None,
            line: row.line,
            not_on_card: None,
            ok: true,
            predicates: None,
            profile: None,
            resident_id: row.resident_id.clone(),
            schema_version: SCHEMA_VERSION,
            status: String::new(),
        };
        match &row.outcome {
            RowOutcome::Issued { card, piv } => {
                doc.status = "issued".into();
                doc.card_number = Some(card.card_number.clone());
                if let Some(p) = piv.as_ref().map(PivKeys::of) {
                    doc.key_generated = Some(p.key_generated);
                    doc.not_on_card = Some(p.not_on_card);
                    doc.predicates = Some(p.predicates);
                    doc.profile = Some("piv".into());
                }
            }
            RowOutcome::Skipped { card_number } => {
                doc.status = "skipped".into();
                doc.card_number = Some(card_number.clone());
            }
            RowOutcome::Refused(e) => {
                doc.status = "refused".into();
                doc.ok = false;
                doc.field = Some(e.field.clone());
                doc.error = Some(e.reason.clone());
                doc.exit_code = Some(exit_code);
            }
            RowOutcome::Failed(e) => {
                doc.status = "failed".into();
                doc.ok = false;
                doc.error = Some(e.to_string());
                doc.exit_code = Some(exit_code);
            }
        }
        doc
    }
}

/// The registry's counts after a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RegistryCounts {
    /// Cards that reached the issued state.
    pub issued: u64,
    /// Intents still open.
    pub open_intents: u64,
    /// Issued cards revoked since.
    pub revoked: u64,
    /// Intents marked spoiled.
    pub spoiled: u64,
}

impl From<&Counts> for RegistryCounts {
    fn from(c: &Counts) -> Self {
        Self {
            issued: c.issued,
            open_intents: c.open_intents,
            revoked: c.revoked,
            spoiled: c.spoiled,
        }
    }
}

/// The counts of a [`BatchFinished`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchTotals {
    /// Why it ended ([`BatchEnd::name`](crate::batch::BatchEnd::name)).
    pub end: String,
    /// The command's exit code.
    pub exit_code: u8,
    /// Valid rows not issued.
    pub failed: u64,
    /// Issued now.
    pub issued: u64,
    /// Invalid rows.
    pub refused: u64,
    /// The registry's counts afterwards.
    pub registry: RegistryCounts,
    /// Rows in the file.
    pub rows: u64,
    /// Already done.
    pub skipped: u64,
}

/// `batch --json`: the last line, `{"summary": {…}}` (no `ok`: see
/// `exit_code`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchFinished {
    /// Always 1.
    pub schema_version: u64,
    /// The counts.
    pub summary: BatchTotals,
}

impl BatchFinished {
    /// The summary of a batch that ended with `exit_code`, the registry
    /// then counting `registry`.
    pub fn new(summary: &BatchSummary, exit_code: u8, registry: &Counts) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            summary: BatchTotals {
                end: summary.end.name().to_string(),
                exit_code,
                failed: summary.failed,
                issued: summary.issued,
                refused: summary.refused,
                registry: RegistryCounts::from(registry),
                rows: summary.rows,
                skipped: summary.skipped,
            },
        }
    }
}

/// `card show --state FILE`: an emulated card's state file (no personal
/// data, no `schema_version`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EmulatedCardState {
    /// Nothing stored yet: `{"life_cycle":"blank","stored":false}`.
    Blank(BlankCard),
    /// A citycard applet's state.
    Applet(AppletState),
    /// An emulated PIV card's state.
    Piv(PivCardState),
}

/// A state file with nothing stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BlankCard {
    /// Always `blank`.
    pub life_cycle: String,
    /// Always `false`.
    pub stored: bool,
}

impl EmulatedCardState {
    /// A state file with nothing stored.
    pub fn blank() -> Self {
        Self::Blank(BlankCard {
            life_cycle: "blank".into(),
            stored: false,
        })
    }
}

/// A citycard applet's state, summarised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppletState {
    /// The issuer id of the preparation anchor.
    pub anchored_issuer: Option<String>,
    /// Names of the stored attributes (once personalised).
    pub attributes: Option<Vec<String>>,
    /// Verified reader certificates cached.
    pub cached_reader_certificates: usize,
    /// The card date (`YYYY-MM-DD`).
    pub card_date: Option<String>,
    /// Linkability groups (once personalised).
    pub groups: Option<usize>,
    /// Life-cycle state.
    pub life_cycle: String,
    /// Whether it is personalised.
    pub personalised: bool,
}

impl From<&PersistentState> for EmulatedCardState {
    fn from(state: &PersistentState) -> Self {
        let p = state.personalisation.as_ref();
        Self::Applet(AppletState {
            anchored_issuer: state.anchor.as_ref().map(|a| a.issuer.clone()),
            attributes: p.map(|p| p.values.iter().map(|a| a.id.name().into()).collect()),
            cached_reader_certificates: state.cache.len(),
            card_date: state.card_date.map(|d| d.to_string()),
            groups: p.map(|p| p.groups.len()),
            life_cycle: state.life_cycle.name().into(),
            personalised: p.is_some(),
        })
    }
}

/// An emulated PIV card's state, summarised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PivCardState {
    /// Key references holding a private key (2 hex digits each).
    pub key_slots: Vec<String>,
    /// The management key's algorithm identifier (2 hex digits).
    pub management_key_algorithm: String,
    /// Tags of the stored data objects (6 hex digits each).
    pub objects: Vec<String>,
    /// PIN tries left.
    pub pin_tries_left: u8,
    /// Always `piv`.
    pub profile: String,
    /// PUK tries left.
    pub puk_tries_left: u8,
}

impl From<&Summary> for EmulatedCardState {
    fn from(s: &Summary) -> Self {
        Self::Piv(PivCardState {
            key_slots: s.key_slots.iter().map(|k| format!("{k:02x}")).collect(),
            management_key_algorithm: format!("{:02x}", s.management_key_algorithm),
            objects: s.objects.iter().map(|t| format!("{t:06x}")).collect(),
            pin_tries_left: s.pin_tries_left,
            profile: "piv".into(),
            puk_tries_left: s.puk_tries_left,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citycard_proto::attr::AttributeSet;
    use serde_json::Value;

    fn day(s: &str) -> Date {
        Date::parse_iso(s).expect("a date")
    }

    fn text(doc: &impl Serialize) -> String {
        serde_json::to_string(doc).expect("serialisable")
    }

    /// The text the commands printed before the documents were typed: a
    /// `serde_json::Value` map, keys sorted at every level.
    fn as_value_map(doc: &impl Serialize) -> String {
        serde_json::to_value(doc).expect("serialisable").to_string()
    }

    /// A document's text, and the text of the same document as a `Value` map.
    fn pair(doc: impl Serialize) -> (String, String) {
        (text(&doc), as_value_map(&doc))
    }

    fn revoked_card() -> CardRecord {
        CardRecord {
            intent_id: 7,
            card_number: "LG-000002".into(),
            resident_ref: Some("F-0001".into()),
            station: "desk-1".into(),
            issued_on: day("2026-11-02"),
            expires_on: day("2031-11-01"),
            state: CardState::Revoked {
                reason: RevocationReason::Lost,
                at: 1_790_000_000,
            },
            card_key: Some([2; 33]),
            revocation_id: Some([0xAB; 8]),
            batch: None,
            replaces: Some(("LG-000001".into(), RevocationReason::Damaged)),
            created_at: 1_789_000_000,
        }
    }

    #[test]
    fn failure_document() {
        assert_eq!(
            text(&Failure::new("station desk-9: unknown", 3)),
            r#"{"error":"station desk-9: unknown","exit_code":3,"ok":false,"schema_version":1}"#
        );
    }

    #[test]
    fn station_list_document() {
        let stations = [
            StationInfo {
                name: "desk-1".into(),
                effective: day("2026-11-01"),
                expiry: day("2027-04-30"),
                key: "file:stations/desk-1/key.pem".into(),
                fingerprint: "ab".repeat(32),
                retired_on: None,
            },
            StationInfo {
                name: "desk-0".into(),
                effective: day("2026-01-01"),
                expiry: day("2026-06-30"),
                key: "file:stations/desk-0/key.pem".into(),
                fingerprint: "cd".repeat(32),
                retired_on: Some("2026-03-01".into()),
            },
        ];
        assert_eq!(
            text(&StationList::new(&stations)),
            format!(
                concat!(
                    r#"{{"ok":true,"schema_version":1,"stations":["#,
                    r#"{{"effective":"2026-11-01","expiry":"2027-04-30","fingerprint":"{}","key":"file:stations/desk-1/key.pem","name":"desk-1","retired_on":null}},"#,
                    r#"{{"effective":"2026-01-01","expiry":"2026-06-30","fingerprint":"{}","key":"file:stations/desk-0/key.pem","name":"desk-0","retired_on":"2026-03-01"}}]}}"#
                ),
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
    }

    #[test]
    fn card_show_document_of_a_revoked_replacement() {
        assert_eq!(
            text(&CardShow::from(&revoked_card())),
            concat!(
                r#"{"card_number":"LG-000002","created_at":1789000000,"expires_on":"2031-11-01","#,
                r#""issued_on":"2026-11-02","ok":true,"reason":"lost","replaces":"LG-000001","#,
                r#""revocation_id":"abababababababab","revoked_at":1790000000,"schema_version":1,"#,
                r#""state":"revoked","station":"desk-1"}"#
            )
        );
        let mut spoiled = revoked_card();
        spoiled.state = CardState::Spoiled {
            reason: "torn".into(),
        };
        spoiled.revocation_id = None;
        spoiled.replaces = None;
        let v: Value = serde_json::from_str(&text(&CardShow::from(&spoiled))).expect("JSON");
        assert_eq!(v["reason"], "torn");
        assert_eq!(v["revoked_at"], Value::Null);
        assert_eq!(v["revocation_id"], Value::Null);
        assert_eq!(v["replaces"], Value::Null);
    }

    #[test]
    fn resident_show_shows_dates_text_and_bytes_as_one_sorted_object() {
        let attributes = vec![
            (AttributeId::NAME, b"Alex Martin".to_vec()),
            (
                AttributeId::BIRTH_DATE,
                day("1990-04-01").to_bytes().to_vec(),
            ),
            (AttributeId::RESIDENT, vec![1]),
        ];
        let doc = ResidentShow::new("F-0001", None, &attributes, Some(1_800_000_000));
        // People see the registry's order; the JSON object is sorted.
        assert_eq!(doc.attributes[0].name, "name");
        assert_eq!(
            text(&doc),
            concat!(
                r#"{"attributes":{"birth_date":"1990-04-01","name":"Alex Martin","resident":"01"},"#,
                r#""live_card":null,"live_card_state":null,"ok":true,"resident_id":"F-0001","#,
                r#""retained_until":1800000000,"schema_version":1}"#
            )
        );
    }

    #[test]
    fn batch_summary_is_nested_under_summary() {
        let summary = BatchSummary {
            rows: 5,
            issued: 3,
            skipped: 1,
            refused: 1,
            failed: 0,
            end: crate::batch::BatchEnd::Interrupted,
        };
        let counts = Counts {
            issued: 9,
            spoiled: 2,
            revoked: 1,
            open_intents: 0,
        };
        assert_eq!(
            text(&BatchFinished::new(&summary, 130, &counts)),
            concat!(
                r#"{"schema_version":1,"summary":{"end":"interrupted","exit_code":130,"failed":0,"#,
                r#""issued":3,"refused":1,"registry":{"issued":9,"open_intents":0,"revoked":1,"spoiled":2},"#,
                r#""rows":5,"skipped":1}}"#
            )
        );
    }

    fn station_certificate() -> Certificate {
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let root = citycard_proto::crypto::generate(&mut rng);
        let key = citycard_proto::crypto::generate(&mut rng);
        citycard_proto::cert::CertificateBody {
            issuer: "LIEGE".into(),
            holder: "desk-1".into(),
            role: citycard_proto::cert::Role::Station,
            grants: AttributeSet::EMPTY,
            domain: None,
            group: None,
            effective: day("2026-11-01"),
            expiry: day("2027-04-30"),
            public_key: key.public_key(),
        }
        .sign(&root)
        .expect("a certificate")
    }

    #[test]
    fn a_certified_key_is_named_by_its_role_only() {
        let cert = station_certificate();
        let fingerprint = hex::encode(cert.fingerprint());
        assert_eq!(
            text(&KeyCertified::new(KeyRole::Station, "desk-1", &cert)),
            format!(
                r#"{{"effective":"2026-11-01","expiry":"2027-04-30","fingerprint":"{fingerprint}","ok":true,"schema_version":1,"station":"desk-1"}}"#
            )
        );
        assert_eq!(
            text(&KeyCertified::new(KeyRole::Preparer, "factory", &cert)),
            format!(
                r#"{{"effective":"2026-11-01","expiry":"2027-04-30","fingerprint":"{fingerprint}","ok":true,"preparer":"factory","schema_version":1}}"#
            )
        );
    }

    /// Every document serialises its keys sorted, as the commands printed
    /// them: each is filled in completely (every optional key present).
    #[test]
    fn every_document_prints_its_keys_in_the_order_the_commands_printed_them() {
        let s = String::from;
        let some_strings = || Some(vec![s("age_over_18")]);
        let audit = AuditEntry {
            seq: 4,
            at: 1_790_000_000,
            actor: s("clerk"),
            station: Some(s("desk-1")),
            action: s("issued"),
            card_number: Some(s("LG-000002")),
        };
        let intent = Intent {
            id: 1,
            card_number: s("LG-000003"),
            resident_ref: s("F-0002"),
            station: s("desk-1"),
            issued_on: day("2026-11-02"),
            expires_on: day("2031-11-01"),
            batch: None,
            replaces: None,
            card_key: None,
            owner: Some(citycard_registry::Lease {
                id: s("00"),
                desk: s("pcsc:ACS"),
                holder: s("host:1"),
                expires_at: 0,
                released: false,
            }),
        };
        let partner = PartnerInfo {
            name: s("library"),
            grants: AttributeSet::parse_list("pseudonym,resident").expect("grants"),
            effective: day("2026-11-01"),
            expiry: day("2027-11-01"),
            fingerprint: s("ef"),
        };
        let counts = Counts::default();
        let docs: Vec<(String, String)> = vec![
            pair(Failure::new("x", 1)),
            pair(IssuerInit {
                city: s("Liège"),
                dir: PathBuf::from("/srv/citycard"),
                groups: 1,
                issuer_id: s("LIEGE"),
                ok: true,
                registry: s("/srv/citycard/registry.sqlite"),
                retain_attributes_days: Some(30),
                root_fingerprint: s("00"),
                root_key: s("file:root.key"),
                schema_version: SCHEMA_VERSION,
            }),
            pair(IssuerShow {
                card_prefix: s("LG"),
                card_validity_days: 1826,
                cards: CardCounts::from(&counts),
                city: s("Liège"),
                desks_at_work: 0,
                issuer_id: s("LIEGE"),
                ok: true,
                partners: 1,
                registry: s("r"),
                residents_with_attributes: 0,
                retain_attributes_days: None,
                root_fingerprint: s("00"),
                root_key: s("file:root.key"),
                schema_version: SCHEMA_VERSION,
                stations: 2,
                stations_retired: 1,
            }),
            pair(IssuerBackup {
                cards: 1,
                files: vec![PathBuf::from("issuer.json")],
                ok: true,
                out: PathBuf::from("b.tar"),
                schema_version: SCHEMA_VERSION,
            }),
            pair(IssuerMigrate::from(&MigrateReport::Upgraded {
                location: s("r"),
                from: 3,
                to: 4,
            })),
            pair(IssuerMigrate::from(&MigrateReport::Moved {
                url: s("postgres://db/registry"),
                copied: citycard_registry::pg::CopyReport::default(),
                old_file: PathBuf::from("registry.sqlite.moved"),
            })),
            pair(ReconcileSpoiled::from(&Reconciled::default())),
            pair(ReconcileOrphans::new(&[intent])),
            pair(StationRetired::new("desk-1", day("2026-11-02"))),
            pair(CardPrepared::new("factory", "B1")),
            pair(PartnerCredential {
                effective: s("2026-11-01"),
                expiry: s("2027-11-01"),
                grants: s("resident"),
                ok: true,
                out: PathBuf::from("library.cred"),
                partner: s("library"),
                schema_version: SCHEMA_VERSION,
            }),
            pair(PartnerList::new(&[partner])),
            pair(Revoked::new("LG-000002", RevocationReason::Stolen)),
            pair(RevocationPublished {
                bytes: 900,
                group: 0,
                next_update_days: 7,
                ok: true,
                out: PathBuf::from("liege.bundle"),
                revoked: 1,
                schema_version: SCHEMA_VERSION,
                sequence: 2,
            }),
            pair(TrustExported {
                bytes: 900,
                ok: true,
                out: PathBuf::from("liege.bundle"),
                revocation_sequence: 2,
                revoked: 1,
                schema_version: SCHEMA_VERSION,
                stations: 2,
            }),
            pair(TrustShow {
                bundle_issued_at: 1,
                bytes: 900,
                group: 0,
                issuer: s("LIEGE"),
                revocation_list: RevocationListSummary {
                    age_secs: 5,
                    issued_at: 1,
                    next_update: 2,
                    revoked: 0,
                    sequence: 1,
                    stale: true,
                },
                root_fingerprint: s("00"),
                schema_version: SCHEMA_VERSION,
                signature_valid: true,
                stations: 1,
            }),
            pair(ResidentForgotten::new(
                "F-0001",
                &citycard_registry::ForgetReport {
                    attributes_erased: 3,
                    cards_unlinked: 1,
                    wal_truncated: true,
                },
            )),
            pair(CardShow::from(&revoked_card())),
            pair(AuditLine::from(&audit)),
            pair(CardIssued {
                apdus: 30,
                bytes_received: 2000,
                bytes_sent: 3000,
                card_number: s("LG-000002"),
                expires_on: s("2031-11-01"),
                issued_on: s("2026-11-02"),
                key_generated: Some(true),
                not_on_card: some_strings(),
                ok: true,
                predicates: some_strings(),
                profile: Some(s("piv")),
                resident_id: s("F-0001"),
                schema_version: SCHEMA_VERSION,
            }),
            pair(BatchLine {
                card_number: Some(s("LG-000002")),
                error: Some(s("e")),
                exit_code: Some(1),
                field: Some(s("name")),
                key_generated: Some(false),
                line: 2,
                not_on_card: some_strings(),
                ok: false,
                predicates: some_strings(),
                profile: Some(s("piv")),
                resident_id: None,
                schema_version: SCHEMA_VERSION,
                status: s("failed"),
            }),
            pair(EmulatedCardState::blank()),
            pair(EmulatedCardState::from(&Summary {
                key_slots: vec![0x9E],
                objects: vec![0x5F_C1_01],
                pin_tries_left: 3,
                puk_tries_left: 3,
                management_key_algorithm: 3,
            })),
            pair(EmulatedCardState::Applet(AppletState {
                anchored_issuer: Some(s("LIEGE")),
                attributes: some_strings(),
                cached_reader_certificates: 0,
                card_date: Some(s("2026-11-02")),
                groups: Some(1),
                life_cycle: s("ACTIVATED"),
                personalised: true,
            })),
        ];
        for (typed, map) in &docs {
            assert_eq!(typed, map, "the typed document is the sorted map");
        }
        // And the typed documents print that text themselves.
        let blank = EmulatedCardState::blank();
        assert_eq!(text(&blank), r#"{"life_cycle":"blank","stored":false}"#);
        assert_eq!(text(&blank), as_value_map(&blank));
    }
}
