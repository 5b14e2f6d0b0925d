//! The JSON documents partners consume, as serde types: the verdict
//! (`schemas/verdict.v1.json`), the result or error of one verification
//! (`schemas/verify.v1.json`) and the event lines of the tap service
//! (`schemas/tap-event.v1.json`).
//!
//! Every document carries `schema_version` (1). Dates are UTC `YYYY-MM-DD`;
//! instants are RFC 3339 UTC strings with milliseconds
//! (`2026-11-26T12:00:00.123Z`); durations are named for their unit
//! (`_secs`, `_ms`). Consumers ignore keys they do not know: new optional
//! keys may be added within a schema version.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citycard_proto::attr::AttributeKind;
use citycard_proto::{attr::AttributeId, date::Date};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Verdict;

/// Version of every JSON document of this module.
pub const SCHEMA_VERSION: u64 = 1;

/// One verdict (`schemas/verdict.v1.json`): [`Verdict::to_json`].
///
/// `verdict` and `code` are always present. A genuine card adds
/// `attributes`, `revocation_age_secs`, `revocation_stale`, `profile` and,
/// if asked for, `pseudonym`; a refusal adds only its reason's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictJson {
    /// Always 1.
    pub schema_version: u64,
    /// The verdict's name ([`Verdict::kind`]).
    pub verdict: String,
    /// Its stable code ([`Verdict::code`]): 0 only for a genuine card.
    pub code: u8,
    /// Genuine: the disclosed attributes by name. Dates `YYYY-MM-DD`,
    /// `resident` `true`, text as strings, issuer-defined bytes as hex, age
    /// predicates `true`/`false`/`null` (not evaluable or not proven).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, Value>>,
    /// Genuine, when asked for: this partner's pseudonym, 32 lowercase hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym: Option<String>,
    /// Genuine: age of the revocation list (now − its issue time), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_age_secs: Option<u64>,
    /// Genuine: the list was past next update + grace and the policy accepted anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_stale: Option<bool>,
    /// Genuine: `citycard` or `piv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// `unauthorised`: the requested attributes the credential does not grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_granted: Option<Vec<String>>,
    /// `credential_expired`: the reader certificate's first valid day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_effective: Option<String>,
    /// `credential_expired`: the reader certificate's last valid day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_expiry: Option<String>,
    /// `tampered`, `transport_error`: what failed (protocol-level, no card data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `expired`: the card's last valid day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_on: Option<String>,
    /// `not_yet_valid`: the card's first valid day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// `revocation_list_stale`: the list's next update (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
}

impl VerdictJson {
    fn bare(v: &Verdict) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            verdict: v.kind().to_owned(),
            code: v.code(),
            attributes: None,
            pseudonym: None,
            revocation_age_secs: None,
            revocation_stale: None,
            profile: None,
            not_granted: None,
            credential_effective: None,
            credential_expiry: None,
            detail: None,
            expired_on: None,
            valid_from: None,
            next_update: None,
        }
    }
}

impl From<&Verdict> for VerdictJson {
    fn from(v: &Verdict) -> Self {
        let mut o = Self::bare(v);
        match v {
            Verdict::Genuine(g) => {
                let mut attrs = BTreeMap::new();
                for (id, value) in &g.attributes {
                    attrs.insert(id.name().to_owned(), attribute_json(*id, value));
                }
                for (id, holds) in &g.predicates {
                    attrs.insert(id.name().to_owned(), (*holds).into());
                }
                o.attributes = Some(attrs);
                o.pseudonym = g.pseudonym.map(hex::encode);
                o.revocation_age_secs = Some(g.revocation_age_secs);
                o.revocation_stale = Some(g.revocation_stale);
                o.profile = Some(g.profile.name().to_owned());
            }
            Verdict::Unauthorised { not_granted } => {
                o.not_granted = Some(not_granted.iter().map(|id| id.name().to_owned()).collect());
            }
            Verdict::CredentialExpired { effective, expiry } => {
                o.credential_effective = Some(effective.to_string());
                o.credential_expiry = Some(expiry.to_string());
            }
            Verdict::Tampered { detail } => o.detail = Some(detail.clone()),
            Verdict::TransportError(failure) => o.detail = Some(failure.to_string()),
            Verdict::Expired { on } => o.expired_on = Some(on.to_string()),
            Verdict::NotYetValid { from } => o.valid_from = Some(from.to_string()),
            Verdict::RevocationListStale { next_update } => {
                o.next_update = Some(rfc3339_unix(*next_update));
            }
            _ => {}
        }
        o
    }
}

