//! citycard for partners' systems, on top of [`citycard_reader`]:
//!
//! - [`ReaderName`]: a reader by name — a PC/SC reader, or `emulated:FILE`,
//!   the built-in reference card whose state lives in `FILE` (no pcscd, no
//!   root: what a partner tries the whole flow with);
//! - [`EmulatedReaders`]: emulated readers as a [`ReaderSystem`] for the tap
//!   service (a card is on the reader while its state file exists);
//! - [`verify_once`]: one verification as the `verify.v1` JSON document (a
//!   verdict or an error), what `citycard verify --json`, the C ABI and the
//!   Python binding return;
//! - `serve` (cargo feature `serve`): the local reader service that pushes
//!   tap events to web pages over Server-Sent Events, with an allow-list of
//!   page origins and a built-in desk page.
//!
//! The JSON documents are the serde types of [`citycard_reader::json`],
//! described by the JSON Schemas in the repository's `schemas/` directory.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod emulated;
#[cfg(feature = "serve")]
pub mod serve;
mod verify;

pub use citycard_reader::watch::ReaderSystem;
pub use emulated::{open_emulated_card, EmulatedReaders, EMULATED_PREFIX};
pub use verify::{verify_once, ReaderName, StaleChoice, VerifyOutcome, VerifyRequest};
