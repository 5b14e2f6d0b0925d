//! The tap service engine ([`citycard_reader::watch`]) through the real
//! stack: pcscd with the vsmartcard vpcd driver, both virtual readers
//! ("Virtual PCD 00 00" on 127.0.0.1:35963, "Virtual PCD 00 01" on
//! 127.0.0.1:35964), and reference cards personalised in-process and served
//! to vpcd by threads of this process.
//!
//! Needs the bench (`tools/testbench start`). Without it these tests FAIL
//! with a message saying so; with `CITYCARD_NO_PCSCD=1` they print a NOTICE
//! and pass without testing.
#![cfg(test)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use citycard_card::{Applet, MemoryStorage};
use citycard_emulator::{serve, ServeOptions};
use citycard_proto::revocation::{RevocationId, TrustBundle};
use citycard_proto::{apdu::ContactlessCard, record::GroupRecord};
use citycard_reader::watch::{channel_sink, TrustSource};
use citycard_reader::{
    Clock, PartnerCredential, Policy, ReaderError, ReaderSelection, Shutdown, TapEvent, Verdict,
    WatchConfig,
};
use citycard_testkit::keys::{
    self, city, date, reader, test_key, trust_bundle, BundleSpec, TestCity,
};
use citycard_testkit::script::{personalise, sample_resident, Personalisation, Script};
use citycard_transport::PcscContext;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = Applet<MemoryStorage, ChaCha20Rng>;

/// The two vpcd readers and their ports.
const READERS: [(&str, u16); 2] = [("Virtual PCD 00 00", 35963), ("Virtual PCD 00 01", 35964)];
const R0: usize = 0;
const R1: usize = 1;

// --- bench -----------------------------------------------------------------

use citycard_testkit::bench_lock::vpcd_lock;

/// `true` when pcscd shows both vpcd readers; panics with instructions when
/// not (unless `CITYCARD_NO_PCSCD=1`: a NOTICE and `false`).
fn bench_available(test: &str) -> bool {
    let problem = match PcscContext::establish() {
        Err(e) => format!("cannot reach pcscd ({e})"),
        Ok(ctx) => match ctx.list_readers() {
            Ok(r) if READERS.iter().all(|(n, _)| r.iter().any(|x| x == n)) => return true,
            Ok(r) => format!(
                "pcscd lacks the vpcd readers {:?} (readers: {r:?}); is vsmartcard-vpcd installed?",
                READERS.map(|(n, _)| n)
            ),
            Err(e) => format!("listing readers failed ({e})"),
        },
    };
    if std::env::var_os("CITYCARD_NO_PCSCD").is_some_and(|v| v == "1") {
        eprintln!("NOTICE: {test}: NOT RUN — {problem} (CITYCARD_NO_PCSCD=1)");
        return false;
    }
    panic!("{test}: {problem}. Start the bench with `tools/testbench start` (as root), or set CITYCARD_NO_PCSCD=1 to skip.");
}

fn wait_for_card(reader: usize) {
    let ctx = PcscContext::establish().expect("pcscd");
    ctx.wait_for_card(READERS[reader].0, Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("no card appeared in {}: {e}", READERS[reader].0));
}

fn wait_for_removal(reader: usize) {
    if let Ok(ctx) = PcscContext::establish() {
        let _ = ctx.wait_for_removal(READERS[reader].0, Some(Duration::from_secs(10)));
    }
}

/// A card served to one vpcd reader by a thread; stopping it is pulling the
/// card from the field (vpcd sees the emulator's socket close).
struct Served {
    reader: usize,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Card>>,
}

impl Served {
    /// Puts `card` on `reader` and waits until pcscd reports it.
    fn start(card: Card, reader: usize, latency: Option<Duration>) -> Self {
        let served = Self::start_nowait(card, reader, latency);
        wait_for_card(reader);
        served
    }

    fn start_nowait(mut card: Card, reader: usize, latency: Option<Duration>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut opts = ServeOptions::new(([127, 0, 0, 1], READERS[reader].1).into());
        opts.stop = Some(stop.clone());
        opts.poll_interval = Duration::from_millis(20);
        opts.latency = latency;
        let handle = std::thread::spawn(move || {
            let _ = serve(&mut card, &opts);
            card
        });
        Self {
            reader,
            stop,
            handle: Some(handle),
        }
    }

