//! Issuing: a personalised card, batch rows and the batch summary.

use citycard_card::PersistentState;
use citycard_piv_card::Summary;
use citycard_registry::Counts;
use citycard_transport::TraceStats;
use serde::Serialize;

use crate::batch::{BatchSummary, RowOutcome, RowReport};
use crate::issue::Issued;
use crate::piv::PivIssued;

use super::*;

/// What a PIV card carries: the keys [`CardIssued`] and [`BatchLine`] add
/// for the PIV profile.
pub(super) struct PivKeys {
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
