//! The card kit: checks a card in any reader against the spec version this
//! build implements. The machinery here sends the commands; what the card must
//! answer at each step comes from [`crate::expect`].
//!
//! The card must be BLANK (fresh from the factory). The kit prepares it for a
//! throwaway city ([`crate::city`]), personalises it, reads it with every
//! reader profile, walks every refusal path and terminates it: the card is
//! used up afterwards.

use std::time::{Duration, Instant};

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{self, AuthRequest, Disclosure, ReaderSession};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{cla, ins, AID};
use citycard_proto::pers::{self, CardAuthAnswer, CHALLENGE_LEN};
use citycard_proto::record::{self, StoredValue};
use citycard_proto::{crypto, fci, tlv, Command, Date, Error as ProtoError};
use citycard_transport::CardTransport;
use p256::{PublicKey, SecretKey};
use rand_core::OsRng;

use crate::city::{self, City, GROUPS, OTHER_ISSUER, TEST_ISSUER};
use crate::expect::{Expect, LengthRule, SpecVersion, Table};
use crate::issue::{self, secured, station_auth};
use crate::link::{Link, LinkError, Observed};
use crate::report::{Outcome, Report};
use crate::ConformanceError;

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

/// A run of the card kit.
struct Run<'t> {
    link: Link<'t>,
    table: &'static Table,
    report: Report,
    broken: Option<String>,
    /// Observed refusals, for the uniform-refusal property.
    refusals: Vec<(String, Observed)>,
    /// (step, `answer_len(request)`) of every GENERAL AUTHENTICATE refusal.
    refusal_lengths: Vec<(String, usize)>,
    /// (step, profile, answer length, `answer_len(request)`) of every answer.
    lengths: Vec<(String, &'static str, usize, usize)>,
}

impl<'t> Run<'t> {
    fn expect(&self, id: &str) -> Option<(Expect, &'static str)> {
        self.table.entry(id).map(|e| (e.expect, e.spec))
    }

    fn record(
        &mut self,
        id: &str,
        outcome: Outcome,
        expected: String,
        observed: String,
        t: Duration,
    ) {
        let spec = self.expect(id).map(|(_, s)| s).unwrap_or("");
        self.report.push(id, spec, outcome, expected, observed, t);
    }

