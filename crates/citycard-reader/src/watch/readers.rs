//! Where taps come from: the [`ReaderSystem`] trait the watcher drives, and
//! its PC/SC implementation ([`PcscReaders`], cargo feature `pcsc`).
//!
//! The watcher itself never imports `pcsc`: everything PC/SC-specific lives
//! in `citycard-transport`'s PC/SC backend ([`PcscContext`],
//! `PcscReaderMonitor`), so `citycard-reader --no-default-features` builds
//! and runs (e.g. over an emulated card) without libpcsclite.

use std::time::Duration;

use citycard_transport::{CardTransport, TransportError};
#[cfg(feature = "pcsc")]
use citycard_transport::{PcscContext, PcscReaderMonitor};

/// A connected card, as a reader port hands it to the watcher.
pub type BoxedTransport = Box<dyn CardTransport + Send>;

/// A source of readers and taps: PC/SC, or an emulated reader.
///
/// The watcher opens one [`ReaderMonitor`] for its monitor thread and one
/// [`ReaderPort`] per reader thread; each is used by that thread alone.
pub trait ReaderSystem: Send + Sync + 'static {
    /// The monitor's view of the readers.
    ///
    /// # Errors
    ///
    /// The reader system cannot be reached (e.g. pcscd is not running): the
    /// watcher stops with [`ReaderError::Pcsc`](crate::ReaderError::Pcsc).
    fn monitor(&self) -> Result<Box<dyn ReaderMonitor>, TransportError>;

    /// One reader, for its own thread.
    ///
    /// # Errors
    ///
    /// The reader system cannot be reached; the watcher retries with backoff.
    fn open(&self, reader: &str) -> Result<Box<dyn ReaderPort>, TransportError>;
}

/// Which readers exist, and waiting for that to change.
pub trait ReaderMonitor: Send {
    /// The full names of the readers present now (empty when there is none).
    ///
    /// # Errors
    ///
    /// The service failed; the watcher reports it and retries with backoff.
    fn list_readers(&mut self) -> Result<Vec<String>, TransportError>;

    /// Waits at most `timeout` for a reader to be plugged or unplugged;
    /// returns early (in ≤ 50 ms slices) once `stop()` is true.
    fn wait_for_change(&mut self, timeout: Duration, stop: &dyn Fn() -> bool);
}

/// One reader: waiting for a card, connecting, waiting for it to leave.
pub trait ReaderPort: Send {
    /// Returns once a card is present, or [`TransportError::Timeout`] after
    /// `timeout`; [`TransportError::ReaderNotFound`] if the reader is gone.
    ///
    /// # Errors
    ///
    /// As described; any other error ends the reader thread (restarted with backoff).
    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), TransportError>;

    /// Connects to the present card.
    ///
    /// # Errors
    ///
    /// [`TransportError::NoCard`] / [`TransportError::CardRemoved`] (the card
    /// left: verdict `card_removed`), [`TransportError::ReaderNotFound`] (the
    /// reader is gone), others (verdict `transport_error`).
    fn connect(&mut self) -> Result<BoxedTransport, TransportError>;

    /// Returns once the reader is empty, or [`TransportError::Timeout`] after `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait_for_card`](Self::wait_for_card).
    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), TransportError>;
}

/// The PC/SC readers (pcscd), including readers plugged in later.
#[cfg(feature = "pcsc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct PcscReaders;

#[cfg(feature = "pcsc")]
impl ReaderSystem for PcscReaders {
    fn monitor(&self) -> Result<Box<dyn ReaderMonitor>, TransportError> {
        Ok(Box::new(PcscReaderMonitor::establish()?))
    }

    fn open(&self, reader: &str) -> Result<Box<dyn ReaderPort>, TransportError> {
        Ok(Box::new(PcscPort {
            ctx: PcscContext::establish()?,
            reader: reader.to_owned(),
        }))
    }
}

#[cfg(feature = "pcsc")]
impl ReaderMonitor for PcscReaderMonitor {
    fn list_readers(&mut self) -> Result<Vec<String>, TransportError> {
        PcscReaderMonitor::list_readers(self)
    }

    fn wait_for_change(&mut self, timeout: Duration, stop: &dyn Fn() -> bool) {
        PcscReaderMonitor::wait_for_change(self, timeout, stop);
    }
}

/// One PC/SC reader with its own context.
#[cfg(feature = "pcsc")]
struct PcscPort {
    ctx: PcscContext,
    reader: String,
}

#[cfg(feature = "pcsc")]
impl ReaderPort for PcscPort {
    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), TransportError> {
        self.ctx
            .wait_for_card(&self.reader, Some(timeout))
            .map(|_| ())
    }

    fn connect(&mut self) -> Result<BoxedTransport, TransportError> {
        Ok(Box::new(self.ctx.connect(&self.reader)?))
    }

    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), TransportError> {
        self.ctx.wait_for_removal(&self.reader, Some(timeout))
    }
}
