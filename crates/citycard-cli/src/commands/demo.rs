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
use citycard_issuer::home::{IssuerHome, LoadedPreparer, LoadedStation};
use citycard_issuer::issue::issue_one;
use citycard_issuer::piv::PivOptions;
use citycard_issuer::resident::{self, Resident};
use citycard_issuer::IssueRequest;
use citycard_keys::{FixedSecrets, SoftManagementKey};
use citycard_piv_card::{Faults as PivFaults, PivCard};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::piv::{
    self as piv_proto, CardAuthenticationCertificate, ManagementAlgorithm,
    OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
};
use citycard_proto::{consts::LifeCycle, consts::AID, date::Date, fci, sw::StatusWord};
use citycard_reader::{verify, PartnerCredential, Policy, Trust, Verdict};
use citycard_registry::{IssuanceRegistry, RevocationReason};
use citycard_transport::{CardChannel, CardTransport, MemoryTransport, Traced};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

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

/// The city the demo builds, and what its partners hold.
struct DemoCity {
    home: IssuerHome,
    station: LoadedStation,
    preparer: LoadedPreparer,
    secrets: FixedSecrets,
    today: Date,
    now_unix: u64,
    library: Trust,
    library_grants: AttributeSet,
    transit: Trust,
}

/// What the applet steps (2–8) observed.
#[derive(Default, Serialize)]
struct AppletDemo {
    #[serde(skip)]
    blank: Option<LifeCycle>,
    #[serde(skip)]
    issued: Option<LifeCycle>,
    life_cycle: [Option<&'static str>; 2],
    personalisation_apdus: u64,
    #[serde(skip)]
    card_number: String,
    library: LibraryDemo,
    transit: TransitDemo,
    unauthorised_request_refused: bool,
    clone_rejected: bool,
    revoked_rejected: bool,
}

/// The library desk's two visits.
#[derive(Default, Serialize)]
struct LibraryDemo {
    pseudonym: String,
    resident: bool,
    only_granted: bool,
    stable_pseudonym: bool,
}

/// The transit gate's tap.
#[derive(Default, Serialize)]
struct TransitDemo {
    age_over_65: bool,
}

impl AppletDemo {
    fn ok(&self) -> bool {
        self.blank == Some(LifeCycle::Blank)
            && self.issued == Some(LifeCycle::Issued)
            && self.library.resident
            && self.library.only_granted
            && self.library.stable_pseudonym
            && self.transit.age_over_65
            && self.unauthorised_request_refused
            && self.clone_rejected
            && self.revoked_rejected
    }
}

/// The demo's JSON document (`citycard demo --json`).
#[derive(Serialize)]
struct DemoReport<'a> {
    schema_version: u32,
    ok: bool,
    #[serde(flatten)]
    applet: &'a AppletDemo,
    piv: &'a PivDemo,
}

