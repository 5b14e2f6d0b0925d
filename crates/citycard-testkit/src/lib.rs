//! Test support for citycard: fixed keys, a scripted station and reader that
//! record raw APDU transcripts, and the `applet-spec/vectors` generator and
//! runner. Test support only: fixtures are constants, so this crate may panic
//! on a broken fixture.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

pub mod bench_lock;
pub mod keys;
pub mod linkage;
pub mod pg;
pub mod piv_vectors;
pub mod reader_vectors;
pub mod schemas;
pub mod script;
pub mod vectors;
