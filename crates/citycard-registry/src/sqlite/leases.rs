//! Desk leases: who owns an open intent, for how long.

#[allow(unused_imports)]
use crate::prelude::*;

impl Registry {
    /// Takes a new desk lease for `desk` (where the cards are: a reader
    /// identity), held by `holder` (`host:pid`), valid `ttl_secs` unless
    /// renewed. Writes a `lease` audit entry.
    pub fn acquire_lease(&mut self, desk: &str, holder: &str, ttl_secs: i64) -> Result<Lease> {
        check_text("desk", desk, MAX_DESK_LEN)?;
        check_text("holder", holder, MAX_HOLDER_LEN)?;
        let id = random_hex(16)?;
        let at = now();
        let expires_at = at.saturating_add(ttl_secs.max(1));
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO leases (lease_id, desk, holder, acquired_at, renewed_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![id, desk, holder, at, expires_at],
        )?;
        tx.commit()?;
        Ok(Lease {
            id,
            desk: desk.into(),
            holder: holder.into(),
            expires_at,
            released: false,
        })
    }

    /// Extends a lease by `ttl_secs` from now. Fails with
    /// [`RegistryError::LeaseGone`] if it was released or taken over (its
    /// holder must stop), even if it had merely expired meanwhile and no one
    /// took it over (then it is renewed).
    pub fn renew_lease(&mut self, lease_id: &str, ttl_secs: i64) -> Result<i64> {
        let at = now();
        let expires_at = at.saturating_add(ttl_secs.max(1));
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE leases SET renewed_at = ?2, expires_at = ?3 \
             WHERE lease_id = ?1 AND released = 0",
            params![lease_id, at, expires_at],
        )?;
        if n == 0 {
            return Err(RegistryError::LeaseGone {
                lease_id: lease_id.into(),
            });
        }
        tx.commit()?;
        Ok(expires_at)
    }

    /// Releases a lease (its holder is done). Its open intents, if any, may
    /// then be reconciled by any desk with their cards.
    pub fn release_lease(&mut self, lease_id: &str) -> Result<()> {
        let tx = self.write()?;
        tx.execute(
            "UPDATE leases SET released = 1 WHERE lease_id = ?1",
            [lease_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Takes over the open intent `intent_id` for `lease_id`, if it is still
    /// owned by `from` (its gone owner; `None` for an intent without one):
    /// the compare-and-set that lets exactly one desk reconcile an orphaned
    /// intent. Returns `false` if someone else changed it first.
    pub fn take_over_intent(
        &mut self,
        intent_id: i64,
        from: Option<&str>,
        lease_id: &str,
    ) -> Result<bool> {
        let tx = self.write()?;
        let n = tx.execute(
            "UPDATE cards SET lease_id = ?3 WHERE intent_id = ?1 AND state = 'intent' \
             AND lease_id IS ?2",
            params![intent_id, from, lease_id],
        )?;
        if let Some(from) = from {
            tx.execute("UPDATE leases SET released = 1 WHERE lease_id = ?1", [from])?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// One lease, if recorded.
    pub fn lease(&self, lease_id: &str) -> Result<Option<Lease>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE lease_id = ?1"),
                [lease_id],
                lease_from_row,
            )
            .optional()?)
    }

    /// Leases still held at `at` (not released, not expired): the desks at work.
    pub fn active_leases(&self, at: i64) -> Result<Vec<Lease>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases \
                 WHERE released = 0 AND expires_at >= ?1 ORDER BY acquired_at"
        ))?;
        let rows = stmt
            .query_map([at], lease_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

const LEASE_COLUMNS: &str = "lease_id, desk, holder, expires_at, released";

fn lease_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        id: r.get(0)?,
        desk: r.get(1)?,
        holder: r.get(2)?,
        expires_at: r.get(3)?,
        released: r.get::<_, i64>(4)? != 0,
    })
}
