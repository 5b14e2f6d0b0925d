//! `citycard demo`: the whole story on the built-in emulated card, in process.
//!
//! The issuing and reading here use the scripted station and reader of
//! `citycard-testkit` with freshly generated keys; the issuer and reader tools
//! replace them as they land.

use std::process::ExitCode;

use anyhow::Context;
use citycard_card::{Applet, Faults, MemoryStorage};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{CertificateBody, Role};
use citycard_proto::consts::LifeCycle;
use citycard_proto::{crypto, tlv, ContactlessCard, Date};
use citycard_testkit::keys::{TestCity, TestReader};
use citycard_testkit::script::{personalise, select_command, verify, Personalisation, Script};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Arguments of `citycard demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn life_cycle_of_fci(fci: &[u8]) -> Option<LifeCycle> {
    let outer = tlv::read_exact(fci, 0x6F).ok()?;
    let fields = tlv::read_all(outer.value).ok()?;
    let a5 = fields.iter().find(|f| f.tag == 0xA5)?;
    let inner = tlv::read_all(a5.value).ok()?;
    let lc = inner.iter().find(|f| f.tag == 0x81)?;
    LifeCycle::from_byte(*lc.value.first()?)
}

fn reader(
    city: &TestCity,
    name: &'static str,
    grants: AttributeSet,
    rng: &mut ChaCha20Rng,
    today: Date,
) -> anyhow::Result<TestReader> {
    let key = crypto::generate(rng);
    let mut domain = [0u8; 16];
    rand_core::RngCore::fill_bytes(rng, &mut domain);
    let certificate = CertificateBody {
        issuer: "DEMO-CITY".into(),
        holder: name.into(),
        role: Role::Reader,
        grants,
        domain: Some(domain),
        effective: today,
        expiry: today.add_days(365),
        public_key: key.public_key(),
    }
    .sign(&city.root)?;
    Ok(TestReader {
        name,
        key,
        certificate,
    })
}

/// Runs the demo.
pub fn run(args: &DemoArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let today = super::today()?;
    let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let say = |text: &str| {
        if !args.json {
            println!("{text}");
        }
    };

    // The city: an offline root and one issuing station, generated now.
    let root = crypto::generate(&mut rng);
    let station = crypto::generate(&mut rng);
    let station_certificate = CertificateBody {
        issuer: "DEMO-CITY".into(),
        holder: "town-hall-1".into(),
        role: Role::Station,
        grants: AttributeSet::EMPTY,
        domain: None,
        effective: today,
        expiry: today.add_days(180),
        public_key: station.public_key(),
    }
    .sign(&root)?;
    let city = TestCity {
        root,
        station,
        station_certificate,
    };
    say("citycard demo — a city issues a card; a library and a transit gate verify it offline.\n");

    let card_rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let mut card = Applet::new(MemoryStorage::new(), card_rng);
    let mut exchanges = 0usize;
    let mut link = |apdu: &[u8]| {
        let r = card.transmit(apdu).map_err(|e| e.to_string());
        if trace {
            if let Ok(resp) = &r {
                super::trace_line(apdu, resp);
            }
        }
        exchanges += 1;
        r
    };

    // 1. A blank card answers SELECT.
    let mut s = Script::new(&mut link);
    let fci = s.expect_ok("SELECT", &select_command())?;
    let blank_state = life_cycle_of_fci(&fci);
    say(&format!(
        "1. SELECT {}  →  FCI {}  (life cycle: {})",
        hex::encode_upper(citycard_proto::AID),
        hex::encode_upper(&fci),
        blank_state.map(LifeCycle::name).unwrap_or("?")
    ));

    // 2. Personalisation at the town hall.
    let resident = vec![
        (AttributeId::CARD_NUMBER, b"DC-2026-000001".to_vec()),
        (AttributeId::NAME, "Sam Rivera".as_bytes().to_vec()),
        (
            AttributeId::BIRTH_DATE,
            Date::new(1955, 6, 1)?.to_bytes().to_vec(),
        ),
        (
            AttributeId::ADDRESS,
            "12 Harbour Street".as_bytes().to_vec(),
        ),
        (AttributeId::LANGUAGE, b"en".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
    ];
    let before = s.steps.len();
    let mut salts = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let record = personalise(
        &mut s,
        Personalisation {
            city: &city,
            station_ephemeral: crypto::generate(&mut rng),
            salts: &mut salts,
            resident,
            valid_from: today,
            valid_to: today.add_days(5 * 365),
            anchor: true,
        },
    )?;
    let pers_apdus = s.steps.len() - before;
    let fci = s.expect_ok("SELECT", &select_command())?;
    let issued_state = life_cycle_of_fci(&fci);
    say(&format!(
        "2. Personalised in {pers_apdus} APDUs: anchor → station authenticated → key generated on the card →\n   record and 6 attributes written → ACTIVATE.  Life cycle now: {}. Valid until {}.",
        issued_state.map(LifeCycle::name).unwrap_or("?"),
        record.body().valid_to
    ));

    // 3. The library: pseudonym + resident.
    let library_grants: AttributeSet = [AttributeId::PSEUDONYM, AttributeId::RESIDENT]
        .into_iter()
        .collect();
    let library = reader(&city, "library", library_grants, &mut rng, today)?;
    let before = s.steps.len();
    let d = verify(
        &mut s,
        &library,
        library_grants,
        today,
        crypto::generate(&mut rng),
        true,
    )?;
    record_check(&d, &city)?;
    let lib_apdus = s.steps.len() - before;
    let pseudonym = d.pseudonym.map(hex::encode).unwrap_or_default();
    let resident_yes = d
        .attributes
        .iter()
        .any(|a| a.id == AttributeId::RESIDENT && a.value == [1]);
    say(&format!(
        "3. Library desk ({lib_apdus} APDUs, first tap): genuine. Learns pseudonym {pseudonym} and resident: {}.\n   Nothing else was sent to it.",
        if resident_yes { "yes" } else { "no" }
    ));

    // 4. Transit gate: age over 65 only.
    let transit_grants: AttributeSet = [AttributeId::AGE_OVER_65].into_iter().collect();
    let transit = reader(&city, "transit", transit_grants, &mut rng, today)?;
    verify(
        &mut s,
        &transit,
        transit_grants,
        today,
        crypto::generate(&mut rng),
        true,
    )?;
    let before = s.steps.len();
    let d = verify(
        &mut s,
        &transit,
        transit_grants,
        today,
        crypto::generate(&mut rng),
        false,
    )?;
    record_check(&d, &city)?;
    let transit_apdus = s.steps.len() - before;
    let over65 = d
        .predicates
        .is_some_and(|p| p.holds.contains(AttributeId::AGE_OVER_65));
    say(&format!(
        "4. Transit gate ({transit_apdus} APDUs, certificate already cached): genuine. Learns age over 65: {}. No name, no birth date, no pseudonym.",
        if over65 { "yes" } else { "no" }
    ));

    // 5. The library asks for the name it is not granted: the card refuses.
    let before = s.steps.len();
    let refused = verify(
        &mut s,
        &library,
        library_grants.with(AttributeId::NAME),
        today,
        crypto::generate(&mut rng),
        false,
    )
    .is_err();
    let refusal_sw = s
        .steps
        .last()
        .and_then(|st| st.response.clone())
        .unwrap_or_default();
    let _ = before;
    say(&format!(
        "5. Library asks for the name (not granted): {} (card answered {}).",
        if refused {
            "refused"
        } else {
            "ACCEPTED — bug"
        },
        refusal_sw
    ));
    drop(s);

    // 6. A clone: same public data, another private key.
    card.set_faults(Faults { clone: true });
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    let mut s = Script::new(&mut link);
    let clone_result = verify(
        &mut s,
        &library,
        library_grants,
        today,
        crypto::generate(&mut rng),
        false,
    );
    let clone_rejected = matches!(
        clone_result,
        Err(citycard_testkit::script::ScriptError::Protocol(
            citycard_proto::Error::BadMac
        ))
    );
    say(&format!(
        "6. A cloned card (copied data, different key) at the library: {}.",
        if clone_rejected {
            "rejected — card authentication failed"
        } else {
            "NOT rejected — bug"
        }
    ));

    let ok = blank_state == Some(LifeCycle::Blank)
        && issued_state == Some(LifeCycle::Issued)
        && resident_yes
        && over65
        && refused
        && clone_rejected;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "schema_version": 1,
                "ok": ok,
                "life_cycle": [blank_state.map(LifeCycle::name), issued_state.map(LifeCycle::name)],
                "personalisation_apdus": pers_apdus,
                "library": {"apdus": lib_apdus, "pseudonym": pseudonym, "resident": resident_yes},
                "transit": {"apdus": transit_apdus, "age_over_65": over65},
                "unauthorised_request_refused": refused,
                "clone_rejected": clone_rejected,
            })
        );
    } else {
        say(&format!(
            "\n{}",
            if ok { "Demo complete." } else { "Demo FAILED." }
        ));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The reader's remaining check in this demo: the record's station signature.
fn record_check(d: &citycard_proto::auth::Disclosure, city: &TestCity) -> anyhow::Result<()> {
    anyhow::ensure!(
        d.record.body().station == city.station_certificate.fingerprint(),
        "unknown station"
    );
    d.record
        .verify(&city.station.public_key())
        .context("record signature")?;
    Ok(())
}
