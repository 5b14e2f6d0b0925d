//! [`Traced`]: record, count and print every raw APDU exchange.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::transport::TransactionFn;
use crate::{CardTransport, TransportError};

/// One raw exchange as it crossed the wrapped transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// The command APDU exactly as sent (header, Lc, data, Le).
    pub command: Vec<u8>,
    /// The raw response (data and SW1 SW2); empty when the exchange failed.
    pub response: Vec<u8>,
    /// The transport error, when the exchange failed (its `Display` text).
    pub error: Option<String>,
    /// Time spent in the wrapped transport's `transmit_raw`.
    pub elapsed: Duration,
}

/// Counters of a [`Traced`] transport.
///
/// Exact definitions (benchmarks and tests assert on them):
///
/// - `apdus`: number of calls to `transmit_raw` on the wrapped transport,
///   i.e. command APDUs put on the wire, *including* each chained segment,
///   each GET RESPONSE, each `6Cxx` resend, and calls that failed with a
///   transport error.
/// - `bytes_sent`: sum of the full lengths of those command APDUs: header
///   (4) + Lc (0 or 1) + data + Le (0 or 1).
/// - `bytes_received`: sum of the full lengths of the raw responses returned:
///   data + SW1 SW2 (2). A failed exchange adds 0.
/// - `resets`: number of calls to `reset` (successful or not).
/// - `elapsed`: total time spent in `transmit_raw` of the wrapped transport.
///
/// ATR reads and transaction begin/end are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Command APDUs transmitted.
    pub apdus: u64,
    /// Bytes of command APDUs, headers included.
    pub bytes_sent: u64,
    /// Bytes of responses, SW included.
    pub bytes_received: u64,
    /// Card resets requested.
    pub resets: u64,
    /// Total time spent transmitting.
    pub elapsed: Duration,
}

impl fmt::Display for TraceStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} APDU(s), {} byte(s) sent, {} byte(s) received, {:.3} ms",
            self.apdus,
            self.bytes_sent,
            self.bytes_received,
            self.elapsed.as_secs_f64() * 1000.0
        )
    }
}

/// The recording state of a [`Traced`] transport, apart from the transport
/// itself (so that it follows the transport into transactions).
struct Recorder {
    stats: TraceStats,
    entries: Vec<TraceEntry>,
    keep_entries: bool,
    echo: Option<Box<dyn Write + Send>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("stats", &self.stats)
            .field("entries", &self.entries.len())
            .field("keep_entries", &self.keep_entries)
            .field("echo", &self.echo.is_some())
            .finish()
    }
}

