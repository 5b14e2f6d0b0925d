//! Personalisation of one card through any transport (PC/SC reader or
//! in-memory card), and the read-back check "as a reader would".
//!
//! Signing is handed to the caller (`sign` closures), so the station key may
//! live in a file or in an HSM without changing this code.

use citycard_proto::apdu::Command;
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::ReaderSession;
use citycard_proto::cert::Certificate;
use citycard_proto::consts::{cla, ins, LifeCycle};
use citycard_proto::fci;
use citycard_proto::pers::{self, SecureChannel, StationAuth, CHALLENGE_LEN};
use citycard_proto::record::{AttributeEntry, RecordBody, SALT_LEN};
use citycard_proto::{crypto, Date, ResidentRecord, StatusWord};
use citycard_transport::{CardChannel, CardTransport, TransportError};
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;

/// A signing function: ECDSA P-256/SHA-256 over the message, raw r‖s.
pub type SignFn<'a> = dyn Fn(&[u8]) -> Result<[u8; 64], String> + 'a;

/// Why personalising or checking a card failed.
#[derive(Debug, thiserror::Error)]
pub enum PersonaliseError {
    /// The transport failed (includes the card being pulled: `CardRemoved`).
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The card does not have the citycard application.
    #[error("not a citycard (SELECT answered {0})")]
    NotACitycard(StatusWord),
    /// The card is not blank: it is already issued or terminated.
    #[error("the card is not blank (life cycle: {})", .0.name())]
    NotBlank(LifeCycle),
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
    /// The station could not sign.
    #[error("signing failed: {0}")]
    Signing(String),
    /// Host-side protocol error (malformed card answer, bad input).
    #[error("protocol: {0}")]
    Protocol(#[from] citycard_proto::Error),
    /// Not a usable PIV card: no PIV application, or no ECC P-256.
    #[error("not a usable PIV card: {0}")]
    NotPiv(String),
    /// The PIV card still accepts the public factory management key.
    #[error("the card still accepts the factory management key ({} 0102030405060708 x3): anyone could rewrite it. Set the city's own key first (yubico-piv-tool -a set-mgm-key -n <new key>), or pass --allow-default-management-key for test cards", .0.name())]
    DefaultManagementKey(citycard_proto::piv::ManagementAlgorithm),
    /// The PIV card refused the city's management key.
    #[error("{0}")]
    ManagementKeyRefused(String),
    /// The PIV card holds a certificate that this issuance must not overwrite.
    #[error("the card is in use: {0}")]
    CardOccupied(String),
    /// The key in slot 9E did not prove possession of the expected public key.
    #[error("proof of possession failed: {0}")]
    Possession(String),
    /// Reading the card back did not give exactly what was written.
    #[error("read-back check failed: {0}")]
    ReadBack(String),
    /// The card's key could not be recorded before the signed record was
    /// written (the registry refused or failed): nothing signed was sent.
    #[error("the card key could not be recorded: {0}")]
    KeyNotRecorded(String),
}

/// What the station needs to personalise.
pub struct Station<'a> {
    /// The station's root-signed certificate.
    pub certificate: &'a Certificate,
    /// Signs with the station key.
    pub sign: &'a SignFn<'a>,
}

/// The city's anchor, installed on blank cards.
pub struct Anchor<'a> {
    /// Issuer id.
    pub issuer: &'a str,
    /// Root public key.
    pub root: &'a PublicKey,
}

/// A successfully personalised card.
#[derive(Clone, Debug)]
pub struct Personalised {
    /// The card's public key (generated on the card).
    pub card_key: PublicKey,
    /// The signed record written to the card.
    pub record: ResidentRecord,
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
        citycard_proto::Error::MalformedTlv,
    ))
}

/// SELECTs the application and reports the card's life cycle.
pub fn inspect<T: CardTransport>(ch: &mut CardChannel<T>) -> Result<LifeCycle, PersonaliseError> {
    select(ch)
}

fn expect_ok(step: &'static str, r: citycard_proto::Response) -> Result<Vec<u8>, PersonaliseError> {
    if r.sw == StatusWord::Success {
        Ok(r.data)
    } else {
        Err(PersonaliseError::Refused { step, sw: r.sw })
    }
}

