#![doc = include_str!("../README.md")]
#![no_std]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

extern crate alloc;

pub mod apdu;
pub mod sw;

pub use apdu::{CardLost, Command, CommandView, ContactlessCard, Response};
pub use sw::StatusWord;
