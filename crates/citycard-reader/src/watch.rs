//! The tap service engine for gates and desks: watch PC/SC readers, verify
//! each card that arrives, and report one [`TapEvent`] per tap.
//!
//! # Threads
//!
//! - A **monitor** thread owns one PC/SC context. It lists the readers, keeps
//!   one reader thread per selected reader, and then waits up to
//!   [`WatchConfig::rescan_interval`] (default 500 ms) on the PnP pseudo-reader
//!   `\\?PnP?\Notification`, which wakes it as soon as a reader is plugged or
//!   unplugged. When the PC/SC service does not support PnP notification, the
//!   same bounded wait becomes a plain periodic `list_readers` poll: either
//!   way a new reader is picked up within the rescan interval.
//! - One dedicated **reader thread** per reader, each with its own PC/SC
//!   context: waits for a card with `get_status_change` in slices of
//!   [`WatchConfig::poll_interval`] (so a shutdown is noticed within one
//!   slice), connects, runs [`verify`] with the current
//!   [`Trust`] and [`Policy`], sends the [`TapEvent::Tap`] at once (a gate
//!   opens while the card is still in the field), then waits for the card to
//!   leave before it looks for the next one. A card left on the reader is
//!   thus verified once, not in a loop; a card already on a reader when the
//!   service starts is verified.
//!
//! Reader threads share nothing but the trust ([`TrustSource`], read once
//! per tap) and the event sink, so a slow, stuck or broken reader never holds
//! up the others. A reader thread that fails (its PC/SC context breaks, the
//! service restarts) is reported ([`TapEvent::ReaderError`]) and restarted by
//! the monitor with exponential backoff; a verification still running after
//! [`WatchConfig::card_timeout`] is reported as stalled, and its next APDU
//! fails with a timeout (a PC/SC transmit in flight cannot be interrupted).
//!
//! # Trust reload
//!
//! [`TrustSource`] holds the current `Arc<Trust>` behind a lock that reader
//! threads take for an instant per tap. [`TrustSource::reload_from_files`]
//! (call it on SIGHUP) loads and validates a new bundle and credential and
//! swaps them in only if they are usable; otherwise the old trust stays.
//! [`TrustSource::spawn_file_watcher`] does the same when the files change.
//! A tap in progress finishes with the trust it started with; no tap is
//! dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use citycard_proto::Date;
use citycard_transport::pcsc::{self, ReaderState, Scope, State};
use citycard_transport::{CardChannel, CardTransport, PcscContext, TransactionFn, TransportError};
use serde_json::{json, Map, Value};

use crate::trust::{Freshness, DEFAULT_WARN_BEFORE_SECS};
use crate::{verify, Policy, ReaderError, Trust, Verdict};

/// Version of the JSON lines [`TapEvent::to_json_line`] produces.
pub const EVENT_SCHEMA_VERSION: u64 = 1;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// Which readers to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReaderSelection {
    /// Every reader, including readers plugged in later.
    #[default]
    All,
    /// The readers these names designate: a reader of exactly that name, else
    /// the only reader whose name contains it (case-insensitively). A name
    /// that matches nothing yet is watched for (the reader may be plugged in
    /// later); a name that matches several readers is reported
    /// ([`TapEvent::ReaderError`]) and selects none of them.
    Names(Vec<String>),
}

impl ReaderSelection {
    /// The readers among `available` this selection designates (in
    /// `available` order, without duplicates), and a message for each
    /// ambiguous name.
    pub fn select(&self, available: &[String]) -> (Vec<String>, Vec<String>) {
        let names = match self {
            Self::All => return (available.to_vec(), Vec::new()),
            Self::Names(names) => names,
        };
        let mut chosen = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            if available.iter().any(|r| r == name) {
                chosen.push(name.clone());
                continue;
            }
            let needle = name.to_lowercase();
            let matches: Vec<&String> = available
                .iter()
                .filter(|r| r.to_lowercase().contains(&needle))
                .collect();
            match matches.as_slice() {
                [] => {}
                [only] => chosen.push((*only).clone()),
                many => problems.push(format!(
                    "reader name {name:?} is ambiguous; it matches {many:?}"
                )),
            }
        }
        let selected = available
            .iter()
            .filter(|r| chosen.contains(r))
            .cloned()
            .collect();
        (selected, problems)
    }
}

/// Which clock a tap's [`Policy`] uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system clock, read at each tap ([`Policy::with_now`]; this also
    /// sets `today` from it, replacing a [`Policy::with_today`] override).
    #[default]
    System,
    /// The policy exactly as configured (its `now_unix` and `today`): tests
    /// and replays.
    Fixed,
}

