//! The vpcd bridge against a fake vpcd (a TCP listener in the test that speaks
//! the protocol). Needs no pcscd.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use citycard_emulator::{
    serve, EmulatorError, PowerLatch, ReconnectPolicy, ServeOptions, ServeOutcome,
};
use citycard_proto::apdu::{CardLost, ContactlessCard};

const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// Echoes the command followed by 9000; `DE AD ..` loses power; `EE ..`
/// answers 70000 bytes; `EF ..` answers a single byte; `BB ..` trips the latch.
struct TestCard {
    resets: Arc<AtomicUsize>,
    commands: Arc<AtomicUsize>,
    latch: PowerLatch,
}

impl ContactlessCard for TestCard {
    fn atr(&self) -> Vec<u8> {
        ATR.to_vec()
    }
    fn reset(&mut self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        self.commands.fetch_add(1, Ordering::SeqCst);
        match command.first() {
            Some(0xDE) => Err(CardLost),
            Some(0xEE) => Ok(vec![0; 70_000]),
            Some(0xEF) => Ok(vec![0x90]),
            Some(0xBB) => {
                self.latch.trip();
                Ok(vec![0x90, 0x00])
            }
            _ => {
                let mut r = command.to_vec();
                r.extend_from_slice(&[0x90, 0x00]);
                Ok(r)
            }
        }
    }
}

struct Harness {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    resets: Arc<AtomicUsize>,
    commands: Arc<AtomicUsize>,
    latch: PowerLatch,
    handle: Option<JoinHandle<Result<ServeOutcome, EmulatorError>>>,
}

fn fast_opts(addr: SocketAddr, stop: Arc<AtomicBool>) -> ServeOptions {
    ServeOptions {
        addr,
        stop: Some(stop),
        poll_interval: Duration::from_millis(10),
        reconnect: ReconnectPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_attempts: Some(200),
            connect_timeout: Duration::from_millis(500),
        },
        ..ServeOptions::default()
    }
}

fn start(tweak: impl FnOnce(&mut ServeOptions)) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let resets = Arc::new(AtomicUsize::new(0));
    let commands = Arc::new(AtomicUsize::new(0));
    let latch = PowerLatch::new();
    let mut opts = fast_opts(listener.local_addr().unwrap(), stop.clone());
    opts.power_latch = Some(latch.clone());
    tweak(&mut opts);
    let mut card = TestCard {
        resets: resets.clone(),
        commands: commands.clone(),
        latch: latch.clone(),
    };
    let handle = std::thread::spawn(move || serve(&mut card, &opts));
    Harness {
        listener,
        stop,
        resets,
        commands,
        latch,
        handle: Some(handle),
    }
}

