//! [`Verdict`]: the outcome of one tap, with a stable exit code and JSON form.

use std::sync::Arc;

use citycard_proto::{attr::AttributeId, attr::AttributeSet, date::Date};
use citycard_transport::TransportError;
use serde_json::Value;

/// Version of the JSON object [`Verdict::to_json`] produces.
pub const VERDICT_SCHEMA_VERSION: u64 = 1;

/// Which kind of card answered (SPEC §8, `applet-spec/piv-profile.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CardProfile {
    /// The citycard applet: reader authorisation, encrypted disclosure,
    /// pseudonyms, card-computed predicates.
    Citycard,
    /// An off-the-shelf PIV card: an issuer-signed Card Authentication
    /// certificate and a challenge signed by the card's key in slot `9E`.
    /// Carries only the card number, validity and age predicates that held
    /// on the issue date; any reader can read them.
    Piv,
}

impl CardProfile {
    /// `citycard` or `piv`, as in the JSON `profile` field.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Citycard => "citycard",
            Self::Piv => "piv",
        }
    }
}

/// What a genuine, valid, unrevoked card disclosed to this reader — only what
/// was requested, granted and verified against the issuer's signature.
///
/// It never holds the card's public key, the record's signature, its
/// revocation id or the digests of undisclosed attributes (SPEC §8 step 4,
/// §11): those would let partners link their records.
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub struct Genuine {
    /// Disclosed stored attributes (ids ascending), each checked against its
    /// signed digest. Values are raw encodings (SPEC §5.4); see
    /// [`AttributeId::display_value`] for people.
    pub attributes: Vec<(AttributeId, Vec<u8>)>,
    /// This partner's pseudonym for the card, if `pseudonym` was requested.
    pub pseudonym: Option<[u8; 16]>,
    /// Each requested age predicate: `Some(holds)` when the card could
    /// evaluate it, `None` when the card holds no birth date. On a PIV card
    /// only predicates that already held on the issue date are signed:
    /// `Some(true)` for those, `None` (not proven) for the others.
    pub predicates: Vec<(AttributeId, Option<bool>)>,
    /// The card number, only if `card_number` was requested and disclosed.
    pub card_number: Option<String>,
    /// The card's last valid day. For the desk's decision only: it is not in
    /// [`Verdict::to_json`], because a date shared by every partner that
    /// reads the card helps them join their records.
    pub expires: Date,
    /// Age of the revocation list (now − its issue time), seconds.
    pub revocation_age_secs: u64,
    /// The revocation list was past its next update (plus grace) and the
    /// policy accepted the card anyway ([`StalePolicy::AcceptFlagged`](crate::StalePolicy::AcceptFlagged)).
    pub revocation_stale: bool,
    /// Which kind of card this was.
    pub profile: CardProfile,
}

impl Genuine {
    /// The disclosed value of `id`, if any.
    pub fn attribute(&self, id: AttributeId) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_slice())
    }

    /// The answer to predicate `id` (`Some(true)`: holds).
    pub fn predicate(&self, id: AttributeId) -> Option<bool> {
        self.predicates
            .iter()
            .find(|(i, _)| *i == id)
            .and_then(|(_, v)| *v)
    }
}

impl std::fmt::Debug for Genuine {
    /// Attribute values and the pseudonym print as `REDACTED` (logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.attributes.iter().map(|(id, _)| id.name()).collect();
        f.debug_struct("Genuine")
            .field("attributes", &names)
            .field("pseudonym", &self.pseudonym.map(|_| "REDACTED"))
            .field("predicates", &self.predicates)
            .field(
                "card_number",
                &self.card_number.as_ref().map(|_| "REDACTED"),
            )
            .field("expires", &self.expires)
            .field("revocation_age_secs", &self.revocation_age_secs)
            .field("revocation_stale", &self.revocation_stale)
            .field("profile", &self.profile)
            .finish()
    }
}

/// The outcome of one verification (SPEC §8). Exactly one variant per reason.
///
/// | Code | `kind()` | Meaning |
/// |---|---|---|
/// | 0 | `genuine` | genuine, valid, unrevoked card of this city |
/// | 10 | `not_a_citycard` | no citycard application (SELECT `6A82` or not a citycard FCI) |
/// | 11 | `blank` | a citycard not (yet) issued |
/// | 12 | `terminated` | a terminated card (SELECT `6283`) |
/// | 13 | `card_refused` | the card refused this reader (e.g. another city's card) |
/// | 14 | `unauthorised` | the request exceeds what the reader certificate grants |
/// | 15 | `credential_expired` | the reader certificate is not valid today |
/// | 20 | `tampered` | the response is malformed or does not decrypt / match its digests |
/// | 21 | `replay` | the response answers another tap (recorded and replayed) |
/// | 22 | `clone` | card authentication failed: the card lacks the certified key |
/// | 23 | `unknown_issuer` | the record's station is not in the trust bundle |
/// | 24 | `bad_issuer_signature` | the record's station signature does not verify |
/// | 25 | `station_not_valid_at_issue` | the station certificate did not cover the issue date |
/// | 30 | `expired` | the card's validity ended |
/// | 31 | `not_yet_valid` | the card's validity has not begun |
/// | 32 | `revoked` | the card is in the revocation list |
/// | 33 | `revocation_list_stale` | the revocation list is too old (policy reject) |
/// | 40 | `card_removed` | the card left the field during the verification |
/// | 41 | `transport_error` | the reader or link failed |
///
/// Codes 1 and 2 are left to programs for their own errors and usage errors.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A genuine, valid, unrevoked card; what it disclosed.
    Genuine(Genuine),
    /// Not a citycard.
    NotACitycard,
    /// A citycard that is not issued (blank, anchored or being personalised).
    Blank,
    /// A terminated card.
    Terminated,
    /// The card refused this reader, and neither the request nor the reader
    /// certificate's dates explain it: typically another city's card.
    CardRefused,
    /// The policy asked for attributes the reader certificate does not grant.
    Unauthorised {
        /// The requested attributes outside the grants.
        not_granted: AttributeSet,
    },
    /// The reader's own certificate is not valid today.
    CredentialExpired {
        /// First valid day of the reader certificate.
        effective: Date,
        /// Last valid day of the reader certificate.
        expiry: Date,
    },
    /// The card's response is malformed, does not decrypt, or a disclosed
    /// value does not match its signed digest.
    Tampered {
        /// What failed (protocol-level; no card data).
        detail: String,
    },
    /// The response carries another tap's challenge echo (a replay).
    Replay,
    /// Card authentication failed: the MAC keyed with the certified card key
    /// (citycard applet), or the signature by the certified `9E` key over
    /// this tap's challenge (PIV, where a replayed answer also lands here).
    Clone,
    /// The record was signed by a station the trust bundle does not know.
    UnknownIssuer,
    /// The record's issue date is outside its station certificate's validity.
    StationNotValidAtIssue,
    /// The record's station signature does not verify.
    BadIssuerSignature,
    /// The card expired.
    Expired {
        /// Its last valid day.
        on: Date,
    },
    /// The card's validity starts later.
    NotYetValid {
        /// Its first valid day.
        from: Date,
    },
    /// The card is revoked.
    Revoked,
    /// The revocation list is past its next update plus grace (policy reject).
    RevocationListStale {
        /// The list's next update, Unix seconds.
        next_update: u64,
    },
    /// The card was removed during the verification.
    CardRemoved,
    /// The reader or link failed.
    TransportError(LinkFailure),
}

