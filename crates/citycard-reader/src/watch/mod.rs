//! The tap service engine for gates and desks: watch readers, verify each
//! card that arrives, and report one [`TapEvent`] per tap.
//!
//! Four parts, one module each:
//!
//! - `config`: [`WatchConfig`] (which readers, the policy, timings,
//!   heartbeat) and the [`Shutdown`] signal;
//! - `events`: [`TapEvent`] and its JSON line (the serde documents of
//!   [`crate::json`], described by `schemas/tap-event.v1.json`);
//! - `trust_source`: [`TrustSource`], the trust swapped in on reload;
//! - `watcher`: the threads ([`watch`], [`watch_blocking`]) over a
//!   [`ReaderSystem`] — PC/SC ([`PcscReaders`], cargo feature `pcsc`) or any
//!   other source of taps, such as an emulated card.
//!
//! # Threads
//!
//! - A **monitor** thread owns one [`ReaderMonitor`]. It lists the readers,
//!   keeps one reader thread per selected reader, and then waits up to
//!   [`WatchConfig::rescan_interval`] (default 500 ms) for a reader change
//!   (with PC/SC, on the PnP pseudo-reader, else a plain periodic poll):
//!   either way a new reader is picked up within the rescan interval. It
//!   also sends the heartbeat ([`WatchConfig::heartbeat`]).
//! - One dedicated **reader thread** per reader, each with its own
//!   [`ReaderPort`]: waits for a card in slices of
//!   [`WatchConfig::poll_interval`] (so a shutdown is noticed within one
//!   slice), connects, runs [`verify`](crate::verify) with the current
//!   [`Trust`](crate::Trust) and [`Policy`](crate::Policy), sends the
//!   [`TapEvent::Tap`] at once (a gate opens while the card is still in the
//!   field), then waits for the card to leave before it looks for the next
//!   one. A card left on the reader is thus verified once, not in a loop; a
//!   card already on a reader when the service starts is verified.
//!
//! Reader threads share nothing but the trust ([`TrustSource`], read once
//! per tap) and the event sink, so a slow, stuck or broken reader never holds
//! up the others. A reader thread that fails (its context breaks, the
//! service restarts) is reported ([`TapEvent::ReaderError`]) and restarted by
//! the monitor with exponential backoff; a verification still running after
//! [`WatchConfig::card_timeout`] is reported as stalled, and its next APDU
//! fails with a timeout (a PC/SC transmit in flight cannot be interrupted).
//!
//! # Failing loudly
//!
//! The watcher returns an error — for a service manager to restart it —
//! when the reader system cannot be reached at start
//! ([`ReaderError::Pcsc`](crate::ReaderError::Pcsc)) and when a reader named
//! in [`ReaderSelection::Names`] still matches no reader after
//! [`WatchConfig::reader_wait`]
//! ([`ReaderError::NoMatchingReader`](crate::ReaderError::NoMatchingReader)).
//! Later outages are reported as events and retried.
//!
//! # Trust reload
//!
//! [`TrustSource`] holds the current `Arc<Trust>` behind a lock that reader
//! threads take for an instant per tap. [`TrustSource::reload_from_files`]
//! (call it on SIGHUP) loads and validates a new bundle and credential and
//! swaps them in only if they are usable; otherwise the old trust stays.
//! [`TrustSource::spawn_file_watcher`] does the same when the files change.
//! A tap in progress finishes with the trust it started with; no tap is
//! dropped.

mod config;
mod events;
mod readers;
mod trust_source;
mod watcher;

pub use config::{Clock, ReaderSelection, Shutdown, WatchConfig};
#[cfg(feature = "tokio")]
pub use events::channel_sink;
pub use events::{rfc3339, Tap, TapEvent, TapTiming, EVENT_SCHEMA_VERSION};
#[cfg(feature = "pcsc")]
pub use readers::PcscReaders;
pub use readers::{BoxedTransport, ReaderMonitor, ReaderPort, ReaderSystem};
pub use trust_source::{TrustFiles, TrustSource};
#[cfg(all(feature = "tokio", feature = "pcsc"))]
pub use watcher::watch;
#[cfg(feature = "pcsc")]
pub use watcher::watch_blocking;
pub use watcher::watch_blocking_with;
#[cfg(feature = "tokio")]
pub use watcher::watch_with;
