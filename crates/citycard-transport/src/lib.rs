#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod channel;
mod error;
mod memory;
#[cfg(feature = "pcsc")]
mod pcsc_backend;
#[cfg(feature = "pcsc")]
mod pcsc_monitor;
mod trace;
mod transport;

pub use channel::{exchange, CardChannel, ChannelConfig};
pub use error::TransportError;
pub use memory::MemoryTransport;
/// The `pcsc` crate, re-exported for [`PcscTransport::disconnect_with`]'s `Disposition`.
#[cfg(feature = "pcsc")]
pub use pcsc;
#[cfg(feature = "pcsc")]
pub use pcsc_backend::{PcscContext, PcscTransport};
#[cfg(feature = "pcsc")]
pub use pcsc_monitor::PcscReaderMonitor;
pub use trace::{TraceEntry, TraceStats, Traced};
pub use transport::{CardTransport, TransactionFn};

// Commands, responses and status words are `citycard_proto`'s: one path per item.
