#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod applet;
pub mod state;
pub mod storage;

pub use applet::{Applet, Faults, Instruction};
pub use citycard_proto::crypto::OpCount;
pub use state::PersistentState;
pub use storage::{MemoryStorage, Persistent, StateBlob, Storage, StorageError};
