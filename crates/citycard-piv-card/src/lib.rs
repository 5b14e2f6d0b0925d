#![doc = include_str!("../README.md")]
#![no_std]
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

extern crate alloc;

pub mod applet;
pub mod consts;
pub mod error;
pub mod mgmt;
pub mod state;
pub mod tlv;

pub use applet::{Faults, Instruction, PivCard};
pub use consts::{ATR, PIV_AID};
pub use error::PivError;
pub use state::{PivState, Summary};
