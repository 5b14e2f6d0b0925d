//! Test support shared by the issuer's in-process tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use citycard_transport::{CardTransport, TransportError};

/// A transport that loses the card right after the card has executed the
/// last (unchained) command with instruction `ins`: the card did the work,
/// the host never sees the answer.
pub struct Pull<T> {
    /// The transport to the card.
    pub inner: T,
    /// Instruction after which the card is lost (none: never).
    pub armed: Option<u8>,
    /// The card has been lost (until the next reset).
    pub pulled: bool,
}

impl<T: CardTransport> CardTransport for Pull<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.pulled {
            return Err(TransportError::CardRemoved);
        }
        let r = self.inner.transmit_raw(apdu)?;
        if let (Some(ins), [cla, i, ..]) = (self.armed, apdu) {
            if *i == ins && cla & 0x10 == 0 {
                self.pulled = true;
                return Err(TransportError::CardRemoved);
            }
        }
        Ok(r)
    }
    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.pulled = false;
        self.armed = None;
        self.inner.reset()
    }
    fn transaction(
        &mut self,
        body: &mut citycard_transport::TransactionFn<'_>,
    ) -> Result<(), TransportError> {
        body(self)
    }
}
