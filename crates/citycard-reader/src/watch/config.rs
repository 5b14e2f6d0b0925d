//! What the watcher watches and how: [`WatchConfig`], [`ReaderSelection`],
//! [`Clock`], and the [`Shutdown`] signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Policy;

/// Which readers to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReaderSelection {
    /// Every reader, including readers plugged in later.
    #[default]
    All,
    /// The readers these names designate: a reader of exactly that name, else
    /// the only reader whose name contains it (case-insensitively). A name
    /// that matches nothing yet is waited for up to
    /// [`WatchConfig::reader_wait`] (the reader may be plugged in), then the
    /// watcher stops with an error; a name that matches several readers is
    /// reported ([`TapEvent::ReaderError`](crate::TapEvent::ReaderError)) and
    /// selects none of them.
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

    /// The names of this selection that match no reader among `available`
    /// (none for [`All`](Self::All)).
    pub fn unmatched(&self, available: &[String]) -> Vec<String> {
        let Self::Names(names) = self else {
            return Vec::new();
        };
        names
            .iter()
            .filter(|name| {
                let needle = name.to_lowercase();
                !available
                    .iter()
                    .any(|r| r == *name || r.to_lowercase().contains(&needle))
            })
            .cloned()
            .collect()
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

/// What [`watch_with`](super::watch_with) / [`watch_blocking_with`](super::watch_blocking_with) watch and how.
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
    /// How long a name in [`ReaderSelection::Names`] may match no reader
    /// before the watcher gives up with
    /// [`ReaderError::NoMatchingReader`](crate::ReaderError::NoMatchingReader)
    /// (default 10 s; `None`: wait forever), counted from the moment a
    /// name stops matching (the start, or when its reader is unplugged).
    pub reader_wait: Option<Duration>,
    /// Interval of [`TapEvent::Heartbeat`](crate::TapEvent::Heartbeat)
    /// events (default 30 s; `None`: no heartbeat). The first comes one
    /// interval after the start.
    pub heartbeat: Option<Duration>,
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
            reader_wait: Some(Duration::from_secs(10)),
            heartbeat: Some(Duration::from_secs(30)),
        }
    }

    /// Watches only these readers.
    pub fn with_readers(mut self, readers: ReaderSelection) -> Self {
        self.readers = readers;
        self
    }

    /// Sets [`reader_wait`](Self::reader_wait).
    pub fn with_reader_wait(mut self, wait: Option<Duration>) -> Self {
        self.reader_wait = wait;
        self
    }

    /// Sets [`heartbeat`](Self::heartbeat).
    pub fn with_heartbeat(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The policy for a tap happening now.
    pub(crate) fn policy_now(&self) -> Policy {
        match self.clock {
            Clock::Fixed => self.policy.clone(),
            Clock::System => self.policy.clone().with_now(crate::json::unix_now()),
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
    pub(crate) fn sleep(&self, total: Duration) -> bool {
        sleep_unless(total, || self.is_triggered())
    }
}

/// Sleeps `total` in slices of at most 50 ms; `false` if `stop()` became true.
pub(crate) fn sleep_unless(total: Duration, stop: impl Fn() -> bool) -> bool {
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
    fn unmatched_names() {
        let available = names(&["Virtual PCD 00 00", "ACS ACR122U"]);
        assert!(ReaderSelection::All.unmatched(&available).is_empty());
        assert!(ReaderSelection::All.unmatched(&[]).is_empty());
        let sel = ReaderSelection::Names(names(&["acr122", "Nope", "virtual"]));
        assert_eq!(sel.unmatched(&available), names(&["Nope"]));
        assert_eq!(sel.unmatched(&[]), names(&["acr122", "Nope", "virtual"]));
    }
}
