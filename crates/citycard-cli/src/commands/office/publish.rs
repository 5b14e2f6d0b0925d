//! `citycard trust export` and `citycard revocation publish`: the files
//! partners load. Their outputs go through the one atomic writer (an
//! existing file needs `--force`; a device or FIFO is written through).

use std::process::ExitCode;

use citycard_issuer::home::IssuerHome;
use citycard_keys::EnvOrPrompt;

use super::{print_json, today, HomeArg, OutArgs};
use crate::issuer_try;

/// `citycard trust …`
#[derive(clap::Subcommand, Debug)]
pub enum TrustCommand {
    /// Write the trust bundle partners load offline (root key, station
    /// certificates, current revocation list, signed by the root).
    #[command(
        after_help = "Example:\n  citycard trust export --dir /srv/citycard --out liege.bundle"
    )]
    Export {
        #[command(flatten)]
        home: HomeArg,
        #[command(flatten)]
        out: OutArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `citycard revocation …`
#[derive(clap::Subcommand, Debug)]
pub enum RevocationCommand {
    /// Sign and write the current revocation list.
    #[command(
        after_help = "Example:\n  citycard revocation publish --dir /srv/citycard --next-update-days 7 --out liege.crl"
    )]
    Publish {
        #[command(flatten)]
        home: HomeArg,
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
    let TrustCommand::Export { home, out, json } = cmd;
    issuer_try!(json, out.check());
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let (_, now_unix) = issuer_try!(json, today());
    let bundle = issuer_try!(json, h.export_trust(&EnvOrPrompt, now_unix));
    issuer_try!(json, out.write(bundle.as_bytes()));
    let b = bundle.body();
    if json {
        print_json(serde_json::json!({
            "ok": true, "out": out.out, "bytes": bundle.as_bytes().len(),
            "stations": b.stations.len(), "revocation_sequence": b.revocations.body().sequence,
            "revoked": b.revocations.body().revoked.len(),
        }));
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
        next_update_days,
        out,
        json,
    } = cmd;
    issuer_try!(json, out.check());
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let (_, now_unix) = issuer_try!(json, today());
    let list = issuer_try!(
        json,
        h.publish_revocations(next_update_days, &EnvOrPrompt, now_unix)
    );
    issuer_try!(json, out.write(list.as_bytes()));
    if json {
        print_json(serde_json::json!({
            "ok": true, "out": out.out, "bytes": list.as_bytes().len(),
            "sequence": list.body().sequence, "revoked": list.body().revoked.len(),
            "next_update_days": next_update_days,
        }));
    } else {
        eprintln!(
            "Revocation list #{} written to {} ({} bytes, {} revoked card(s), next update in {next_update_days} day(s)).",
            list.body().sequence,
            out.out.display(),
            list.as_bytes().len(),
            list.body().revoked.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
