//! Issuing one card end to end, with the registry as the source of truth:
//! intent (durable) → personalisation → read-back → commit; and reconciliation
//! of intents left open by a crash or a torn card.

use citycard_proto::attr::AttributeId;
use citycard_proto::revocation::revocation_id;
use citycard_proto::{crypto, date::Date};
use citycard_registry::{
    CardNumber, Intent, IssuanceRegistry, NewIssuance, RegistryError, RevocationReason,
};
use citycard_transport::{CardChannel, CardTransport, TransportError};
use p256::PublicKey;
use rand_core::CryptoRngCore;

use crate::error::IssuerError;
use crate::home::{IssuerHome, LoadedStation};
use crate::personalise::{
    self, CardContents, PersonaliseError, PreparationTrust, ReadBackMismatch, Station,
};
use crate::resident::Resident;

/// A card issued and committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// Its card number.
    pub card_number: String,
    /// Issue date.
    pub issued_on: Date,
    /// Expiry date.
    pub expires_on: Date,
}

/// One card to issue: for whom, by whom, and on which day.
#[derive(Clone, Copy, Debug)]
pub struct IssueRequest<'a> {
    /// The holder (validated).
    pub resident: &'a Resident,
    /// The operator, as the audit log names them.
    pub actor: &'a str,
    /// The batch id and row, when the card is issued by a batch.
    pub batch: Option<(&'a str, u64)>,
    /// `Some(reason)` to revoke the holder's live card in the same
    /// transaction (a replacement); `None` refuses a holder with a live card.
    pub replaces: Option<RevocationReason>,
    /// The station's today (UTC): the issue date.
    pub today: Date,
}

/// Why issuing one card failed. The registry is consistent in every case: the
/// intent was committed as issued (never here), marked spoiled, or never written.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Refused before touching the card (registry, station, configuration).
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// The card was lost mid-way (pulled, torn, reader gone): the intent is
    /// left open, to be reconciled against the card when it is next in the
    /// reader (the next `personalise`, or `batch --resume`).
    #[error("{error} (intent for card {card_number} left open: put the same card back and run again to reconcile)")]
    CardLost {
        /// What happened.
        error: PersonaliseError,
        /// The card number the intent had.
        card_number: String,
    },
    /// The card was refused by checks that change nothing (PIV profile:
    /// wrong or factory management key, no P-256, a certificate that must not
    /// be overwritten, a supplied key the card does not hold): no intent was
    /// written and nothing was written to the card.
    #[error("{0} (nothing written: no intent, no change to the card)")]
    Refused(PersonaliseError),
    /// The card failed; the intent was marked spoiled with `reason`.
    #[error("{error} (intent for card {card_number} marked spoiled: {reason})")]
    Card {
        /// What happened.
        error: PersonaliseError,
        /// The card number the intent had.
        card_number: String,
        /// The spoil reason recorded.
        reason: &'static str,
    },
}

impl IssueError {
    /// The card-level error, if any.
    pub fn card_error(&self) -> Option<&PersonaliseError> {
        match self {
            Self::Card { error, .. } | Self::CardLost { error, .. } | Self::Refused(error) => {
                Some(error)
            }
            Self::Issuer(_) => None,
        }
    }
}

fn spoil_reason(e: &PersonaliseError) -> &'static str {
    match e {
        PersonaliseError::Transport(TransportError::CardRemoved) => "card-removed",
        PersonaliseError::Transport(_) => "transport",
        PersonaliseError::NotACitycard(_) => "not-a-citycard",
        PersonaliseError::NotBlank(_) => "not-blank",
        PersonaliseError::NotPrepared => "not-prepared",
        PersonaliseError::WrongIssuer => "other-issuer",
        PersonaliseError::Refused { .. } => "card-refused",
        PersonaliseError::Signing(_) | PersonaliseError::SignatureMismatch => "signing",
        PersonaliseError::Protocol(_) => "protocol",
        PersonaliseError::ReadBack(_) => "read-back",
        PersonaliseError::NotPiv(_)
        | PersonaliseError::DefaultManagementKey(_)
        | PersonaliseError::ManagementKeyRefused(_)
        | PersonaliseError::CardOccupied(_) => "card-refused",
        PersonaliseError::Possession(_) => "possession",
        PersonaliseError::KeyNotRecorded(_) => "key-not-recorded",
    }
}

