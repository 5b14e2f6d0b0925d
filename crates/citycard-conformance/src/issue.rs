//! The station and preparer side of a version-2 personalisation, as commands
//! and checks (no I/O): PREPARE and STORE PREPARATION CERTIFICATE (§6.3),
//! EXTERNAL AUTHENTICATE for G groups and its answer (§6.6), the PUT DATA
//! plaintexts (§6.7) and the issuance check value of ACTIVATE (§6.8). The
//! card kit and the reader kit both drive their cards with these.

use citycard_proto::attr::AttributeSet;
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{cla, ins};
use citycard_proto::crypto::{self, OpCount};
use citycard_proto::limits::MAX_CHAINED_DATA;
use citycard_proto::pers::CHALLENGE_LEN;
use citycard_proto::pers::{self, CardAuthAnswer, Prepare, SecureChannel, StationAuth};
use citycard_proto::record::{self, GroupRecord, RecordBody, StoredValue, SEED_LEN};
use citycard_proto::{apdu::Command, date::Date};
use p256::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};

use crate::city::{self, City};
use crate::ConformanceError;

/// PREPARE for `city`'s issuer and root on `date`.
pub fn prepare_command(city: &City, date: Date) -> Result<Command, ConformanceError> {
    let data = Prepare {
        issuer: city.issuer.clone(),
        root: city.root.public_key(),
        date,
    }
    .encode()?;
    Ok(Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
        .with_data(data)
        .with_le(256))
}

/// The preparer-signed certificate (role 04) of attestation key `attestation`,
/// effective on the preparation date.
pub fn preparation_certificate(
    city: &City,
    attestation: &PublicKey,
    date: Date,
) -> Result<Certificate, ConformanceError> {
    Ok(CertificateBody {
        issuer: city.issuer.clone(),
        holder: "conformance-card".into(),
        role: Role::PreparedCard,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: date,
        expiry: city::shift(date, 3660 + 366)?,
        public_key: *attestation,
    }
    .sign(&city.preparer)?)
}

/// STORE PREPARATION CERTIFICATE.
pub fn store_certificate_command(certificate: &Certificate) -> Command {
    Command::new(cla::PROPRIETARY, ins::STORE_PREPARATION_CERTIFICATE, 0, 0)
        .with_data(certificate.as_bytes().to_vec())
}

/// EXTERNAL AUTHENTICATE signed by `station` over `challenge` (16 zero bytes
/// when it has not the right length), ephemeral `e_s`, for `groups` groups.
pub fn station_auth(station: &SecretKey, e_s: &SecretKey, challenge: &[u8], groups: u8) -> Command {
    let challenge: [u8; CHALLENGE_LEN] = challenge.try_into().unwrap_or([0; CHALLENGE_LEN]);
    let point = crypto::encode_point(&e_s.public_key());
    let auth = StationAuth {
        ephemeral: point,
        signature: crypto::sign(
            station,
            &pers::station_auth_message(&challenge, &point, groups),
        ),
        groups,
    };
    Command::new(cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0)
        .with_data(auth.encode())
        .with_le(256)
}

/// Why an EXTERNAL AUTHENTICATE answer is not acceptable to a station.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthAnswerError {
    /// Not the `7C { 85, 87 }` template.
    Malformed,
    /// The preparation certificate does not chain to the city's preparer.
    NotPrepared,
    /// The group keys do not open with the attestation key (not the card
    /// that holds k_A) or are not `groups` points.
    KeysDoNotOpen,
}

impl core::fmt::Display for AuthAnswerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "the answer is not the station-session template",
            Self::NotPrepared => {
                "the preparation certificate does not chain to the city's preparer"
            }
            Self::KeysDoNotOpen => "the sealed group keys do not open with the attestation key",
        })
    }
}

