//! The watcher's threads: one monitor, one thread per reader (see the
//! module documentation of [`crate::watch`]).
//!
//! One file on purpose: the monitor and the reader threads share the
//! supervision state (slots, restarts, stop flags); its tests are at the
//! bottom.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use citycard_transport::{CardChannel, CardTransport, TransactionFn, TransportError};

use super::config::sleep_unless;
#[cfg(feature = "tokio")]
use super::events::channel_sink;
use super::events::Sink;
#[cfg(feature = "pcsc")]
use super::readers::PcscReaders;
use super::readers::{ReaderMonitor, ReaderPort, ReaderSystem};
use super::{Shutdown, Tap, TapEvent, TapTiming, TrustSource, WatchConfig};
use crate::{verify, ReaderError, Verdict};

/// Watches the PC/SC readers until `shutdown` is triggered or `events` is
/// closed: [`watch_with`] over [`PcscReaders`].
///
/// # Errors
///
/// As [`watch_with`].
#[cfg(all(feature = "tokio", feature = "pcsc"))]
pub async fn watch(
    config: WatchConfig,
    trust: TrustSource,
    events: tokio::sync::mpsc::Sender<TapEvent>,
    shutdown: Shutdown,
) -> Result<(), ReaderError> {
    watch_with(Arc::new(PcscReaders), config, trust, events, shutdown).await
}

/// Watches the readers of `system` until `shutdown` is triggered or
/// `events` is closed, sending a [`TapEvent`] per tap, per reader change
/// and per heartbeat (see the module documentation for the threads). The
/// reader work runs on dedicated threads, never on the runtime's; this
/// future only waits for them to finish.
///
/// Dropping the future stops the watcher too.
///
/// # Errors
///
/// [`ReaderError::Pcsc`] if the reader system cannot be reached at start
/// (later outages are reported as [`TapEvent::ReaderError`] and retried);
/// [`ReaderError::NoMatchingReader`] when a named reader matched nothing for
/// [`WatchConfig::reader_wait`]; [`ReaderError::WatchThread`] if a thread cannot
/// be started.
#[cfg(feature = "tokio")]
pub async fn watch_with(
    system: Arc<dyn ReaderSystem>,
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
            let _ = done_tx.send(run(system, config, trust, sink, stop));
        })
        .map_err(|source| ReaderError::WatchThread {
            what: "monitor thread",
            source,
        })?;
    match done_rx.await {
        Ok(result) => result,
        Err(_) => Err(ReaderError::WatchPanicked),
    }
}

/// [`watch`] without tokio: [`watch_blocking_with`] over [`PcscReaders`].
///
/// # Errors
///
/// As [`watch_with`].
#[cfg(feature = "pcsc")]
pub fn watch_blocking(
    config: WatchConfig,
    trust: TrustSource,
    on_event: impl Fn(TapEvent) -> bool + Send + Sync + 'static,
    shutdown: Shutdown,
) -> Result<(), ReaderError> {
    watch_blocking_with(Arc::new(PcscReaders), config, trust, on_event, shutdown)
}

/// [`watch_with`] without tokio: runs the monitor on the calling thread
/// (reader threads are spawned) and calls `on_event` from the reader and
/// monitor threads for each event; it returns `false` to stop the watcher.
///
/// # Errors
///
/// As [`watch_with`].
pub fn watch_blocking_with(
    system: Arc<dyn ReaderSystem>,
    config: WatchConfig,
    trust: TrustSource,
    on_event: impl Fn(TapEvent) -> bool + Send + Sync + 'static,
    shutdown: Shutdown,
) -> Result<(), ReaderError> {
    let stop = Stop {
        outer: shutdown,
        inner: Shutdown::new(),
    };
    run(system, config, trust, Arc::new(on_event), stop)
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
    system: Arc<dyn ReaderSystem>,
    config: WatchConfig,
    trust: TrustSource,
    sink: Sink,
    stop: Stop,
}

/// The monitor loop's state between two scans.
struct MonitorState {
    started: Instant,
    slots: BTreeMap<String, Slot>,
    retiring: Vec<Running>,
    last_problems: Vec<String>,
    service_failures: u32,
    unmatched_since: Option<Instant>,
    warned_unmatched: Vec<String>,
    next_heartbeat: Option<Instant>,
}

/// What one scan decided.
enum Scan {
    /// Go on watching: wait for a reader change, then scan again.
    Continue,
    /// Scan again at once (the service failed and was waited out).
    Retry,
    /// Stop the loop (asked to, or with an error).
    Stop(Result<(), ReaderError>),
}