/// A stored attribute's value as JSON.
fn attribute_json(id: AttributeId, value: &[u8]) -> Value {
    match id {
        AttributeId::BIRTH_DATE => match Date::from_bytes(value) {
            Ok(d) => Value::String(d.to_string()),
            Err(_) => Value::Null,
        },
        AttributeId::RESIDENT => Value::Bool(value == [1]),
        _ if id.get() >= AttributeId::ISSUER_DEFINED_FIRST => Value::String(hex::encode(value)),
        _ if id.kind() == AttributeKind::Stored => match std::str::from_utf8(value) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => Value::String(hex::encode(value)),
        },
        _ => Value::Null,
    }
}

/// What `citycard verify --json`, the C ABI and the Python binding return
/// for one verification (`schemas/verify.v1.json`): a verdict, or an error
/// that prevented one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // one per verification: boxing buys nothing
pub enum VerifyJson {
    /// A card was verified.
    Verdict(VerifiedJson),
    /// No verdict: the trust could not be loaded, no card came, the reader failed.
    Error(ErrorJson),
}

/// A verdict with where and how it was reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifiedJson {
    /// The verdict.
    #[serde(flatten)]
    pub verdict: VerdictJson,
    /// The reader's full name (`emulated:FILE` for the emulated card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
    /// Command APDUs the tap took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apdus: Option<u64>,
    /// Connection to verdict, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_ms: Option<f64>,
}

/// Why there is no verdict (`schemas/verify.v1.json`, `error` branch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    /// Always 1.
    pub schema_version: u64,
    /// What kind of error, snake_case, e.g. `trust_unusable`, `no_card`,
    /// `reader_not_found`, `pcsc_unavailable`, `usage`, `io`.
    pub error: String,
    /// For people.
    pub message: String,
    /// The exit code (1 error, 2 usage, 3 unusable trust bundle or credential).
    pub code: u8,
}

impl ErrorJson {
    /// An error document.
    pub fn new(error: &str, message: impl Into<String>, code: u8) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            error: error.to_owned(),
            message: message.into(),
            code,
        }
    }
}

/// One event line of the tap service (`schemas/tap-event.v1.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventJson {
    /// Always 1.
    pub schema_version: u64,
    /// When, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The event (its `event` field names it).
    #[serde(flatten)]
    pub body: EventBody,
}

