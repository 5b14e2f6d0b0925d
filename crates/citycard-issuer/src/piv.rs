//! Issuing a PIV-profile card (`applet-spec/piv-profile.md` §4): an
//! off-the-shelf PIV card or YubiKey gets a Card Authentication Key in slot
//! `9E` and a station-signed Card Authentication certificate in `5FC101`,
//! with the registry as the source of truth, as for applet cards.
//!
//! # Order of events, and what the registry holds at each point
//!
//! 1. **Checks that change nothing** — no intent yet: the configured
//!    management key is not the factory key (unless allowed); SELECT PIV and
//!    the Application Property Template lists P-256; the card does not accept
//!    the factory key (probed by a mutual authentication with it, 3DES and
//!    AES-192); mutual authentication with the city's key; the card's
//!    `5FC101` does not hold a certificate this run must not overwrite (a
//!    live card of this registry, an unknown one, or someone else's); for an
//!    operator-supplied key (`card_key`), the card proves possession of it.
//!    A refusal here ([`IssueError::Refused`]) writes **nothing**: no intent,
//!    no card number, nothing on the card. So a wrong management key or a
//!    card with the factory key leaves no trace but the error.
//! 2. **Durable intent** (card number allocated) before the first APDU that
//!    changes the card.
//! 3. GENERATE in `9E` (unless the key was supplied), proof of possession over
//!    a fresh challenge, the `9E` key and its revocation id **recorded in the
//!    intent** (durably, before anything is signed), station signature over
//!    the certificate, PUT DATA `5FC101`, read-back (GET DATA equal to what
//!    was written, a second challenge verifies).
//! 4. Commit, with the `9E` public key as the card key: revocation works as
//!    for applet cards (same revocation id function).
//!
//! A card lost mid-way leaves the intent open ([`IssueError::CardLost`]);
//! [`reconcile`] settles it against the card in the reader: a card carrying
//! this registry's certificate for the intent's card number, whose `9E` key
//! answers a challenge and is the key recorded in the intent, is committed;
//! anything else (no certificate yet, an older one, a key replaced by
//! GENERATE, another card) spoils the intent. Any other failure after the
//! intent marks it spoiled. A spoiled intent that carries a `9E` key (lost
//! after the key was recorded, so possibly after PUT DATA) keeps it, and its
//! revocation id goes on the next revocation list: the lost card may hold a
//! complete, valid certificate. A spoiled PIV card is not consumed: the same
//! card can be issued again (GENERATE replaces the key; a supplied key that
//! was recorded for a spoiled intent is refused, since it is listed).
//!
//! Nothing but the certificate's fields (issuer id, station, card number,
//! validity, the `9E` key and the age predicates that held on the issue
//! date) is written to the card: no name, birth date, address or language.

use citycard_keys::{is_factory_default, ManagementKey, SoftManagementKey};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::Certificate;
use citycard_proto::piv::{
    self, CardAuthenticationBody, CardAuthenticationCertificate, ManagementAlgorithm,
    OBJECT_CARD_AUTHENTICATION_CERTIFICATE, PIV_PREDICATES, SLOT_CARD_AUTHENTICATION,
};
use citycard_proto::{crypto, date::Date, sw::StatusWord};
use citycard_registry::{CardState, IssuanceRegistry, RegistryError, RevocationReason};
use citycard_transport::{CardChannel, CardTransport};
use p256::PublicKey;
use rand_core::CryptoRngCore;

use crate::error::IssuerError;
use crate::home::{IssuerHome, LoadedStation};
use crate::issue::{
    begin_intent, card_failed, check_station, commit, record_key, settle_open, Begun, IssueError,
    IssueRequest, Issued, Reconciled,
};
use crate::personalise::{
    CardOccupied, ManagementKeyRefusal, NotPiv, PersonaliseError, PossessionFailure,
    ReadBackMismatch,
};
use crate::resident::Resident;

