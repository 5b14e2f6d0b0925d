//! citycard benchmark harness: what one tap and one issuance cost.
//!
//! [`run`] measures everything this machine can measure exactly (APDUs and
//! bytes of the real exchange, host verification time, end-to-end taps through
//! pcscd + vpcd + the emulated card, issuance) and estimates the card's own
//! time from the card's operation counts × the per-operation JCOP4 costs of
//! SPEC §12 and §14 (module [`model`]). `citycard bench [--json] [--quick]`
//! prints the [`Report`].
//! Timings are measured here and never asserted in tests.

pub mod city;
pub mod compare;
pub mod e2e;
pub mod model;
pub mod personalisation;
pub mod piv;
pub mod registry;
pub mod revocation;
pub mod stats;
pub mod verification;

use serde::Serialize;

pub use city::City;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer iterations (CI): the numbers are noisier.
    pub quick: bool,
    /// Try the pcscd + vpcd rows (skipped with a notice when the bench is absent).
    pub pcsc: bool,
    /// vpcd slot: 0 = `Virtual PCD 00 00` (port 35963), 1 = `Virtual PCD 00 01` (port 35964).
    pub vpcd_slot: u8,
    /// The command line, recorded in the report.
    pub command: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            quick: false,
            pcsc: true,
            vpcd_slot: 0,
            command: "citycard bench".into(),
        }
    }
}

struct Iterations {
    verify_warmup: usize,
    verify_runs: usize,
    e2e_warmup: usize,
    e2e_taps: usize,
    issue_cards: usize,
    batch_cards: usize,
    registry_commits: usize,
    compare_runs: usize,
}

impl Iterations {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                verify_warmup: 20,
                verify_runs: 200,
                e2e_warmup: 3,
                e2e_taps: 30,
                issue_cards: 5,
                batch_cards: 3,
                registry_commits: 50,
                compare_runs: 200,
            }
        } else {
            Self {
                verify_warmup: 200,
                verify_runs: 2000,
                e2e_warmup: 20,
                e2e_taps: 300,
                issue_cards: 30,
                batch_cards: 12,
                registry_commits: 300,
                compare_runs: 2000,
            }
        }
    }
}

/// One verification profile's row.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationRow {
    /// `library`, `transit` or `full_identity` (applet card); `piv (full)`,
    /// `piv (transit)` (PIV card tapped by the full-identity and transit partners).
    pub profile: &'static str,
    /// The card: `citycard` (the applet) or `piv` (the PIV profile).
    pub card_profile: &'static str,
    /// The reader's request (attribute names).
    pub request: Vec<&'static str>,
    /// APDUs of a tap with the reader certificate cached (SELECT and GET RESPONSE included).
    pub apdus: u64,
    /// Command bytes of that tap.
    pub bytes_command: u64,
    /// Response bytes of that tap.
    pub bytes_response: u64,
    /// Estimated card + air time, JCOP4, 424 kbit/s (ms).
    pub est_card_ms_jcop4_424k: f64,
    /// … JCOP4, 106 kbit/s (ms).
    pub est_card_ms_jcop4_106k: f64,
    /// … JCOP3 (2× compute), 424 kbit/s (ms).
    pub est_card_ms_jcop3_424k: f64,
    /// … JCOP3, 106 kbit/s (ms).
    pub est_card_ms_jcop3_106k: f64,
    /// On-card operations of the cached tap.
    pub card_ops: model::CardOps,
    /// The first tap of this reader at this card, cache tried first (GA
    /// answered by a decoy, PSO, GA). For a PIV card, the same as the cached
    /// tap (nothing is cached).
    pub first_tap: verification::TapCounts,
    /// The first tap with the certificate sent first (PSO, GA). For a PIV
    /// card, the same as the cached tap.
    pub first_tap_certificate_first: verification::TapCounts,
    /// Host-side `verify` against a replaying card: median (µs).
    pub host_verify_us_median: f64,
    /// … p95 (µs).
    pub host_verify_us_p95: f64,
    /// The EC operations of that verification alone: median (µs).
    pub host_crypto_us_median: f64,
    /// `host_verify_us_median / host_crypto_us_median` (goal ≤ 1.25).
    pub host_verify_to_crypto_ratio: f64,
    /// Breakdown and run counts of the host timing.
    pub host: verification::HostTiming,
    /// Tap to verdict through pcscd + vpcd + emulated card: median (ms); `null` if not measured.
    pub e2e_ms_median: Option<f64>,
    /// … p95 (ms).
    pub e2e_ms_p95: Option<f64>,
    /// The same APDUs with `transmit_raw` alone: median (ms).
    pub e2e_raw_apdu_ms_median: Option<f64>,
    /// … p95 (ms).
    pub e2e_raw_apdu_ms_p95: Option<f64>,
    /// Taps timed end to end.
    pub e2e_taps: usize,
}