/// Runs the demo.
pub fn run(args: &DemoArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let say = |text: &str| {
        if !args.json {
            println!("{text}");
        }
    };
    let dir = tempfile::tempdir().context("temporary directory")?;
    say("citycard demo: a city issues a resident card; a library and a transit gate verify it offline.\n");
    let city = found_city(&dir.path().join("city"), &mut rng)?;
    say("1. The city creates its root key, a preparation facility, an issuing station (town-hall) and two\n   partner credentials: library (pseudonym, resident) and transit (age over 65/18); it exports the trust bundle.");
    let mut registry = city.home.registry()?;
    let applet = applet_part(&city, &mut registry, trace, &mut rng, &say)?;
    // 9–12. The PIV profile, with the list that revoked the applet card.
    let library = Trust::new(
        city.home.publish(7, &city.secrets, city.now_unix)?,
        city.library.credential().clone(),
    )?;
    let piv = piv_part(&city, &mut registry, &library, trace, &mut rng, &say)?;
    let ok = applet.ok() && piv.ok();
    if args.json {
        let report = DemoReport {
            schema_version: 1,
            ok,
            applet: &applet,
            piv: &piv,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else if ok {
        say("\nDemo complete: every step behaved as specified.");
    } else {
        say("\nDemo FAILED.");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Step 1: a city with a root key in `dir`, a preparation facility, a
/// station and two partners, and the trust bundle they load.
fn found_city(dir: &std::path::Path, rng: &mut ChaCha20Rng) -> anyhow::Result<DemoCity> {
    let (today, now_unix) = citycard_issuer::home::now()?;
    let mut pass = [0u8; 16];
    rng.fill_bytes(&mut pass);
    let secrets = FixedSecrets::new(&hex::encode(pass), "");
    let home = IssuerHome::init(dir, "Demo City", "DEMO", "DC", None, None, &secrets)?;
    home.add_station("town-hall", 180, None, &secrets, today)?;
    home.add_preparer("facility", 180, None, &secrets, today)?;
    let preparer = home.preparer("facility", &secrets)?;
    let station = home.station("town-hall", &secrets, today)?;
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
    Ok(DemoCity {
        home,
        station,
        preparer,
        secrets,
        today,
        now_unix,
        library,
        library_grants,
        transit,
    })
}

/// Steps 2–8 on the citycard applet: a blank card prepared and issued, the
/// library's two visits, the transit gate, an unauthorised request, a clone,
/// a revocation.
fn applet_part(
    city: &DemoCity,
    registry: &mut dyn IssuanceRegistry,
    trace: bool,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> anyhow::Result<AppletDemo> {
    let mut out = AppletDemo::default();
    let mut ch = blank_card(trace, rng);
    out.blank = prepare_card(city, &mut ch, say)?;
    issue_applet_card(city, registry, &mut ch, rng, &mut out, say)?;
    out.life_cycle = [
        out.blank.map(LifeCycle::name),
        out.issued.map(LifeCycle::name),
    ];
    library_visits(city, &mut ch, rng, &mut out.library, say);
    out.transit.age_over_65 = transit_gate(city, &mut ch, rng, say);
    out.unauthorised_request_refused = unauthorised_request(city, &mut ch, rng, say);
    out.clone_rejected = clone_tap(city, &mut ch, rng, say);
    out.revoked_rejected = revoked_tap(city, registry, &out.card_number, &mut ch, rng, say)?;
    ch.transport_mut().reset().ok();
    Ok(out)
}

/// A blank emulated card in process, traced to stderr with `--trace`.
fn blank_card(trace: bool, rng: &mut ChaCha20Rng) -> Channel {
    let mut card_seed = [0u8; 32];
    rng.fill_bytes(&mut card_seed);
    let card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed(card_seed));
    let mut traced = Traced::new(MemoryTransport::new(card));
    if trace {
        traced = traced.echo_to_stderr();
    }
    CardChannel::new(traced)
}

/// Step 2: the blank card's SELECT answer, then its preparation by the
/// city's facility. Returns the blank card's life cycle.
fn prepare_card(
    city: &DemoCity,
    ch: &mut Channel,
    say: &dyn Fn(&str),
) -> anyhow::Result<Option<LifeCycle>> {
    let (fci, blank_state) = life_cycle(ch)?;
    say(&format!(
        "2. A blank card answers SELECT {}: FCI {} (life cycle: {}).",
        hex::encode_upper(AID),
        hex::encode_upper(&fci),
        blank_state.map(LifeCycle::name).unwrap_or("?")
    ));
    let root = city.home.root_public_key()?;
    let sign = |m: &[u8]| city.preparer.signer.sign(m);
    citycard_issuer::personalise::prepare(
        ch,
        &citycard_issuer::personalise::Preparer {
            issuer: &city.home.config().issuer_id,
            root: &root,
            certificate: &city.preparer.certificate,
            sign: &sign,
            batch: "demo-batch",
        },
        city.today,
    )?;
    let (_, prepared_state) = life_cycle(ch)?;
    say(&format!(
        "   The preparation facility prepares it: the card generates its attestation key, the facility certifies it (life cycle: {}).",
        prepared_state.map(LifeCycle::name).unwrap_or("?")
    ));
    Ok(blank_state)
}

/// Step 3: the card issued at the counter to a resident with a care-of address.
fn issue_applet_card(
    city: &DemoCity,
    registry: &mut dyn IssuanceRegistry,
    ch: &mut Channel,
    rng: &mut ChaCha20Rng,
    out: &mut AppletDemo,
    say: &dyn Fn(&str),
) -> anyhow::Result<()> {
    let sam = demo_resident(&[
        ("resident_id", "F-0001"),
        ("name", "Sam Rivera"),
        ("birth_date", "1955-06-01"),
        ("care_of_address", "Harbour Shelter, 12 Quay Street"),
        ("language", "en"),
    ])?;
    let before = ch.transport().stats().apdus;
    let request = IssueRequest {
        resident: &sam,
        actor: "demo",
        batch: None,
        replaces: None,
        today: city.today,
    };
    let issued = issue_one(&city.home, &city.station, registry, ch, &request, rng)?;
    out.personalisation_apdus = ch.transport().stats().apdus - before;
    out.card_number = issued.card_number;
    let (_, issued_state) = life_cycle(ch)?;
    out.issued = issued_state;
    say(&format!(
        "3. Card {} issued to a resident with a care-of address ({} APDUs):\n   the card proved its preparation and generated its own keys; the station signed the record; the card\n   confirmed what it stored with its check value; it is now {} and locked.",
        out.card_number,
        out.personalisation_apdus,
        issued_state.map(LifeCycle::name).unwrap_or("?")
    ));
    Ok(())
}

/// A resident from `fields`, validated as the issuer validates every row.
fn demo_resident(fields: &[(&str, &str)]) -> anyhow::Result<Resident> {
    let fields: BTreeMap<String, String> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(resident::validate(&fields)?)
}

/// Step 4: the library's first tap and its next visit (certificate cached).
fn library_visits(
    city: &DemoCity,
    ch: &mut Channel,
    rng: &mut ChaCha20Rng,
    out: &mut LibraryDemo,
    say: &dyn Fn(&str),
) {
    let (v, apdus, bytes) = tap(ch, &city.library, city.library_grants, rng);
    let g = v.genuine();
    out.pseudonym = g
        .and_then(|g| g.pseudonym)
        .map(hex::encode)
        .unwrap_or_default();
    out.resident = g.is_some_and(|g| g.attribute(AttributeId::RESIDENT) == Some(&[1][..]));
    out.only_granted = g.is_some_and(|g| g.attributes.len() == 1 && g.predicates.is_empty());
    say(&format!(
        "4. Library desk, first tap ({apdus} APDUs, {bytes} bytes): {}. It learns pseudonym {} and resident: {}; nothing else.",
        v.kind(),
        out.pseudonym,
        if out.resident { "yes" } else { "no" }
    ));
    let (v2, apdus2, bytes2) = tap(ch, &city.library, city.library_grants, rng);
    out.stable_pseudonym = v2
        .genuine()
        .and_then(|g| g.pseudonym)
        .map(hex::encode)
        .as_deref()
        == Some(out.pseudonym.as_str());
    say(&format!(
        "   Next visit ({apdus2} APDUs, {bytes2} bytes, certificate cached on the card): {}, same pseudonym: {}.",
        v2.kind(),
        if out.stable_pseudonym { "yes" } else { "no" }
    ));
}

/// Step 5: the transit gate learns only "over 65".
fn transit_gate(
    city: &DemoCity,
    ch: &mut Channel,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> bool {
    let requested = AttributeSet::EMPTY.with(AttributeId::AGE_OVER_65);
    let (v, apdus, bytes) = tap(ch, &city.transit, requested, rng);
    let over65 = v.genuine().is_some_and(|g| {
        g.predicate(AttributeId::AGE_OVER_65) == Some(true) && g.pseudonym.is_none()
    });
    say(&format!(
        "5. Transit gate ({apdus} APDUs, {bytes} bytes): {}. Age over 65: {}. No name, no birth date, no pseudonym.",
        v.kind(),
        if over65 { "yes" } else { "no" }
    ));
    over65
}

/// Step 6: the library asks for the name, which it is not granted.
fn unauthorised_request(
    city: &DemoCity,
    ch: &mut Channel,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> bool {
    let requested = city.library_grants.with(AttributeId::NAME);
    let (v, _, _) = tap(ch, &city.library, requested, rng);
    say(&format!(
        "6. The library asks for the name, which it is not granted: {} (the card answers decoys: nothing readable).",
        v.kind()
    ));
    matches!(v, Verdict::Unauthorised { .. })
}

/// Step 7: a clone (all data copied, another private key).
fn clone_tap(city: &DemoCity, ch: &mut Channel, rng: &mut ChaCha20Rng, say: &dyn Fn(&str)) -> bool {
    fn card(ch: &mut Channel) -> &mut DemoCard {
        ch.transport_mut().inner_mut().card_mut()
    }
    card(ch).set_faults(Faults { clone: true });
    let (v, _, _) = tap(ch, &city.library, city.library_grants, rng);
    card(ch).set_faults(Faults::default());
    say(&format!(
        "7. A cloned card (all data copied, different private key): {}.",
        v.kind()
    ));
    matches!(v, Verdict::Clone)
}

/// Step 8: the card reported lost, revoked, and the next bundle published.
fn revoked_tap(
    city: &DemoCity,
    registry: &mut dyn IssuanceRegistry,
    card_number: &str,
    ch: &mut Channel,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> anyhow::Result<bool> {
    registry.revoke(card_number, RevocationReason::Lost, "demo")?;
    let bundle = city.home.publish(7, &city.secrets, city.now_unix)?;
    let library = Trust::new(bundle, city.library.credential().clone())?;
    let (v, _, _) = tap(ch, &library, city.library_grants, rng);
    say(&format!(
        "8. The card is reported lost and revoked; with the new trust bundle the library says: {}.",
        v.kind()
    ));
    Ok(matches!(v, Verdict::Revoked))
}

/// What the PIV steps (9–12) observed.
#[derive(Default, Serialize)]
struct PivDemo {
    card_number: String,
    factory_management_key_allowed: bool,
    predicates: Vec<&'static str>,
    issue_apdus: u64,
    only_certificate_on_card: bool,
    library: PivLibraryTap,
    transit: PivTransitTap,
    card_number_read_without_credential: Option<String>,
    #[serde(skip)]
    public_apdus: u64,
    clone: &'static str,
    revoked: &'static str,
}

/// The library's tap on the PIV card.
#[derive(Default, Serialize)]
struct PivLibraryTap {
    verdict: &'static str,
    profile: Option<&'static str>,
    resident: bool,
    pseudonym: Option<String>,
    apdus: u64,
    bytes: u64,
}

/// The transit gate's tap on the PIV card.
#[derive(Default, Serialize)]
struct PivTransitTap {
    verdict: &'static str,
    profile: Option<&'static str>,
    age_over_65: Option<bool>,
}

impl PivDemo {
    fn ok(&self) -> bool {
        self.only_certificate_on_card
            && self.library.verdict == "genuine"
            && self.library.profile == Some("piv")
            && self.library.resident
            && self.library.pseudonym.is_none()
            && self.transit.verdict == "genuine"
            && self.transit.profile == Some("piv")
            && self.transit.age_over_65 == Some(true)
            && self.card_number_read_without_credential.as_deref()
                == Some(self.card_number.as_str())
            && self.clone == "clone"
            && self.revoked == "revoked"
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

/// Steps 9–12: a PIV card issued, verified by the library (with `library`,
/// the partner's current trust) and the transit gate, read by anyone,
/// cloned, revoked.
fn piv_part(
    city: &DemoCity,
    registry: &mut dyn IssuanceRegistry,
    library: &Trust,
    trace: bool,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> anyhow::Result<PivDemo> {
    let mut out = PivDemo::default();
    say("\nThe PIV profile (applet-spec/piv-profile.md): an off-the-shelf PIV card instead of the citycard applet.");
    let mut ch = issue_piv_card(city, registry, trace, rng, &mut out, say)?;
    piv_partner_taps(city, library, &mut ch, rng, &mut out, say);
    let before = ch.transport().stats().apdus;
    out.card_number_read_without_credential = read_without_credential(&mut ch)?;
    out.public_apdus = ch.transport().stats().apdus - before;
    say(&format!(
        "    But the card tells everyone its card number: any NFC reader, with no credential, reads {} ({} APDUs);\n    partners can join their records on it. Choose this profile knowingly (piv-profile.md §7).",
        out.card_number_read_without_credential
            .as_deref()
            .unwrap_or("nothing"),
        out.public_apdus
    ));
    out.clone = piv_clone_tap(city, library, &mut ch, rng, say);
    out.revoked = piv_revoked_tap(city, registry, library, &out.card_number, &mut ch, rng, say)?;
    Ok(out)
}

/// Step 9: issuance on a factory-fresh (emulated) PIV card.
fn issue_piv_card(
    city: &DemoCity,
    registry: &mut dyn IssuanceRegistry,
    trace: bool,
    rng: &mut ChaCha20Rng,
    out: &mut PivDemo,
    say: &dyn Fn(&str),
) -> anyhow::Result<PivChannel> {
    let noor = demo_resident(&[
        ("resident_id", "F-0002"),
        ("name", "Noor Haddad"),
        ("birth_date", "1950-02-10"),
        ("address", "7 Canal Row"),
        ("language", "en"),
    ])?;
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
    let request = IssueRequest {
        resident: &noor,
        actor: "demo",
        batch: None,
        replaces: None,
        today: city.today,
    };
    let issued = citycard_issuer::piv::issue_one(
        &city.home,
        &city.station,
        registry,
        &mut ch,
        &request,
        &options,
        rng,
    )?;
    out.card_number = issued.issued.card_number.clone();
    out.factory_management_key_allowed = options.allow_default_management_key;
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
    Ok(ch)
}

/// Step 10: the library and the transit gate, same reader code.
fn piv_partner_taps(
    city: &DemoCity,
    library: &Trust,
    ch: &mut PivChannel,
    rng: &mut ChaCha20Rng,
    out: &mut PivDemo,
    say: &dyn Fn(&str),
) {
    let (v, apdus, bytes) = tap(ch, library, city.library_grants, rng);
    let g = v.genuine();
    out.library = PivLibraryTap {
        verdict: v.kind(),
        profile: g.map(|g| g.profile.name()),
        resident: g.is_some_and(|g| g.attribute(AttributeId::RESIDENT) == Some(&[1][..])),
        pseudonym: g.and_then(|g| g.pseudonym).map(hex::encode),
        apdus,
        bytes,
    };
    let requested = AttributeSet::EMPTY.with(AttributeId::AGE_OVER_65);
    let (v, _, _) = tap(ch, &city.transit, requested, rng);
    let g = v.genuine();
    out.transit = PivTransitTap {
        verdict: v.kind(),
        profile: g.map(|g| g.profile.name()),
        age_over_65: g.and_then(|g| g.predicate(AttributeId::AGE_OVER_65)),
    };
    say(&format!(
        "10. Library desk ({apdus} APDUs, {bytes} bytes): {}, profile {}. Resident: {}; pseudonym: {} (a PIV card has none).\n    Transit gate: {}, profile {}. Age over 65: {} (signed at issue).",
        out.library.verdict,
        out.library.profile.unwrap_or("-"),
        if out.library.resident { "yes" } else { "no" },
        out.library.pseudonym.as_deref().unwrap_or("none"),
        out.transit.verdict,
        out.transit.profile.unwrap_or("-"),
        match out.transit.age_over_65 {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not proven",
        },
    ));
}

/// Step 11: a clone (same certificate, another key in `9E`).
fn piv_clone_tap(
    city: &DemoCity,
    library: &Trust,
    ch: &mut PivChannel,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> &'static str {
    fn card(ch: &mut PivChannel) -> &mut DemoPivCard {
        ch.transport_mut().inner_mut().card_mut()
    }
    card(ch).set_faults(PivFaults { clone: true });
    let (v, _, _) = tap(ch, library, city.library_grants, rng);
    card(ch).set_faults(PivFaults::default());
    say(&format!(
        "11. A cloned PIV card (certificate copied, different key in 9E): {}.",
        v.kind()
    ));
    v.kind()
}

/// Step 12: revocation, after the city publishes a new list.
fn piv_revoked_tap(
    city: &DemoCity,
    registry: &mut dyn IssuanceRegistry,
    library: &Trust,
    card_number: &str,
    ch: &mut PivChannel,
    rng: &mut ChaCha20Rng,
    say: &dyn Fn(&str),
) -> anyhow::Result<&'static str> {
    registry.revoke(card_number, RevocationReason::Stolen, "demo")?;
    let bundle = city.home.publish(7, &city.secrets, city.now_unix)?;
    let library = Trust::new(bundle, library.credential().clone())?;
    let (v, _, _) = tap(ch, &library, city.library_grants, rng);
    say(&format!(
        "12. The PIV card is reported stolen and revoked; after the next publication the library says: {}.",
        v.kind()
    ));
    Ok(v.kind())
}
