//! `citycard trust export|show` and `citycard revocation publish`: the
//! files partners load. Their outputs go through the one atomic writer (an
//! existing file needs `--force`; a device or FIFO is written through).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::secrets::EnvOrPrompt;
use citycard_issuer::home::IssuerHome;
use citycard_issuer::report::{RevocationPublished, TrustExported, TrustShow};

use super::{fail_json, print_json, today, HomeArg, OutArgs};
use crate::exit;
use crate::issuer_try;

/// `citycard trust …`
#[derive(clap::Subcommand, Debug)]
pub enum TrustCommand {
    /// Write the trust bundle partners load offline (root key, station
    /// certificates, the last published revocation list, signed by the
    /// root). Refused if cards were revoked since: use `revocation publish`.
    #[command(
        after_help = "Example:\n  citycard trust export --dir /srv/citycard --out liege.bundle"
    )]
    Export {
        #[command(flatten)]
        home: HomeArg,
        /// The linkability group whose partners load the bundle (their
        /// credential names it, `partner enrol --group`): its revocation list.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=7))]
        group: u8,
        #[command(flatten)]
        out: OutArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a trust bundle: issuer, root fingerprint, list number, dates,
    /// revoked count, age.
    #[command(after_help = "Example:\n  citycard trust show liege.bundle --json")]
    Show {
        /// The trust bundle file.
        file: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `citycard revocation …`
#[derive(clap::Subcommand, Debug)]
pub enum RevocationCommand {
    /// Sign a new revocation list and write the trust bundle that carries
    /// it: the file partners load (`verify --trust`, `watch --trust`).
    #[command(
        after_help = "Example (--force replaces the bundle of the last run):\n  citycard revocation publish --dir /srv/citycard --next-update-days 2 --out liege.bundle --force"
    )]
    Publish {
        #[command(flatten)]
        home: HomeArg,
        /// The linkability group whose partners load the bundle (their
        /// credential names it, `partner enrol --group`): its revocation list.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=7))]
        group: u8,
        /// Days until the next scheduled update.
        #[arg(long, default_value_t = 7)]
        next_update_days: u32,
        #[command(flatten)]
        out: OutArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `citycard trust …`.
pub fn trust(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    let (home, group, out, json) = match cmd {
        TrustCommand::Export {
            home,
            group,
            out,
            json,
        } => (home, group, out, json),
        TrustCommand::Show { file, json } => return trust_show(&file, json),
    };
    issuer_try!(json, out.check());
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let (_, now_unix) = issuer_try!(json, today());
    let bundle = issuer_try!(json, h.export_trust_for(group, &EnvOrPrompt, now_unix));
    issuer_try!(json, out.write(bundle.as_bytes()));
    let b = bundle.body();
    if json {
        print_json(&TrustExported::new(&out.out, &bundle))?;
    } else {
        eprintln!(
            "Trust bundle written to {} ({} bytes: root, {} station certificate(s), revocation list #{} with {} card(s)).",
            out.out.display(),
            bundle.as_bytes().len(),
            b.stations.len(),
            b.revocations.body().sequence,
            b.revocations.body().revoked.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `citycard revocation …`.
pub fn revocation(cmd: RevocationCommand) -> anyhow::Result<ExitCode> {
    let RevocationCommand::Publish {
        home,
        group,
        next_update_days,
        out,
        json,
    } = cmd;
    issuer_try!(json, out.check());
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let (_, now_unix) = issuer_try!(json, today());
    let bundle = issuer_try!(
        json,
        h.publish_for(group, next_update_days, &EnvOrPrompt, now_unix)
    );
    issuer_try!(json, out.write(bundle.as_bytes()));
    let list = bundle.body().revocations.body();
    if json {
        print_json(&RevocationPublished::new(
            &out.out,
            &bundle,
            next_update_days,
        ))?;
    } else {
        eprintln!(
            "Trust bundle with revocation list #{} written to {} ({} bytes, {} revoked card(s), next update in {next_update_days} day(s)). Give partners this file.",
            list.sequence,
            out.out.display(),
            bundle.as_bytes().len(),
            list.revoked.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `trust show FILE`.
fn trust_show(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bundle = match citycard_reader::load_bundle(file) {
        Ok(b) => b,
        Err(e) => return fail_json(json, exit::INPUT, e),
    };
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let shown = TrustShow::new(&bundle, now_unix);
    let verified = shown.signature_valid;
    let body = bundle.body();
    let list = body.revocations.body();
    let fingerprint = &shown.root_fingerprint;
    let age = shown.revocation_list.age_secs;
    let stale = shown.revocation_list.stale;
    if json {
        print_json(&shown)?;
    } else {
        let when = |t: u64| {
            citycard_proto::date::Date::from_days_since_epoch((t / 86_400) as i64)
                .map(|d| format!("{d} {:02}:{:02} UTC", t % 86_400 / 3600, t % 3600 / 60))
                .unwrap_or_else(|_| t.to_string())
        };
        let human = citycard_reader::human_duration;
        let next = if stale {
            format!(
                "passed {} ago: readers refuse cards",
                human(now_unix - list.next_update)
            )
        } else {
            format!("in {}", human(list.next_update - now_unix))
        };
        println!(
            "Trust bundle {} ({} bytes)",
            file.display(),
            bundle.as_bytes().len()
        );
        println!("  issuer            {} (group {})", body.issuer, body.group);
        println!("  root fingerprint  {fingerprint}");
        println!(
            "  signatures        {}",
            if verified { "valid" } else { "INVALID" }
        );
        println!("  stations          {}", body.stations.len());
        println!("  revocation list   #{}", list.sequence);
        println!(
            "  issued at         {} ({} ago)",
            when(list.issued_at),
            human(age)
        );
        println!("  next update       {} ({next})", when(list.next_update));
        println!("  revoked cards     {}", list.revoked.len());
    }
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::INPUT)
    })
}
