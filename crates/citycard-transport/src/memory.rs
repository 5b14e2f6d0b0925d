//! [`MemoryTransport`]: an in-process card driven exactly as a reader drives one.

use citycard_proto::apdu::ContactlessCard;
use citycard_proto::apdu::{HEADER_LEN, MAX_SHORT_COMMAND};

use crate::transport::TransactionFn;
use crate::{CardTransport, TransportError};

/// A [`CardTransport`] over an in-process [`ContactlessCard`], behaving like a
/// PC/SC reader with that card on it:
///
/// - [`new`](Self::new) "inserts" the card: it is reset (power-up) and its ATR
///   is available;
/// - each command goes to [`ContactlessCard::transmit`] unchanged; commands
///   that are not short APDUs (fewer than 4 or more than 261 bytes) are
///   refused with [`TransportError::InvalidCommandLength`], as a reader
///   without extended length would;
/// - when the card answers `Err(CardLost)` (power lost mid-command), the
///   command fails with [`TransportError::CardRemoved`], and so does every
///   command and ATR read after it until [`reset`](CardTransport::reset);
/// - [`remove`](Self::remove) simulates pulling the card off the reader.
///
/// Transactions just run their body (there is no other application).
#[derive(Debug)]
pub struct MemoryTransport<C> {
    card: C,
    powered: bool,
}

impl<C: ContactlessCard> MemoryTransport<C> {
    /// Puts `card` on the reader: resets it (volatile state cleared) and powers it.
    pub fn new(mut card: C) -> Self {
        card.reset();
        Self {
            card,
            powered: true,
        }
    }

    /// The card.
    pub fn card(&self) -> &C {
        &self.card
    }

    /// The card, mutably (e.g. to inspect or tear its storage in a test).
    pub fn card_mut(&mut self) -> &mut C {
        &mut self.card
    }

    /// Takes the card off the reader.
    pub fn into_inner(self) -> C {
        self.card
    }

    /// `true` while the card is powered (not lost or removed since the last reset).
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Simulates the card leaving the field: commands fail with
    /// [`TransportError::CardRemoved`] until [`reset`](CardTransport::reset).
    pub fn remove(&mut self) {
        self.powered = false;
    }
}

impl<C: ContactlessCard> CardTransport for MemoryTransport<C> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if !self.powered {
            return Err(TransportError::CardRemoved);
        }
        if !(HEADER_LEN..=MAX_SHORT_COMMAND).contains(&apdu.len()) {
            return Err(TransportError::InvalidCommandLength { len: apdu.len() });
        }
        match self.card.transmit(apdu) {
            Ok(response) => Ok(response),
            Err(citycard_proto::apdu::CardLost) => {
                self.powered = false;
                Err(TransportError::CardRemoved)
            }
        }
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        if self.powered {
            Ok(self.card.atr())
        } else {
            Err(TransportError::CardRemoved)
        }
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.card.reset();
        self.powered = true;
        Ok(())
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        body(self)
    }
}