impl Recorder {
    fn transmit(
        &mut self,
        inner: &mut dyn CardTransport,
        apdu: &[u8],
    ) -> Result<Vec<u8>, TransportError> {
        self.line(format_args!(">> {}", hex::encode_upper(apdu)));
        let start = Instant::now();
        let result = inner.transmit_raw(apdu);
        let elapsed = start.elapsed();
        self.stats.apdus = self.stats.apdus.saturating_add(1);
        self.stats.bytes_sent = self.stats.bytes_sent.saturating_add(apdu.len() as u64);
        self.stats.elapsed = self.stats.elapsed.saturating_add(elapsed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        match &result {
            Ok(response) => {
                self.stats.bytes_received = self
                    .stats
                    .bytes_received
                    .saturating_add(response.len() as u64);
                self.line(format_args!(
                    "<< {}  ({ms:.3} ms)",
                    hex::encode_upper(response)
                ));
            }
            Err(err) => self.line(format_args!("<< error: {err}  ({ms:.3} ms)")),
        }
        if self.keep_entries {
            let (response, error) = match &result {
                Ok(response) => (response.clone(), None),
                Err(err) => (Vec::new(), Some(err.to_string())),
            };
            self.entries.push(TraceEntry {
                command: apdu.to_vec(),
                response,
                error,
                elapsed,
            });
        }
        result
    }

    fn reset(&mut self, inner: &mut dyn CardTransport) -> Result<(), TransportError> {
        self.stats.resets = self.stats.resets.saturating_add(1);
        let result = inner.reset();
        match &result {
            Ok(()) => self.line(format_args!("-- reset")),
            Err(err) => self.line(format_args!("-- reset failed: {err}")),
        }
        result
    }

    /// Writes one trace line to the echo sink. Write errors are ignored:
    /// tracing never changes the outcome of an exchange.
    fn line(&mut self, args: fmt::Arguments<'_>) {
        if let Some(sink) = self.echo.as_mut() {
            let _ = writeln!(sink, "{args}");
        }
    }
}

/// A transport wrapper that records every raw exchange (command bytes,
/// response bytes, elapsed time), keeps [`TraceStats`] counters, and can print
/// each exchange in hex as it happens (for a `--trace` flag):
///
/// ```text
/// >> 00A4040007F0000000010001
/// << 9000  (0.012 ms)
/// ```
///
/// Place it *under* the channel, `CardChannel<Traced<T>>`, so that each
/// chained segment and GET RESPONSE is seen as the separate APDU it is. It
/// follows the transport into [`CardTransport::transaction`].
///
/// Entries accumulate until [`take_entries`](Self::take_entries) or
/// [`clear`](Self::clear); for long-running readers use
/// [`counters_only`](Self::counters_only).
#[derive(Debug)]
pub struct Traced<T> {
    inner: T,
    recorder: Recorder,
}

impl<T: CardTransport> Traced<T> {
    /// Wraps `inner`, recording entries and counters, printing nothing.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            recorder: Recorder {
                stats: TraceStats::default(),
                entries: Vec::new(),
                keep_entries: true,
                echo: None,
            },
        }
    }

    /// Wraps `inner`, keeping counters but no entries.
    pub fn counters_only(inner: T) -> Self {
        let mut traced = Self::new(inner);
        traced.recorder.keep_entries = false;
        traced
    }

    /// Also prints every exchange to standard error (`>> …` / `<< …`).
    pub fn echo_to_stderr(mut self) -> Self {
        self.recorder.echo = Some(Box::new(std::io::stderr()));
        self
    }

    /// Prints every exchange to `sink` instead (or stops printing with `None`).
    pub fn set_echo(&mut self, sink: Option<Box<dyn Write + Send>>) {
        self.recorder.echo = sink;
    }

    /// The counters so far.
    pub fn stats(&self) -> TraceStats {
        self.recorder.stats
    }

    /// The recorded exchanges so far, oldest first.
    pub fn entries(&self) -> &[TraceEntry] {
        &self.recorder.entries
    }

    /// Removes and returns the recorded exchanges (counters are kept).
    pub fn take_entries(&mut self) -> Vec<TraceEntry> {
        std::mem::take(&mut self.recorder.entries)
    }

    /// Clears entries and counters (e.g. between two measured verifications).
    pub fn clear(&mut self) {
        self.recorder.entries.clear();
        self.recorder.stats = TraceStats::default();
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The wrapped transport, mutably. Exchanges made directly on it are not
    /// recorded.
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    /// Unwraps the transport, dropping the trace.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: CardTransport> CardTransport for Traced<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.recorder.transmit(&mut self.inner, apdu)
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.recorder.reset(&mut self.inner)
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        let Self { inner, recorder } = self;
        inner.transaction(&mut |tx: &mut dyn CardTransport| {
            let mut view = TracedView {
                inner: tx,
                recorder: &mut *recorder,
            };
            body(&mut view)
        })
    }
}

/// A [`Traced`] recorder lent to a transaction of the wrapped transport.
struct TracedView<'a, 'b> {
    inner: &'a mut (dyn CardTransport + 'b),
    recorder: &'a mut Recorder,
}

impl CardTransport for TracedView<'_, '_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.recorder.transmit(&mut *self.inner, apdu)
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.recorder.reset(&mut *self.inner)
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        // Already inside a transaction: run the nested body directly.
        body(self)
    }
}
