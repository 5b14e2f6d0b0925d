//! [`verify`]: one tap, from a connected card to a [`Verdict`] (SPEC §8).

use citycard_proto::auth::{Disclosure, ReaderSession};
use citycard_proto::consts::{cla, ins, LifeCycle};
use citycard_proto::fci;
use citycard_proto::{
    apdu::Command, attr::AttributeId, attr::AttributeSet, error::Error as ProtoError,
    sw::StatusWord,
};
use citycard_transport::{CardChannel, CardTransport, ChannelConfig, TransportError};
use rand_core::CryptoRngCore;

use crate::verdict::{CardProfile, Genuine};
use crate::{Policy, StalePolicy, Trust, Verdict};

/// Largest response data [`verify`] accepts for one command (all GET RESPONSE
/// rounds together). The largest legitimate answer (every attribute at its
/// maximum length) is under 2 KiB.
pub const MAX_RESPONSE_LEN: usize = 4096;
/// Most GET RESPONSE commands [`verify`] sends for one command.
pub const MAX_GET_RESPONSE: usize = 16;

/// Verifies the card on `channel` (SPEC §8) and returns the verdict.
///
/// 1. SELECT: `6A82` (or anything but a citycard FCI) → [`Verdict::NotACitycard`];
///    `6283` → [`Verdict::Terminated`]; life cycle not issued → [`Verdict::Blank`].
/// 2. GENERAL AUTHENTICATE with a fresh ephemeral key from `rng`. An answer
///    whose tag fails is a decoy (the card refuses, or does not know us yet):
///    PSO: VERIFY CERTIFICATE with the reader certificate (`9000` expected),
///    then GENERAL AUTHENTICATE again with a new ephemeral key. (With
///    [`Policy::always_send_certificate`], PSO comes first.) A second decoy:
///    the reason is found locally — [`Verdict::Unauthorised`],
///    [`Verdict::CredentialExpired`] — or [`Verdict::CardRefused`] (another
///    city's card, or one without this group's record).
/// 3. Opens the answer: length ([`Verdict::Tampered`]), echo
///    ([`Verdict::Replay`]), record of this group ([`Verdict::Tampered`]), card
///    MAC ([`Verdict::Clone`]), entries ([`Verdict::Tampered`]); station in the
///    bundle by its station reference ([`Verdict::UnknownIssuer`]), valid on
///    valid-from ([`Verdict::StationNotValidAtIssue`]), record signature and
///    lifetime ([`Verdict::BadIssuerSignature`]); card validity
///    ([`Verdict::Expired`], [`Verdict::NotYetValid`]); revocation
///    ([`Verdict::Revoked`]); list freshness ([`Verdict::RevocationListStale`]
///    or a flag, per [`StalePolicy`]).
///
/// The channel's limits are tightened to [`MAX_RESPONSE_LEN`] and
/// [`MAX_GET_RESPONSE`] for the call (and restored after), so a card that
/// answers `61xx` forever or floods data gets a verdict, not a hang. Nothing
/// the card sends can make this panic.
///
/// The card is left selected; the caller decides how to disconnect.
pub fn verify<T: CardTransport>(
    channel: &mut CardChannel<T>,
    trust: &Trust,
    policy: &Policy,
    rng: &mut impl CryptoRngCore,
) -> Verdict {
    let saved = channel.config().clone();
    {
        let config: &mut ChannelConfig = channel.config_mut();
        config.max_response_len = config.max_response_len.min(MAX_RESPONSE_LEN);
        config.max_get_response = config.max_get_response.min(MAX_GET_RESPONSE);
    }
    let verdict = match run(channel, trust, policy, rng) {
        Ok(v) | Err(v) => v,
    };
    *channel.config_mut() = saved;
    verdict
}

/// Runs [`verify`] on tokio's blocking pool: the transport (e.g. a PC/SC
/// card handle, whose calls block) moves into the blocking task and comes
/// back with the verdict, so runtime threads never block.
///
/// `trust` is shared (`Arc`) so that many readers can verify at once; the
/// random generator is the operating system's.
///
/// # Errors
///
/// A [`tokio::task::JoinError`] only if the blocking task panicked or was
/// cancelled (the runtime shutting down); the channel is lost then.
#[cfg(feature = "tokio")]
pub async fn verify_async<T>(
    mut channel: CardChannel<T>,
    trust: std::sync::Arc<Trust>,
    policy: Policy,
) -> Result<(Verdict, CardChannel<T>), tokio::task::JoinError>
where
    T: CardTransport + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let verdict = verify(&mut channel, &trust, &policy, &mut rand_core::OsRng);
        (verdict, channel)
    })
    .await
}