/// What [`watch`] / [`watch_blocking`] watch and how.
///
/// Build it with [`WatchConfig::new`] and set the fields you need.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The readers to watch (default: all).
    pub readers: ReaderSelection,
    /// The policy for every tap (attributes asked for, staleness).
    pub policy: Policy,
    /// Whether the policy's clock is refreshed per tap (default: yes).
    pub clock: Clock,
    /// Longest a verification may take (default 5 s): after it, the tap is
    /// reported as stalled and its next APDU fails (the verdict is then
    /// `transport_error`).
    pub card_timeout: Duration,
    /// Longest a reader thread blocks in one PC/SC wait (default 250 ms): the
    /// bound on noticing a shutdown or an unplugged reader.
    pub poll_interval: Duration,
    /// Longest the monitor waits between two reader scans (default 500 ms).
    pub rescan_interval: Duration,
    /// First delay before a failed reader thread is restarted (default
    /// 500 ms); it doubles with each failure in a row up to
    /// [`max_restart_backoff`](Self::max_restart_backoff).
    pub restart_backoff: Duration,
    /// Longest delay between restarts of a failing reader thread (default 30 s).
    pub max_restart_backoff: Duration,
    /// How long shutdown waits for reader threads to end (default 3 s). A
    /// thread stuck in a PC/SC call after that is left to end by itself.
    pub shutdown_grace: Duration,
}

impl WatchConfig {
    /// All readers, this policy with the system clock, default timings.
    pub fn new(policy: Policy) -> Self {
        Self {
            readers: ReaderSelection::All,
            policy,
            clock: Clock::System,
            card_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_millis(500),
            restart_backoff: Duration::from_millis(500),
            max_restart_backoff: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(3),
        }
    }

    /// Watches only these readers.
    pub fn with_readers(mut self, readers: ReaderSelection) -> Self {
        self.readers = readers;
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The policy for a tap happening now.
    fn policy_now(&self) -> Policy {
        match self.clock {
            Clock::Fixed => self.policy.clone(),
            Clock::System => self.policy.clone().with_now(unix_now()),
        }
    }
}

/// A shutdown signal shared by the caller and the watcher's threads.
///
/// Cloning shares the signal. Every wait in the watcher is bounded, so all
/// threads notice [`trigger`](Self::trigger) within about one
/// [`WatchConfig::poll_interval`].
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps `total` in short slices; `false` if triggered meanwhile.
    fn sleep(&self, total: Duration) -> bool {
        sleep_unless(total, || self.is_triggered())
    }
}

/// Sleeps `total` in slices of at most 50 ms; `false` if `stop()` became true.
fn sleep_unless(total: Duration, stop: impl Fn() -> bool) -> bool {
    let end = Instant::now() + total;
    loop {
        if stop() {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// How long a tap took, measured from the moment the reader reported the card.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapTiming {
    /// Card detected → verdict.
    pub total: Duration,
    /// Connecting to the card (PC/SC `SCardConnect`).
    pub connect: Duration,
    /// The verification itself ([`verify`]).
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
    /// The revocation list in use is within the warning window before its
    /// next update, or past it (then cards are refused by default): the city
    /// must publish, or the partner fetch, a new bundle.
    RevocationListExpiring {
        /// When.
        timestamp: SystemTime,
        /// The list's next update, Unix seconds.
        next_update: u64,
        /// Seconds until then (0 once past).
        remaining_secs: u64,
        /// `true` once past the next update.
        stale: bool,
    },
}

impl TapEvent {
    /// The `event` field: `tap`, `reader_added`, `reader_removed`,
    /// `reader_error`, `trust_reloaded` or `trust_reload_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tap(_) => "tap",
            Self::ReaderAdded { .. } => "reader_added",
            Self::ReaderRemoved { .. } => "reader_removed",
            Self::ReaderError { .. } => "reader_error",
            Self::TrustReloaded { .. } => "trust_reloaded",
            Self::TrustReloadFailed { .. } => "trust_reload_failed",
            Self::RevocationListExpiring { .. } => "revocation_list_expiring",
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
            | Self::RevocationListExpiring { timestamp, .. } => *timestamp,
        }
    }

    /// The reader the event concerns, if any.
    pub fn reader(&self) -> Option<&str> {
        match self {
            Self::Tap(t) => Some(&t.reader),
            Self::ReaderAdded { reader, .. } | Self::ReaderRemoved { reader, .. } => Some(reader),
            Self::ReaderError { reader, .. } => reader.as_deref(),
            Self::TrustReloaded { .. }
            | Self::TrustReloadFailed { .. }
            | Self::RevocationListExpiring { .. } => None,
        }
    }

    /// The event as one JSON object. A tap:
    ///
    /// ```json
    /// {"schema_version":1,"event":"tap","timestamp":"2026-11-26T12:00:00.123Z",
    ///  "reader":"ACS ACR122U 00 00","verdict":{…Verdict::to_json…},
    ///  "timing_ms":{"total":212.4,"connect":3.1,"verify":209.3}}
    /// ```
    ///
    /// The `verdict` object is [`Verdict::to_json`] unchanged: the disclosed
    /// attributes and the partner's pseudonym, nothing else that identifies
    /// the card. Other events carry `reader`, `error`, `retry_in_ms`,
    /// `generation`, `bundle_issued_at`, `revocation_sequence`,
    /// `next_update`, `remaining_secs`, `stale` as they apply.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("schema_version".into(), json!(EVENT_SCHEMA_VERSION));
        o.insert("event".into(), json!(self.kind()));
        o.insert("timestamp".into(), json!(rfc3339(self.timestamp())));
        match self {
            Self::Tap(t) => {
                o.insert("reader".into(), json!(t.reader));
                o.insert("verdict".into(), t.verdict.to_json());
                o.insert(
                    "timing_ms".into(),
                    json!({
                        "total": millis(t.timing.total),
                        "connect": millis(t.timing.connect),
                        "verify": millis(t.timing.verify),
                    }),
                );
            }
            Self::ReaderAdded { reader, .. } | Self::ReaderRemoved { reader, .. } => {
                o.insert("reader".into(), json!(reader));
            }
            Self::ReaderError {
                reader,
                error,
                retry_in,
                ..
            } => {
                o.insert("reader".into(), json!(reader));
                o.insert("error".into(), json!(error));
                o.insert("retry_in_ms".into(), json!(retry_in.map(millis)));
            }
            Self::TrustReloaded {
                generation,
                bundle_issued_at,
                revocation_sequence,
                ..
            } => {
                o.insert("generation".into(), json!(generation));
                o.insert("bundle_issued_at".into(), json!(bundle_issued_at));
                o.insert("revocation_sequence".into(), json!(revocation_sequence));
            }
            Self::TrustReloadFailed { error, .. } => {
                o.insert("error".into(), json!(error));
            }
            Self::RevocationListExpiring {
                next_update,
                remaining_secs,
                stale,
                ..
            } => {
                o.insert("next_update".into(), json!(next_update));
                o.insert("remaining_secs".into(), json!(remaining_secs));
                o.insert("stale".into(), json!(stale));
            }
        }
        Value::Object(o)
    }

    /// [`to_json`](Self::to_json) as one line of compact JSON, without the
    /// trailing newline (no value contains a newline: JSON escapes them).
    pub fn to_json_line(&self) -> String {
        self.to_json().to_string()
    }
}

