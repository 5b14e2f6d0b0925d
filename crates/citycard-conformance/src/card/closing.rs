//! The end of a run: the properties computed over every answer (uniform
//! refusal, answer length), and termination.

use citycard_proto::consts::ins;
use citycard_proto::crypto;

use crate::city::{self, City, GROUPS};
use crate::expect::LengthRule;
use crate::issue::{self, secured, station_auth};
use crate::link::{LinkError, Observed};
use crate::ConformanceError;

use super::run::Run;
use super::{
    describe, fail_last, garbage, get_challenge, pso, refusal_command, select, LibraryTap,
    Personalised,
};

/// The properties of the spec version computed over every answer
/// (`property.*`).
pub(super) fn properties(run: &mut Run<'_>) {
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

/// Termination by the station, and what a terminated card answers
/// (`terminate.*`).
pub(super) fn terminate(
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
    LibraryTap::new(city)?.step(run, "terminate.general-authenticate-after");
    run.step("terminate.pso-after", |l| l.send(&pso(&station)));
    Ok(())
}