    /// Runs one exchange step and checks it against the table.
    fn step(
        &mut self,
        id: &str,
        exchange: impl FnOnce(&mut Link<'t>) -> Result<Observed, LinkError>,
    ) -> Option<Observed> {
        let Some((expect, _)) = self.expect(id) else {
            self.record(
                id,
                Outcome::Fail,
                "an entry in the spec table".into(),
                "no expectation for this step (kit bug)".into(),
                Duration::ZERO,
            );
            return None;
        };
        let expected = expected_text(expect, self.table.version);
        if let Some(why) = &self.broken {
            let why = format!("not run: {why}");
            self.record(id, Outcome::Skipped, expected, why, Duration::ZERO);
            return None;
        }
        let start = Instant::now();
        match exchange(&mut self.link) {
            Err(e) => {
                let text = e.to_string();
                self.broken = Some(format!("the link broke at {id}: {text}"));
                self.record(id, Outcome::Fail, expected, text, start.elapsed());
                None
            }
            Ok(o) => {
                let verdict = self.check(expect, &o);
                if is_refusal(id) {
                    self.refusals.push((id.to_owned(), o.clone()));
                }
                let outcome = if verdict.is_ok() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                let observed = verdict.err().unwrap_or_else(|| describe(&o));
                self.record(id, outcome, expected, observed, o.elapsed);
                Some(o)
            }
        }
    }

    fn check(&self, expect: Expect, o: &Observed) -> Result<(), String> {
        let ok = match expect {
            Expect::Sw(sw) => o.sw == sw && o.data.is_empty(),
            Expect::Ok => o.sw == 0x9000 && o.data.is_empty(),
            Expect::Data(n) => o.sw == 0x9000 && o.data.len() == n,
            Expect::Fci(lc) => {
                o.sw == 0x9000
                    && fci::life_cycle(&o.data) == Some(lc)
                    && o.data
                        .windows(3)
                        .any(|w| w == [0x80, 0x01, self.table.version.byte()])
            }
            Expect::CardKey => o.sw == 0x9000 && CardAuthAnswer::decode(&o.data).is_ok(),
            Expect::Attestation => o.sw == 0x9000 && pers::decode_attestation_key(&o.data).is_ok(),
            Expect::Sealed => o.sw == 0x9000 && !o.data.is_empty(),
            // Checked by the tap itself.
            Expect::Answer | Expect::Decoy => o.sw == 0x9000,
        };
        if ok {
            Ok(())
        } else {
            Err(describe(o))
        }
    }

    /// A step whose check is a computation, not an exchange.
    fn verdict(&mut self, id: &str, result: Result<String, String>) {
        let Some((expect, _)) = self.expect(id) else {
            return;
        };
        let expected = match id {
            "property.uniform-refusal" => {
                "every refusal of one command: the same status word, and the length of an answer to the same request".into()
            }
            "property.answer-length" => match self.table.properties.answer_length {
                LengthRule::PaddedTo(n) => format!(
                    "plaintext padded to a multiple of {n}; the same length for the same request"
                ),
                LengthRule::FunctionOfRequest => {
                    "answer_len(request) bytes for every answer, whatever the card holds".into()
                }
            },
            "verify.pseudonyms-per-partner" => {
                "the same pseudonym for one partner, different ones across partners".into()
            }
            _ => expected_text(expect, self.table.version),
        };
        if self.broken.is_some() {
            self.record(
                id,
                Outcome::Skipped,
                expected,
                "not run: the link broke".into(),
                Duration::ZERO,
            );
            return;
        }
        match result {
            Ok(observed) => self.record(id, Outcome::Pass, expected, observed, Duration::ZERO),
            Err(observed) => self.record(id, Outcome::Fail, expected, observed, Duration::ZERO),
        }
    }

    /// A GENERAL AUTHENTICATE the card must refuse, whatever form the
    /// table's version gives a refusal: a status word, or a decoy (an answer
    /// that must not open with the reader's key `opener`).
    fn ga_step(
        &mut self,
        id: &str,
        select_first: bool,
        cmd: &Command,
        opener: Option<(&ReaderSession, &SecretKey, u8)>,
    ) {
        let observed = self.step(id, |l| {
            if select_first {
                l.send(&select())?;
            }
            l.send(cmd)
        });
        let is_decoy = matches!(self.expect(id), Some((Expect::Decoy, _)));
        let fixed_len = self.table.properties.answer_length == LengthRule::FunctionOfRequest;
        if let (true, Some(want)) = (fixed_len && is_refusal(id), decoy_len(cmd)) {
            self.refusal_lengths.push((id.to_owned(), want));
        }
        if let (true, Some(o)) = (is_decoy, &observed) {
            if let Some(want) = decoy_len(cmd) {
                if o.sw == 0x9000 && o.data.len() != want {
                    if let Some(last) = self.report.steps.last_mut() {
                        last.outcome = Outcome::Fail;
                        last.observed = format!(
                            "a decoy of {} bytes where answer_len(request) is {want}",
                            o.data.len()
                        );
                    }
                }
            }
        }
        if let (true, Some(o), Some((session, key, group))) = (is_decoy, observed, opener) {
            if o.sw == 0x9000 && session.open(&o.data, key, group).is_ok() {
                if let Some(last) = self.report.steps.last_mut() {
                    last.outcome = Outcome::Fail;
                    last.observed =
                        "the answer opened: the card disclosed instead of refusing".into();
                }
            }
        }
    }

    fn send(link: &mut Link<'_>, cmd: &Command) -> Result<Observed, LinkError> {
        link.send(cmd)
    }

    /// One GENERAL AUTHENTICATE that must answer (or, per the table, decoy).
    fn tap(
        &mut self,
        id: &str,
        city: &City,
        reader: usize,
        card: &Personalised,
    ) -> Option<Disclosure> {
        let r = city.readers.get(reader)?;
        let session = ReaderSession::new(
            &mut OsRng,
            r.certificate.fingerprint(),
            r.request,
            city.today,
        );
        let cmd = session.command();
        let start = Instant::now();
        let (expect, _) = self.expect(id)?;
        let expected = expected_text(expect, self.table.version);
        if let Some(why) = &self.broken {
            let why = format!("not run: {why}");
            self.record(id, Outcome::Skipped, expected, why, Duration::ZERO);
            return None;
        }
        let o = match self.link.send(&cmd) {
            Ok(o) => o,
            Err(e) => {
                let text = e.to_string();
                self.broken = Some(format!("the link broke at {id}: {text}"));
                self.record(id, Outcome::Fail, expected, text, start.elapsed());
                return None;
            }
        };
        if o.sw != 0x9000 {
            let text = format!("status {} ({})", sw_text(o.sw), describe(&o));
            self.record(id, Outcome::Fail, expected, text, o.elapsed);
            return None;
        }
        self.lengths.push((
            id.to_owned(),
            r.profile,
            o.data.len(),
            auth::answer_len(r.request),
        ));
        let opened = session.open(&o.data, &r.key, r.group);
        match (expect, opened) {
            (Expect::Decoy, Err(_)) => {
                self.record(id, Outcome::Pass, expected, describe(&o), o.elapsed);
                None
            }
            (Expect::Decoy, Ok(_)) => {
                self.record(
                    id,
                    Outcome::Fail,
                    expected,
                    "the answer opened".into(),
                    o.elapsed,
                );
                None
            }
            (_, Err(e)) => {
                self.record(id, Outcome::Fail, expected, reader_view(&e), o.elapsed);
                None
            }
            (_, Ok(d)) => match self.check_disclosure(city, r, card, &d) {
                Ok(()) => {
                    self.record(id, Outcome::Pass, expected, describe(&o), o.elapsed);
                    Some(d)
                }
                Err(why) => {
                    self.record(id, Outcome::Fail, expected, why, o.elapsed);
                    None
                }
            },
        }
    }

    fn check_disclosure(
        &self,
        city: &City,
        reader: &city::Reader,
        card: &Personalised,
        d: &Disclosure,
    ) -> Result<(), String> {
        let requested = reader.request;
        d.record
            .verify(&city.station.public_key())
            .map_err(|_| "the record's station signature does not verify".to_string())?;
        if d.record.body().group != reader.group {
            return Err("the record is not the one of the reader's group".into());
        }
        if card.group_keys.get(usize::from(reader.group)) != Some(&d.record.body().card_key) {
            return Err(
                "the record's card key is not the key the card generated for the group".into(),
            );
        }
        let want: Vec<(AttributeId, &[u8])> = card
            .values
            .iter()
            .filter(|v| requested.contains(v.id))
            .map(|v| (v.id, v.value.as_slice()))
            .collect();
        let got: Vec<(AttributeId, &[u8])> = d.present().collect();
        let asked = requested
            .iter()
            .filter(|id| record::entry_len(*id).is_some())
            .count();
        if want != got || d.entries.len() != asked {
            return Err("the disclosed attributes are not exactly the requested ones held".into());
        }
        if let Some(p) = &d.predicates {
            let asked: AttributeSet = requested
                .iter()
                .filter(|id| id.age_threshold().is_some())
                .collect();
            let birth = card
                .values
                .iter()
                .find(|v| v.id == AttributeId::BIRTH_DATE)
                .and_then(|v| Date::from_bytes(&v.value).ok());
            let holds: AttributeSet = match birth {
                Some(b) => asked
                    .iter()
                    .filter(|id| {
                        id.age_threshold()
                            .is_some_and(|n| b.years_until(city.today) >= n)
                    })
                    .collect(),
                None => AttributeSet::EMPTY,
            };
            if p.answered != asked || p.holds != holds {
                return Err(format!(
                    "predicates: answered {} holds {}, expected answered {asked} holds {holds}",
                    p.answered, p.holds
                ));
            }
        }
        Ok(())
    }
}

/// A station certificate of `issuer` signed by `root`.
fn station_certificate(
    issuer: &str,
    root: &SecretKey,
    key: &SecretKey,
    today: Date,
) -> Result<Certificate, ConformanceError> {
    Ok(CertificateBody {
        issuer: issuer.into(),
        holder: "station".into(),
        role: Role::Station,
        grants: AttributeSet::EMPTY,
        domain: None,
        group: None,
        effective: city::shift(today, -30)?,
        expiry: city::shift(today, 365)?,
        public_key: key.public_key(),
    }
    .sign(root)?)
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
    blank(&mut run, &city)?;
    let card = personalise(&mut run, &city)?;
    if let Some(card) = &card {
        verify(&mut run, &city, card)?;
        refusals(&mut run, &city)?;
    }
    properties(&mut run);
    terminate(&mut run, &city, card.as_ref())?;
    let timings: Vec<(String, Duration)> = run
        .link
        .timings
        .iter()
        .map(|t| (command_name(t.ins).to_owned(), t.elapsed))
        .collect();
    run.report.set_timing(timings);
    Ok(run.report)
}

fn blank(run: &mut Run<'_>, city: &City) -> Result<(), ConformanceError> {
    let library = city
        .readers
        .first()
        .ok_or(ConformanceError::Kit("no reader"))?;
    run.step("blank.not-selected", |l| {
        l.reset()?;
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0, 0, 0x10])
    });
    run.step("blank.select-unknown-aid", |l| {
        l.raw_observed(&[
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0, 0, 0, 0x03, 0x10, 0x10, 0x00,
        ])
    });
    run.step("blank.select", |l| Run::send(l, &select()));
    run.step("blank.select-no-fci", |l| {
        Run::send(
            l,
            &Command::new(cla::ISO, ins::SELECT, 0x04, 0x0C).with_data(AID.to_vec()),
        )
    });
    run.step("blank.wrong-class", |l| {
        l.raw_observed(&[0x40, ins::GET_CHALLENGE, 0, 0, 0x10])
    });
    run.step("blank.unknown-instruction", |l| {
        l.raw_observed(&[0x00, 0x20, 0, 0])
    });
    run.step("blank.extended-length", |l| {
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0, 0, 0x00, 0x00, 0x10])
    });
    run.step("blank.chaining-not-supported", |l| {
        let mut apdu = vec![cla::CHAIN, ins::SELECT, 0x04, 0x00, 0x0A];
        apdu.extend_from_slice(&AID);
        l.raw_observed(&apdu)
    });
    run.step("blank.get-response-nothing-pending", |l| {
        l.raw_observed(&[0x00, ins::GET_RESPONSE, 0, 0, 0x00])
    });
    run.step("blank.get-challenge", |l| Run::send(l, &get_challenge()));
    let station_cert = city.station_certificate.clone();
    run.step("blank.pso", |l| Run::send(l, &pso(&station_cert)));
    let e_s = city::fresh_key();
    let ext = station_auth(&city.station, &e_s, &[0; CHALLENGE_LEN], GROUPS);
    run.step("blank.external-authenticate", |l| Run::send(l, &ext));
    run.step("blank.put-data", |l| Run::send(l, &garbage(ins::PUT_DATA)));
    run.step("blank.activate", |l| Run::send(l, &garbage(ins::ACTIVATE)));
    run.step("blank.terminate", |l| {
        Run::send(l, &garbage(ins::TERMINATE))
    });
    let ga = general_authenticate(
        library.certificate.fingerprint(),
        library.request,
        city.today,
    );
    let lib_key = Some((&ga, &library.key, library.group));
    run.ga_step("blank.general-authenticate", false, &ga.command(), lib_key);

    // Preparation.
    let prepared_on = city.today;
    run.step("prepare.store-without-prepare", |l| {
        Run::send(
            l,
            &Command::new(cla::PROPRIETARY, ins::STORE_PREPARATION_CERTIFICATE, 0, 0)
                .with_data(city.station_certificate.as_bytes().to_vec()),
        )
    });
    run.step("prepare.malformed", |l| {
        Run::send(
            l,
            &Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
                .with_data(vec![0x42, 0x01, 0x41])
                .with_le(256),
        )
    });
    let prepare = issue::prepare_command(city, prepared_on)?;
    let k_a = run
        .step("prepare.prepare", |l| Run::send(l, &prepare))
        .and_then(|o| pers::decode_attestation_key(&o.data).ok());
    match k_a {
        Some(k_a) => {
            let cert = issue::preparation_certificate(city, &k_a, prepared_on)?;
            let store = issue::store_certificate_command(&cert);
            run.step("prepare.store-certificate", |l| Run::send(l, &store));
        }
        None => {
            run.step("prepare.store-certificate", |_| {
                Err(LinkError::Transport(
                    "PREPARE gave no attestation key".into(),
                ))
            });
        }
    }
    run.step("prepare.select", |l| Run::send(l, &select()));
    run.step("prepare.again", |l| Run::send(l, &prepare));
    run.step("prepare.put-data", |l| {
        Run::send(l, &garbage(ins::PUT_DATA))
    });
    run.step("prepare.activate", |l| {
        Run::send(l, &garbage(ins::ACTIVATE))
    });
    run.step("prepare.terminate", |l| {
        Run::send(l, &garbage(ins::TERMINATE))
    });
    run.ga_step(
        "prepare.general-authenticate",
        false,
        &ga.command(),
        lib_key,
    );
    let first = run.step("prepare.get-challenge", |l| Run::send(l, &get_challenge()));
    run.step("prepare.get-challenge-wrong-le", |l| {
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0, 0, 0x08])
    });
    run.step("prepare.wrong-p1p2", |l| {
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0x01, 0x00, 0x10])
    });
    // Command chaining: a chain broken by another command, and a chain whose
    // data passes the limit.
    let station_bytes = city.station_certificate.as_bytes().to_vec();
    let first_segment = |l: &mut Link<'_>| {
        let part = station_bytes.get(..64).unwrap_or_default();
        let mut apdu = vec![cla::CHAIN, ins::PSO, 0x00, 0xBE, part.len() as u8];
        apdu.extend_from_slice(part);
        l.raw_observed(&apdu)
    };
    run.step("prepare.chain-first-segment", first_segment);
    run.step("prepare.chain-interrupted", |l| l.send(&get_challenge()));
    run.step("prepare.chain-too-long", |l| {
        let mut last = None;
        for _ in 0..5 {
            let mut apdu = vec![cla::CHAIN, ins::PSO, 0x00, 0xBE, 0xFF];
            apdu.extend_from_slice(&[0x00; 0xFF]);
            let o = l.raw_observed(&apdu)?;
            let done = o.sw != 0x9000;
            last = Some(o);
            if done {
                break;
            }
        }
        last.ok_or(LinkError::NoStatusWord)
    });
    // A new power-up must not repeat the challenge (no deterministic mode
    // in a production card, and no randomness restarting at power-up).
    let second = run.step("prepare.challenges-differ", |l| {
        l.reset()?;
        let s = l.send(&select())?;
        if s.sw != 0x9000 {
            return Ok(s);
        }
        l.send(&get_challenge())
    });
    if let (Some(a), Some(b)) = (first, second) {
        if a.data == b.data && a.sw == 0x9000 {
            if let Some(last) = run.report.steps.last_mut() {
                last.outcome = Outcome::Fail;
                last.observed =
                    "the same challenge after a new power-up (deterministic randomness?)".into();
            }
        }
    }
    run.step("prepare.external-authenticate-no-station", |l| {
        Run::send(l, &ext)
    });
    Ok(())
}

