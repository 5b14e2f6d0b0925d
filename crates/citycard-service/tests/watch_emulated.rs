//! The tap service engine as a library, over the emulated reader and over a
//! reader system with no readers: taps, heartbeats, and giving up on a
//! reader name that matches nothing. No pcscd involved.
#![cfg(test)]

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use citycard_card::Applet;
use citycard_emulator::FileStore;
use citycard_proto::apdu::ContactlessCard;
use citycard_reader::watch::{
    watch_blocking_with, ReaderMonitor, ReaderPort, ReaderSystem, TrustSource,
};
use citycard_reader::{
    Clock, PartnerCredential, Policy, ReaderError, ReaderSelection, Shutdown, TapEvent, WatchConfig,
};
use citycard_service::EmulatedReaders;
use citycard_testkit::keys::{self, city, date, reader, test_key, trust_bundle, BundleSpec};
use citycard_testkit::script::{personalise, sample_resident, Personalisation, Script};
use citycard_transport::TransportError;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn now() -> u64 {
    date(keys::TODAY).days_since_epoch() as u64 * 86_400 + 43_200
}

fn trust(dir: &Path) -> TrustSource {
    let city = city();
    let (b, c) = (dir.join("liege.bundle"), dir.join("library.cred"));
    let bundle = trust_bundle(&city, BundleSpec::of(&city, now() - 3_600, now() + 86_400));
    std::fs::write(&b, bundle.as_bytes()).unwrap();
    let r = reader(&city, "library");
    if !c.exists() {
        PartnerCredential::new(r.certificate, r.key)
            .unwrap()
            .write_to(&c)
            .unwrap();
    }
    TrustSource::from_files(&b, &c).unwrap()
}

/// An issued card whose state is in `path`.
fn card_file(path: &Path) {
    let city = city();
    let mut card = Applet::new(
        FileStore::new(path).unwrap(),
        ChaCha20Rng::from_seed([7; 32]),
    );
    let mut rng = ChaCha20Rng::from_seed([8; 32]);
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    let mut s = Script::new(&mut link);
    personalise(
        &mut s,
        Personalisation {
            city: &city,
            station_ephemeral: test_key("station ephemeral"),
            rng: &mut rng,
            resident: sample_resident(),
            issue_date: date((2026, 11, 20)),
            valid_to: date((2031, 11, 19)),
            groups: 3,
            prepare: true,
        },
    )
    .expect("personalisation");
}

type Watching = (
    mpsc::Receiver<TapEvent>,
    std::thread::JoinHandle<Result<(), ReaderError>>,
);

/// Runs the watcher on a thread; its events and its result.
fn spawn(
    system: Arc<dyn ReaderSystem>,
    config: WatchConfig,
    trust: TrustSource,
    shutdown: Shutdown,
) -> Watching {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        watch_blocking_with(system, config, trust, move |e| tx.send(e).is_ok(), shutdown)
    });
    (rx, handle)
}

fn next(rx: &mpsc::Receiver<TapEvent>, kind: &str) -> TapEvent {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let e = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no {kind} event"));
        citycard_testkit::schemas::assert_valid(
            citycard_testkit::schemas::Schema::TapEvent,
            &e.to_json(),
        );
        if e.kind() == kind {
            return e;
        }
    }
}

#[test]
fn a_card_file_moved_onto_the_emulated_reader_is_one_tap() {
    let tmp = tempfile::tempdir().unwrap();
    let trust = trust(tmp.path());
    card_file(&tmp.path().join("alex.card"));
    let desk = tmp.path().join("desk.card");
    let system = EmulatedReaders::new(vec![desk.clone()]);
    let name = system.names()[0].clone();
    let config = WatchConfig::new(Policy::at(now()).with_today(date(keys::TODAY)))
        .with_clock(Clock::Fixed)
        .with_readers(ReaderSelection::Names(vec![name.clone()]))
        .with_heartbeat(Some(Duration::from_millis(200)));
    let shutdown = Shutdown::new();
    let (rx, handle) = spawn(Arc::new(system), config, trust, shutdown.clone());
    assert_eq!(next(&rx, "reader_added").reader(), Some(name.as_str()));
    let TapEvent::Heartbeat { readers, .. } = next(&rx, "heartbeat") else {
        panic!("not a heartbeat")
    };
    assert_eq!(readers, std::slice::from_ref(&name));
    std::fs::rename(tmp.path().join("alex.card"), &desk).unwrap();
    let tap = next(&rx, "tap");
    let verdict = &tap.tap().unwrap().verdict;
    assert!(verdict.is_genuine(), "{verdict:?}");
    // Still on the reader: no second tap, heartbeats go on.
    next(&rx, "heartbeat");
    next(&rx, "heartbeat");
    assert!(rx.try_iter().all(|e| e.kind() != "tap"));
    shutdown.trigger();
    handle.join().unwrap().unwrap();
}

/// A reader system with no reader at all.
struct NoReaders;

struct Empty;

impl ReaderMonitor for Empty {
    fn list_readers(&mut self) -> Result<Vec<String>, TransportError> {
        Ok(Vec::new())
    }
    fn wait_for_change(&mut self, timeout: Duration, _stop: &dyn Fn() -> bool) {
        std::thread::sleep(timeout.min(Duration::from_millis(20)));
    }
}

impl ReaderSystem for NoReaders {
    fn monitor(&self) -> Result<Box<dyn ReaderMonitor>, TransportError> {
        Ok(Box::new(Empty))
    }

    fn open(&self, reader: &str) -> Result<Box<dyn ReaderPort>, TransportError> {
        Err(TransportError::ReaderNotFound {
            name: reader.into(),
            available: vec![],
        })
    }
}

#[test]
fn a_reader_name_matching_nothing_warns_then_gives_up() {
    let tmp = tempfile::tempdir().unwrap();
    let config = WatchConfig::new(Policy::at(now()))
        .with_readers(ReaderSelection::Names(vec!["ACR122".into()]))
        .with_reader_wait(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let (rx, handle) = spawn(
        Arc::new(NoReaders),
        config,
        trust(tmp.path()),
        Shutdown::new(),
    );
    let TapEvent::Warning { warning, .. } = next(&rx, "warning") else {
        panic!("not a warning")
    };
    assert_eq!(warning, "no_matching_reader");
    match handle.join().unwrap() {
        Err(ReaderError::NoMatchingReader { names, available }) => {
            assert_eq!(names, ["ACR122"]);
            assert!(available.is_empty());
        }
        other => panic!("expected NoMatchingReader, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Without a wait limit it keeps looking (one warning) until shut down.
    let config = WatchConfig::new(Policy::at(now()))
        .with_readers(ReaderSelection::Names(vec!["ACR122".into()]))
        .with_reader_wait(None);
    let shutdown = Shutdown::new();
    let (rx, handle) = spawn(
        Arc::new(NoReaders),
        config,
        trust(tmp.path()),
        shutdown.clone(),
    );
    next(&rx, "warning");
    std::thread::sleep(Duration::from_millis(400));
    assert!(!handle.is_finished());
    assert!(rx.try_iter().all(|e| e.kind() != "warning"), "warned once");
    shutdown.trigger();
    handle.join().unwrap().unwrap();
}
