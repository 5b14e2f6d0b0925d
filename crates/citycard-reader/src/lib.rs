#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod credential;
mod error;
pub mod json;
mod piv;
mod policy;
mod trust;
mod verdict;
mod verify;
pub mod watch;

pub use credential::{PartnerCredential, CREDENTIAL_SCHEMA_VERSION};
pub use error::ReaderError;
pub use policy::{Policy, StalePolicy};
pub use trust::{
    freshness, human_duration, load_bundle, record_revocation_state, revocation_state_path,
    root_fingerprint, Freshness, Trust, DEFAULT_WARN_BEFORE_SECS,
};
pub use verdict::{CardProfile, Genuine, LinkFailure, Verdict, VERDICT_SCHEMA_VERSION};
#[cfg(feature = "tokio")]
pub use verify::verify_async;
pub use verify::{verify, MAX_GET_RESPONSE, MAX_RESPONSE_LEN};
#[cfg(all(feature = "tokio", feature = "pcsc"))]
pub use watch::watch;
#[cfg(feature = "pcsc")]
pub use watch::watch_blocking;
pub use watch::{
    Clock, ReaderSelection, Shutdown, Tap, TapEvent, TapTiming, TrustSource, WatchConfig,
};

// Re-exported so that partners need not depend on the protocol crates for the basics.
pub use citycard_proto::{attr::AttributeId, attr::AttributeSet, date::Date};
pub use citycard_transport::{CardChannel, CardTransport, ChannelConfig};
