//! Preparation and personalisation of one card through any transport (PC/SC
//! reader or in-memory card), SPEC §6.3–§6.8: the card proves it was prepared
//! by this city (its preparation certificate chains to a preparer the root
//! certified, and it opens the secure channel with the certified key), the
//! station signs one record per linkability group, and the card's sealed
//! issuance check value replaces a read-back.
//!
//! Signing is handed to the caller (`sign` closures), so the station and
//! preparer keys may live in files or in an HSM without changing this code.

use citycard_keys::KeyError;
use citycard_proto::apdu::Command;
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{cla, ins, LifeCycle};
use citycard_proto::crypto::{self, OpCount};
use citycard_proto::fci;
use citycard_proto::limits::{MAX_CHAINED_DATA, MAX_GROUPS};
use citycard_proto::pers::{
    self, CardAuthAnswer, Prepare, SecureChannel, StationAuth, CHALLENGE_LEN,
};
use citycard_proto::record::{self, GroupRecord, RecordBody, StoredValue, SEED_LEN};
use citycard_proto::{date::Date, sw::StatusWord};
use citycard_registry::RegistryError;
use citycard_transport::{CardChannel, CardTransport, TransportError};
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;

/// A signing function: ECDSA P-256/SHA-256 over the message, raw r‖s. Key
/// errors keep their type (a locked PKCS#11 token is a key problem, not a card
/// problem).
pub type SignFn<'a> = dyn Fn(&[u8]) -> Result<[u8; 64], KeyError> + 'a;

/// Called with a card's keys before anything signed reaches the card; an
/// error stops personalisation ([`PersonaliseError::KeyNotRecorded`]).
pub type RecordKeysFn<'a> = dyn FnMut(&[PublicKey]) -> Result<(), RegistryError> + 'a;

/// Why personalising or checking a card failed.
#[derive(Debug, thiserror::Error)]
pub enum PersonaliseError {
    /// The transport failed (includes the card being pulled: `CardRemoved`).
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The card does not have the citycard application.
    #[error("not a citycard (SELECT answered {0})")]
    NotACitycard(StatusWord),
    /// The card is not prepared: blank (prepare it first), issued or terminated.
    #[error("the card is not prepared (life cycle: {})", .0.name())]
    NotBlank(LifeCycle),
    /// The card's preparation certificate does not chain to one of the
    /// city's preparers (a software card, a phone, another city's card).
    #[error("not prepared by this city")]
    NotPrepared,
    /// The card refused the station certificate: it is anchored to another city's root.
    #[error("the card refused this city's station certificate (anchored to another issuer?)")]
    WrongIssuer,
    /// The card refused a step.
    #[error("the card refused {step}: {sw}")]
    Refused {
        /// The step.
        step: &'static str,
        /// Its answer.
        sw: StatusWord,
    },
    /// The station (or preparer) key could not sign.
    #[error("signing failed: {0}")]
    Signing(#[source] KeyError),
    /// The station key signed, but the signature does not verify with the
    /// station certificate's public key (the key and certificate do not match).
    #[error("signing failed: the station signature does not verify with its certificate")]
    SignatureMismatch,
    /// Host-side protocol error (malformed card answer, bad input).
    #[error("protocol: {0}")]
    Protocol(#[from] citycard_proto::error::Error),
    /// Not a usable PIV card: no PIV application, or no ECC P-256.
    #[error("not a usable PIV card: {0}")]
    NotPiv(NotPiv),
    /// The PIV card still accepts the public factory management key.
    #[error("the card still accepts the factory management key ({} 0102030405060708 x3): anyone could rewrite it. Set the city's own key first (yubico-piv-tool -a set-mgm-key -n <new key>), or pass --allow-default-management-key for test cards", .0.name())]
    DefaultManagementKey(citycard_proto::piv::ManagementAlgorithm),
    /// The PIV card refused the city's management key.
    #[error("{0}")]
    ManagementKeyRefused(ManagementKeyRefusal),
    /// The PIV card holds a certificate that this issuance must not overwrite.
    #[error("the card is in use: {0}")]
    CardOccupied(CardOccupied),
    /// The key in slot 9E did not prove possession of the expected public key.
    #[error("proof of possession failed: {0}")]
    Possession(PossessionFailure),
    /// The card's issuance check value (or a reconciliation) does not match
    /// what the station sent.
    #[error("read-back check failed: {0}")]
    ReadBack(ReadBackMismatch),
    /// The card's key could not be recorded before the signed record was
    /// written (the registry refused or failed): nothing signed was sent.
    #[error("the card key could not be recorded: {0}")]
    KeyNotRecorded(#[source] RegistryError),
}

/// Why a card is not a usable PIV card.
#[derive(Debug, thiserror::Error)]
pub enum NotPiv {
    /// SELECT of the PIV application failed.
    #[error("no PIV application (SELECT answered {0})")]
    NoApplication(StatusWord),
    /// The SELECT answer could not be read.
    #[error("unreadable Application Property Template: {0}")]
    UnreadableTemplate(#[source] citycard_proto::error::Error),
    /// The card does not offer ECC P-256.
    #[error(
        "the card does not list ECC P-256 (mechanism 11) in its Application Property Template"
    )]
    NoP256,
}

/// Why the city's management key was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ManagementKeyRefusal {
    /// The card answered the witness but its answer to our challenge is wrong.
    #[error("the card accepted the witness but did not prove it knows the key")]
    NoProof,
    /// The card refused the key.
    #[error(
        "the card refused the management key {locator} ({algorithm}; {sw}): wrong key or algorithm"
    )]
    Refused {
        /// Where the key lives (file path or PKCS#11 URI; never the key).
        locator: String,
        /// The key's algorithm name.
        algorithm: &'static str,
        /// The card's answer.
        sw: StatusWord,
    },
}

