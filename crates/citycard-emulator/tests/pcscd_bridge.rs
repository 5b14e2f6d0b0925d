//! End to end through the real PC/SC stack: the emulator serves a card to
//! pcscd's vpcd reader `Virtual PCD 00 00` (127.0.0.1:35963), and PC/SC clients
//! (the `pcsc` crate, `opensc-tool`) talk to it.
//!
//! Needs pcscd running with the vpcd driver: `tools/testbench start`. Without it
//! this test FAILS, unless `CITYCARD_NO_PCSCD=1` is set, in which case it prints
//! a notice and passes without testing anything.
//!
//! Only one process may own a vpcd port at a time: the tests in this file take
//! a process-wide lock and run one after the other.
#![cfg(test)]

use std::ffi::CString;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use citycard_emulator::{
    serve, EmulatorError, ReconnectPolicy, ServeOptions, ServeOutcome, VPCD_PORT,
};
use citycard_proto::apdu::{CardLost, ContactlessCard};
use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

const READER: &str = "Virtual PCD 00 00";

static VPCD_LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    VPCD_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Answers SELECT with 9000 and echoes the data field of anything else, followed by 9000.
struct TrivialCard {
    resets: Arc<AtomicUsize>,
}

impl ContactlessCard for TrivialCard {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x80, 0x80, 0x01, 0x01]
    }
    fn reset(&mut self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let mut response = match command {
            [_, 0xA4, ..] => Vec::new(),
            [_, _, _, _, lc, rest @ ..] if rest.len() >= usize::from(*lc) => {
                rest[..usize::from(*lc)].to_vec()
            }
            _ => Vec::new(),
        };
        response.extend_from_slice(&[0x90, 0x00]);
        Ok(response)
    }
}

/// `Ok(context)` when pcscd runs and shows the vpcd reader; `Err(None)` when the
/// test should be skipped (CITYCARD_NO_PCSCD=1); panics otherwise.
fn pcscd_or_skip(test: &str) -> Option<Context> {
    let problem = match Context::establish(Scope::User) {
        Err(e) => format!("cannot reach pcscd ({e})"),
        Ok(ctx) => match ctx.list_readers_owned() {
            Ok(readers) if readers.iter().any(|r| r.to_str() == Ok(READER)) => return Some(ctx),
            Ok(readers) => {
                format!("pcscd runs but has no reader {READER:?} (readers: {readers:?})")
            }
            Err(e) => format!("pcscd runs but listing readers failed ({e})"),
        },
    };
    if std::env::var("CITYCARD_NO_PCSCD").as_deref() == Ok("1") {
        eprintln!("\n**********************************************************************");
        eprintln!("*** NOTICE: {test} NOT RUN: CITYCARD_NO_PCSCD=1 and {problem}.");
        eprintln!("*** Run `tools/testbench start` to test through the real PC/SC stack.");
        eprintln!("**********************************************************************\n");
        return None;
    }
    panic!(
        "{test}: {problem}.\nThis test needs pcscd with the vsmartcard vpcd driver: run `tools/testbench install` \
         and `tools/testbench start` (as root), or set CITYCARD_NO_PCSCD=1 to skip it explicitly."
    );
}

struct Served {
    stop: Arc<AtomicBool>,
    resets: Arc<AtomicUsize>,
    handle: JoinHandle<Result<ServeOutcome, EmulatorError>>,
}

fn serve_trivial_card() -> Served {
    let stop = Arc::new(AtomicBool::new(false));
    let resets = Arc::new(AtomicUsize::new(0));
    let opts = ServeOptions {
        addr: SocketAddr::from(([127, 0, 0, 1], VPCD_PORT)),
        stop: Some(stop.clone()),
        poll_interval: Duration::from_millis(20),
        reconnect: ReconnectPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_attempts: Some(25),
            connect_timeout: Duration::from_secs(1),
        },
        ..ServeOptions::default()
    };
    let mut card = TrivialCard {
        resets: resets.clone(),
    };
    let handle = std::thread::spawn(move || serve(&mut card, &opts));
    Served {
        stop,
        resets,
        handle,
    }
}

impl Served {
    /// Stops the emulator and waits until pcscd has seen the card leave, so
    /// that the next test starts with an empty reader.
    fn stop(self, ctx: &Context, reader: &CString) {
        self.stop.store(true, Ordering::SeqCst);
        let outcome = self.handle.join().expect("serve thread panicked");
        assert_eq!(outcome.unwrap(), ServeOutcome::Stopped);
        wait_for(
            ctx,
            reader,
            State::EMPTY,
            "the card to leave the reader after the emulator stopped",
        );
    }
}