/// The personalisation section.
#[derive(Clone, Debug, Serialize)]
pub struct PersonalisationReport {
    /// APDUs of personalisation proper (SELECT … ACTIVATE).
    pub apdus: u64,
    /// Bytes (command + response) of personalisation proper.
    pub bytes: u64,
    /// Command bytes.
    pub bytes_command: u64,
    /// Response bytes.
    pub bytes_response: u64,
    /// On-card operations of personalisation proper.
    pub card_ops: model::CardOps,
    /// Estimated card + air time of personalisation proper.
    pub estimate: model::Estimate,
    /// Linkability groups issued on the card.
    pub groups: u32,
    /// Card storage the group records take (records, group keys, salt seeds; bytes).
    pub record_storage_bytes: u64,
    /// The card's whole persistent state after issuance (bytes).
    pub state_bytes: u64,
    /// Personalisation, read-back and total of one `issue_one`.
    pub issuance: personalisation::IssuanceCounts,
    /// Host side per card (`issue_one` in process, minus the time inside the in-process card), ms.
    pub host_ms_per_card: f64,
    /// `issue_one` wall time per card in process, card compute included (ms).
    pub host_ms_per_card_incl_card: f64,
    /// Host side as a share of the estimated JCOP4 424 kbit/s card time of the whole issuance (goal ≤ 0.05).
    pub host_share_of_est_card_time: f64,
    /// Cards issued in process for the timing.
    pub host_cards: usize,
    /// Batch through pcscd with swapped emulated cards; `null` if not measured.
    pub cards_per_minute: Option<f64>,
    /// Cards in that batch.
    pub batch_cards: usize,
    /// `issue_one` over PC/SC alone in that batch (card swaps excluded): median (ms).
    pub batch_issue_ms_median: Option<f64>,
    /// `begin_intent` + `commit_issued` pairs per second on the sqlite registry.
    pub registry_commits_per_second: f64,
}

/// The machine.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: Option<String>,
    /// `rustc --version`.
    pub rustc: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Whether this binary was built with optimisations.
    pub release_build: bool,
}

/// The whole report (`citycard bench --json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Report format version.
    pub schema_version: u32,
    /// The command that produced it.
    pub command: String,
    /// `--quick` iterations.
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// One entry per profile.
    pub verification: Vec<VerificationRow>,
    /// Issuance.
    pub personalisation: PersonalisationReport,
    /// p256 against ring; `None` unless built with the `compare-ring` feature.
    pub p256_vs_ring: Option<compare::Comparison>,
    /// Revocation at city scale (1,000,000 cards, 100,000 revoked).
    pub revocation: revocation::RevocationRow,
    /// The vpcd reader used for the pcscd rows.
    pub vpcd_reader: String,
    /// Why the pcscd rows were not measured, if they were not.
    pub pcsc_not_measured: Option<String>,
    /// Wall time of the whole run (s).
    pub elapsed_s: f64,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let rustc =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu,
        rustc,
        kernel,
        release_build: !cfg!(debug_assertions),
    }
}

/// The exchange counts per profile only (no timing): what the tests assert.
pub fn exchange_counts() -> anyhow::Result<Vec<verification::ProfileExchange>> {
    let mut city = City::new()?;
    Ok(verification::exchanges(&mut city)?.1)
}

/// The PIV taps only (no timing): what the tests assert.
pub fn piv_exchange_counts() -> anyhow::Result<Vec<piv::PivExchange>> {
    let mut city = City::new()?;
    Ok(piv::exchanges(&mut city)?.1)
}

/// A row of the verification table, without the end-to-end columns.
fn verification_row(
    name: &'static str,
    card_profile: &'static str,
    profile: &city::Profile,
    (cached, first, certificate_first): (
        &verification::TapCounts,
        &verification::TapCounts,
        &verification::TapCounts,
    ),
    host: verification::HostTiming,
) -> VerificationRow {
    VerificationRow {
        profile: name,
        card_profile,
        request: profile.requested.iter().map(|id| id.name()).collect(),
        apdus: cached.apdus,
        bytes_command: cached.bytes_command,
        bytes_response: cached.bytes_response,
        est_card_ms_jcop4_424k: cached.estimate.jcop4_424k,
        est_card_ms_jcop4_106k: cached.estimate.jcop4_106k,
        est_card_ms_jcop3_424k: cached.estimate.jcop3_424k,
        est_card_ms_jcop3_106k: cached.estimate.jcop3_106k,
        card_ops: cached.card_ops,
        first_tap: first.clone(),
        first_tap_certificate_first: certificate_first.clone(),
        host_verify_us_median: host.verify_us_median,
        host_verify_us_p95: host.verify_us_p95,
        host_crypto_us_median: host.crypto_us_median,
        host_verify_to_crypto_ratio: host.verify_us_median / host.crypto_us_median,
        host,
        e2e_ms_median: None,
        e2e_ms_p95: None,
        e2e_raw_apdu_ms_median: None,
        e2e_raw_apdu_ms_p95: None,
        e2e_taps: 0,
    }
}

