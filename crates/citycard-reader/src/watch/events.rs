//! [`TapEvent`]: what the watcher reports, and its JSON line.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

#[cfg(feature = "tokio")]
use super::Shutdown;
use super::{ReaderSelection, TrustSource};
pub use crate::json::rfc3339;
use crate::json::{millis, rfc3339_unix, EventBody, EventJson, TimingJson, VerdictJson};
use crate::Verdict;

/// Version of the JSON lines [`TapEvent::to_json_line`] produces.
pub const EVENT_SCHEMA_VERSION: u64 = crate::json::SCHEMA_VERSION;

/// How long a tap took, measured from the moment the reader reported the card.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapTiming {
    /// Card detected → verdict.
    pub total: Duration,
    /// Connecting to the card (PC/SC `SCardConnect`).
    pub connect: Duration,
    /// The verification itself ([`verify`](crate::verify)).
    pub verify: Duration,
}

/// One tap: a card arrived at a reader and was verified.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    /// When the verdict was reached.
    pub timestamp: SystemTime,
    /// The reader's full name.
    pub reader: String,
    /// The verdict; its JSON form ([`Verdict::to_json`]) is the line's body.
    pub verdict: Verdict,
    /// Timings.
    pub timing: TapTiming,
}

/// What the watcher reports: taps, and (for logs) reader and trust changes.
///
/// Each event is one JSON line ([`to_json_line`](Self::to_json_line)) with
/// `schema_version`, `event` (the [`kind`](Self::kind)) and an RFC 3339 UTC
/// `timestamp`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapEvent {
    /// A card was verified (`"event":"tap"`).
    Tap(Tap),
    /// A reader appeared (or was present at start) and is now watched.
    ReaderAdded {
        /// When.
        timestamp: SystemTime,
        /// The reader's full name.
        reader: String,
    },
    /// A watched reader disappeared (unplugged, possibly mid-tap).
    ReaderRemoved {
        /// When.
        timestamp: SystemTime,
        /// The reader's full name.
        reader: String,
    },
    /// A reader (or, with `reader: None`, the PC/SC service or the reader
    /// selection) failed; the watcher keeps going.
    ReaderError {
        /// When.
        timestamp: SystemTime,
        /// The reader, if the error concerns one.
        reader: Option<String>,
        /// What went wrong.
        error: String,
        /// When the watcher tries again, if it does so on a schedule.
        retry_in: Option<Duration>,
    },
    /// A new trust bundle and credential were loaded and are used from the next tap.
    TrustReloaded {
        /// When.
        timestamp: SystemTime,
        /// Counts successful loads: 1 for the first trust, then +1 per reload.
        generation: u64,
        /// The new bundle's issue time, Unix seconds.
        bundle_issued_at: u64,
        /// The new revocation list's sequence number.
        revocation_sequence: u64,
    },
    /// A reload was refused; the previous trust stays in use.
    TrustReloadFailed {
        /// When.
        timestamp: SystemTime,
        /// Why.
        error: String,
    },
    /// The service started: the first event, before any reader event.
    Started {
        /// When.
        timestamp: SystemTime,
        /// `watch` or `serve`.
        service: String,
        /// The city's issuer id.
        issuer: String,
        /// This partner's name.
        partner: String,
        /// The reader names asked for; empty: every reader.
        readers: Vec<String>,
        /// The bundle's issue time, Unix seconds.
        bundle_issued_at: u64,
        /// The revocation list's sequence number.
        revocation_sequence: u64,
        /// The revocation list's next update, Unix seconds.
        revocation_next_update: u64,
        /// The heartbeat interval, if any.
        heartbeat: Option<Duration>,
        /// `serve`: the desk page's URL.
        url: Option<String>,
    },
    /// The watcher is alive ([`WatchConfig::heartbeat`](crate::WatchConfig::heartbeat)).
    Heartbeat {
        /// When.
        timestamp: SystemTime,
        /// The readers watched now.
        readers: Vec<String>,
        /// The trust generation in use.
        trust_generation: u64,
        /// Time since the watcher started.
        uptime: Duration,
        /// Age of the revocation list in use, seconds.
        revocation_age_secs: u64,
    },
    /// Something needs attention; the service keeps going.
    Warning {
        /// When.
        timestamp: SystemTime,
        /// What, snake_case (e.g. `no_matching_reader`).
        warning: String,
        /// For people.
        message: String,
        /// The reader, if it concerns one.
        reader: Option<String>,
    },
    /// The service stops on an error; the process exits with `exit_code`.
    Fatal {
        /// When.
        timestamp: SystemTime,
        /// What, snake_case (`pcsc_unavailable`, `no_matching_reader`, …).
        error: String,
        /// For people.
        message: String,
        /// The process's exit status.
        exit_code: u8,
    },
    /// The service stops normally (`signal`: SIGINT or SIGTERM).
    Stopped {
        /// When.
        timestamp: SystemTime,
        /// Why.
        reason: String,
    },
}

