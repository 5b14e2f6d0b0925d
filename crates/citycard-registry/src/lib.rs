#![doc = include_str!("../README.md")]
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

mod error;
mod model;
pub mod schema;
#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use citycard_proto::attr::AttributeKind;
use citycard_proto::{AttributeId, Date};
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

pub use error::RegistryError;
pub use model::{
    AuditEntry, CardRecord, CardState, Counts, ForgetReport, Intent, NewIssuance, RevocationReason,
    RevokedCard,
};
use schema::{SCHEMA, SCHEMA_VERSION};

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

const MAX_REF_LEN: usize = 64;
const MAX_NAME_LEN: usize = 64;
const MAX_BATCH_ID_LEN: usize = 128;
const MAX_SPOIL_REASON_LEN: usize = 32;
const MAX_PREFIX_LEN: usize = 12;
const REVOCATION_SEQUENCE: &str = "revocation_sequence";

const CARD_COLUMNS: &str = "intent_id, card_number, resident_ref, station, issued_on, \
    expires_on, state, card_key, revocation_id, spoil_reason, revoke_reason, revoked_at, \
    batch_id, batch_row, replaces_card, replace_reason";

type Result<T> = core::result::Result<T, RegistryError>;

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

fn check_retained(id: AttributeId) -> Result<()> {
    if id.kind() != AttributeKind::Stored || !RETAINED_ATTRIBUTES.contains(&id) {
        return Err(RegistryError::InvalidAttribute {
            name: id.name().into(),
            reason: "the registry keeps only name, birth_date, address, care_of_address, \
                     language, gender and resident"
                .into(),
        });
    }
    Ok(())
}

/// Words that no audit action may contain: the registry records nothing
/// about nationality, documents, or immigration, legal or administrative
/// status, not even as the name of an action.
pub const FORBIDDEN_WORDS: &[&str] = &[
    "nation", "citizen", "country", "birth", "document", "passport", "permit", "immigra",
    "migrant", "visa", "status", "legal", "asylum", "refugee", "alien", "ethnic", "religio",
];

/// Actions written by the registry itself with the change they record;
/// [`Registry::record_action`] cannot write them.
const RESERVED_ACTIONS: &[&str] = &[
    "intent",
    "card-key",
    "issued",
    "forget",
    SPOILED_AFTER_SIGNING,
];

/// The audit action written, next to `spoiled:<reason>`, when the spoiled
/// intent carries a card key: the card may hold a signed record, so its
/// revocation id goes on every revocation list from now on
/// ([`Registry::revocation_ids`]).
pub const SPOILED_AFTER_SIGNING: &str = "spoiled-after-signing";
const RESERVED_ACTION_PREFIXES: &[&str] = &["spoiled:", "revoked:"];

fn check_action(action: &str) -> Result<()> {
    if action.is_empty()
        || action.len() > 48
        || !action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':')
    {
        return Err(invalid(
            "action",
            "a machine word: 1 to 48 of a-z, 0-9, '-', ':'",
        ));
    }
    if RESERVED_ACTIONS.contains(&action)
        || RESERVED_ACTION_PREFIXES
            .iter()
            .any(|p| action.starts_with(p))
    {
        return Err(invalid(
            "action",
            "reserved for the registry's own card records",
        ));
    }
    if FORBIDDEN_WORDS.iter().any(|w| action.contains(w)) {
        return Err(invalid("action", "names data the registry never records"));
    }
    Ok(())
}

/// The issuance registry: one SQLite file.
///
/// Every mutating method runs in one `IMMEDIATE` transaction, writes its
/// audit entry in that same transaction, and returns only after the commit
/// is on disk (`synchronous=FULL`).
pub struct Registry {
    conn: Connection,
    path: PathBuf,
    #[cfg(test)]
    fail_after_revoke: bool,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> RegistryError {
    RegistryError::InvalidInput {
        field,
        reason: reason.into(),
    }
}

/// Non-empty, at most `max` bytes, no control characters, no surrounding spaces.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.len() > max {
        return Err(invalid(field, format!("must be 1 to {max} bytes")));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(
            field,
            "must not contain control characters or surrounding spaces",
        ));
    }
    Ok(())
}

fn check_resident_ref(value: &str) -> Result<()> {
    check_text("resident_ref", value, MAX_REF_LEN)?;
    if value.starts_with(TOMBSTONE_PREFIX) {
        return Err(invalid(
            "resident_ref",
            format!("must not start with {TOMBSTONE_PREFIX}"),
        ));
    }
    Ok(())
}

fn check_card_number(value: &str) -> Result<()> {
    AttributeId::CARD_NUMBER
        .validate_value(value.as_bytes())
        .map_err(|_| invalid("card_number", "1 to 20 ASCII letters, digits or '-'"))
}