/// Milliseconds, rounded to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn unix_now() -> u64 {
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

/// Where events go: returns `false` once nobody listens any more.
type Sink = Arc<dyn Fn(TapEvent) -> bool + Send + Sync>;

/// Adapts a tokio channel for [`watch`] and [`TrustSource::spawn_file_watcher`]:
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

// ---------------------------------------------------------------------------
// Trust source
// ---------------------------------------------------------------------------

/// The bundle and credential files a [`TrustSource`] reloads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFiles {
    /// The trust bundle (binary or hex).
    pub bundle: PathBuf,
    /// The partner credential (JSON).
    pub credential: PathBuf,
}

struct SourceInner {
    current: RwLock<Arc<Trust>>,
    files: Option<TrustFiles>,
    generation: AtomicU64,
    /// Warn this many seconds before the list's next update (0: never).
    warn_before_secs: AtomicU64,
    /// Serialises reloads (SIGHUP and the file watcher at once).
    reload: Mutex<()>,
}

/// The trust the watcher uses, swappable while it runs.
///
/// Cloning shares it. Reader threads take [`current`](Self::current) once per
/// tap; [`reload_from_files`](Self::reload_from_files) and
/// [`replace`](Self::replace) swap in a new [`Trust`] only if it is usable:
///
/// - it loads and validates ([`Trust::load`]: signatures, credential);
/// - its root key is the current one ([`ReaderError::UnexpectedRoot`]
///   otherwise: a new root needs a restart, so a writable bundle file alone
///   cannot bring in another city's root);
/// - it is not older than the current bundle
///   ([`ReaderError::BundleRollback`]: replaying an old bundle would
///   un-revoke cards).
#[derive(Clone)]
pub struct TrustSource {
    inner: Arc<SourceInner>,
}

