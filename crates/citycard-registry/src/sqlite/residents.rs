//! Residents and their cards: lookups, retention, forgetting.

#[allow(unused_imports)]
use crate::prelude::*;

impl Registry {
    /// Retention: erases every stored attribute whose retention deadline is
    /// before `at` (unix seconds), and the WAL copy of them. Returns how many
    /// residents' attributes were erased. Writes a `retention-purge` audit
    /// entry when it erased any.
    pub fn purge_expired_attributes(&mut self, at: i64, actor: &str) -> Result<usize> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        // Most opens find nothing to erase: no write lock for them.
        let due: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM resident_attributes \
                 WHERE retain_until IS NOT NULL AND retain_until < ?1 LIMIT 1",
                [at],
                |r| r.get(0),
            )
            .optional()?;
        if due.is_none() {
            return Ok(0);
        }
        let tx = self.write()?;
        let residents = tx.execute(
            "DELETE FROM residents WHERE resident_ref IN \
             (SELECT resident_ref FROM resident_attributes \
              WHERE retain_until IS NOT NULL AND retain_until < ?1)",
            [at],
        )?;
        if residents > 0 {
            audit(&tx, actor, None, "retention-purge", None)?;
        }
        tx.commit()?;
        if residents > 0 {
            self.truncate_wal();
        }
        Ok(residents)
    }

    /// How many residents have stored attributes.
    pub fn residents_with_attributes(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(DISTINCT resident_ref) FROM resident_attributes",
            [],
            |r| r.get(0),
        )?;
        Ok(n.unsigned_abs())
    }

    /// The retention deadline of a resident's stored attributes (unix
    /// seconds; `None` if none are stored or they are kept until forgotten).
    pub fn retained_until(&self, resident_ref: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT max(retain_until) FROM resident_attributes WHERE resident_ref = ?1",
                [resident_ref],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
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
}