/// Issues one card to `request.resident` on the card in `ch`.
pub fn issue_one<T: CardTransport>(
    home: &IssuerHome,
    station: &LoadedStation,
    registry: &mut dyn IssuanceRegistry,
    ch: &mut CardChannel<T>,
    request: &IssueRequest<'_>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Issued, IssueError> {
    let IssueRequest {
        resident,
        actor,
        today,
        ..
    } = *request;
    check_station(station, today)?;
    let groups = home.config().groups;
    if groups == 0 || usize::from(groups) > citycard_registry::MAX_GROUP_KEYS {
        return Err(IssuerError::Config(format!(
            "issuer.json: groups = {groups}: 1 to {} linkability groups",
            citycard_registry::MAX_GROUP_KEYS
        ))
        .into());
    }
    // 1. The intent is durable before the first APDU.
    let Begun {
        intent_id,
        card_number,
        expires_on,
    } = begin_intent(home, station, registry, request)?;
    let mut attributes = resident.attributes.clone();
    attributes.push((AttributeId::CARD_NUMBER, card_number.as_bytes().to_vec()));
    attributes.sort_by_key(|(id, _)| *id);
    // 2. The card.
    let root = home.root_public_key()?;
    let preparers = home.preparer_certificates()?;
    let sign = |m: &[u8]| station.signer.sign(m);
    let st = Station {
        certificate: &station.certificate,
        sign: &sign,
    };
    let trust = PreparationTrust {
        root: &root,
        preparers: &preparers,
    };
    let contents = CardContents {
        attributes: &attributes,
        issue_date: today,
        valid_to: expires_on,
        groups,
    };
    let mut recorded: Option<PublicKey> = None;
    let result = personalise::personalise_recording(
        ch,
        &trust,
        &st,
        &contents,
        &mut |keys| {
            // Every group's key and revocation id, so the card can be
            // revoked in each group's list (personalise_recording checked
            // that the card answered one key per group).
            record_group_keys(registry, intent_id, keys, actor)?;
            recorded = keys.first().copied();
            Ok(())
        },
        rng,
    );
    let issued = Issued {
        card_number: card_number.clone(),
        issued_on: today,
        expires_on,
    };
    match result.map(|p| p.card_key().copied()) {
        Ok(Some(key)) => {
            commit(registry, intent_id, &key, actor)?;
            Ok(issued)
        }
        Ok(None) => Err(card_failed(
            registry,
            intent_id,
            PersonaliseError::ReadBack(ReadBackMismatch::NoGroupKey),
            card_number,
            spoil_reason,
            actor,
        )),
        Err(error) => {
            // The ACTIVATE answer may have been lost after the card committed:
            // if the card in the reader holds this intent's key, commit it.
            if let (Some(key), Ok(Some(keys))) =
                (recorded, personalise::identify(ch, &trust, &st, rng))
            {
                if keys.first() == Some(&key) {
                    commit(registry, intent_id, &key, actor)?;
                    return Ok(issued);
                }
            }
            Err(card_failed(
                registry,
                intent_id,
                error,
                card_number,
                spoil_reason,
                actor,
            ))
        }
    }
}

/// Refuses a station whose certificate is not valid on `today`.
pub(crate) fn check_station(station: &LoadedStation, today: Date) -> Result<(), IssuerError> {
    if station.certificate.is_valid_on(today) {
        return Ok(());
    }
    let b = station.certificate.body();
    Err(IssuerError::StationNotValid {
        name: station.name.clone(),
        effective: b.effective,
        expiry: b.expiry,
        today,
    })
}

