//! The blank card and its preparation, in the order the kit walks them: the
//! ISO-level answers of a blank card, what a blank card refuses, preparation
//! by the throwaway city's facility, what a prepared card refuses, challenges
//! and command chaining, fresh randomness at power-up.

use citycard_proto::apdu::Command;
use citycard_proto::consts::{cla, ins, AID};
use citycard_proto::pers::{self, CHALLENGE_LEN};

use super::run::Run;
use super::{garbage, get_challenge, pso, select, LibraryTap};
use crate::city::{self, City, GROUPS};
use crate::issue::{self, station_auth};
use crate::link::{Link, LinkError, Observed};
use crate::report::Outcome;
use crate::ConformanceError;

/// What the blank and the prepared phases both send: a GENERAL AUTHENTICATE
/// by the library reader, and an EXTERNAL AUTHENTICATE over a challenge the
/// card never gave.
struct Probes<'c> {
    library: LibraryTap<'c>,
    ext: Command,
}

impl<'c> Probes<'c> {
    fn new(city: &'c City) -> Result<Self, ConformanceError> {
        let ext = station_auth(
            &city.station,
            &city::fresh_key(),
            &[0; CHALLENGE_LEN],
            GROUPS,
        );
        Ok(Self {
            library: LibraryTap::new(city)?,
            ext,
        })
    }
}

/// The blank and preparation phases (`blank.*`, `prepare.*`).
pub(super) fn blank_and_prepare(run: &mut Run<'_>, city: &City) -> Result<(), ConformanceError> {
    let probes = Probes::new(city)?;
    blank_iso_answers(run);
    blank_refusals(run, city, &probes);
    let prepare = prepare_and_certify(run, city)?;
    prepared_refusals(run, &probes, &prepare);
    let first = challenge_checks(run);
    chaining(run, city);
    fresh_challenge_after_power_up(run, first);
    run.step("prepare.external-authenticate-no-station", |l| {
        l.send(&probes.ext)
    });
    Ok(())
}

/// ISO 7816-4 answers that need no key: before SELECT, an unknown AID,
/// SELECT with and without FCI, wrong class and instruction, extended
/// length, chaining where it is not supported, GET RESPONSE with nothing
/// pending.
fn blank_iso_answers(run: &mut Run<'_>) {
    run.step("blank.not-selected", |l| {
        l.reset()?;
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0, 0, 0x10])
    });
    run.step("blank.select-unknown-aid", |l| {
        l.raw_observed(&[
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0, 0, 0, 0x03, 0x10, 0x10, 0x00,
        ])
    });
    run.step("blank.select", |l| l.send(&select()));
    run.step("blank.select-no-fci", |l| {
        l.send(&Command::new(cla::ISO, ins::SELECT, 0x04, 0x0C).with_data(AID.to_vec()))
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
}

/// What a blank card refuses: every command of a later life-cycle state.
fn blank_refusals(run: &mut Run<'_>, city: &City, probes: &Probes<'_>) {
    run.step("blank.get-challenge", |l| l.send(&get_challenge()));
    let station_cert = city.station_certificate.clone();
    run.step("blank.pso", |l| l.send(&pso(&station_cert)));
    run.step("blank.external-authenticate", |l| l.send(&probes.ext));
    run.step("blank.put-data", |l| l.send(&garbage(ins::PUT_DATA)));
    run.step("blank.activate", |l| l.send(&garbage(ins::ACTIVATE)));
    run.step("blank.terminate", |l| l.send(&garbage(ins::TERMINATE)));
    probes.library.step(run, "blank.general-authenticate");
}

/// Preparation by the throwaway city's facility (SPEC §6.3): a certificate
/// before PREPARE, a malformed PREPARE, PREPARE, and the preparation
/// certificate over the attestation key the card gave. Returns the PREPARE
/// command (sent again later, to be refused).
fn prepare_and_certify(run: &mut Run<'_>, city: &City) -> Result<Command, ConformanceError> {
    let prepared_on = city.today;
    run.step("prepare.store-without-prepare", |l| {
        l.send(
            &Command::new(cla::PROPRIETARY, ins::STORE_PREPARATION_CERTIFICATE, 0, 0)
                .with_data(city.station_certificate.as_bytes().to_vec()),
        )
    });
    run.step("prepare.malformed", |l| {
        l.send(
            &Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
                .with_data(vec![0x42, 0x01, 0x41])
                .with_le(256),
        )
    });
    let prepare = issue::prepare_command(city, prepared_on)?;
    let k_a = run
        .step("prepare.prepare", |l| l.send(&prepare))
        .and_then(|o| pers::decode_attestation_key(&o.data).ok());
    match k_a {
        Some(k_a) => {
            let cert = issue::preparation_certificate(city, &k_a, prepared_on)?;
            let store = issue::store_certificate_command(&cert);
            run.step("prepare.store-certificate", |l| l.send(&store));
        }
        None => {
            run.step("prepare.store-certificate", |_| {
                Err(LinkError::Transport(
                    "PREPARE gave no attestation key".into(),
                ))
            });
        }
    }
    Ok(prepare)
}

/// What a prepared card refuses: a second PREPARE, and every command of a
/// personalised card.
fn prepared_refusals(run: &mut Run<'_>, probes: &Probes<'_>, prepare: &Command) {
    run.step("prepare.select", |l| l.send(&select()));
    run.step("prepare.again", |l| l.send(prepare));
    run.step("prepare.put-data", |l| l.send(&garbage(ins::PUT_DATA)));
    run.step("prepare.activate", |l| l.send(&garbage(ins::ACTIVATE)));
    run.step("prepare.terminate", |l| l.send(&garbage(ins::TERMINATE)));
    probes.library.step(run, "prepare.general-authenticate");
}

/// GET CHALLENGE, and its wrong forms; the first challenge (compared with
/// one after a new power-up).
fn challenge_checks(run: &mut Run<'_>) -> Option<Observed> {
    let first = run.step("prepare.get-challenge", |l| l.send(&get_challenge()));
    run.step("prepare.get-challenge-wrong-le", |l| {
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0, 0, 0x08])
    });
    run.step("prepare.wrong-p1p2", |l| {
        l.raw_observed(&[0x00, ins::GET_CHALLENGE, 0x01, 0x00, 0x10])
    });
    first
}

/// Command chaining: a chain broken by another command, and a chain whose
/// data passes the limit.
fn chaining(run: &mut Run<'_>, city: &City) {
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
}

/// A new power-up must not repeat the challenge (no deterministic mode in a
/// production card, and no randomness restarting at power-up).
fn fresh_challenge_after_power_up(run: &mut Run<'_>, first: Option<Observed>) {
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
}
