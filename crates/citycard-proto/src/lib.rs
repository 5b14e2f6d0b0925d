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

pub use apdu::{CardLost, Command, CommandView, ContactlessCard, Response};
pub use attr::{AttributeId, AttributeSet};
pub use cert::{Certificate, CertificateBody, Role};
pub use consts::{LifeCycle, AID};
pub use date::Date;
pub use error::Error;
pub use record::{DisclosedEntry, GroupRecord, RecordBody, StoredValue};
pub use revocation::{RevocationList, TrustBundle};
pub use sw::StatusWord;