/// What a PIV card already holds that this issuance must not overwrite.
#[derive(Debug, thiserror::Error)]
pub enum CardOccupied {
    /// Object 5FC101 holds something else.
    #[error("object 5FC101 holds something that is not a certificate")]
    NotACertificate,
    /// Another issuer certified slot 9E.
    #[error("slot 9E is certified by someone else (object 5FC101 holds another certificate); clear it first (yubico-piv-tool -a delete-certificate -s 9e) if the card is the city's")]
    OtherIssuer,
    /// A certificate of this city for a card the registry does not know.
    #[error("it carries card {0}, which this registry does not know")]
    UnknownCard(String),
    /// A live card.
    #[error(
        "it is live card {0}; revoke it (or use --replace for its holder) before reusing the card"
    )]
    LiveCard(String),
    /// A card whose issuance is still open.
    #[error("it carries card {0}, whose issuance is still open; reconcile first")]
    OpenIssuance(String),
}

/// Why slot 9E did not prove possession of the expected key.
#[derive(Debug, thiserror::Error)]
pub enum PossessionFailure {
    /// The card refused to sign.
    #[error("slot 9E did not sign a challenge ({0})")]
    NoSignature(StatusWord),
    /// The signature does not verify with the expected key.
    #[error("the key in slot 9E is not the public key given: its signature does not verify")]
    WrongKey,
    /// The key is already the key of another card in the registry.
    #[error("this 9E key already belongs to card {0}; generate a new one")]
    KeyInUse(String),
}

/// What the read-back (or the issuance check value) found different.
#[derive(Debug, thiserror::Error)]
pub enum ReadBackMismatch {
    /// The card answered no group key.
    #[error("the card answered no group key")]
    NoGroupKey,
    /// The card's issuance check value differs from the one computed over what was sent.
    #[error("the card's issuance check value differs from what was sent")]
    CheckValue,
    /// PIV: object 5FC101 is absent after PUT DATA.
    #[error("object 5FC101 is absent")]
    CertificateAbsent,
    /// PIV: the GET DATA answer or the container could not be read.
    #[error("unreadable object 5FC101: {0}")]
    Unreadable(#[source] citycard_proto::error::Error),
    /// PIV: the object differs from what was written.
    #[error("object 5FC101 differs from what was written")]
    ObjectDiffers,
    /// PIV: the certificate differs from what was written.
    #[error("the certificate differs from what was written")]
    CertificateDiffers,
    /// PIV: the second challenge failed.
    #[error("second challenge: {0}")]
    SecondChallenge(#[source] Box<PersonaliseError>),
}

/// What the station needs to personalise.
pub struct Station<'a> {
    /// The station's root-signed certificate.
    pub certificate: &'a Certificate,
    /// Signs with the station key.
    pub sign: &'a SignFn<'a>,
}

/// What a station trusts to recognise cards prepared by its city.
pub struct PreparationTrust<'a> {
    /// The root public key.
    pub root: &'a PublicKey,
    /// The city's preparer certificates (role 03, signed by the root).
    pub preparers: &'a [Certificate],
}