/// The monitor loop.
fn run(
    system: Arc<dyn ReaderSystem>,
    config: WatchConfig,
    trust: TrustSource,
    sink: Sink,
    stop: Stop,
) -> Result<(), ReaderError> {
    let mut monitor: Box<dyn ReaderMonitor> = system.monitor().map_err(ReaderError::Pcsc)?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        system,
        config,
        trust,
        sink,
        stop,
    });
    let mut state = MonitorState {
        started,
        slots: BTreeMap::new(),
        retiring: Vec::new(),
        last_problems: Vec::new(),
        service_failures: 0,
        unmatched_since: None,
        warned_unmatched: Vec::new(),
        next_heartbeat: shared.config.heartbeat.map(|h| started + h),
    };
    let mut outcome = Ok(());
    while !shared.stop.is_set() {
        match state.scan(&shared, monitor.as_mut()) {
            Scan::Continue => {}
            Scan::Retry => continue,
            Scan::Stop(result) => {
                outcome = result;
                break;
            }
        }
        // Wait for a reader change, at most one rescan interval (or until the heartbeat).
        let mut wait = shared.config.rescan_interval;
        if let Some(due) = state.next_heartbeat {
            wait = wait.min(due.saturating_duration_since(Instant::now()));
        }
        monitor.wait_for_change(wait, &|| shared.stop.is_set());
    }
    state.shut_down(&shared.config);
    outcome
}

impl MonitorState {
    /// One pass: the readers now, unmatched names, readers gone and new,
    /// the threads, the heartbeat.
    fn scan(&mut self, shared: &Arc<Shared>, monitor: &mut dyn ReaderMonitor) -> Scan {
        let Some(available) = self.list_readers(shared, monitor) else {
            return if shared.stop.is_set() {
                Scan::Stop(Ok(()))
            } else {
                Scan::Retry
            };
        };
        let (wanted, problems) = shared.config.readers.select(&available);
        self.report_problems(shared, problems);
        if let Err(e) = self.check_unmatched(shared, available) {
            return Scan::Stop(Err(e));
        }
        self.drop_gone(shared, &wanted);
        self.add_new(shared, &wanted);
        for (name, slot) in &mut self.slots {
            supervise(shared, name, slot);
        }
        self.heartbeat(shared);
        Scan::Continue
    }

    /// The readers the service lists; `None` after a failure (reported, and
    /// waited out with backoff: the monitor reconnects).
    fn list_readers(
        &mut self,
        shared: &Shared,
        monitor: &mut dyn ReaderMonitor,
    ) -> Option<Vec<String>> {
        match monitor.list_readers() {
            Ok(names) => {
                self.service_failures = 0;
                Some(names)
            }
            Err(e) => {
                self.service_failures = self.service_failures.saturating_add(1);
                let wait = backoff(&shared.config, self.service_failures);
                shared.stop.send(
                    &shared.sink,
                    TapEvent::ReaderError {
                        timestamp: SystemTime::now(),
                        reader: None,
                        error: format!("listing readers: {e}"),
                        retry_in: Some(wait),
                    },
                );
                sleep_unless(wait, || shared.stop.is_set());
                None
            }
        }
    }

    /// Reports the selection's problems once, when they change.
    fn report_problems(&mut self, shared: &Shared, problems: Vec<String>) {
        if problems == self.last_problems {
            return;
        }
        for p in &problems {
            shared.stop.send(
                &shared.sink,
                TapEvent::ReaderError {
                    timestamp: SystemTime::now(),
                    reader: None,
                    error: p.clone(),
                    retry_in: None,
                },
            );
        }
        self.last_problems = problems;
    }

    /// Named readers that match nothing: warn (once per change), then give
    /// up after `reader_wait`.
    fn check_unmatched(
        &mut self,
        shared: &Shared,
        available: Vec<String>,
    ) -> Result<(), ReaderError> {
        let config = &shared.config;
        let unmatched = config.readers.unmatched(&available);
        if unmatched.is_empty() {
            self.unmatched_since = None;
            self.warned_unmatched = unmatched;
            return Ok(());
        }
        let since = *self.unmatched_since.get_or_insert_with(Instant::now);
        if unmatched != self.warned_unmatched {
            let wait = config
                .reader_wait
                .map(|w| format!("giving up after {} s", w.as_secs()))
                .unwrap_or_else(|| "waiting for it".into());
            shared.stop.send(
                &shared.sink,
                TapEvent::warning(
                    "no_matching_reader",
                    format!("no reader matches {unmatched:?} (readers: {available:?}); {wait}"),
                    None,
                ),
            );
        }
        if config.reader_wait.is_some_and(|w| since.elapsed() >= w) {
            return Err(ReaderError::NoMatchingReader {
                names: unmatched,
                available,
            });
        }
        self.warned_unmatched = unmatched;
        Ok(())
    }