/// The procedure; `Err` carries an early verdict.
fn run<T: CardTransport>(
    channel: &mut CardChannel<T>,
    trust: &Trust,
    policy: &Policy,
    rng: &mut impl CryptoRngCore,
) -> Result<Verdict, Verdict> {
    let grants = trust.credential().certificate().body().grants;
    let requested = policy.requested.unwrap_or(grants);
    // 1. SELECT. No citycard application: perhaps a PIV card (piv-profile.md §5).
    if select_citycard(channel)? == Selected::NotCitycard {
        return crate::piv::run(channel, trust, policy, rng, requested);
    }
    // 2–3d. GENERAL AUTHENTICATE (PSO when the card answers a decoy), then
    // length, tag, echo, record, card MAC, entries.
    let disclosure = authenticate(channel, trust, policy, requested, rng)?;
    // 3e–3f. The issuer, validity, revocation, freshness.
    let standing = check_record(trust, policy, &disclosure)?;
    // 4. Only now expose what was disclosed, and nothing else.
    Ok(Verdict::Genuine(genuine(
        &disclosure,
        requested,
        grants,
        &standing,
    )))
}

/// What SELECT found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Selected {
    /// An issued citycard application.
    IssuedCitycard,
    /// No citycard application (perhaps a PIV card).
    NotCitycard,
}

/// Step 1: SELECT and the life cycle; a terminated or unissued card is a verdict.
fn select_citycard<T: CardTransport>(channel: &mut CardChannel<T>) -> Result<Selected, Verdict> {
    let answer = send(channel, &fci::select_command())?;
    match answer.sw {
        StatusWord::Success => {}
        StatusWord::SelectedFileDeactivated => return Err(Verdict::Terminated),
        _ => return Ok(Selected::NotCitycard),
    }
    match fci::life_cycle(&answer.data) {
        Some(LifeCycle::Issued) => Ok(Selected::IssuedCitycard),
        Some(LifeCycle::Terminated) => Err(Verdict::Terminated),
        Some(_) => Err(Verdict::Blank),
        None => Ok(Selected::NotCitycard),
    }
}

/// Steps 2–3d: GENERAL AUTHENTICATE, with PSO first (policy) or when the
/// card answers a decoy; the opened disclosure, or the verdict it earns.
fn authenticate<T: CardTransport>(
    channel: &mut CardChannel<T>,
    trust: &Trust,
    policy: &Policy,
    requested: AttributeSet,
    rng: &mut impl CryptoRngCore,
) -> Result<Disclosure, Verdict> {
    let credential = trust.credential();
    let cert = credential.certificate();
    let pso = Command::new(cla::ISO, ins::PSO, 0x00, 0xBE).with_data(cert.as_bytes().to_vec());
    let send_certificate = |channel: &mut CardChannel<T>| match send(channel, &pso)?.sw {
        StatusWord::Success => Ok(()),
        sw => Err(unexpected(sw)),
    };
    let mut certificate_sent = false;
    if policy.always_send_certificate {
        send_certificate(channel)?;
        certificate_sent = true;
    }
    let fingerprint = cert.fingerprint();
    let mut tap =
        |channel: &mut CardChannel<T>| -> Result<Result<Disclosure, ProtoError>, Verdict> {
            let session = ReaderSession::new(rng, fingerprint, requested, policy.today);
            let response = send(channel, &session.command())?;
            if response.sw != StatusWord::Success {
                return Err(unexpected(response.sw));
            }
            Ok(session.open(&response.data, credential.key(), credential.group()))
        };
    let mut opened = tap(channel)?;
    if opened.as_ref().err() == Some(&ProtoError::Decoy) && !certificate_sent {
        send_certificate(channel)?;
        opened = tap(channel)?;
    }
    opened.map_err(|e| match e {
        ProtoError::Decoy => refusal(trust, policy, requested),
        ProtoError::TranscriptMismatch => Verdict::Replay,
        ProtoError::BadMac => Verdict::Clone,
        other => Verdict::Tampered {
            detail: other.to_string(),
        },
    })
}

/// Steps 3e–3f: the station (known by its reference in the reader's group,
/// valid on valid-from, lifetime, signature), then validity, revocation and
/// freshness of the list.
fn check_record(
    trust: &Trust,
    policy: &Policy,
    disclosure: &Disclosure,
) -> Result<Standing, Verdict> {
    let record = &disclosure.record;
    let body = record.body();
    let station = trust
        .bundle()
        .station_by_reference(trust.credential().group(), &body.station_ref)
        .ok_or(Verdict::UnknownIssuer)?;
    issuer_and_standing(
        trust,
        policy,
        Issued {
            station: &station.fingerprint(),
            valid_from: body.valid_from,
            valid_to: body.valid_to,
            revocation_id: &record.revocation_id(),
        },
        |station| {
            if body.lifetime_allowed() {
                record.verify(station)
            } else {
                Err(ProtoError::BadValue(0x84))
            }
        },
    )
}

