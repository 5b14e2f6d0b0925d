//! The values the registry takes and returns.

use core::fmt;
use core::str::FromStr;

use citycard_proto::{attr::AttributeId, date::Date};

use crate::RegistryError;

/// Why a card was revoked. Stored and printed as `lost`, `stolen`, `damaged`, `withdrawn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// The holder lost the card.
    Lost,
    /// The card was stolen.
    Stolen,
    /// The card is damaged and is being replaced.
    Damaged,
    /// The city withdrew the card (e.g. the holder moved away, or asked for it).
    Withdrawn,
}

impl RevocationReason {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Lost, Self::Stolen, Self::Damaged, Self::Withdrawn];

    /// The machine name (`lost`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lost => "lost",
            Self::Stolen => "stolen",
            Self::Damaged => "damaged",
            Self::Withdrawn => "withdrawn",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RegistryError::InvalidInput {
                field: "reason",
                reason: "expected lost, stolen, damaged or withdrawn".into(),
            })
    }
}

/// Which card number a new intent gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardNumber<'a> {
    /// Exactly this one (refused with
    /// [`RegistryError::CardNumberTaken`](crate::RegistryError::CardNumberTaken) if recorded).
    Given(&'a str),
    /// The next free number for this prefix, allocated **in the intent's own
    /// transaction**: an issuance refused for any reason consumes no number.
    Next {
        /// 1–12 ASCII letters or digits (`LG` gives `LG-000001`, ...).
        prefix: &'a str,
    },
}

impl<'a> From<&'a str> for CardNumber<'a> {
    fn from(number: &'a str) -> Self {
        Self::Given(number)
    }
}

/// A desk's lease: an issuing process holds one while it works and renews it;
/// the open intents it writes name it, so that another process reconciles
/// them only once the lease is gone (released, expired, or its holder dead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Random id (32 hex digits).
    pub id: String,
    /// The desk: where the cards of its intents are (a reader identity).
    pub desk: String,
    /// The holding process (`host:pid`), for people.
    pub holder: String,
    /// Unix seconds after which the lease is gone unless renewed.
    pub expires_at: i64,
    /// Released by its holder (or taken over): gone.
    pub released: bool,
}

impl Lease {
    /// Whether the lease is gone at `now` (released or expired).
    pub const fn is_gone_at(&self, now: i64) -> bool {
        self.released || self.expires_at < now
    }
}

/// What [`Registry::begin_intent`](crate::Registry::begin_intent) needs to
/// record an issuance before the first APDU goes to the card.
#[derive(Clone, Copy)]
pub struct NewIssuance<'a> {
    /// The card number: given, or the next one for a prefix.
    pub card_number: CardNumber<'a>,
    /// The office's own reference for this person (a file reference, never a
    /// national identity number). Used to enforce one live card per resident.
    pub resident_ref: &'a str,
    /// The issuing station's name.
    pub station: &'a str,
    /// First day of validity.
    pub issued_on: Date,
    /// Last day of validity (after `issued_on`).
    pub expires_on: Date,
    /// The resident's attributes, as far as the city keeps them to reprint or
    /// replace a card: only [`RETAINED_ATTRIBUTES`](crate::RETAINED_ATTRIBUTES)
    /// are accepted (anything else is refused, not dropped). They replace
    /// whatever was stored for this resident before.
    pub attributes: &'a [(AttributeId, Vec<u8>)],
    /// For batch issuance: the batch identifier and row number (for `--resume`).
    pub batch: Option<(&'a str, u64)>,
    /// `Some(reason)` for a replacement: the resident's live card is revoked
    /// with this reason in the same transaction as the new intent.
    pub replaces: Option<RevocationReason>,
    /// Who does this (an operator id; no resident data).
    pub actor: &'a str,
    /// The desk lease that owns the intent while it is open (`None`: no
    /// owner, any reconciliation may settle it).
    pub lease: Option<&'a str>,
    /// How long the attributes may be kept: `None` stores **none** (the
    /// default); `Some(unix seconds)` keeps them until then (or until the
    /// resident is forgotten).
    pub retain_until: Option<i64>,
}

impl fmt::Debug for NewIssuance<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print attribute values.
        f.debug_struct("NewIssuance")
            .field("card_number", &self.card_number)
            .field("station", &self.station)
            .field("issued_on", &self.issued_on)
            .field("expires_on", &self.expires_on)
            .field(
                "attributes",
                &self
                    .attributes
                    .iter()
                    .map(|(id, _)| id.name())
                    .collect::<Vec<_>>(),
            )
            .field("batch", &self.batch)
            .field("replaces", &self.replaces)
            .field("actor", &self.actor)
            .field("lease", &self.lease)
            .field("retain_until", &self.retain_until)
            .finish_non_exhaustive()
    }
}