/// How a PIV card is to be issued.
pub struct PivOptions<'a> {
    /// The city's management key (file or PKCS#11).
    pub management_key: &'a dyn ManagementKey,
    /// Accept the factory management key (configured, or still on the card).
    /// Test cards only.
    pub allow_default_management_key: bool,
    /// The `9E` public key, when the key pair was generated on the card by
    /// another tool; `None` generates it on the card.
    pub card_key: Option<PublicKey>,
}

/// A PIV card issued and committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PivIssued {
    /// Card number and validity.
    pub issued: Issued,
    /// The age predicates signed in the certificate.
    pub predicates: AttributeSet,
    /// `true` if the `9E` key was generated in this run, `false` if supplied.
    pub key_generated: bool,
    /// The resident's attributes that were **not** written to the card (all
    /// of them: a PIV card carries none; `resident` is implied by the
    /// certificate itself), for the operator's information.
    pub not_on_card: Vec<AttributeId>,
}

/// The age predicates that hold on `on` for someone born on `birth`
/// (a subset of [`PIV_PREDICATES`]); none without a birth date.
pub fn predicates_on(birth: Option<Date>, on: Date) -> AttributeSet {
    let Some(birth) = birth else {
        return AttributeSet::EMPTY;
    };
    let age = birth.years_until(on);
    PIV_PREDICATES
        .iter()
        .copied()
        .filter(|id| id.age_threshold().is_some_and(|t| age >= t))
        .fold(AttributeSet::EMPTY, |s, id| s.with(id))
}

fn birth_date(resident: &Resident) -> Option<Date> {
    resident
        .attributes
        .iter()
        .find(|(id, _)| *id == AttributeId::BIRTH_DATE)
        .and_then(|(_, v)| Date::from_bytes(v).ok())
}

/// Refuses the factory management key as configured (before any card is
/// touched), unless `allow`.
pub fn check_configured_key(key: &dyn ManagementKey, allow: bool) -> Result<(), IssuerError> {
    if !allow && is_factory_default(key)? {
        return Err(IssuerError::DefaultManagementKey(key.locator()));
    }
    Ok(())
}

fn expect_ok(
    step: &'static str,
    r: citycard_proto::apdu::Response,
) -> Result<Vec<u8>, PersonaliseError> {
    if r.sw == StatusWord::Success {
        Ok(r.data)
    } else {
        Err(PersonaliseError::Refused { step, sw: r.sw })
    }
}

/// SELECT PIV and check that the card lists ECC P-256.
pub fn select<T: CardTransport>(ch: &mut CardChannel<T>) -> Result<(), PersonaliseError> {
    let r = ch.exchange(&piv::select_command())?;
    if r.sw != StatusWord::Success {
        return Err(PersonaliseError::NotPiv(NotPiv::NoApplication(r.sw)));
    }
    let apt = piv::parse_application_property_template(&r.data)
        .map_err(|e| PersonaliseError::NotPiv(NotPiv::UnreadableTemplate(e)))?;
    if !apt.supports_p256() {
        return Err(PersonaliseError::NotPiv(NotPiv::NoP256));
    }
    Ok(())
}

/// What a management-key mutual authentication found.
enum Mutual {
    /// The card accepted the key and proved it knows it.
    Accepted,
    /// The card refused (wrong key, or another algorithm).
    Refused(StatusWord),
}

/// Mutual authentication with the management key (SP 800-73-4 Part 2,
/// Appendix A.1; piv-profile §4 step 2).
fn mutual_authenticate<T: CardTransport>(
    ch: &mut CardChannel<T>,
    key: &dyn ManagementKey,
    rng: &mut dyn CryptoRngCore,
) -> Result<Mutual, IssueError> {
    let alg = key.algorithm();
    let r = ch
        .exchange(&piv::management_witness_request(alg))
        .map_err(|e| IssueError::Refused(e.into()))?;
    if r.sw != StatusWord::Success {
        return Ok(Mutual::Refused(r.sw));
    }
    let witness =
        piv::parse_management_witness(&r.data, alg).map_err(|e| IssueError::Refused(e.into()))?;
    let plain = key.decrypt_block(&witness).map_err(IssuerError::from)?;
    let mut challenge = vec![0u8; alg.block_len()];
    rng.fill_bytes(&mut challenge);
    let r = ch
        .exchange(&piv::management_response_command(alg, &plain, &challenge))
        .map_err(|e| IssueError::Refused(e.into()))?;
    if r.sw != StatusWord::Success {
        return Ok(Mutual::Refused(r.sw));
    }
    let response =
        piv::parse_management_response(&r.data, alg).map_err(|e| IssueError::Refused(e.into()))?;
    let expected = key.encrypt_block(&challenge).map_err(IssuerError::from)?;
    if !crypto::mac_eq(&response, &expected) {
        return Err(IssueError::Refused(PersonaliseError::ManagementKeyRefused(
            ManagementKeyRefusal::NoProof,
        )));
    }
    Ok(Mutual::Accepted)
}

