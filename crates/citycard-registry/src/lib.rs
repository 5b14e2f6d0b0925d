#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod backend;
mod error;
mod model;
pub mod pg;
pub mod schema;
mod sqlite;
#[cfg(test)]
mod tests;
mod validate;

pub use backend::IssuanceRegistry;
pub use error::RegistryError;
pub use model::{
    AuditEntry, CardNumber, CardRecord, CardState, Counts, ForgetReport, Intent, Lease,
    NewIssuance, RevocationReason, RevokedCard,
};
pub use pg::PgRegistry;
pub use sqlite::Registry;

use citycard_proto::attr::AttributeId;
use validate::check_retained;

/// What every module of the crate uses.
mod prelude {
    pub(crate) use std::fs::OpenOptions;
    pub(crate) use std::path::{Path, PathBuf};
    pub(crate) use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub(crate) use citycard_proto::attr::AttributeKind;
    pub(crate) use citycard_proto::{attr::AttributeId, date::Date};
    pub(crate) use rusqlite::{
        params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
    };

    pub(crate) use crate::model::*;
    pub(crate) use crate::schema::{MIGRATIONS, OLDEST_UPGRADABLE, SCHEMA, SCHEMA_VERSION};
    pub(crate) use crate::sqlite::rows::*;
    pub(crate) use crate::sqlite::*;
    pub(crate) use crate::validate::*;
    pub(crate) use crate::{
        Attributes, Registry, RegistryError, Result, FORBIDDEN_WORDS, RETAINED_ATTRIBUTES,
        SPOILED_AFTER_SIGNING, TOMBSTONE_PREFIX,
    };
}

/// The attributes the registry keeps, and the only ones it accepts: what the
/// city needs to reprint or replace a card. Everything else (card-computed
/// predicates, the pseudonym, issuer-defined programme data, the card number
/// as an attribute) is refused.
pub const RETAINED_ATTRIBUTES: [AttributeId; 7] = [
    AttributeId::NAME,
    AttributeId::BIRTH_DATE,
    AttributeId::ADDRESS,
    AttributeId::CARE_OF_ADDRESS,
    AttributeId::LANGUAGE,
    AttributeId::GENDER,
    AttributeId::RESIDENT,
];

/// Prefix of the random tombstone that replaces a forgotten resident's reference.
pub const TOMBSTONE_PREFIX: &str = "forgotten:";

pub(crate) type Result<T> = core::result::Result<T, RegistryError>;

/// A list of resident attributes: dictionary id and encoded value.
pub type Attributes = Vec<(AttributeId, Vec<u8>)>;

/// Keeps, of the attributes given, those the registry retains
/// ([`RETAINED_ATTRIBUTES`]), in order. Use it to pass a resident's card
/// attributes to [`Registry::begin_intent`], which refuses anything else.
pub fn retained_attributes(attributes: &[(AttributeId, Vec<u8>)]) -> Attributes {
    attributes
        .iter()
        .filter(|(id, _)| RETAINED_ATTRIBUTES.contains(id))
        .cloned()
        .collect()
}

/// Looks up a retained attribute by its machine name (`name`, `birth_date`, ...):
/// a name outside the dictionary, or of an attribute the registry does not
/// keep, is refused.
pub fn retained_attribute(name: &str) -> Result<AttributeId> {
    let id = AttributeId::from_name(name).map_err(|_| RegistryError::InvalidAttribute {
        name: name.into(),
        reason: "not in the attribute dictionary".into(),
    })?;
    check_retained(id)?;
    Ok(id)
}

/// Words that no audit action may contain: the registry records nothing
/// about nationality, documents, or immigration, legal or administrative
/// status, not even as the name of an action.
pub const FORBIDDEN_WORDS: &[&str] = &[
    "nation", "citizen", "country", "birth", "document", "passport", "permit", "immigra",
    "migrant", "visa", "status", "legal", "asylum", "refugee", "alien", "ethnic", "religio",
];

/// The audit action written, next to `spoiled:<reason>`, when the spoiled
/// intent carries a card key: the card may hold a signed record, so its
/// revocation id goes on every revocation list from now on
/// ([`Registry::revocation_ids`]).
pub const SPOILED_AFTER_SIGNING: &str = "spoiled-after-signing";

/// The most group keys one card has (SPEC §5.3), the protocol's limit.
pub const MAX_GROUP_KEYS: usize = citycard_proto::limits::MAX_GROUPS;

/// The schema version of the SQLite registry file at `path`, read without
/// upgrading it (0: not a registry).
pub fn sqlite_file_version(path: impl AsRef<std::path::Path>) -> Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(
        path.as_ref(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}