/// The event-specific part of an [`EventJson`], tagged by `event`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventBody {
    /// A card was verified.
    Tap {
        /// The reader's full name.
        reader: String,
        /// The verdict.
        verdict: VerdictJson,
        /// Timings.
        timing_ms: TimingJson,
    },
    /// The service started (first line): who it is and what it watches.
    Started {
        /// `watch` or `serve`.
        service: String,
        /// The city's issuer id.
        issuer: String,
        /// This partner's name in its credential.
        partner: String,
        /// The reader names asked for; empty: every reader.
        readers: Vec<String>,
        /// The trust bundle's issue time.
        bundle_issued_at: String,
        /// The revocation list's sequence number.
        revocation_sequence: u64,
        /// When the city plans the next revocation list.
        revocation_next_update: String,
        /// Seconds between heartbeats (absent: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_secs: Option<u64>,
        /// `serve`: the URL of the desk page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// The service is alive.
    Heartbeat {
        /// The readers watched now.
        readers: Vec<String>,
        /// Trust generation (1, then +1 per reload).
        trust_generation: u64,
        /// Seconds since the start.
        uptime_secs: u64,
        /// Age of the revocation list in use, seconds.
        revocation_age_secs: u64,
    },
    /// A reader is watched.
    ReaderAdded {
        /// The reader's full name.
        reader: String,
    },
    /// A watched reader disappeared.
    ReaderRemoved {
        /// The reader's full name.
        reader: String,
    },
    /// A reader, the reader service or the selection failed; the service keeps going.
    ReaderError {
        /// The reader, if the error concerns one.
        reader: Option<String>,
        /// What went wrong.
        error: String,
        /// When the service tries again, if on a schedule.
        retry_in_ms: Option<f64>,
    },
    /// New trust is used from the next tap.
    TrustReloaded {
        /// 1 for the first trust, +1 per reload.
        generation: u64,
        /// The new bundle's issue time.
        bundle_issued_at: String,
        /// The new revocation list's sequence number.
        revocation_sequence: u64,
    },
    /// A reload was refused; the previous trust stays.
    TrustReloadFailed {
        /// Why.
        error: String,
    },
    /// Something needs attention; the service keeps going.
    Warning {
        /// What, snake_case (e.g. `no_matching_reader`, `revocation_list_stale_soon`).
        warning: String,
        /// For people.
        message: String,
        /// The reader, if it concerns one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reader: Option<String>,
    },
    /// The service stops on an error (last line); the process exits with `exit_code`.
    Fatal {
        /// What, snake_case: `pcsc_unavailable`, `no_matching_reader`,
        /// `trust_unusable`, `listen_failed`, `usage`, `internal`.
        error: String,
        /// For people.
        message: String,
        /// The process's exit status.
        exit_code: u8,
    },
    /// The service stops normally (last line): `signal` (SIGINT or SIGTERM).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// How long a tap took, milliseconds (microsecond precision).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimingJson {
    /// Card detected → verdict.
    pub total: f64,
    /// Connecting to the card.
    pub connect: f64,
    /// The verification.
    pub verify: f64,
}

/// Milliseconds, rounded to the microsecond.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (times before 1970 print as the epoch).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let date = Date::from_days_since_epoch(days)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| "9999-12-31".into());
    let s = secs % 86_400;
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since.subsec_millis()
    )
}