    /// Pulls the card at once (without waiting), e.g. mid-exchange.
    fn pull(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Pulls the card, waits until pcscd sees it gone; the card comes back.
    fn stop(mut self) -> Card {
        self.pull();
        let card = self.handle.take().unwrap().join().expect("serve thread");
        wait_for_removal(self.reader);
        card
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
            wait_for_removal(self.reader);
        }
    }
}

// --- city, cards, trust ----------------------------------------------------

/// 2026-11-26 12:00 UTC.
fn now() -> u64 {
    date(keys::TODAY).days_since_epoch() as u64 * 86_400 + 43_200
}

fn bundle(
    city: &TestCity,
    issued_at: u64,
    sequence: u32,
    revoked: Vec<RevocationId>,
) -> TrustBundle {
    trust_bundle(
        city,
        BundleSpec {
            sequence,
            revoked,
            ..BundleSpec::of(city, issued_at, now() + 86_400)
        },
    )
}

/// Writes the first bundle and the library credential; a source over them.
fn trust_files(city: &TestCity, dir: &std::path::Path) -> TrustSource {
    let (b, c) = (
        dir.join("liege.bundle"),
        dir.join("library.credential.json"),
    );
    std::fs::write(&b, bundle(city, now() - 3_600, 1, vec![]).as_bytes()).unwrap();
    let r = reader(city, "library");
    PartnerCredential::new(r.certificate, r.key)
        .unwrap()
        .write_to(&c)
        .unwrap();
    TrustSource::from_files(&b, &c).unwrap()
}

/// A reference card personalised in-process with the sample resident.
fn issued_card(city: &TestCity, seed: u8) -> (Card, GroupRecord) {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([seed; 32]));
    let mut rng = ChaCha20Rng::from_seed([seed ^ 0x55; 32]);
    let record = {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        personalise(
            &mut s,
            Personalisation {
                city,
                station_ephemeral: test_key("station ephemeral"),
                rng: &mut rng,
                resident: sample_resident(),
                issue_date: date((2026, 11, 20)),
                valid_to: date((2031, 11, 19)),
                groups: 3,
                prepare: true,
            },
        )
        .unwrap()
        .records
        .swap_remove(0)
    };
    (card, record)
}

// --- the watcher under test --------------------------------------------------

/// `citycard_reader::watch` on a tokio runtime, its events collected here.
struct Watcher {
    runtime: tokio::runtime::Runtime,
    tx: tokio::sync::mpsc::Sender<TapEvent>,
    rx: tokio::sync::mpsc::Receiver<TapEvent>,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<Result<(), ReaderError>>>,
    seen: Vec<TapEvent>,
}

