//! Mapping between the SQLite `cards` rows and the registry's values.

#[allow(unused_imports)]
use crate::prelude::*;

pub(crate) const CARD_COLUMNS: &str = "intent_id, card_number, resident_ref, station, issued_on, \
    expires_on, state, card_key, revocation_id, spoil_reason, revoke_reason, revoked_at, \
    batch_id, batch_row, replaces_card, replace_reason, lease_id, created_at";

pub(crate) fn parse_date(text: &str) -> Result<Date> {
    Date::parse_iso(text).map_err(|_| RegistryError::Corrupt(format!("bad date {text:?}")))
}

pub(crate) fn parse_reason(text: &str) -> Result<RevocationReason> {
    text.parse()
        .map_err(|_| RegistryError::Corrupt(format!("bad revocation reason {text:?}")))
}

pub(crate) fn fixed<const N: usize>(what: &str, bytes: Vec<u8>) -> Result<[u8; N]> {
    <[u8; N]>::try_from(bytes).map_err(|_| RegistryError::Corrupt(format!("bad {what} length")))
}

/// An open intent, read for a state change.
pub(crate) struct OpenIntentRow {
    pub(crate) card_number: String,
    pub(crate) station: String,
    pub(crate) card_key: Option<[u8; 33]>,
}

/// A `cards` row as stored.
pub(crate) struct RawCard {
    pub(crate) intent_id: i64,
    pub(crate) card_number: String,
    pub(crate) resident_ref: String,
    pub(crate) station: String,
    pub(crate) issued_on: String,
    pub(crate) expires_on: String,
    pub(crate) state: String,
    pub(crate) card_key: Option<Vec<u8>>,
    pub(crate) revocation_id: Option<Vec<u8>>,
    pub(crate) spoil_reason: Option<String>,
    pub(crate) revoke_reason: Option<String>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) batch_id: Option<String>,
    pub(crate) batch_row: Option<i64>,
    pub(crate) replaces_card: Option<String>,
    pub(crate) replace_reason: Option<String>,
    pub(crate) lease_id: Option<String>,
    pub(crate) created_at: i64,
}

impl RawCard {
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            intent_id: r.get(0)?,
            card_number: r.get(1)?,
            resident_ref: r.get(2)?,
            station: r.get(3)?,
            issued_on: r.get(4)?,
            expires_on: r.get(5)?,
            state: r.get(6)?,
            card_key: r.get(7)?,
            revocation_id: r.get(8)?,
            spoil_reason: r.get(9)?,
            revoke_reason: r.get(10)?,
            revoked_at: r.get(11)?,
            batch_id: r.get(12)?,
            batch_row: r.get(13)?,
            replaces_card: r.get(14)?,
            replace_reason: r.get(15)?,
            lease_id: r.get(16)?,
            created_at: r.get(17)?,
        })
    }

    pub(crate) fn batch(&self) -> Result<Option<(String, u64)>> {
        match (&self.batch_id, self.batch_row) {
            (Some(id), Some(row)) => {
                let row = u64::try_from(row)
                    .map_err(|_| RegistryError::Corrupt("negative batch row".into()))?;
                Ok(Some((id.clone(), row)))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn replaces(&self) -> Result<Option<(String, RevocationReason)>> {
        match (&self.replaces_card, &self.replace_reason) {
            (Some(card), Some(reason)) => Ok(Some((card.clone(), parse_reason(reason)?))),
            _ => Ok(None),
        }
    }

    pub(crate) fn into_intent(self, owner: Option<Lease>) -> Result<Intent> {
        let card_key = self
            .card_key
            .clone()
            .map(|k| fixed::<33>("card key", k))
            .transpose()?;
        Ok(Intent {
            card_key,
            id: self.intent_id,
            batch: self.batch()?,
            replaces: self.replaces()?,
            issued_on: parse_date(&self.issued_on)?,
            expires_on: parse_date(&self.expires_on)?,
            card_number: self.card_number,
            resident_ref: self.resident_ref,
            station: self.station,
            owner,
        })
    }

    pub(crate) fn into_record(self) -> Result<CardRecord> {
        let state = match self.state.as_str() {
            "intent" => CardState::Intent,
            "issued" => CardState::Issued,
            "spoiled" => CardState::Spoiled {
                reason: self.spoil_reason.clone().unwrap_or_default(),
            },
            "revoked" => CardState::Revoked {
                reason: parse_reason(self.revoke_reason.as_deref().unwrap_or_default())?,
                at: self.revoked_at.unwrap_or_default(),
            },
            other => return Err(RegistryError::Corrupt(format!("bad state {other:?}"))),
        };
        let card_key = self
            .card_key
            .clone()
            .map(|k| fixed::<33>("card key", k))
            .transpose()?;
        let revocation_id = self
            .revocation_id
            .clone()
            .map(|k| fixed::<8>("revocation id", k))
            .transpose()?;
        Ok(CardRecord {
            intent_id: self.intent_id,
            batch: self.batch()?,
            replaces: self.replaces()?,
            issued_on: parse_date(&self.issued_on)?,
            expires_on: parse_date(&self.expires_on)?,
            resident_ref: (!self.resident_ref.starts_with(TOMBSTONE_PREFIX))
                .then_some(self.resident_ref),
            card_number: self.card_number,
            station: self.station,
            state,
            card_key,
            revocation_id,
            created_at: self.created_at,
        })
    }
}