/// Signs a fresh 32-byte challenge with `9E` and checks it against `key`.
fn prove_possession<T: CardTransport>(
    ch: &mut CardChannel<T>,
    key: &PublicKey,
    rng: &mut dyn CryptoRngCore,
) -> Result<(), PersonaliseError> {
    let mut challenge = [0u8; 32];
    rng.fill_bytes(&mut challenge);
    let r = ch.exchange(&piv::sign_command(SLOT_CARD_AUTHENTICATION, &challenge))?;
    if r.sw != StatusWord::Success {
        return Err(PersonaliseError::Possession(
            PossessionFailure::NoSignature(r.sw),
        ));
    }
    let signature = piv::parse_signature(&r.data)?;
    piv::verify_challenge(key, &challenge, &signature)
        .map_err(|_| PersonaliseError::Possession(PossessionFailure::WrongKey))
}

/// The certificate in `5FC101`, if any: `Ok(None)` when the object is absent.
fn read_certificate<T: CardTransport>(
    ch: &mut CardChannel<T>,
) -> Result<Option<Vec<u8>>, PersonaliseError> {
    let r = ch.exchange(&piv::get_data_command(
        OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
    ))?;
    match r.sw {
        StatusWord::Success => Ok(Some(r.data)),
        StatusWord::FileNotFound | StatusWord::ReferencedDataNotFound => Ok(None),
        sw => Err(PersonaliseError::Refused {
            step: "GET DATA 5FC101",
            sw,
        }),
    }
}

/// A certificate of this issuer, decoded and verified with the station that
/// signed it (found by fingerprint among `stations`).
fn our_certificate(
    der: &[u8],
    issuer_id: &str,
    stations: &[Certificate],
) -> Option<CardAuthenticationCertificate> {
    let cert = CardAuthenticationCertificate::decode(der).ok()?;
    if cert.body().issuer_id != issuer_id {
        return None;
    }
    let station = stations
        .iter()
        .find(|s| s.fingerprint() == cert.body().station)?;
    cert.verify(&station.body().public_key).ok()?;
    Some(cert)
}

/// Checks the card's current `5FC101` against the registry: empty, or a
/// certificate of this registry for a card that is not live (spoiled,
/// revoked) or that this issuance replaces, may be overwritten.
fn check_overwrite<T: CardTransport>(
    ch: &mut CardChannel<T>,
    home: &IssuerHome,
    registry: &dyn IssuanceRegistry,
    resident: &Resident,
    replaces: Option<RevocationReason>,
) -> Result<(), IssueError> {
    let Some(data) = read_certificate(ch).map_err(IssueError::Refused)? else {
        return Ok(());
    };
    let occupied =
        |why: CardOccupied| Err(IssueError::Refused(PersonaliseError::CardOccupied(why)));
    let der = match piv::parse_data_object(&data).and_then(piv::parse_certificate_container) {
        Ok(der) => der,
        Err(_) if data.is_empty() => return Ok(()),
        Err(_) => return occupied(CardOccupied::NotACertificate),
    };
    let stations = home.station_certificates()?;
    let Some(cert) = our_certificate(der, &home.config().issuer_id, &stations) else {
        return occupied(CardOccupied::OtherIssuer);
    };
    let number = &cert.body().card_number;
    match registry.card(number).map_err(IssuerError::from)? {
        None => occupied(CardOccupied::UnknownCard(number.clone())),
        Some(record) => match record.state {
            CardState::Spoiled { .. } | CardState::Revoked { .. } => Ok(()),
            CardState::Issued
                if replaces.is_some()
                    && record.resident_ref.as_deref() == Some(resident.resident_id.as_str()) =>
            {
                Ok(())
            }
            CardState::Issued => occupied(CardOccupied::LiveCard(number.clone())),
            _ => occupied(CardOccupied::OpenIssuance(number.clone())),
        },
    }
}