fn check_spoil_reason(value: &str) -> Result<()> {
    if value.is_empty()
        || value.len() > MAX_SPOIL_REASON_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "spoil reason",
            "a short machine reason: 1 to 32 of a-z, 0-9, '-'",
        ));
    }
    Ok(())
}

fn validate_attributes(attributes: &[(AttributeId, Vec<u8>)]) -> Result<Vec<(u8, &[u8])>> {
    let mut out: Vec<(u8, &[u8])> = Vec::with_capacity(attributes.len());
    for (id, value) in attributes {
        check_retained(*id)?;
        id.validate_value(value)
            .map_err(|e| RegistryError::InvalidAttribute {
                name: id.name().into(),
                reason: e.to_string(),
            })?;
        if out.iter().any(|(seen, _)| *seen == id.get()) {
            return Err(RegistryError::InvalidAttribute {
                name: id.name().into(),
                reason: "given more than once".into(),
            });
        }
        out.push((id.get(), value.as_slice()));
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|_| RegistryError::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    station: Option<&str>,
    action: &str,
    card_number: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, station, action, card_number) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now(), actor, station, action, card_number],
    )?;
    Ok(())
}

/// Increments a counter and returns its new value (1 for a new counter).
fn bump_counter(tx: &Transaction<'_>, name: &str) -> Result<i64> {
    Ok(tx.query_row(
        "INSERT INTO counters (name, value) VALUES (?1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
        [name],
        |r| r.get(0),
    )?)
}

fn parse_date(text: &str) -> Result<Date> {
    Date::parse_iso(text).map_err(|_| RegistryError::Corrupt(format!("bad date {text:?}")))
}

fn parse_reason(text: &str) -> Result<RevocationReason> {
    text.parse()
        .map_err(|_| RegistryError::Corrupt(format!("bad revocation reason {text:?}")))
}

fn fixed<const N: usize>(what: &str, bytes: Vec<u8>) -> Result<[u8; N]> {
    <[u8; N]>::try_from(bytes).map_err(|_| RegistryError::Corrupt(format!("bad {what} length")))
}

/// An open intent, read for a state change.
struct OpenIntentRow {
    card_number: String,
    station: String,
    card_key: Option<[u8; 33]>,
}

/// A card key must be a compressed P-256 point and the revocation id the one
/// the protocol derives from it.
fn check_key_pair(card_key: &[u8; 33], revocation_id: &[u8; 8]) -> Result<()> {
    let key = citycard_proto::crypto::decode_point(card_key)
        .map_err(|_| invalid("card_key", "not a compressed P-256 point"))?;
    if citycard_proto::revocation::revocation_id(&key) != *revocation_id {
        return Err(invalid("revocation_id", "does not match the card key"));
    }
    Ok(())
}

/// A `cards` row as stored.
struct RawCard {
    intent_id: i64,
    card_number: String,
    resident_ref: String,
    station: String,
    issued_on: String,
    expires_on: String,
    state: String,
    card_key: Option<Vec<u8>>,
    revocation_id: Option<Vec<u8>>,
    spoil_reason: Option<String>,
    revoke_reason: Option<String>,
    revoked_at: Option<i64>,
    batch_id: Option<String>,
    batch_row: Option<i64>,
    replaces_card: Option<String>,
    replace_reason: Option<String>,
}