impl std::fmt::Debug for TrustSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSource")
            .field("files", &self.inner.files)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl TrustSource {
    /// A source with this trust and no files (reload with [`replace`](Self::replace)).
    pub fn new(trust: Trust) -> Self {
        Self::build(trust, None)
    }

    /// Loads the trust from files ([`Trust::load`]) and remembers them for reloads.
    ///
    /// # Errors
    ///
    /// Those of [`Trust::load`].
    pub fn from_files(bundle: &Path, credential: &Path) -> Result<Self, ReaderError> {
        let trust = Trust::load(bundle, credential)?;
        Ok(Self::build(
            trust,
            Some(TrustFiles {
                bundle: bundle.to_path_buf(),
                credential: credential.to_path_buf(),
            }),
        ))
    }

    /// Pins the root (see [`Trust::with_expected_root`]); reloads keep the
    /// same root anyway.
    ///
    /// # Errors
    ///
    /// [`ReaderError::UnexpectedRoot`].
    pub fn with_expected_root(self, fingerprint: &[u8; 32]) -> Result<Self, ReaderError> {
        let current = self.current();
        let found = current.root_fingerprint();
        if citycard_proto::crypto::mac_eq(&found, fingerprint) {
            Ok(self)
        } else {
            Err(ReaderError::UnexpectedRoot {
                found: hex::encode(found),
            })
        }
    }

    fn build(trust: Trust, files: Option<TrustFiles>) -> Self {
        Self {
            inner: Arc::new(SourceInner {
                current: RwLock::new(Arc::new(trust)),
                files,
                generation: AtomicU64::new(1),
                warn_before_secs: AtomicU64::new(DEFAULT_WARN_BEFORE_SECS),
                reload: Mutex::new(()),
            }),
        }
    }

    /// Warns ([`TapEvent::RevocationListExpiring`]) from `secs` before the
    /// revocation list's next update (default [`DEFAULT_WARN_BEFORE_SECS`]).
    pub fn with_stale_warning(self, secs: u64) -> Self {
        self.inner.warn_before_secs.store(secs, Ordering::SeqCst);
        self
    }

    /// The warning to log about the list in use at `now_unix`, if any.
    pub fn freshness_event(&self, now_unix: u64) -> Option<TapEvent> {
        let warn = self.inner.warn_before_secs.load(Ordering::SeqCst);
        let timestamp = SystemTime::now();
        match self.current().freshness(now_unix, warn) {
            Freshness::Fresh => None,
            Freshness::ExpiresSoon {
                next_update,
                remaining_secs,
            } => Some(TapEvent::RevocationListExpiring {
                timestamp,
                next_update,
                remaining_secs,
                stale: false,
            }),
            Freshness::Stale { next_update } => Some(TapEvent::RevocationListExpiring {
                timestamp,
                next_update,
                remaining_secs: 0,
                stale: true,
            }),
        }
    }

    /// The trust in use now.
    pub fn current(&self) -> Arc<Trust> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// 1 for the initial trust, +1 for each accepted reload.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// The files reloads read, if the source was built from files.
    pub fn files(&self) -> Option<&TrustFiles> {
        self.inner.files.as_ref()
    }

    /// Swaps in `trust` if it keeps the root and is not older than the
    /// current bundle (see the type's documentation). Returns the new generation.
    ///
    /// # Errors
    ///
    /// [`ReaderError::UnexpectedRoot`], [`ReaderError::BundleRollback`]; the
    /// current trust stays then.
    pub fn replace(&self, trust: Trust) -> Result<u64, ReaderError> {
        let _serial = self
            .inner
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current();
        let found = trust.root_fingerprint();
        if !citycard_proto::crypto::mac_eq(&found, &current.root_fingerprint()) {
            return Err(ReaderError::UnexpectedRoot {
                found: hex::encode(found),
            });
        }
        let (old, new) = (
            current.bundle().body().issued_at,
            trust.bundle().body().issued_at,
        );
        let (old_seq, new_seq) = (
            current.bundle().body().revocations.body().sequence,
            trust.bundle().body().revocations.body().sequence,
        );
        if new < old || new_seq < old_seq {
            return Err(ReaderError::BundleRollback {
                current_issued_at: old,
                new_issued_at: new,
            });
        }
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(trust);
        Ok(self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Loads the bundle and credential files again and swaps them in if they
    /// are usable ([`Trust::load`], then [`replace`](Self::replace)). Call it
    /// on SIGHUP. Returns the new generation.
    ///
    /// # Errors
    ///
    /// [`ReaderError::NoTrustFiles`] for a source built with
    /// [`new`](Self::new); the errors of [`Trust::load`] and
    /// [`replace`](Self::replace). The current trust stays then.
    pub fn reload_from_files(&self) -> Result<u64, ReaderError> {
        let files = self.inner.files.as_ref().ok_or(ReaderError::NoTrustFiles)?;
        let trust = Trust::load(&files.bundle, &files.credential)?;
        self.replace(trust)
    }

    /// [`reload_from_files`](Self::reload_from_files), as the event to log:
    /// [`TapEvent::TrustReloaded`] or [`TapEvent::TrustReloadFailed`].
    pub fn reload_event(&self) -> TapEvent {
        let timestamp = SystemTime::now();
        match self.reload_from_files() {
            Ok(generation) => {
                let trust = self.current();
                let body = trust.bundle().body();
                TapEvent::TrustReloaded {
                    timestamp,
                    generation,
                    bundle_issued_at: body.issued_at,
                    revocation_sequence: body.revocations.body().sequence.into(),
                }
            }
            Err(e) => TapEvent::TrustReloadFailed {
                timestamp,
                error: e.to_string(),
            },
        }
    }

    /// Starts a thread that checks the bundle and credential files' size and
    /// modification time every `interval` (1 s is a good value) and, when
    /// either changed, reloads ([`reload_event`](Self::reload_event)) and
    /// reports the outcome to `on_event`. A refused file is reported once;
    /// the next change is tried again. The thread ends within `interval` (at
    /// most 50 ms after) of `shutdown`, or when `on_event` returns `false`.
    ///
    /// With tokio, pass [`channel_sink`]`(sender, shutdown.clone())`.
    ///
    /// # Errors
    ///
    /// [`ReaderError::NoTrustFiles`]; [`ReaderError::Watch`] if the thread
    /// cannot be started.
    pub fn spawn_file_watcher(
        &self,
        interval: Duration,
        on_event: impl Fn(TapEvent) -> bool + Send + 'static,
        shutdown: Shutdown,
    ) -> Result<JoinHandle<()>, ReaderError> {
        let files = self.files().ok_or(ReaderError::NoTrustFiles)?.clone();
        let source = self.clone();
        std::thread::Builder::new()
            .name("citycard-trust-watch".into())
            .spawn(move || {
                let mut seen = file_stamps(&files);
                // The freshness warning last reported: (generation, stale).
                let mut warned: Option<(u64, bool)> = None;
                while shutdown.sleep(interval) {
                    let unix = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    if let Some(event) = source.freshness_event(unix) {
                        let key = match event {
                            TapEvent::RevocationListExpiring { stale, .. } => {
                                (source.generation(), stale)
                            }
                            _ => (source.generation(), false),
                        };
                        if warned != Some(key) {
                            warned = Some(key);
                            if !on_event(event) {
                                return;
                            }
                        }
                    }
                    let now = file_stamps(&files);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    if !on_event(source.reload_event()) {
                        return;
                    }
                }
            })
            .map_err(|e| ReaderError::Watch(format!("cannot start the trust file watcher: {e}")))
    }
}

type Stamp = Option<(SystemTime, u64)>;

fn file_stamps(files: &TrustFiles) -> (Stamp, Stamp) {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()))
    };
    (stamp(&files.bundle), stamp(&files.credential))
}

