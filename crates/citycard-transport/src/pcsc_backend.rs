//! The PC/SC backend: [`PcscContext`] (readers, waiting for taps) and
//! [`PcscTransport`] (one connected card).
//!
//! pcsc is blocking: under tokio, use it from `spawn_blocking` or a dedicated
//! thread, one context per thread.

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, ReaderState, Scope, ShareMode, State};

use crate::transport::TransactionFn;
use crate::{CardTransport, TransportError};

/// T=0 or T=1, whichever the reader and card agree on.
fn protocols() -> Protocols {
    Protocols::T0 | Protocols::T1
}

fn lossy(name: &CStr) -> String {
    name.to_string_lossy().into_owned()
}

/// Picks the reader `name` designates among `readers`: exact name first,
/// else the unique case-insensitive substring match (an empty `name` thus
/// picks the only reader, if there is exactly one).
fn select_reader(readers: Vec<CString>, name: &str) -> Result<CString, TransportError> {
    if readers.is_empty() {
        return Err(TransportError::NoReadersAvailable);
    }
    if let Some(exact) = readers.iter().find(|r| lossy(r) == name) {
        return Ok(exact.clone());
    }
    let needle = name.to_lowercase();
    let mut matches: Vec<&CString> = readers
        .iter()
        .filter(|r| lossy(r).to_lowercase().contains(&needle))
        .collect();
    match (matches.pop(), matches.is_empty()) {
        (Some(only), true) => Ok(only.clone()),
        (Some(last), false) => {
            matches.push(last);
            Err(TransportError::AmbiguousReader {
                name: name.to_owned(),
                matches: matches.iter().map(|r| lossy(r)).collect(),
            })
        }
        (None, _) => Err(TransportError::ReaderNotFound {
            name: name.to_owned(),
            available: readers.iter().map(|r| lossy(r)).collect(),
        }),
    }
}

/// A PC/SC resource-manager context (a connection to pcscd).
///
/// Cloning gives another handle on the same context; [`cancel`](Self::cancel)
/// from another thread interrupts a blocking wait.
#[derive(Clone)]
pub struct PcscContext {
    ctx: Context,
}

impl std::fmt::Debug for PcscContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscContext").finish_non_exhaustive()
    }
}

impl PcscContext {
    /// Connects to the PC/SC service (user scope).
    ///
    /// # Errors
    ///
    /// [`TransportError::NoService`] when pcscd is not running.
    pub fn establish() -> Result<Self, TransportError> {
        Ok(Self {
            ctx: Context::establish(Scope::User)?,
        })
    }

    /// The names of all readers; empty when there is none.
    pub fn list_readers(&self) -> Result<Vec<String>, TransportError> {
        Ok(self
            .list_readers_c()?
            .iter()
            .map(|name| lossy(name))
            .collect())
    }

    fn list_readers_c(&self) -> Result<Vec<CString>, TransportError> {
        match self.ctx.list_readers_owned() {
            Ok(names) => Ok(names),
            Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
            Err(err) => Err(err.into()),
        }
    }

    /// The full name of the reader that `name` designates: the reader of that
    /// exact name, else the only reader whose name contains `name`
    /// case-insensitively (`"00 01"` finds `"Virtual PCD 00 01"`).
    ///
    /// # Errors
    ///
    /// [`TransportError::NoReadersAvailable`],
    /// [`TransportError::ReaderNotFound`] (listing the available readers) or
    /// [`TransportError::AmbiguousReader`] (listing the candidates).
    pub fn resolve_reader(&self, name: &str) -> Result<String, TransportError> {
        self.resolve_reader_c(name).map(|c| lossy(&c))
    }

    fn resolve_reader_c(&self, name: &str) -> Result<CString, TransportError> {
        select_reader(self.list_readers_c()?, name)
    }

