//! The registry's operations on PostgreSQL: the same contract, checks and
//! audit entries as the SQLite registry (see [`crate::Registry`]'s methods).
//!
//! One file on purpose: each method is one transaction mirroring the SQLite
//! backend's method of the same name (`sqlite/`), so the two are compared side
//! by side.

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Row, Transaction};

use super::PgRegistry;
use crate::model::*;
use crate::sqlite::rows::{fixed, parse_reason, OpenIntentRow, RawCard};
use crate::sqlite::{add_count, now, random_hex, REVOCATION_SEQUENCE};
use crate::validate::*;
use crate::{
    Attributes, IssuanceRegistry, RegistryError, Result, SPOILED_AFTER_SIGNING, TOMBSTONE_PREFIX,
};
use citycard_proto::attr::AttributeId;

const CARD_COLUMNS: &str = "intent_id, card_number, resident_ref, station, issued_on::text, \
    expires_on::text, state, card_key, revocation_id, spoil_reason, revoke_reason, revoked_at, \
    batch_id, batch_row, replaces_card, replace_reason, lease_id, created_at";

const LEASE_COLUMNS: &str = "lease_id, desk, holder, expires_at, released";

fn raw_card(r: &Row) -> Result<RawCard> {
    Ok(RawCard {
        intent_id: r.try_get(0)?,
        card_number: r.try_get(1)?,
        resident_ref: r.try_get(2)?,
        station: r.try_get(3)?,
        issued_on: r.try_get(4)?,
        expires_on: r.try_get(5)?,
        state: r.try_get(6)?,
        card_key: r.try_get(7)?,
        revocation_id: r.try_get(8)?,
        spoil_reason: r.try_get(9)?,
        revoke_reason: r.try_get(10)?,
        revoked_at: r.try_get(11)?,
        batch_id: r.try_get(12)?,
        batch_row: r.try_get(13)?,
        replaces_card: r.try_get(14)?,
        replace_reason: r.try_get(15)?,
        lease_id: r.try_get(16)?,
        created_at: r.try_get(17)?,
    })
}

fn lease_row(r: &Row) -> Result<Lease> {
    Ok(Lease {
        id: r.try_get(0)?,
        desk: r.try_get(1)?,
        holder: r.try_get(2)?,
        expires_at: r.try_get(3)?,
        released: r.try_get(4)?,
    })
}

fn audit(
    tx: &mut Transaction<'_>,
    actor: &str,
    station: Option<&str>,
    action: &str,
    card_number: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, station, action, card_number) VALUES ($1, $2, $3, $4, $5)",
        &[&now(), &actor, &station, &action, &card_number],
    )?;
    Ok(())
}

fn bump_counter(tx: &mut Transaction<'_>, name: &str) -> Result<i64> {
    Ok(tx
        .query_one(
            "INSERT INTO counters (name, value) VALUES ($1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
            &[&name],
        )?
        .try_get(0)?)
}

fn card_number_taken(tx: &mut Transaction<'_>, number: &str) -> Result<bool> {
    Ok(tx
        .query_opt("SELECT 1 FROM cards WHERE card_number = $1", &[&number])?
        .is_some())
}

/// How far one query looks ahead for a free card number.
const NUMBER_WINDOW: i64 = 1_000_000;

fn allocate_card_number(tx: &mut Transaction<'_>, prefix: &str) -> Result<String> {
    let counter = format!("card_number:{prefix}");
    let mut value = bump_counter(tx, &counter)?;
    loop {
        let number = format!("{prefix}-{value:06}");
        if check_card_number(&number).is_err() {
            return Err(RegistryError::CounterExhausted { counter });
        }
        if !card_number_taken(tx, &number)? {
            return Ok(number);
        }
        // Numbers recorded by hand (or imported): find the first free one
        // ahead in one query, not one round trip per taken number.
        let free: Option<i64> = tx
            .query_one(
                "SELECT min(g) FROM generate_series($1::bigint, $1::bigint + $3) AS g \
                 WHERE NOT EXISTS (SELECT 1 FROM cards WHERE card_number = $2 || '-' || \
                 CASE WHEN length(g::text) >= 6 THEN g::text ELSE lpad(g::text, 6, '0') END)",
                &[&value, &prefix, &NUMBER_WINDOW],
            )?
            .try_get(0)?;
        value = free.unwrap_or(value + NUMBER_WINDOW + 1);
        tx.execute(
            "UPDATE counters SET value = $2 WHERE name = $1",
            &[&counter, &value],
        )?;
    }
}