// ---------------------------------------------------------------------------
// The watcher
// ---------------------------------------------------------------------------

/// Watches the readers until `shutdown` is triggered or `events` is closed,
/// sending a [`TapEvent`] per tap and per reader change (see the module
/// documentation for the threads). The PC/SC work runs on dedicated threads,
/// never on the runtime's; this future only waits for them to finish.
///
/// Dropping the future stops the watcher too.
///
/// # Errors
///
/// [`ReaderError::Pcsc`] if the PC/SC service cannot be reached at start
/// (later outages are reported as [`TapEvent::ReaderError`] and retried);
/// [`ReaderError::Watch`] if a thread cannot be started.
#[cfg(feature = "tokio")]
pub async fn watch(
    config: WatchConfig,
    trust: TrustSource,
    events: tokio::sync::mpsc::Sender<TapEvent>,
    shutdown: Shutdown,
) -> Result<(), ReaderError> {
    struct CancelOnDrop(Shutdown);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.trigger();
        }
    }
    let cancel = CancelOnDrop(Shutdown::new());
    let stop = Stop {
        outer: shutdown,
        inner: cancel.0.clone(),
    };
    let sink: Sink = Arc::new(channel_sink(events, stop.inner.clone()));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("citycard-watch".into())
        .spawn(move || {
            let _ = done_tx.send(run(config, trust, sink, stop));
        })
        .map_err(|e| ReaderError::Watch(format!("cannot start the monitor thread: {e}")))?;
    match done_rx.await {
        Ok(result) => result,
        Err(_) => Err(ReaderError::Watch("the monitor thread panicked".into())),
    }
}

/// [`watch`] without tokio: runs the monitor on the calling thread (reader
/// threads are spawned) and calls `on_event` from the reader and monitor
/// threads for each event; it returns `false` to stop the watcher.
///
/// # Errors
///
/// As [`watch`].
pub fn watch_blocking(
    config: WatchConfig,
    trust: TrustSource,
    on_event: impl Fn(TapEvent) -> bool + Send + Sync + 'static,
    shutdown: Shutdown,
) -> Result<(), ReaderError> {
    let stop = Stop {
        outer: shutdown,
        inner: Shutdown::new(),
    };
    run(config, trust, Arc::new(on_event), stop)
}

/// The caller's shutdown, or ours (events closed, future dropped).
#[derive(Clone)]
struct Stop {
    outer: Shutdown,
    inner: Shutdown,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.outer.is_triggered() || self.inner.is_triggered()
    }

    /// Sends through `sink`; a closed sink stops everything.
    fn send(&self, sink: &Sink, event: TapEvent) {
        if !self.is_set() && !sink(event) {
            self.inner.trigger();
        }
    }
}

/// Why a reader thread ended.
enum ReaderExit {
    /// Asked to stop.
    Stopped,
    /// The reader is gone (unplugged).
    Gone,
    /// Something failed; restart with backoff.
    Failed(String),
}

