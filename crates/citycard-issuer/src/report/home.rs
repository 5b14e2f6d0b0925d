//! The issuer home's documents: init, show, backup, migrate, reconcile.

use std::path::{Path, PathBuf};

use citycard_registry::{Counts, Intent};
use serde::Serialize;

use crate::backup::BackupReport;
use crate::home::IssuerHome;
use crate::issue::Reconciled;
use crate::registry::MigrateReport;
use crate::IssuerError;

use super::*;

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
