//! The citycard reference card (work in progress).
#![no_std]
extern crate alloc;
pub mod storage;
pub use storage::{MemoryStorage, Storage, StorageError};
