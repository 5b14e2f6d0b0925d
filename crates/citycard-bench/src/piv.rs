//! The PIV profile (`applet-spec/piv-profile.md`): one PIV card issued in
//! process on the emulated PIV card (`citycard_piv_card::PivCard`, factory
//! management key allowed, deterministic randomness), then tapped with
//! `citycard_reader::verify` exactly as the applet rows are: APDUs and bytes
//! from the traced exchange, card operations from [`crate::model::card_ops`]
//! (one ECDSA signature), host time against a replaying card.

use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use citycard_issuer::piv::{issue_one, PivIssued, PivOptions};
use citycard_keys::SoftManagementKey;
use citycard_proto::piv::{self, CardAuthenticationCertificate, ManagementAlgorithm};
use citycard_reader::CardProfile;
use citycard_transport::{CardChannel, MemoryTransport, TraceEntry, Traced};
use p256::ecdsa::Signature;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::city::{City, Profile, SizedStorage};
use crate::model::{Writes, PIV_GENERAL_AUTHENTICATE};
use crate::verification::{timed_verify, traced, HostTiming, Replay, TapCounts};

/// The emulated PIV card over in-memory storage.
pub type PivCard = citycard_piv_card::PivCard<SizedStorage, ChaCha20Rng>;
/// A traced channel to an in-process PIV card.
pub type PivChannel = CardChannel<Traced<MemoryTransport<PivCard>>>;

/// The PIV rows of the report: (row name, the partner that taps). Every PIV
/// tap is the same exchange whoever reads; only what the reader library
/// discloses differs (card number and resident, resp. age over 65).
pub const ROWS: [(&str, &str); 2] = [
    ("piv (full)", "full_identity"),
    ("piv (transit)", "transit"),
];

/// Seed of the emulated PIV card's randomness (its `9E` key, its ECDSA
/// signatures are RFC 6979 over that key).
pub const CARD_SEED: [u8; 32] = [0x9E; 32];
/// Seed of the issuer's randomness during the PIV issuance.
pub const ISSUER_SEED: [u8; 32] = [0x5F; 32];

/// A PIV tap of one partner.
pub struct PivExchange {
    /// Row name (`piv (full)`, `piv (transit)`).
    pub name: &'static str,
    /// The partner profile whose credential taps.
    pub partner: &'static str,
    /// The tap (every PIV tap is the same: there is no reader certificate to cache).
    pub tap: TapCounts,
    /// The seed of the reader's random generator in `tap` (fixed challenge).
    pub seed: [u8; 32],
}

/// Persistent writes the in-process PIV card has made so far.
pub fn writes(ch: &PivChannel) -> Writes {
    ch.transport().inner().card().storage().writes()
}

/// What the PIV card counted: no operations (it does not count them: the
/// trace shows its one signature), its writes.
fn counted(ch: &PivChannel) -> (Option<citycard_card::OpCount>, Writes) {
    (None, writes(ch))
}

/// Issues a PIV card to a new resident (the sample person, born 1958) on a
/// factory-fresh emulated PIV card, in process, with the factory management
/// key allowed (a bench card, never for real cards).
pub fn issue_card(city: &mut City) -> anyhow::Result<(PivChannel, PivIssued)> {
    let card = PivCard::new(SizedStorage::new(), ChaCha20Rng::from_seed(CARD_SEED));
    let mut ch = CardChannel::new(Traced::new(MemoryTransport::new(card)));
    let key = SoftManagementKey::factory_default(ManagementAlgorithm::TripleDes);
    let options = PivOptions {
        management_key: &key,
        allow_default_management_key: true,
        card_key: None,
    };
    let resident = city.next_resident()?;
    let mut rng = ChaCha20Rng::from_seed(ISSUER_SEED);
    let issued = issue_one(
        &city.home,
        &city.station,
        &mut city.registry,
        &mut ch,
        &citycard_issuer::IssueRequest {
            resident: &resident,
            actor: "bench",
            batch: None,
            replaces: None,
            today: city.today,
        },
        &options,
        &mut rng,
    )
    .map_err(|e| anyhow!("PIV issuance: {e}"))?;
    Ok((ch, issued))
}

fn partner<'a>(city: &'a City, name: &str) -> anyhow::Result<&'a Profile> {
    city.profiles
        .iter()
        .find(|p| p.name == name)
        .with_context(|| format!("no partner {name}"))
}