impl TapEvent {
    /// The `event` field: `tap`, `started`, `heartbeat`, `reader_added`,
    /// `reader_removed`, `reader_error`, `trust_reloaded`,
    /// `trust_reload_failed`, `warning`, `fatal` or `stopped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tap(_) => "tap",
            Self::ReaderAdded { .. } => "reader_added",
            Self::ReaderRemoved { .. } => "reader_removed",
            Self::ReaderError { .. } => "reader_error",
            Self::TrustReloaded { .. } => "trust_reloaded",
            Self::TrustReloadFailed { .. } => "trust_reload_failed",
            Self::Started { .. } => "started",
            Self::Heartbeat { .. } => "heartbeat",
            Self::Warning { .. } => "warning",
            Self::Fatal { .. } => "fatal",
            Self::Stopped { .. } => "stopped",
        }
    }

    /// The [`Started`](Self::Started) event for `service` with this trust.
    pub fn started(
        service: &str,
        trust: &TrustSource,
        readers: &ReaderSelection,
        heartbeat: Option<Duration>,
        url: Option<String>,
    ) -> Self {
        let current = trust.current();
        let body = current.bundle().body();
        let revocations = body.revocations.body();
        Self::Started {
            timestamp: SystemTime::now(),
            service: service.to_owned(),
            issuer: current.issuer_id().to_owned(),
            partner: current.credential().partner().to_owned(),
            readers: match readers {
                ReaderSelection::All => Vec::new(),
                ReaderSelection::Names(n) => n.clone(),
            },
            bundle_issued_at: body.issued_at,
            revocation_sequence: revocations.sequence.into(),
            revocation_next_update: revocations.next_update,
            heartbeat,
            url,
        }
    }

    /// A [`Fatal`](Self::Fatal) event now.
    pub fn fatal(error: &str, message: impl Into<String>, exit_code: u8) -> Self {
        Self::Fatal {
            timestamp: SystemTime::now(),
            error: error.to_owned(),
            message: message.into(),
            exit_code,
        }
    }

    /// A [`Warning`](Self::Warning) event now.
    pub fn warning(warning: &str, message: impl Into<String>, reader: Option<String>) -> Self {
        Self::Warning {
            timestamp: SystemTime::now(),
            warning: warning.to_owned(),
            message: message.into(),
            reader,
        }
    }

    /// The tap, if this is one.
    pub fn tap(&self) -> Option<&Tap> {
        match self {
            Self::Tap(t) => Some(t),
            _ => None,
        }
    }

    /// When the event happened.
    pub fn timestamp(&self) -> SystemTime {
        match self {
            Self::Tap(t) => t.timestamp,
            Self::ReaderAdded { timestamp, .. }
            | Self::ReaderRemoved { timestamp, .. }
            | Self::ReaderError { timestamp, .. }
            | Self::TrustReloaded { timestamp, .. }
            | Self::TrustReloadFailed { timestamp, .. }
            | Self::Started { timestamp, .. }
            | Self::Heartbeat { timestamp, .. }
            | Self::Warning { timestamp, .. }
            | Self::Fatal { timestamp, .. }
            | Self::Stopped { timestamp, .. } => *timestamp,
        }
    }

    /// The reader the event concerns, if any.
    pub fn reader(&self) -> Option<&str> {
        match self {
            Self::Tap(t) => Some(&t.reader),
            Self::ReaderAdded { reader, .. } | Self::ReaderRemoved { reader, .. } => Some(reader),
            Self::ReaderError { reader, .. } | Self::Warning { reader, .. } => reader.as_deref(),
            _ => None,
        }
    }

    /// The event as its serde document ([`EventJson`],
    /// `schemas/tap-event.v1.json`).
    pub fn to_document(&self) -> EventJson {
        let body = match self {
            Self::Tap(t) => EventBody::Tap {
                reader: t.reader.clone(),
                verdict: VerdictJson::from(&t.verdict),
                timing_ms: TimingJson {
                    total: millis(t.timing.total),
                    connect: millis(t.timing.connect),
                    verify: millis(t.timing.verify),
                },
            },
            Self::ReaderAdded { reader, .. } => EventBody::ReaderAdded {
                reader: reader.clone(),
            },
            Self::ReaderRemoved { reader, .. } => EventBody::ReaderRemoved {
                reader: reader.clone(),
            },
            Self::ReaderError {
                reader,
                error,
                retry_in,
                ..
            } => EventBody::ReaderError {
                reader: reader.clone(),
                error: error.clone(),
                retry_in_ms: retry_in.map(millis),
            },
            Self::TrustReloaded {
                generation,
                bundle_issued_at,
                revocation_sequence,
                ..
            } => EventBody::TrustReloaded {
                generation: *generation,
                bundle_issued_at: rfc3339_unix(*bundle_issued_at),
                revocation_sequence: *revocation_sequence,
            },
            Self::TrustReloadFailed { error, .. } => EventBody::TrustReloadFailed {
                error: error.clone(),
            },
            Self::Started {
                service,
                issuer,
                partner,
                readers,
                bundle_issued_at,
                revocation_sequence,
                revocation_next_update,
                heartbeat,
                url,
                ..
            } => EventBody::Started {
                service: service.clone(),
                issuer: issuer.clone(),
                partner: partner.clone(),
                readers: readers.clone(),
                bundle_issued_at: rfc3339_unix(*bundle_issued_at),
                revocation_sequence: *revocation_sequence,
                revocation_next_update: rfc3339_unix(*revocation_next_update),
                heartbeat_secs: heartbeat.map(|h| h.as_secs()),
                url: url.clone(),
            },
            Self::Heartbeat {
                readers,
                trust_generation,
                uptime,
                revocation_age_secs,
                ..
            } => EventBody::Heartbeat {
                readers: readers.clone(),
                trust_generation: *trust_generation,
                uptime_secs: uptime.as_secs(),
                revocation_age_secs: *revocation_age_secs,
            },
            Self::Warning {
                warning,
                message,
                reader,
                ..
            } => EventBody::Warning {
                warning: warning.clone(),
                message: message.clone(),
                reader: reader.clone(),
            },
            Self::Fatal {
                error,
                message,
                exit_code,
                ..
            } => EventBody::Fatal {
                error: error.clone(),
                message: message.clone(),
                exit_code: *exit_code,
            },
            Self::Stopped { reason, .. } => EventBody::Stopped {
                reason: reason.clone(),
            },
        };
        EventJson {
            schema_version: EVENT_SCHEMA_VERSION,
            timestamp: rfc3339(self.timestamp()),
            body,
        }
    }

    /// The event as one JSON object (`schemas/tap-event.v1.json`). A tap:
    ///
    /// ```json
    /// {"schema_version":1,"event":"tap","timestamp":"2026-11-26T12:00:00.123Z",
    ///  "reader":"ACS ACR122U 00 00","verdict":{…Verdict::to_json…},
    ///  "timing_ms":{"total":212.4,"connect":3.1,"verify":209.3}}
    /// ```
    ///
    /// The `verdict` object is [`Verdict::to_json`] unchanged: the disclosed
    /// attributes and the partner's pseudonym, nothing else that identifies
    /// the card.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_document()).unwrap_or(Value::Null)
    }

    /// [`to_json`](Self::to_json) as one line of compact JSON, without the
    /// trailing newline (no value contains a newline: JSON escapes them).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(&self.to_document()).unwrap_or_else(|_| self.to_json().to_string())
    }
}