/// The transport error behind [`Verdict::TransportError`], kept typed (its
/// [`std::error::Error::source`] is the [`TransportError`]) and shared, so a
/// verdict stays cheap to clone. Two failures are equal when they read the
/// same.
#[derive(Clone, Debug)]
pub struct LinkFailure(Arc<TransportError>);

impl LinkFailure {
    /// The transport's error.
    pub fn transport_error(&self) -> &TransportError {
        &self.0
    }
}

impl From<TransportError> for LinkFailure {
    fn from(e: TransportError) -> Self {
        Self(Arc::new(e))
    }
}

impl PartialEq for LinkFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for LinkFailure {}

impl std::fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LinkFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl Verdict {
    /// The process exit code for this verdict (table on [`Verdict`]); stable
    /// across versions, 0 only for [`Verdict::Genuine`].
    pub fn code(&self) -> u8 {
        match self {
            Self::Genuine(_) => 0,
            Self::NotACitycard => 10,
            Self::Blank => 11,
            Self::Terminated => 12,
            Self::CardRefused => 13,
            Self::Unauthorised { .. } => 14,
            Self::CredentialExpired { .. } => 15,
            Self::Tampered { .. } => 20,
            Self::Replay => 21,
            Self::Clone => 22,
            Self::UnknownIssuer => 23,
            Self::BadIssuerSignature => 24,
            Self::StationNotValidAtIssue => 25,
            Self::Expired { .. } => 30,
            Self::NotYetValid { .. } => 31,
            Self::Revoked => 32,
            Self::RevocationListStale { .. } => 33,
            Self::CardRemoved => 40,
            Self::TransportError(_) => 41,
        }
    }

    /// The verdict's name, snake_case, as in the JSON `verdict` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Genuine(_) => "genuine",
            Self::NotACitycard => "not_a_citycard",
            Self::Blank => "blank",
            Self::Terminated => "terminated",
            Self::CardRefused => "card_refused",
            Self::Unauthorised { .. } => "unauthorised",
            Self::CredentialExpired { .. } => "credential_expired",
            Self::Tampered { .. } => "tampered",
            Self::Replay => "replay",
            Self::Clone => "clone",
            Self::UnknownIssuer => "unknown_issuer",
            Self::BadIssuerSignature => "bad_issuer_signature",
            Self::StationNotValidAtIssue => "station_not_valid_at_issue",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::RevocationListStale { .. } => "revocation_list_stale",
            Self::CardRemoved => "card_removed",
            Self::TransportError(_) => "transport_error",
        }
    }

    /// `true` only for [`Verdict::Genuine`].
    pub fn is_genuine(&self) -> bool {
        matches!(self, Self::Genuine(_))
    }

    /// The genuine card's disclosure, if genuine.
    pub fn genuine(&self) -> Option<&Genuine> {
        match self {
            Self::Genuine(g) => Some(g),
            _ => None,
        }
    }

    /// One JSON object for other systems:
    ///
    /// ```json
    /// { "schema_version": 1, "verdict": "genuine", "code": 0,
    ///   "attributes": { "resident": true, "name": "…", "birth_date": "1958-03-14",
    ///                   "age_over_65": true },
    ///   "pseudonym": "<32 hex>", "revocation_age_secs": 3600, "revocation_stale": false,
    ///   "profile": "citycard" }
    /// ```
    ///
    /// Attributes appear by name, only those disclosed: dates as YYYY-MM-DD,
    /// `resident` as `true`, text as strings, issuer-defined bytes as hex,
    /// predicates as `true`/`false` (`null` when the card could not evaluate
    /// them). A refusal carries its reason's fields (`not_granted`,
    /// `expired_on`, …; described in `schemas/verdict.v1.json`). A genuine
    /// card's JSON carries nothing else that identifies it: no card key,
    /// signature, revocation id, digest, or expiry date.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(crate::json::VerdictJson::from(self)).unwrap_or(Value::Null)
    }
}
