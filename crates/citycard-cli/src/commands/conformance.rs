//! `citycard conformance card` and `citycard conformance reader`: the kits for
//! card and reader makers (docs/conformance.md). The checks live in the
//! `citycard-conformance` crate; this module parses and prints.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use citycard_conformance::report::Report;
use citycard_conformance::{run_card_kit, vectors, SpecVersion};
use citycard_transport::{PcscContext, Traced, TransportError};

/// `citycard conformance …`
#[derive(clap::Subcommand, Debug)]
pub enum ConformanceCommand {
    /// Check a BLANK card in a PC/SC reader against the spec version this build
    /// implements (the card is anchored to a throwaway city and terminated: it is
    /// used up). With `--vector`, replay one test vector byte for byte instead.
    #[command(
        after_help = "Examples:\n  citycard conformance card --reader 'ACS ACR122U' --junit card-report.xml\n  citycard conformance card --reader 'ACS ACR122U' --vector applet-spec/vectors/verify-library.json --json"
    )]
    Card(CardArgs),
    /// Check a reader: present a sequence of emulated cards in `Virtual PCD 00 00`
    /// and compare the verdicts the reader reports with the expected ones.
    #[command(
        after_help = "Examples:\n  citycard conformance reader --dir /tmp/kit --reader-command 'my-gate-reader --trust {trust} --credential {credential}' --junit reader-report.xml\n  (until [ -e /tmp/kit/library.cred ]; do sleep 1; done; my-gate-reader --trust /tmp/kit/conformance.bundle --credential /tmp/kit/library.cred) | citycard conformance reader --dir /tmp/kit"
    )]
    Reader(super::conformance_reader::ReaderArgs),
}

/// How to print a report.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the report as JUnit XML to this file (for CI systems):
    /// replaced if it exists, written atomically, mode 0600; a device or
    /// FIFO such as /dev/stdout is written through.
    #[arg(long)]
    junit: Option<PathBuf>,
}

impl OutputArgs {
    /// Prints `report` and returns the exit code (0 conforms, 51 does not).
    pub fn emit(&self, report: &Report) -> anyhow::Result<ExitCode> {
        if self.json {
            println!("{}", report.to_json());
        } else {
            print!("{}", report.to_text());
        }
        if let Some(path) = &self.junit {
            citycard_files::write_file(
                path,
                report.to_junit().as_bytes(),
                citycard_files::Overwrite::Replace,
            )
            .context("writing the JUnit report")?;
        }
        Ok(if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(crate::exit::NOT_CONFORMING)
        })
    }
}

/// Arguments of `conformance card`.
#[derive(clap::Args, Debug)]
pub struct CardArgs {
    /// PC/SC reader name (or unique part of it).
    #[arg(long)]
    reader: String,
    /// Seconds to wait for a card if none is present.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Replay this test vector file (applet-spec/vectors/*.json) byte for byte. The
    /// card must be BLANK and in deterministic mode with the vector's card_seed.
    #[arg(long)]
    vector: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a `conformance` subcommand.
pub fn run(cmd: ConformanceCommand, trace: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        ConformanceCommand::Card(args) => card(&args, trace),
        ConformanceCommand::Reader(args) => super::conformance_reader::run(&args),
    }
}

fn card(args: &CardArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let version = SpecVersion::current()
        .context("this build implements a spec version the kit has no table for")?;
    let vector = match &args.vector {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(vectors::parse(&text)?)
        }
        None => None,
    };
    let ctx = PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
    let reader = ctx.resolve_reader(&args.reader)?;
    match ctx.wait_for_card(&reader, Some(Duration::from_secs(args.wait))) {
        Ok(_) => {}
        Err(TransportError::Timeout) => {
            eprintln!("citycard: error: no card in {reader} within {}s", args.wait);
            return Ok(ExitCode::from(crate::exit::ERROR));
        }
        Err(e) => return Err(e.into()),
    }
    let transport = ctx.connect(&reader)?;
    let mut traced = Traced::counters_only(transport);
    if trace {
        traced = traced.echo_to_stderr();
    }
    let report = match &vector {
        Some(v) => vectors::replay(v, &mut traced, &reader, version.byte())?,
        None => run_card_kit(&mut traced, &reader)?,
    };
    let _ = traced.into_inner().disconnect();
    args.output.emit(&report)
}