fn batch_row_card(tx: &mut Transaction<'_>, batch_id: &str, row: i64) -> Result<Option<String>> {
    Ok(tx
        .query_opt(
            "SELECT card_number FROM cards WHERE batch_id = $1 AND batch_row = $2 \
             AND state IN ('intent', 'issued', 'revoked') ORDER BY intent_id DESC LIMIT 1",
            &[&batch_id, &row],
        )?
        .map(|r| r.try_get(0))
        .transpose()?)
}

fn open_intent_for_update(tx: &mut Transaction<'_>, intent_id: i64) -> Result<OpenIntentRow> {
    let row = tx
        .query_opt(
            "SELECT card_number, station, state, card_key FROM cards WHERE intent_id = $1",
            &[&intent_id],
        )?
        .map(|r| {
            Ok::<_, RegistryError>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))
        })
        .transpose()?;
    open_intent_rule(intent_id, row)
}

fn check_new_key(
    tx: &mut Transaction<'_>,
    intent_id: i64,
    card_key: &[u8; 33],
    revocation_id: &[u8; 8],
) -> Result<()> {
    let other = tx.query_opt(
        "SELECT card_number FROM cards \
         WHERE (card_key = $1 OR revocation_id = $2) AND intent_id <> $3 \
         UNION ALL SELECT c.card_number FROM card_group_keys g JOIN cards c USING (intent_id) \
         WHERE g.card_key = $1 OR g.revocation_id = $2 LIMIT 1",
        &[&card_key.as_slice(), &revocation_id.as_slice(), &intent_id],
    )?;
    match other {
        Some(r) => Err(RegistryError::CardKeyTaken {
            card_number: r.try_get(0)?,
        }),
        None => Ok(()),
    }
}

/// The card keys of groups 1 and up recorded for an intent, by group.
fn group_keys_in(tx: &mut Transaction<'_>, intent_id: i64) -> Result<Vec<[u8; 33]>> {
    tx.query(
        "SELECT card_key FROM card_group_keys WHERE intent_id = $1 ORDER BY group_id",
        &[&intent_id],
    )?
    .iter()
    .map(|r| fixed::<33>("card key", r.try_get(0)?))
    .collect()
}