impl Watcher {
    fn start(trust: TrustSource) -> Self {
        let config = WatchConfig::new(Policy::at(now()))
            .with_clock(Clock::Fixed)
            .with_readers(ReaderSelection::Names(
                READERS.iter().map(|(n, _)| (*n).to_owned()).collect(),
            ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let shutdown = Shutdown::new();
        let task = runtime.spawn(citycard_reader::watch(
            config,
            trust,
            tx.clone(),
            shutdown.clone(),
        ));
        let mut w = Self {
            runtime,
            tx,
            rx,
            shutdown,
            task: Some(task),
            seen: Vec::new(),
        };
        for (name, _) in READERS {
            w.next(
                &format!("reader_added {name}"),
                Duration::from_secs(5),
                |e| matches!(e, TapEvent::ReaderAdded { reader, .. } if reader == name),
            );
        }
        w
    }

    /// The next event matching `want` (all events are kept in `seen`).
    fn next(
        &mut self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&TapEvent) -> bool,
    ) -> TapEvent {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.try_recv() {
                Ok(e) => {
                    eprintln!("event: {}", e.to_json_line());
                    self.seen.push(e.clone());
                    if want(&e) {
                        return e;
                    }
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => panic!(
                    "no {what} within {timeout:?}; events: {:#?}",
                    self.seen
                        .iter()
                        .map(TapEvent::to_json_line)
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// The next tap at `reader`.
    fn tap(&mut self, reader: usize, timeout: Duration) -> Verdict {
        let name = READERS[reader].0;
        let e = self.next(&format!("tap at {name}"), timeout, |e| {
            e.tap().is_some_and(|t| t.reader == name)
        });
        e.tap().unwrap().verdict.clone()
    }

    /// Stops the watcher; how long `watch` took to return.
    fn stop(mut self) -> Duration {
        self.finish()
    }

    fn finish(&mut self) -> Duration {
        let Some(task) = self.task.take() else {
            return Duration::ZERO;
        };
        let t = Instant::now();
        self.shutdown.trigger();
        let result = self.runtime.block_on(async {
            loop {
                if task.is_finished() {
                    break task.await;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    panic!("watch did not return within 10 s of shutdown");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        result.expect("watch task").expect("watch result");
        t.elapsed()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.finish();
        } else {
            self.shutdown.trigger();
        }
    }
}

fn genuine_pseudonym(v: &Verdict) -> [u8; 16] {
    v.genuine()
        .unwrap_or_else(|| panic!("expected genuine, got {v:?}"))
        .pseudonym
        .expect("library reader gets a pseudonym")
}

const TAP: Duration = Duration::from_secs(10);

// --- tests -----------------------------------------------------------------

#[test]
fn two_cards_tapped_at_once_give_one_genuine_event_per_reader() {
    let _lock = vpcd_lock();
    if !bench_available("two_cards_tapped_at_once_give_one_genuine_event_per_reader") {
        return;
    }
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let mut w = Watcher::start(trust_files(&city, dir.path()));
    let (a, _) = issued_card(&city, 1);
    let (b, _) = issued_card(&city, 2);

    // Both cards land together.
    let sa = Served::start_nowait(a, R0, None);
    let sb = Served::start_nowait(b, R1, None);
    let mut verdicts = [None, None];
    for _ in 0..2 {
        let e = w.next("a tap", TAP, |e| e.tap().is_some());
        let t = e.tap().unwrap();
        let i = READERS.iter().position(|(n, _)| *n == t.reader).unwrap();
        assert!(verdicts[i].is_none(), "two taps at {}", t.reader);
        verdicts[i] = Some(t.verdict.clone());
        let line: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(line["schema_version"], 1);
        assert_eq!(line["event"], "tap");
        assert_eq!(line["reader"], t.reader.as_str());
        assert_eq!(line["verdict"], t.verdict.to_json());
        assert_eq!(line["verdict"]["verdict"], "genuine");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(line["timing_ms"]["total"].as_f64().unwrap() > 0.0);
    }
    let pa = genuine_pseudonym(verdicts[0].as_ref().unwrap());
    let pb = genuine_pseudonym(verdicts[1].as_ref().unwrap());
    assert_ne!(pa, pb, "two cards, two pseudonyms");

    // The cards stay on the readers: no second tap while they do.
    std::thread::sleep(Duration::from_millis(800));
    while let Ok(e) = w.rx.try_recv() {
        assert!(
            e.tap().is_none(),
            "a card left on a reader was verified again: {e:?}"
        );
    }
    drop((sa, sb));
    let took = w.stop();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
}

#[test]
fn card_pulled_mid_verification_gives_a_verdict_and_the_other_reader_keeps_working() {
    let _lock = vpcd_lock();
    if !bench_available("card_pulled_mid_verification") {
        return;
    }
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let mut w = Watcher::start(trust_files(&city, dir.path()));
    let (slow, _) = issued_card(&city, 3);
    let (fast, _) = issued_card(&city, 4);

    // A slow card (200 ms per APDU, 5 APDUs on a first tap) on reader 0 and a
    // normal one on reader 1: reader 1's verdict does not wait for reader 0.
    let s0 = Served::start(slow, R0, Some(Duration::from_millis(200)));
    let s1 = Served::start(fast, R1, None);
    genuine_pseudonym(&w.tap(R1, TAP));
    assert!(
        !w.seen
            .iter()
            .any(|e| e.tap().is_some_and(|t| t.reader == READERS[R0].0)),
        "reader 0 finished its slow tap before reader 1"
    );

    // Pull the slow card mid-exchange.
    std::thread::sleep(Duration::from_millis(350));
    s0.pull();
    let v = w.tap(R0, TAP);
    assert!(
        matches!(v, Verdict::CardRemoved | Verdict::TransportError(_)),
        "pulled card: {v:?}"
    );
    drop(s0);

    // Reader 1 goes on: its card leaves, comes back, and is verified again.
    let fast = s1.stop();
    let s1 = Served::start(fast, R1, None);
    genuine_pseudonym(&w.tap(R1, TAP));
    // And reader 0 too, once a card comes back.
    let (again, _) = issued_card(&city, 5);
    let s0 = Served::start(again, R0, None);
    genuine_pseudonym(&w.tap(R0, TAP));
    drop((s0, s1));
    w.stop();
}

#[test]
fn emulator_killed_and_restarted_the_next_tap_is_reported() {
    let _lock = vpcd_lock();
    if !bench_available("emulator_killed_and_restarted") {
        return;
    }
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let mut w = Watcher::start(trust_files(&city, dir.path()));
    let (card, _) = issued_card(&city, 6);

    let served = Served::start(card, R0, None);
    let first = genuine_pseudonym(&w.tap(R0, TAP));
    // Kill the emulator (the serve thread ends, the vpcd socket closes) and
    // start it again on the same card, twice.
    let mut card = served.stop();
    for round in 0..2 {
        let served = Served::start(card, R0, None);
        let again = genuine_pseudonym(&w.tap(R0, TAP));
        assert_eq!(first, again, "round {round}: same card, same pseudonym");
        card = served.stop();
    }
    // Nothing was reported as broken.
    assert!(
        !w.seen.iter().any(|e| matches!(
            e,
            TapEvent::ReaderError { .. } | TapEvent::ReaderRemoved { .. }
        )),
        "{:?}",
        w.seen
    );
    w.stop();
}

#[test]
fn trust_reload_takes_a_new_revocation_list_and_refuses_bad_files() {
    let _lock = vpcd_lock();
    if !bench_available("trust_reload") {
        return;
    }
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let source = trust_files(&city, dir.path());
    let bundle_path = source.files().unwrap().bundle.clone();
    let mut w = Watcher::start(source.clone());
    let file_watch = source
        .spawn_file_watcher(
            Duration::from_millis(100),
            channel_sink(w.tx.clone(), w.shutdown.clone()),
            w.shutdown.clone(),
        )
        .unwrap();
    let (card, record) = issued_card(&city, 7);

    let served = Served::start(card, R0, None);
    genuine_pseudonym(&w.tap(R0, TAP));
    let card = served.stop();

    // The city revokes the card: the new bundle is picked up from the file.
    let revoking = bundle(&city, now() - 60, 2, vec![record.revocation_id()]);
    std::fs::write(&bundle_path, revoking.as_bytes()).unwrap();
    let e = w.next("trust_reloaded", Duration::from_secs(5), |e| {
        matches!(
            e,
            TapEvent::TrustReloaded { .. } | TapEvent::TrustReloadFailed { .. }
        )
    });
    assert!(
        matches!(
            e,
            TapEvent::TrustReloaded {
                generation: 2,
                revocation_sequence: 2,
                ..
            }
        ),
        "{e:?}"
    );
    let served = Served::start(card, R0, None);
    assert_eq!(w.tap(R0, TAP), Verdict::Revoked);
    let card = served.stop();

    // A corrupt bundle: refused (by the file watcher and by a SIGHUP-style
    // reload), the revoking trust stays.
    let mut bad = revoking.as_bytes().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    std::fs::write(&bundle_path, &bad).unwrap();
    let e = w.next("trust_reload_failed", Duration::from_secs(5), |e| {
        matches!(
            e,
            TapEvent::TrustReloaded { .. } | TapEvent::TrustReloadFailed { .. }
        )
    });
    assert!(matches!(e, TapEvent::TrustReloadFailed { .. }), "{e:?}");
    assert!(source.reload_from_files().is_err());
    std::fs::write(&bundle_path, b"not a bundle").unwrap();
    assert!(matches!(
        source.reload_from_files(),
        Err(ReaderError::Malformed { .. })
    ));
    // An older bundle (before the revocation) is a rollback: refused too,
    // already by the installation's recorded revocation state.
    std::fs::write(
        &bundle_path,
        bundle(&city, now() - 3_600, 1, vec![]).as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        source.reload_from_files(),
        Err(ReaderError::RevocationListRollback {
            seen: 2,
            found: 1,
            ..
        })
    ));
    assert_eq!(source.generation(), 2);
    let served = Served::start(card, R0, None);
    assert_eq!(w.tap(R0, TAP), Verdict::Revoked, "old trust kept");
    drop(served);
    w.stop();
    file_watch.join().unwrap();
}

#[test]
fn trust_source_refuses_another_root_and_rollbacks_without_the_bench() {
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let source = trust_files(&city, dir.path());
    assert_eq!(source.generation(), 1);
    let r = reader(&city, "library");
    let credential = || PartnerCredential::new(r.certificate.clone(), r.key.clone()).unwrap();
    let newer = citycard_reader::Trust::new(bundle(&city, now(), 2, vec![]), credential()).unwrap();
    assert_eq!(source.replace(newer).unwrap(), 2);
    let older =
        citycard_reader::Trust::new(bundle(&city, now() - 7_200, 3, vec![]), credential()).unwrap();
    assert!(matches!(
        source.replace(older),
        Err(ReaderError::BundleRollback { .. })
    ));
    let other = citycard_testkit::keys::city_named("NAMUR", "namur root");
    let o = reader(&other, "library");
    let foreign = citycard_reader::Trust::new(
        bundle(&other, now() + 60, 9, vec![]),
        PartnerCredential::new(o.certificate, o.key).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        source.replace(foreign),
        Err(ReaderError::UnexpectedRoot { .. })
    ));
    assert_eq!(source.generation(), 2);
    let memory = TrustSource::new((*source.current()).clone());
    assert!(matches!(
        memory.reload_from_files(),
        Err(ReaderError::NoTrustFiles)
    ));
    let e = memory.reload_event();
    assert_eq!(e.kind(), "trust_reload_failed");
}

/// The system's clock, Unix seconds (the trust file watcher's clock).
fn wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_trust_watcher_warns_only_inside_the_default_window() {
    let city = city();
    let dir = tempfile::tempdir().unwrap();
    let (b, c) = (
        dir.path().join("liege.bundle"),
        dir.path().join("library.cred"),
    );
    let now = wall_clock();
    let spec = |sequence: u32, next_update: u64| BundleSpec {
        sequence,
        ..BundleSpec::of(&city, now - 60, next_update)
    };
    // Just published with the recommended two days: no warning.
    let fresh = trust_bundle(&city, spec(1, now + 2 * 86_400));
    std::fs::write(&b, fresh.as_bytes()).unwrap();
    let r = reader(&city, "library");
    PartnerCredential::new(r.certificate, r.key)
        .unwrap()
        .write_to(&c)
        .unwrap();
    let source = TrustSource::from_files(&b, &c).unwrap();
    assert!(source.freshness_event(now).is_none());
    assert_eq!(citycard_reader::DEFAULT_WARN_BEFORE_SECS, 86_400);
    let (tx, rx) = std::sync::mpsc::channel();
    let shutdown = Shutdown::new();
    let watcher = source
        .spawn_file_watcher(
            Duration::from_millis(50),
            move |e| tx.send(e).is_ok(),
            shutdown.clone(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let quiet: Vec<TapEvent> = rx.try_iter().collect();
    assert!(quiet.is_empty(), "{quiet:?}");

    // The next bundle reaches its next update in 11 h 50 min: inside the window.
    let soon = trust_bundle(&city, spec(2, now + 12 * 3600 - 600));
    std::fs::write(&b, soon.as_bytes()).unwrap();
    let mut events = Vec::new();
    let warning = loop {
        let e = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("no warning; events: {events:?}"));
        if matches!(e, TapEvent::Warning { .. }) {
            break e;
        }
        events.push(e);
    };
    assert!(
        events.iter().any(|e| matches!(
            e,
            TapEvent::TrustReloaded {
                revocation_sequence: 2,
                ..
            }
        )),
        "{events:?}"
    );
    let TapEvent::Warning {
        warning: kind,
        message,
        ..
    } = &warning
    else {
        unreachable!()
    };
    assert_eq!(kind, "revocation_list_expiring");
    assert!(
        message.contains("reaches its next update in 11 h"),
        "{message}"
    );
    let line = warning.to_json_line();
    let json = citycard_testkit::schemas::assert_valid_text(
        citycard_testkit::schemas::Schema::TapEvent,
        &line,
    );
    assert_eq!(json["event"], "warning", "{line}");
    assert_eq!(json["warning"], "revocation_list_expiring", "{line}");
    // Once per bundle, not at every check.
    std::thread::sleep(Duration::from_millis(500));
    let again: Vec<TapEvent> = rx.try_iter().collect();
    assert!(again.is_empty(), "{again:?}");
    shutdown.trigger();
    watcher.join().unwrap();
}
