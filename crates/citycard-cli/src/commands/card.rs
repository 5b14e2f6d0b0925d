//! `citycard card emulate` and `citycard card show`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use citycard_card::{Applet, Faults, PersistentState, Storage};
use citycard_emulator::{
    serve, FileStore, ServeOptions, ServeOutcome, TearingStorage, POWER_LOST_EXIT_STATUS,
};
use citycard_issuer::report::EmulatedCardState;
use citycard_piv_card::{Faults as PivFaults, PivCard, PivState, Summary};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// `citycard card …`
#[derive(clap::Subcommand, Debug)]
pub enum CardCommand {
    /// Run the reference card (or, with `--profile piv`, the emulated PIV card) as
    /// the card in a vpcd virtual reader (pcscd must be running with
    /// vsmartcard-vpcd installed). Runs until killed.
    #[command(
        after_help = "Example:\n  citycard card emulate --state /tmp/card.state --vpcd 127.0.0.1:35963"
    )]
    Emulate(EmulateArgs),
    /// Show a card: the registry's record of card NUMBER (`--dir`: state,
    /// station, dates; never attributes), or the life cycle and contents summary
    /// of an emulated card's state file (`--state`; no personal data).
    #[command(
        after_help = "Examples:\n  citycard card show LG-000002 --dir /srv/citycard --json\n  citycard card show --state cards/card-000001.state"
    )]
    Show {
        /// The card number (with --dir).
        #[arg(requires = "dir", conflicts_with = "state")]
        number: Option<String>,
        /// The issuer home whose registry to look in.
        #[arg(long, requires = "number")]
        dir: Option<PathBuf>,
        /// An emulated card's state file.
        #[arg(long, required_unless_present = "number")]
        state: Option<PathBuf>,
        /// Print the registry record as JSON (a state file is always shown as JSON).
        #[arg(long)]
        json: bool,
    },
}

/// Which card application `card emulate` serves.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// The citycard reference card (applet-spec/SPEC.md).
    #[default]
    Citycard,
    /// The emulated PIV card (NIST SP 800-73-4 subset, crate citycard-piv-card).
    Piv,
}

/// Arguments of `card emulate`.
#[derive(clap::Args, Debug)]
pub struct EmulateArgs {
    /// Card profile: `citycard` (the reference card) or `piv` (a PIV card that
    /// yubico-piv-tool and OpenSC accept). The state file must belong to the same profile.
    #[arg(long, value_enum, default_value_t = Profile::Citycard)]
    profile: Profile,
    /// vpcd address: 127.0.0.1:35963 is reader "Virtual PCD 00 00", 127.0.0.1:35964 is "Virtual PCD 00 01".
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: SocketAddr,
    /// The card's persistent state ("EEPROM"); a blank card is created if it does not exist.
    #[arg(long)]
    state: PathBuf,
    /// Deterministic mode (test builds only, SPEC §7.8): 32-byte hex seed for
    /// all card randomness. Exists only in a `citycard` built with the
    /// `deterministic-card` feature (the end-to-end tests); a production
    /// build refuses it.
    #[cfg(feature = "deterministic-card")]
    #[arg(long)]
    seed: Option<String>,
    /// Test-bench fault, repeatable: `tear-after-writes=N` (the first N persistent
    /// writes complete, the next is interrupted partway and the process exits with
    /// status 75), `clone` (same public data, a different private key; for the PIV
    /// profile: slot 9E signs with a different key),
    /// `latency-ms=N` (delay every response by N ms); a card that answers
    /// GENERAL AUTHENTICATE wrongly: `wrong-sw`, `truncated`, `over-long`,
    /// `flip-ciphertext`, `replay`, `decoy`, `stale-record`, `endless-61xx`,
    /// `removed-mid-answer` (docs/conformance.md gives the verdict a correct
    /// reader must give for each).
    #[arg(long = "fault")]
    faults: Vec<String>,
}

struct TracedCard<C> {
    inner: C,
    trace: bool,
}

impl<C: ContactlessCard> ContactlessCard for TracedCard<C> {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) {
        if self.trace {
            eprintln!("-- reset");
        }
        self.inner.reset();
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let r = self.inner.transmit(command);
        if self.trace {
            match &r {
                Ok(resp) => super::trace_line(command, resp),
                Err(_) => eprintln!(">> {}\n<< (power lost)", hex::encode_upper(command)),
            }
        }
        r
    }
}

/// Runs a `card` subcommand.
pub fn run(cmd: CardCommand, trace: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        CardCommand::Emulate(args) => emulate(&args, trace),
        CardCommand::Show {
            number: Some(number),
            dir: Some(dir),
            json,
            ..
        } => super::office::records::card_record(&number, &dir, json),
        CardCommand::Show {
            state: Some(state), ..
        } => show(&state),
        CardCommand::Show { .. } => {
            eprintln!("citycard: error: give a card NUMBER with --dir, or --state FILE");
            Ok(ExitCode::from(crate::exit::USAGE))
        }
    }
}

