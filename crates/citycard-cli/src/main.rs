//! `citycard`: the command-line tool. Exit codes: [`exit`] (one table for
//! every command, printed by `citycard --help`).

mod commands;
mod exit;
mod secrets;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Municipal resident cards: a city issues contactless resident cards; partners
/// (libraries, transit, shops) verify them offline in one tap and learn only
/// what their certificate allows.
#[derive(Parser, Debug)]
#[command(
    name = "citycard",
    version,
    about,
    long_about = None,
    after_help = exit::TABLE
)]
struct Cli {
    /// Print every APDU exchange in hex on stderr (`>>` command, `<<` response).
    /// Only for commands that talk to a card: demo, card, conformance, apdu,
    /// verify, personalise, batch, preparer prepare.
    #[arg(long)]
    trace: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the whole story on a built-in emulated card: SELECT, life cycle,
    /// personalisation, a library and a transit verification, a rejected clone.
    #[command(after_help = "Example:\n  citycard demo")]
    Demo(commands::demo::DemoArgs),
    /// Benchmarks: APDUs, bytes, estimated card time, host and end-to-end timings.
    #[command(after_help = "Example:\n  citycard bench --quick --json")]
    Bench(commands::bench::BenchArgs),
    /// The reference card: emulate it behind vpcd; show a state file or the registry's record of a card.
    #[command(subcommand)]
    Card(commands::card::CardCommand),
    /// List PC/SC readers and whether a card is present.
    #[command(after_help = "Example:\n  citycard readers")]
    Readers,
    /// Conformance kits for card and reader makers (docs/conformance.md).
    #[command(subcommand)]
    Conformance(commands::conformance::ConformanceCommand),
    /// Send raw APDUs (hex) to the card in a PC/SC reader and print the responses.
    #[command(
        after_help = "Example:\n  citycard apdu -r 'Virtual PCD 00' 00A404000AF043495459434152440100"
    )]
    Apdu(commands::apdu::ApduArgs),
    /// Verify the card in a reader: one tap, one verdict (exit code 0 only for a genuine card).
    #[command(
        after_help = "Example:\n  citycard verify --reader 'ACS ACR122U' --trust liege.bundle --credential library.cred --json"
    )]
    Verify(commands::verify::VerifyArgs),
    /// The tap service for gates and desks: watch every reader, one JSON line per tap.
    #[command(
        after_help = "Example:\n  citycard watch --trust liege.bundle --credential transit.cred --readers all"
    )]
    Watch(commands::watch::WatchArgs),
    /// The local reader service for web desks: events over Server-Sent Events and a desk page.
    #[command(
        after_help = "Example:\n  citycard serve --trust liege.bundle --credential library.cred --allow-origin https://desk.library.example"
    )]
    Serve(commands::serve::ServeArgs),
    /// The city's issuer home: create it, show it, back it up.
    #[command(subcommand)]
    Issuer(commands::office::home::IssuerCommand),
    /// Issuing stations: add, list, renew, retire.
    #[command(subcommand)]
    Station(commands::office::stations::StationCommand),
    /// The city's preparation facility: preparers, and preparing blank cards.
    #[command(subcommand)]
    Preparer(commands::office::preparers::PreparerCommand),
    /// Partner readers: enrol, list, renew.
    #[command(subcommand)]
    Partner(commands::office::partners::PartnerCommand),
    /// The trust bundle for partners.
    #[command(subcommand)]
    Trust(commands::office::publish::TrustCommand),
    /// Take a blank card to an issued, locked, verified card.
    Personalise(commands::office::issue::PersonaliseArgs),
    /// Issue cards for every row of a CSV or JSON Lines file.
    Batch(commands::office::issue::BatchArgs),
    /// Revoke a card.
    Revoke(commands::office::records::RevokeArgs),
    /// Signed revocation lists.
    #[command(subcommand)]
    Revocation(commands::office::publish::RevocationCommand),
    /// Residents in the registry: show what is kept, forget them.
    #[command(subcommand)]
    Resident(commands::office::records::ResidentCommand),
    /// The registry's audit log.
    #[command(subcommand)]
    Audit(commands::office::records::AuditCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  citycard completions bash > /etc/bash_completion.d/citycard"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from this help.
    #[command(after_help = "Example:\n  citycard man > /usr/local/share/man/man1/citycard.1")]
    Man,
}

impl Command {
    /// Whether APDUs flow in this command (so `--trace` means something).
    fn talks_to_cards(&self) -> bool {
        matches!(
            self,
            Self::Demo(_)
                | Self::Card(_)
                | Self::Conformance(_)
                | Self::Apdu(_)
                | Self::Verify(_)
                | Self::Personalise(_)
                | Self::Batch(_)
                | Self::Preparer(commands::office::preparers::PreparerCommand::Prepare { .. })
        )
    }
}

/// A usage error in the JSON the command would have printed: `verify
/// --json` prints a `verify.v1` error, `watch` and `serve` a `fatal` event.
/// `None` for other commands, and for `--help` and `--version`.
fn usage_error_json(e: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.iter().find(|a| !a.starts_with('-'))?;
    let message = e.kind().to_string();
    let detail = e.to_string();
    let first = detail
        .lines()
        .next()
        .unwrap_or(&message)
        .trim_start_matches("error: ");
    match command.as_str() {
        "verify" if args.iter().any(|a| a == "--json") => {
            serde_json::to_string(&citycard_reader::json::ErrorJson::new("usage", first, 2)).ok()
        }
        "watch" | "serve" => {
            Some(citycard_reader::TapEvent::fatal("usage", first, 2).to_json_line())
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(json) = usage_error_json(&e) {
                println!("{json}");
                let _ = e.print();
                return ExitCode::from(exit::USAGE);
            }
            e.exit()
        }
    };
    if cli.trace && !cli.command.talks_to_cards() {
        eprintln!("citycard: error: --trace is for commands that talk to a card (demo, card, conformance, apdu, verify, personalise, batch, preparer prepare)");
        return ExitCode::from(exit::USAGE);
    }
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(&args, cli.trace),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Card(cmd) => commands::card::run(cmd, cli.trace),
        Command::Conformance(cmd) => commands::conformance::run(cmd, cli.trace),
        Command::Readers => commands::apdu::readers(),
        Command::Apdu(args) => commands::apdu::run(&args, cli.trace),
        Command::Verify(args) => commands::verify::run(&args, cli.trace),
        Command::Watch(args) => commands::watch::run(&args),
        Command::Serve(args) => commands::serve::run(&args),
        Command::Issuer(cmd) => commands::office::home::run(cmd),
        Command::Station(cmd) => commands::office::stations::run(cmd),
        Command::Preparer(cmd) => commands::office::preparers::run(cmd, cli.trace),
        Command::Partner(cmd) => commands::office::partners::run(cmd),
        Command::Trust(cmd) => commands::office::publish::trust(cmd),
        Command::Personalise(args) => {
            commands::office::issue::personalise(&args.with_trace(cli.trace))
        }
        Command::Batch(args) => commands::office::issue::batch(&args.with_trace(cli.trace)),
        Command::Revoke(args) => commands::office::records::revoke(&args),
        Command::Revocation(cmd) => commands::office::publish::revocation(cmd),
        Command::Resident(cmd) => commands::office::records::resident(cmd),
        Command::Audit(cmd) => commands::office::records::audit(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "citycard",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("citycard: error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}
