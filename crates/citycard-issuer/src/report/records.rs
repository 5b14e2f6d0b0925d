//! Revocation, trust bundles, residents, cards and the audit log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use citycard_proto::revocation::TrustBundle;
use citycard_proto::{attr::AttributeId, date::Date};
use citycard_registry::{AuditEntry, CardRecord, CardState, RevocationReason};
use serde::{Serialize, Serializer};

use crate::home::key_fingerprint;

use super::*;

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
pub(super) fn attributes_as_map<S: Serializer>(
    a: &[ShownAttribute],
    s: S,
) -> Result<S::Ok, S::Error> {
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