/// The card's randomness: the operating system's, or — in a test build
/// only — the generator seeded with `--seed`.
fn rng(args: &EmulateArgs) -> anyhow::Result<ChaCha20Rng> {
    #[cfg(feature = "deterministic-card")]
    if let Some(h) = &args.seed {
        let bytes: [u8; 32] = hex::decode(h)
            .context("--seed is not hex")?
            .try_into()
            .map_err(|_| anyhow::anyhow!("--seed must be 32 bytes (64 hex digits)"))?;
        return Ok(ChaCha20Rng::from_seed(bytes));
    }
    #[cfg(not(feature = "deterministic-card"))]
    let _ = args;
    ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")
}

fn emulate(args: &EmulateArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let mut faults = Faults::default();
    let mut tear = None;
    let mut latency = None;
    let mut answer_fault = None;
    for f in &args.faults {
        if f == "clone" {
            faults.clone = true;
            continue;
        }
        match f.parse::<citycard_emulator::Fault>() {
            Ok(citycard_emulator::Fault::TearAfterWrites(n)) => tear = Some(n),
            Ok(citycard_emulator::Fault::Latency(d)) => latency = Some(d),
            Ok(citycard_emulator::Fault::Answer(a)) => answer_fault = Some(a),
            Ok(other) => bail!("unsupported fault {other:?}"),
            Err(e) => bail!("{e} (or clone)"),
        }
    }
    let store = FileStore::new(&args.state)
        .with_context(|| format!("state file {}", args.state.display()))?;
    let rng = rng(args)?;
    let mut opts = ServeOptions::new(args.vpcd);
    opts.latency = latency;
    opts.answer_fault = answer_fault;
    let storage: Box<dyn Storage> = match tear {
        Some(n) => {
            let tearing = TearingStorage::new(store, n);
            opts.power_latch = Some(tearing.latch());
            Box::new(tearing)
        }
        None => Box::new(store),
    };
    let fault_text = format!(
        "{}{}{}{}",
        if faults.clone { ", fault clone" } else { "" },
        tear.map(|n| format!(", fault tear-after-writes={n}"))
            .unwrap_or_default(),
        latency
            .map(|d| format!(", fault latency-ms={}", d.as_millis()))
            .unwrap_or_default(),
        answer_fault
            .map(|a| format!(", fault {a}"))
            .unwrap_or_default(),
    );
    if args.profile == Profile::Piv {
        if let Some(fault) = answer_fault {
            bail!("--fault {fault} alters citycard GENERAL AUTHENTICATE answers; it does not apply to --profile piv");
        }
        let mut card = PivCard::new(storage, rng);
        let Some(summary) = card.summary() else {
            bail!(
                "the state file {} is not a readable PIV card state (corrupt, or a citycard-profile card?)",
                args.state.display()
            );
        };
        card.set_faults(PivFaults {
            clone: faults.clone,
        });
        eprintln!(
            "citycard card emulate: PIV card ({} key slot(s), {} data object(s), state {}), vpcd {}{fault_text}",
            summary.key_slots.len(),
            summary.objects.len(),
            args.state.display(),
            args.vpcd,
        );
        return serve_traced(card, trace, &opts);
    }
    let mut applet = Applet::new(storage, rng);
    let Some(life_cycle) = applet.life_cycle() else {
        bail!(
            "the state file {} is corrupt (or a PIV card state: use --profile piv); the card would be mute",
            args.state.display()
        );
    };
    applet.set_faults(faults);
    eprintln!(
        "citycard card emulate: {} card (state {}), vpcd {}{fault_text}",
        life_cycle.name(),
        args.state.display(),
        args.vpcd,
    );
    serve_traced(applet, trace, &opts)
}

fn serve_traced<C: ContactlessCard>(
    inner: C,
    trace: bool,
    opts: &ServeOptions,
) -> anyhow::Result<ExitCode> {
    let mut card = TracedCard { inner, trace };
    match serve(&mut card, opts)? {
        ServeOutcome::PowerLost => {
            eprintln!("citycard card emulate: power lost (tear fault); exiting like a pulled card");
            Ok(ExitCode::from(POWER_LOST_EXIT_STATUS as u8))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn show(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    if !path.is_file() {
        eprintln!(
            "citycard: error: {}: no such state file (an emulated card's state file is created by `card emulate` or `--reader emulated:DIR`)",
            path.display()
        );
        return Ok(ExitCode::from(crate::exit::INPUT));
    }
    let mut store =
        FileStore::new(path).with_context(|| format!("state file {}", path.display()))?;
    let Some(bytes) = store.load().map_err(|e| anyhow::anyhow!("{e}"))? else {
        println!("{}", serde_json::to_string(&EmulatedCardState::blank())?);
        return Ok(ExitCode::SUCCESS);
    };
    if PivState::is_piv_state(&bytes) {
        let summary =
            Summary::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("PIV card state: {e}"))?;
        println!(
            "{}",
            serde_json::to_string(&EmulatedCardState::from(&summary))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let state = PersistentState::decode(&bytes).map_err(|_| anyhow::anyhow!("state is corrupt"))?;
    println!(
        "{}",
        serde_json::to_string(&EmulatedCardState::from(&state))?
    );
    Ok(ExitCode::SUCCESS)
}
