#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod backup;
pub mod batch;
pub mod cards;
pub mod desk;
pub mod error;
pub mod home;
pub mod issue;
pub mod personalise;
pub mod piv;
pub mod registry;
pub mod report;
pub mod resident;

pub use error::IssuerError;
pub use home::IssuerHome;
pub use issue::IssueRequest;
pub use personalise::{
    inspect, personalise, prepare, CardContents, PersonaliseError, Personalised, PreparationTrust,
    Preparer, Station,
};
pub use resident::{InputError, Resident};
