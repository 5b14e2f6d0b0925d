//! The card kit: checks a card in any reader against the spec version this
//! build implements. The machinery here sends the commands; what the card must
//! answer at each step comes from [`crate::expect`].
//!
//! The card must be BLANK (fresh from the factory). The kit prepares it for a
//! throwaway city ([`crate::city`]), personalises it, reads it with every
//! reader profile, walks every refusal path and terminates it: the card is
//! used up afterwards.
//!
//! The run goes by phase, one submodule each: `run` is the machinery (a
//! step, its check against the table, the report), `blank` the blank card
//! and its preparation, `issued` personalisation, verification and the
//! refusal paths, `closing` the computed properties and termination. What
//! they share (naming, the commands they send) stays here.

mod blank;
mod closing;
mod issued;
mod run;

use std::time::Duration;

use citycard_proto::attr::AttributeSet;
use citycard_proto::auth::{self, AuthRequest, ReaderSession};
use citycard_proto::cert::Certificate;
use citycard_proto::consts::{cla, ins};
use citycard_proto::pers::CHALLENGE_LEN;
use citycard_proto::record::StoredValue;
use citycard_proto::{apdu::Command, date::Date, error::Error as ProtoError, fci};
use citycard_transport::CardTransport;
use p256::PublicKey;
use rand_core::OsRng;

use crate::city::{self, City, TEST_ISSUER};
use crate::expect::{Expect, SpecVersion, Table};
use crate::link::{Link, Observed};
use crate::report::{Outcome, Report};
use crate::ConformanceError;
use run::Run;

/// Name of a command by INS, for the timing table.
pub fn command_name(ins_byte: u8) -> &'static str {
    match ins_byte {
        ins::SELECT => "SELECT",
        ins::GET_RESPONSE => "GET RESPONSE",
        ins::PREPARE => "PREPARE",
        ins::STORE_PREPARATION_CERTIFICATE => "STORE PREPARATION CERTIFICATE",
        ins::PSO => "PSO: VERIFY CERTIFICATE",
        ins::GET_CHALLENGE => "GET CHALLENGE",
        ins::EXTERNAL_AUTHENTICATE => "EXTERNAL AUTHENTICATE",
        ins::PUT_DATA => "PUT DATA",
        ins::ACTIVATE => "ACTIVATE",
        ins::TERMINATE => "TERMINATE",
        ins::GENERAL_AUTHENTICATE => "GENERAL AUTHENTICATE",
        _ => "other",
    }
}

/// What a reader would conclude from an answer that does not open.
pub fn reader_view(e: &ProtoError) -> String {
    match e {
        ProtoError::TranscriptMismatch => {
            "the answer echoes another tap's challenge (a correct reader says: replay)".into()
        }
        ProtoError::BadMac => {
            "the card's MAC does not verify (a correct reader says: clone)".into()
        }
        ProtoError::Decoy | ProtoError::DecryptionFailed => {
            "the answer's tag does not verify: a decoy (a correct reader retries, then says: refused)"
                .into()
        }
        other => format!("malformed answer: {other:?} (a correct reader says: tampered)"),
    }
}

fn sw_text(sw: u16) -> String {
    format!("{sw:04X}")
}

fn describe(o: &Observed) -> String {
    if o.data.is_empty() {
        sw_text(o.sw)
    } else {
        format!("{} bytes + {}", o.data.len(), sw_text(o.sw))
    }
}

fn expected_text(e: Expect, version: SpecVersion) -> String {
    match e {
        Expect::Sw(sw) => format!("{} and no data", sw_text(sw)),
        Expect::Ok => "9000 and no data".into(),
        Expect::Data(n) => format!("{n} bytes + 9000"),
        Expect::Fci(lc) => format!(
            "FCI (version {:02X}, life cycle {}) + 9000",
            version.byte(),
            lc.name()
        ),
        Expect::CardKey => "7C { 85 preparation certificate, 87 sealed group keys } + 9000".into(),
        Expect::Attestation => "86 21 attestation key + 9000".into(),
        Expect::Sealed => "a sealed issuance check value equal to the station's + 9000".into(),
        Expect::Answer => "an answer that opens and discloses exactly what was asked".into(),
        Expect::Decoy => "a decoy: the length and status words of an answer, not opening".into(),
    }
}

/// `answer_len(request)` of a GENERAL AUTHENTICATE command (`None` when its
/// data is not the request template).
fn decoy_len(cmd: &Command) -> Option<usize> {
    AuthRequest::decode(&cmd.data)
        .ok()
        .map(|r| auth::answer_len(r.requested))
}

/// Steps whose answer is a refusal to a party without the right key: the
/// steps the uniform-refusal property compares (per command). Answers that
/// depend only on the public life cycle (GENERAL AUTHENTICATE on a blank
/// card) or on the command bytes only (malformed data) are not among them.
fn is_refusal(id: &str) -> bool {
    (id.starts_with("refuse.")
        || id.ends_with(".uncached")
        || id.ends_with("-forged-station")
        || id.ends_with("-bad-signature"))
        && !id.ends_with("-malformed")
}

