//! Moving a registry from its SQLite file to PostgreSQL: every row, with
//! its ids, sequence numbers and counters, in one transaction. Rows stream
//! through `COPY … FROM STDIN` (text format), never all in memory: a city's
//! registry is 10^5–10^6 cards and millions of audit entries.

use std::io::Write;

use postgres::{IsolationLevel, Transaction};
use rusqlite::types::ValueRef;

use super::PgRegistry;
use crate::{Registry, RegistryError, Result};

/// What [`copy_sqlite_to_postgres`] copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Card records (intents, issued, spoiled, revoked).
    pub cards: u64,
    /// Audit entries.
    pub audit_entries: u64,
    /// Desk leases.
    pub leases: u64,
    /// Residents with kept attributes.
    pub residents: u64,
}

/// Appends one value in `COPY` text format: `\N` for NULL, integers as
/// they are, text with `\`, tab, newline and carriage return escaped, blobs
/// as `\\x` + hex (bytea input).
fn push_value(out: &mut Vec<u8>, v: ValueRef<'_>) -> Result<()> {
    match v {
        ValueRef::Null => out.extend_from_slice(b"\\N"),
        ValueRef::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        ValueRef::Text(t) => {
            for &b in t {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
        ValueRef::Blob(bytes) => {
            out.extend_from_slice(b"\\\\x");
            for b in bytes {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        ValueRef::Real(_) => {
            return Err(RegistryError::Corrupt(
                "a real number in the registry".into(),
            ))
        }
    }
    Ok(())
}

/// Streams the rows of `select` (SQLite) into `copy` (PostgreSQL); returns
/// how many.
fn copy_table(tx: &mut Transaction<'_>, from: &Registry, select: &str, copy: &str) -> Result<u64> {
    let mut stmt = from.conn.prepare(select)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut writer = tx.copy_in(copy)?;
    let mut line = Vec::with_capacity(256);
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        line.clear();
        for i in 0..columns {
            if i > 0 {
                line.push(b'\t');
            }
            push_value(&mut line, r.get_ref(i)?)?;
        }
        line.push(b'\n');
        writer.write_all(&line)?;
        n += 1;
    }
    writer.finish()?;
    Ok(n)
}

/// Copies every row of the SQLite registry `from` into the PostgreSQL
/// registry at `url`, which must be migrated to the current schema and hold
/// no record yet ([`RegistryError::AlreadyExistsAt`] otherwise). One
/// transaction: a failure leaves the target empty. Run it as the role that
/// owns the tables (audit sequence numbers are copied as they are), while no
/// desk works on the SQLite file.
pub fn copy_sqlite_to_postgres(
    from: &Registry,
    url: &str,
    password: Option<&str>,
) -> Result<CopyReport> {
    let target = PgRegistry::connect(url, password)?;
    let mut client = target.client()?;
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()?;
    let used: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM cards) + (SELECT count(*) FROM audit) \
             + (SELECT count(*) FROM leases) + (SELECT count(*) FROM residents)",
            &[],
        )?
        .try_get(0)?;
    if used != 0 {
        return Err(RegistryError::AlreadyExistsAt {
            location: url.to_string(),
        });
    }
    // Leases first, all held: an open intent may only name a held lease;
    // the released ones are marked after the cards.
    let leases = copy_table(
        &mut tx,
        from,
        "SELECT lease_id, desk, holder, acquired_at, renewed_at, expires_at FROM leases",
        "COPY leases (lease_id, desk, holder, acquired_at, renewed_at, expires_at) FROM STDIN",
    )?;
    let cards = copy_table(
        &mut tx,
        from,
        "SELECT intent_id, card_number, resident_ref, station, issued_on, expires_on, state, \
         card_key, revocation_id, spoil_reason, revoke_reason, revoked_at, batch_id, \
         batch_row, replaces_card, replace_reason, lease_id, created_at FROM cards \
         ORDER BY intent_id",
        "COPY cards (intent_id, card_number, resident_ref, station, issued_on, expires_on, \
         state, card_key, revocation_id, spoil_reason, revoke_reason, revoked_at, batch_id, \
         batch_row, replaces_card, replace_reason, lease_id, created_at) FROM STDIN",
    )?;
    let released: Vec<String> = {
        let mut stmt = from
            .conn
            .prepare("SELECT lease_id FROM leases WHERE released <> 0")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        rows
    };
    tx.execute(
        "UPDATE leases SET released = true WHERE lease_id = ANY($1)",
        &[&released],
    )?;
    let residents = copy_table(
        &mut tx,
        from,
        "SELECT resident_ref FROM residents",
        "COPY residents (resident_ref) FROM STDIN",
    )?;
    copy_table(
        &mut tx,
        from,
        "SELECT resident_ref, attribute, value, retain_until FROM resident_attributes",
        "COPY resident_attributes (resident_ref, attribute, value, retain_until) FROM STDIN",
    )?;
    copy_table(
        &mut tx,
        from,
        "SELECT name, value FROM counters",
        "COPY counters (name, value) FROM STDIN",
    )?;
    // COPY writes identity columns as given (no OVERRIDING needed).
    let audit_entries = copy_table(
        &mut tx,
        from,
        "SELECT seq, at, actor, station, action, card_number FROM audit ORDER BY seq",
        "COPY audit (seq, at, actor, station, action, card_number) FROM STDIN",
    )?;
    restart_identity(&mut tx, "cards", "intent_id")?;
    restart_identity(&mut tx, "audit", "seq")?;
    tx.commit()?;
    Ok(CopyReport {
        cards,
        audit_entries,
        leases,
        residents,
    })
}

/// Makes the next generated id follow the largest copied one.
fn restart_identity(tx: &mut Transaction<'_>, table: &str, column: &str) -> Result<()> {
    tx.execute(
        &format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             coalesce(max({column}), 0) + 1, false) FROM {table}"
        ),
        &[],
    )?;
    Ok(())
}
