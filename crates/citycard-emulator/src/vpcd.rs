//! The vpcd bridge: plugs a [`ContactlessCard`] into pcscd's virtual reader.
//!
//! The vsmartcard `vpcd` driver, loaded by pcscd, listens on TCP and treats
//! whoever connects as the card in its reader. With the Debian package's
//! `/etc/reader.conf.d/vpcd` (`CHANNELID 0x8C7B`), `pcscd -f` shows two readers
//! and listens on two ports (checked with pcscd 1.9.9 and vsmartcard-vpcd 3.3):
//!
//! | port                  | reader               |
//! |-----------------------|----------------------|
//! | 35963 ([`VPCD_PORT`]) | `Virtual PCD 00 00`  |
//! | 35964                 | `Virtual PCD 00 01`  |
//!
//! pcscd binds these ports on all interfaces (`0.0.0.0`), not only loopback.
//! pcscd opens the listening sockets at start-up, so nothing can connect before
//! it runs, and a pcscd restart closes the connection: [`serve`] reconnects.
//!
//! # Protocol
//!
//! Every message in both directions is a 2-byte big-endian length followed by
//! that many bytes. From vpcd, a 1-byte payload is a control code
//! ([`CTRL_POWER_OFF`], [`CTRL_POWER_ON`], [`CTRL_RESET`], [`CTRL_GET_ATR`]; only
//! the last one is answered, with the ATR as a message), and any longer payload
//! is a command APDU, answered with the response APDU as a message. Empty
//! messages and unknown control codes are ignored.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citycard_proto::apdu::ContactlessCard;

use crate::answer_fault::Action;
use crate::{AnswerFault, AnswerFaults, EmulatorError, PowerLatch};

/// vpcd's port for reader `Virtual PCD 00 00`.
pub const VPCD_PORT: u16 = 35963;
/// vpcd's port for the second reader, `Virtual PCD 00 01`.
pub const VPCD_PORT_SECOND: u16 = 35964;
/// The reader names pcscd gives the vpcd slots, in port order.
pub const VPCD_READER_NAMES: [&str; 2] = ["Virtual PCD 00 00", "Virtual PCD 00 01"];

/// Control code: the reader switched the field off.
pub const CTRL_POWER_OFF: u8 = 0;
/// Control code: the reader switched the field on.
pub const CTRL_POWER_ON: u8 = 1;
/// Control code: warm reset.
pub const CTRL_RESET: u8 = 2;
/// Control code: the reader asks for the ATR.
pub const CTRL_GET_ATR: u8 = 4;

/// The response sent when the card's answer cannot be framed (fewer than two
/// bytes, or more than 65535): SW `6F00`, "no precise diagnosis".
pub const UNFRAMEABLE_RESPONSE: [u8; 2] = [0x6F, 0x00];

/// How [`serve`] retries when vpcd is not listening or closed the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Wait after the first failed attempt (and after a dropped connection).
    pub initial_backoff: Duration,
    /// Upper bound of the wait, which doubles after every failed attempt.
    pub max_backoff: Duration,
    /// Give up with [`EmulatorError::VpcdUnreachable`] after this many
    /// consecutive failed attempts; `None` retries until the stop flag is set.
    pub max_attempts: Option<u32>,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
}