/// Which command a refusal step sends (refusals are compared per command).
fn refusal_command(id: &str) -> &'static str {
    // A prepared card's station refusals (6982) depend only on the public
    // life cycle: compared among themselves.
    if id.starts_with("personalise.") {
        if id.contains("pso") {
            "PSO (prepared card)"
        } else {
            "EXTERNAL AUTHENTICATE (prepared card)"
        }
    } else if id.contains("pso") {
        "PSO"
    } else if id.contains("external-authenticate") || id.ends_with("-bad-signature") {
        "EXTERNAL AUTHENTICATE"
    } else {
        "GENERAL AUTHENTICATE"
    }
}

struct Personalised {
    /// The group keys the card generated, group 0 first.
    group_keys: Vec<PublicKey>,
    /// The stored values, ids ascending.
    values: Vec<StoredValue>,
}

/// The city's first reader (the library profile).
fn library(city: &City) -> Result<&city::Reader, ConformanceError> {
    city.readers
        .first()
        .ok_or(ConformanceError::Kit("no reader"))
}

/// A GENERAL AUTHENTICATE by the library reader, for steps where the card
/// must refuse it (a decoy that must not open with the library's key).
struct LibraryTap<'c> {
    reader: &'c city::Reader,
    session: ReaderSession,
}

impl<'c> LibraryTap<'c> {
    fn new(city: &'c City) -> Result<Self, ConformanceError> {
        let reader = library(city)?;
        let session =
            general_authenticate(reader.certificate.fingerprint(), reader.request, city.today);
        Ok(Self { reader, session })
    }

    /// The refused GENERAL AUTHENTICATE step `id`.
    fn step(&self, run: &mut Run<'_>, id: &str) {
        let opener = Some((&self.session, &self.reader.key, self.reader.group));
        run.ga_step(id, false, &self.session.command(), opener);
    }
}

fn pso(cert: &Certificate) -> Command {
    Command::new(cla::ISO, ins::PSO, 0x00, 0xBE).with_data(cert.as_bytes().to_vec())
}

fn get_challenge() -> Command {
    Command::new(cla::ISO, ins::GET_CHALLENGE, 0, 0).with_le(CHALLENGE_LEN)
}

fn garbage(ins_byte: u8) -> Command {
    Command::new(cla::PROPRIETARY, ins_byte, 0, 0).with_data(vec![0u8; 32])
}

fn select() -> Command {
    fci::select_command()
}

/// A GENERAL AUTHENTICATE session with a fresh ephemeral key.
fn general_authenticate(
    fingerprint: [u8; 8],
    requested: AttributeSet,
    date: Date,
) -> ReaderSession {
    ReaderSession::new(&mut OsRng, fingerprint, requested, date)
}

/// Runs the card kit against the card behind `transport`; `target` names it
/// in the report.
///
/// # Errors
///
/// Only for failures of the kit itself (clock, key generation); everything the
/// card does lands in the report.
pub fn run_card_kit(
    transport: &mut dyn CardTransport,
    target: &str,
) -> Result<Report, ConformanceError> {
    let version = SpecVersion::current().ok_or(ConformanceError::UnknownVersion)?;
    run_card_kit_with(transport, target, version.table())
}

/// [`run_card_kit`] with an explicit expectation table (a draft of the next
/// spec version, or a test's).
///
/// # Errors
///
/// As [`run_card_kit`].
pub fn run_card_kit_with(
    transport: &mut dyn CardTransport,
    target: &str,
    table: &'static Table,
) -> Result<Report, ConformanceError> {
    let version = table.version;
    let today = city::today()?;
    let city = City::generate(TEST_ISSUER, today)?;
    let mut run = Run {
        link: Link::new(transport, table.properties.max_get_response),
        table,
        report: Report::new("card", version.byte(), target),
        broken: None,
        refusals: Vec::new(),
        refusal_lengths: Vec::new(),
        lengths: Vec::new(),
    };
    blank::blank_and_prepare(&mut run, &city)?;
    let card = issued::personalise(&mut run, &city)?;
    if let Some(card) = &card {
        issued::verify(&mut run, &city, card)?;
        issued::refusals(&mut run, &city)?;
    }
    closing::properties(&mut run);
    closing::terminate(&mut run, &city, card.as_ref())?;
    let timings: Vec<(String, Duration)> = run
        .link
        .timings
        .iter()
        .map(|t| (command_name(t.ins).to_owned(), t.elapsed))
        .collect();
    run.report.set_timing(timings);
    Ok(run.report)
}

/// Marks the last step failed with `why`.
fn fail_last(run: &mut Run<'_>, why: String) {
    if let Some(last) = run.report.steps.last_mut() {
        last.outcome = Outcome::Fail;
        last.observed = why;
    }
}
