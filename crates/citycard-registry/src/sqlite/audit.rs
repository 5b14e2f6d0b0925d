//! The append-only audit log.

#[allow(unused_imports)]
use crate::prelude::*;

impl Registry {
    /// The audit log from `since` (unix seconds) on, in order.
    pub fn audit_since(&self, since: i64) -> Result<Vec<AuditEntry>> {
        let mut out = Vec::new();
        self.for_each_audit_since(since, &mut |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams the audit log from `since` (unix seconds) on, in order, to
    /// `each` (a city's log is millions of entries: never all in memory).
    /// Returns how many entries it passed on.
    pub fn for_each_audit_since(
        &self,
        since: i64,
        each: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<u64> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at, actor, station, action, card_number FROM audit \
             WHERE at >= ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([since])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            each(AuditEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                station: r.get(3)?,
                action: r.get(4)?,
                card_number: r.get(5)?,
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The whole audit log, in order.
    pub fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        self.audit_since(i64::MIN)
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
}