/// Marks the last step failed with `why`.
fn fail_last(run: &mut Run<'_>, why: String) {
    if let Some(last) = run.report.steps.last_mut() {
        last.outcome = Outcome::Fail;
        last.observed = why;
    }
}

fn personalise(run: &mut Run<'_>, city: &City) -> Result<Option<Personalised>, ConformanceError> {
    // A station certificate of this issuer signed by another root.
    let forger = city::fresh_key();
    let forged = station_certificate(&city.issuer, &forger, &city.station, city.today)?;
    run.step("personalise.pso-forged-station", |l| {
        l.send(&select())?;
        l.send(&pso(&forged))
    });
    let station = city.station_certificate.clone();
    run.step("personalise.pso-station", |l| l.send(&pso(&station)));
    let c = run.step("personalise.get-challenge", |l| l.send(&get_challenge()));
    let e_s = city::fresh_key();
    let challenge = c.map(|c| c.data).unwrap_or_default();
    let wrong = station_auth(&forger, &e_s, &challenge, GROUPS);
    run.step("personalise.external-authenticate-bad-signature", |l| {
        l.send(&wrong)
    });
    run.step("personalise.pso-station-again", |l| l.send(&pso(&station)));
    let c = run.step("personalise.get-challenge-again", |l| {
        l.send(&get_challenge())
    });
    let challenge = c.map(|c| c.data).unwrap_or_default();
    let auth = station_auth(&city.station, &e_s, &challenge, GROUPS);
    let answer = run.step("personalise.external-authenticate", |l| l.send(&auth));
    if let Some(answer) = answer.filter(|a| a.sw == 0x9000) {
        match issue::open_card_auth(city, &e_s, &challenge, &answer.data, GROUPS) {
            Ok((_, mut channel)) => {
                run.step("personalise.put-data-bad-mac", |l| {
                    l.send(&garbage(ins::PUT_DATA))
                });
                let sealed = secured(&mut channel, ins::PUT_DATA, &[])?;
                run.step("personalise.put-data-after-failure", |l| l.send(&sealed));
            }
            Err(e) => fail_last(run, e.to_string()),
        }
    }
    // Start again: a fresh station session.
    run.step("personalise.restart-pso", |l| {
        l.send(&select())?;
        l.send(&pso(&station))
    });
    let c = run.step("personalise.restart-get-challenge", |l| {
        l.send(&get_challenge())
    });
    let challenge = c.map(|c| c.data).unwrap_or_default();
    let e_s = city::fresh_key();
    let auth = station_auth(&city.station, &e_s, &challenge, GROUPS);
    let answer = run.step("personalise.restart-external-authenticate", |l| {
        l.send(&auth)
    });
    let opened = answer
        .filter(|a| a.sw == 0x9000)
        .map(|a| issue::open_card_auth(city, &e_s, &challenge, &a.data, GROUPS));
    let (group_keys, mut channel) = match opened {
        Some(Ok(x)) => x,
        Some(Err(e)) => {
            fail_last(run, e.to_string());
            run.broken
                .get_or_insert_with(|| "personalisation did not start".into());
            return Ok(None);
        }
        None => {
            run.broken
                .get_or_insert_with(|| "personalisation did not start".into());
            return Ok(None);
        }
    };
    let valid_from = record::valid_from_for(city.today, city.station_certificate.body().effective);
    let staged = issue::stage(city, &group_keys, valid_from, city::shift(city.today, 365)?)?;
    // An attribute the dictionary does not define: refused, session kept.
    let bad = secured(&mut channel, ins::PUT_DATA, &[0xC1, 0x02, 0x0A, 0x01])?;
    run.step("personalise.put-data-bad-plaintext", |l| l.send(&bad));
    let mut puts = Vec::new();
    for plaintext in &staged.plaintexts {
        puts.push(secured(&mut channel, ins::PUT_DATA, plaintext)?);
    }
    run.step("personalise.put-data", |l| {
        let mut last = None;
        for cmd in &puts {
            let o = l.send(cmd)?;
            let done = o.sw != 0x9000;
            last = Some(o);
            if done {
                break;
            }
        }
        last.ok_or(LinkError::NoStatusWord)
    });
    let activate = secured(&mut channel, ins::ACTIVATE, &[])?;
    let check = run.step("personalise.activate", |l| l.send(&activate));
    if let Some(o) = check.filter(|o| o.sw == 0x9000) {
        match issue::check_activation(&channel, &staged, &o.data) {
            Ok(true) => {}
            Ok(false) => fail_last(
                run,
                "the issuance check value differs from the one over what was sent".into(),
            ),
            Err(e) => fail_last(run, format!("the sealed check value does not open: {e:?}")),
        }
    }
    run.step("personalise.select", |l| l.send(&select()));
    let prepare = issue::prepare_command(city, city.today)?;
    run.step("issued.prepare", |l| l.send(&prepare));
    run.step("issued.put-data", |l| l.send(&garbage(ins::PUT_DATA)));
    run.step("issued.activate", |l| l.send(&garbage(ins::ACTIVATE)));
    Ok(Some(Personalised {
        group_keys,
        values: staged.values,
    }))
}