impl Harness {
    fn accept(&self) -> TcpStream {
        let (s, _) = self.listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }
    fn finish(mut self) -> Result<ServeOutcome, EmulatorError> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
    fn join(mut self) -> Result<ServeOutcome, EmulatorError> {
        let h = self.handle.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !h.is_finished() {
            assert!(Instant::now() < deadline, "serve did not return");
            std::thread::sleep(Duration::from_millis(5));
        }
        h.join().unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn send(s: &mut TcpStream, payload: &[u8]) {
    let mut m = (payload.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(payload);
    s.write_all(&m).unwrap();
}

fn recv(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut p = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut p).unwrap();
    p
}

fn exchange(s: &mut TcpStream, apdu: &[u8]) -> Vec<u8> {
    send(s, apdu);
    recv(s)
}

fn echo(apdu: &[u8]) -> Vec<u8> {
    let mut r = apdu.to_vec();
    r.extend_from_slice(&[0x90, 0x00]);
    r
}

/// Waits for the serving side to have processed everything sent so far.
fn sync(s: &mut TcpStream) {
    send(s, &[4]);
    assert_eq!(recv(s), ATR);
}

#[test]
fn power_on_atr_apdu_reset_power_off() {
    let h = start(|_| {});
    let mut s = h.accept();
    send(&mut s, &[1]);
    send(&mut s, &[4]);
    assert_eq!(recv(&mut s), ATR);
    assert_eq!(
        h.resets.load(Ordering::SeqCst),
        0,
        "power on alone does not reset"
    );
    let select = [0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00, 0x00];
    assert_eq!(exchange(&mut s, &select), echo(&select));
    send(&mut s, &[2]);
    sync(&mut s);
    assert_eq!(h.resets.load(Ordering::SeqCst), 1, "reset resets the card");
    send(&mut s, &[0]);
    sync(&mut s);
    assert_eq!(
        h.resets.load(Ordering::SeqCst),
        2,
        "power off resets the card"
    );
    assert_eq!(h.commands.load(Ordering::SeqCst), 1);
    assert_eq!(h.finish().unwrap(), ServeOutcome::Stopped);
}

#[test]
fn malformed_and_fragmented_frames() {
    let h = start(|_| {});
    let mut s = h.accept();
    send(&mut s, &[]); // empty message: ignored
    send(&mut s, &[9]); // unknown control code: ignored
    send(&mut s, &[0xFF]);
    sync(&mut s);
    assert_eq!(h.commands.load(Ordering::SeqCst), 0);
    assert_eq!(h.resets.load(Ordering::SeqCst), 0);
    // Two-byte "APDU": handed to the card, whatever it is.
    assert_eq!(exchange(&mut s, &[0x00, 0xB0]), echo(&[0x00, 0xB0]));
    // One message delivered a byte at a time, across several read timeouts.
    let apdu = [0x80, 0x10, 0x01, 0x02, 0x01, 0x55];
    let mut m = vec![0, apdu.len() as u8];
    m.extend_from_slice(&apdu);
    for b in m {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(15));
    }
    assert_eq!(recv(&mut s), echo(&apdu));
    // Several messages in one write.
    let mut m = Vec::new();
    for p in [&[1u8][..], &[4], &[0x00, 0xCA, 0x00, 0x00]] {
        m.extend_from_slice(&(p.len() as u16).to_be_bytes());
        m.extend_from_slice(p);
    }
    s.write_all(&m).unwrap();
    assert_eq!(recv(&mut s), ATR);
    assert_eq!(recv(&mut s), echo(&[0x00, 0xCA, 0x00, 0x00]));
    // A maximal (65535-byte) command.
    let big = vec![0x42; 65535];
    send(&mut s, &big);
    let r = recv(&mut s);
    assert_eq!(r, [0x6F, 0x00], "65537-byte echo cannot be framed");
    // Responses that cannot be framed become 6F00.
    assert_eq!(exchange(&mut s, &[0xEE, 0, 0, 0]), [0x6F, 0x00]);
    assert_eq!(exchange(&mut s, &[0xEF, 0, 0, 0]), [0x6F, 0x00]);
    // Random well-framed garbage never kills the loop.
    let mut x: u32 = 12345;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let len = (x % 40) as usize;
        let p: Vec<u8> = (0..len).map(|i| (x >> (i % 24)) as u8 & 0xCF).collect(); // never DE/EE/EF/BB first
        send(&mut s, &p);
        if len >= 2 {
            assert_eq!(recv(&mut s), echo(&p));
        } else if p == [4] {
            assert_eq!(recv(&mut s), ATR);
        }
    }
    sync(&mut s);
    assert_eq!(h.finish().unwrap(), ServeOutcome::Stopped);
}

#[test]
fn reconnects_after_drop_and_resets_card() {
    let h = start(|_| {});
    let mut s = h.accept();
    assert_eq!(exchange(&mut s, &[0, 1, 2, 3]), echo(&[0, 1, 2, 3]));
    drop(s); // pcscd went away
    let mut s = h.accept(); // ... and came back: serve connects again
    sync(&mut s);
    assert_eq!(
        h.resets.load(Ordering::SeqCst),
        1,
        "a dropped connection resets the card"
    );
    assert_eq!(exchange(&mut s, &[0, 4, 5, 6]), echo(&[0, 4, 5, 6]));
    // A connection dropped in the middle of a message (length says 65535).
    s.write_all(&[0xFF, 0xFF, 1, 2, 3]).unwrap();
    drop(s);
    let mut s = h.accept();
    assert_eq!(exchange(&mut s, &[0, 7, 8, 9]), echo(&[0, 7, 8, 9]));
    assert_eq!(h.resets.load(Ordering::SeqCst), 2);
    assert_eq!(h.finish().unwrap(), ServeOutcome::Stopped);
}

#[test]
fn waits_for_vpcd_to_listen() {
    // Find a free port, close it, and start listening only later.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let opts = fast_opts(addr, stop.clone());
    let resets = Arc::new(AtomicUsize::new(0));
    let commands = Arc::new(AtomicUsize::new(0));
    let mut card = TestCard {
        resets,
        commands,
        latch: PowerLatch::new(),
    };
    let handle = std::thread::spawn(move || serve(&mut card, &opts));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!handle.is_finished());
    let listener = TcpListener::bind(addr).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(exchange(&mut s, &[0, 1, 2, 3]), echo(&[0, 1, 2, 3]));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(handle.join().unwrap().unwrap(), ServeOutcome::Stopped);
}

