//! `citycard preparer add|prepare`: the city's preparation facility (SPEC §6.3).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use citycard_issuer::home::IssuerHome;
use citycard_issuer::personalise::{self, Preparer};
use citycard_issuer::report::{CardPrepared, KeyRole};
use citycard_transport::{CardChannel, CardTransport, MemoryTransport, PcscContext, Traced};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::{certify, fail_json, print_json, today, HomeArg, KeyArgs};
use crate::secrets::EnvOrPrompt;
use crate::{exit, issuer_try};

/// `citycard preparer …`
#[derive(clap::Subcommand, Debug)]
pub enum PreparerCommand {
    /// Add a preparer (the city's preparation facility): a key certified by
    /// the root. Stations accept only cards whose preparation certificate one
    /// of the home's preparers signed.
    #[command(after_help = "Example:\n  citycard preparer add facility-1 --dir /srv/citycard")]
    Add {
        /// Preparer name (1-16 letters, digits, '-' or '_').
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        #[command(flatten)]
        key: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prepare the blank card in a reader, in the trusted setting of the
    /// preparation facility: the card generates its attestation key and the
    /// preparer certifies it.
    #[command(
        after_help = "Example:\n  citycard preparer prepare facility-1 --dir /srv/citycard --reader 'ACS ACR122U'"
    )]
    Prepare {
        /// Preparer name.
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// PC/SC reader name (or unique part), or `emulated:FILE` for the
        /// built-in emulated card with its state in FILE.
        #[arg(long)]
        reader: String,
        /// Preparation batch (the holder of the card's certificate; seen by stations only).
        #[arg(long, default_value = "batch-1")]
        batch: String,
        /// Seconds to wait for a card.
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The card behind `reader`: a PC/SC reader, or an emulated card file;
/// with `trace`, every exchange is printed on stderr.
fn card(reader: &str, wait: u64, trace: bool) -> anyhow::Result<Box<dyn CardTransport>> {
    let card: Box<dyn CardTransport> = if let Some(file) = reader.strip_prefix("emulated:") {
        let store = citycard_emulator::FileStore::new(Path::new(file))?;
        let rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
        Box::new(MemoryTransport::new(citycard_card::Applet::new(store, rng)))
    } else {
        let ctx = PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
        let reader = ctx.resolve_reader(reader)?;
        ctx.wait_for_card(&reader, Some(Duration::from_secs(wait)))?;
        Box::new(ctx.connect(&reader)?)
    };
    Ok(if trace {
        Box::new(Traced::counters_only(card).echo_to_stderr())
    } else {
        card
    })
}

/// Runs `citycard preparer …`; `trace` (the top-level `--trace`) prints the
/// APDUs of `prepare`.
pub fn run(cmd: PreparerCommand, trace: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        PreparerCommand::Add {
            name,
            home,
            valid_days,
            key,
            json,
        } => certify(json, &home, KeyRole::Preparer, &name, "added", |h, day| {
            h.add_preparer(&name, valid_days, key.location(), &EnvOrPrompt, day)
        }),
        PreparerCommand::Prepare {
            name,
            home,
            reader,
            batch,
            wait,
            json,
        } => prepare(&name, &home, &reader, &batch, wait, json, trace),
    }
}

/// `preparer prepare`: the card generates its attestation key, the preparer
/// certifies it.
fn prepare(
    name: &str,
    home: &HomeArg,
    reader: &str,
    batch: &str,
    wait: u64,
    json: bool,
    trace: bool,
) -> anyhow::Result<ExitCode> {
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let (day, _) = issuer_try!(json, today());
    let preparer = issuer_try!(json, h.preparer(name, &EnvOrPrompt));
    let root = issuer_try!(json, h.root_public_key());
    let transport = match card(reader, wait, trace) {
        Ok(t) => t,
        Err(e) => return fail_json(json, exit::WRONG_CARD, e),
    };
    let mut ch = CardChannel::new(transport);
    let sign = |m: &[u8]| preparer.signer.sign(m);
    let prepared = personalise::prepare(
        &mut ch,
        &Preparer {
            issuer: &h.config().issuer_id,
            root: &root,
            certificate: &preparer.certificate,
            sign: &sign,
            batch,
        },
        day,
    );
    if let Err(e) = prepared {
        return fail_json(
            json,
            super::code_of_card_error(&e),
            format!("preparation failed: {e}"),
        );
    }
    if json {
        print_json(&CardPrepared::new(name, batch))?;
    } else {
        println!("Card prepared by {name} (batch {batch}): ready for a station.");
    }
    Ok(ExitCode::SUCCESS)
}