fn verify(run: &mut Run<'_>, city: &City, card: &Personalised) -> Result<(), ConformanceError> {
    let mut pseudonyms = Vec::new();
    for (i, r) in city.readers.iter().enumerate() {
        let p = r.profile;
        let ga = general_authenticate(r.certificate.fingerprint(), r.request, city.today);
        // A new power-up: the PSO below is the first one, whose accepted
        // certificate the card caches (§6.4 step 4).
        if run.broken.is_none() {
            if let Err(e) = run.link.reset() {
                run.broken = Some(format!("reset before verify.{p}.uncached: {e}"));
            }
        }
        run.ga_step(
            &format!("verify.{p}.uncached"),
            true,
            &ga.command(),
            Some((&ga, &r.key, r.group)),
        );
        let cert = r.certificate.clone();
        run.step(&format!("verify.{p}.pso"), |l| l.send(&pso(&cert)));
        let first = run.tap(&format!("verify.{p}.first-tap"), city, i, card);
        // A new tap: reset, SELECT, GENERAL AUTHENTICATE with the cached certificate.
        if run.broken.is_none() {
            if let Err(e) = run
                .link
                .reset()
                .and_then(|()| run.link.send(&select()).map(|_| ()))
            {
                run.broken = Some(format!("reset before verify.{p}.cached-tap: {e}"));
            }
        }
        let cached = run.tap(&format!("verify.{p}.cached-tap"), city, i, card);
        pseudonyms.push((
            p,
            first.and_then(|d| d.pseudonym),
            cached.and_then(|d| d.pseudonym),
        ));
    }
    let library = pseudonyms.iter().find(|x| x.0 == "library");
    let full = pseudonyms.iter().find(|x| x.0 == "full");
    let result = match (library, full) {
        (Some((_, Some(a1), Some(a2))), Some((_, Some(b1), _))) if a1 == a2 && a1 != b1 => {
            Ok("stable for the library, different for the full-identity partner".into())
        }
        (Some((_, Some(a1), Some(a2))), _) if a1 != a2 => {
            Err("one partner got two different pseudonyms".into())
        }
        (Some((_, Some(a1), _)), Some((_, Some(b1), _))) if a1 == b1 => {
            Err("two partners got the same pseudonym".into())
        }
        _ => Err("no pseudonyms to compare (a tap failed)".into()),
    };
    run.verdict("verify.pseudonyms-per-partner", result);
    Ok(())
}

