//! Input checks shared by every backend: names, references, card numbers,
//! audit actions, attributes, card keys. One place, so no backend can
//! accept what another refuses.

#[allow(unused_imports)]
use crate::prelude::*;

pub(crate) const MAX_REF_LEN: usize = 64;

pub(crate) const MAX_NAME_LEN: usize = 64;

pub(crate) const MAX_BATCH_ID_LEN: usize = 128;

pub(crate) const MAX_SPOIL_REASON_LEN: usize = 32;

pub(crate) const MAX_PREFIX_LEN: usize = 12;

pub(crate) const MAX_DESK_LEN: usize = 256;

pub(crate) const MAX_HOLDER_LEN: usize = 128;

pub(crate) fn check_retained(id: AttributeId) -> Result<()> {
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

/// Actions written by the registry itself with the change they record;
/// [`Registry::record_action`] cannot write them.
pub(crate) const RESERVED_ACTIONS: &[&str] = &[
    "intent",
    "card-key",
    "issued",
    "forget",
    SPOILED_AFTER_SIGNING,
];

pub(crate) const RESERVED_ACTION_PREFIXES: &[&str] = &["spoiled:", "revoked:"];

pub(crate) fn check_action(action: &str) -> Result<()> {
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

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RegistryError {
    RegistryError::InvalidInput {
        field,
        reason: reason.into(),
    }
}

/// Non-empty, at most `max` bytes, no control characters, no surrounding spaces.
pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
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

pub(crate) fn check_resident_ref(value: &str) -> Result<()> {
    check_text("resident_ref", value, MAX_REF_LEN)?;
    if value.starts_with(TOMBSTONE_PREFIX) {
        return Err(invalid(
            "resident_ref",
            format!("must not start with {TOMBSTONE_PREFIX}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_card_number(value: &str) -> Result<()> {
    AttributeId::CARD_NUMBER
        .validate_value(value.as_bytes())
        .map_err(|_| invalid("card_number", "1 to 20 ASCII letters, digits or '-'"))
}

pub(crate) fn check_spoil_reason(value: &str) -> Result<()> {
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

pub(crate) fn validate_attributes(
    attributes: &[(AttributeId, Vec<u8>)],
) -> Result<Vec<(u8, &[u8])>> {
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

/// A card key must be a compressed P-256 point and the revocation id the one
/// the protocol derives from it.
pub(crate) fn check_key_pair(card_key: &[u8; 33], revocation_id: &[u8; 8]) -> Result<()> {
    let key = citycard_proto::crypto::decode_point(card_key)
        .map_err(|_| invalid("card_key", "not a compressed P-256 point"))?;
    if citycard_proto::revocation::revocation_id(&key) != *revocation_id {
        return Err(invalid("revocation_id", "does not match the card key"));
    }
    Ok(())
}

pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(invalid("prefix", "1 to 12 ASCII letters or digits"));
    }
    Ok(())
}

/// The checked inputs of a new issuance, shared by every backend.
pub(crate) struct CheckedIssuance<'a> {
    /// Retained attributes, sorted by id.
    pub(crate) attributes: Vec<(u8, &'a [u8])>,
    /// Batch id and row as stored.
    pub(crate) batch: Option<(&'a str, i64)>,
}

/// Checks everything [`NewIssuance`] carries before any transaction starts.
pub(crate) fn check_issuance<'a>(n: &NewIssuance<'a>) -> Result<CheckedIssuance<'a>> {
    match n.card_number {
        CardNumber::Given(number) => check_card_number(number)?,
        CardNumber::Next { prefix } => check_prefix(prefix)?,
    }
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
    Ok(CheckedIssuance { attributes, batch })
}

/// Given the resident's live record (card number and state) and whether the
/// new intent replaces it, the card to revoke in the intent's transaction,
/// or the refusal.
pub(crate) fn live_card_rule(
    live: Option<(String, String)>,
    replaces: Option<RevocationReason>,
) -> Result<Option<(String, RevocationReason)>> {
    match (live, replaces) {
        (Some((card_number, state)), _) if state == "intent" => {
            Err(RegistryError::ResidentHasOpenIntent { card_number })
        }
        (Some((card_number, _)), None) => Err(RegistryError::ResidentHasLiveCard { card_number }),
        (Some((card_number, _)), Some(reason)) => Ok(Some((card_number, reason))),
        (None, _) => Ok(None),
    }
}

/// Whether a card in `state` (`None`: unknown) may be revoked.
pub(crate) fn revoke_rule(card_number: &str, state: Option<&str>) -> Result<()> {
    match state {
        None => Err(RegistryError::UnknownCard {
            card_number: card_number.into(),
        }),
        Some("revoked") => Err(RegistryError::AlreadyRevoked {
            card_number: card_number.into(),
        }),
        Some("issued") => Ok(()),
        Some(other) => Err(RegistryError::CardNotIssued {
            card_number: card_number.into(),
            state: other.into(),
        }),
    }
}

/// The open intent `intent_id` from its row (card number, station, state,
/// card key), or why it cannot change.
pub(crate) fn open_intent_rule(
    intent_id: i64,
    row: Option<(String, String, String, Option<Vec<u8>>)>,
) -> Result<OpenIntentRow> {
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

/// Whether `card_key` may be attached to an intent that has `recorded`:
/// `Ok(true)` to record it, `Ok(false)` if it already is (nothing to do).
pub(crate) fn attach_rule(open: &OpenIntentRow, card_key: &[u8; 33]) -> Result<bool> {
    match open.card_key {
        Some(recorded) if recorded == *card_key => Ok(false),
        Some(_) => Err(RegistryError::CardKeyMismatch {
            card_number: open.card_number.clone(),
        }),
        None => Ok(true),
    }
}

/// Checks the inputs of `record_action`.
pub(crate) fn check_record_action(actor: &str, station: Option<&str>, action: &str) -> Result<()> {
    check_text("actor", actor, MAX_NAME_LEN)?;
    if let Some(station) = station {
        check_text("station", station, MAX_NAME_LEN)?;
    }
    check_action(action)
}

/// Folds `(station, state, count)` rows, ordered by station, into counts per station.
pub(crate) fn counts_per_station(
    rows: impl IntoIterator<Item = (String, String, i64)>,
) -> Result<Vec<(String, Counts)>> {
    let mut out: Vec<(String, Counts)> = Vec::new();
    for (station, state, n) in rows {
        if out.last().is_none_or(|(s, _)| *s != station) {
            out.push((station.clone(), Counts::default()));
        }
        if let Some((_, c)) = out.last_mut() {
            add_count(c, &state, n.unsigned_abs())?;
        }
    }
    Ok(out)
}

/// A new lease's times: now and its expiry `ttl_secs` on (at least 1 s).
pub(crate) fn lease_times(ttl_secs: i64) -> (i64, i64) {
    let at = now();
    (at, at.saturating_add(ttl_secs.max(1)))
}

/// The intent just recorded for `n`, as `begin_intent` returns it.
pub(crate) fn new_intent(
    n: &NewIssuance<'_>,
    id: i64,
    card_number: String,
    replaces: Option<(String, RevocationReason)>,
) -> Intent {
    Intent {
        id,
        card_number,
        resident_ref: n.resident_ref.into(),
        station: n.station.into(),
        issued_on: n.issued_on,
        expires_on: n.expires_on,
        batch: n.batch.map(|(id, row)| (id.into(), row)),
        replaces,
        card_key: None,
        owner: None,
    }
}

/// Collects a streamed audit log (`stream` passes each entry on) into a vector.
pub(crate) fn collect_audit(
    stream: impl FnOnce(&mut dyn FnMut(AuditEntry) -> Result<()>) -> Result<u64>,
) -> Result<Vec<AuditEntry>> {
    let mut out = Vec::new();
    stream(&mut |e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// For the revocation list of linkability group `group` on `as_of`: the
/// first last-valid day still listed (cards that expired earlier, grace
/// included, can no longer be valid). Refuses a group past the last one.
pub(crate) fn revocation_cutoff(group: u8, as_of: Date) -> Result<Date> {
    use citycard_proto::revocation::{GROUP_COUNT, REVOCATION_GRACE_DAYS};
    if group >= GROUP_COUNT {
        return Err(invalid("group", "must be 0 to 7"));
    }
    Date::from_days_since_epoch(as_of.days_since_epoch() - i64::from(REVOCATION_GRACE_DAYS))
        .map_err(|_| invalid("as_of", "out of range"))
}

/// A group key and its revocation id.
pub(crate) type KeyPair = ([u8; 33], [u8; 8]);

/// Checks a card's group keys (1 to [`MAX_GROUP_KEYS`](crate::MAX_GROUP_KEYS),
/// each a compressed P-256 point) and pairs each with its revocation id:
/// group 0's, then the others by group.
pub(crate) fn group_key_pairs(keys: &[[u8; 33]]) -> Result<(KeyPair, Vec<KeyPair>)> {
    if keys.len() > crate::MAX_GROUP_KEYS {
        return Err(invalid("group keys", "1 to 8 card keys"));
    }
    let mut pairs = keys
        .iter()
        .map(|k| {
            let key = citycard_proto::crypto::decode_point(k)
                .map_err(|_| invalid("card_key", "not a compressed P-256 point"))?;
            Ok((*k, citycard_proto::revocation::revocation_id(&key)))
        })
        .collect::<Result<Vec<KeyPair>>>()?
        .into_iter();
    let first = pairs
        .next()
        .ok_or_else(|| invalid("group keys", "1 to 8 card keys"))?;
    Ok((first, pairs.collect()))
}

/// Refuses group keys (groups 1 and up) other than the ones recorded.
pub(crate) fn same_group_keys(
    card_number: &str,
    recorded: &[[u8; 33]],
    given: &[([u8; 33], [u8; 8])],
) -> Result<()> {
    if recorded.len() != given.len() || recorded.iter().zip(given).any(|(r, (g, _))| r != g) {
        return Err(RegistryError::CardKeyMismatch {
            card_number: card_number.to_string(),
        });
    }
    Ok(())
}