    /// Connects to the card in the reader designated by `reader` (see
    /// [`resolve_reader`](Self::resolve_reader)), in shared mode, T=0 or T=1.
    ///
    /// # Errors
    ///
    /// As `resolve_reader`, plus [`TransportError::NoCard`] when the reader is empty.
    pub fn connect(&self, reader: &str) -> Result<PcscTransport, TransportError> {
        let name = self.resolve_reader_c(reader)?;
        let card = match self.ctx.connect(&name, ShareMode::Shared, protocols()) {
            Ok(card) => card,
            Err(pcsc::Error::UnknownReader | pcsc::Error::ReaderUnavailable) => {
                return Err(TransportError::ReaderNotFound {
                    name: lossy(&name),
                    available: self.list_readers()?,
                })
            }
            Err(err) => return Err(err.into()),
        };
        Ok(PcscTransport {
            card: Some(card),
            reader: lossy(&name),
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        })
    }

    /// Blocks until a (responsive) card is present in `reader`, or `timeout`
    /// passes (`None`: wait forever). Returns at once if a card is already
    /// there. Returns the card's ATR.
    ///
    /// # Errors
    ///
    /// [`TransportError::Timeout`], [`TransportError::Cancelled`], or
    /// [`TransportError::ReaderNotFound`] if the reader disappears.
    pub fn wait_for_card(
        &self,
        reader: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, TransportError> {
        self.wait_for(reader, timeout, true)
    }

    /// Blocks until `reader` is empty, or `timeout` passes (`None`: wait
    /// forever). Returns at once if no card is there.
    ///
    /// # Errors
    ///
    /// As [`wait_for_card`](Self::wait_for_card).
    pub fn wait_for_removal(
        &self,
        reader: &str,
        timeout: Option<Duration>,
    ) -> Result<(), TransportError> {
        self.wait_for(reader, timeout, false).map(|_| ())
    }

    fn wait_for(
        &self,
        reader: &str,
        timeout: Option<Duration>,
        present: bool,
    ) -> Result<Vec<u8>, TransportError> {
        let name = self.resolve_reader_c(reader)?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut states = [ReaderState::new(name.clone(), State::UNAWARE)];
        loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.ctx.get_status_change(remaining, &mut states)?;
            let [state] = &mut states;
            let event = state.event_state();
            if event.intersects(State::UNKNOWN | State::UNAVAILABLE | State::IGNORE) {
                return Err(TransportError::ReaderNotFound {
                    name: lossy(&name),
                    available: self.list_readers()?,
                });
            }
            let has_card = event.contains(State::PRESENT) && !event.contains(State::MUTE);
            if present && has_card {
                return Ok(state.atr().to_vec());
            }
            if !present && !event.contains(State::PRESENT) {
                return Ok(Vec::new());
            }
            if remaining == Some(Duration::ZERO) {
                return Err(TransportError::Timeout);
            }
            state.sync_current_state();
        }
    }

    /// Interrupts a blocking [`wait_for_card`](Self::wait_for_card) or
    /// [`wait_for_removal`](Self::wait_for_removal) running on another clone
    /// of this context; it returns [`TransportError::Cancelled`].
    pub fn cancel(&self) -> Result<(), TransportError> {
        Ok(self.ctx.cancel()?)
    }
}

/// A connected card in a PC/SC reader (shared mode, T=0 or T=1).
///
/// - [`reset`](CardTransport::reset) reconnects with `Disposition::ResetCard`
///   (the card's volatile state is lost).
/// - [`transaction`](CardTransport::transaction) holds the card exclusively
///   (`SCardBeginTransaction`); if the card was reset by another application
///   meanwhile, the handle is reconnected and [`TransportError::CardReset`] is
///   returned so the caller can start over from SELECT.
/// - A transmit that finds the card reset by someone else also reconnects and
///   returns [`TransportError::CardReset`]. A removed card gives
///   [`TransportError::CardRemoved`]; `reset` reconnects once a card is back.
/// - [`disconnect`](Self::disconnect) leaves the card as it is
///   (`LeaveCard`); so does dropping a `PcscTransport` (unlike `pcsc::Card`,
///   whose `Drop` resets the card). Use
///   [`disconnect_with`](Self::disconnect_with) to reset or power it down.
pub struct PcscTransport {
    /// `None` only once disconnected (inside `disconnect_with` and `drop`).
    card: Option<pcsc::Card>,
    reader: String,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PcscTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcscTransport")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl PcscTransport {
    /// Establishes a context and connects to the card in `reader` (exact name
    /// or unique case-insensitive substring). See [`PcscContext::connect`].
    pub fn connect(reader: &str) -> Result<Self, TransportError> {
        PcscContext::establish()?.connect(reader)
    }

