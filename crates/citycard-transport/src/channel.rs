//! [`CardChannel`]: command chaining, GET RESPONSE and `6Cxx` retries, handled
//! once for every command and every backend.

use citycard_proto::apdu::{
    short_le, CLA_CHAINING, HEADER_LEN, INS_GET_RESPONSE, MAX_SHORT_DATA, MAX_SHORT_RESPONSE,
};
use citycard_proto::{apdu::Command, apdu::CommandView, apdu::Response, sw::StatusWord};

use crate::{CardTransport, TransportError};

/// Limits and policies of a [`CardChannel`].
///
/// Every loop driven by the card is bounded by these, so a hostile or broken
/// card produces a typed error, never a hang or an unbounded allocation.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Largest response data field accepted for one command, all GET RESPONSE
    /// rounds together, status word excluded. Default 4096. Exceeding it gives
    /// [`TransportError::ResponseTooLong`].
    pub max_response_len: usize,
    /// Largest number of GET RESPONSE commands sent for one command.
    /// Default 16. A card still answering `61xx` after that many gives
    /// [`TransportError::TooManyGetResponse`].
    pub max_get_response: usize,
    /// Largest data field of one APDU; longer data is chained. Default and
    /// maximum 255 (short APDUs); values outside `1..=255` are clamped.
    pub max_command_data: usize,
    /// What to do when an intermediate command of a chain is not answered
    /// `9000`: `false` (default) returns that response (data and status word)
    /// from [`CardChannel::exchange`] without sending the rest of the chain;
    /// `true` returns [`TransportError::ChainingRefused`] instead.
    pub chaining_refusal_is_error: bool,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            max_response_len: 4096,
            max_get_response: 16,
            max_command_data: MAX_SHORT_DATA,
            chaining_refusal_is_error: false,
        }
    }
}

/// A card channel: the one place where the awkward parts of ISO 7816-4
/// transport are handled, on top of any [`CardTransport`].
///
/// [`exchange`](Self::exchange) sends one logical [`Command`] and returns one
/// logical [`Response`]:
///
/// 1. **Command chaining** (ISO 7816-4 §5.4.1): data longer than
///    `max_command_data` (255) is split into segments; every segment but the
///    last is sent with `CLA | 0x10` and no Le, and must be answered exactly
///    `9000` (any data in that answer is ignored). Otherwise the chain stops
///    there and that answer is returned as the response (or
///    [`TransportError::ChainingRefused`], see [`ChannelConfig`]). Le goes on
///    the last segment only.
/// 2. **`61xx`**: the data received so far is kept and `00 C0 00 00 xx`
///    (GET RESPONSE) is sent; `61 00` asks for 256 bytes. The data of every
///    round is concatenated; the final status word is the one that ends the
///    last round.
/// 3. **`6Cxx`**: the same APDU (last segment or GET RESPONSE) is sent again
///    once with Le = `xx` (`6C 00` = 256). A second `6Cxx` for the same APDU
///    is returned as the response.
///
/// Status words are not errors: `6982` comes back as a [`Response`]. Errors
/// mean that no trustworthy response exists. Nothing a card sends can make
/// this code panic or loop without bound.
///
/// To count and print APDUs, put a [`Traced`](crate::Traced) *under* the
/// channel (`CardChannel<Traced<T>>`): then every chained segment, GET
/// RESPONSE and retry is recorded as the APDU it is on the wire.
#[derive(Debug)]
pub struct CardChannel<T> {
    transport: T,
    config: ChannelConfig,
}

impl<T: CardTransport> CardChannel<T> {
    /// A channel with the default [`ChannelConfig`].
    pub fn new(transport: T) -> Self {
        Self::with_config(transport, ChannelConfig::default())
    }

    /// A channel with the given limits and policies.
    pub fn with_config(transport: T, config: ChannelConfig) -> Self {
        Self { transport, config }
    }

    /// The limits and policies in force.
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Changes the limits and policies.
    pub fn config_mut(&mut self) -> &mut ChannelConfig {
        &mut self.config
    }