impl PgRegistry {
    fn cards_where(
        &self,
        condition: &str,
        param: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<Vec<RawCard>> {
        self.read(|tx| {
            tx.query(
                &format!("SELECT {CARD_COLUMNS} FROM cards WHERE {condition} ORDER BY intent_id"),
                &[param],
            )?
            .iter()
            .map(raw_card)
            .collect()
        })
    }

    fn counts_rows(&self, sql: &str) -> Result<Vec<(String, String, i64)>> {
        self.read(|tx| {
            tx.query(sql, &[])?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect()
        })
    }
}

impl IssuanceRegistry for PgRegistry {
    fn begin_intent(&mut self, n: &NewIssuance<'_>) -> Result<Intent> {
        let CheckedIssuance { attributes, batch } = check_issuance(n)?;
        let issued_on = n.issued_on.to_string();
        let expires_on = n.expires_on.to_string();
        let counting = matches!(n.card_number, CardNumber::Next { .. });
        self.write_with(counting, |tx| {
            let created_at = now();
            if let Some(lease) = n.lease {
                let usable = tx.query_opt(
                    "SELECT 1 FROM leases WHERE lease_id = $1 AND NOT released",
                    &[&lease],
                )?;
                if usable.is_none() {
                    return Err(RegistryError::LeaseGone {
                        lease_id: lease.into(),
                    });
                }
            }
            if let Some((batch_id, row)) = batch {
                if let Some(card_number) = batch_row_card(tx, batch_id, row)? {
                    return Err(RegistryError::BatchRowDone {
                        batch_id: batch_id.into(),
                        row: row.unsigned_abs(),
                        card_number,
                    });
                }
            }
            let live = tx.query_opt(
                "SELECT card_number, state FROM cards \
                 WHERE resident_ref = $1 AND state IN ('intent', 'issued')",
                &[&n.resident_ref],
            )?;
            let live: Option<(String, String)> = match live {
                Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
                None => None,
            };
            let replaced = live_card_rule(live, n.replaces)?;
            if let Some((card_number, reason)) = &replaced {
                tx.execute(
                    "UPDATE cards SET state = 'revoked', revoke_reason = $2, revoked_at = $3 \
                     WHERE card_number = $1 AND state = 'issued'",
                    &[card_number, &reason.as_str(), &created_at],
                )?;
                audit(
                    tx,
                    n.actor,
                    Some(n.station),
                    &format!("revoked:{reason}"),
                    Some(card_number),
                )?;
            }
            let card_number = match n.card_number {
                CardNumber::Given(number) => {
                    if card_number_taken(tx, number)? {
                        return Err(RegistryError::CardNumberTaken {
                            card_number: number.into(),
                        });
                    }
                    number.to_string()
                }
                CardNumber::Next { prefix } => allocate_card_number(tx, prefix)?,
            };
            let id: i64 = tx
                .query_one(
                    "INSERT INTO cards (card_number, resident_ref, station, issued_on, \
                     expires_on, state, batch_id, batch_row, replaces_card, replace_reason, \
                     created_at, lease_id) VALUES ($1, $2, $3, $4::text::date, $5::text::date, \
                     'intent', $6, $7, $8, $9, $10, $11) RETURNING intent_id",
                    &[
                        &card_number,
                        &n.resident_ref,
                        &n.station,
                        &issued_on,
                        &expires_on,
                        &batch.map(|(id, _)| id),
                        &batch.map(|(_, row)| row),
                        &replaced.as_ref().map(|(c, _)| c.as_str()),
                        &replaced.as_ref().map(|(_, r)| r.as_str()),
                        &created_at,
                        &n.lease,
                    ],
                )?
                .try_get(0)?;
            tx.execute(
                "DELETE FROM resident_attributes WHERE resident_ref = $1",
                &[&n.resident_ref],
            )?;
            match n.retain_until {
                Some(until) if !attributes.is_empty() => {
                    tx.execute(
                        "INSERT INTO residents (resident_ref) VALUES ($1) ON CONFLICT DO NOTHING",
                        &[&n.resident_ref],
                    )?;
                    for (attribute, value) in &attributes {
                        tx.execute(
                            "INSERT INTO resident_attributes \
                             (resident_ref, attribute, value, retain_until) \
                             VALUES ($1, $2, $3, $4)",
                            &[&n.resident_ref, &i16::from(*attribute), value, &until],
                        )?;
                    }
                }
                _ => {
                    tx.execute(
                        "DELETE FROM residents WHERE resident_ref = $1",
                        &[&n.resident_ref],
                    )?;
                }
            }
            audit(tx, n.actor, Some(n.station), "intent", Some(&card_number))?;
            Ok(new_intent(n, id, card_number, replaced))
        })
    }

    fn attach_card_key(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        check_key_pair(card_key, revocation_id)?;
        self.write(|tx| {
            let open = open_intent_for_update(tx, intent_id)?;
            if !attach_rule(&open, card_key)? {
                return Ok(());
            }
            check_new_key(tx, intent_id, card_key, revocation_id)?;
            tx.execute(
                "UPDATE cards SET card_key = $2, revocation_id = $3 \
                 WHERE intent_id = $1 AND state = 'intent' AND card_key IS NULL",
                &[&intent_id, &card_key.as_slice(), &revocation_id.as_slice()],
            )?;
            audit(
                tx,
                actor,
                Some(&open.station),
                "card-key",
                Some(&open.card_number),
            )
        })
    }