/// A preparer (the city's preparation facility).
pub struct Preparer<'a> {
    /// The city's issuer id.
    pub issuer: &'a str,
    /// The root public key installed as the card's anchor.
    pub root: &'a PublicKey,
    /// The preparer's root-signed certificate (role 03).
    pub certificate: &'a Certificate,
    /// Signs with the preparer key.
    pub sign: &'a SignFn<'a>,
    /// The preparation batch (holder reference of the card's certificate).
    pub batch: &'a str,
}

/// A successfully personalised card.
#[derive(Clone, Debug)]
pub struct Personalised {
    /// The card's group public keys (generated on the card), group 0 first.
    pub group_keys: Vec<PublicKey>,
    /// The signed records written to the card, group 0 first.
    pub records: Vec<GroupRecord>,
}

impl Personalised {
    /// The group-0 card key (the registry's key of the card).
    pub fn card_key(&self) -> Option<&PublicKey> {
        self.group_keys.first()
    }
}

fn select<T: CardTransport>(ch: &mut CardChannel<T>) -> Result<LifeCycle, PersonaliseError> {
    let r = ch.exchange(&fci::select_command())?;
    if r.sw != StatusWord::Success {
        if r.sw == StatusWord::SelectedFileDeactivated {
            return Ok(LifeCycle::Terminated);
        }
        return Err(PersonaliseError::NotACitycard(r.sw));
    }
    fci::life_cycle(&r.data).ok_or(PersonaliseError::Protocol(
        citycard_proto::error::Error::MalformedTlv,
    ))
}

