//! A recording APDU script: a scripted station and reader that talk raw APDUs
//! (doing chaining and GET RESPONSE themselves, as a vector must show them).

use citycard_proto::apdu::{Command, Response};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{Disclosure, ReaderSession};
use citycard_proto::cert::Certificate;
use citycard_proto::consts::{cla, ins};
use citycard_proto::crypto;
use citycard_proto::pers::{self, SecureChannel, StationAuth, CHALLENGE_LEN};
use citycard_proto::record::{AttributeEntry, RecordBody, SALT_LEN};
use citycard_proto::{Date, StatusWord};
use p256::SecretKey;
use rand_core::RngCore;
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
    Protocol(#[from] citycard_proto::Error),
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

/// Station-side parameters for one personalisation.
pub struct Personalisation<'k> {
    /// City keys.
    pub city: &'k TestCity,
    /// The station's ephemeral key for EXTERNAL AUTHENTICATE.
    pub station_ephemeral: SecretKey,
    /// Source of attribute salts.
    pub salts: &'k mut dyn RngCore,
    /// Resident attributes.
    pub resident: Vec<(AttributeId, Vec<u8>)>,
    /// Issue and expiry dates.
    pub valid_from: Date,
    /// Expiry.
    pub valid_to: Date,
    /// Send SET ISSUER ANCHOR first (blank card).
    pub anchor: bool,
}

/// Runs a whole personalisation; returns the signed record.
pub fn personalise(
    s: &mut Script<'_>,
    p: Personalisation<'_>,
) -> Result<citycard_proto::ResidentRecord, ScriptError> {
    s.note("SELECT");
    s.expect_ok("SELECT", &select_command())?;
    let issuer = p.city.station_certificate.body().issuer.clone();
    if p.anchor {
        s.note("SET ISSUER ANCHOR");
        s.expect_ok(
            "SET ISSUER ANCHOR",
            &Command::new(cla::PROPRIETARY, ins::SET_ANCHOR, 0, 0)
                .with_data(pers::encode_anchor(&issuer, &p.city.root.public_key())),
        )?;
    }
    let station_auth = authenticate_station(s, p.city, &p.station_ephemeral)?;
    let (card_key, mut channel) = station_auth;
    let mut entries = Vec::new();
    for (id, value) in &p.resident {
        let mut salt = [0u8; SALT_LEN];
        p.salts.fill_bytes(&mut salt);
        entries.push(AttributeEntry::new(*id, salt, value.clone())?);
    }
    let body = RecordBody::new(
        p.city.station_certificate.fingerprint(),
        p.valid_from,
        p.valid_to,
        card_key,
        &entries,
    )?;
    let record = body.sign(&p.city.station)?;
    let put = |channel: &mut SecureChannel, plaintext: &[u8]| -> Result<Command, ScriptError> {
        let header = [cla::PROPRIETARY, ins::PUT_DATA, 0, 0];
        Ok(Command::new(cla::PROPRIETARY, ins::PUT_DATA, 0, 0)
            .with_data(channel.seal(header, plaintext)?))
    };
    s.note("PUT DATA (record)");
    let cmd = put(&mut channel, record.as_bytes())?;
    s.expect_ok("PUT DATA record", &cmd)?;
    let mut attrs = Vec::new();
    for e in &entries {
        attrs.extend_from_slice(&e.encode());
    }
    s.note("PUT DATA (attributes)");
    let cmd = put(&mut channel, &attrs)?;
    s.expect_ok("PUT DATA attributes", &cmd)?;
    s.note("ACTIVATE");
    let header = [cla::PROPRIETARY, ins::ACTIVATE, 0, 0];
    let cmd =
        Command::new(cla::PROPRIETARY, ins::ACTIVATE, 0, 0).with_data(channel.seal(header, &[])?);
    s.expect_ok("ACTIVATE", &cmd)?;
    Ok(record)
}

/// PSO: VERIFY CERTIFICATE, GET CHALLENGE, EXTERNAL AUTHENTICATE.
/// Returns the card's public key and the secure channel.
pub fn authenticate_station(
    s: &mut Script<'_>,
    city: &TestCity,
    station_ephemeral: &SecretKey,
) -> Result<(p256::PublicKey, SecureChannel), ScriptError> {
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
    let sig = crypto::sign(&city.station, &pers::station_auth_message(&challenge, &e_s));
    let auth = StationAuth {
        ephemeral: e_s,
        signature: sig,
    };
    s.note("EXTERNAL AUTHENTICATE");
    let resp = s.expect_ok(
        "EXTERNAL AUTHENTICATE",
        &Command::new(cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0)
            .with_data(auth.encode())
            .with_le(256),
    )?;
    let card_key = pers::decode_card_key(&resp)?;
    Ok((
        card_key,
        SecureChannel::for_station(station_ephemeral, &card_key, &challenge),
    ))
}

/// PSO: VERIFY CERTIFICATE.
pub fn pso_command(cert: &Certificate) -> Command {
    Command::new(cla::ISO, ins::PSO, 0x00, 0xBE).with_data(cert.as_bytes().to_vec())
}

/// A reader's tap: SELECT, optionally PSO, GENERAL AUTHENTICATE (+ GET RESPONSE).
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
    let session =
        ReaderSession::with_ephemeral(ephemeral, reader.certificate.fingerprint(), requested, date);
    s.note("GENERAL AUTHENTICATE");
    let resp = s.expect_ok("GENERAL AUTHENTICATE", &session.command())?;
    Ok(session.open(&resp, &reader.key)?)
}

/// Personalises the sample resident with the fixed test city over `link`
/// (anchoring first when `anchor`), salts drawn from `salt_seed`.
pub fn personalise_sample(
    link: &mut RawLink<'_>,
    anchor: bool,
    salt_seed: u8,
) -> Result<citycard_proto::ResidentRecord, ScriptError> {
    use rand_chacha::rand_core::SeedableRng;
    let city = crate::keys::city();
    let mut salts = rand_chacha::ChaCha20Rng::from_seed([salt_seed; 32]);
    let mut s = Script::new(link);
    personalise(
        &mut s,
        Personalisation {
            city: &city,
            station_ephemeral: crate::keys::test_key("station ephemeral"),
            salts: &mut salts,
            resident: sample_resident(),
            valid_from: crate::keys::date((2026, 11, 20)),
            valid_to: crate::keys::date((2031, 11, 19)),
            anchor,
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
