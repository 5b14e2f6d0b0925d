//! The card kit: checks a card in any reader against the spec version this
//! build implements. The machinery here sends the commands; what the card must
//! answer at each step comes from [`crate::expect`].
//!
//! The card must be BLANK (fresh from the factory). The kit anchors it to a
//! throwaway city ([`crate::city`]), personalises it, reads it with every
//! reader profile, walks every refusal path and terminates it: the card is
//! used up afterwards.

use std::time::{Duration, Instant};

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{Disclosure, ReaderSession};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{cla, ins, AID};
use citycard_proto::pers::{self, SecureChannel, StationAuth, CHALLENGE_LEN};
use citycard_proto::record::{AttributeEntry, RecordBody, SALT_LEN};
use citycard_proto::{crypto, fci, tlv, Command, Date, Error as ProtoError};
use citycard_transport::CardTransport;
use p256::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};

use crate::city::{self, City, OTHER_ISSUER, TEST_ISSUER};
use crate::expect::{Expect, LengthRule, SpecVersion, Table};
use crate::link::{Link, LinkError, Observed};
use crate::report::{Outcome, Report};
use crate::ConformanceError;

/// Name of a command by INS, for the timing table.
pub fn command_name(ins_byte: u8) -> &'static str {
    match ins_byte {
        ins::SELECT => "SELECT",
        ins::GET_RESPONSE => "GET RESPONSE",
        ins::SET_ANCHOR => "SET ISSUER ANCHOR",
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
        ProtoError::DecryptionFailed => {
            "the answer does not decrypt (a correct reader says: tampered)".into()
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
        Expect::CardKey => "7C 23 84 21 card key + 9000".into(),
        Expect::Answer => "an answer that opens and discloses exactly what was asked".into(),
        Expect::Decoy => "a decoy: the length and status words of an answer, not opening".into(),
    }
}

/// The ciphertext length of an answer `7C { 86 E_C, 87 C }`.
fn ciphertext_len(answer: &[u8]) -> Option<usize> {
    let outer = tlv::read_exact(answer, 0x7C).ok()?;
    let fields = tlv::read_all(outer.value).ok()?;
    fields.iter().find(|f| f.tag == 0x87).map(|f| f.value.len())
}

/// Steps whose answer is a refusal to a party without the right key: the
/// steps the uniform-refusal property compares (per command). Answers that
/// depend only on the public life cycle (GENERAL AUTHENTICATE on a blank
/// card) are not among them.
fn is_refusal(id: &str) -> bool {
    id.starts_with("refuse.")
        || id.ends_with(".uncached")
        || id.ends_with("-forged-station")
        || id.ends_with("-bad-signature")
}

/// Which command a refusal step sends (refusals are compared per command).
fn refusal_command(id: &str) -> &'static str {
    if id.contains("pso") {
        "PSO"
    } else if id.contains("external-authenticate") || id.ends_with("-bad-signature") {
        "EXTERNAL AUTHENTICATE"
    } else {
        "GENERAL AUTHENTICATE"
    }
}

struct Personalised {
    card_key: PublicKey,
    entries: Vec<AttributeEntry>,
}