    /// The full name of the reader.
    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// Disconnects, leaving the card powered and its state as it is.
    pub fn disconnect(self) -> Result<(), TransportError> {
        self.disconnect_with(Disposition::LeaveCard)
    }

    /// Disconnects with an explicit disposition (`ResetCard` to wipe the
    /// card's session state, `UnpowerCard` to power it down).
    pub fn disconnect_with(mut self, disposition: Disposition) -> Result<(), TransportError> {
        let card = self.card.take().ok_or(TransportError::NotConnected)?;
        match card.disconnect(disposition) {
            Ok(()) => Ok(()),
            Err((card, err)) => {
                // Put it back: `drop` tries once more with LeaveCard.
                self.card = Some(card);
                Err(err.into())
            }
        }
    }

    fn card(&mut self) -> Result<&mut pcsc::Card, TransportError> {
        self.card.as_mut().ok_or(TransportError::NotConnected)
    }
}

impl Drop for PcscTransport {
    fn drop(&mut self) {
        if let Some(card) = self.card.take() {
            // On failure pcsc hands the card back and its own Drop runs.
            let _ = card.disconnect(Disposition::LeaveCard);
        }
    }
}

/// Transmits through `card`, mapping errors; reconnects after a reset by
/// another application so that the handle stays usable.
fn transmit(
    card: &pcsc::Card,
    buf: &mut [u8],
    apdu: &[u8],
) -> Result<Vec<u8>, (pcsc::Error, TransportError)> {
    match card.transmit(apdu, buf) {
        // No byte at all, not even a status word: no answer came from the
        // card, which left the field mid-exchange (pcscd's vpcd driver
        // reports a card that disappears during a transmit this way, before
        // the reader's status shows it gone).
        Ok([]) => Err((pcsc::Error::RemovedCard, TransportError::CardRemoved)),
        Ok(response) => Ok(response.to_vec()),
        Err(pcsc::Error::InsufficientBuffer) => Err((
            pcsc::Error::InsufficientBuffer,
            TransportError::ResponseTooLong { limit: buf.len() },
        )),
        Err(err) => Err((err, err.into())),
    }
}

fn atr(card: &pcsc::Card) -> Result<Vec<u8>, TransportError> {
    Ok(card.status2_owned()?.atr().to_vec())
}

impl CardTransport for PcscTransport {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let Self { card, buf, .. } = self;
        let card = card.as_mut().ok_or(TransportError::NotConnected)?;
        match transmit(card, buf, apdu) {
            Ok(response) => Ok(response),
            Err((pcsc::Error::ResetCard, err)) => {
                card.reconnect(ShareMode::Shared, protocols(), Disposition::LeaveCard)?;
                Err(err)
            }
            Err((_, err)) => Err(err),
        }
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        atr(self.card.as_ref().ok_or(TransportError::NotConnected)?)
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(self
            .card()?
            .reconnect(ShareMode::Shared, protocols(), Disposition::ResetCard)?)
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        let Self { card, buf, .. } = self;
        let card = card.as_mut().ok_or(TransportError::NotConnected)?;
        let tx = match card.transaction2() {
            Ok(tx) => tx,
            Err((card, pcsc::Error::ResetCard)) => {
                card.reconnect(ShareMode::Shared, protocols(), Disposition::LeaveCard)?;
                return Err(TransportError::CardReset);
            }
            Err((_, err)) => return Err(err.into()),
        };
        let mut view = PcscTransaction { tx, buf };
        let result = body(&mut view);
        let ended = match view.tx.end(Disposition::LeaveCard) {
            Ok(()) => Ok(()),
            // The returned transaction's Drop retries with LeaveCard.
            Err((_tx, err)) => Err(TransportError::from(err)),
        };
        result.and(ended)
    }
}