/// A running reader thread.
struct Running {
    stop: Arc<AtomicBool>,
    /// Start of the verification in progress, if any.
    busy: Arc<Mutex<Option<Instant>>>,
    stall_reported: bool,
    started: Instant,
    handle: JoinHandle<ReaderExit>,
}

/// The monitor's view of one selected reader.
struct Slot {
    running: Option<Running>,
    failures: u32,
    restart_at: Option<Instant>,
}

/// Shared by all reader threads.
struct Shared {
    config: WatchConfig,
    trust: TrustSource,
    sink: Sink,
    stop: Stop,
}

fn pcsc_error(e: pcsc::Error) -> ReaderError {
    ReaderError::Pcsc(TransportError::from(e))
}

/// The monitor loop.
fn run(config: WatchConfig, trust: TrustSource, sink: Sink, stop: Stop) -> Result<(), ReaderError> {
    let mut ctx = pcsc::Context::establish(Scope::User).map_err(pcsc_error)?;
    let shared = Arc::new(Shared {
        config,
        trust,
        sink,
        stop,
    });
    let (config, stop) = (&shared.config, &shared.stop);
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    let mut retiring: Vec<Running> = Vec::new();
    let mut last_problems: Vec<String> = Vec::new();
    let mut pnp = [ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
    let mut pnp_supported = true;
    let mut service_failures: u32 = 0;

    while !stop.is_set() {
        // 1. The readers now.
        let available: Vec<String> = match ctx.list_readers_owned() {
            Ok(names) => names
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect(),
            Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
            Err(e) => {
                // The service went away (restarted?): back off, re-establish.
                service_failures = service_failures.saturating_add(1);
                let wait = backoff(config, service_failures);
                stop.send(
                    &shared.sink,
                    TapEvent::ReaderError {
                        timestamp: SystemTime::now(),
                        reader: None,
                        error: format!("listing readers: {}", TransportError::from(e)),
                        retry_in: Some(wait),
                    },
                );
                if !sleep_unless(wait, || stop.is_set()) {
                    break;
                }
                if let Ok(fresh) = pcsc::Context::establish(Scope::User) {
                    ctx = fresh;
                    pnp = [ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)];
                    pnp_supported = true;
                }
                continue;
            }
        };
        service_failures = 0;
        let (wanted, problems) = config.readers.select(&available);
        if problems != last_problems {
            for p in &problems {
                stop.send(
                    &shared.sink,
                    TapEvent::ReaderError {
                        timestamp: SystemTime::now(),
                        reader: None,
                        error: p.clone(),
                        retry_in: None,
                    },
                );
            }
            last_problems = problems;
        }

        // 2. Readers gone.
        let gone: Vec<String> = slots
            .keys()
            .filter(|n| !wanted.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(slot) = slots.remove(&name) {
                if let Some(r) = slot.running {
                    r.stop.store(true, Ordering::SeqCst);
                    retiring.push(r);
                }
            }
            stop.send(
                &shared.sink,
                TapEvent::ReaderRemoved {
                    timestamp: SystemTime::now(),
                    reader: name,
                },
            );
        }
        retiring.retain(|r| !r.handle.is_finished());

        // 3. Readers new.
        for name in &wanted {
            if slots.contains_key(name) {
                continue;
            }
            stop.send(
                &shared.sink,
                TapEvent::ReaderAdded {
                    timestamp: SystemTime::now(),
                    reader: name.clone(),
                },
            );
            let running = start_reader(&shared, name);
            slots.insert(
                name.clone(),
                Slot {
                    running,
                    failures: 0,
                    restart_at: None,
                },
            );
        }

        // 4. Finished, stalled and due threads.
        for (name, slot) in &mut slots {
            supervise(&shared, name, slot);
        }

        // 5. Wait for a reader change (PnP), at most one rescan interval.
        if pnp_supported {
            for s in &mut pnp {
                s.sync_current_state();
            }
            match ctx.get_status_change(Some(config.rescan_interval), &mut pnp) {
                Ok(()) | Err(pcsc::Error::Timeout) => {
                    if pnp
                        .iter()
                        .any(|s| s.event_state().intersects(State::UNKNOWN | State::IGNORE))
                    {
                        pnp_supported = false;
                    }
                }
                Err(pcsc::Error::Cancelled) => {}
                Err(_) => pnp_supported = false,
            }
        } else if !sleep_unless(config.rescan_interval, || stop.is_set()) {
            break;
        }
    }

    // Shutdown: every reader thread has the global flag; wait for them, bounded.
    let deadline = Instant::now() + config.shutdown_grace;
    let threads: Vec<Running> = slots
        .into_values()
        .filter_map(|s| s.running)
        .chain(retiring)
        .collect();
    for r in &threads {
        r.stop.store(true, Ordering::SeqCst);
    }
    for r in threads {
        while !r.handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if r.handle.is_finished() {
            let _ = r.handle.join();
        }
    }
    Ok(())
}

