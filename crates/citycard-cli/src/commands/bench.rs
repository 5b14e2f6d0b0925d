//! `citycard bench`: what one tap and one issuance cost, measured
//! with `citycard-bench` and printed as one table or one JSON object.

use std::process::ExitCode;

/// Arguments of `citycard bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Print the report as one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Fewer iterations (CI): well under a minute, noisier numbers.
    #[arg(long)]
    quick: bool,
    /// Skip the rows that need pcscd + vpcd.
    #[arg(long)]
    no_pcsc: bool,
    /// vpcd slot for the pcscd rows: 0 = "Virtual PCD 00 00" (port 35963), 1 = "Virtual PCD 00 01" (port 35964).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    vpcd_slot: u8,
    #[command(subcommand)]
    what: Option<BenchWhat>,
}

/// What else `citycard bench` can measure.
#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// Registry throughput: issuances and commits per second and commit
    /// latency (p50, p95) for 1 and 8 stations at once, on SQLite and on
    /// PostgreSQL (a throwaway local cluster unless --postgres is given; the
    /// password comes from CITYCARD_REGISTRY_PASSWORD).
    #[command(
        after_help = "Example:\n  citycard bench registry\n  CITYCARD_REGISTRY_PASSWORD=… citycard bench registry --postgres postgres://citycard@db/bench --json"
    )]
    Registry {
        /// An empty PostgreSQL database to measure on (no password in the URL).
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// Issuances per station.
        #[arg(long, default_value_t = 300)]
        per_station: usize,
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the bench.
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(BenchWhat::Registry {
        postgres,
        per_station,
        json,
    }) = &args.what
    {
        let server = match postgres {
            Some(url) => Some((
                url.clone(),
                citycard_registry::pg::password_from_env_or_file(None)?,
            )),
            None => None,
        };
        let (rows, setup) = citycard_bench::registry::run_all(server, *per_station, &mut |line| {
            eprintln!("bench: {line}")
        })?;
        if *json {
            println!(
                "{}",
                serde_json::to_string_pretty(&citycard_bench::registry::RegistryReport {
                    rows,
                    setup
                })?
            );
        } else {
            print!("{}", citycard_bench::registry::render(&rows, &setup));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut command = String::from("citycard bench");
    if args.json {
        command.push_str(" --json");
    }
    if args.quick {
        command.push_str(" --quick");
    }
    if args.no_pcsc {
        command.push_str(" --no-pcsc");
    }
    if args.vpcd_slot != 0 {
        command.push_str(&format!(" --vpcd-slot {}", args.vpcd_slot));
    }
    let opts = citycard_bench::Options {
        quick: args.quick,
        pcsc: !args.no_pcsc,
        vpcd_slot: args.vpcd_slot,
        command,
    };
    let report = citycard_bench::run(&opts, &mut |line| eprintln!("bench: {line}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", citycard_bench::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
