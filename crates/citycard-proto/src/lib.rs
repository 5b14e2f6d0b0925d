#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod apdu;
pub mod attr;
pub mod auth;
pub mod cert;
pub mod consts;
pub mod crypto;
pub mod date;
pub mod dispatch;
pub mod error;
pub mod fci;
pub mod limits;
pub mod pers;
pub mod piv;
pub mod record;
pub mod revocation;
pub mod sw;
pub mod tlv;

// No root re-exports: every item has one path, `citycard_proto::<module>::<item>`.