/// SELECTs the application and reports the card's life cycle.
pub fn inspect<T: CardTransport>(ch: &mut CardChannel<T>) -> Result<LifeCycle, PersonaliseError> {
    select(ch)
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

/// Prepares a blank card (SPEC §6.3), as the city's preparation facility
/// does in a trusted setting: PREPARE (the card generates its attestation
/// key), the preparer certifies it, STORE PREPARATION CERTIFICATE. Returns
/// the card's attestation key.
pub fn prepare<T: CardTransport>(
    ch: &mut CardChannel<T>,
    preparer: &Preparer<'_>,
    on: Date,
) -> Result<PublicKey, PersonaliseError> {
    match select(ch)? {
        LifeCycle::Blank => {}
        other => return Err(PersonaliseError::NotBlank(other)),
    }
    let data = Prepare {
        issuer: preparer.issuer.into(),
        root: *preparer.root,
        date: on,
    }
    .encode()?;
    let answer = expect_ok(
        "PREPARE",
        ch.exchange(
            &Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
                .with_data(data)
                .with_le(256),
        )?,
    )?;
    let attestation = pers::decode_attestation_key(&answer)?;
    let body = CertificateBody {
        issuer: preparer.issuer.into(),
        holder: preparer.batch.into(),
        role: Role::PreparedCard,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: on,
        expiry: preparer.certificate.body().expiry,
        public_key: attestation,
    };
    let tbs = body.to_be_signed()?;
    let signature = (preparer.sign)(&tbs).map_err(PersonaliseError::Signing)?;
    let certificate = Certificate::assemble(&tbs, &signature)?;
    certificate.verify(&preparer.certificate.body().public_key)?;
    expect_ok(
        "STORE PREPARATION CERTIFICATE",
        ch.exchange(
            &Command::new(cla::PROPRIETARY, ins::STORE_PREPARATION_CERTIFICATE, 0, 0)
                .with_data(certificate.as_bytes().to_vec()),
        )?,
    )?;
    Ok(attestation)
}

/// Checks a card's preparation certificate: signed by one of the trusted
/// preparers, each of which the root signed. Returns the attestation key K_A.
pub fn check_preparation(
    trust: &PreparationTrust<'_>,
    certificate: &[u8],
) -> Result<PublicKey, PersonaliseError> {
    let cert = Certificate::decode(certificate).map_err(|_| PersonaliseError::NotPrepared)?;
    let body = cert.body();
    if body.role != Role::PreparedCard {
        return Err(PersonaliseError::NotPrepared);
    }
    let chained = trust.preparers.iter().any(|p| {
        p.body().role == Role::Preparer
            && p.body().issuer == body.issuer
            && p.verify(trust.root).is_ok()
            && cert.verify(&p.body().public_key).is_ok()
    });
    if chained {
        Ok(body.public_key)
    } else {
        Err(PersonaliseError::NotPrepared)
    }
}

/// Authenticates the station to the selected card for `groups` groups;
/// returns the card's group public keys and the secure channel.
fn authenticate<T: CardTransport>(
    ch: &mut CardChannel<T>,
    trust: &PreparationTrust<'_>,
    station: &Station<'_>,
    groups: u8,
    mut rng: &mut dyn CryptoRngCore,
) -> Result<(Vec<PublicKey>, SecureChannel), PersonaliseError> {
    let r = ch.exchange(
        &Command::new(cla::ISO, ins::PSO, 0x00, 0xBE)
            .with_data(station.certificate.as_bytes().to_vec()),
    )?;
    if r.sw == StatusWord::SecurityStatusNotSatisfied {
        return Err(PersonaliseError::WrongIssuer);
    }
    expect_ok("PSO: VERIFY CERTIFICATE", r)?;
    let challenge = expect_ok(
        "GET CHALLENGE",
        ch.exchange(&Command::new(cla::ISO, ins::GET_CHALLENGE, 0, 0).with_le(CHALLENGE_LEN))?,
    )?;
    let challenge: [u8; CHALLENGE_LEN] = challenge
        .try_into()
        .map_err(|_| PersonaliseError::Protocol(citycard_proto::error::Error::BadLength(0)))?;
    let ephemeral = SecretKey::random(&mut rng);
    let e_s = crypto::encode_point(&ephemeral.public_key());
    let signature = (station.sign)(&pers::station_auth_message(&challenge, &e_s, groups))
        .map_err(PersonaliseError::Signing)?;
    let signature = crypto::normalize_signature(&signature)?;
    let auth = StationAuth {
        ephemeral: e_s,
        signature,
        groups,
    };
    let resp = expect_ok(
        "EXTERNAL AUTHENTICATE",
        ch.exchange(
            &Command::new(cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0)
                .with_data(auth.encode())
                .with_le(256),
        )?,
    )?;
    let answer = CardAuthAnswer::decode(&resp)?;
    let attestation = check_preparation(trust, &answer.preparation_certificate)?;
    let channel = SecureChannel::for_station(&ephemeral, &attestation, &challenge);
    // On an issued card the card answers its own number of groups.
    let n = answer.sealed_keys.len().saturating_sub(crypto::TAG_LEN) / crypto::POINT_LEN;
    let n = u8::try_from(n.min(MAX_GROUPS)).unwrap_or(0);
    let keys = channel
        .open_group_keys(&answer.sealed_keys, n)
        .map_err(|_| PersonaliseError::NotPrepared)?;
    Ok((keys, channel))
}

fn secured<T: CardTransport>(
    ch: &mut CardChannel<T>,
    channel: &mut SecureChannel,
    step: &'static str,
    ins_byte: u8,
    plaintext: &[u8],
) -> Result<Vec<u8>, PersonaliseError> {
    let header = [cla::PROPRIETARY, ins_byte, 0, 0];
    let data = channel.seal(header, plaintext)?;
    let answer = expect_ok(
        step,
        ch.exchange(
            &Command::new(cla::PROPRIETARY, ins_byte, 0, 0)
                .with_data(data)
                .with_le(256),
        )?,
    )?;
    if answer.is_empty() {
        return Ok(answer);
    }
    Ok(channel.open_answer(header, &answer)?)
}

/// What a station writes on one card.
#[derive(Clone, Copy, Debug)]
pub struct CardContents<'a> {
    /// The holder's attributes (card number included), any order.
    pub attributes: &'a [(AttributeId, Vec<u8>)],
    /// The issue date (the station's today).
    pub issue_date: Date,
    /// The last valid day of the card.
    pub valid_to: Date,
    /// How many linkability groups (1 to `MAX_GROUPS`).
    pub groups: u8,
}

/// Takes a prepared card to an issued, locked card with `contents.groups`
/// linkability groups: station authentication (the card proves its
/// preparation and generates its group keys), one record per group signed by
/// the station, secured PUT DATA (salt seeds, records, values), ACTIVATE; the
/// card's issuance check value is compared with the one computed over what
/// was sent.
pub fn personalise<T: CardTransport>(
    ch: &mut CardChannel<T>,
    trust: &PreparationTrust<'_>,
    station: &Station<'_>,
    contents: &CardContents<'_>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Personalised, PersonaliseError> {
    personalise_recording(ch, trust, station, contents, &mut |_| Ok(()), rng)
}