fn backoff(config: &WatchConfig, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    config
        .restart_backoff
        .saturating_mul(factor)
        .min(config.max_restart_backoff)
}

/// Handles a slot's finished thread (restart with backoff), a stalled tap
/// (report), and a due restart.
fn supervise(shared: &Arc<Shared>, name: &str, slot: &mut Slot) {
    let (config, stop) = (&shared.config, &shared.stop);
    if let Some(r) = &mut slot.running {
        if r.handle.is_finished() {
            let lived = r.started.elapsed();
            let exit = slot
                .running
                .take()
                .map(|r| r.handle.join())
                .unwrap_or(Ok(ReaderExit::Stopped));
            let error = match exit {
                Ok(ReaderExit::Stopped) => return,
                // Still listed (or the monitor would have removed it): a glitch.
                Ok(ReaderExit::Gone) => "the reader disappeared".to_owned(),
                Ok(ReaderExit::Failed(e)) => e,
                Err(_) => "the reader thread panicked".to_owned(),
            };
            if lived > config.max_restart_backoff {
                slot.failures = 0;
            }
            slot.failures = slot.failures.saturating_add(1);
            let wait = backoff(config, slot.failures);
            slot.restart_at = Some(Instant::now() + wait);
            stop.send(
                &shared.sink,
                TapEvent::ReaderError {
                    timestamp: SystemTime::now(),
                    reader: Some(name.to_owned()),
                    error,
                    retry_in: Some(wait),
                },
            );
            return;
        }
        let busy = *r.busy.lock().unwrap_or_else(PoisonError::into_inner);
        match busy {
            Some(since) if since.elapsed() > config.card_timeout && !r.stall_reported => {
                r.stall_reported = true;
                stop.send(
                    &shared.sink,
                    TapEvent::ReaderError {
                        timestamp: SystemTime::now(),
                        reader: Some(name.to_owned()),
                        error: format!(
                            "verification stalled: running for {:.1} s (card timeout {:.1} s)",
                            since.elapsed().as_secs_f64(),
                            config.card_timeout.as_secs_f64()
                        ),
                        retry_in: None,
                    },
                );
            }
            None => r.stall_reported = false,
            Some(_) => {}
        }
        return;
    }
    if slot.restart_at.is_some_and(|t| Instant::now() >= t) {
        slot.restart_at = None;
        slot.running = start_reader(shared, name);
    }
}

/// Starts a reader thread; a spawn failure is reported and retried later.
fn start_reader(shared: &Arc<Shared>, name: &str) -> Option<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(Mutex::new(None));
    let (s, b, sh, n) = (stop.clone(), busy.clone(), shared.clone(), name.to_owned());
    match std::thread::Builder::new()
        .name(format!("citycard-watch {name}"))
        .spawn(move || reader_loop(&sh, &n, &s, &b))
    {
        Ok(handle) => Some(Running {
            stop,
            busy,
            stall_reported: false,
            started: Instant::now(),
            handle,
        }),
        Err(e) => {
            shared.stop.send(
                &shared.sink,
                TapEvent::ReaderError {
                    timestamp: SystemTime::now(),
                    reader: Some(name.to_owned()),
                    error: format!("cannot start the reader thread: {e}"),
                    retry_in: None,
                },
            );
            None
        }
    }
}

/// What a bounded PC/SC wait produced.
enum Waited<T> {
    Done(T),
    Exit(ReaderExit),
}

/// Repeats a PC/SC wait in `poll_interval` slices until it completes, the
/// thread is told to stop, or the reader is gone / the wait fails.
fn wait_loop<T>(
    shared: &Shared,
    own_stop: &AtomicBool,
    mut once: impl FnMut(Duration) -> Result<T, TransportError>,
) -> Waited<T> {
    loop {
        if own_stop.load(Ordering::SeqCst) || shared.stop.is_set() {
            return Waited::Exit(ReaderExit::Stopped);
        }
        match once(shared.config.poll_interval) {
            Ok(v) => return Waited::Done(v),
            Err(TransportError::Timeout | TransportError::Cancelled) => {}
            Err(TransportError::ReaderNotFound { .. } | TransportError::NoReadersAvailable) => {
                return Waited::Exit(ReaderExit::Gone)
            }
            Err(e) => return Waited::Exit(ReaderExit::Failed(e.to_string())),
        }
    }
}