/// Where events go: returns `false` once nobody listens any more.
pub(crate) type Sink = Arc<dyn Fn(TapEvent) -> bool + Send + Sync>;

/// Adapts a tokio channel for [`watch_with`](super::watch_with) and [`TrustSource::spawn_file_watcher`]:
/// sends each event, waiting (in 5 ms steps, until `shutdown`) while the
/// channel is full; returns `false` once the receiver is gone or on shutdown.
/// Only the thread that sends waits: other readers go on.
#[cfg(feature = "tokio")]
pub fn channel_sink(
    events: tokio::sync::mpsc::Sender<TapEvent>,
    shutdown: Shutdown,
) -> impl Fn(TapEvent) -> bool + Send + Sync + 'static {
    use tokio::sync::mpsc::error::TrySendError;
    move |mut event| loop {
        match events.try_send(event) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(back)) => {
                if shutdown.is_triggered() {
                    return false;
                }
                event = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::UNIX_EPOCH;

    #[test]
    fn event_lines() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_694_400_123);
        let tap = TapEvent::Tap(Tap {
            timestamp: t,
            reader: "R".into(),
            verdict: Verdict::CardRemoved,
            timing: TapTiming {
                total: Duration::from_micros(212_400),
                connect: Duration::from_micros(3_100),
                verify: Duration::from_micros(209_300),
            },
        });
        let line = tap.to_json_line();
        assert!(!line.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            json!({"schema_version": 1, "event": "tap",
                   "timestamp": "2026-11-26T12:00:00.123Z", "reader": "R",
                   "verdict": {"schema_version": 1, "verdict": "card_removed", "code": 40},
                   "timing_ms": {"total": 212.4, "connect": 3.1, "verify": 209.3}})
        );
        let err = TapEvent::ReaderError {
            timestamp: t,
            reader: None,
            error: "x\ny".into(),
            retry_in: Some(Duration::from_millis(500)),
        };
        let line = err.to_json_line();
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "reader_error");
        assert_eq!(v["reader"], Value::Null);
        assert_eq!(v["retry_in_ms"], 500.0);
    }

    #[test]
    fn every_event_matches_the_schema() {
        use citycard_testkit::schemas::{assert_valid, problems, Schema};
        let t = UNIX_EPOCH + Duration::from_millis(1_795_694_400_123);
        let events = vec![
            TapEvent::Tap(Tap {
                timestamp: t,
                reader: "R".into(),
                verdict: Verdict::Revoked,
                timing: TapTiming {
                    total: Duration::from_micros(2_400),
                    connect: Duration::from_micros(100),
                    verify: Duration::from_micros(2_300),
                },
            }),
            TapEvent::Started {
                timestamp: t,
                service: "serve".into(),
                issuer: "LIEGE".into(),
                partner: "library".into(),
                readers: vec![],
                bundle_issued_at: 1_795_000_000,
                revocation_sequence: 4,
                revocation_next_update: 1_796_000_000,
                heartbeat: Some(Duration::from_secs(30)),
                url: Some("http://127.0.0.1:8080/".into()),
            },
            TapEvent::Heartbeat {
                timestamp: t,
                readers: vec!["R".into()],
                trust_generation: 2,
                uptime: Duration::from_secs(90),
                revocation_age_secs: 7,
            },
            TapEvent::ReaderAdded {
                timestamp: t,
                reader: "R".into(),
            },
            TapEvent::ReaderRemoved {
                timestamp: t,
                reader: "R".into(),
            },
            TapEvent::ReaderError {
                timestamp: t,
                reader: None,
                error: "listing readers".into(),
                retry_in: Some(Duration::from_millis(500)),
            },
            TapEvent::ReaderError {
                timestamp: t,
                reader: Some("R".into()),
                error: "stalled".into(),
                retry_in: None,
            },
            TapEvent::TrustReloaded {
                timestamp: t,
                generation: 2,
                bundle_issued_at: 1_795_000_000,
                revocation_sequence: 5,
            },
            TapEvent::TrustReloadFailed {
                timestamp: t,
                error: "rollback".into(),
            },
            TapEvent::warning("no_matching_reader", "none", None),
            TapEvent::warning("revocation_list_stale_soon", "soon", Some("R".into())),
            TapEvent::fatal("pcsc_unavailable", "no pcscd", 1),
            TapEvent::fatal("no_matching_reader", "none", 5),
            TapEvent::Stopped {
                timestamp: t,
                reason: "signal".into(),
            },
        ];
        for e in &events {
            let doc = e.to_json();
            assert_eq!(doc["event"], e.kind());
            assert_valid(Schema::TapEvent, &doc);
            let back: EventJson = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(serde_json::to_value(&back).unwrap(), doc);
        }
        let mut bad = events[0].to_json();
        bad["timestamp"] = 1_795_694_400.into();
        assert!(!problems(Schema::TapEvent, &bad).is_empty());
        let mut bad = events[1].to_json();
        bad["bundle_issued_at"] = 1_795_000_000.into();
        assert!(!problems(Schema::TapEvent, &bad).is_empty());
        let mut bad = events[11].to_json();
        bad["exit_code"] = 0.into();
        assert!(!problems(Schema::TapEvent, &bad).is_empty());
    }
}
