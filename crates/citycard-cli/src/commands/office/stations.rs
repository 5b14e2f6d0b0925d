//! `citycard station add|list|renew|retire`.

use std::process::ExitCode;

use crate::secrets::EnvOrPrompt;
use citycard_issuer::home::IssuerHome;
use citycard_issuer::report::{KeyRole, StationList, StationRetired};

use super::{certify, print_json, today, HomeArg, KeyArgs, ListArgs};
use crate::issuer_try;

/// `citycard station …`
#[derive(clap::Subcommand, Debug)]
pub enum StationCommand {
    /// Add an issuing station: a key certified by the root for N days. All or
    /// nothing: a failure leaves no station directory and no token key behind.
    #[command(
        after_help = "Example:\n  citycard station add desk-1 --dir /srv/citycard --valid-days 180"
    )]
    Add {
        /// Station name (1-16 letters, digits, '-' or '_').
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// Validity in days (a station key is used for months, not years).
        #[arg(long, default_value_t = 180)]
        valid_days: u32,
        #[command(flatten)]
        key: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the stations: validity, key location, fingerprint, retired or not
    /// (with --json: a `stations` array).
    #[command(after_help = "Example:\n  citycard station list --dir /srv/citycard --json")]
    List(ListArgs),
    /// Renew a station's certificate for N days from today, for the same key
    /// (export a new trust bundle afterwards).
    #[command(
        after_help = "Example:\n  citycard station renew desk-1 --dir /srv/citycard --valid-days 180"
    )]
    Renew {
        /// Station name.
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// Validity in days from today.
        #[arg(long, default_value_t = 180)]
        valid_days: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retire a station: it may no longer sign and its key is destroyed; its
    /// certificate stays in the trust bundle until it expires, so the cards it
    /// issued keep verifying.
    #[command(after_help = "Example:\n  citycard station retire desk-1 --dir /srv/citycard")]
    Retire {
        /// Station name.
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `citycard station …`.
pub fn run(cmd: StationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StationCommand::Add {
            name,
            home,
            valid_days,
            key,
            json,
        } => certify(json, &home, KeyRole::Station, &name, "added", |h, day| {
            h.add_station(&name, valid_days, key.location(), &EnvOrPrompt, day)
        }),
        StationCommand::List(ListArgs { home, json }) => list(&home, json),
        StationCommand::Renew {
            name,
            home,
            valid_days,
            json,
        } => {
            let code = certify(json, &home, KeyRole::Station, &name, "renewed", |h, day| {
                h.renew_station(&name, valid_days, &EnvOrPrompt, day)
            })?;
            if !json && code == ExitCode::SUCCESS {
                println!("Export a new trust bundle so that readers know the renewed certificate.");
            }
            Ok(code)
        }
        StationCommand::Retire { name, home, json } => {
            let h = issuer_try!(json, IssuerHome::open(&home.dir));
            let (day, _) = issuer_try!(json, today());
            issuer_try!(json, h.retire_station(&name, &EnvOrPrompt, day));
            if json {
                print_json(&StationRetired::new(&name, day))?;
            } else {
                println!("Station {name} retired: it may no longer sign; its key is destroyed. Cards it issued keep verifying until its certificate expires.");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(home: &HomeArg, json: bool) -> anyhow::Result<ExitCode> {
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let stations = issuer_try!(json, h.stations());
    if json {
        print_json(&StationList::new(&stations))?;
    } else if stations.is_empty() {
        println!("No stations yet (citycard station add NAME --dir DIR).");
    } else {
        for s in &stations {
            println!(
                "{:16} {} to {}  {}  {}",
                s.name,
                s.effective,
                s.expiry,
                s.retired_on
                    .as_ref()
                    .map_or_else(|| "active".to_string(), |d| format!("retired {d}")),
                s.key
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