/// A durable intent, written by [`begin_intent`].
pub(crate) struct Begun {
    /// The intent's id.
    pub(crate) intent_id: i64,
    /// The card number allocated to it.
    pub(crate) card_number: String,
    /// The expiry date of the card.
    pub(crate) expires_on: Date,
}

/// Allocates the next card number and writes the durable intent for it.
pub(crate) fn begin_intent(
    home: &IssuerHome,
    station: &LoadedStation,
    registry: &mut dyn IssuanceRegistry,
    request: &IssueRequest<'_>,
) -> Result<Begun, IssuerError> {
    let IssueRequest {
        resident,
        actor,
        batch,
        replaces,
        today,
    } = *request;
    let expires_on = today.add_days(home.config().card_validity_days.saturating_sub(1));
    let (_, now_unix) = crate::home::now()?;
    let intent = registry.begin_intent(&NewIssuance {
        card_number: CardNumber::Next {
            prefix: &home.config().card_number_prefix,
        },
        resident_ref: &resident.resident_id,
        station: &station.name,
        issued_on: today,
        expires_on,
        attributes: &citycard_registry::retained_attributes(&resident.attributes),
        batch,
        replaces,
        actor,
        lease: station.desk_lease.as_deref(),
        retain_until: home.retain_until(now_unix),
    })?;
    let card_number = intent.card_number;
    Ok(Begun {
        intent_id: intent.id,
        card_number,
        expires_on,
    })
}

/// Records `card_key` on the open intent, durably, before the first APDU that
/// could put a station-signed record (applet) or certificate (PIV) on the
/// card: if the card is then lost and the intent spoiled, the key's
/// revocation id goes on the next revocation list (the card may be complete
/// and genuine). For [`personalise::personalise_recording`] and the PIV flow.
pub(crate) fn record_key(
    registry: &mut dyn IssuanceRegistry,
    intent_id: i64,
    card_key: &PublicKey,
    actor: &str,
) -> Result<(), RegistryError> {
    registry.attach_card_key(
        intent_id,
        &crypto::encode_point(card_key),
        &revocation_id(card_key),
        actor,
    )
}

/// Records all of a card's group keys (`keys[g]` is group `g`'s) on the open
/// intent, durably, as [`record_key`] does for one.
pub(crate) fn record_group_keys(
    registry: &mut dyn IssuanceRegistry,
    intent_id: i64,
    keys: &[PublicKey],
    actor: &str,
) -> Result<(), RegistryError> {
    let points: Vec<[u8; 33]> = keys.iter().map(crypto::encode_point).collect();
    registry.attach_group_keys(intent_id, &points, actor)
}

/// Commits an intent as issued with `card_key` as the card key.
pub(crate) fn commit(
    registry: &mut dyn IssuanceRegistry,
    intent_id: i64,
    card_key: &PublicKey,
    actor: &str,
) -> Result<(), IssuerError> {
    registry.commit_issued(
        intent_id,
        &crypto::encode_point(card_key),
        &revocation_id(card_key),
        actor,
    )?;
    Ok(())
}

/// Settles an intent whose card failed with `error`: left open if the card
/// was lost ([`IssueError::CardLost`]), marked spoiled with `reason(&error)`
/// otherwise ([`IssueError::Card`]).
pub(crate) fn card_failed(
    registry: &mut dyn IssuanceRegistry,
    intent_id: i64,
    error: PersonaliseError,
    card_number: String,
    reason: fn(&PersonaliseError) -> &'static str,
    actor: &str,
) -> IssueError {
    if matches!(error, PersonaliseError::Transport(_)) {
        return IssueError::CardLost { error, card_number };
    }
    let reason = reason(&error);
    // An intent that carries the card key keeps it, and its revocation id
    // goes on the next revocation list.
    if let Err(e) = registry.mark_spoiled(intent_id, reason, actor) {
        return IssuerError::from(e).into();
    }
    IssueError::Card {
        error,
        card_number,
        reason,
    }
}