    fn attach_group_keys(&mut self, intent_id: i64, keys: &[[u8; 33]], actor: &str) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        let (first, rest) = crate::validate::group_key_pairs(keys)?;
        self.write(|tx| {
            let open = open_intent_for_update(tx, intent_id)?;
            let recorded = group_keys_in(tx, intent_id)?;
            if !attach_rule(&open, &first.0)? {
                return crate::validate::same_group_keys(&open.card_number, &recorded, &rest);
            }
            if !recorded.is_empty() {
                return Err(RegistryError::CardKeyMismatch {
                    card_number: open.card_number.clone(),
                });
            }
            for (key, rid) in std::iter::once(&first).chain(&rest) {
                check_new_key(tx, intent_id, key, rid)?;
            }
            tx.execute(
                "UPDATE cards SET card_key = $2, revocation_id = $3 \
                 WHERE intent_id = $1 AND state = 'intent' AND card_key IS NULL",
                &[&intent_id, &first.0.as_slice(), &first.1.as_slice()],
            )?;
            for (g, (key, rid)) in (1i16..).zip(&rest) {
                tx.execute(
                    "INSERT INTO card_group_keys \
                     (intent_id, group_index, group_id, card_key, revocation_id) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &intent_id,
                        &g,
                        &i32::from(g),
                        &key.as_slice(),
                        &rid.as_slice(),
                    ],
                )?;
            }
            audit(
                tx,
                actor,
                Some(&open.station),
                "card-key",
                Some(&open.card_number),
            )
        })
    }

    fn group_keys(&self, intent_id: i64) -> Result<Vec<[u8; 33]>> {
        self.read(|tx| group_keys_in(tx, intent_id))
    }

    fn commit_issued(
        &mut self,
        intent_id: i64,
        card_key: &[u8; 33],
        revocation_id: &[u8; 8],
        actor: &str,
    ) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        check_key_pair(card_key, revocation_id)?;
        self.write(|tx| {
            let OpenIntentRow {
                card_number,
                station,
                card_key: recorded,
            } = open_intent_for_update(tx, intent_id)?;
            if recorded.is_some_and(|k| k != *card_key) {
                return Err(RegistryError::CardKeyMismatch { card_number });
            }
            check_new_key(tx, intent_id, card_key, revocation_id)?;
            tx.execute(
                "UPDATE cards SET state = 'issued', card_key = $2, revocation_id = $3 \
                 WHERE intent_id = $1 AND state = 'intent'",
                &[&intent_id, &card_key.as_slice(), &revocation_id.as_slice()],
            )?;
            audit(tx, actor, Some(&station), "issued", Some(&card_number))
        })
    }

    fn mark_spoiled(&mut self, intent_id: i64, reason: &str, actor: &str) -> Result<bool> {
        check_spoil_reason(reason)?;
        check_text("actor", actor, MAX_NAME_LEN)?;
        self.write(|tx| {
            let OpenIntentRow {
                card_number,
                station,
                card_key,
            } = open_intent_for_update(tx, intent_id)?;
            tx.execute(
                "UPDATE cards SET state = 'spoiled', spoil_reason = $2 \
                 WHERE intent_id = $1 AND state = 'intent'",
                &[&intent_id, &reason],
            )?;
            audit(
                tx,
                actor,
                Some(&station),
                &format!("spoiled:{reason}"),
                Some(&card_number),
            )?;
            if card_key.is_some() {
                audit(
                    tx,
                    actor,
                    Some(&station),
                    SPOILED_AFTER_SIGNING,
                    Some(&card_number),
                )?;
            }
            Ok(card_key.is_some())
        })
    }

    fn open_intents(&self) -> Result<Vec<Intent>> {
        self.cards_where("state = $1", &"intent")?
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

    fn batch_row_done(&self, batch_id: &str, row: u64) -> Result<Option<String>> {
        let Ok(row) = i64::try_from(row) else {
            return Ok(None);
        };
        self.read(|tx| batch_row_card(tx, batch_id, row))
    }

    fn next_card_number(&mut self, prefix: &str) -> Result<String> {
        check_prefix(prefix)?;
        self.write_counting(|tx| allocate_card_number(tx, prefix))
    }

    fn acquire_lease(&mut self, desk: &str, holder: &str, ttl_secs: i64) -> Result<Lease> {
        check_text("desk", desk, MAX_DESK_LEN)?;
        check_text("holder", holder, MAX_HOLDER_LEN)?;
        let id = random_hex(16)?;
        let (at, expires_at) = lease_times(ttl_secs);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO leases (lease_id, desk, holder, acquired_at, renewed_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $4, $5)",
                &[&id, &desk, &holder, &at, &expires_at],
            )?;
            Ok(())
        })?;
        Ok(Lease {
            id,
            desk: desk.into(),
            holder: holder.into(),
            expires_at,
            released: false,
        })
    }

    fn renew_lease(&mut self, lease_id: &str, ttl_secs: i64) -> Result<i64> {
        let (at, expires_at) = lease_times(ttl_secs);
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE leases SET renewed_at = $2, expires_at = $3 \
                 WHERE lease_id = $1 AND NOT released",
                &[&lease_id, &at, &expires_at],
            )?;
            if n == 0 {
                return Err(RegistryError::LeaseGone {
                    lease_id: lease_id.into(),
                });
            }
            Ok(expires_at)
        })
    }

    fn release_lease(&mut self, lease_id: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE leases SET released = true WHERE lease_id = $1",
                &[&lease_id],
            )?;
            Ok(())
        })
    }

    fn take_over_intent(
        &mut self,
        intent_id: i64,
        from: Option<&str>,
        lease_id: &str,
    ) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE cards SET lease_id = $3 WHERE intent_id = $1 AND state = 'intent' \
                 AND lease_id IS NOT DISTINCT FROM $2",
                &[&intent_id, &from, &lease_id],
            )?;
            if let Some(from) = from {
                tx.execute(
                    "UPDATE leases SET released = true WHERE lease_id = $1",
                    &[&from],
                )?;
            }
            Ok(n == 1)
        })
    }

    fn lease(&self, lease_id: &str) -> Result<Option<Lease>> {
        self.read(|tx| {
            tx.query_opt(
                &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE lease_id = $1"),
                &[&lease_id],
            )?
            .as_ref()
            .map(lease_row)
            .transpose()
        })
    }

    fn active_leases(&self, at: i64) -> Result<Vec<Lease>> {
        self.read(|tx| {
            tx.query(
                &format!(
                    "SELECT {LEASE_COLUMNS} FROM leases \
                     WHERE NOT released AND expires_at >= $1 ORDER BY acquired_at"
                ),
                &[&at],
            )?
            .iter()
            .map(lease_row)
            .collect()
        })
    }

    fn live_card_of(&self, resident_ref: &str) -> Result<Option<CardRecord>> {
        if resident_ref.starts_with(TOMBSTONE_PREFIX) {
            return Ok(None);
        }
        self.cards_where(
            "resident_ref = $1 AND state IN ('intent', 'issued')",
            &resident_ref,
        )?
        .into_iter()
        .next()
        .map(RawCard::into_record)
        .transpose()
    }

    fn card(&self, card_number: &str) -> Result<Option<CardRecord>> {
        self.cards_where("card_number = $1", &card_number)?
            .into_iter()
            .next()
            .map(RawCard::into_record)
            .transpose()
    }

    fn card_with_key(&self, card_key: &[u8; 33]) -> Result<Option<String>> {
        self.read(|tx| {
            tx.query_opt(
                "SELECT card_number FROM cards WHERE card_key = $1",
                &[&card_key.as_slice()],
            )?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(Into::into)
        })
    }

    fn resident_attributes(&self, resident_ref: &str) -> Result<Option<Attributes>> {
        self.read(|tx| {
            if tx
                .query_opt(
                    "SELECT 1 FROM residents WHERE resident_ref = $1",
                    &[&resident_ref],
                )?
                .is_none()
            {
                return Ok(None);
            }
            tx.query(
                "SELECT attribute, value FROM resident_attributes \
                 WHERE resident_ref = $1 ORDER BY attribute",
                &[&resident_ref],
            )?
            .iter()
            .map(|r| {
                let id: i16 = r.try_get(0)?;
                let id = u8::try_from(id)
                    .ok()
                    .and_then(|id| AttributeId::new(id).ok())
                    .ok_or_else(|| RegistryError::Corrupt(format!("attribute id {id}")))?;
                Ok((id, r.try_get::<_, Vec<u8>>(1)?))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
        })
    }

    fn retained_until(&self, resident_ref: &str) -> Result<Option<i64>> {
        self.read(|tx| {
            Ok(tx
                .query_one(
                    "SELECT max(retain_until) FROM resident_attributes WHERE resident_ref = $1",
                    &[&resident_ref],
                )?
                .try_get(0)?)
        })
    }

    fn residents_with_attributes(&self) -> Result<u64> {
        self.read(|tx| {
            let n: i64 = tx
                .query_one(
                    "SELECT count(DISTINCT resident_ref) FROM resident_attributes",
                    &[],
                )?
                .try_get(0)?;
            Ok(n.unsigned_abs())
        })
    }

    fn purge_expired_attributes(&mut self, at: i64, actor: &str) -> Result<usize> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        // Most opens find nothing to erase: a read, no write transaction.
        let due = self.read(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT 1 FROM resident_attributes \
                     WHERE retain_until IS NOT NULL AND retain_until < $1 LIMIT 1",
                    &[&at],
                )?
                .is_some())
        })?;
        if !due {
            return Ok(0);
        }
        self.write(|tx| {
            let residents = tx.execute(
                "DELETE FROM residents WHERE resident_ref IN \
                 (SELECT resident_ref FROM resident_attributes \
                  WHERE retain_until IS NOT NULL AND retain_until < $1)",
                &[&at],
            )?;
            if residents > 0 {
                audit(tx, actor, None, "retention-purge", None)?;
            }
            Ok(usize::try_from(residents).unwrap_or(usize::MAX))
        })
    }

    fn forget_resident(&mut self, resident_ref: &str, actor: &str) -> Result<ForgetReport> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        if resident_ref.starts_with(TOMBSTONE_PREFIX) || resident_ref.is_empty() {
            return Err(RegistryError::UnknownResident);
        }
        self.write(|tx| {
            let cards: Vec<(i64, String, String)> = tx
                .query(
                    "SELECT intent_id, state, card_number FROM cards WHERE resident_ref = $1",
                    &[&resident_ref],
                )?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                .collect::<Result<_>>()?;
            if let Some((_, _, card_number)) = cards.iter().find(|(_, s, _)| s == "intent") {
                return Err(RegistryError::ResidentHasOpenIntent {
                    card_number: card_number.clone(),
                });
            }
            let attributes_erased = tx.execute(
                "DELETE FROM resident_attributes WHERE resident_ref = $1",
                &[&resident_ref],
            )?;
            let residents = tx.execute(
                "DELETE FROM residents WHERE resident_ref = $1",
                &[&resident_ref],
            )?;
            if residents == 0 && cards.is_empty() {
                return Err(RegistryError::UnknownResident);
            }
            for (id, _, _) in &cards {
                let tombstone = format!("{TOMBSTONE_PREFIX}{}", random_hex(16)?);
                tx.execute(
                    "UPDATE cards SET resident_ref = $2, batch_id = NULL, batch_row = NULL, \
                     replaces_card = NULL, replace_reason = NULL WHERE intent_id = $1",
                    &[id, &tombstone],
                )?;
            }
            audit(tx, actor, None, "forget", None)?;
            Ok(ForgetReport {
                attributes_erased: usize::try_from(attributes_erased).unwrap_or(usize::MAX),
                cards_unlinked: cards.len(),
                // No write-ahead log of ours to truncate: the server's WAL is
                // recycled by its checkpoints (see docs/registry-postgres.md).
                wal_truncated: false,
            })
        })
    }

    fn revoke(&mut self, card_number: &str, reason: RevocationReason, actor: &str) -> Result<()> {
        check_text("actor", actor, MAX_NAME_LEN)?;
        self.write(|tx| {
            let state: Option<String> = tx
                .query_opt(
                    "SELECT state FROM cards WHERE card_number = $1",
                    &[&card_number],
                )?
                .map(|r| r.try_get(0))
                .transpose()?;
            revoke_rule(card_number, state.as_deref())?;
            tx.execute(
                "UPDATE cards SET state = 'revoked', revoke_reason = $2, revoked_at = $3 \
                 WHERE card_number = $1 AND state = 'issued'",
                &[&card_number, &reason.as_str(), &now()],
            )?;
            audit(
                tx,
                actor,
                None,
                &format!("revoked:{reason}"),
                Some(card_number),
            )
        })
    }

    fn revoked(&self) -> Result<Vec<RevokedCard>> {
        self.read(|tx| {
            tx.query(
                "SELECT card_number, revocation_id, revoke_reason, revoked_at FROM cards \
                 WHERE state = 'revoked' ORDER BY revoked_at, intent_id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(RevokedCard {
                    card_number: r.try_get(0)?,
                    revocation_id: fixed::<8>("revocation id", r.try_get(1)?)?,
                    reason: parse_reason(r.try_get(2)?)?,
                    at: r.try_get(3)?,
                })
            })
            .collect()
        })
    }

    fn revocation_ids(&self) -> Result<Vec<[u8; 8]>> {
        self.read(|tx| {
            let mut ids = Vec::new();
            for sql in [
                "SELECT revocation_id FROM cards WHERE state = 'revoked' \
                 ORDER BY revoked_at, intent_id",
                "SELECT revocation_id FROM cards \
                 WHERE state = 'spoiled' AND revocation_id IS NOT NULL ORDER BY intent_id",
            ] {
                for r in tx.query(sql, &[])? {
                    ids.push(fixed::<8>("revocation id", r.try_get(0)?)?);
                }
            }
            Ok(ids)
        })
    }

    fn revocation_ids_for(
        &self,
        group: u8,
        as_of: citycard_proto::date::Date,
    ) -> Result<Vec<[u8; 8]>> {
        let cutoff = revocation_cutoff(group, as_of)?.to_string();
        let group = i32::from(group);
        // The cards' own revocation ids are group 0's; a card's group
        // records (`card_group_keys`) are their groups'.
        self.read(|tx| {
            tx.query(
                "SELECT revocation_id FROM cards \
                 WHERE $2 = 0 AND state IN ('revoked', 'spoiled') \
                   AND revocation_id IS NOT NULL AND expires_on >= $1::text::date \
                 UNION \
                 SELECT g.revocation_id FROM card_group_keys g JOIN cards c USING (intent_id) \
                 WHERE g.group_id = $2 AND c.state IN ('revoked', 'spoiled') \
                   AND c.expires_on >= $1::text::date \
                 ORDER BY 1",
                &[&cutoff, &group],
            )?
            .iter()
            .map(|r| fixed::<8>("revocation id", r.try_get(0)?))
            .collect()
        })
    }

    fn next_revocation_sequence(&mut self) -> Result<u32> {
        self.write_counting(|tx| {
            let value = bump_counter(tx, REVOCATION_SEQUENCE)?;
            u32::try_from(value).map_err(|_| RegistryError::CounterExhausted {
                counter: REVOCATION_SEQUENCE.into(),
            })
        })
    }

    fn record_action(&mut self, actor: &str, station: Option<&str>, action: &str) -> Result<()> {
        check_record_action(actor, station, action)?;
        self.write(|tx| audit(tx, actor, station, action, None))
    }

    fn audit_log(&self) -> Result<Vec<AuditEntry>> {
        self.audit_since(i64::MIN)
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditEntry>> {
        collect_audit(|each| self.for_each_audit_since(since, each))
    }

    fn for_each_audit_since(
        &self,
        since: i64,
        each: &mut dyn FnMut(AuditEntry) -> Result<()>,
    ) -> Result<u64> {
        // Rows stream from the server (one snapshot), never all in memory.
        self.read(|tx| {
            let mut rows = tx.query_raw(
                "SELECT seq, at, actor, station, action, card_number FROM audit \
                 WHERE at >= $1 ORDER BY seq",
                [since],
            )?;
            let mut n = 0u64;
            while let Some(r) = rows.next()? {
                each(AuditEntry {
                    seq: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    station: r.try_get(3)?,
                    action: r.try_get(4)?,
                    card_number: r.try_get(5)?,
                })?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn counts(&self) -> Result<Counts> {
        let mut c = Counts::default();
        for (_, state, n) in
            self.counts_rows("SELECT '', state, count(*) FROM cards GROUP BY state")?
        {
            add_count(&mut c, &state, n.unsigned_abs())?;
        }
        Ok(c)
    }

    fn counts_by_station(&self) -> Result<Vec<(String, Counts)>> {
        counts_per_station(self.counts_rows(
            "SELECT station, state, count(*) FROM cards GROUP BY station, state ORDER BY station",
        )?)
    }
}
