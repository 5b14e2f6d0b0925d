#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod answer_fault;
mod error;
pub mod filestore;
pub mod tearing;
pub mod vpcd;

pub use answer_fault::{AnswerFault, AnswerFaults};
pub use error::EmulatorError;
pub use filestore::FileStore;
pub use tearing::{
    Fault, FaultParseError, PowerLatch, TearMode, TearingStorage, TornWrite, POWER_LOST_EXIT_STATUS,
};
pub use vpcd::{
    serve, ReconnectPolicy, ServeOptions, ServeOutcome, VPCD_PORT, VPCD_PORT_SECOND,
    VPCD_READER_NAMES,
};
