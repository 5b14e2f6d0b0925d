#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod card;
pub mod city;
pub mod expect;
pub mod issue;
pub mod link;
pub mod reader;
pub mod report;
pub mod vectors;

pub use card::{run_card_kit, run_card_kit_with};
pub use expect::{Expect, SpecVersion, Table};
pub use report::{Outcome, Report};

/// Failures of the kit itself (never of the card under test, which land in
/// the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConformanceError {
    /// The system clock is before 1970 or unusable.
    #[error("the system clock gives no usable date")]
    Clock,
    /// This build implements a spec version the kit has no table for.
    #[error("no conformance table for this build's spec version")]
    UnknownVersion,
    /// Building the throwaway city's objects failed.
    #[error("building test objects: {0:?}")]
    Proto(citycard_proto::error::Error),
    /// A vector file is not valid.
    #[error("vector file: {0}")]
    Vector(String),
    /// Writing the reader kit's files failed.
    #[error("{0}")]
    Io(String),
    /// An internal inconsistency of the kit.
    #[error("kit: {0}")]
    Kit(&'static str),
}

impl From<citycard_proto::error::Error> for ConformanceError {
    fn from(e: citycard_proto::error::Error) -> Self {
        Self::Proto(e)
    }
}
