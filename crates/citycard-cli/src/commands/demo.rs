//! `citycard demo`: the whole story on the built-in emulated card, in
//! process, with the real issuer and reader libraries: a city creates its
//! keys, issues a card, a library and a transit gate verify it offline, a
//! clone and a revoked card are rejected.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use citycard_card::{Applet, Faults, MemoryStorage};
use citycard_issuer::home::IssuerHome;
use citycard_issuer::issue::issue_one;
use citycard_issuer::resident;
use citycard_keys::FixedSecrets;
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::{fci, LifeCycle, AID};
use citycard_reader::{verify, PartnerCredential, Policy, Trust, Verdict};
use citycard_registry::RevocationReason;
use citycard_transport::{CardChannel, CardTransport, MemoryTransport, Traced};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Arguments of `citycard demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

type DemoCard = Applet<MemoryStorage, ChaCha20Rng>;
type Channel = CardChannel<Traced<MemoryTransport<DemoCard>>>;

fn life_cycle(ch: &mut Channel) -> anyhow::Result<(Vec<u8>, Option<LifeCycle>)> {
    let r = ch.exchange(&fci::select_command())?;
    let lc = fci::life_cycle(&r.data);
    Ok((r.data, lc))
}

fn tap(
    ch: &mut Channel,
    trust: &Trust,
    requested: AttributeSet,
    rng: &mut ChaCha20Rng,
) -> (Verdict, u64, u64) {
    let before = ch.transport().stats();
    let policy = Policy::now().with_requested(requested);
    let verdict = verify(ch, trust, &policy, rng);
    let after = ch.transport().stats();
    let bytes =
        (after.bytes_sent + after.bytes_received) - (before.bytes_sent + before.bytes_received);
    (verdict, after.apdus - before.apdus, bytes)
}

/// Runs the demo.
pub fn run(args: &DemoArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let (today, now_unix) = citycard_issuer::home::now()?;
    let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let say = |text: &str| {
        if !args.json {
            println!("{text}");
        }
    };
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut pass = [0u8; 16];
    rng.fill_bytes(&mut pass);
    let secrets = FixedSecrets::new(&hex::encode(pass), "");

    say("citycard demo: a city issues a resident card; a library and a transit gate verify it offline.\n");
    // 1. The city.
    let home = IssuerHome::init(
        &dir.path().join("city"),
        "Demo City",
        "DEMO",
        "DC",
        None,
        &secrets,
    )?;
    home.add_station("town-hall", 180, None, &secrets, today)?;
    let library_grants: AttributeSet = [AttributeId::PSEUDONYM, AttributeId::RESIDENT]
        .into_iter()
        .collect();
    let transit_grants: AttributeSet = [AttributeId::AGE_OVER_65, AttributeId::AGE_OVER_18]
        .into_iter()
        .collect();
    let (lc, lk) = home.enrol_partner("library", library_grants, 365, &secrets, today)?;
    let (tc, tk) = home.enrol_partner("transit", transit_grants, 365, &secrets, today)?;
    let bundle = home.export_trust(&secrets, now_unix)?;
    let library = Trust::new(bundle.clone(), PartnerCredential::new(lc, lk)?)?;
    let transit = Trust::new(bundle, PartnerCredential::new(tc, tk)?)?;
    say("1. The city creates its root key, an issuing station (town-hall) and two partner credentials:\n   library (pseudonym, resident) and transit (age over 65/18); it exports the trust bundle.");

    // 2. A blank card.
    let mut card_seed = [0u8; 32];
    rng.fill_bytes(&mut card_seed);
    let card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed(card_seed));
    let mut traced = Traced::new(MemoryTransport::new(card));
    if trace {
        traced = traced.echo_to_stderr();
    }
    let mut ch: Channel = CardChannel::new(traced);
    let (fci, blank_state) = life_cycle(&mut ch)?;
    say(&format!(
        "2. A blank card answers SELECT {}: FCI {} (life cycle: {}).",
        hex::encode_upper(AID),
        hex::encode_upper(&fci),
        blank_state.map(LifeCycle::name).unwrap_or("?")
    ));

    // 3. Issuance at the counter.
    let fields: BTreeMap<String, String> = [
        ("resident_id", "F-0001"),
        ("name", "Sam Rivera"),
        ("birth_date", "1955-06-01"),
        ("care_of_address", "Harbour Shelter, 12 Quay Street"),
        ("language", "en"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sam = resident::validate(&fields).map_err(|e| anyhow::anyhow!("{e}"))?;
    let station = home.station("town-hall", &secrets, today)?;
    let mut registry = home.registry()?;
    let before = ch.transport().stats().apdus;
    let issued = issue_one(
        &home,
        &station,
        &mut registry,
        &mut ch,
        &sam,
        "demo",
        None,
        None,
        today,
        &mut rng,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pers_apdus = ch.transport().stats().apdus - before;
    let (_, issued_state) = life_cycle(&mut ch)?;
    say(&format!(
        "3. Card {} issued to a resident with a care-of address ({pers_apdus} APDUs incl. read-back):\n   the card generated its own key; the station signed the record; the card is now {} and locked.",
        issued.card_number,
        issued_state.map(LifeCycle::name).unwrap_or("?")
    ));

    // 4. Library desk.
    let (v, apdus, bytes) = tap(&mut ch, &library, library_grants, &mut rng);
    let g = v.genuine();
    let pseudonym = g
        .and_then(|g| g.pseudonym)
        .map(hex::encode)
        .unwrap_or_default();
    let resident_yes = g.is_some_and(|g| g.attribute(AttributeId::RESIDENT) == Some(&[1][..]));
    let library_only = g.is_some_and(|g| g.attributes.len() == 1 && g.predicates.is_empty());
    say(&format!(
        "4. Library desk, first tap ({apdus} APDUs, {bytes} bytes): {}. It learns pseudonym {pseudonym} and resident: {}; nothing else.",
        v.kind(),
        if resident_yes { "yes" } else { "no" }
    ));
    let (v2, apdus2, bytes2) = tap(&mut ch, &library, library_grants, &mut rng);
    let same_pseudonym = v2
        .genuine()
        .and_then(|g| g.pseudonym)
        .map(hex::encode)
        .as_deref()
        == Some(pseudonym.as_str());
    say(&format!(
        "   Next visit ({apdus2} APDUs, {bytes2} bytes, certificate cached on the card): {}, same pseudonym: {}.",
        v2.kind(),
        if same_pseudonym { "yes" } else { "no" }
    ));

    // 5. Transit gate.
    let (v, apdus, bytes) = tap(
        &mut ch,
        &transit,
        AttributeSet::EMPTY.with(AttributeId::AGE_OVER_65),
        &mut rng,
    );
    let over65 = v.genuine().is_some_and(|g| {
        g.predicate(AttributeId::AGE_OVER_65) == Some(true) && g.pseudonym.is_none()
    });
    say(&format!(
        "5. Transit gate ({apdus} APDUs, {bytes} bytes): {}. Age over 65: {}. No name, no birth date, no pseudonym.",
        v.kind(),
        if over65 { "yes" } else { "no" }
    ));

    // 6. Library asks for more than granted.
    let (v, _, _) = tap(
        &mut ch,
        &library,
        library_grants.with(AttributeId::NAME),
        &mut rng,
    );
    let refused = matches!(v, Verdict::Unauthorised { .. });
    say(&format!(
        "6. The library asks for the name, which it is not granted: {} (the card sends nothing).",
        v.kind()
    ));

    // 7. A clone.
    ch.transport_mut()
        .inner_mut()
        .card_mut()
        .set_faults(Faults { clone: true });
    let (v, _, _) = tap(&mut ch, &library, library_grants, &mut rng);
    let clone_rejected = matches!(v, Verdict::Clone);
    ch.transport_mut()
        .inner_mut()
        .card_mut()
        .set_faults(Faults::default());
    say(&format!(
        "7. A cloned card (all data copied, different private key): {}.",
        v.kind()
    ));

    // 8. Revocation.
    registry.revoke(&issued.card_number, RevocationReason::Lost, "demo")?;
    let bundle = home.export_trust(&secrets, now_unix).and_then(|_| {
        home.publish_revocations(7, &secrets, now_unix)?;
        home.export_trust(&secrets, now_unix)
    })?;
    let library2 = Trust::new(bundle, library.credential().clone())?;
    let (v, _, _) = tap(&mut ch, &library2, library_grants, &mut rng);
    let revoked = matches!(v, Verdict::Revoked);
    say(&format!(
        "8. The card is reported lost and revoked; with the new trust bundle the library says: {}.",
        v.kind()
    ));
    ch.transport_mut().reset().ok();

    let ok = blank_state == Some(LifeCycle::Blank)
        && issued_state == Some(LifeCycle::Issued)
        && resident_yes
        && library_only
        && same_pseudonym
        && over65
        && refused
        && clone_rejected
        && revoked;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "schema_version": 1,
                "ok": ok,
                "life_cycle": [blank_state.map(LifeCycle::name), issued_state.map(LifeCycle::name)],
                "personalisation_apdus": pers_apdus,
                "library": {"pseudonym": pseudonym, "resident": resident_yes, "only_granted": library_only, "stable_pseudonym": same_pseudonym},
                "transit": {"age_over_65": over65},
                "unauthorised_request_refused": refused,
                "clone_rejected": clone_rejected,
                "revoked_rejected": revoked,
            })
        );
    } else {
        say(&format!(
            "\n{}",
            if ok {
                "Demo complete: every step behaved as specified."
            } else {
                "Demo FAILED."
            }
        ));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
