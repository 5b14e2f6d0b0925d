//! A recording APDU script: a scripted station and reader that talk raw APDUs
//! (doing chaining and GET RESPONSE themselves, as a vector must show them).

use citycard_proto::apdu::{Command, Response};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{Disclosure, ReaderSession};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{cla, ins};
use citycard_proto::crypto::{self, OpCount};
use citycard_proto::limits::MAX_CHAINED_DATA;
use citycard_proto::pers::{
    self, CardAuthAnswer, Prepare, SecureChannel, StationAuth, CHALLENGE_LEN,
};
use citycard_proto::record::{self, GroupRecord, RecordBody, StoredValue, SEED_LEN};
use citycard_proto::{date::Date, sw::StatusWord};
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use crate::keys::{TestCity, TestReader};

/// One raw exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Command APDU, hex.
    pub command: String,
    /// Expected full response (data + SW), hex; absent when only the SW is fixed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response: Option<String>,
    /// Expected SW only (hex), when the data cannot be fixed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response_sw: Option<String>,
    /// What this step is, for people.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// Error talking to the card.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The link failed (card lost, transport error).
    #[error("link: {0}")]
    Link(String),
    /// The card answered an unexpected status.
    #[error("{what}: card answered {sw}")]
    Status { what: &'static str, sw: StatusWord },
    /// Protocol failure on the host side.
    #[error("{0}")]
    Protocol(#[from] citycard_proto::error::Error),
    /// The card's preparation certificate does not chain to the city's preparer.
    #[error("not prepared by this city")]
    NotPrepared,
    /// The issuance check value differs from what the station sent.
    #[error("issuance check value mismatch")]
    CheckMismatch,
}

/// A raw link: one command APDU in, the raw response (data + SW) out.
pub type RawLink<'a> = dyn FnMut(&[u8]) -> Result<Vec<u8>, String> + 'a;

/// A link that records every raw exchange.
pub struct Script<'a> {
    link: &'a mut RawLink<'a>,
    /// The recorded steps.
    pub steps: Vec<Step>,
    note: Option<String>,
}

impl<'a> Script<'a> {
    /// Wraps a raw transmit function.
    pub fn new(link: &'a mut RawLink<'a>) -> Self {
        Self {
            link,
            steps: Vec::new(),
            note: None,
        }
    }

    /// Sets the note attached to the next recorded step.
    pub fn note(&mut self, note: &str) {
        self.note = Some(note.to_string());
    }

    /// One raw exchange, recorded.
    pub fn raw(&mut self, apdu: &[u8]) -> Result<Response, ScriptError> {
        let resp = (self.link)(apdu).map_err(ScriptError::Link)?;
        self.steps.push(Step {
            command: hex::encode_upper(apdu),
            response: Some(hex::encode_upper(&resp)),
            response_sw: None,
            note: self.note.take(),
        });
        Response::from_bytes(&resp)
            .ok_or_else(|| ScriptError::Link("response shorter than SW".into()))
    }

    /// Sends a command, chaining if its data exceeds 255 bytes and fetching
    /// `61xx` remainders with GET RESPONSE; every APDU is recorded.
    pub fn send(&mut self, cmd: &Command) -> Result<Response, ScriptError> {
        let chunks: Vec<&[u8]> = if cmd.data.is_empty() {
            vec![&[][..]]
        } else {
            cmd.data.chunks(255).collect()
        };
        let last = chunks.len() - 1;
        let mut resp = None;
        for (i, chunk) in chunks.iter().enumerate() {
            let mut c = Command::new(cmd.cla, cmd.ins, cmd.p1, cmd.p2).with_data(chunk.to_vec());
            if i < last {
                c.cla |= cla::CHAIN;
            } else {
                c.le = cmd.le;
            }
            let r = self.raw(
                &c.to_short_bytes()
                    .map_err(|_| ScriptError::Link("encode".into()))?,
            )?;
            if i < last && r.sw != StatusWord::Success {
                return Ok(r);
            }
            resp = Some(r);
        }
        let mut resp = resp.ok_or_else(|| ScriptError::Link("no response".into()))?;
        while let StatusWord::BytesRemaining(n) = resp.sw {
            let le = if n == 0 { 256 } else { usize::from(n) };
            let more = self.raw(
                &Command::new(0, ins::GET_RESPONSE, 0, 0)
                    .with_le(le)
                    .to_short_bytes()
                    .unwrap(),
            )?;
            resp.data.extend_from_slice(&more.data);
            resp.sw = more.sw;
        }
        Ok(resp)
    }