impl RawCard {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            intent_id: r.get(0)?,
            card_number: r.get(1)?,
            resident_ref: r.get(2)?,
            station: r.get(3)?,
            issued_on: r.get(4)?,
            expires_on: r.get(5)?,
            state: r.get(6)?,
            card_key: r.get(7)?,
            revocation_id: r.get(8)?,
            spoil_reason: r.get(9)?,
            revoke_reason: r.get(10)?,
            revoked_at: r.get(11)?,
            batch_id: r.get(12)?,
            batch_row: r.get(13)?,
            replaces_card: r.get(14)?,
            replace_reason: r.get(15)?,
        })
    }

    fn batch(&self) -> Result<Option<(String, u64)>> {
        match (&self.batch_id, self.batch_row) {
            (Some(id), Some(row)) => {
                let row = u64::try_from(row)
                    .map_err(|_| RegistryError::Corrupt("negative batch row".into()))?;
                Ok(Some((id.clone(), row)))
            }
            _ => Ok(None),
        }
    }

    fn replaces(&self) -> Result<Option<(String, RevocationReason)>> {
        match (&self.replaces_card, &self.replace_reason) {
            (Some(card), Some(reason)) => Ok(Some((card.clone(), parse_reason(reason)?))),
            _ => Ok(None),
        }
    }

    fn into_intent(self) -> Result<Intent> {
        let card_key = self
            .card_key
            .clone()
            .map(|k| fixed::<33>("card key", k))
            .transpose()?;
        Ok(Intent {
            card_key,
            id: self.intent_id,
            batch: self.batch()?,
            replaces: self.replaces()?,
            issued_on: parse_date(&self.issued_on)?,
            expires_on: parse_date(&self.expires_on)?,
            card_number: self.card_number,
            resident_ref: self.resident_ref,
            station: self.station,
        })
    }

    fn into_record(self) -> Result<CardRecord> {
        let state = match self.state.as_str() {
            "intent" => CardState::Intent,
            "issued" => CardState::Issued,
            "spoiled" => CardState::Spoiled {
                reason: self.spoil_reason.clone().unwrap_or_default(),
            },
            "revoked" => CardState::Revoked {
                reason: parse_reason(self.revoke_reason.as_deref().unwrap_or_default())?,
                at: self.revoked_at.unwrap_or_default(),
            },
            other => return Err(RegistryError::Corrupt(format!("bad state {other:?}"))),
        };
        let card_key = self
            .card_key
            .clone()
            .map(|k| fixed::<33>("card key", k))
            .transpose()?;
        let revocation_id = self
            .revocation_id
            .clone()
            .map(|k| fixed::<8>("revocation id", k))
            .transpose()?;
        Ok(CardRecord {
            intent_id: self.intent_id,
            batch: self.batch()?,
            replaces: self.replaces()?,
            issued_on: parse_date(&self.issued_on)?,
            expires_on: parse_date(&self.expires_on)?,
            resident_ref: (!self.resident_ref.starts_with(TOMBSTONE_PREFIX))
                .then_some(self.resident_ref),
            card_number: self.card_number,
            station: self.station,
            state,
            card_key,
            revocation_id,
        })
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // A file system without shared memory: fall back to a rollback journal,
        // which is as durable with synchronous=FULL.
        let _: String =
            conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted content is overwritten with zeros, so forgotten attributes do
    // not linger in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

impl Registry {
    fn from_connection(conn: Connection, path: &Path) -> Self {
        Self {
            conn,
            path: path.to_path_buf(),
            #[cfg(test)]
            fail_after_revoke: false,
        }
    }

    /// Creates a new, empty registry at `path`. Fails with
    /// [`RegistryError::AlreadyExists`] if anything exists there.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(file) => drop(file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RegistryError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let made = (|| -> Result<Connection> {
            let mut conn = open_connection(path)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            Ok(conn)
        })();
        match made {
            Ok(conn) => {
                sync_parent_dir(path);
                Ok(Self::from_connection(conn, path))
            }
            Err(e) => {
                // The file is ours (create_new above): leave nothing half-made.
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
                Err(e)
            }
        }
    }

    /// Opens an existing registry. Fails with [`RegistryError::NotFound`] if
    /// there is none, and with [`RegistryError::SchemaVersion`] if the file is
    /// not a registry of this schema version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let conn = open_connection(path)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found != SCHEMA_VERSION {
            return Err(RegistryError::SchemaVersion {
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(Self::from_connection(conn, path))
    }

    /// The registry file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `integrity_check` and `foreign_key_check`; fails with
    /// [`RegistryError::Corrupt`] describing the first problems found.
    pub fn integrity_check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if rows != ["ok"] {
            return Err(RegistryError::Corrupt(rows.join("; ")));
        }
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        if stmt.query([])?.next()?.is_some() {
            return Err(RegistryError::Corrupt("foreign key violation".into()));
        }
        Ok(())
    }

    fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Records an issuance intent, durably committed **before the first APDU
    /// goes to the card**.
    ///
    /// Fails with [`RegistryError::ResidentHasLiveCard`] if the resident
    /// already has an issued, unrevoked card, and with
    /// [`RegistryError::ResidentHasOpenIntent`] if an issuance for them is in
    /// progress — unless `replaces` is `Some`, in which case the live card is
    /// revoked with that reason **in the same transaction** as the new intent
    /// (an open intent is still refused: reconcile it first). If the new card
    /// later ends spoiled, the old one stays revoked: it was reported lost,
    /// stolen or damaged, and the resident gets another intent. A replacement
    /// for a resident with no live card (e.g. already revoked) simply records
    /// the new intent.
    ///
    /// The attributes replace those stored for the resident; only
    /// [`RETAINED_ATTRIBUTES`] are accepted, each validated against the
    /// dictionary. A batch row that already produced a card (intent, issued or
    /// revoked) is refused with [`RegistryError::BatchRowDone`].
    pub fn begin_intent(&mut self, n: &NewIssuance<'_>) -> Result<Intent> {
        check_card_number(n.card_number)?;
        check_resident_ref(n.resident_ref)?;
        check_text("station", n.station, MAX_NAME_LEN)?;
        check_text("actor", n.actor, MAX_NAME_LEN)?;
        if n.expires_on <= n.issued_on {
            return Err(invalid("expires_on", "must be after issued_on"));
        }
        let attributes = validate_attributes(n.attributes)?;
        let batch = match n.batch {
            Some((id, row)) => {
                check_text("batch_id", id, MAX_BATCH_ID_LEN)?;
                let row = i64::try_from(row).map_err(|_| invalid("batch_row", "too large"))?;
                Some((id, row))
            }
            None => None,
        };
        let created_at = now();

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let live: Option<(String, String)> = tx
            .query_row(
                "SELECT card_number, state FROM cards \
                 WHERE resident_ref = ?1 AND state IN ('intent', 'issued')",
                [n.resident_ref],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let mut replaced = None;
        match (live, n.replaces) {
            (Some((card_number, state)), _) if state == "intent" => {
                return Err(RegistryError::ResidentHasOpenIntent { card_number })
            }
            (Some((card_number, _)), None) => {
                return Err(RegistryError::ResidentHasLiveCard { card_number })
            }
            (Some((card_number, _)), Some(reason)) => {
                tx.execute(
                    "UPDATE cards SET state = 'revoked', revoke_reason = ?2, revoked_at = ?3 \
                     WHERE card_number = ?1 AND state = 'issued'",
                    params![card_number, reason.as_str(), created_at],
                )?;
                audit(
                    &tx,
                    n.actor,
                    Some(n.station),
                    &format!("revoked:{reason}"),
                    Some(&card_number),
                )?;
                replaced = Some((card_number, reason));
            }
            (None, _) => {}
        }
        #[cfg(test)]
        if self.fail_after_revoke {
            return Err(RegistryError::Sqlite(rusqlite::Error::InvalidQuery));
        }
        if let Some((batch_id, row)) = batch {
            let done: Option<String> = tx
                .query_row(
                    "SELECT card_number FROM cards WHERE batch_id = ?1 AND batch_row = ?2 \
                     AND state IN ('intent', 'issued', 'revoked') LIMIT 1",
                    params![batch_id, row],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(card_number) = done {
                return Err(RegistryError::BatchRowDone {
                    batch_id: batch_id.into(),
                    row: row.unsigned_abs(),
                    card_number,
                });
            }
        }
        // Checked after the revocation on purpose: a failure here rolls the
        // revocation back with everything else.
        let taken: Option<i64> = tx
            .query_row(
                "SELECT intent_id FROM cards WHERE card_number = ?1",
                [n.card_number],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(RegistryError::CardNumberTaken {
                card_number: n.card_number.into(),
            });
        }
        tx.execute(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
             state, batch_id, batch_row, replaces_card, replace_reason, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'intent', ?6, ?7, ?8, ?9, ?10)",
            params![
                n.card_number,
                n.resident_ref,
                n.station,
                n.issued_on.to_string(),
                n.expires_on.to_string(),
                batch.map(|(id, _)| id),
                batch.map(|(_, row)| row),
                replaced.as_ref().map(|(c, _)| c.as_str()),
                replaced.as_ref().map(|(_, r)| r.as_str()),
                created_at,
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT OR IGNORE INTO residents (resident_ref) VALUES (?1)",
            [n.resident_ref],
        )?;
        tx.execute(
            "DELETE FROM resident_attributes WHERE resident_ref = ?1",
            [n.resident_ref],
        )?;
        for (attribute, value) in &attributes {
            tx.execute(
                "INSERT INTO resident_attributes (resident_ref, attribute, value) \
                 VALUES (?1, ?2, ?3)",
                params![n.resident_ref, attribute, value],
            )?;
        }
        audit(&tx, n.actor, Some(n.station), "intent", Some(n.card_number))?;
        tx.commit()?;
        Ok(Intent {
            id,
            card_number: n.card_number.into(),
            resident_ref: n.resident_ref.into(),
            station: n.station.into(),
            issued_on: n.issued_on,
            expires_on: n.expires_on,
            batch: n.batch.map(|(id, row)| (id.into(), row)),
            replaces: replaced,
            card_key: None,
        })
    }

    /// The open intent `intent_id`, for a state change: its card number,
    /// station and card key (if one was attached).
    fn open_intent_for_update(tx: &Transaction<'_>, intent_id: i64) -> Result<OpenIntentRow> {
        let row: Option<(String, String, String, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT card_number, station, state, card_key FROM cards WHERE intent_id = ?1",
                [intent_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        match row {
            None => Err(RegistryError::UnknownIntent { intent_id }),
            Some((_, _, state, _)) if state != "intent" => {
                Err(RegistryError::IntentNotOpen { intent_id, state })
            }
            Some((card_number, station, _, key)) => Ok(OpenIntentRow {
                card_number,
                station,
                card_key: key.map(|k| fixed::<33>("card key", k)).transpose()?,
            }),
        }
    }

    /// Checks a card key and its revocation id (the one the protocol derives
    /// from the key), then, inside `tx`, that no other card record than
    /// `intent_id` holds either.
    fn check_new_key(
        tx: &Transaction<'_>,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
    ) -> Result<()> {
        let other: Option<String> = tx
            .query_row(
                "SELECT card_number FROM cards \
                 WHERE (card_key = ?1 OR revocation_id = ?2) AND intent_id <> ?3",
                params![card_key.as_slice(), revocation_id.as_slice(), intent_id],
                |r| r.get(0),
            )
            .optional()?;
        match other {
            Some(card_number) => Err(RegistryError::CardKeyTaken { card_number }),
            None => Ok(()),
        }
    }

    /// Records the card's public key (compressed P-256) and revocation id on
    /// an open intent, durably, **before the first APDU that could put a
    /// signed record or certificate for this card number on the card**. From
    /// then on, if the intent ends spoiled, the key's revocation id is on
    /// every revocation list ([`Registry::revocation_ids`]): the lost card
    /// may be complete and genuine.
    ///
    /// A key is attached once: the same key again changes nothing; another
    /// key is refused with [`RegistryError::CardKeyMismatch`]. A key recorded
    /// for another card is refused with [`RegistryError::CardKeyTaken`].
    /// Writes a `card-key` audit entry.
    pub fn attach_card_key(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        check_key_pair(card_key, revocation_id)?;
        let tx = self.write()?;
        let open = Self::open_intent_for_update(&tx, intent_id)?;
        match open.card_key {
            Some(recorded) if recorded == *card_key => return Ok(()),
            Some(_) => {
                return Err(RegistryError::CardKeyMismatch {
                    card_number: open.card_number,
                })
            }
            None => {}
        }
        Self::check_new_key(&tx, intent_id, card_key, revocation_id)?;
        tx.execute(
            "UPDATE cards SET card_key = ?2, revocation_id = ?3 \
             WHERE intent_id = ?1 AND state = 'intent' AND card_key IS NULL",
            params![intent_id, card_key.as_slice(), revocation_id.as_slice()],
        )?;
        audit(
            &tx,
            actor,
            Some(&open.station),
            "card-key",
            Some(&open.card_number),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Commits an intent as issued, after the card was verified locked:
    /// stores the card's public key (compressed P-256) and its revocation id,
    /// which must be the one the protocol derives from the key. If a key was
    /// attached to the intent ([`Registry::attach_card_key`]), the card's key
    /// must be that one ([`RegistryError::CardKeyMismatch`] otherwise).
    pub fn commit_issued(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        check_key_pair(card_key, revocation_id)?;
        let tx = self.write()?;
        let OpenIntentRow {
            card_number,
            station,
            card_key: recorded,
        } = Self::open_intent_for_update(&tx, intent_id)?;
        if recorded.is_some_and(|k| k != *card_key) {
            return Err(RegistryError::CardKeyMismatch { card_number });
        }
        Self::check_new_key(&tx, intent_id, card_key, revocation_id)?;
        tx.execute(
            "UPDATE cards SET state = 'issued', card_key = ?2, revocation_id = ?3 \
             WHERE intent_id = ?1 AND state = 'intent'",
            params![intent_id, card_key.as_slice(), revocation_id.as_slice()],
        )?;
        audit(&tx, actor, Some(&station), "issued", Some(&card_number))?;
        tx.commit()?;
        Ok(())
    }

    /// Marks an open intent spoiled. `reason` is a short machine reason
    /// (`torn`, `card-pulled`, `not-blank`: 1–32 of `a-z`, `0-9`, `-`), never
    /// personal data. The card number is not reused.
    ///
    /// An intent that carries a card key ([`Registry::attach_card_key`])
    /// keeps it: the lost card may hold a complete, station-signed record, so
    /// its revocation id is on every revocation list from now on
    /// ([`Registry::revocation_ids`]); a second audit entry,
    /// [`SPOILED_AFTER_SIGNING`], records that. Returns whether the intent
    /// carried a key.
    pub fn mark_spoiled(&mut self, intent_id: i64, reason: &str, actor: &str) -> Result<bool> {
        check_spoil_reason(reason)?;
        check_text("actor", actor, MAX_NAME_LEN)?;
        let tx = self.write()?;
        let OpenIntentRow {
            card_number,
            station,
            card_key,
        } = Self::open_intent_for_update(&tx, intent_id)?;
        tx.execute(
            "UPDATE cards SET state = 'spoiled', spoil_reason = ?2 \
             WHERE intent_id = ?1 AND state = 'intent'",
            params![intent_id, reason],
        )?;
        audit(
            &tx,
            actor,
            Some(&station),
            &format!("spoiled:{reason}"),
            Some(&card_number),
        )?;
        if card_key.is_some() {
            audit(
                &tx,
                actor,
                Some(&station),
                SPOILED_AFTER_SIGNING,
                Some(&card_number),
            )?;
        }
        tx.commit()?;
        Ok(card_key.is_some())
    }

    fn cards_where(&self, condition: &str, param: &str) -> Result<Vec<RawCard>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE {condition} ORDER BY intent_id"
        ))?;
        let rows = stmt
            .query_map([param], RawCard::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every open intent (to reconcile on start), oldest first.
    pub fn open_intents(&self) -> Result<Vec<Intent>> {
        self.cards_where("state = ?1", "intent")?
            .into_iter()
            .map(RawCard::into_intent)
            .collect()
    }

    /// Revokes an issued card. Fails with [`RegistryError::UnknownCard`],
    /// [`RegistryError::AlreadyRevoked`], or [`RegistryError::CardNotIssued`]
    /// (an intent is reconciled, not revoked; a spoiled card was never issued).
    pub fn revoke(
        &mut self,
        card_number: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        let tx = self.write()?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM cards WHERE card_number = ?1",
                [card_number],
                |r| r.get(0),
            )
            .optional()?;
        match state.as_deref() {
            None => {
                return Err(RegistryError::UnknownCard {
                    card_number: card_number.into(),
                })
            }
            Some("revoked") => {
                return Err(RegistryError::AlreadyRevoked {
                    card_number: card_number.into(),
                })
            }
            Some("issued") => {}
            Some(other) => {
                return Err(RegistryError::CardNotIssued {
                    card_number: card_number.into(),
                    state: other.into(),
                })
            }
        }
        tx.execute(
            "UPDATE cards SET state = 'revoked', revoke_reason = ?2, revoked_at = ?3 \
             WHERE card_number = ?1 AND state = 'issued'",
            params![card_number, reason.as_str(), now()],
        )?;
        audit(
            &tx,
            actor,
            None,
            &format!("revoked:{reason}"),
            Some(card_number),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every revoked card, in order of revocation (for the signed revocation list).
    pub fn revoked(&self) -> Result<Vec<RevokedCard>> {
        let mut stmt = self.conn.prepare(
            "SELECT card_number, revocation_id, revoke_reason, revoked_at FROM cards \
             WHERE state = 'revoked' ORDER BY revoked_at, intent_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(card_number, id, reason, at)| {
                Ok(RevokedCard {
                    card_number,
                    revocation_id: fixed::<8>("revocation id", id)?,
                    reason: parse_reason(&reason)?,
                    at,
                })
            })
            .collect()
    }

    /// Every revocation id the signed revocation list must carry: those of
    /// revoked cards (as [`Registry::revoked`], in that order), then those of
    /// spoiled intents that carry a card key — cards lost after the station
    /// signed for them, which may be complete and genuine (in intent order).
    pub fn revocation_ids(&self) -> Result<Vec<[u8; 8]>> {
        let mut ids: Vec<[u8; 8]> = self
            .revoked()?
            .into_iter()
            .map(|r| r.revocation_id)
            .collect();
        let mut stmt = self.conn.prepare(
            "SELECT revocation_id FROM cards \
             WHERE state = 'spoiled' AND revocation_id IS NOT NULL ORDER BY intent_id",
        )?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for id in rows {
            ids.push(fixed::<8>("revocation id", id)?);
        }
        Ok(ids)
    }

    /// The revocation ids the signed list of linkability group `group` must
    /// carry on `as_of`: those of revoked cards and of spoiled intents that
    /// carry a card key, except the ones whose card can no longer be valid —
    /// its last valid day (`expires_on`, which an intent records for the card
    /// it would have issued) more than
    /// [`REVOCATION_GRACE_DAYS`](citycard_proto::revocation::REVOCATION_GRACE_DAYS)
    /// days before `as_of`. Sorted ascending.
    ///
    /// Every card of this protocol version belongs to group 0; any other
    /// group has no cards yet, so its list is empty.
    pub fn revocation_ids_for(&self, group: u8, as_of: Date) -> Result<Vec<[u8; 8]>> {
        use citycard_proto::revocation::{GROUP_COUNT, REVOCATION_GRACE_DAYS};
        if group >= GROUP_COUNT {
            return Err(invalid("group", "must be 0 to 7"));
        }
        if group != 0 {
            return Ok(Vec::new());
        }
        let cutoff = Date::from_days_since_epoch(
            as_of.days_since_epoch() - i64::from(REVOCATION_GRACE_DAYS),
        )
        .map_err(|_| invalid("as_of", "out of range"))?;
        let mut stmt = self.conn.prepare(
            "SELECT revocation_id FROM cards \
             WHERE state IN ('revoked', 'spoiled') AND revocation_id IS NOT NULL \
               AND expires_on >= ?1 \
             ORDER BY revocation_id",
        )?;
        let rows = stmt
            .query_map([cutoff.to_string()], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|id| fixed::<8>("revocation id", id))
            .collect()
    }

    /// The record of one card, if known.
    pub fn card(&self, card_number: &str) -> Result<Option<CardRecord>> {
        self.cards_where("card_number = ?1", card_number)?
            .into_iter()
            .next()
            .map(RawCard::into_record)
            .transpose()
    }

    /// The card number of the card whose public key (compressed P-256) is
    /// `card_key`, if any card record has it (issued, revoked, or an intent
    /// or spoiled intent it was recorded for). For refusing a key before it
    /// is certified a second time.
    pub fn card_with_key(&self, card_key: &[u8; 33]) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT card_number FROM cards WHERE card_key = ?1",
                [card_key.as_slice()],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The resident's live card record: issued and unrevoked, or an open
    /// intent (see its `state`). At most one exists.
    pub fn live_card_of(&self, resident_ref: &str) -> Result<Option<CardRecord>> {
        if resident_ref.starts_with(TOMBSTONE_PREFIX) {
            return Ok(None);
        }
        self.cards_where(
            "resident_ref = ?1 AND state IN ('intent', 'issued')",
            resident_ref,
        )?
        .into_iter()
        .next()
        .map(RawCard::into_record)
        .transpose()
    }

    /// The attributes stored for a resident (ascending ids), or `None` if the
    /// registry holds none for this reference (unknown or forgotten).
    pub fn resident_attributes(&self, resident_ref: &str) -> Result<Option<Attributes>> {
        let known: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM residents WHERE resident_ref = ?1",
                [resident_ref],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_none() {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(
            "SELECT attribute, value FROM resident_attributes \
             WHERE resident_ref = ?1 ORDER BY attribute",
        )?;
        let rows = stmt
            .query_map([resident_ref], |r| {
                Ok((r.get::<_, u8>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(id, value)| {
                let id = AttributeId::new(id)
                    .map_err(|_| RegistryError::Corrupt(format!("attribute id {id}")))?;
                Ok((id, value))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Retention and deletion: erases every stored attribute of the resident
    /// and unlinks their card records (the reference is replaced by a random
    /// tombstone per card; the batch row and the link to a replaced card are
    /// cleared, since either could lead back to the person). Card numbers,
    /// dates, keys and revocation state stay, so revocation keeps working.
    /// Writes a `forget` audit entry (without card number or reference).
    ///
    /// Refused with [`RegistryError::ResidentHasOpenIntent`] while an issuance
    /// is in progress, and with [`RegistryError::UnknownResident`] for a
    /// reference the registry does not hold (so a second call fails).
    /// Afterwards the one-live-card rule can no longer recognise this person.
    pub fn forget_resident(&mut self, resident_ref: &str, actor: &str) -> Result<ForgetReport> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        if resident_ref.starts_with(TOMBSTONE_PREFIX) || resident_ref.is_empty() {
            return Err(RegistryError::UnknownResident);
        }
        let tx = self.write()?;
        let cards: Vec<(i64, String)> = {
            let mut stmt =
                tx.prepare("SELECT intent_id, state FROM cards WHERE resident_ref = ?1")?;
            let rows = stmt
                .query_map([resident_ref], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        if let Some((id, _)) = cards.iter().find(|(_, s)| s == "intent") {
            let card_number: String = tx.query_row(
                "SELECT card_number FROM cards WHERE intent_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            return Err(RegistryError::ResidentHasOpenIntent { card_number });
        }
        let attributes_erased = tx.execute(
            "DELETE FROM resident_attributes WHERE resident_ref = ?1",
            [resident_ref],
        )?;
        let residents = tx.execute(
            "DELETE FROM residents WHERE resident_ref = ?1",
            [resident_ref],
        )?;
        if residents == 0 && cards.is_empty() {
            return Err(RegistryError::UnknownResident);
        }
        for (id, _) in &cards {
            let tombstone = format!("{TOMBSTONE_PREFIX}{}", random_hex(16)?);
            tx.execute(
                "UPDATE cards SET resident_ref = ?2, batch_id = NULL, batch_row = NULL, \
                 replaces_card = NULL, replace_reason = NULL WHERE intent_id = ?1",
                params![id, tombstone],
            )?;
        }
        audit(&tx, actor, None, "forget", None)?;
        tx.commit()?;
        Ok(ForgetReport {
            attributes_erased,
            cards_unlinked: cards.len(),
            wal_truncated: self.truncate_wal(),
        })
    }

    /// Checkpoints the WAL into the database file and truncates it; `true` if
    /// that completed (or the registry does not use a WAL).
    fn truncate_wal(&self) -> bool {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|busy| busy == 0)
            .unwrap_or(false)
    }

    /// For `--resume`: the card a batch row produced, if the row is done —
    /// that is, it has an issued (possibly since revoked) card or an open
    /// intent. A row whose only cards were spoiled is not done.
    pub fn batch_row_done(&self, batch_id: &str, row: u64) -> Result<Option<String>> {
        let Ok(row) = i64::try_from(row) else {
            return Ok(None);
        };
        Ok(self
            .conn
            .query_row(
                "SELECT card_number FROM cards WHERE batch_id = ?1 AND batch_row = ?2 \
                 AND state IN ('intent', 'issued', 'revoked') ORDER BY intent_id DESC LIMIT 1",
                params![batch_id, row],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Counts of records by state.
    pub fn counts(&self) -> Result<Counts> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, count(*) FROM cards GROUP BY state")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut c = Counts::default();
        for (state, n) in rows {
            let n = n.unsigned_abs();
            match state.as_str() {
                "intent" => c.open_intents = n,
                "issued" => c.issued += n,
                "spoiled" => c.spoiled = n,
                "revoked" => {
                    c.revoked = n;
                    c.issued += n;
                }
                other => return Err(RegistryError::Corrupt(format!("bad state {other:?}"))),
            }
        }
        Ok(c)
    }

    /// The whole audit log, in order.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at, actor, station, action, card_number FROM audit ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    station: r.get(3)?,
                    action: r.get(4)?,
                    card_number: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Appends an audit entry for an issuer action that changes no card
    /// record (`station-added`, `partner-enrolled`,
    /// `revocation-list-published`, ...). The action is a machine word (1–48
    /// of `a-z`, `0-9`, `-`, `:`), never one of the registry's own card
    /// actions, and never names forbidden data ([`FORBIDDEN_WORDS`]); the
    /// station, if any, is a station name. No free text, so no personal data.
    pub fn record_action(
        &mut self,
        actor: &str,
        station: Option<&str>,
        action: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        if let Some(station) = station {
            check_text("station", station, MAX_NAME_LEN)?;
        }
        check_action(action)?;
        let tx = self.write()?;
        audit(&tx, actor, station, action, None)?;
        tx.commit()?;
        Ok(())
    }

    /// The next sequence number for a signed revocation list (1, 2, ...):
    /// monotonic and persisted, never handed out twice.
    pub fn next_revocation_sequence(&mut self) -> Result<u32> {
        let tx = self.write()?;
        let value = bump_counter(&tx, REVOCATION_SEQUENCE)?;
        let value = u32::try_from(value).map_err(|_| RegistryError::CounterExhausted {
            counter: REVOCATION_SEQUENCE.into(),
        })?;
        tx.commit()?;
        Ok(value)
    }

    /// The next card number for `prefix` (`LG` gives `LG-000001`, `LG-000002`,
    /// ...): monotonic per prefix, persisted, never reused (not even after a
    /// spoiled card), skipping any number already recorded. `prefix` is 1–12
    /// ASCII letters or digits; the result always passes
    /// `AttributeId::CARD_NUMBER.validate_value`.
    pub fn next_card_number(&mut self, prefix: &str) -> Result<String> {
        if prefix.is_empty()
            || prefix.len() > MAX_PREFIX_LEN
            || !prefix.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(invalid("prefix", "1 to 12 ASCII letters or digits"));
        }
        let counter = format!("card_number:{prefix}");
        let tx = self.write()?;
        let number = loop {
            let value = bump_counter(&tx, &counter)?;
            let number = format!("{prefix}-{value:06}");
            if check_card_number(&number).is_err() {
                return Err(RegistryError::CounterExhausted { counter });
            }
            let taken: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM cards WHERE card_number = ?1",
                    [&number],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_none() {
                break number;
            }
        };
        tx.commit()?;
        Ok(number)
    }
}

/// Makes the new file's directory entry durable (best effort: not every
/// platform can fsync a directory).
fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}