fn refusals(run: &mut Run<'_>, city: &City) -> Result<(), ConformanceError> {
    let today = city.today;
    let library = city
        .readers
        .first()
        .ok_or(ConformanceError::Kit("no reader"))?;
    let fp = library.certificate.fingerprint();
    let other_root = city::fresh_key();
    let other_key = city::fresh_key();
    let other_city = city::reader_body(
        OTHER_ISSUER,
        "library",
        library.request,
        library.group,
        city::shift(today, -10)?,
        city::shift(today, 180)?,
        &other_key,
    )
    .sign(&other_root)?;
    run.step("refuse.pso-other-city", |l| {
        l.send(&select())?;
        l.send(&pso(&other_city))
    });
    let forged = city::reader_body(
        &city.issuer,
        "library",
        library.request,
        library.group,
        city::shift(today, -10)?,
        city::shift(today, 180)?,
        &other_key,
    )
    .sign(&other_root)?;
    run.step("refuse.pso-forged-reader", |l| l.send(&pso(&forged)));
    let expired = city::reader_body(
        &city.issuer,
        "old",
        library.request,
        library.group,
        city::shift(today, -100)?,
        city::shift(today, -20)?,
        &other_key,
    )
    .sign(&city.root)?;
    run.step("refuse.pso-expired-reader", |l| l.send(&pso(&expired)));
    run.step("refuse.pso-malformed", |l| {
        l.send(
            &Command::new(cla::ISO, ins::PSO, 0x00, 0xBE)
                .with_data(vec![0x7F, 0x21, 0x03, 0x01, 0x02, 0x03]),
        )
    });
    let unknown = general_authenticate(forged.fingerprint(), library.request, today);
    run.ga_step(
        "refuse.ga-unknown-certificate",
        false,
        &unknown.command(),
        Some((&unknown, &library.key, library.group)),
    );
    let beyond = general_authenticate(fp, library.request.with(AttributeId::NAME), today);
    run.ga_step(
        "refuse.ga-beyond-grants",
        false,
        &beyond.command(),
        Some((&beyond, &library.key, library.group)),
    );
    let early = general_authenticate(fp, library.request, city::shift(today, -11)?);
    run.ga_step(
        "refuse.ga-date-before-card-date",
        false,
        &early.command(),
        Some((&early, &library.key, library.group)),
    );
    let late = general_authenticate(fp, library.request, city::shift(today, 181)?);
    run.ga_step(
        "refuse.ga-date-after-certificate",
        false,
        &late.command(),
        Some((&late, &library.key, library.group)),
    );
    // A request whose E_R is not on the curve.
    let mut data = Vec::new();
    tlv::push(&mut data, 0x80, &fp);
    let mut bad_point = [0xFFu8; 33];
    bad_point[0] = 0x02;
    tlv::push(&mut data, 0x81, &bad_point);
    tlv::push(&mut data, 0x82, &library.request.to_bytes());
    tlv::push(&mut data, 0x83, &today.to_bytes());
    let invalid = Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
        .with_data(tlv::encode(0x7C, &data))
        .with_le(256);
    run.ga_step("refuse.ga-invalid-point", false, &invalid, None);
    let malformed = Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
        .with_data(vec![0x7C, 0x03, 0x80, 0x01, 0x00])
        .with_le(256);
    run.ga_step("refuse.ga-malformed", false, &malformed, None);
    // EXTERNAL AUTHENTICATE by a reader (no station certificate in the session).
    let reader_auth = library.key.clone();
    run.step("refuse.external-authenticate-reader", |l| {
        let c = l.send(&get_challenge())?;
        l.send(&station_auth(
            &reader_auth,
            &city::fresh_key(),
            &c.data,
            GROUPS,
        ))
    });
    Ok(())
}