    /// Sends and requires `9000`.
    pub fn expect_ok(&mut self, what: &'static str, cmd: &Command) -> Result<Vec<u8>, ScriptError> {
        let r = self.send(cmd)?;
        if r.sw != StatusWord::Success {
            return Err(ScriptError::Status { what, sw: r.sw });
        }
        Ok(r.data)
    }
}

/// SELECT by AID.
pub fn select_command() -> Command {
    citycard_proto::fci::select_command()
}

/// The sample resident used in vectors.
pub fn sample_resident() -> Vec<(AttributeId, Vec<u8>)> {
    vec![
        (AttributeId::CARD_NUMBER, b"LG-2026-000042".to_vec()),
        (AttributeId::NAME, "Alex Moreau".as_bytes().to_vec()),
        (
            AttributeId::BIRTH_DATE,
            Date::new(1958, 3, 14).unwrap().to_bytes().to_vec(),
        ),
        (
            AttributeId::ADDRESS,
            "Rue Léopold 12, 4000 Liège".as_bytes().to_vec(),
        ),
        (AttributeId::LANGUAGE, b"fr".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
    ]
}

/// PREPARE and STORE PREPARATION CERTIFICATE on a selected blank card, as the
/// city's preparation facility does; returns the card's attestation key.
pub fn prepare(s: &mut Script<'_>, city: &TestCity, on: Date) -> Result<PublicKey, ScriptError> {
    let issuer = city.station_certificate.body().issuer.clone();
    let data = Prepare {
        issuer: issuer.clone(),
        root: city.root.public_key(),
        date: on,
    }
    .encode()?;
    s.note("PREPARE");
    let answer = s.expect_ok(
        "PREPARE",
        &Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
            .with_data(data)
            .with_le(256),
    )?;
    let attestation = pers::decode_attestation_key(&answer)?;
    let certificate = preparation_certificate(city, &attestation, on)?;
    s.note("STORE PREPARATION CERTIFICATE");
    s.expect_ok(
        "STORE PREPARATION CERTIFICATE",
        &Command::new(cla::PROPRIETARY, ins::STORE_PREPARATION_CERTIFICATE, 0, 0)
            .with_data(certificate.as_bytes().to_vec()),
    )?;
    Ok(attestation)
}

/// The preparer-signed certificate (role 04) of an attestation key.
pub fn preparation_certificate(
    city: &TestCity,
    attestation: &PublicKey,
    on: Date,
) -> Result<Certificate, ScriptError> {
    Ok(CertificateBody {
        issuer: city.station_certificate.body().issuer.clone(),
        holder: "2026-11-B0042".into(),
        role: Role::PreparedCard,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: on,
        expiry: on.add_days(3660 + 366),
        public_key: *attestation,
    }
    .sign(&city.preparer)?)
}

/// Station-side parameters for one personalisation.
pub struct Personalisation<'k> {
    /// City keys.
    pub city: &'k TestCity,
    /// The station's ephemeral key for EXTERNAL AUTHENTICATE.
    pub station_ephemeral: SecretKey,
    /// Source of salt seeds and decoy slots.
    pub rng: &'k mut dyn CryptoRngCore,
    /// Resident attributes.
    pub resident: Vec<(AttributeId, Vec<u8>)>,
    /// Issue date (valid-from is the first day of its month).
    pub issue_date: Date,
    /// Last valid day.
    pub valid_to: Date,
    /// Number of linkability groups.
    pub groups: u8,
    /// Prepare the card first (blank card).
    pub prepare: bool,
}

/// What a personalisation produced.
pub struct Issued {
    /// The signed group records, group 0 first.
    pub records: Vec<GroupRecord>,
    /// The salt seeds, group 0 first.
    pub seeds: Vec<[u8; SEED_LEN]>,
}

