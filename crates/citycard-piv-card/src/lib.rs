#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

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