/// Authenticates the station to the selected card; returns the card's public
/// key and the secure channel.
fn authenticate<T: CardTransport>(
    ch: &mut CardChannel<T>,
    station: &Station<'_>,
    mut rng: &mut dyn CryptoRngCore,
) -> Result<(PublicKey, SecureChannel), PersonaliseError> {
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
        .map_err(|_| PersonaliseError::Protocol(citycard_proto::Error::BadLength(0)))?;
    let ephemeral = SecretKey::random(&mut rng);
    let e_s = crypto::encode_point(&ephemeral.public_key());
    let signature = (station.sign)(&pers::station_auth_message(&challenge, &e_s))
        .map_err(PersonaliseError::Signing)?;
    let auth = StationAuth {
        ephemeral: e_s,
        signature,
    };
    let resp = expect_ok(
        "EXTERNAL AUTHENTICATE",
        ch.exchange(
            &Command::new(cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0)
                .with_data(auth.encode())
                .with_le(256),
        )?,
    )?;
    let card_key = pers::decode_card_key(&resp)?;
    Ok((
        card_key,
        SecureChannel::for_station(&ephemeral, &card_key, &challenge),
    ))
}

fn secured<T: CardTransport>(
    ch: &mut CardChannel<T>,
    channel: &mut SecureChannel,
    step: &'static str,
    ins_byte: u8,
    plaintext: &[u8],
) -> Result<(), PersonaliseError> {
    let header = [cla::PROPRIETARY, ins_byte, 0, 0];
    let data = channel.seal(header, plaintext)?;
    expect_ok(
        step,
        ch.exchange(&Command::new(cla::PROPRIETARY, ins_byte, 0, 0).with_data(data))?,
    )?;
    Ok(())
}

/// Takes a blank (or anchored) card to an issued, locked card: anchor if
/// needed, station authentication (the card generates its key), record signed
/// by the station, secured PUT DATA, ACTIVATE. The caller then checks it with
/// [`read_back`].
#[allow(clippy::too_many_arguments)]
pub fn personalise<T: CardTransport>(
    ch: &mut CardChannel<T>,
    anchor: &Anchor<'_>,
    station: &Station<'_>,
    attributes: &[(AttributeId, Vec<u8>)],
    valid_from: Date,
    valid_to: Date,
    rng: &mut dyn CryptoRngCore,
) -> Result<Personalised, PersonaliseError> {
    personalise_recording(
        ch,
        anchor,
        station,
        attributes,
        valid_from,
        valid_to,
        &mut |_| Ok(()),
        rng,
    )
}

/// [`personalise`], calling `record_key` with the card's key as soon as the
/// card has given it (EXTERNAL AUTHENTICATE) — before the record is signed,
/// so before anything signed can reach the card. An error from `record_key`
/// stops personalisation there ([`PersonaliseError::KeyNotRecorded`]).
#[allow(clippy::too_many_arguments)]
pub fn personalise_recording<T: CardTransport>(
    ch: &mut CardChannel<T>,
    anchor: &Anchor<'_>,
    station: &Station<'_>,
    attributes: &[(AttributeId, Vec<u8>)],
    valid_from: Date,
    valid_to: Date,
    record_key: &mut dyn FnMut(&PublicKey) -> Result<(), String>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Personalised, PersonaliseError> {
    // Validate everything before the first write to the card.
    let mut entries = Vec::with_capacity(attributes.len());
    for (id, value) in attributes {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        entries.push(AttributeEntry::new(*id, salt, value.clone())?);
    }
    match select(ch)? {
        LifeCycle::Blank => {
            let data = pers::encode_anchor(anchor.issuer, anchor.root);
            expect_ok(
                "SET ISSUER ANCHOR",
                ch.exchange(
                    &Command::new(cla::PROPRIETARY, ins::SET_ANCHOR, 0, 0).with_data(data),
                )?,
            )?;
        }
        LifeCycle::Anchored => {}
        other => return Err(PersonaliseError::NotBlank(other)),
    }
    let (card_key, mut channel) = authenticate(ch, station, rng)?;
    // The earliest point the key is known, and nothing signed exists yet.
    record_key(&card_key).map_err(PersonaliseError::KeyNotRecorded)?;
    let body = RecordBody::new(
        station.certificate.fingerprint(),
        valid_from,
        valid_to,
        card_key,
        &entries,
    )?;
    let tbs = body.to_be_signed()?;
    let signature = (station.sign)(&tbs).map_err(PersonaliseError::Signing)?;
    let record = ResidentRecord::assemble(&tbs, &signature)?;
    secured(
        ch,
        &mut channel,
        "PUT DATA (record)",
        ins::PUT_DATA,
        record.as_bytes(),
    )?;
    let mut attrs = Vec::new();
    for e in &entries {
        attrs.extend_from_slice(&e.encode());
    }
    secured(
        ch,
        &mut channel,
        "PUT DATA (attributes)",
        ins::PUT_DATA,
        &attrs,
    )?;
    secured(ch, &mut channel, "ACTIVATE", ins::ACTIVATE, &[])?;
    Ok(Personalised { card_key, record })
}

/// A reader credential: its static key and root-signed certificate.
pub struct ReaderCredential<'a> {
    /// Certificate (role reader).
    pub certificate: &'a Certificate,
    /// Its private key.
    pub key: &'a SecretKey,
}