/// [`personalise`], calling `record_keys` with the card's group keys as soon
/// as the card has given them (EXTERNAL AUTHENTICATE) — before any record is
/// signed, so before anything signed can reach the card. An error from
/// `record_keys` stops personalisation there ([`PersonaliseError::KeyNotRecorded`]).
pub fn personalise_recording<T: CardTransport>(
    ch: &mut CardChannel<T>,
    trust: &PreparationTrust<'_>,
    station: &Station<'_>,
    contents: &CardContents<'_>,
    record_keys: &mut RecordKeysFn<'_>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Personalised, PersonaliseError> {
    let CardContents {
        attributes,
        issue_date,
        valid_to,
        groups,
    } = *contents;
    // Validate everything before the first write to the card.
    let mut values = Vec::with_capacity(attributes.len());
    for (id, value) in attributes {
        values.push(StoredValue::new(*id, value.clone())?);
    }
    values.sort_by_key(|v| v.id);
    if groups == 0 || usize::from(groups) > MAX_GROUPS {
        return Err(PersonaliseError::Protocol(
            citycard_proto::error::Error::BadValue(0x83),
        ));
    }
    match select(ch)? {
        LifeCycle::Prepared => {}
        other => return Err(PersonaliseError::NotBlank(other)),
    }
    let (keys, mut channel) = authenticate(ch, trust, station, groups, rng)?;
    if keys.len() != usize::from(groups) {
        return Err(PersonaliseError::Protocol(
            citycard_proto::error::Error::BadLength(0x87),
        ));
    }
    // The earliest point the keys are known, and nothing signed exists yet.
    record_keys(&keys).map_err(PersonaliseError::KeyNotRecorded)?;
    let valid_from = record::valid_from_for(issue_date, station.certificate.body().effective);
    let mut records = Vec::with_capacity(keys.len());
    let mut seeds_data = Vec::new();
    for (g, key) in keys.iter().enumerate() {
        let g = g as u8;
        let mut seed = [0u8; SEED_LEN];
        rng.fill_bytes(&mut seed);
        seeds_data.extend_from_slice(&record::encode_salt_seed(g, &seed));
        let digests: Vec<_> = values.iter().map(|v| v.digest(&seed)).collect();
        let body = RecordBody::new(
            g,
            &station.certificate.fingerprint(),
            valid_from,
            valid_to,
            *key,
            &digests,
            &mut *rng,
        )?;
        let tbs = body.to_be_signed()?;
        let signature = (station.sign)(&tbs).map_err(PersonaliseError::Signing)?;
        let signature = crypto::normalize_signature(&signature)?;
        records.push(GroupRecord::assemble(&tbs, &signature)?);
    }
    secured(
        ch,
        &mut channel,
        "PUT DATA (salt seeds)",
        ins::PUT_DATA,
        &seeds_data,
    )?;
    let room = MAX_CHAINED_DATA - crypto::TAG_LEN;
    let mut command = Vec::new();
    let objects = records
        .iter()
        .map(|r| r.as_bytes().to_vec())
        .chain(values.iter().map(StoredValue::encode));
    for o in objects {
        if command.len() + o.len() > room {
            secured(ch, &mut channel, "PUT DATA", ins::PUT_DATA, &command)?;
            command.clear();
        }
        command.extend_from_slice(&o);
    }
    if !command.is_empty() {
        secured(ch, &mut channel, "PUT DATA", ins::PUT_DATA, &command)?;
    }
    let check = secured(ch, &mut channel, "ACTIVATE", ins::ACTIVATE, &[])?;
    let raw: Vec<&[u8]> = records.iter().map(GroupRecord::as_bytes).collect();
    let expected = pers::check_value(&mut OpCount::default(), channel.mac_key(), &raw, &values);
    if !crypto::mac_eq(&check, &expected) {
        return Err(PersonaliseError::ReadBack(ReadBackMismatch::CheckValue));
    }
    Ok(Personalised {
        group_keys: keys,
        records,
    })
}

/// Identifies an issued card by a new station session (SPEC §6.6): the card
/// proves its preparation and answers its group keys. `Ok(None)` if the card
/// is not issued or not prepared by this city.
pub fn identify<T: CardTransport>(
    ch: &mut CardChannel<T>,
    trust: &PreparationTrust<'_>,
    station: &Station<'_>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Option<Vec<PublicKey>>, PersonaliseError> {
    if select(ch)? != LifeCycle::Issued {
        return Ok(None);
    }
    match authenticate(ch, trust, station, 1, rng) {
        Ok((keys, _)) => Ok(Some(keys)),
        Err(PersonaliseError::Transport(e)) => Err(PersonaliseError::Transport(e)),
        Err(_) => Ok(None),
    }
}