/// The checks that change nothing on the card (module doc, step 1). On
/// success the card is selected and authenticated with the city's key.
fn preflight<T: CardTransport>(
    home: &IssuerHome,
    registry: &dyn IssuanceRegistry,
    ch: &mut CardChannel<T>,
    resident: &Resident,
    replaces: Option<RevocationReason>,
    options: &PivOptions<'_>,
    rng: &mut dyn CryptoRngCore,
) -> Result<(), IssueError> {
    select(ch).map_err(IssueError::Refused)?;
    if !options.allow_default_management_key {
        for alg in citycard_keys::FACTORY_DEFAULT_ALGORITHMS {
            let default = SoftManagementKey::factory_default(alg);
            if let Mutual::Accepted = mutual_authenticate(ch, &default, rng)? {
                return Err(IssueError::Refused(PersonaliseError::DefaultManagementKey(
                    alg,
                )));
            }
        }
    }
    if let Mutual::Refused(sw) = mutual_authenticate(ch, options.management_key, rng)? {
        return Err(IssueError::Refused(PersonaliseError::ManagementKeyRefused(
            ManagementKeyRefusal::Refused {
                locator: options.management_key.locator(),
                algorithm: options.management_key.algorithm().name(),
                sw,
            },
        )));
    }
    check_overwrite(ch, home, registry, resident, replaces)?;
    if let Some(key) = &options.card_key {
        prove_possession(ch, key, rng).map_err(IssueError::Refused)?;
        let encoded = crypto::encode_point(key);
        if let Some(number) = registry
            .card_with_key(&encoded)
            .map_err(IssuerError::from)?
        {
            return Err(IssueError::Refused(PersonaliseError::Possession(
                PossessionFailure::KeyInUse(number),
            )));
        }
    }
    Ok(())
}

/// What [`personalise_card`] wrote.
struct Written {
    card_key: PublicKey,
    container: Vec<u8>,
    certificate: CardAuthenticationCertificate,
}

