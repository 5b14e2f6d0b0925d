//! Moving a registry from its SQLite file to PostgreSQL: every row, with
//! its ids, sequence numbers and counters, in one transaction.

use postgres::types::ToSql;
use postgres::{IsolationLevel, Transaction};

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
    let mut client = target.client.borrow_mut();
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
    let src = &from.conn;
    let mut report = CopyReport::default();

    // Leases first, all held: an open intent may only name a held lease;
    // the released ones are marked after the cards.
    let mut released = Vec::new();
    {
        let mut stmt = src.prepare(
            "SELECT lease_id, desk, holder, acquired_at, renewed_at, expires_at, released \
             FROM leases",
        )?;
        let mut rows = stmt.query([])?;
        let insert = tx.prepare(
            "INSERT INTO leases (lease_id, desk, holder, acquired_at, renewed_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let (desk, holder): (String, String) = (r.get(1)?, r.get(2)?);
            let times: (i64, i64, i64) = (r.get(3)?, r.get(4)?, r.get(5)?);
            tx.execute(
                &insert,
                &[&id, &desk, &holder, &times.0, &times.1, &times.2],
            )?;
            if r.get::<_, i64>(6)? != 0 {
                released.push(id);
            }
            report.leases += 1;
        }
    }
    {
        let mut stmt = src.prepare(
            "SELECT intent_id, card_number, resident_ref, station, issued_on, expires_on, state, \
             card_key, revocation_id, spoil_reason, revoke_reason, revoked_at, batch_id, \
             batch_row, replaces_card, replace_reason, lease_id, created_at FROM cards \
             ORDER BY intent_id",
        )?;
        let mut rows = stmt.query([])?;
        let insert = tx.prepare(
            "INSERT INTO cards (intent_id, card_number, resident_ref, station, issued_on, \
             expires_on, state, card_key, revocation_id, spoil_reason, revoke_reason, \
             revoked_at, batch_id, batch_row, replaces_card, replace_reason, lease_id, \
             created_at) VALUES ($1, $2, $3, $4, $5::text::date, $6::text::date, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let texts: [String; 5] = [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?];
            let state: String = r.get(6)?;
            let key: Option<Vec<u8>> = r.get(7)?;
            let rid: Option<Vec<u8>> = r.get(8)?;
            let opt: [Option<String>; 6] = [
                r.get(9)?,
                r.get(10)?,
                r.get(12)?,
                r.get(14)?,
                r.get(15)?,
                r.get(16)?,
            ];
            let revoked_at: Option<i64> = r.get(11)?;
            let batch_row: Option<i64> = r.get(13)?;
            let created_at: i64 = r.get(17)?;
            let params: [&(dyn ToSql + Sync); 18] = [
                &id,
                &texts[0],
                &texts[1],
                &texts[2],
                &texts[3],
                &texts[4],
                &state,
                &key,
                &rid,
                &opt[0],
                &opt[1],
                &revoked_at,
                &opt[2],
                &batch_row,
                &opt[3],
                &opt[4],
                &opt[5],
                &created_at,
            ];
            tx.execute(&insert, &params)?;
            report.cards += 1;
        }
    }
    for id in &released {
        tx.execute(
            "UPDATE leases SET released = true WHERE lease_id = $1",
            &[id],
        )?;
    }
    {
        let mut stmt = src.prepare("SELECT resident_ref FROM residents")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            tx.execute("INSERT INTO residents (resident_ref) VALUES ($1)", &[&id])?;
            report.residents += 1;
        }
        let mut stmt = src.prepare(
            "SELECT resident_ref, attribute, value, retain_until FROM resident_attributes",
        )?;
        let mut rows = stmt.query([])?;
        let insert = tx.prepare(
            "INSERT INTO resident_attributes (resident_ref, attribute, value, retain_until) \
             VALUES ($1, $2, $3, $4)",
        )?;
        while let Some(r) = rows.next()? {
            let (id, attribute): (String, i16) = (r.get(0)?, r.get(1)?);
            let (value, until): (Vec<u8>, Option<i64>) = (r.get(2)?, r.get(3)?);
            tx.execute(&insert, &[&id, &attribute, &value, &until])?;
        }
    }
    {
        let mut stmt = src.prepare("SELECT name, value FROM counters")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (name, value): (String, i64) = (r.get(0)?, r.get(1)?);
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ($1, $2)",
                &[&name, &value],
            )?;
        }
    }
    {
        let mut stmt = src.prepare(
            "SELECT seq, at, actor, station, action, card_number FROM audit ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        let insert = tx.prepare(
            "INSERT INTO audit (seq, at, actor, station, action, card_number) \
             OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6)",
        )?;
        while let Some(r) = rows.next()? {
            let (seq, at): (i64, i64) = (r.get(0)?, r.get(1)?);
            let actor: String = r.get(2)?;
            let station: Option<String> = r.get(3)?;
            let action: String = r.get(4)?;
            let card: Option<String> = r.get(5)?;
            tx.execute(&insert, &[&seq, &at, &actor, &station, &action, &card])?;
            report.audit_entries += 1;
        }
    }
    restart_identity(&mut tx, "cards", "intent_id")?;
    restart_identity(&mut tx, "audit", "seq")?;
    tx.commit()?;
    Ok(report)
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
