//! The backend trait every card connection implements.

use crate::TransportError;

/// The body of a transaction, as passed to [`CardTransport::transaction`]:
/// it receives the transport to use while the card is held exclusively.
pub type TransactionFn<'a> = dyn FnMut(&mut dyn CardTransport) -> Result<(), TransportError> + 'a;

/// A connection to one card: the minimal backend trait.
///
/// A backend moves bytes and nothing more: one short command APDU in, the raw
/// response (data followed by SW1 SW2) out. Command chaining, `61xx`
/// GET RESPONSE and `6Cxx` retries are handled once, above every backend, by
/// [`CardChannel`](crate::CardChannel).
///
/// The trait is object-safe: `Box<dyn CardTransport>` and
/// `&mut dyn CardTransport` are transports too.
///
/// Implementations in this crate: [`MemoryTransport`](crate::MemoryTransport)
/// (an in-process card), `PcscTransport` (a PC/SC reader, feature `pcsc`),
/// and the wrapper [`Traced`](crate::Traced).
pub trait CardTransport {
    /// Sends one short command APDU (header, optional Lc and data, optional Le)
    /// and returns the card's raw response including SW1 SW2.
    ///
    /// Backends return what the card sent, unchecked: a response shorter than
    /// two bytes is reported by the channel as
    /// [`TransportError::MalformedResponse`].
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError>;

    /// The card's Answer To Reset.
    fn atr(&self) -> Result<Vec<u8>, TransportError>;

    /// Power-cycles (or warm-resets) the card and reconnects. All volatile
    /// card state (selected application, sessions, chaining buffers) is lost.
    fn reset(&mut self) -> Result<(), TransportError>;

    /// Runs `body` while holding the card exclusively (PC/SC
    /// `SCardBeginTransaction` … `SCardEndTransaction`); no other application
    /// can interleave APDUs. Backends without concurrent users (the in-memory
    /// card) simply call `body(self)`.
    ///
    /// Most code uses [`CardChannel::transaction`](crate::CardChannel::transaction),
    /// which wraps this in a typed closure.
    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError>;
}

impl<T: CardTransport + ?Sized> CardTransport for &mut T {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit_raw(apdu)
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        (**self).atr()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        (**self).reset()
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        (**self).transaction(body)
    }
}

impl<T: CardTransport + ?Sized> CardTransport for Box<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit_raw(apdu)
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        (**self).atr()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        (**self).reset()
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        (**self).transaction(body)
    }
}
