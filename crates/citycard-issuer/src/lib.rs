#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod personalise;
pub mod resident;

pub use personalise::{
    inspect, personalise, read_back, Anchor, PersonaliseError, Personalised, ReaderCredential,
    Station,
};
pub use resident::{InputError, Resident};
