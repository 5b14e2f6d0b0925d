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
