//! The registry, for the officer: `revoke`, `resident forget|show`, `card
//! show NUMBER`, `audit export`.

use std::path::Path;
use std::process::ExitCode;

use citycard_issuer::home::IssuerHome;
use citycard_issuer::report::{AuditLine, CardShow, ResidentForgotten, ResidentShow, Revoked};
use citycard_registry::{CardState, RegistryError, RevocationReason};

use super::{actor, fail_json, print_json, HomeArg, OutArgs};
use crate::{exit, issuer_try};

/// Why a card is revoked (the value of `--reason`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The holder lost the card.
    Lost,
    /// The card was stolen.
    Stolen,
    /// The card is damaged and is being replaced.
    Damaged,
    /// The city withdrew the card (the holder moved away, or asked for it).
    Withdrawn,
}

impl From<Reason> for RevocationReason {
    fn from(r: Reason) -> Self {
        match r {
            Reason::Lost => Self::Lost,
            Reason::Stolen => Self::Stolen,
            Reason::Damaged => Self::Damaged,
            Reason::Withdrawn => Self::Withdrawn,
        }
    }
}

/// Arguments of `revoke`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  citycard revoke LG-000002 --dir /srv/citycard --reason lost\n  citycard revocation publish --dir /srv/citycard --next-update-days 2 --out liege.bundle --force"
)]
pub struct RevokeArgs {
    /// Card number.
    card: String,
    #[command(flatten)]
    home: HomeArg,
    /// Why.
    #[arg(long, value_enum)]
    reason: Reason,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `citycard resident …`
#[derive(clap::Subcommand, Debug)]
pub enum ResidentCommand {
    /// Erase what the registry holds about a resident: their stored attributes
    /// (if the city keeps any) and the link from their cards to their reference.
    /// Card numbers, dates and revocation state stay, so revocation still works.
    /// A resident with a live card needs --force: afterwards the one-live-card
    /// rule can no longer recognise them, so they could be issued a second card.
    #[command(after_help = "Example:\n  citycard resident forget F-0001 --dir /srv/citycard")]
    Forget {
        /// The resident id (the office's file reference).
        resident_id: String,
        #[command(flatten)]
        home: HomeArg,
        /// Forget even though the resident has a live card (revoke it first to keep the rule).
        #[arg(long)]
        force: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what the registry holds about a resident: their live card and
    /// stored attributes (only if the city keeps attributes), with the
    /// retention deadline.
    #[command(after_help = "Example:\n  citycard resident show F-0001 --dir /srv/citycard --json")]
    Show {
        /// The resident id.
        resident_id: String,
        #[command(flatten)]
        home: HomeArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `citycard audit …`
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Export the audit log as JSON lines (seq, at, actor, station, action,
    /// card_number): never personal attributes.
    #[command(
        after_help = "Example:\n  citycard audit export --dir /srv/citycard --since 2026-11-01 > audit.jsonl"
    )]
    Export {
        #[command(flatten)]
        home: HomeArg,
        /// First day to export (YYYY-MM-DD, UTC); default: everything.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Write to a file instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Replace --out if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
}

/// Runs `revoke`.
pub fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let h = issuer_try!(json, IssuerHome::open(&args.home.dir));
    let mut reg = issuer_try!(json, h.registry());
    let reason = RevocationReason::from(args.reason);
    issuer_try!(json, reg.revoke(&args.card, reason, &actor()));
    if json {
        print_json(&Revoked::new(&args.card, reason))?;
    } else {
        println!(
            "Card {} revoked ({reason}). Tell partners: `citycard revocation publish --dir {} --out BUNDLE --force` and give them BUNDLE.",
            args.card,
            args.home.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `citycard resident …`.
pub fn resident(cmd: ResidentCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ResidentCommand::Forget {
            resident_id,
            home,
            force,
            json,
        } => {
            let h = issuer_try!(json, IssuerHome::open(&home.dir));
            let mut reg = issuer_try!(json, h.registry());
            if let Some(card) = issuer_try!(json, reg.live_card_of(&resident_id)) {
                if card.state == CardState::Issued && !force {
                    return fail_json(
                        json,
                        exit::LIVE_CARD,
                        format!(
                            "resident {resident_id} has live card {}: forgetting them means the one-live-card rule can no longer recognise them, so they could be issued a second live card. Revoke the card first (citycard revoke {} --reason withdrawn), or pass --force.",
                            card.card_number, card.card_number
                        ),
                    );
                }
            }
            let report = issuer_try!(json, reg.forget_resident(&resident_id, &actor()));
            if json {
                print_json(&ResidentForgotten::new(&resident_id, &report))?;
            } else {
                println!(
                    "Resident {resident_id} forgotten: {} stored attribute(s) erased, {} card record(s) unlinked{}.",
                    report.attributes_erased,
                    report.cards_unlinked,
                    if report.wal_truncated { "" } else { " (the write-ahead log is cleared at the next checkpoint)" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ResidentCommand::Show {
            resident_id,
            home,
            json,
        } => {
            let h = issuer_try!(json, IssuerHome::open(&home.dir));
            let reg = issuer_try!(json, h.registry());
            let live = issuer_try!(json, reg.live_card_of(&resident_id));
            let attributes = issuer_try!(json, reg.resident_attributes(&resident_id));
            let until = issuer_try!(json, reg.retained_until(&resident_id));
            if live.is_none() && attributes.is_none() {
                return fail_json(json, exit::REGISTRY, RegistryError::UnknownResident);
            }
            let doc = ResidentShow::new(
                &resident_id,
                live.as_ref(),
                &attributes.unwrap_or_default(),
                until,
            );
            if json {
                print_json(&doc)?;
            } else {
                match &live {
                    Some(c) => println!("Live card: {} ({})", c.card_number, c.state.name()),
                    None => println!("Live card: none"),
                }
                if doc.attributes.is_empty() {
                    println!("Stored attributes: none");
                } else {
                    for a in &doc.attributes {
                        println!("  {}: {}", a.name, a.value);
                    }
                    if let Some(t) = until {
                        println!("Kept until (unix time) {t}; `citycard resident forget` erases them now.");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `citycard card show NUMBER --dir DIR`: the registry's record of one card
/// (state, station, dates; no attributes).
pub fn card_record(number: &str, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let h = issuer_try!(json, IssuerHome::open(dir));
    let reg = issuer_try!(json, h.registry());
    let Some(card) = issuer_try!(json, reg.card(number)) else {
        return fail_json(
            json,
            exit::REGISTRY,
            RegistryError::UnknownCard {
                card_number: number.into(),
            },
        );
    };
    let doc = CardShow::from(&card);
    if json {
        print_json(&doc)?;
    } else {
        println!(
            "Card {}: {}{}",
            card.card_number,
            card.state.name(),
            doc.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        println!("Station: {}", card.station);
        println!("Valid: {} to {}", card.issued_on, card.expires_on);
        if let Some((c, r)) = &card.replaces {
            println!("Replaces: {c} ({r})");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `citycard audit …`.
pub fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Export {
        home,
        since,
        out,
        force,
    } = cmd;
    let since = match since.as_deref().map(citycard_proto::date::Date::parse_iso) {
        None => 0,
        Some(Ok(d)) => d.days_since_epoch() * 86_400,
        Some(Err(_)) => return super::fail(exit::USAGE, "--since: expected YYYY-MM-DD"),
    };
    let h = issuer_try!(false, IssuerHome::open(&home.dir));
    let reg = issuer_try!(false, h.registry());
    // Streamed: a city's log is millions of lines.
    let write_all = |w: &mut dyn std::io::Write| -> Result<u64, citycard_issuer::IssuerError> {
        let n = reg.for_each_audit_since(since, &mut |e| {
            serde_json::to_writer(&mut *w, &AuditLine::from(&e))
                .map_err(|e| citycard_registry::RegistryError::Io(e.into()))?;
            writeln!(w).map_err(citycard_registry::RegistryError::Io)
        })?;
        Ok(n)
    };
    match out {
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            issuer_try!(false, write_all(&mut lock));
            issuer_try!(
                false,
                std::io::Write::flush(&mut lock).map_err(|e| citycard_issuer::IssuerError::Io {
                    path: "stdout".into(),
                    source: e
                })
            );
        }
        Some(out) => {
            let out = OutArgs { out, force };
            let mut n = 0;
            issuer_try!(
                false,
                citycard_files::write_with(
                    &out.out,
                    out.overwrite(),
                    |w| -> Result<(), citycard_issuer::IssuerError> {
                        n = write_all(w)?;
                        Ok(())
                    }
                )
            );
            eprintln!("{n} audit entries written to {}.", out.out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