/// Steps 3 of the module doc: key, possession, the key recorded
/// (`record_key`), certificate, PUT DATA.
fn personalise_card<T: CardTransport>(
    ch: &mut CardChannel<T>,
    station: &LoadedStation,
    body_of: &dyn Fn(PublicKey) -> CardAuthenticationBody,
    supplied: Option<PublicKey>,
    record_key: &mut dyn FnMut(&PublicKey) -> Result<(), RegistryError>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Written, PersonaliseError> {
    let card_key = match supplied {
        Some(key) => key,
        None => {
            let data = expect_ok(
                "GENERATE ASYMMETRIC KEY PAIR 9E",
                ch.exchange(&piv::generate_command(SLOT_CARD_AUTHENTICATION))?,
            )?;
            piv::parse_generated_public_key(&data)?
        }
    };
    // Proof of possession before anything is signed (supplied keys were
    // proven in the preflight already; once more costs one signature).
    prove_possession(ch, &card_key, rng)?;
    // Recorded in the intent before the certificate is signed, so before
    // PUT DATA: a card lost from here on may carry a valid certificate, and
    // a spoiled intent then puts this key's revocation id on the list.
    record_key(&card_key).map_err(PersonaliseError::KeyNotRecorded)?;
    let body = body_of(card_key);
    let tbs = body.to_be_signed()?;
    let signature = station
        .signer
        .sign(&tbs)
        .map_err(PersonaliseError::Signing)?;
    let certificate = CardAuthenticationCertificate::assemble(&tbs, &signature)?;
    certificate
        .verify(&station.certificate.body().public_key)
        .map_err(|_| PersonaliseError::SignatureMismatch)?;
    let container = piv::certificate_container(certificate.as_bytes());
    expect_ok(
        "PUT DATA 5FC101",
        ch.exchange(&piv::put_data_command(
            OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
            &container,
        ))?,
    )?;
    Ok(Written {
        card_key,
        container,
        certificate,
    })
}

/// Read-back (piv-profile §4 step 7): GET DATA `5FC101` returns exactly the
/// container written, and a second fresh challenge verifies.
fn read_back<T: CardTransport>(
    ch: &mut CardChannel<T>,
    written: &Written,
    rng: &mut dyn CryptoRngCore,
) -> Result<(), PersonaliseError> {
    select(ch)?;
    let data = read_certificate(ch)?.ok_or(PersonaliseError::ReadBack(
        ReadBackMismatch::CertificateAbsent,
    ))?;
    let unreadable = |e| PersonaliseError::ReadBack(ReadBackMismatch::Unreadable(e));
    let content = piv::parse_data_object(&data).map_err(unreadable)?;
    if content != written.container.as_slice() {
        return Err(PersonaliseError::ReadBack(ReadBackMismatch::ObjectDiffers));
    }
    let der = piv::parse_certificate_container(content).map_err(unreadable)?;
    if der != written.certificate.as_bytes() {
        return Err(PersonaliseError::ReadBack(
            ReadBackMismatch::CertificateDiffers,
        ));
    }
    prove_possession(ch, &written.card_key, rng)
        .map_err(|e| PersonaliseError::ReadBack(ReadBackMismatch::SecondChallenge(Box::new(e))))
}

/// Identifies the PIV card in the reader: its card number and `9E` key, if
/// it carries a certificate of this issuer (verified with the station that
/// signed it) and its `9E` key answers a fresh challenge. `Ok(None)` for any
/// other card.
pub fn identify<T: CardTransport>(
    ch: &mut CardChannel<T>,
    issuer_id: &str,
    stations: &[Certificate],
    rng: &mut dyn CryptoRngCore,
) -> Result<Option<(String, PublicKey)>, PersonaliseError> {
    if select(ch).is_err() {
        return Ok(None);
    }
    let Some(data) = read_certificate(ch).ok().flatten() else {
        return Ok(None);
    };
    let Ok(der) = piv::parse_data_object(&data).and_then(piv::parse_certificate_container) else {
        return Ok(None);
    };
    let Some(cert) = our_certificate(der, issuer_id, stations) else {
        return Ok(None);
    };
    let key = cert.body().card_key;
    match prove_possession(ch, &key, rng) {
        Ok(()) => Ok(Some((cert.body().card_number.clone(), key))),
        Err(PersonaliseError::Transport(e)) => Err(e.into()),
        Err(_) => Ok(None),
    }
}

fn spoil_reason(e: &PersonaliseError) -> &'static str {
    match e {
        PersonaliseError::Possession(_) => "possession",
        PersonaliseError::ReadBack(_) => "read-back",
        PersonaliseError::Refused { .. } => "card-refused",
        PersonaliseError::Signing(_) | PersonaliseError::SignatureMismatch => "signing",
        _ => "protocol",
    }
}