/// [`rfc3339`] of Unix seconds.
pub fn rfc3339_unix(secs: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_694_400_123);
        assert_eq!(rfc3339(t), "2026-11-26T12:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_unix(951_868_799), "2000-02-29T23:59:59.000Z");
    }

    #[test]
    fn verify_documents_round_trip() {
        let v = VerifyJson::Verdict(VerifiedJson {
            verdict: VerdictJson::from(&Verdict::Revoked),
            reader: Some("R".into()),
            apdus: Some(3),
            timing_ms: Some(1.5),
        });
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({"schema_version":1,"verdict":"revoked","code":32,
                               "reader":"R","apdus":3,"timing_ms":1.5})
        );
        assert_eq!(serde_json::from_str::<VerifyJson>(&text).unwrap(), v);
        let e = VerifyJson::Error(ErrorJson::new("no_card", "no card", 1));
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<VerifyJson>(&text).unwrap(), e);
    }

    /// One of every verdict, each field filled as the verifier fills it.
    fn every_verdict() -> Vec<Verdict> {
        let d = |y, m, day| Date::new(y, m, day).unwrap();
        let genuine = crate::Genuine {
            attributes: vec![
                (AttributeId::NAME, b"Alex Moreau".to_vec()),
                (AttributeId::BIRTH_DATE, d(1958, 3, 14).to_bytes().to_vec()),
                (AttributeId::LANGUAGE, b"fr".to_vec()),
                (AttributeId::RESIDENT, vec![1]),
                (AttributeId::new(24).unwrap(), vec![0xAB, 0x01]),
            ],
            pseudonym: Some([0x5A; 16]),
            predicates: vec![
                (AttributeId::AGE_OVER_18, Some(true)),
                (AttributeId::AGE_OVER_21, Some(false)),
                (AttributeId::AGE_OVER_65, None),
            ],
            card_number: None,
            expires: d(2031, 1, 1),
            revocation_age_secs: 3600,
            revocation_stale: false,
            profile: crate::CardProfile::Citycard,
        };
        let mut piv = genuine.clone();
        piv.profile = crate::CardProfile::Piv;
        piv.pseudonym = None;
        piv.revocation_stale = true;
        vec![
            Verdict::Genuine(genuine),
            Verdict::Genuine(piv),
            Verdict::NotACitycard,
            Verdict::Blank,
            Verdict::Terminated,
            Verdict::CardRefused,
            Verdict::Unauthorised {
                not_granted: [AttributeId::NAME, AttributeId::AGE_OVER_65]
                    .into_iter()
                    .collect(),
            },
            Verdict::CredentialExpired {
                effective: d(2025, 1, 1),
                expiry: d(2025, 12, 31),
            },
            Verdict::Tampered {
                detail: "digest mismatch".into(),
            },
            Verdict::Replay,
            Verdict::Clone,
            Verdict::UnknownIssuer,
            Verdict::StationNotValidAtIssue,
            Verdict::BadIssuerSignature,
            Verdict::Expired { on: d(2026, 1, 31) },
            Verdict::NotYetValid {
                from: d(2027, 2, 1),
            },
            Verdict::Revoked,
            Verdict::RevocationListStale {
                next_update: 1_795_694_400,
            },
            Verdict::CardRemoved,
            Verdict::TransportError(citycard_transport::TransportError::NoService.into()),
        ]
    }

    #[test]
    fn every_verdict_matches_the_schema() {
        use citycard_testkit::schemas::{assert_valid, problems, Schema};
        let all = every_verdict();
        let kinds: std::collections::BTreeSet<&str> = all.iter().map(Verdict::kind).collect();
        assert_eq!(kinds.len(), 19, "one of each verdict");
        for v in &all {
            let doc = v.to_json();
            assert_valid(Schema::Verdict, &doc);
            // The serde type reads it back unchanged.
            let back: VerdictJson = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(serde_json::to_value(&back).unwrap(), doc);
            // As verify prints it: with reader, APDUs and timing.
            let verify = VerifyJson::Verdict(VerifiedJson {
                verdict: back,
                reader: Some("emulated:card.state".into()),
                apdus: Some(3),
                timing_ms: Some(2.5),
            });
            assert_valid(Schema::Verify, &serde_json::to_value(&verify).unwrap());
        }
        // The schema can fail: a wrong code, a refusal with attributes, a bad pseudonym.
        let mut wrong = Verdict::Revoked.to_json();
        wrong["code"] = 0.into();
        assert!(!problems(Schema::Verdict, &wrong).is_empty());
        let mut leaky = Verdict::Revoked.to_json();
        leaky["attributes"] = serde_json::json!({"resident": true});
        assert!(!problems(Schema::Verdict, &leaky).is_empty());
        let mut genuine = all[0].to_json();
        genuine["pseudonym"] = "XYZ".into();
        assert!(!problems(Schema::Verdict, &genuine).is_empty());
        let mut unknown = all[0].to_json();
        unknown["attributes"]["nationality"] = "x".into();
        assert!(!problems(Schema::Verdict, &unknown).is_empty());
        for (kind, code) in [("usage", 2), ("trust_unusable", 3), ("no_card", 1)] {
            let e = VerifyJson::Error(ErrorJson::new(kind, "m", code));
            assert_valid(Schema::Verify, &serde_json::to_value(&e).unwrap());
        }
        let e = VerifyJson::Error(ErrorJson::new("no_card", "m", 7));
        assert!(!problems(Schema::Verify, &serde_json::to_value(&e).unwrap()).is_empty());
    }

    #[test]
    fn stale_next_update_is_rfc3339() {
        let v = VerdictJson::from(&Verdict::RevocationListStale {
            next_update: 1_795_694_400,
        });
        assert_eq!(v.next_update.as_deref(), Some("2026-11-26T12:00:00.000Z"));
    }
}