    /// The underlying transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The underlying transport, mutably (e.g. to read or clear a trace).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_inner(self) -> T {
        self.transport
    }

    /// The card's Answer To Reset.
    pub fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.transport.atr()
    }

    /// Resets the card (volatile state lost); see [`CardTransport::reset`].
    pub fn reset(&mut self) -> Result<(), TransportError> {
        self.transport.reset()
    }

    /// Sends one logical command and returns its complete response, handling
    /// chaining, `61xx` and `6Cxx` as described on [`CardChannel`].
    ///
    /// # Errors
    ///
    /// [`TransportError::InvalidLe`] for Le outside `1..=256`; a transport
    /// error from the backend; [`TransportError::MalformedResponse`],
    /// [`TransportError::ResponseTooLong`] or
    /// [`TransportError::TooManyGetResponse`] when the card breaks the rules;
    /// [`TransportError::ChainingRefused`] if so configured.
    pub fn exchange(&mut self, cmd: &Command) -> Result<Response, TransportError> {
        exchange(&mut self.transport, &self.config, cmd)
    }

    /// Runs `body` inside a transaction of the backend (exclusive access to
    /// the card for its duration; see [`CardTransport::transaction`]). The
    /// body gets a channel with the same configuration over the transaction.
    ///
    /// The body's own error type only needs `From<TransportError>`; its
    /// error is returned as is (the transaction is still ended properly).
    pub fn transaction<R, E>(
        &mut self,
        body: impl FnOnce(&mut CardChannel<&mut dyn CardTransport>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<TransportError>,
    {
        let config = self.config.clone();
        let mut body = Some(body);
        let mut outcome: Option<Result<R, E>> = None;
        let ended = self
            .transport
            .transaction(&mut |tx: &mut dyn CardTransport| {
                if let Some(body) = body.take() {
                    let mut channel = CardChannel {
                        transport: tx,
                        config: config.clone(),
                    };
                    outcome = Some(body(&mut channel));
                }
                Ok(())
            });
        match (outcome, ended) {
            (Some(Err(err)), _) => Err(err),
            (_, Err(err)) => Err(err.into()),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(TransportError::TransactionNotRun.into()),
        }
    }
}

/// The algorithm behind [`CardChannel::exchange`], as a free function for
/// code that holds a bare transport.
pub fn exchange<T: CardTransport + ?Sized>(
    transport: &mut T,
    config: &ChannelConfig,
    cmd: &Command,
) -> Result<Response, TransportError> {
    if let Some(le) = cmd.le {
        if !(1..=MAX_SHORT_RESPONSE).contains(&le) {
            return Err(TransportError::InvalidLe(le));
        }
    }
    let segment_len = config.max_command_data.clamp(1, MAX_SHORT_DATA);

    // Command chaining: all but the last segment.
    let mut rest: &[u8] = &cmd.data;
    while rest.len() > segment_len {
        let (segment, tail) = rest.split_at(segment_len);
        rest = tail;
        let apdu = encode(
            [cmd.cla | CLA_CHAINING, cmd.ins, cmd.p1, cmd.p2],
            segment,
            None,
        )?;
        let response = split_response(&transport.transmit_raw(&apdu)?)?;
        if response.sw != StatusWord::Success {
            if config.chaining_refusal_is_error {
                return Err(TransportError::ChainingRefused(response.sw));
            }
            check_len(response.data.len(), config)?;
            return Ok(response);
        }
    }

    // The last (or only) segment, then GET RESPONSE rounds. `current` is the
    // APDU being sent: header, data and Le, so that `6Cxx` can resend it.
    let mut current = Segment {
        cla: cmd.cla,
        ins: cmd.ins,
        p1: cmd.p1,
        p2: cmd.p2,
        data: rest,
        le: cmd.le,
    };
    let mut data: Vec<u8> = Vec::new();
    let mut get_responses = 0usize;
    let mut retried_wrong_le = false;
    loop {
        let apdu = encode(
            [current.cla, current.ins, current.p1, current.p2],
            current.data,
            current.le,
        )?;
        let response = split_response(&transport.transmit_raw(&apdu)?)?;
        match response.sw {
            StatusWord::WrongLe(le) if !retried_wrong_le => {
                // Same APDU, corrected Le; its data (there should be none) is dropped.
                retried_wrong_le = true;
                current.le = Some(short_le(le));
            }
            StatusWord::BytesRemaining(le) => {
                append(&mut data, &response.data, config)?;
                if get_responses >= config.max_get_response {
                    return Err(TransportError::TooManyGetResponse {
                        limit: config.max_get_response,
                    });
                }
                get_responses += 1;
                retried_wrong_le = false;
                current = Segment {
                    cla: 0x00,
                    ins: INS_GET_RESPONSE,
                    p1: 0x00,
                    p2: 0x00,
                    data: &[],
                    le: Some(short_le(le)),
                };
            }
            sw => {
                append(&mut data, &response.data, config)?;
                return Ok(Response { data, sw });
            }
        }
    }
}

/// One APDU on the wire, kept in parts so that Le can be corrected.
struct Segment<'a> {
    cla: u8,
    ins: u8,
    p1: u8,
    p2: u8,
    data: &'a [u8],
    le: Option<usize>,
}

/// Encodes one short APDU with the protocol core's encoder. The parts are
/// already known to fit (data ≤ 255 bytes, Le in 1..=256); should they not,
/// the error is typed, not a panic.
fn encode(
    header: [u8; HEADER_LEN],
    data: &[u8],
    le: Option<usize>,
) -> Result<Vec<u8>, TransportError> {
    CommandView::from_parts(header, data, le)
        .to_short_bytes()
        .map_err(|_| TransportError::InvalidCommandLength {
            len: HEADER_LEN + 1 + data.len(),
        })
}

fn split_response(raw: &[u8]) -> Result<Response, TransportError> {
    Response::from_bytes(raw).ok_or(TransportError::MalformedResponse { len: raw.len() })
}

fn check_len(len: usize, config: &ChannelConfig) -> Result<(), TransportError> {
    if len > config.max_response_len {
        Err(TransportError::ResponseTooLong {
            limit: config.max_response_len,
        })
    } else {
        Ok(())
    }
}

fn append(data: &mut Vec<u8>, more: &[u8], config: &ChannelConfig) -> Result<(), TransportError> {
    check_len(data.len().saturating_add(more.len()), config)?;
    data.extend_from_slice(more);
    Ok(())
}