/// Reads the card back as a reader would (SELECT, PSO, GENERAL AUTHENTICATE for
/// every stored attribute) and checks: the card is issued, genuine (MAC with
/// the record's key), the record is the one written and verifies with the
/// station's key, and every attribute is exactly what was written.
pub fn read_back<T: CardTransport>(
    ch: &mut CardChannel<T>,
    check: &ReaderCredential<'_>,
    station: &Certificate,
    expected: &Personalised,
    attributes: &[(AttributeId, Vec<u8>)],
    today: Date,
    mut rng: &mut dyn CryptoRngCore,
) -> Result<(), PersonaliseError> {
    let state = select(ch)?;
    if state != LifeCycle::Issued {
        return Err(PersonaliseError::ReadBack(format!(
            "life cycle is {} after ACTIVATE",
            state.name()
        )));
    }
    let r = ch.exchange(
        &Command::new(cla::ISO, ins::PSO, 0x00, 0xBE)
            .with_data(check.certificate.as_bytes().to_vec()),
    )?;
    expect_ok("PSO (read-back credential)", r)?;
    let requested: AttributeSet = attributes.iter().map(|(id, _)| *id).collect();
    let session = ReaderSession::new(&mut rng, check.certificate.fingerprint(), requested, today);
    let resp = expect_ok(
        "GENERAL AUTHENTICATE (read-back)",
        ch.exchange(&session.command())?,
    )?;
    let disclosure = session
        .open(&resp, check.key)
        .map_err(|e| PersonaliseError::ReadBack(format!("card did not verify: {e}")))?;
    if disclosure.record.as_bytes() != expected.record.as_bytes()
        || disclosure.record.body().card_key != expected.card_key
    {
        return Err(PersonaliseError::ReadBack(
            "the card holds another record".into(),
        ));
    }
    disclosure
        .record
        .verify(&station.body().public_key)
        .map_err(|_| {
            PersonaliseError::ReadBack(
                "record signature does not verify with the station key".into(),
            )
        })?;
    let got: Vec<(AttributeId, Vec<u8>)> = disclosure
        .attributes
        .iter()
        .map(|e| (e.id, e.value.clone()))
        .collect();
    let mut want = attributes.to_vec();
    want.sort_by_key(|(id, _)| *id);
    if got != want {
        return Err(PersonaliseError::ReadBack(
            "attributes differ from what was written".into(),
        ));
    }
    Ok(())
}

/// Identifies an issued card with the read-back credential: its card number
/// and public key (after checking it is genuine). `Ok(None)` if the card is
/// not issued or does not answer as a card of this issuer.
pub fn identify<T: CardTransport>(
    ch: &mut CardChannel<T>,
    check: &ReaderCredential<'_>,
    today: Date,
    mut rng: &mut dyn CryptoRngCore,
) -> Result<Option<(String, PublicKey)>, PersonaliseError> {
    if select(ch)? != LifeCycle::Issued {
        return Ok(None);
    }
    let r = ch.exchange(
        &Command::new(cla::ISO, ins::PSO, 0x00, 0xBE)
            .with_data(check.certificate.as_bytes().to_vec()),
    )?;
    if r.sw != StatusWord::Success {
        return Ok(None);
    }
    let requested = AttributeSet::EMPTY.with(AttributeId::CARD_NUMBER);
    let session = ReaderSession::new(&mut rng, check.certificate.fingerprint(), requested, today);
    let r = ch.exchange(&session.command())?;
    if r.sw != StatusWord::Success {
        return Ok(None);
    }
    let Ok(d) = session.open(&r.data, check.key) else {
        return Ok(None);
    };
    let number = d
        .attributes
        .iter()
        .find(|a| a.id == AttributeId::CARD_NUMBER)
        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
    Ok(number.map(|n| (n, d.record.body().card_key)))
}