/// A [`PcscTransport`] inside a PC/SC transaction.
struct PcscTransaction<'a> {
    tx: pcsc::Transaction<'a>,
    buf: &'a mut [u8],
}

impl CardTransport for PcscTransaction<'_> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        match transmit(&self.tx, self.buf, apdu) {
            Ok(response) => Ok(response),
            Err((pcsc::Error::ResetCard, err)) => {
                self.tx
                    .reconnect(ShareMode::Shared, protocols(), Disposition::LeaveCard)?;
                Err(err)
            }
            Err((_, err)) => Err(err),
        }
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        atr(&self.tx)
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        Ok(self
            .tx
            .reconnect(ShareMode::Shared, protocols(), Disposition::ResetCard)?)
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        // Already inside a transaction.
        body(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readers(names: &[&str]) -> Vec<CString> {
        names.iter().map(|n| CString::new(*n).unwrap()).collect()
    }

    #[test]
    fn selects_exact_then_unique_substring() {
        let two = readers(&["Virtual PCD 00 00", "Virtual PCD 00 01"]);
        let pick = |name: &str| select_reader(two.clone(), name).map(|c| lossy(&c));
        assert_eq!(pick("Virtual PCD 00 01").unwrap(), "Virtual PCD 00 01");
        assert_eq!(pick("00 00").unwrap(), "Virtual PCD 00 00");
        assert_eq!(pick("pcd 00 01").unwrap(), "Virtual PCD 00 01");
        match pick("virtual") {
            Err(TransportError::AmbiguousReader { name, matches }) => {
                assert_eq!(name, "virtual");
                assert_eq!(matches, ["Virtual PCD 00 00", "Virtual PCD 00 01"]);
            }
            other => panic!("{other:?}"),
        }
        let err = pick("ACR122").unwrap_err();
        assert_eq!(
            err.to_string(),
            "reader \"ACR122\" not found; available readers: \"Virtual PCD 00 00\", \"Virtual PCD 00 01\""
        );
        assert!(matches!(
            select_reader(Vec::new(), "x"),
            Err(TransportError::NoReadersAvailable)
        ));
        // An exact name wins even when it is also a substring of another reader.
        let nested = readers(&["Reader", "Reader 2"]);
        assert_eq!(
            lossy(&select_reader(nested.clone(), "Reader").unwrap()),
            "Reader"
        );
        assert!(matches!(
            select_reader(nested, "reader"),
            Err(TransportError::AmbiguousReader { .. })
        ));
        assert_eq!(
            lossy(&select_reader(readers(&["Only one"]), "").unwrap()),
            "Only one"
        );
    }

    #[test]
    fn maps_pcsc_errors_to_typed_variants() {
        use pcsc::Error as E;
        assert!(matches!(
            TransportError::from(E::NoReadersAvailable),
            TransportError::NoReadersAvailable
        ));
        assert!(matches!(
            TransportError::from(E::NoSmartcard),
            TransportError::NoCard
        ));
        assert!(matches!(
            TransportError::from(E::RemovedCard),
            TransportError::CardRemoved
        ));
        assert!(matches!(
            TransportError::from(E::ResetCard),
            TransportError::CardReset
        ));
        assert!(matches!(
            TransportError::from(E::Timeout),
            TransportError::Timeout
        ));
        assert!(matches!(
            TransportError::from(E::Cancelled),
            TransportError::Cancelled
        ));
        assert!(matches!(
            TransportError::from(E::NoService),
            TransportError::NoService
        ));
        assert!(matches!(
            TransportError::from(E::SharingViolation),
            TransportError::Pcsc(E::SharingViolation)
        ));
    }
}