impl Default for ReconnectPolicy {
    /// 50 ms doubling up to 1 s, forever, 1 s per attempt.
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            max_attempts: None,
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// Options of [`serve`].
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// vpcd's address; default `127.0.0.1:35963` (reader `Virtual PCD 00 00`).
    pub addr: SocketAddr,
    /// `--fault latency-ms=N`: sleep this long before sending each APDU
    /// response (control codes and the ATR are answered at once).
    pub latency: Option<Duration>,
    /// Retry policy when vpcd is unreachable or drops the connection.
    pub reconnect: ReconnectPolicy,
    /// When set to `true`, [`serve`] returns [`ServeOutcome::Stopped`] within
    /// about [`poll_interval`](Self::poll_interval).
    pub stop: Option<Arc<AtomicBool>>,
    /// A latch shared with the card's storage (see [`crate::TearingStorage`]):
    /// once tripped, the command being processed gets no response and [`serve`]
    /// returns [`ServeOutcome::PowerLost`].
    pub power_latch: Option<PowerLatch>,
    /// `--fault wrong-sw`, `truncated`, …: answer GENERAL AUTHENTICATE wrongly
    /// on purpose ([`crate::answer_fault`]).
    pub answer_fault: Option<AnswerFault>,
    /// How often a blocked read wakes up to check the stop flag.
    pub poll_interval: Duration,
    /// Give up sending a message after this long (then reconnect).
    pub write_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, VPCD_PORT)),
            latency: None,
            reconnect: ReconnectPolicy::default(),
            stop: None,
            power_latch: None,
            answer_fault: None,
            poll_interval: Duration::from_millis(100),
            write_timeout: Duration::from_secs(5),
        }
    }
}

impl ServeOptions {
    /// Default options for vpcd at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            ..Self::default()
        }
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    fn power_lost(&self) -> bool {
        self.power_latch.as_ref().is_some_and(PowerLatch::is_lost)
    }

    /// Sleeps `total`, waking every poll interval; `false` if stopped meanwhile.
    fn sleep(&self, total: Duration) -> bool {
        let end = Instant::now() + total;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(self.poll_interval.max(Duration::from_millis(1))));
        }
    }
}

/// Why [`serve`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServeOutcome {
    /// The stop flag was set.
    Stopped,
    /// The card lost power (`transmit` returned `CardLost`, or the power latch
    /// tripped). The command got no response. The caller should exit at once
    /// with [`crate::POWER_LOST_EXIT_STATUS`], as a card pulled from the field.
    PowerLost,
}

/// Connects to vpcd as a TCP client and answers for `card` until stopped or
/// until the card loses power.
///
/// Power off and reset call [`ContactlessCard::reset`]; so does a dropped
/// connection (the reader is gone, and the field with it). When vpcd is not
/// listening or closes the connection (pcscd stopped or restarted), `serve`
/// reconnects according to [`ServeOptions::reconnect`]. Never panics on what
/// vpcd sends.
///
/// # Errors
///
/// [`EmulatorError::VpcdUnreachable`] when the reconnect budget is exhausted;
/// [`EmulatorError::VpcdIo`] when a connected socket cannot be configured.
pub fn serve<C: ContactlessCard>(
    card: &mut C,
    opts: &ServeOptions,
) -> Result<ServeOutcome, EmulatorError> {
    let mut faults = opts.answer_fault.map(AnswerFaults::new);
    let mut failures: u32 = 0;
    let mut backoff = opts.reconnect.initial_backoff;
    loop {
        if opts.stopped() {
            return Ok(ServeOutcome::Stopped);
        }
        let stream = match TcpStream::connect_timeout(&opts.addr, opts.reconnect.connect_timeout) {
            Ok(stream) => stream,
            Err(source) => {
                failures = failures.saturating_add(1);
                if opts
                    .reconnect
                    .max_attempts
                    .is_some_and(|max| failures >= max)
                {
                    return Err(EmulatorError::VpcdUnreachable {
                        addr: opts.addr,
                        attempts: failures,
                        source,
                    });
                }
                if !opts.sleep(backoff) {
                    return Ok(ServeOutcome::Stopped);
                }
                backoff = backoff.saturating_mul(2).min(opts.reconnect.max_backoff);
                continue;
            }
        };
        failures = 0;
        backoff = opts.reconnect.initial_backoff;
        match session(card, faults.as_mut(), stream, opts)? {
            SessionEnd::Stopped => return Ok(ServeOutcome::Stopped),
            SessionEnd::PowerLost => return Ok(ServeOutcome::PowerLost),
            SessionEnd::Disconnected => {
                card.reset();
                if let Some(faults) = faults.as_mut() {
                    faults.reset();
                }
                if !opts.sleep(opts.reconnect.initial_backoff) {
                    return Ok(ServeOutcome::Stopped);
                }
            }
        }
    }
}