/// Checks the card's EXTERNAL AUTHENTICATE answer as a station does (§6.6):
/// preparation certificate → preparer → root; opens the `groups` group keys.
pub fn open_card_auth(
    city: &City,
    e_s: &SecretKey,
    challenge: &[u8],
    answer: &[u8],
    groups: u8,
) -> Result<(Vec<PublicKey>, SecureChannel), AuthAnswerError> {
    let challenge: [u8; CHALLENGE_LEN] = challenge
        .try_into()
        .map_err(|_| AuthAnswerError::Malformed)?;
    let answer = CardAuthAnswer::decode(answer).map_err(|_| AuthAnswerError::Malformed)?;
    let cert = Certificate::decode(&answer.preparation_certificate)
        .map_err(|_| AuthAnswerError::NotPrepared)?;
    let preparer = &city.preparer_certificate;
    let chained = preparer.verify(&city.root.public_key()).is_ok()
        && preparer.body().role == Role::Preparer
        && cert.verify(&preparer.body().public_key).is_ok()
        && cert.body().role == Role::PreparedCard
        && cert.body().issuer == preparer.body().issuer;
    if !chained {
        return Err(AuthAnswerError::NotPrepared);
    }
    let channel = SecureChannel::for_station(e_s, &cert.body().public_key, &challenge);
    let keys = channel
        .open_group_keys(&answer.sealed_keys, groups)
        .map_err(|_| AuthAnswerError::KeysDoNotOpen)?;
    Ok((keys, channel))
}

/// What a station sends to personalise one card.
pub struct Staged {
    /// The signed group records, group 0 first.
    pub records: Vec<GroupRecord>,
    /// The stored values, ids ascending.
    pub values: Vec<StoredValue>,
    /// The PUT DATA plaintexts: salt seeds first, then records and values,
    /// each at most `MAX_CHAINED_DATA` − tag bytes.
    pub plaintexts: Vec<Vec<u8>>,
}

/// Records (one per group key), salt seeds and values of `city`'s resident.
pub fn stage(
    city: &City,
    keys: &[PublicKey],
    valid_from: Date,
    valid_to: Date,
) -> Result<Staged, ConformanceError> {
    let mut values = Vec::new();
    for (id, value) in city.resident()? {
        values.push(StoredValue::new(id, value)?);
    }
    values.sort_by_key(|v| v.id);
    let mut records = Vec::new();
    let mut first = Vec::new();
    for (g, key) in keys.iter().enumerate() {
        let g = u8::try_from(g).map_err(|_| ConformanceError::Kit("too many groups"))?;
        let mut seed = [0u8; SEED_LEN];
        OsRng.fill_bytes(&mut seed);
        let digests: Vec<_> = values.iter().map(|v| v.digest(&seed)).collect();
        let body = RecordBody::new(
            g,
            &city.station_certificate.fingerprint(),
            valid_from,
            valid_to,
            *key,
            &digests,
            &mut OsRng,
        )?;
        records.push(body.sign(&city.station)?);
        first.extend_from_slice(&record::encode_salt_seed(g, &seed));
    }
    let room = MAX_CHAINED_DATA - crypto::TAG_LEN;
    let mut plaintexts: Vec<Vec<u8>> = vec![first, Vec::new()];
    let objects = records
        .iter()
        .map(|r| r.as_bytes().to_vec())
        .chain(values.iter().map(StoredValue::encode));
    for o in objects {
        if plaintexts.last().is_some_and(|c| c.len() + o.len() > room) {
            plaintexts.push(Vec::new());
        }
        if let Some(c) = plaintexts.last_mut() {
            c.extend_from_slice(&o);
        }
    }
    Ok(Staged {
        records,
        values,
        plaintexts,
    })
}

/// A secured command (§7.4) with `plaintext`.
pub fn secured(
    channel: &mut SecureChannel,
    ins_byte: u8,
    plaintext: &[u8],
) -> Result<Command, ConformanceError> {
    let header = [cla::PROPRIETARY, ins_byte, 0, 0];
    let cmd =
        Command::new(cla::PROPRIETARY, ins_byte, 0, 0).with_data(channel.seal(header, plaintext)?);
    Ok(if ins_byte == ins::ACTIVATE {
        cmd.with_le(256)
    } else {
        cmd
    })
}

/// Opens ACTIVATE's sealed answer and compares it with the issuance check
/// value over what was sent (§6.8): `Ok(true)` when they match.
pub fn check_activation(
    channel: &SecureChannel,
    staged: &Staged,
    answer: &[u8],
) -> Result<bool, ConformanceError> {
    let header = [cla::PROPRIETARY, ins::ACTIVATE, 0, 0];
    let check = channel.open_answer(header, answer)?;
    let raw: Vec<&[u8]> = staged.records.iter().map(GroupRecord::as_bytes).collect();
    let expected = pers::check_value(
        &mut OpCount::default(),
        channel.mac_key(),
        &raw,
        &staged.values,
    );
    Ok(crypto::mac_eq(&check, &expected))
}
