//! The issued card: personalisation by the throwaway city's station, a
//! verification with every reader profile, and every refusal path.

use citycard_proto::attr::AttributeId;
use citycard_proto::cert::Role;
use citycard_proto::consts::{cla, ins};
use citycard_proto::record;
use citycard_proto::{apdu::Command, tlv};
use p256::SecretKey;

use crate::city::{self, City, GROUPS, OTHER_ISSUER};
use crate::issue::{self, secured, station_auth};
use crate::link::LinkError;
use crate::ConformanceError;

use super::run::Run;
use super::{
    fail_last, garbage, general_authenticate, get_challenge, library, pso, select, Personalised,
};

/// Personalisation (`personalise.*`, `issued.*`): a forged station, a bad
/// signature, a broken session, then the city's station; the card's group
/// keys and values (`None` if it did not start).
pub(super) fn personalise(
    run: &mut Run<'_>,
    city: &City,
) -> Result<Option<Personalised>, ConformanceError> {
    // A station certificate of this issuer signed by another root.
    let forger = city::fresh_key();
    let forged = city::office_certificate(
        &city.issuer,
        Role::Station,
        "station",
        &forger,
        &city.station,
        city.today,
    )?;
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

/// Every reader profile (`verify.*`): uncached, first and cached taps, and
/// pseudonyms per partner.
pub(super) fn verify(
    run: &mut Run<'_>,
    city: &City,
    card: &Personalised,
) -> Result<(), ConformanceError> {
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

/// Every refusal path of an issued card (`refuse.*`).
pub(super) fn refusals(run: &mut Run<'_>, city: &City) -> Result<(), ConformanceError> {
    let today = city.today;
    let library = library(city)?;
    let fp = library.certificate.fingerprint();
    let other_root = city::fresh_key();
    let other_key = city::fresh_key();
    // A reader certificate like the library's for `other_key`, valid
    // `from`..`to` days from today, of `issuer`, signed by `root`.
    let reader_cert = |issuer: &str, holder: &str, from: i64, to: i64, root: &SecretKey| {
        let body = city::reader_body(
            issuer,
            holder,
            library.request,
            library.group,
            city::shift(today, from)?,
            city::shift(today, to)?,
            &other_key,
        );
        Ok::<_, ConformanceError>(body.sign(root)?)
    };
    let other_city = reader_cert(OTHER_ISSUER, "library", -10, 180, &other_root)?;
    run.step("refuse.pso-other-city", |l| {
        l.send(&select())?;
        l.send(&pso(&other_city))
    });
    let forged = reader_cert(&city.issuer, "library", -10, 180, &other_root)?;
    run.step("refuse.pso-forged-reader", |l| l.send(&pso(&forged)));
    let expired = reader_cert(&city.issuer, "old", -100, -20, &city.root)?;
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