fn properties(run: &mut Run<'_>) {
    let props = run.table.properties;
    if props.uniform_refusal {
        let mut odd = Vec::new();
        let mut summary = Vec::new();
        for command in [
            "PSO (prepared card)",
            "EXTERNAL AUTHENTICATE (prepared card)",
            "PSO",
            "EXTERNAL AUTHENTICATE",
            "GENERAL AUTHENTICATE",
        ] {
            let group: Vec<&(String, Observed)> = run
                .refusals
                .iter()
                .filter(|(id, _)| refusal_command(id) == command)
                .collect();
            let Some((_, first)) = group.first() else {
                continue;
            };
            // Within one command, every refusal: the same status word, and
            // the same length (none for PSO and EXTERNAL AUTHENTICATE;
            // answer_len(request) for GENERAL AUTHENTICATE, checked per step),
            // whichever check failed.
            let fixed = |id: &str| {
                run.refusal_lengths
                    .iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, n)| *n)
            };
            odd.extend(
                group
                    .iter()
                    .filter(|(id, o)| {
                        o.sw != first.sw
                            || match fixed(id) {
                                Some(n) => o.data.len() != n,
                                None => o.data.len() != first.data.len(),
                            }
                    })
                    .map(|(id, o)| {
                        format!(
                            "{id}: {} where other {command} refusals give {}",
                            describe(o),
                            describe(first)
                        )
                    }),
            );
            let times: Vec<f64> = group
                .iter()
                .map(|(_, o)| o.elapsed.as_secs_f64() * 1000.0)
                .collect();
            let min = times.iter().copied().fold(f64::INFINITY, f64::min);
            let max = times.iter().copied().fold(0.0, f64::max);
            summary.push(format!(
                "{command}: {} refusals, all {} ({min:.2}–{max:.2} ms)",
                group.len(),
                describe(first)
            ));
        }
        let result = if summary.is_empty() {
            Err("no refusal observed".to_string())
        } else if odd.is_empty() {
            Ok(summary.join("; "))
        } else {
            Err(format!("refusals differ: {}", odd.join("; ")))
        };
        run.verdict("property.uniform-refusal", result);
    }
    let mut problems = Vec::new();
    for (id, profile, len, fixed) in &run.lengths {
        match props.answer_length {
            LengthRule::PaddedTo(n) => {
                if len
                    .checked_sub(crypto::TAG_LEN)
                    .is_none_or(|p| n == 0 || p % n != 0)
                {
                    problems.push(format!("{id}: answer of {len} bytes is not padded to {n}"));
                }
            }
            LengthRule::FunctionOfRequest => {
                if len != fixed {
                    problems.push(format!(
                        "{id}: {len} bytes where answer_len(request) is {fixed}"
                    ));
                }
            }
        }
        if let Some((other, _, l2, _)) = run.lengths.iter().find(|(_, p, _, _)| p == profile) {
            if l2 != len {
                problems.push(format!(
                    "{id}: {len} bytes, {other}: {l2} bytes for the same request"
                ));
            }
        }
    }
    let result = if run.lengths.is_empty() {
        Err("no answer observed".into())
    } else if problems.is_empty() {
        Ok(format!(
            "{} answers, lengths as the spec fixes them",
            run.lengths.len()
        ))
    } else {
        Err(problems.join("; "))
    };
    run.verdict("property.answer-length", result);
}