#[test]
fn gives_up_after_max_attempts() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut opts = fast_opts(addr, Arc::new(AtomicBool::new(false)));
    opts.reconnect.max_attempts = Some(3);
    let mut card = TestCard {
        resets: Arc::default(),
        commands: Arc::default(),
        latch: PowerLatch::new(),
    };
    match serve(&mut card, &opts) {
        Err(EmulatorError::VpcdUnreachable {
            addr: a,
            attempts: 3,
            ..
        }) => assert_eq!(a, addr),
        other => panic!("expected VpcdUnreachable after 3 attempts, got {other:?}"),
    }
}

#[test]
fn stop_flag_ends_backoff() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut opts = fast_opts(addr, stop.clone());
    opts.reconnect.max_attempts = None;
    let mut card = TestCard {
        resets: Arc::default(),
        commands: Arc::default(),
        latch: PowerLatch::new(),
    };
    let handle = std::thread::spawn(move || serve(&mut card, &opts));
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    let t = Instant::now();
    while !handle.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "serve ignored the stop flag"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(handle.join().unwrap().unwrap(), ServeOutcome::Stopped);
}

#[test]
fn card_lost_means_power_lost_without_response() {
    let h = start(|_| {});
    let mut s = h.accept();
    assert_eq!(exchange(&mut s, &[0, 1, 2, 3]), echo(&[0, 1, 2, 3]));
    send(&mut s, &[0xDE, 0xAD, 0x00, 0x00]);
    // No response: the connection just closes.
    let mut buf = [0u8; 16];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "a card without power answers nothing"
    );
    assert_eq!(h.join().unwrap(), ServeOutcome::PowerLost);
}

#[test]
fn tripped_latch_means_power_lost_without_response() {
    let h = start(|_| {});
    let mut s = h.accept();
    assert!(!h.latch.is_lost());
    send(&mut s, &[0xBB, 0x00, 0x00, 0x00]);
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    assert_eq!(h.join().unwrap(), ServeOutcome::PowerLost);
}

#[test]
fn latency_is_applied_to_apdus_only() {
    let latency = Duration::from_millis(150);
    let h = start(|o| o.latency = Some(latency));
    let mut s = h.accept();
    let t = Instant::now();
    sync(&mut s);
    assert!(t.elapsed() < latency, "control codes are not delayed");
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(exchange(&mut s, &[0, 1, 2, 3]), echo(&[0, 1, 2, 3]));
        assert!(t.elapsed() >= latency, "response after {:?}", t.elapsed());
    }
    assert_eq!(h.finish().unwrap(), ServeOutcome::Stopped);
}

#[test]
fn no_latency_is_fast() {
    let h = start(|_| {});
    let mut s = h.accept();
    let t = Instant::now();
    for _ in 0..10 {
        exchange(&mut s, &[0, 1, 2, 3]);
    }
    // With 150 ms latency this would take 1.5 s; the bound is loose for busy CI machines.
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "10 APDUs took {:?}",
        t.elapsed()
    );
    assert_eq!(h.finish().unwrap(), ServeOutcome::Stopped);
}

/// A GENERAL AUTHENTICATE whose (echoed) answer is 261 bytes long.
fn long_general_authenticate() -> Vec<u8> {
    let mut apdu = vec![0x00, 0x86, 0x00, 0x00, 0xFF];
    apdu.extend_from_slice(&[0x7C; 0xFF]);
    apdu.push(0x00);
    apdu
}

#[test]
fn removed_mid_answer_drops_the_connection_after_the_first_part() {
    let h = start(|o| o.answer_fault = Some(citycard_emulator::AnswerFault::RemovedMidAnswer));
    let mut s = h.accept();
    let first = exchange(&mut s, &long_general_authenticate());
    assert_eq!(first.len(), 258);
    assert_eq!(&first[256..], &[0x61, 0x05]);
    send(&mut s, &[0x00, 0xC0, 0x00, 0x00, 0x05]);
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the card left: the connection is closed, no answer");
    // The bridge reconnects (the card comes back) after a reset.
    let mut again = h.accept();
    sync(&mut again);
    assert!(h.resets.load(Ordering::SeqCst) >= 1);
    h.finish().unwrap();
}

#[test]
fn truncated_answer_is_served_short_with_9000() {
    let h = start(|o| o.answer_fault = Some(citycard_emulator::AnswerFault::Truncated));
    let mut s = h.accept();
    let ga = long_general_authenticate();
    let answer = exchange(&mut s, &ga);
    // The echo of 261 command bytes, less 8, then 9000.
    assert_eq!(answer.len(), ga.len() - 8 + 2);
    assert_eq!(&answer[answer.len() - 2..], &[0x90, 0x00]);
    assert_eq!(&answer[..answer.len() - 2], &ga[..ga.len() - 8]);
    // Other commands pass through.
    assert_eq!(
        exchange(&mut s, &[0x00, 0xA4, 0x04, 0x00]),
        echo(&[0x00, 0xA4, 0x04, 0x00])
    );
    h.finish().unwrap();
}