    /// Stops the threads of readers no longer wanted (unplugged).
    fn drop_gone(&mut self, shared: &Shared, wanted: &[String]) {
        let gone: Vec<String> = self
            .slots
            .keys()
            .filter(|n| !wanted.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(slot) = self.slots.remove(&name) {
                if let Some(r) = slot.running {
                    r.stop.store(true, Ordering::SeqCst);
                    self.retiring.push(r);
                }
            }
            shared.stop.send(
                &shared.sink,
                TapEvent::ReaderRemoved {
                    timestamp: SystemTime::now(),
                    reader: name,
                },
            );
        }
        self.retiring.retain(|r| !r.handle.is_finished());
    }

    /// Starts a thread for each newly wanted reader.
    fn add_new(&mut self, shared: &Arc<Shared>, wanted: &[String]) {
        for name in wanted {
            if self.slots.contains_key(name) {
                continue;
            }
            shared.stop.send(
                &shared.sink,
                TapEvent::ReaderAdded {
                    timestamp: SystemTime::now(),
                    reader: name.clone(),
                },
            );
            let running = start_reader(shared, name);
            self.slots.insert(
                name.clone(),
                Slot {
                    running,
                    failures: 0,
                    restart_at: None,
                },
            );
        }
    }

    /// The periodic heartbeat event, when due.
    fn heartbeat(&mut self, shared: &Shared) {
        let (Some(due), Some(every)) = (self.next_heartbeat, shared.config.heartbeat) else {
            return;
        };
        if Instant::now() < due {
            return;
        }
        let trust = shared.trust.current();
        let issued = trust.bundle().body().revocations.body().issued_at;
        shared.stop.send(
            &shared.sink,
            TapEvent::Heartbeat {
                timestamp: SystemTime::now(),
                readers: self.slots.keys().cloned().collect(),
                trust_generation: shared.trust.generation(),
                uptime: self.started.elapsed(),
                revocation_age_secs: crate::json::unix_now().saturating_sub(issued),
            },
        );
        self.next_heartbeat = Some(due + every);
    }

    /// Shutdown: every reader thread has the global flag; wait for them, bounded.
    fn shut_down(self, config: &WatchConfig) {
        let deadline = Instant::now() + config.shutdown_grace;
        let threads: Vec<Running> = self
            .slots
            .into_values()
            .filter_map(|s| s.running)
            .chain(self.retiring)
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
    }
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
    let mut port = match shared.system.open(reader) {
        Ok(port) => port,
        Err(e) => return ReaderExit::Failed(format!("opening the reader: {e}")),
    };
    let set_busy = |v: Option<Instant>| *busy.lock().unwrap_or_else(PoisonError::into_inner) = v;
    loop {
        match wait_loop(shared, own_stop, |t| port.wait_for_card(t)) {
            Waited::Done(_atr) => {}
            Waited::Exit(exit) => return exit,
        }
        let detected = Instant::now();
        set_busy(Some(detected));
        let tap = tap_once(shared, port.as_mut(), reader, detected);
        set_busy(None);
        match tap {
            Some(tap) => shared.stop.send(&shared.sink, TapEvent::Tap(tap)),
            // The reader went away while connecting: the monitor reports it.
            None => return ReaderExit::Gone,
        }
        match wait_loop(shared, own_stop, |t| port.wait_for_removal(t)) {
            Waited::Done(()) => {}
            Waited::Exit(exit) => return exit,
        }
    }
}

/// Connects and verifies; `None` if the reader is gone.
fn tap_once(
    shared: &Shared,
    port: &mut dyn ReaderPort,
    reader: &str,
    detected: Instant,
) -> Option<Tap> {
    let transport = port.connect();
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
        Err(e) => Verdict::TransportError(e.into()),
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
    use crate::Policy;

    #[test]
    fn an_apdu_after_the_card_timeout_fails_with_a_timeout() {
        struct Echo;
        impl citycard_proto::apdu::ContactlessCard for Echo {
            fn atr(&self) -> Vec<u8> {
                vec![0x3B, 0x00]
            }
            fn reset(&mut self) {}
            fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, citycard_proto::apdu::CardLost> {
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
