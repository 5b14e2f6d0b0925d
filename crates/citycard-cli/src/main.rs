//! `citycard`: the command-line tool.
//!
//! Exit codes (stable, documented in the README):
//! - 0 success
//! - 1 runtime error (I/O, PC/SC, card refused)
//! - 2 usage error (bad arguments)
//! - 75 `card emulate`: the emulated card lost power (tear fault), as a pulled card

mod commands;
mod secrets;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Municipal resident cards: issue, emulate and verify contactless citycards.
#[derive(Parser, Debug)]
#[command(name = "citycard", version, about, long_about = None)]
struct Cli {
    /// Print every APDU exchange in hex on stderr (`>>` command, `<<` response).
    #[arg(long, global = true)]
    trace: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the whole story on a built-in emulated card: SELECT, life cycle,
    /// personalisation, a library and a transit verification, a rejected clone.
    Demo(commands::demo::DemoArgs),
    /// Benchmarks: APDUs, bytes, estimated card time, host and end-to-end timings (issue 5).
    Bench(commands::bench::BenchArgs),
    /// The reference card: emulate it behind vpcd, inspect it.
    #[command(subcommand)]
    Card(commands::card::CardCommand),
    /// List PC/SC readers and whether a card is present.
    Readers,
    /// Send raw APDUs (hex) to the card in a PC/SC reader and print the responses.
    Apdu(commands::apdu::ApduArgs),
    /// Verify the card in a reader: one tap, one verdict (exit code 0 only for a genuine card).
    Verify(commands::verify::VerifyArgs),
    /// The tap service for gates and desks: watch every reader, one JSON line per tap.
    Watch(commands::watch::WatchArgs),
    /// The city's issuer home.
    #[command(subcommand)]
    Issuer(commands::issuer::IssuerCommand),
    /// Issuing stations.
    #[command(subcommand)]
    Station(commands::issuer::StationCommand),
    /// The city's preparation facility: preparers, and preparing blank cards.
    #[command(subcommand)]
    Preparer(commands::issuer::PreparerCommand),
    /// Partner readers.
    #[command(subcommand)]
    Partner(commands::issuer::PartnerCommand),
    /// The trust bundle for partners.
    #[command(subcommand)]
    Trust(commands::issuer::TrustCommand),
    /// Take a blank card to an issued, locked, verified card.
    Personalise(commands::issuer::PersonaliseArgs),
    /// Issue cards for every row of a CSV or JSON Lines file.
    Batch(commands::issuer::BatchArgs),
    /// Revoke a card.
    Revoke(commands::issuer::RevokeArgs),
    /// Signed revocation lists.
    #[command(subcommand)]
    Revocation(commands::issuer::RevocationCommand),
    /// Residents in the registry (retention and deletion).
    #[command(subcommand)]
    Resident(commands::issuer::ResidentCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(&args, cli.trace),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Card(cmd) => commands::card::run(cmd, cli.trace),
        Command::Readers => commands::apdu::readers(),
        Command::Apdu(args) => commands::apdu::run(&args, cli.trace),
        Command::Verify(args) => commands::verify::run(&args, cli.trace),
        Command::Watch(args) => commands::watch::run(&args),
        Command::Issuer(cmd) => commands::issuer::issuer(cmd),
        Command::Station(cmd) => commands::issuer::station(cmd),
        Command::Preparer(cmd) => commands::issuer::preparer(cmd),
        Command::Partner(cmd) => commands::issuer::partner(cmd),
        Command::Trust(cmd) => commands::issuer::trust(cmd),
        Command::Personalise(args) => commands::issuer::personalise(&args, cli.trace),
        Command::Batch(args) => commands::issuer::batch(&args, cli.trace),
        Command::Revoke(args) => commands::issuer::revoke(&args),
        Command::Revocation(cmd) => commands::issuer::revocation(cmd),
        Command::Resident(cmd) => commands::issuer::resident(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("citycard: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