fn set_e2e(row: &mut VerificationRow, t: e2e::E2eTiming) {
    row.e2e_ms_median = Some(t.verify_ms_median);
    row.e2e_ms_p95 = Some(t.verify_ms_p95);
    row.e2e_raw_apdu_ms_median = Some(t.raw_apdu_ms_median);
    row.e2e_raw_apdu_ms_p95 = Some(t.raw_apdu_ms_p95);
    row.e2e_taps = t.taps;
}

/// The row of one tap, `(row name, card profile, partner that taps)`, with
/// its counts `(cached, first with the cache tried first, first with the
/// certificate sent first)` and the host time `host` measures (after a
/// progress line).
fn timed_row(
    city: &City,
    it: &Iterations,
    progress: &mut dyn FnMut(&str),
    (name, card_profile, partner): (&'static str, &'static str, &str),
    counts: (
        &verification::TapCounts,
        &verification::TapCounts,
        &verification::TapCounts,
    ),
    host: impl FnOnce(&City, usize, usize) -> anyhow::Result<verification::HostTiming>,
) -> anyhow::Result<VerificationRow> {
    progress(&format!(
        "host verification: {} × {} (after {} warm-up)",
        name, it.verify_runs, it.verify_warmup
    ));
    let host = host(city, it.verify_warmup, it.verify_runs)?;
    let profile = city
        .profiles
        .iter()
        .find(|p| p.name == partner)
        .ok_or_else(|| anyhow::anyhow!("profile"))?;
    Ok(verification_row(name, card_profile, profile, counts, host))
}