/// Issues one PIV card to `request.resident` on the card in `ch` (module doc).
pub fn issue_one<T: CardTransport>(
    home: &IssuerHome,
    station: &LoadedStation,
    registry: &mut dyn IssuanceRegistry,
    ch: &mut CardChannel<T>,
    request: &IssueRequest<'_>,
    options: &PivOptions<'_>,
    rng: &mut dyn CryptoRngCore,
) -> Result<PivIssued, IssueError> {
    let IssueRequest {
        resident,
        actor,
        replaces,
        today,
        ..
    } = *request;
    check_station(station, today)?;
    check_configured_key(options.management_key, options.allow_default_management_key)?;
    // 1. Nothing changes before this returns.
    preflight(home, registry, ch, resident, replaces, options, rng)?;

    // 2. The durable intent, before the first APDU that writes.
    let Begun {
        intent_id,
        card_number,
        expires_on,
    } = begin_intent(home, station, registry, request)?;

    // 3. The card.
    let predicates = predicates_on(birth_date(resident), today);
    let body_of = |card_key: PublicKey| CardAuthenticationBody {
        issuer_id: home.config().issuer_id.clone(),
        station_holder: station.certificate.body().holder.clone(),
        station: station.certificate.fingerprint(),
        card_number: card_number.clone(),
        valid_from: today,
        valid_to: expires_on,
        card_key,
        predicates,
    };
    let result = personalise_card(
        ch,
        station,
        &body_of,
        options.card_key,
        &mut |key| record_key(registry, intent_id, key, actor),
        rng,
    )
    .and_then(|w| read_back(ch, &w, rng).map(|()| w));
    let issued = Issued {
        card_number: card_number.clone(),
        issued_on: today,
        expires_on,
    };
    let done = |registry: &mut dyn IssuanceRegistry, key: &PublicKey| {
        commit(registry, intent_id, key, actor)?;
        Ok(PivIssued {
            issued: issued.clone(),
            predicates,
            key_generated: options.card_key.is_none(),
            not_on_card: resident
                .attributes
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| *id != AttributeId::RESIDENT)
                .collect(),
        })
    };
    match result {
        // 4. Commit.
        Ok(w) => done(registry, &w.card_key),
        Err(error) => {
            // The PUT DATA answer may have been lost after the card stored
            // the certificate: if the card in the reader is this intent's
            // card, commit it.
            let stations = [station.certificate.clone()];
            if let Ok(Some((number, key))) = identify(ch, &home.config().issuer_id, &stations, rng)
            {
                if number == card_number {
                    return done(registry, &key);
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

/// Settles every open intent against the PIV card in the reader (if any):
/// committed if the card carries this issuer's certificate for the intent's
/// card number and its `9E` key answers a challenge; spoiled otherwise.
pub fn reconcile<T: CardTransport>(
    home: &IssuerHome,
    registry: &mut dyn IssuanceRegistry,
    ch: Option<&mut CardChannel<T>>,
    actor: &str,
    rng: &mut dyn CryptoRngCore,
) -> Result<Reconciled, IssuerError> {
    let open = registry.open_intents()?;
    reconcile_intents(home, registry, open, ch, actor, rng)
}

/// Settles the given open intents (a desk's orphans) against the PIV card
/// in the reader, as [`reconcile`] does for all of them.
pub fn reconcile_intents<T: CardTransport>(
    home: &IssuerHome,
    registry: &mut dyn IssuanceRegistry,
    open: Vec<citycard_registry::Intent>,
    ch: Option<&mut CardChannel<T>>,
    actor: &str,
    rng: &mut dyn CryptoRngCore,
) -> Result<Reconciled, IssuerError> {
    if open.is_empty() {
        return Ok(Reconciled::default());
    }
    let stations = home.station_certificates()?;
    let in_reader = match ch {
        Some(ch) => identify(ch, &home.config().issuer_id, &stations, rng)
            .ok()
            .flatten(),
        None => None,
    };
    settle_open(registry, open, in_reader.as_ref(), actor)
}

/// Parses the `9E` public key an operator gives (`--card-key-from`): a PEM
/// `PUBLIC KEY` (SubjectPublicKeyInfo, as `yubico-piv-tool -a generate -s 9e
/// -A ECCP256` prints it), P-256 only.
pub fn parse_public_key_pem(text: &str) -> Result<PublicKey, IssuerError> {
    use p256::pkcs8::DecodePublicKey as _;
    PublicKey::from_public_key_pem(text.trim()).map_err(|_| {
        IssuerError::Config(
            "not a P-256 public key in PEM (expected -----BEGIN PUBLIC KEY----- with an ECC P-256 key)"
                .into(),
        )
    })
}

/// The management-key algorithm names accepted on the command line.
pub fn management_algorithm(name: &str) -> Result<ManagementAlgorithm, IssuerError> {
    ManagementAlgorithm::from_name(name).ok_or_else(|| {
        IssuerError::Config(format!(
            "unknown management key algorithm {name:?} (3des, aes128, aes192, aes256)"
        ))
    })
}