/// One reader: wait for a card, verify, report, wait for removal; repeat.
fn reader_loop(
    shared: &Shared,
    reader: &str,
    own_stop: &AtomicBool,
    busy: &Mutex<Option<Instant>>,
) -> ReaderExit {
    let ctx = match PcscContext::establish() {
        Ok(ctx) => ctx,
        Err(e) => return ReaderExit::Failed(format!("PC/SC context: {e}")),
    };
    let set_busy = |v: Option<Instant>| *busy.lock().unwrap_or_else(PoisonError::into_inner) = v;
    loop {
        match wait_loop(shared, own_stop, |t| ctx.wait_for_card(reader, Some(t))) {
            Waited::Done(_atr) => {}
            Waited::Exit(exit) => return exit,
        }
        let detected = Instant::now();
        set_busy(Some(detected));
        let tap = tap_once(shared, &ctx, reader, detected);
        set_busy(None);
        match tap {
            Some(tap) => shared.stop.send(&shared.sink, TapEvent::Tap(tap)),
            // The reader went away while connecting: the monitor reports it.
            None => return ReaderExit::Gone,
        }
        match wait_loop(shared, own_stop, |t| ctx.wait_for_removal(reader, Some(t))) {
            Waited::Done(()) => {}
            Waited::Exit(exit) => return exit,
        }
    }
}

/// Connects and verifies; `None` if the reader is gone.
fn tap_once(shared: &Shared, ctx: &PcscContext, reader: &str, detected: Instant) -> Option<Tap> {
    let transport = ctx.connect(reader);
    let connected = Instant::now();
    let verdict = match transport {
        Ok(transport) => {
            let trust = shared.trust.current();
            let policy = shared.config.policy_now();
            let deadline = detected + shared.config.card_timeout;
            let mut channel = CardChannel::new(Deadline {
                inner: transport,
                deadline,
            });
            verify(&mut channel, &trust, &policy, &mut rand_core::OsRng)
        }
        Err(TransportError::ReaderNotFound { .. } | TransportError::NoReadersAvailable) => {
            return None
        }
        // The card left between detection and connection.
        Err(TransportError::NoCard | TransportError::CardRemoved) => Verdict::CardRemoved,
        Err(e) => Verdict::TransportError(e.to_string()),
    };
    let done = Instant::now();
    Some(Tap {
        timestamp: SystemTime::now(),
        reader: reader.to_owned(),
        verdict,
        timing: TapTiming {
            total: done - detected,
            connect: connected - detected,
            verify: done - connected,
        },
    })
}

/// A transport that refuses to start an APDU after its deadline.
struct Deadline<T> {
    inner: T,
    deadline: Instant,
}

impl<T: CardTransport> Deadline<T> {
    fn check(&self) -> Result<(), TransportError> {
        if Instant::now() > self.deadline {
            Err(TransportError::Timeout)
        } else {
            Ok(())
        }
    }
}

impl<T: CardTransport> CardTransport for Deadline<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.check()?;
        self.inner.transmit_raw(apdu)
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.check()?;
        self.inner.reset()
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        self.check()?;
        let deadline = self.deadline;
        self.inner.transaction(&mut |t: &mut dyn CardTransport| {
            let mut limited = Deadline { inner: t, deadline };
            body(&mut limited)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn selection_exact_then_unique_substring() {
        let available = names(&["Virtual PCD 00 00", "Virtual PCD 00 01", "ACS ACR122U"]);
        assert_eq!(ReaderSelection::All.select(&available).0, available);
        let sel = ReaderSelection::Names(names(&["00 01", "acr122", "Nope"]));
        assert_eq!(
            sel.select(&available),
            (names(&["Virtual PCD 00 01", "ACS ACR122U"]), vec![])
        );
        let (chosen, problems) = ReaderSelection::Names(names(&["virtual"])).select(&available);
        assert!(chosen.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("ambiguous"), "{problems:?}");
        let nested = names(&["Reader", "Reader 2"]);
        assert_eq!(
            ReaderSelection::Names(names(&["Reader", "Reader"]))
                .select(&nested)
                .0,
            names(&["Reader"])
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_694_400_123);
        assert_eq!(rfc3339(t), "2026-11-26T12:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_868_799);
        assert_eq!(rfc3339(t), "2000-02-29T23:59:59.000Z");
    }

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
    fn an_apdu_after_the_card_timeout_fails_with_a_timeout() {
        struct Echo;
        impl citycard_proto::ContactlessCard for Echo {
            fn atr(&self) -> Vec<u8> {
                vec![0x3B, 0x00]
            }
            fn reset(&mut self) {}
            fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, citycard_proto::CardLost> {
                Ok(vec![0x90, 0x00])
            }
        }
        let inner = citycard_transport::MemoryTransport::new(Echo);
        let mut ok = Deadline {
            inner,
            deadline: Instant::now() + Duration::from_secs(60),
        };
        assert_eq!(ok.transmit_raw(&[0, 0xA4, 4, 0]).unwrap(), [0x90, 0x00]);
        let mut late = Deadline {
            inner: ok.inner,
            deadline: Instant::now() - Duration::from_millis(1),
        };
        assert!(matches!(
            late.transmit_raw(&[0, 0xA4, 4, 0]),
            Err(TransportError::Timeout)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = WatchConfig::new(Policy::at(0));
        let b: Vec<u64> = (1..=9).map(|n| backoff(&c, n).as_millis() as u64).collect();
        assert_eq!(b, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(backoff(&c, u32::MAX), Duration::from_secs(30));
    }
}