/// What [`reconcile`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Intents found committed on the card in the reader.
    pub committed: Vec<String>,
    /// Intents marked spoiled.
    pub spoiled: Vec<String>,
    /// Of the spoiled intents, those that carried a card key: the lost card
    /// may hold a signed record, so its revocation id goes on the next
    /// revocation list (`revocation publish`).
    pub listed: Vec<String>,
}

/// Settles every open intent (left by a crash or a lost card): committed if
/// the card in the reader (if any) is that intent's card, spoiled otherwise.
pub fn reconcile<T: CardTransport>(
    home: &IssuerHome,
    registry: &mut dyn IssuanceRegistry,
    station: &LoadedStation,
    ch: Option<&mut CardChannel<T>>,
    actor: &str,
    rng: &mut dyn CryptoRngCore,
) -> Result<Reconciled, IssuerError> {
    let open = registry.open_intents()?;
    reconcile_intents(home, registry, station, open, ch, actor, rng)
}

/// Settles the given open intents (a desk's orphans, see [`crate::desk`])
/// against the card in the reader, as [`reconcile`] does for all of them.
pub fn reconcile_intents<T: CardTransport>(
    home: &IssuerHome,
    registry: &mut dyn IssuanceRegistry,
    station: &LoadedStation,
    open: Vec<Intent>,
    ch: Option<&mut CardChannel<T>>,
    actor: &str,
    rng: &mut dyn CryptoRngCore,
) -> Result<Reconciled, IssuerError> {
    if open.is_empty() {
        return Ok(Reconciled::default());
    }
    let root = home.root_public_key()?;
    let preparers = home.preparer_certificates()?;
    let sign = |m: &[u8]| station.signer.sign(m);
    let st = Station {
        certificate: &station.certificate,
        sign: &sign,
    };
    let trust = PreparationTrust {
        root: &root,
        preparers: &preparers,
    };
    // The card in the reader, by its group-0 key (a new station session);
    // the intent that recorded that key is its intent.
    let in_reader = match ch {
        Some(ch) => personalise::identify(ch, &trust, &st, rng)
            .ok()
            .flatten()
            .and_then(|keys| {
                let key = *keys.first()?;
                let point = crypto::encode_point(&key);
                let intent = open.iter().find(|i| i.card_key == Some(point))?;
                Some((intent.id, intent.card_number.clone(), key, keys))
            }),
        None => None,
    };
    // The card is the intent's only if every group key it answers is the
    // one recorded (a card of the same group-0 key and other group keys is
    // not the card that was issued).
    let in_reader = match in_reader {
        Some((id, number, key, keys)) => {
            let recorded = registry.group_keys(id)?;
            let answered: Vec<[u8; 33]> = keys.iter().skip(1).map(crypto::encode_point).collect();
            (recorded == answered).then_some((number, key))
        }
        None => None,
    };
    settle_open(registry, open, in_reader.as_ref(), actor)
}

/// Settles the `open` intents against the card in the reader (its card
/// number and card key, if it was identified): the intent for its card
/// number is committed — if the intent recorded a card key, only when the
/// card's key is that one — and every other one spoiled (`open-at-restart`).
/// A spoiled intent that carried a card key keeps it, and its revocation id
/// goes on the next revocation list (reported in [`Reconciled::listed`]).
pub(crate) fn settle_open(
    registry: &mut dyn IssuanceRegistry,
    open: Vec<Intent>,
    in_reader: Option<&(String, PublicKey)>,
    actor: &str,
) -> Result<Reconciled, IssuerError> {
    let mut report = Reconciled::default();
    for intent in open {
        let same_card = in_reader.filter(|(number, key)| {
            *number == intent.card_number
                && intent
                    .card_key
                    .is_none_or(|recorded| recorded == crypto::encode_point(key))
        });
        match same_card {
            Some((_, key)) => {
                commit(registry, intent.id, key, actor)?;
                report.committed.push(intent.card_number);
            }
            None => {
                if registry.mark_spoiled(intent.id, "open-at-restart", actor)? {
                    report.listed.push(intent.card_number.clone());
                }
                report.spoiled.push(intent.card_number);
            }
        }
    }
    Ok(report)
}
