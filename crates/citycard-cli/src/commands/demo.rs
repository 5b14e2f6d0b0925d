//! `citycard demo`: the whole story on the built-in emulated card, in
//! process, with the real issuer and reader libraries: a city creates its
//! keys, issues a card, a library and a transit gate verify it offline, a
//! clone and a revoked card are rejected. Then the same for the PIV profile
//! (`applet-spec/piv-profile.md`) on the emulated PIV card: issued, verified
//! by both partners (profile `piv`), its card number readable by anyone, a
//! clone and a revoked card rejected.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use citycard_card::{Applet, Faults, MemoryStorage};
use citycard_issuer::home::{IssuerHome, LoadedStation};
use citycard_issuer::issue::issue_one;
use citycard_issuer::piv::PivOptions;
use citycard_issuer::resident::{self, Resident};
use citycard_keys::{FixedSecrets, SoftManagementKey};
use citycard_piv_card::{Faults as PivFaults, PivCard};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::piv::{
    self as piv_proto, CardAuthenticationCertificate, ManagementAlgorithm,
    OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
};
use citycard_proto::{fci, Date, LifeCycle, StatusWord, AID};
use citycard_reader::{verify, PartnerCredential, Policy, Trust, Verdict};
use citycard_registry::{IssuanceRegistry, RevocationReason};
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
type DemoPivCard = PivCard<MemoryStorage, ChaCha20Rng>;
type PivChannel = CardChannel<Traced<MemoryTransport<DemoPivCard>>>;

fn life_cycle(ch: &mut Channel) -> anyhow::Result<(Vec<u8>, Option<LifeCycle>)> {
    let r = ch.exchange(&fci::select_command())?;
    let lc = fci::life_cycle(&r.data);
    Ok((r.data, lc))
}