/// One traced tap on the PIV card; fails unless genuine with profile `piv`.
fn traced_tap(
    ch: &mut PivChannel,
    profile: &Profile,
    city: &City,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<TapCounts> {
    traced(
        ch,
        counted,
        profile,
        &city.policy(profile),
        rng,
        |verdict| match verdict.genuine() {
            Some(g) if g.profile == CardProfile::Piv => Ok(()),
            _ => bail!(
                "PIV card, {}: verdict {} ({verdict:?})",
                profile.name,
                verdict.kind()
            ),
        },
    )
}

/// Issues one PIV card in process and taps it once per [`ROWS`] entry with a
/// fixed reader seed (so the challenge, and every byte, is reproducible).
pub fn exchanges(city: &mut City) -> anyhow::Result<(PivChannel, Vec<PivExchange>)> {
    let (mut ch, _) = issue_card(city)?;
    let mut out = Vec::new();
    for (i, (name, partner_name)) in ROWS.iter().enumerate() {
        let profile = partner(city, partner_name)?;
        let seed = [0xA5 ^ i as u8; 32];
        let tap = traced_tap(&mut ch, profile, city, &mut ChaCha20Rng::from_seed(seed))?;
        out.push(PivExchange {
            name,
            partner: partner_name,
            tap,
            seed,
        });
    }
    Ok((ch, out))
}

/// Response data (without the status word) of `e`.
fn data(e: &TraceEntry) -> &[u8] {
    e.response
        .get(..e.response.len().saturating_sub(2))
        .unwrap_or(&[])
}

/// The PIV GENERAL AUTHENTICATE `00 87 11 9E` of a traced tap.
fn card_authentication(entries: &[TraceEntry]) -> anyhow::Result<&TraceEntry> {
    entries
        .iter()
        .find(|e| {
            e.command.get(1..4)
                == Some(
                    &[
                        PIV_GENERAL_AUTHENTICATE,
                        piv::ALG_ECC_P256,
                        piv::SLOT_CARD_AUTHENTICATION,
                    ][..],
                )
        })
        .context("no GENERAL AUTHENTICATE 9E in the PIV tap")
}

/// The certificate, challenge and signature of a traced PIV tap.
pub struct TapParts {
    /// The Card Authentication certificate read from `5FC101`.
    pub certificate: CardAuthenticationCertificate,
    /// The reader's challenge.
    pub challenge: [u8; 32],
    /// The card's signature over it.
    pub signature: Signature,
    /// Its DER length.
    pub signature_der_len: usize,
}

/// Takes a traced PIV tap apart (for the crypto baseline and the tests).
pub fn tap_parts(entries: &[TraceEntry]) -> anyhow::Result<TapParts> {
    // GET DATA answer (first part, 61xx) + GET RESPONSE answers.
    let start = entries
        .iter()
        .position(|e| e.command.get(1) == Some(&0xCB))
        .context("no GET DATA in the PIV tap")?;
    let mut object = Vec::new();
    for e in entries.iter().skip(start) {
        let ins = e.command.get(1).copied();
        if object.is_empty() && ins != Some(0xCB) || !object.is_empty() && ins != Some(0xC0) {
            break;
        }
        object.extend_from_slice(data(e));
    }
    let der = piv::parse_data_object(&object)
        .and_then(piv::parse_certificate_container)
        .map_err(|e| anyhow!("certificate container: {e}"))?;
    let certificate = CardAuthenticationCertificate::decode(der)
        .map_err(|e| anyhow!("card authentication certificate: {e}"))?;
    let ga = card_authentication(entries)?;
    let challenge: [u8; 32] = ga
        .command
        .get(11..43)
        .and_then(|c| c.try_into().ok())
        .context("GENERAL AUTHENTICATE without a 32-byte challenge")?;
    let answer = data(ga);
    let signature =
        piv::parse_signature(answer).map_err(|e| anyhow!("card authentication answer: {e}"))?;
    let signature_der_len = signature.to_der().as_bytes().len();
    Ok(TapParts {
        certificate,
        challenge,
        signature,
        signature_der_len,
    })
}

/// Times `citycard_reader::verify` against a card that replays the PIV tap
/// of `ex` (the reader's work only: both SELECTs, GET DATA + GET RESPONSE,
/// container and certificate decoding, challenge, signature checks, trust,
/// validity, revocation, verdict), interleaved with the EC operations it
/// must do, timed alone on the same inputs: ECDSA verification of the
/// certificate with the station key (SHA-256 of the TBSCertificate included)
/// and of the card's signature over the challenge.
pub fn host_timing(
    city: &City,
    ex: &PivExchange,
    warmup: usize,
    runs: usize,
) -> anyhow::Result<HostTiming> {
    let profile = partner(city, ex.partner)?;
    let trust = &profile.trust;
    let policy = city.policy(profile);
    let parts = tap_parts(&ex.tap.entries)?;
    let station_key = trust
        .bundle()
        .station(&parts.certificate.body().station)
        .ok_or_else(|| anyhow!("station not in bundle"))?
        .body()
        .public_key;
    let card_key = parts.certificate.body().card_key;
    let mut ch = CardChannel::new(Replay::new(&ex.tap.entries));
    let mut verify_t = Vec::with_capacity(runs);
    let mut crypto_t = Vec::with_capacity(runs);
    let mut ecdsa_t = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let t_verify = timed_verify(&mut ch, trust, &policy, ex.seed, ex.name)?;

        let start = Instant::now();
        let station_ok = parts.certificate.verify(&station_key).is_ok();
        let card_ok = piv::verify_challenge(&card_key, &parts.challenge, &parts.signature).is_ok();
        let t_crypto = start.elapsed();
        if !(station_ok && card_ok) {
            bail!("PIV signatures did not verify");
        }

        let s = Instant::now();
        std::hint::black_box(parts.certificate.verify(&station_key).is_ok());
        let t_ecdsa = s.elapsed();

        if i >= warmup {
            verify_t.push(t_verify);
            crypto_t.push(t_crypto);
            ecdsa_t.push(t_ecdsa);
        }
    }
    Ok(HostTiming::of_samples(
        runs,
        &mut verify_t,
        &mut crypto_t,
        &mut ecdsa_t,
        None,
    ))
}