/// Waits up to 10 s until the reader's state contains `wanted`.
fn wait_for(ctx: &Context, reader: &CString, wanted: State, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut states = [ReaderState::new(reader.clone(), State::UNAWARE)];
    loop {
        match ctx.get_status_change(Duration::from_millis(200), &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => panic!("get_status_change on {READER:?}: {e}"),
        }
        if states[0].event_state().contains(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after 10 s waiting for {what} (reader state {:?}; another emulator on port {VPCD_PORT}?)",
            states[0].event_state()
        );
        states[0].sync_current_state();
    }
}

/// Connects to the reader, waiting up to 10 s for pcscd to see the card.
fn connect(ctx: &Context, reader: &CString) -> pcsc::Card {
    wait_for(
        ctx,
        reader,
        State::PRESENT,
        "pcscd to see the emulated card",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ctx.connect(reader, ShareMode::Shared, Protocols::ANY) {
            Ok(card) => return card,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!(
                "no card in {READER:?} after 10 s: {e} (is another emulator on port {VPCD_PORT}?)"
            ),
        }
    }
}

fn transmit(card: &pcsc::Card, apdu: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE];
    card.transmit(apdu, &mut buf).expect("transmit").to_vec()
}

#[test]
fn pcsc_client_talks_to_emulated_card() {
    let _guard = lock();
    let Some(ctx) = pcscd_or_skip("pcsc_client_talks_to_emulated_card") else {
        return;
    };
    let reader = CString::new(READER).unwrap();
    wait_for(
        &ctx,
        &reader,
        State::EMPTY,
        "an empty reader (another emulator on the port?)",
    );
    let served = serve_trivial_card();

    let card = connect(&ctx, &reader);
    assert_eq!(
        transmit(&card, &[0x00, 0xA4, 0x04, 0x00, 0x03, 0xA0, 0x00, 0x01]),
        [0x90, 0x00]
    );
    assert_eq!(
        transmit(
            &card,
            &[0x80, 0x10, 0x00, 0x00, 0x03, 0x01, 0x02, 0x03, 0x00]
        ),
        [0x01, 0x02, 0x03, 0x90, 0x00]
    );
    let (status, atr) = {
        let s = card.status2_owned().expect("status");
        (s.status(), s.atr().to_vec())
    };
    assert!(status.contains(pcsc::Status::PRESENT), "{status:?}");
    assert_eq!(atr, [0x3B, 0x80, 0x80, 0x01, 0x01]);
    card.disconnect(Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("disconnect");

    // Reconnect and talk again; then disconnect with a reset, which reaches the card.
    let card = connect(&ctx, &reader);
    let resets_before = served.resets.load(Ordering::SeqCst);
    assert_eq!(
        transmit(&card, &[0x00, 0x20, 0x00, 0x00, 0x01, 0x42]),
        [0x42, 0x90, 0x00]
    );
    card.disconnect(Disposition::ResetCard)
        .map_err(|(_, e)| e)
        .expect("disconnect");
    let deadline = Instant::now() + Duration::from_secs(5);
    while served.resets.load(Ordering::SeqCst) == resets_before {
        assert!(
            Instant::now() < deadline,
            "a ResetCard disconnect did not reset the card"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let card = connect(&ctx, &reader);
    assert_eq!(
        transmit(&card, &[0x00, 0xA4, 0x04, 0x00, 0x00]),
        [0x90, 0x00]
    );
    card.disconnect(Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("disconnect");

    // Stopping the emulator removes the card from the reader.
    served.stop(&ctx, &reader);
    match ctx.connect(&reader, ShareMode::Shared, Protocols::ANY) {
        Err(pcsc::Error::NoSmartcard) | Err(pcsc::Error::RemovedCard) => {}
        Err(e) => panic!("unexpected error after the card left: {e}"),
        Ok(_) => panic!("a card is still in {READER:?} after the emulator stopped"),
    }
}

#[test]
fn opensc_tool_talks_to_emulated_card() {
    let _guard = lock();
    let Some(ctx) = pcscd_or_skip("opensc_tool_talks_to_emulated_card") else {
        return;
    };
    let reader = CString::new(READER).unwrap();
    wait_for(
        &ctx,
        &reader,
        State::EMPTY,
        "an empty reader (another emulator on the port?)",
    );
    let served = serve_trivial_card();
    // Wait until pcscd sees the card, then let go of it.
    connect(&ctx, &reader)
        .disconnect(Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("disconnect");

    let output = Command::new("opensc-tool")
        .args(["-r", READER, "-s", "00A4040000"])
        .output()
        .expect("opensc-tool not found: run `tools/testbench install`");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "opensc-tool failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("Sending: 00 A4 04 00 00"), "{stdout}");
    assert!(stdout.contains("Received (SW1=0x90, SW2=0x00)"), "{stdout}");
    served.stop(&ctx, &reader);
}