/// Step 4: the genuine verdict, with only what was requested, granted and
/// disclosed.
fn genuine(
    disclosure: &Disclosure,
    requested: AttributeSet,
    grants: AttributeSet,
    standing: &Standing,
) -> Genuine {
    let attributes: Vec<(AttributeId, Vec<u8>)> = disclosure
        .present()
        .filter(|(id, _)| requested.contains(*id) && grants.contains(*id))
        .map(|(id, v)| (id, v.to_vec()))
        .collect();
    let card_number = attributes
        .iter()
        .find(|(id, _)| *id == AttributeId::CARD_NUMBER)
        .and_then(|(_, v)| String::from_utf8(v.clone()).ok());
    let predicates = requested
        .iter()
        .filter(|id| id.age_threshold().is_some())
        .map(|id| {
            let answer = disclosure
                .predicates
                .and_then(|p| p.answered.contains(id).then_some(p.holds.contains(id)));
            (id, answer)
        })
        .collect();
    Genuine {
        attributes,
        pseudonym: disclosure.pseudonym,
        predicates,
        card_number,
        expires: disclosure.record.body().valid_to,
        revocation_age_secs: standing.revocation_age_secs,
        revocation_stale: standing.revocation_stale,
        profile: CardProfile::Citycard,
    }
}

/// How the card stands today against its validity and the revocation list.
pub(crate) struct Standing {
    /// Age of the revocation list, seconds.
    pub(crate) revocation_age_secs: u64,
    /// The list is stale and the policy accepted that.
    pub(crate) revocation_stale: bool,
}

/// What the issuer signed about a card, as every profile states it.
pub(crate) struct Issued<'a> {
    /// Fingerprint of the signing station's certificate.
    pub(crate) station: &'a [u8; citycard_proto::cert::FINGERPRINT_LEN],
    /// First valid day (the issue date).
    pub(crate) valid_from: citycard_proto::date::Date,
    /// Last valid day.
    pub(crate) valid_to: citycard_proto::date::Date,
    /// The card's revocation id.
    pub(crate) revocation_id: &'a citycard_proto::revocation::RevocationId,
}

/// The same checks for every profile, in order: the station is in the
/// bundle ([`Verdict::UnknownIssuer`]) and was valid on the issue date
/// ([`Verdict::StationNotValidAtIssue`]), `signed_by` accepts its key
/// ([`Verdict::BadIssuerSignature`]); then validity ([`Verdict::Expired`],
/// [`Verdict::NotYetValid`]), revocation ([`Verdict::Revoked`]) and list
/// freshness.
pub(crate) fn issuer_and_standing(
    trust: &Trust,
    policy: &Policy,
    issued: Issued<'_>,
    signed_by: impl FnOnce(&p256::PublicKey) -> Result<(), ProtoError>,
) -> Result<Standing, Verdict> {
    let Issued {
        station,
        valid_from,
        valid_to,
        revocation_id,
    } = issued;
    let station = trust
        .bundle()
        .station(station)
        .ok_or(Verdict::UnknownIssuer)?;
    if !station.is_valid_on(valid_from) {
        return Err(Verdict::StationNotValidAtIssue);
    }
    signed_by(&station.body().public_key).map_err(|_| Verdict::BadIssuerSignature)?;
    if policy.today > valid_to {
        return Err(Verdict::Expired { on: valid_to });
    }
    if policy.today < valid_from {
        return Err(Verdict::NotYetValid { from: valid_from });
    }
    let revocations = &trust.bundle().body().revocations;
    let list = revocations.body();
    if revocations.is_revoked(revocation_id) {
        return Err(Verdict::Revoked);
    }
    let stale = policy.now_unix > list.next_update.saturating_add(policy.grace_secs);
    if stale && policy.stale == StalePolicy::Reject {
        return Err(Verdict::RevocationListStale {
            next_update: list.next_update,
        });
    }
    Ok(Standing {
        revocation_age_secs: policy.now_unix.saturating_sub(list.issued_at),
        revocation_stale: stale,
    })
}

/// Sends one command; transport failures become verdicts.
pub(crate) fn send<T: CardTransport>(
    channel: &mut CardChannel<T>,
    cmd: &Command,
) -> Result<citycard_proto::apdu::Response, Verdict> {
    channel.exchange(cmd).map_err(|e| match e {
        TransportError::CardRemoved => Verdict::CardRemoved,
        TransportError::ResponseTooLong { .. } | TransportError::TooManyGetResponse { .. } => {
            Verdict::Tampered {
                detail: e.to_string(),
            }
        }
        other => Verdict::TransportError(other.into()),
    })
}

/// A status word the procedure does not list: the card misbehaves.
pub(crate) fn unexpected(sw: StatusWord) -> Verdict {
    Verdict::Tampered {
        detail: format!("unexpected status word {sw}"),
    }
}

/// Why the card refused us, found locally (the card answers a decoy whatever
/// the reason, SPEC §6.10, §10.9).
pub(crate) fn refusal(trust: &Trust, policy: &Policy, requested: AttributeSet) -> Verdict {
    let cert = trust.credential().certificate();
    let not_granted = requested.difference(cert.body().grants);
    if !not_granted.is_empty() {
        return Verdict::Unauthorised { not_granted };
    }
    if !cert.is_valid_on(policy.today) {
        return Verdict::CredentialExpired {
            effective: cert.body().effective,
            expiry: cert.body().expiry,
        };
    }
    Verdict::CardRefused
}