/// Runs a whole personalisation with G groups; returns the records.
pub fn personalise(s: &mut Script<'_>, p: Personalisation<'_>) -> Result<Issued, ScriptError> {
    s.note("SELECT");
    s.expect_ok("SELECT", &select_command())?;
    if p.prepare {
        prepare(s, p.city, crate::keys::date(crate::keys::PREPARATION_DATE))?;
    }
    let (keys, mut channel) = authenticate_station(s, p.city, &p.station_ephemeral, p.groups)?;
    let mut values = Vec::new();
    for (id, value) in &p.resident {
        values.push(StoredValue::new(*id, value.clone())?);
    }
    values.sort_by_key(|v| v.id);
    let valid_from =
        record::valid_from_for(p.issue_date, p.city.station_certificate.body().effective);
    let mut records = Vec::new();
    let mut seeds = Vec::new();
    for (g, key) in keys.iter().enumerate() {
        let mut seed = [0u8; SEED_LEN];
        p.rng.fill_bytes(&mut seed);
        let digests: Vec<_> = values.iter().map(|v| v.digest(&seed)).collect();
        let body = RecordBody::new(
            g as u8,
            &p.city.station_certificate.fingerprint(),
            valid_from,
            p.valid_to,
            *key,
            &digests,
            &mut *p.rng,
        )?;
        records.push(body.sign(&p.city.station)?);
        seeds.push(seed);
    }
    // The salt seeds first, in one short command (8 × 19 bytes fit one
    // APDU); then records and values in commands of at most
    // MAX_CHAINED_DATA bytes each.
    let mut first = Vec::new();
    for (g, seed) in seeds.iter().enumerate() {
        first.extend_from_slice(&record::encode_salt_seed(g as u8, seed));
    }
    let mut objects: Vec<Vec<u8>> = Vec::new();
    for r in &records {
        objects.push(r.as_bytes().to_vec());
    }
    for v in &values {
        objects.push(v.encode());
    }
    let room = MAX_CHAINED_DATA - crypto::TAG_LEN;
    let mut commands: Vec<Vec<u8>> = vec![first, Vec::new()];
    for o in objects {
        if commands.last().is_some_and(|c| c.len() + o.len() > room) {
            commands.push(Vec::new());
        }
        if let Some(c) = commands.last_mut() {
            c.extend_from_slice(&o);
        }
    }
    for (i, plaintext) in commands.iter().enumerate() {
        let header = [cla::PROPRIETARY, ins::PUT_DATA, 0, 0];
        s.note(&format!("PUT DATA ({} of {})", i + 1, commands.len()));
        s.expect_ok(
            "PUT DATA",
            &Command::new(cla::PROPRIETARY, ins::PUT_DATA, 0, 0)
                .with_data(channel.seal(header, plaintext)?),
        )?;
    }
    s.note("ACTIVATE");
    let header = [cla::PROPRIETARY, ins::ACTIVATE, 0, 0];
    let answer = s.expect_ok(
        "ACTIVATE",
        &Command::new(cla::PROPRIETARY, ins::ACTIVATE, 0, 0)
            .with_data(channel.seal(header, &[])?)
            .with_le(256),
    )?;
    let check = channel.open_answer(header, &answer)?;
    let raw: Vec<&[u8]> = records.iter().map(GroupRecord::as_bytes).collect();
    let expected = pers::check_value(&mut OpCount::default(), channel.mac_key(), &raw, &values);
    if !crypto::mac_eq(&check, &expected) {
        return Err(ScriptError::CheckMismatch);
    }
    Ok(Issued { records, seeds })
}

/// Checks a card's preparation certificate against the city's preparer:
/// preparer certificate signed by the root, card certificate signed by the
/// preparer, same issuer, role 04. Returns K_A.
pub fn check_preparation(city: &TestCity, certificate: &[u8]) -> Result<PublicKey, ScriptError> {
    let preparer = &city.preparer_certificate;
    let cert = Certificate::decode(certificate).map_err(|_| ScriptError::NotPrepared)?;
    let ok = preparer.verify(&city.root.public_key()).is_ok()
        && preparer.body().role == Role::Preparer
        && cert.verify(&preparer.body().public_key).is_ok()
        && cert.body().role == Role::PreparedCard
        && cert.body().issuer == preparer.body().issuer;
    if ok {
        Ok(cert.body().public_key)
    } else {
        Err(ScriptError::NotPrepared)
    }
}