fn tap<T: CardTransport>(
    ch: &mut CardChannel<Traced<T>>,
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
        None,
        &secrets,
    )?;
    home.add_station("town-hall", 180, None, &secrets, today)?;
    home.add_preparer("facility", 180, None, &secrets, today)?;
    let preparer = home.preparer("facility", &secrets)?;
    let library_grants: AttributeSet = [AttributeId::PSEUDONYM, AttributeId::RESIDENT]
        .into_iter()
        .collect();
    let transit_grants: AttributeSet = [AttributeId::AGE_OVER_65, AttributeId::AGE_OVER_18]
        .into_iter()
        .collect();
    let (lc, lk) = home.enrol_partner("library", library_grants, 0, 365, &secrets, today)?;
    let (tc, tk) = home.enrol_partner("transit", transit_grants, 0, 365, &secrets, today)?;
    let bundle = home.export_trust(&secrets, now_unix)?;
    let library = Trust::new(bundle.clone(), PartnerCredential::new(lc, lk)?)?;
    let transit = Trust::new(bundle, PartnerCredential::new(tc, tk)?)?;
    say("1. The city creates its root key, a preparation facility, an issuing station (town-hall) and two\n   partner credentials: library (pseudonym, resident) and transit (age over 65/18); it exports the trust bundle.");

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
    let root = home.root_public_key()?;
    let sign = |m: &[u8]| preparer.signer.sign(m);
    citycard_issuer::personalise::prepare(
        &mut ch,
        &citycard_issuer::personalise::Preparer {
            issuer: &home.config().issuer_id,
            root: &root,
            certificate: &preparer.certificate,
            sign: &sign,
            batch: "demo-batch",
        },
        today,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, prepared_state) = life_cycle(&mut ch)?;
    say(&format!(
        "   The preparation facility prepares it: the card generates its attestation key, the facility certifies it (life cycle: {}).",
        prepared_state.map(LifeCycle::name).unwrap_or("?")
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
        &citycard_issuer::IssueRequest {
            resident: &sam,
            actor: "demo",
            batch: None,
            replaces: None,
            today: today,
        },
        &mut rng,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let pers_apdus = ch.transport().stats().apdus - before;
    let (_, issued_state) = life_cycle(&mut ch)?;
    say(&format!(
        "3. Card {} issued to a resident with a care-of address ({pers_apdus} APDUs):\n   the card proved its preparation and generated its own keys; the station signed the record; the card\n   confirmed what it stored with its check value; it is now {} and locked.",
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
        "6. The library asks for the name, which it is not granted: {} (the card answers decoys: nothing readable).",
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
    let bundle = home.publish(7, &secrets, now_unix)?;
    let library2 = Trust::new(bundle, library.credential().clone())?;
    let (v, _, _) = tap(&mut ch, &library2, library_grants, &mut rng);
    let revoked = matches!(v, Verdict::Revoked);
    say(&format!(
        "8. The card is reported lost and revoked; with the new trust bundle the library says: {}.",
        v.kind()
    ));
    ch.transport_mut().reset().ok();

    // 9–12. The PIV profile.
    let city = DemoCity {
        home: &home,
        station: &station,
        secrets: &secrets,
        today,
        now_unix,
    };
    let p = piv_part(
        &city,
        &mut registry,
        &library2,
        &transit,
        library_grants,
        trace,
        &mut rng,
        &say,
    )?;

    let ok = blank_state == Some(LifeCycle::Blank)
        && issued_state == Some(LifeCycle::Issued)
        && resident_yes
        && library_only
        && same_pseudonym
        && over65
        && refused
        && clone_rejected
        && revoked
        && p.ok();
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
                "piv": p.to_json(),
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

/// The city's parts the PIV steps need.
struct DemoCity<'a> {
    home: &'a IssuerHome,
    station: &'a LoadedStation,
    secrets: &'a FixedSecrets,
    today: Date,
    now_unix: u64,
}

/// What the PIV steps observed.
#[derive(Default)]
struct PivDemo {
    card_number: String,
    predicates: Vec<&'static str>,
    issue_apdus: u64,
    only_certificate_on_card: bool,
    library_verdict: &'static str,
    library_profile: Option<&'static str>,
    library_resident: bool,
    library_pseudonym: Option<String>,
    library_tap: (u64, u64),
    transit_verdict: &'static str,
    transit_profile: Option<&'static str>,
    transit_age_over_65: Option<bool>,
    public_card_number: Option<String>,
    public_apdus: u64,
    clone_verdict: &'static str,
    revoked_verdict: &'static str,
}

impl PivDemo {
    fn ok(&self) -> bool {
        self.only_certificate_on_card
            && self.library_verdict == "genuine"
            && self.library_profile == Some("piv")
            && self.library_resident
            && self.library_pseudonym.is_none()
            && self.transit_verdict == "genuine"
            && self.transit_profile == Some("piv")
            && self.transit_age_over_65 == Some(true)
            && self.public_card_number.as_deref() == Some(self.card_number.as_str())
            && self.clone_verdict == "clone"
            && self.revoked_verdict == "revoked"
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "card_number": self.card_number,
            "factory_management_key_allowed": true,
            "predicates": self.predicates,
            "issue_apdus": self.issue_apdus,
            "only_certificate_on_card": self.only_certificate_on_card,
            "library": {
                "verdict": self.library_verdict,
                "profile": self.library_profile,
                "resident": self.library_resident,
                "pseudonym": self.library_pseudonym,
                "apdus": self.library_tap.0,
                "bytes": self.library_tap.1,
            },
            "transit": {
                "verdict": self.transit_verdict,
                "profile": self.transit_profile,
                "age_over_65": self.transit_age_over_65,
            },
            "card_number_read_without_credential": self.public_card_number,
            "clone": self.clone_verdict,
            "revoked": self.revoked_verdict,
        })
    }
}

/// What anyone with an NFC reader gets from a PIV card, no credential, no
/// key: SELECT PIV and GET DATA `5FC101`; the card number in the certificate.
fn read_without_credential(ch: &mut PivChannel) -> anyhow::Result<Option<String>> {
    let r = ch.exchange(&piv_proto::select_command())?;
    if r.sw != StatusWord::Success {
        return Ok(None);
    }
    let r = ch.exchange(&piv_proto::get_data_command(
        OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
    ))?;
    if r.sw != StatusWord::Success {
        return Ok(None);
    }
    let cert = piv_proto::parse_data_object(&r.data)
        .and_then(piv_proto::parse_certificate_container)
        .and_then(CardAuthenticationCertificate::decode)
        .ok();
    Ok(cert.map(|c| c.body().card_number.clone()))
}

/// Steps 9–12: a PIV card issued, verified by the library and the transit
/// gate, read by anyone, cloned, revoked.
#[allow(clippy::too_many_arguments)]
fn piv_part(
    city: &DemoCity<'_>,
    registry: &mut dyn IssuanceRegistry,
    library: &Trust,
    transit: &Trust,
    library_grants: AttributeSet,
    trace: bool,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> anyhow::Result<PivDemo> {
    let mut out = PivDemo::default();
    say("\nThe PIV profile (applet-spec/piv-profile.md): an off-the-shelf PIV card instead of the citycard applet.");

    // 9. Issuance on a factory-fresh (emulated) PIV card.
    let fields: BTreeMap<String, String> = [
        ("resident_id", "F-0002"),
        ("name", "Noor Haddad"),
        ("birth_date", "1950-02-10"),
        ("address", "7 Canal Row"),
        ("language", "en"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let noor: Resident = resident::validate(&fields).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let mut traced = Traced::new(MemoryTransport::new(PivCard::new(
        MemoryStorage::new(),
        ChaCha20Rng::from_seed(seed),
    )));
    if trace {
        traced = traced.echo_to_stderr();
    }
    let mut ch: PivChannel = CardChannel::new(traced);
    // A demo card still has the factory management key: allowed here only.
    let factory = SoftManagementKey::factory_default(ManagementAlgorithm::TripleDes);
    let options = PivOptions {
        management_key: &factory,
        allow_default_management_key: true,
        card_key: None,
    };
    let issued = citycard_issuer::piv::issue_one(
        city.home,
        city.station,
        registry,
        &mut ch,
        &citycard_issuer::IssueRequest {
            resident: &noor,
            actor: "demo",
            batch: None,
            replaces: None,
            today: city.today,
        },
        &options,
        rng,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    out.card_number = issued.issued.card_number.clone();
    out.predicates = issued.predicates.iter().map(|id| id.name()).collect();
    out.issue_apdus = ch.transport().stats().apdus;
    out.only_certificate_on_card = ch
        .transport()
        .inner()
        .card()
        .state()
        .is_some_and(|s| s.object_tags().eq([OBJECT_CARD_AUTHENTICATION_CERTIFICATE]));
    say(&format!(
        "9. Card {} issued on an emulated PIV card ({} APDUs incl. read-back), with the factory management key\n   allowed because this is a demo (real cards get the city's key first). On the card: a station-signed\n   certificate with the card number, validity and the age predicates true today ({}); no name, no birth date.",
        out.card_number,
        out.issue_apdus,
        out.predicates.join(", ")
    ));

    // 10. Library and transit gate, same reader code.
    let (v, apdus, bytes) = tap(&mut ch, library, library_grants, rng);
    let g = v.genuine();
    out.library_verdict = v.kind();
    out.library_profile = g.map(|g| g.profile.name());
    out.library_resident = g.is_some_and(|g| g.attribute(AttributeId::RESIDENT) == Some(&[1][..]));
    out.library_pseudonym = g.and_then(|g| g.pseudonym).map(hex::encode);
    out.library_tap = (apdus, bytes);
    let (v, _, _) = tap(
        &mut ch,
        transit,
        AttributeSet::EMPTY.with(AttributeId::AGE_OVER_65),
        rng,
    );
    let g = v.genuine();
    out.transit_verdict = v.kind();
    out.transit_profile = g.map(|g| g.profile.name());
    out.transit_age_over_65 = g.and_then(|g| g.predicate(AttributeId::AGE_OVER_65));
    say(&format!(
        "10. Library desk ({apdus} APDUs, {bytes} bytes): {}, profile {}. Resident: {}; pseudonym: {} (a PIV card has none).\n    Transit gate: {}, profile {}. Age over 65: {} (signed at issue).",
        out.library_verdict,
        out.library_profile.unwrap_or("-"),
        if out.library_resident { "yes" } else { "no" },
        out.library_pseudonym.as_deref().unwrap_or("none"),
        out.transit_verdict,
        out.transit_profile.unwrap_or("-"),
        match out.transit_age_over_65 {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not proven",
        },
    ));

    // What the card tells everyone.
    let before = ch.transport().stats().apdus;
    out.public_card_number = read_without_credential(&mut ch)?;
    out.public_apdus = ch.transport().stats().apdus - before;
    say(&format!(
        "    But the card tells everyone its card number: any NFC reader, with no credential, reads {} ({} APDUs);\n    partners can join their records on it. Choose this profile knowingly (piv-profile.md §7).",
        out.public_card_number.as_deref().unwrap_or("nothing"),
        out.public_apdus
    ));

    // 11. A clone: same certificate, different 9E key.
    ch.transport_mut()
        .inner_mut()
        .card_mut()
        .set_faults(PivFaults { clone: true });
    let (v, _, _) = tap(&mut ch, library, library_grants, rng);
    out.clone_verdict = v.kind();
    ch.transport_mut()
        .inner_mut()
        .card_mut()
        .set_faults(PivFaults::default());
    say(&format!(
        "11. A cloned PIV card (certificate copied, different key in 9E): {}.",
        out.clone_verdict
    ));

    // 12. Revocation, after the city publishes a new list.
    registry.revoke(&out.card_number, RevocationReason::Stolen, "demo")?;
    let bundle = city.home.publish(7, city.secrets, city.now_unix)?;
    let library = Trust::new(bundle, library.credential().clone())?;
    let (v, _, _) = tap(&mut ch, &library, library_grants, rng);
    out.revoked_verdict = v.kind();
    say(&format!(
        "12. The PIV card is reported stolen and revoked; after the next publication the library says: {}.",
        out.revoked_verdict
    ));
    Ok(out)
}
