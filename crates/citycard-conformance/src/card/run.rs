//! The machinery of a card-kit run: one step = one exchange (or one
//! computed verdict) checked against the spec table and recorded in the
//! report; a broken link skips every later step.

use std::time::{Duration, Instant};

use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::auth::{self, Disclosure, ReaderSession};
use citycard_proto::pers::{self, CardAuthAnswer};
use citycard_proto::record;
use citycard_proto::{apdu::Command, date::Date, fci};
use p256::SecretKey;
use rand_core::OsRng;

use crate::city::{self, City};
use crate::expect::{Expect, LengthRule, Table};
use crate::link::{Link, LinkError, Observed};
use crate::report::{Outcome, Report};

use super::{
    decoy_len, describe, expected_text, is_refusal, reader_view, select, sw_text, Personalised,
};

/// A run of the card kit.
pub(super) struct Run<'t> {
    pub(super) link: Link<'t>,
    pub(super) table: &'static Table,
    pub(super) report: Report,
    pub(super) broken: Option<String>,
    /// Observed refusals, for the uniform-refusal property.
    pub(super) refusals: Vec<(String, Observed)>,
    /// (step, `answer_len(request)`) of every GENERAL AUTHENTICATE refusal.
    pub(super) refusal_lengths: Vec<(String, usize)>,
    /// (step, profile, answer length, `answer_len(request)`) of every answer.
    pub(super) lengths: Vec<(String, &'static str, usize, usize)>,
}

impl<'t> Run<'t> {
    pub(super) fn expect(&self, id: &str) -> Option<(Expect, &'static str)> {
        self.table.entry(id).map(|e| (e.expect, e.spec))
    }

    pub(super) fn record(
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
    pub(super) fn step(
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

    pub(super) fn check(&self, expect: Expect, o: &Observed) -> Result<(), String> {
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
    pub(super) fn verdict(&mut self, id: &str, result: Result<String, String>) {
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
    pub(super) fn ga_step(
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

    /// One GENERAL AUTHENTICATE that must answer (or, per the table, decoy).
    pub(super) fn tap(
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

    pub(super) fn check_disclosure(
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