enum SessionEnd {
    Stopped,
    PowerLost,
    Disconnected,
}

fn session<C: ContactlessCard>(
    card: &mut C,
    mut faults: Option<&mut AnswerFaults>,
    mut stream: TcpStream,
    opts: &ServeOptions,
) -> Result<SessionEnd, EmulatorError> {
    let io_err = |source| EmulatorError::VpcdIo {
        addr: opts.addr,
        source,
    };
    stream
        .set_read_timeout(Some(opts.poll_interval.max(Duration::from_millis(1))))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(opts.write_timeout.max(Duration::from_millis(1))))
        .map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;
    let mut frames = FrameReader::default();
    loop {
        if opts.stopped() {
            return Ok(SessionEnd::Stopped);
        }
        // pcscd's vpcd driver sends each APDU as one small write and waits for
        // the answer: without quick ACKs, delayed ACK + Nagle on its side add
        // ~40 ms per APDU. Re-armed before every read (Linux clears it).
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&stream).set_quickack(true);
        let frame = match frames.next_frame(&mut stream) {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(()) => return Ok(SessionEnd::Disconnected),
        };
        let reply = match frame.as_slice() {
            [] => None,
            [CTRL_POWER_OFF] | [CTRL_RESET] => {
                card.reset();
                if let Some(faults) = faults.as_deref_mut() {
                    faults.reset();
                }
                None
            }
            [CTRL_GET_ATR] => Some(card.atr()),
            [_] => None,
            command => {
                let answered = match faults.as_deref_mut() {
                    Some(faults) => faults.handle(card, command),
                    None => card.transmit(command).map(Action::Reply),
                };
                let response = match answered {
                    Ok(Action::Reply(response)) => response,
                    // The card leaves the field mid-answer: vpcd sees the
                    // connection drop, pcscd reports the card removed.
                    Ok(Action::Remove) => return Ok(SessionEnd::Disconnected),
                    Err(_) => return Ok(SessionEnd::PowerLost),
                };
                if opts.power_lost() {
                    return Ok(SessionEnd::PowerLost);
                }
                if let Some(latency) = opts.latency {
                    if !opts.sleep(latency) {
                        return Ok(SessionEnd::Stopped);
                    }
                }
                if response.len() < 2 || response.len() > usize::from(u16::MAX) {
                    Some(UNFRAMEABLE_RESPONSE.to_vec())
                } else {
                    Some(response)
                }
            }
        };
        if let Some(reply) = reply {
            if write_frame(&mut stream, &reply).is_err() {
                return Ok(SessionEnd::Disconnected);
            }
        }
    }
}

/// Frames `payload` (2-byte big-endian length, then the bytes).
/// Fails with `InvalidInput` if it is longer than 65535 bytes.
fn write_frame(stream: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len =
        u16::try_from(payload.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut message = Vec::with_capacity(2 + payload.len());
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(payload);
    stream.write_all(&message)?;
    stream.flush()
}

/// Reassembles messages from a byte stream that may deliver them in pieces.
#[derive(Default)]
struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// `Ok(Some(frame))` for a complete message, `Ok(None)` when the read timed
    /// out first, `Err(())` when the connection is closed or broken.
    fn next_frame(&mut self, stream: &mut impl Read) -> Result<Option<Vec<u8>>, ()> {
        loop {
            if let Some(frame) = self.take_frame() {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => return Err(()),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(_) => return Err(()),
            }
        }
    }

    fn take_frame(&mut self) -> Option<Vec<u8>> {
        let (len, rest) = self.buf.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let frame = rest.get(..len)?.to_vec();
        self.buf.drain(..2 + len);
        Some(frame)
    }
}