/// An issuance intent: recorded before the card is touched, open until it is
/// committed as issued or marked spoiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The intent's id (pass it to `commit_issued` / `mark_spoiled`).
    pub id: i64,
    /// The card number being issued.
    pub card_number: String,
    /// The resident reference (a tombstone `forgotten:...` once forgotten).
    pub resident_ref: String,
    /// Issuing station.
    pub station: String,
    /// First day of validity.
    pub issued_on: Date,
    /// Last day of validity.
    pub expires_on: Date,
    /// Batch id and row, for batch issuance.
    pub batch: Option<(String, u64)>,
    /// The card this one replaces and the reason it was revoked.
    pub replaces: Option<(String, RevocationReason)>,
    /// The card's public key (compressed P-256), once recorded by
    /// [`Registry::attach_card_key`](crate::Registry::attach_card_key):
    /// reconciliation commits the intent only for a card with this key.
    pub card_key: Option<[u8; 33]>,
    /// The desk lease that owns it, if any.
    pub owner: Option<Lease>,
}

/// Where a card record stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardState {
    /// Intent recorded, card not (yet) verified issued.
    Intent,
    /// Issued and locked; live unless revoked.
    Issued,
    /// The card used for this intent was spoiled (or the intent abandoned).
    Spoiled {
        /// Short machine reason (`torn`, `card-pulled`, ...).
        reason: String,
    },
    /// Issued, then revoked.
    Revoked {
        /// Why.
        reason: RevocationReason,
        /// When (unix seconds).
        at: i64,
    },
}

impl CardState {
    /// The state's machine name (`intent`, `issued`, `spoiled`, `revoked`).
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Issued => "issued",
            Self::Spoiled { .. } => "spoiled",
            Self::Revoked { .. } => "revoked",
        }
    }
}

/// One card record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRecord {
    /// The intent id of this record.
    pub intent_id: i64,
    /// Card number.
    pub card_number: String,
    /// The resident reference; `None` once the resident was forgotten.
    pub resident_ref: Option<String>,
    /// Issuing station.
    pub station: String,
    /// First day of validity.
    pub issued_on: Date,
    /// Last day of validity.
    pub expires_on: Date,
    /// State.
    pub state: CardState,
    /// The card's public key (compressed P-256): always for an issued or
    /// revoked card; for an intent or a spoiled one, if it was recorded
    /// before the card could hold a signed record (then a spoiled card's
    /// revocation id is on the revocation list).
    pub card_key: Option<[u8; 33]>,
    /// The card's revocation id, set together with `card_key`.
    pub revocation_id: Option<[u8; 8]>,
    /// Batch id and row, for batch issuance (cleared when the resident is forgotten).
    pub batch: Option<(String, u64)>,
    /// The card this one replaced and why (cleared when the resident is forgotten).
    pub replaces: Option<(String, RevocationReason)>,
    /// When the intent was begun (unix seconds).
    pub created_at: i64,
}

/// A revoked card, as the signed revocation list needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedCard {
    /// Card number.
    pub card_number: String,
    /// Revocation id (what goes on the list).
    pub revocation_id: [u8; 8],
    /// Why.
    pub reason: RevocationReason,
    /// When (unix seconds).
    pub at: i64,
}

/// What `forget_resident` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForgetReport {
    /// Stored attributes erased.
    pub attributes_erased: usize,
    /// Card records unlinked from the resident (their reference replaced by a random tombstone).
    pub cards_unlinked: usize,
    /// Whether the write-ahead log was checkpointed and truncated afterwards,
    /// so that no copy of the erased pages is left in it (false if another
    /// connection was reading at the time; the next checkpoint removes them).
    pub wal_truncated: bool,
}

/// Record counts. Invariant: `issued + spoiled + open_intents` = intents ever begun.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Cards that reached the issued state (including those revoked since).
    pub issued: u64,
    /// Intents marked spoiled.
    pub spoiled: u64,
    /// Issued cards revoked since.
    pub revoked: u64,
    /// Intents neither issued nor spoiled yet.
    pub open_intents: u64,
}

impl Counts {
    /// Issued and not revoked.
    pub const fn live(&self) -> u64 {
        self.issued.saturating_sub(self.revoked)
    }
}

/// One entry of the append-only audit log. It holds no personal attributes
/// and no resident reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number (strictly increasing).
    pub seq: i64,
    /// When (unix seconds).
    pub at: i64,
    /// Who (operator id).
    pub actor: String,
    /// Which station, where one is involved.
    pub station: Option<String>,
    /// What: `intent`, `card-key`, `issued`, `spoiled:<reason>`,
    /// `spoiled-after-signing`, `revoked:<reason>`, `forget`.
    pub action: String,
    /// Which card, where one is involved.
    pub card_number: Option<String>,
}
