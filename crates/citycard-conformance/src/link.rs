//! The kit's side of the card: raw APDUs with chaining and `61xx` done here
//! (not by the transport's channel) so that every status word the card gives
//! is seen, counted and timed, and an endless chain is caught.

use std::time::{Duration, Instant};

use citycard_proto::apdu::Command;
use citycard_proto::consts::{cla, ins};
use citycard_transport::CardTransport;

/// Why an exchange could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The transport failed (card removed, reader gone).
    #[error("transport: {0}")]
    Transport(String),
    /// The answer is shorter than a status word.
    #[error("answer shorter than a status word")]
    NoStatusWord,
    /// The card asked for more GET RESPONSE rounds than any answer needs.
    #[error("answer chain longer than {0} GET RESPONSE rounds (endless 61xx)")]
    EndlessChain(usize),
    /// The command cannot be encoded as short APDUs.
    #[error("command cannot be encoded: {0}")]
    Encode(String),
}

/// What the card answered to one (possibly chained) command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The final status word.
    pub sw: u16,
    /// All response data, across GET RESPONSE rounds.
    pub data: Vec<u8>,
    /// Status words of every APDU of the exchange, in order.
    pub sws: Vec<u16>,
    /// Wall time of the whole exchange.
    pub elapsed: Duration,
}

/// One timed APDU, for the per-command timing table.
#[derive(Clone, Debug)]
pub struct Timed {
    /// INS byte.
    pub ins: u8,
    /// Round-trip time.
    pub elapsed: Duration,
}

/// A raw link to the card under test.
pub struct Link<'t> {
    transport: &'t mut dyn CardTransport,
    max_get_response: usize,
    /// Every APDU sent, timed.
    pub timings: Vec<Timed>,
}

impl<'t> Link<'t> {
    /// A link over `transport` that allows `max_get_response` GET RESPONSE rounds per answer.
    pub fn new(transport: &'t mut dyn CardTransport, max_get_response: usize) -> Self {
        Self {
            transport,
            max_get_response,
            timings: Vec::new(),
        }
    }

    /// Resets the card (a new power-up: deselects, ends every session).
    pub fn reset(&mut self) -> Result<(), LinkError> {
        self.transport
            .reset()
            .map_err(|e| LinkError::Transport(e.to_string()))
    }

    /// One raw APDU: (data, SW).
    pub fn raw(&mut self, apdu: &[u8]) -> Result<(Vec<u8>, u16), LinkError> {
        let start = Instant::now();
        let mut resp = self
            .transport
            .transmit_raw(apdu)
            .map_err(|e| LinkError::Transport(e.to_string()))?;
        self.timings.push(Timed {
            ins: apdu.get(1).copied().unwrap_or(0),
            elapsed: start.elapsed(),
        });
        let split = resp.len().checked_sub(2).ok_or(LinkError::NoStatusWord)?;
        let sw = resp.split_off(split);
        let sw = sw
            .first()
            .zip(sw.get(1))
            .map(|(a, b)| u16::from_be_bytes([*a, *b]))
            .ok_or(LinkError::NoStatusWord)?;
        Ok((resp, sw))
    }

    /// One raw APDU given in full, observed (no chaining, no GET RESPONSE).
    pub fn raw_observed(&mut self, apdu: &[u8]) -> Result<Observed, LinkError> {
        let start = Instant::now();
        let (data, sw) = self.raw(apdu)?;
        Ok(Observed {
            sw,
            data,
            sws: vec![sw],
            elapsed: start.elapsed(),
        })
    }

    /// Sends `cmd`, chaining its data in 255-byte segments and fetching `61xx`
    /// remainders with GET RESPONSE (at most the configured number of rounds).
    pub fn send(&mut self, cmd: &Command) -> Result<Observed, LinkError> {
        let start = Instant::now();
        let chunks: Vec<&[u8]> = if cmd.data.is_empty() {
            vec![&[][..]]
        } else {
            cmd.data.chunks(255).collect()
        };
        let last = chunks.len().saturating_sub(1);
        let mut sws = Vec::new();
        let mut data = Vec::new();
        let mut sw = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let mut c = Command::new(cmd.cla, cmd.ins, cmd.p1, cmd.p2).with_data(chunk.to_vec());
            if i < last {
                c.cla |= cla::CHAIN;
            } else {
                c.le = cmd.le;
            }
            let bytes = c
                .to_short_bytes()
                .map_err(|e| LinkError::Encode(format!("{e:?}")))?;
            let (d, s) = self.raw(&bytes)?;
            sws.push(s);
            data = d;
            sw = s;
            if i < last && s != 0x9000 {
                break;
            }
        }
        let mut rounds = 0;
        while sw >> 8 == 0x61 {
            if rounds >= self.max_get_response {
                return Err(LinkError::EndlessChain(self.max_get_response));
            }
            rounds += 1;
            let le = match sw & 0xFF {
                0 => 256,
                n => usize::from(n as u8),
            };
            let get = Command::new(cla::ISO, ins::GET_RESPONSE, 0, 0)
                .with_le(le)
                .to_short_bytes()
                .map_err(|e| LinkError::Encode(format!("{e:?}")))?;
            let (more, s) = self.raw(&get)?;
            sws.push(s);
            data.extend_from_slice(&more);
            sw = s;
        }
        Ok(Observed {
            sw,
            data,
            sws,
            elapsed: start.elapsed(),
        })
    }
}