fn terminate(
    run: &mut Run<'_>,
    city: &City,
    card: Option<&Personalised>,
) -> Result<(), ConformanceError> {
    run.step("terminate.without-session", |l| {
        l.send(&select())?;
        l.send(&garbage(ins::TERMINATE))
    });
    let station = city.station_certificate.clone();
    run.step("terminate.pso-station", |l| {
        l.send(&select())?;
        l.send(&pso(&station))
    });
    let c = run.step("terminate.get-challenge", |l| l.send(&get_challenge()));
    let challenge = c.map(|c| c.data).unwrap_or_default();
    let e_s = city::fresh_key();
    let auth = station_auth(&city.station, &e_s, &challenge, GROUPS);
    let answer = run.step("terminate.external-authenticate", |l| l.send(&auth));
    let opened = answer
        .filter(|a| a.sw == 0x9000)
        .map(|a| issue::open_card_auth(city, &e_s, &challenge, &a.data, GROUPS));
    let channel = match opened {
        Some(Ok((keys, channel))) => {
            if card.is_some_and(|c| c.group_keys != keys) {
                fail_last(
                    run,
                    "the station session answers keys other than the card's".into(),
                );
            }
            Some(channel)
        }
        Some(Err(e)) => {
            fail_last(run, e.to_string());
            None
        }
        None => None,
    };
    if let Some(mut channel) = channel {
        let cmd = secured(&mut channel, ins::TERMINATE, &[])?;
        run.step("terminate.terminate", |l| l.send(&cmd));
    } else {
        run.step("terminate.terminate", |_| {
            Err(LinkError::Transport("no station session".into()))
        });
    }
    run.step("terminate.select", |l| l.send(&select()));
    run.step("terminate.get-challenge-after", |l| {
        l.send(&get_challenge())
    });
    let library = city
        .readers
        .first()
        .ok_or(ConformanceError::Kit("no reader"))?;
    let ga = general_authenticate(
        library.certificate.fingerprint(),
        library.request,
        city.today,
    );
    run.ga_step(
        "terminate.general-authenticate-after",
        false,
        &ga.command(),
        Some((&ga, &library.key, library.group)),
    );
    run.step("terminate.pso-after", |l| l.send(&pso(&station)));
    Ok(())
}