/// A run of the card kit.
struct Run<'t> {
    link: Link<'t>,
    table: &'static Table,
    report: Report,
    broken: Option<String>,
    /// Observed refusals, for the uniform-refusal property.
    refusals: Vec<(String, Observed)>,
    /// (step, profile, ciphertext length) of every answer.
    lengths: Vec<(String, &'static str, usize)>,
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
            Expect::CardKey => o.sw == 0x9000 && pers::decode_card_key(&o.data).is_ok(),
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
            "property.uniform-refusal" => "every refusal: the same status word, no data".into(),
            "property.answer-length" => match self.table.properties.answer_length {
                LengthRule::PaddedTo(n) => format!(
                    "plaintext padded to a multiple of {n}; the same length for the same request"
                ),
                LengthRule::FunctionOfRequest => {
                    "the same length for the same request, whatever the card holds".into()
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
        opener: Option<(&ReaderSession, &SecretKey)>,
    ) {
        let observed = self.step(id, |l| {
            if select_first {
                l.send(&select())?;
            }
            l.send(cmd)
        });
        let is_decoy = matches!(self.expect(id), Some((Expect::Decoy, _)));
        if let (true, Some(o), Some((session, key))) = (is_decoy, observed, opener) {
            if o.sw == 0x9000 && session.open(&o.data, key).is_ok() {
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
        if let Some(len) = ciphertext_len(&o.data) {
            self.lengths.push((id.to_owned(), r.profile, len));
        }
        let opened = session.open(&o.data, &r.key);
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
            (_, Ok(d)) => match self.check_disclosure(city, r.request, card, &d) {
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
        requested: AttributeSet,
        card: &Personalised,
        d: &Disclosure,
    ) -> Result<(), String> {
        d.record
            .verify(&city.station.public_key())
            .map_err(|_| "the record's station signature does not verify".to_string())?;
        if d.record.body().card_key != card.card_key {
            return Err("the record's card key is not the key the card generated".into());
        }
        let want: Vec<&AttributeEntry> = card
            .entries
            .iter()
            .filter(|e| requested.contains(e.id))
            .collect();
        let same = want.len() == d.attributes.len()
            && want
                .iter()
                .zip(&d.attributes)
                .all(|(a, b)| a.id == b.id && a.value == b.value && a.salt == b.salt);
        if !same {
            return Err("the disclosed attributes are not exactly the requested ones held".into());
        }
        if let Some(p) = &d.predicates {
            let asked: AttributeSet = requested
                .iter()
                .filter(|id| id.age_threshold().is_some())
                .collect();
            let birth = card
                .entries
                .iter()
                .find(|e| e.id == AttributeId::BIRTH_DATE)
                .and_then(|e| Date::from_bytes(&e.value).ok());
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

fn station_auth(station: &SecretKey, e_s: &SecretKey, challenge: &[u8]) -> Command {
    let challenge: [u8; CHALLENGE_LEN] = challenge.try_into().unwrap_or([0; CHALLENGE_LEN]);
    let point = crypto::encode_point(&e_s.public_key());
    let auth = StationAuth {
        ephemeral: point,
        signature: crypto::sign(station, &pers::station_auth_message(&challenge, &point)),
    };
    Command::new(cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0)
        .with_data(auth.encode())
        .with_le(256)
}

fn secured(
    channel: &mut SecureChannel,
    ins_byte: u8,
    plaintext: &[u8],
) -> Result<Command, ConformanceError> {
    let header = [cla::PROPRIETARY, ins_byte, 0, 0];
    Ok(Command::new(cla::PROPRIETARY, ins_byte, 0, 0).with_data(channel.seal(header, plaintext)?))
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
    let ext = station_auth(&city.station, &e_s, &[0; CHALLENGE_LEN]);
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
    let lib_key = Some((&ga, &library.key));
    run.ga_step("blank.general-authenticate", false, &ga.command(), lib_key);

    // Anchoring.
    run.step("anchor.malformed", |l| {
        Run::send(
            l,
            &Command::new(cla::PROPRIETARY, ins::SET_ANCHOR, 0, 0)
                .with_data(vec![0x42, 0x01, 0x41]),
        )
    });
    let anchor = Command::new(cla::PROPRIETARY, ins::SET_ANCHOR, 0, 0)
        .with_data(pers::encode_anchor(&city.issuer, &city.root.public_key()));
    run.step("anchor.set", |l| Run::send(l, &anchor));
    run.step("anchor.select", |l| Run::send(l, &select()));
    run.step("anchor.again", |l| Run::send(l, &anchor));
    run.step("anchor.put-data", |l| Run::send(l, &garbage(ins::PUT_DATA)));
    run.step("anchor.activate", |l| Run::send(l, &garbage(ins::ACTIVATE)));
    run.step("anchor.terminate", |l| {
        Run::send(l, &garbage(ins::TERMINATE))
    });
    run.ga_step("anchor.general-authenticate", false, &ga.command(), lib_key);
    let first = run.step("anchor.get-challenge", |l| Run::send(l, &get_challenge()));
    run.step("anchor.get-challenge-wrong-le", |l| {
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0, 0, 0x08])
    });
    run.step("anchor.wrong-p1p2", |l| {
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
    run.step("anchor.chain-first-segment", first_segment);
    run.step("anchor.chain-interrupted", |l| l.send(&get_challenge()));
    run.step("anchor.chain-too-long", |l| {
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
    let second = run.step("anchor.challenges-differ", |l| {
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
    run.step("anchor.external-authenticate-no-station", |l| {
        Run::send(l, &ext)
    });
    Ok(())
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
    let wrong = station_auth(&forger, &e_s, &challenge);
    run.step("personalise.external-authenticate-bad-signature", |l| {
        l.send(&wrong)
    });
    run.step("personalise.pso-station-again", |l| l.send(&pso(&station)));
    let c = run.step("personalise.get-challenge-again", |l| {
        l.send(&get_challenge())
    });
    let challenge = c.map(|c| c.data).unwrap_or_default();
    let auth = station_auth(&city.station, &e_s, &challenge);
    let key = run.step("personalise.external-authenticate", |l| l.send(&auth));
    let first_key = key.and_then(|k| pers::decode_card_key(&k.data).ok());
    if let Some(card_key) = first_key {
        let ch: [u8; CHALLENGE_LEN] = challenge.clone().try_into().unwrap_or([0; CHALLENGE_LEN]);
        let mut channel = SecureChannel::for_station(&e_s, &card_key, &ch);
        run.step("personalise.put-data-bad-mac", |l| {
            l.send(&garbage(ins::PUT_DATA))
        });
        let sealed = secured(&mut channel, ins::PUT_DATA, &[])?;
        run.step("personalise.put-data-after-failure", |l| l.send(&sealed));
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
    let auth = station_auth(&city.station, &e_s, &challenge);
    let key = run.step("personalise.restart-external-authenticate", |l| {
        l.send(&auth)
    });
    let Some(card_key) = key.and_then(|k| pers::decode_card_key(&k.data).ok()) else {
        run.broken
            .get_or_insert_with(|| "personalisation did not start".into());
        return Ok(None);
    };
    let ch: [u8; CHALLENGE_LEN] = challenge.try_into().unwrap_or([0; CHALLENGE_LEN]);
    let mut channel = SecureChannel::for_station(&e_s, &card_key, &ch);
    let mut entries = Vec::new();
    for (id, value) in city.resident()? {
        let mut salt = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        entries.push(AttributeEntry::new(id, salt, value)?);
    }
    let record = RecordBody::new(
        city.station_certificate.fingerprint(),
        city.today,
        city::shift(city.today, 365)?,
        card_key,
        &entries,
    )?
    .sign(&city.station)?;
    // An attribute the dictionary does not define: refused, session kept.
    let bad = secured(&mut channel, ins::PUT_DATA, &[0xC1, 0x02, 0x0A, 0x01])?;
    run.step("personalise.put-data-bad-plaintext", |l| l.send(&bad));
    let put_record = secured(&mut channel, ins::PUT_DATA, record.as_bytes())?;
    run.step("personalise.put-data-record", |l| l.send(&put_record));
    let attrs: Vec<u8> = entries.iter().flat_map(AttributeEntry::encode).collect();
    let put_attrs = secured(&mut channel, ins::PUT_DATA, &attrs)?;
    run.step("personalise.put-data-attributes", |l| l.send(&put_attrs));
    let activate = secured(&mut channel, ins::ACTIVATE, &[])?;
    run.step("personalise.activate", |l| l.send(&activate));
    run.step("personalise.select", |l| l.send(&select()));
    let anchor = Command::new(cla::PROPRIETARY, ins::SET_ANCHOR, 0, 0)
        .with_data(pers::encode_anchor(&city.issuer, &city.root.public_key()));
    run.step("issued.set-anchor", |l| l.send(&anchor));
    run.step("issued.put-data", |l| l.send(&garbage(ins::PUT_DATA)));
    run.step("issued.activate", |l| l.send(&garbage(ins::ACTIVATE)));
    Ok(Some(Personalised { card_key, entries }))
}

fn verify(run: &mut Run<'_>, city: &City, card: &Personalised) -> Result<(), ConformanceError> {
    let mut pseudonyms = Vec::new();
    for (i, r) in city.readers.iter().enumerate() {
        let p = r.profile;
        let ga = general_authenticate(r.certificate.fingerprint(), r.request, city.today);
        run.ga_step(
            &format!("verify.{p}.uncached"),
            true,
            &ga.command(),
            Some((&ga, &r.key)),
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
        Some((&unknown, &library.key)),
    );
    let beyond = general_authenticate(fp, library.request.with(AttributeId::NAME), today);
    run.ga_step(
        "refuse.ga-beyond-grants",
        false,
        &beyond.command(),
        Some((&beyond, &library.key)),
    );
    let early = general_authenticate(fp, library.request, city::shift(today, -11)?);
    run.ga_step(
        "refuse.ga-date-before-card-date",
        false,
        &early.command(),
        Some((&early, &library.key)),
    );
    let late = general_authenticate(fp, library.request, city::shift(today, 181)?);
    run.ga_step(
        "refuse.ga-date-after-certificate",
        false,
        &late.command(),
        Some((&late, &library.key)),
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
        l.send(&station_auth(&reader_auth, &city::fresh_key(), &c.data))
    });
    Ok(())
}

fn properties(run: &mut Run<'_>) {
    let props = run.table.properties;
    if props.uniform_refusal {
        let mut odd = Vec::new();
        let mut summary = Vec::new();
        for command in ["PSO", "EXTERNAL AUTHENTICATE", "GENERAL AUTHENTICATE"] {
            let group: Vec<&(String, Observed)> = run
                .refusals
                .iter()
                .filter(|(id, _)| refusal_command(id) == command)
                .collect();
            let Some((_, first)) = group.first() else {
                continue;
            };
            // Within one command, every refusal: the same status word and
            // length, whichever check failed.
            odd.extend(
                group
                    .iter()
                    .filter(|(_, o)| o.sw != first.sw || o.data.len() != first.data.len())
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
    for (id, profile, len) in &run.lengths {
        if let LengthRule::PaddedTo(n) = props.answer_length {
            if len
                .checked_sub(crypto::TAG_LEN)
                .is_none_or(|p| n == 0 || p % n != 0)
            {
                problems.push(format!(
                    "{id}: ciphertext of {len} bytes is not padded to {n}"
                ));
            }
        }
        if let Some((other, _, l2)) = run.lengths.iter().find(|(_, p, _)| p == profile) {
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
    let auth = station_auth(&city.station, &e_s, &challenge);
    let key = run.step("terminate.external-authenticate", |l| l.send(&auth));
    let key = key.and_then(|k| pers::decode_card_key(&k.data).ok());
    if let (Some(k), Some(card)) = (key, card) {
        if k != card.card_key {
            if let Some(last) = run.report.steps.last_mut() {
                last.outcome = Outcome::Fail;
                last.observed = "the station session answers a key other than the card's".into();
            }
        }
    }
    if let Some(card_key) = key {
        let ch: [u8; CHALLENGE_LEN] = challenge.try_into().unwrap_or([0; CHALLENGE_LEN]);
        let mut channel = SecureChannel::for_station(&e_s, &card_key, &ch);
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
        Some((&ga, &library.key)),
    );
    run.step("terminate.pso-after", |l| l.send(&pso(&station)));
    Ok(())
}