/// PSO: VERIFY CERTIFICATE, GET CHALLENGE, EXTERNAL AUTHENTICATE for G groups.
/// Returns the card's group public keys and the secure channel.
pub fn authenticate_station(
    s: &mut Script<'_>,
    city: &TestCity,
    station_ephemeral: &SecretKey,
    groups: u8,
) -> Result<(Vec<PublicKey>, SecureChannel), ScriptError> {
    s.note("PSO: VERIFY CERTIFICATE (station)");
    s.expect_ok("PSO station", &pso_command(&city.station_certificate))?;
    s.note("GET CHALLENGE");
    let challenge = s.expect_ok(
        "GET CHALLENGE",
        &Command::new(cla::ISO, ins::GET_CHALLENGE, 0, 0).with_le(16),
    )?;
    let challenge: [u8; CHALLENGE_LEN] = challenge
        .try_into()
        .map_err(|_| ScriptError::Link("challenge length".into()))?;
    let e_s = crypto::encode_point(&station_ephemeral.public_key());
    let sig = crypto::sign(
        &city.station,
        &pers::station_auth_message(&challenge, &e_s, groups),
    );
    let auth = StationAuth {
        ephemeral: e_s,
        signature: sig,
        groups,
    };
    s.note("EXTERNAL AUTHENTICATE");
    let resp = s.expect_ok(
        "EXTERNAL AUTHENTICATE",
        &Command::new(cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0)
            .with_data(auth.encode())
            .with_le(256),
    )?;
    let answer = CardAuthAnswer::decode(&resp)?;
    let attestation = check_preparation(city, &answer.preparation_certificate)?;
    let channel = SecureChannel::for_station(station_ephemeral, &attestation, &challenge);
    let expected_groups = if answer.sealed_keys.len() > crypto::TAG_LEN {
        ((answer.sealed_keys.len() - crypto::TAG_LEN) / crypto::POINT_LEN) as u8
    } else {
        0
    };
    let keys = channel.open_group_keys(&answer.sealed_keys, expected_groups)?;
    Ok((keys, channel))
}

/// PSO: VERIFY CERTIFICATE.
pub fn pso_command(cert: &Certificate) -> Command {
    Command::new(cla::ISO, ins::PSO, 0x00, 0xBE).with_data(cert.as_bytes().to_vec())
}

/// A reader's tap: SELECT, optionally PSO, GENERAL AUTHENTICATE (+ GET RESPONSE),
/// opened with the reader's key and group.
pub fn verify(
    s: &mut Script<'_>,
    reader: &TestReader,
    requested: AttributeSet,
    date: Date,
    ephemeral: SecretKey,
    send_certificate: bool,
) -> Result<Disclosure, ScriptError> {
    s.note("SELECT");
    s.expect_ok("SELECT", &select_command())?;
    if send_certificate {
        s.note("PSO: VERIFY CERTIFICATE (reader)");
        s.expect_ok("PSO reader", &pso_command(&reader.certificate))?;
    }
    general_authenticate(s, reader, requested, date, ephemeral)
}

/// One GENERAL AUTHENTICATE (+ GET RESPONSE), opened with the reader's key and group.
pub fn general_authenticate(
    s: &mut Script<'_>,
    reader: &TestReader,
    requested: AttributeSet,
    date: Date,
    ephemeral: SecretKey,
) -> Result<Disclosure, ScriptError> {
    let session =
        ReaderSession::with_ephemeral(ephemeral, reader.certificate.fingerprint(), requested, date);
    s.note("GENERAL AUTHENTICATE");
    let resp = s.expect_ok("GENERAL AUTHENTICATE", &session.command())?;
    Ok(session.open(&resp, &reader.key, reader.group)?)
}

/// The sample resident, G groups, fixed test city, prepared first when
/// `prepare`; seeds and decoys from `seed`.
pub fn personalise_sample(
    link: &mut RawLink<'_>,
    prepare: bool,
    seed: u8,
    groups: u8,
) -> Result<Issued, ScriptError> {
    use rand_chacha::rand_core::SeedableRng;
    let city = crate::keys::city();
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([seed; 32]);
    let mut s = Script::new(link);
    personalise(
        &mut s,
        Personalisation {
            city: &city,
            station_ephemeral: crate::keys::test_key("station ephemeral"),
            rng: &mut rng,
            resident: sample_resident(),
            issue_date: crate::keys::date(crate::keys::ISSUE_DATE),
            valid_to: crate::keys::date(crate::keys::VALID_TO),
            groups,
            prepare,
        },
    )
}

/// One library tap (pseudonym, resident) by the fixed test library reader, on TODAY.
pub fn tap_library(
    link: &mut RawLink<'_>,
    pso: bool,
    ephemeral_label: &str,
) -> Result<Disclosure, ScriptError> {
    let city = crate::keys::city();
    let r = crate::keys::reader(&city, "library");
    let mut s = Script::new(link);
    let requested = [AttributeId::PSEUDONYM, AttributeId::RESIDENT]
        .into_iter()
        .collect();
    verify(
        &mut s,
        &r,
        requested,
        crate::keys::date(crate::keys::TODAY),
        crate::keys::test_key(ephemeral_label),
        pso,
    )
}
