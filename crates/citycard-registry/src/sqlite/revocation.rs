//! Revocation: revoking a card, the revoked cards and revocation ids the
//! signed list carries, the list's sequence number.

#[allow(unused_imports)]
use crate::prelude::*;

impl Registry {
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
        revoke_rule(card_number, state.as_deref())?;
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
    /// Group 0's ids are the cards' own (`cards`); those of groups 1 and up
    /// are the cards' group records (`card_group_keys`), so no two groups'
    /// lists share an id.
    pub fn revocation_ids_for(&self, group: u8, as_of: Date) -> Result<Vec<[u8; 8]>> {
        let cutoff = revocation_cutoff(group, as_of)?;
        let sql = if group == 0 {
            "SELECT revocation_id FROM cards \
             WHERE state IN ('revoked', 'spoiled') AND revocation_id IS NOT NULL \
               AND expires_on >= ?1 AND ?2 = 0 \
             ORDER BY revocation_id"
        } else {
            "SELECT g.revocation_id FROM card_group_keys g JOIN cards c USING (intent_id) \
             WHERE g.group_id = ?2 AND c.state IN ('revoked', 'spoiled') \
               AND c.expires_on >= ?1 \
             ORDER BY g.revocation_id"
        };
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt
            .query_map(params![cutoff.to_string(), i64::from(group)], |r| {
                r.get::<_, Vec<u8>>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|id| fixed::<8>("revocation id", id))
            .collect()
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
}
