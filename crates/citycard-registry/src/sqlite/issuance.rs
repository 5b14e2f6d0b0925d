//! Issuance: intents (with the card number allocated in their own
//! transaction), card keys, commit and spoil, batch rows.

#[allow(unused_imports)]
use crate::prelude::*;

impl Registry {
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
        let CheckedIssuance { attributes, batch } = check_issuance(n)?;
        let created_at = now();

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(lease) = n.lease {
            let usable: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM leases WHERE lease_id = ?1 AND released = 0",
                    [lease],
                    |r| r.get(0),
                )
                .optional()?;
            if usable.is_none() {
                return Err(RegistryError::LeaseGone {
                    lease_id: lease.into(),
                });
            }
        }
        if let Some((batch_id, row)) = batch {
            if let Some(card_number) = batch_row_card(&tx, batch_id, row)? {
                return Err(RegistryError::BatchRowDone {
                    batch_id: batch_id.into(),
                    row: row.unsigned_abs(),
                    card_number,
                });
            }
        }
        let live: Option<(String, String)> = tx
            .query_row(
                "SELECT card_number, state FROM cards \
                 WHERE resident_ref = ?1 AND state IN ('intent', 'issued')",
                [n.resident_ref],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let replaced = live_card_rule(live, n.replaces)?;
        if let Some((card_number, reason)) = &replaced {
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
                Some(card_number),
            )?;
        }
        #[cfg(test)]
        if self.fail_after_revoke {
            return Err(RegistryError::Sqlite(rusqlite::Error::InvalidQuery));
        }
        // Allocated last, in this transaction: a refusal above (or any
        // failure below) rolls the counter back with everything else.
        let card_number = match n.card_number {
            CardNumber::Given(number) => {
                if card_number_taken(&tx, number)? {
                    return Err(RegistryError::CardNumberTaken {
                        card_number: number.into(),
                    });
                }
                number.to_string()
            }
            CardNumber::Next { prefix } => allocate_card_number(&tx, prefix)?,
        };
        tx.execute(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
             state, batch_id, batch_row, replaces_card, replace_reason, created_at, lease_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'intent', ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                card_number,
                n.resident_ref,
                n.station,
                n.issued_on.to_string(),
                n.expires_on.to_string(),
                batch.map(|(id, _)| id),
                batch.map(|(_, row)| row),
                replaced.as_ref().map(|(c, _)| c.as_str()),
                replaced.as_ref().map(|(_, r)| r.as_str()),
                created_at,
                n.lease,
            ],
        )?;
        let id = tx.last_insert_rowid();
        // Attributes are kept only with a retention deadline; whatever was
        // kept before for this resident is replaced (or erased).
        tx.execute(
            "DELETE FROM resident_attributes WHERE resident_ref = ?1",
            [n.resident_ref],
        )?;
        match n.retain_until {
            Some(until) if !attributes.is_empty() => {
                tx.execute(
                    "INSERT OR IGNORE INTO residents (resident_ref) VALUES (?1)",
                    [n.resident_ref],
                )?;
                for (attribute, value) in &attributes {
                    tx.execute(
                        "INSERT INTO resident_attributes \
                         (resident_ref, attribute, value, retain_until) VALUES (?1, ?2, ?3, ?4)",
                        params![n.resident_ref, attribute, value, until],
                    )?;
                }
            }
            _ => {
                tx.execute(
                    "DELETE FROM residents WHERE resident_ref = ?1",
                    [n.resident_ref],
                )?;
            }
        }
        audit(&tx, n.actor, Some(n.station), "intent", Some(&card_number))?;
        tx.commit()?;
        Ok(new_intent(n, id, card_number, replaced))
    }

    /// The open intent `intent_id`, for a state change: its card number,
    /// station and card key (if one was attached).
    pub(crate) fn open_intent_for_update(
        tx: &Transaction<'_>,
        intent_id: i64,
    ) -> Result<OpenIntentRow> {
        let row: Option<(String, String, String, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT card_number, station, state, card_key FROM cards WHERE intent_id = ?1",
                [intent_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        open_intent_rule(intent_id, row)
    }

    /// Checks a card key and its revocation id (the one the protocol derives
    /// from the key), then, inside `tx`, that no other card record than
    /// `intent_id` holds either.
    pub(crate) fn check_new_key(
        tx: &Transaction<'_>,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
    ) -> Result<()> {
        let other: Option<String> = tx
            .query_row(
                "SELECT card_number FROM cards \
                 WHERE (card_key = ?1 OR revocation_id = ?2) AND intent_id <> ?3 \
                 UNION ALL SELECT c.card_number FROM card_group_keys g JOIN cards c USING (intent_id) \
                 WHERE g.card_key = ?1 OR g.revocation_id = ?2 LIMIT 1",
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
        if !attach_rule(&open, card_key)? {
            return Ok(());
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

    /// Records all of a card's group keys (SPEC §5.3: `keys[g]` is group
    /// `g`'s card key, 1 to [`MAX_GROUP_KEYS`](crate::MAX_GROUP_KEYS)) on an
    /// open intent, as [`Registry::attach_card_key`] does for group 0: group
    /// 0's key and revocation id go in `cards`, the others in
    /// `card_group_keys`, all in one transaction. Recording the same keys
    /// again changes nothing; other keys are refused
    /// ([`RegistryError::CardKeyMismatch`]), as is a key recorded for
    /// another card ([`RegistryError::CardKeyTaken`]).
    pub fn attach_group_keys(
        &mut self,
        intent_id: i64,
        keys: &[[u8; 33]],
        actor: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        let (first, rest) = crate::validate::group_key_pairs(keys)?;
        let tx = self.write()?;
        let open = Self::open_intent_for_update(&tx, intent_id)?;
        let recorded = Self::group_keys_in(&tx, intent_id)?;
        let fresh = attach_rule(&open, &first.0)?;
        if !fresh {
            crate::validate::same_group_keys(&open.card_number, &recorded, &rest)?;
            return Ok(());
        }
        if !recorded.is_empty() {
            return Err(RegistryError::CardKeyMismatch {
                card_number: open.card_number,
            });
        }
        for (key, rid) in std::iter::once(&first).chain(&rest) {
            Self::check_new_key(&tx, intent_id, key, rid)?;
        }
        tx.execute(
            "UPDATE cards SET card_key = ?2, revocation_id = ?3 \
             WHERE intent_id = ?1 AND state = 'intent' AND card_key IS NULL",
            params![intent_id, first.0.as_slice(), first.1.as_slice()],
        )?;
        for (g, (key, rid)) in (1i64..).zip(&rest) {
            tx.execute(
                "INSERT INTO card_group_keys (intent_id, group_id, card_key, revocation_id) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![intent_id, g, key.as_slice(), rid.as_slice()],
            )?;
        }
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

    /// The card keys of groups 1 and up recorded for an intent
    /// ([`Registry::attach_group_keys`]), by group; empty for a card of one
    /// group.
    pub fn group_keys(&self, intent_id: i64) -> Result<Vec<[u8; 33]>> {
        Self::group_keys_in(&self.conn, intent_id)
    }

    fn group_keys_in(conn: &rusqlite::Connection, intent_id: i64) -> Result<Vec<[u8; 33]>> {
        let mut stmt = conn.prepare(
            "SELECT card_key FROM card_group_keys WHERE intent_id = ?1 ORDER BY group_id",
        )?;
        let rows = stmt
            .query_map([intent_id], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|k| fixed::<33>("card key", k))
            .collect()
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

    /// Every open intent, oldest first, each with the desk lease that owns
    /// it (if any): reconcile only those whose owner is gone.
    pub fn open_intents(&self) -> Result<Vec<Intent>> {
        self.cards_where("state = ?1", "intent")?
            .into_iter()
            .map(|raw| {
                let owner = match &raw.lease_id {
                    Some(id) => self.lease(id)?,
                    None => None,
                };
                raw.into_intent(owner)
            })
            .collect()
    }

    /// For `--resume`: the card a batch row produced, if the row is done —
    /// that is, it has an issued (possibly since revoked) card or an open
    /// intent. A row whose only cards were spoiled is not done.
    pub fn batch_row_done(&self, batch_id: &str, row: u64) -> Result<Option<String>> {
        let Ok(row) = i64::try_from(row) else {
            return Ok(None);
        };
        batch_row_card(&self.conn, batch_id, row)
    }

    /// The next card number for `prefix` (`LG` gives `LG-000001`, `LG-000002`,
    /// ...): monotonic per prefix, persisted, never reused (not even after a
    /// spoiled card), skipping any number already recorded. `prefix` is 1–12
    /// ASCII letters or digits; the result always passes
    /// `AttributeId::CARD_NUMBER.validate_value`.
    pub fn next_card_number(&mut self, prefix: &str) -> Result<String> {
        check_prefix(prefix)?;
        let tx = self.write()?;
        let number = allocate_card_number(&tx, prefix)?;
        tx.commit()?;
        Ok(number)
    }
}