/// The verification rows of the applet and the PIV card (counts and host
/// timing), and both cards for the end-to-end rows.
fn verification_rows(
    city: &mut City,
    it: &Iterations,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(Vec<VerificationRow>, city::MemChannel, piv::PivChannel)> {
    progress("exchanges: issuing cards in process, tapping them with each profile");
    let (card_ch, exchanges) = verification::exchanges(city)?;
    let mut rows = Vec::new();
    for ex in &exchanges {
        rows.push(timed_row(
            city,
            it,
            progress,
            (ex.name, "citycard", ex.name),
            (&ex.cached, &ex.first, &ex.first_certificate_first),
            |city, warmup, runs| verification::host_timing(city, ex, warmup, runs),
        )?);
    }
    progress("PIV profile: issuing a PIV card in process (emulated PIV card), tapping it");
    let (piv_ch, piv_exchanges) = piv::exchanges(city)?;
    for ex in &piv_exchanges {
        rows.push(timed_row(
            city,
            it,
            progress,
            (ex.name, "piv", ex.partner),
            (&ex.tap, &ex.tap, &ex.tap),
            |city, warmup, runs| piv::host_timing(city, ex, warmup, runs),
        )?);
    }
    Ok((rows, card_ch, piv_ch))
}

/// Whether the pcscd rows can run: `Err(why not)` when disabled or absent.
fn pcsc_bench(opts: &Options) -> Result<(), String> {
    e2e::set_slot(opts.vpcd_slot);
    if opts.pcsc {
        e2e::bench_available()
    } else {
        Err("disabled".to_string())
    }
}

/// The end-to-end columns through pcscd + vpcd: the applet card's rows, then
/// the PIV card's. `Err` says why they were not (all) measured.
fn measure_end_to_end(
    rows: &mut [VerificationRow],
    (card_ch, piv_ch): (city::MemChannel, piv::PivChannel),
    city: &City,
    it: &Iterations,
    progress: &mut dyn FnMut(&str),
) -> Result<(), String> {
    progress(&format!(
        "end to end through pcscd + vpcd: {} taps per profile",
        it.e2e_taps
    ));
    let card = card_ch.into_inner().into_inner().into_inner();
    let timings = e2e::measure(card, city, it.e2e_warmup, it.e2e_taps)
        .map_err(|e| format!("end to end failed: {e:#}"))?;
    let applet_rows = rows.iter_mut().filter(|r| r.card_profile == "citycard");
    for (row, t) in applet_rows.zip(timings) {
        set_e2e(row, t);
    }
    progress(&format!(
        "end to end through pcscd + vpcd, PIV card: {} taps per row",
        it.e2e_taps
    ));
    let card = piv_ch.into_inner().into_inner().into_inner();
    let partners = piv::ROWS
        .iter()
        .map(|(_, partner)| {
            city.profiles
                .iter()
                .find(|p| p.name == *partner)
                .ok_or_else(|| format!("no profile {partner}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let timings = e2e::measure_card(card, city, &partners, it.e2e_warmup, it.e2e_taps)
        .map_err(|e| format!("end to end (PIV card) failed: {e:#}"))?;
    let piv_rows = rows.iter_mut().filter(|r| r.card_profile == "piv");
    for (row, t) in piv_rows.zip(timings) {
        set_e2e(row, t);
    }
    Ok(())
}

/// The personalisation section: counts, host time, registry commits, and
/// the batch through pcscd when `pcsc` (else `pcsc_not_measured` says why
/// not; a failed batch says so there too).
fn personalisation_report(
    city: &mut City,
    it: &Iterations,
    pcsc_not_measured: &mut Option<String>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PersonalisationReport> {
    progress("personalisation: counts, host time, registry");
    let counts = personalisation::counts(city)?;
    let host = personalisation::host_issuance(city, 2, it.issue_cards)?;
    let commits = personalisation::registry_commits_per_second(city, it.registry_commits)?;
    let mut batch = None;
    if pcsc_not_measured.is_none() {
        progress(&format!(
            "batch through pcscd: {} swapped emulated cards",
            it.batch_cards
        ));
        match personalisation::batch_through_pcscd(city, it.batch_cards) {
            Ok(b) => batch = Some(b),
            Err(e) => *pcsc_not_measured = Some(format!("batch failed: {e:#}")),
        }
    }
    let p = &counts.personalise;
    Ok(PersonalisationReport {
        apdus: p.apdus,
        bytes: p.bytes_command + p.bytes_response,
        bytes_command: p.bytes_command,
        bytes_response: p.bytes_response,
        card_ops: p.card_ops,
        estimate: p.estimate,
        groups: counts.groups,
        record_storage_bytes: counts.record_storage_bytes,
        state_bytes: counts.state_bytes,
        host_ms_per_card: host.host_ms_median,
        host_ms_per_card_incl_card: host.total_ms_median,
        host_share_of_est_card_time: host.host_ms_median / counts.total.estimate.jcop4_424k,
        host_cards: host.cards,
        cards_per_minute: batch.map(|(c, _)| c),
        batch_cards: if batch.is_some() { it.batch_cards } else { 0 },
        batch_issue_ms_median: batch.map(|(_, t)| t),
        registry_commits_per_second: commits,
        issuance: counts,
    })
}

/// p256 against ring, when built with the `compare-ring` feature.
fn compare_ring(
    it: &Iterations,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Option<compare::Comparison>> {
    #[cfg(feature = "compare-ring")]
    {
        progress(&format!("p256 vs ring: {} runs each", it.compare_runs));
        Ok(Some(compare::compare(
            it.compare_runs / 10,
            it.compare_runs,
        )?))
    }
    #[cfg(not(feature = "compare-ring"))]
    {
        let _ = (it.compare_runs, progress);
        Ok(None)
    }
}

/// Runs the whole bench. `progress` gets one line per step (for stderr).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let it = Iterations::new(opts.quick);
    let mut city = City::new()?;
    let (mut rows, card_ch, piv_ch) = verification_rows(&mut city, &it, progress)?;
    let mut pcsc_not_measured = pcsc_bench(opts).err();
    if pcsc_not_measured.is_none() {
        pcsc_not_measured =
            measure_end_to_end(&mut rows, (card_ch, piv_ch), &city, &it, progress).err();
    }
    let personalisation = personalisation_report(&mut city, &it, &mut pcsc_not_measured, progress)?;
    let p256_vs_ring = compare_ring(&it, progress)?;
    progress("revocation: 1,000,000 cards, 100,000 revoked");
    let revocation = revocation::measure(1_000_000, 100_000, 10_000, progress)?;
    Ok(Report {
        schema_version: 2,
        command: opts.command.clone(),
        quick: opts.quick,
        machine: machine(),
        verification: rows,
        personalisation,
        p256_vs_ring,
        revocation,
        vpcd_reader: e2e::reader(),
        pcsc_not_measured,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

mod table;
pub use table::render;
