//! `citycard issuer init|show|backup`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::secrets::EnvOrPrompt;
use citycard_issuer::home::{CityIdentity, IssuerHome};
use citycard_issuer::registry::{MigrateReport, RegistryServer};
use citycard_issuer::report::{
    IssuerBackup, IssuerInit, IssuerMigrate, IssuerShow, ReconcileOrphans, ReconcileSpoiled,
};

use super::{print_json, HomeArg, KeyArgs, OutArgs};
use crate::issuer_try;

/// `citycard issuer …`
#[derive(clap::Subcommand, Debug)]
pub enum IssuerCommand {
    /// Create the city's issuer home: root key, configuration, empty registry.
    ///
    /// The root key file is encrypted with CITYCARD_PASSPHRASE (or a prompt):
    /// at least 12 characters. Every file is created 0600, every directory 0700.
    #[command(
        after_help = "Example:\n  citycard issuer init --dir /srv/citycard --city Liège --issuer-id LIEGE --card-prefix LG"
    )]
    Init(InitArgs),
    /// Show the home: city, issuer id, root key fingerprint, retention, counts.
    #[command(after_help = "Example:\n  citycard issuer show --dir /srv/citycard --json")]
    Show {
        #[command(flatten)]
        home: HomeArg,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List issuance intents left open by runs that are gone (any reader); with
    /// --spoil, settle them without a card: each is marked spoiled, and those
    /// whose card key was recorded (the card may be complete) go on the next
    /// revocation list. For readers that will never come back (a desk replaced,
    /// a home restored on another machine). Intents of desks at work are never touched.
    #[command(
        after_help = "Example:\n  citycard issuer reconcile --dir /srv/citycard\n  citycard issuer reconcile --dir /srv/citycard --spoil && citycard revocation publish --dir /srv/citycard --out liege.bundle --force"
    )]
    Reconcile {
        #[command(flatten)]
        home: HomeArg,
        /// Mark them spoiled (without it: only list them).
        #[arg(long)]
        spoil: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring the registry's schema up to date, or move the home's SQLite
    /// registry to a PostgreSQL server (--to).
    ///
    /// A registry written by a newer citycard is refused (upgrade this one).
    /// On a server, run it as the role that owns the registry's tables. --to
    /// copies every record in one transaction into an empty database, records
    /// the server in issuer.json and keeps the old file as
    /// registry.sqlite.moved (delete it once the move is checked). Stop every
    /// desk first.
    #[command(
        after_help = "Example:\n  citycard issuer migrate --dir /srv/citycard\n  CITYCARD_REGISTRY_PASSWORD=… citycard issuer migrate --dir /srv/citycard --to postgres://citycard@db.city.example/registry"
    )]
    Migrate {
        #[command(flatten)]
        home: HomeArg,
        /// Move the registry to this PostgreSQL database (no password in the URL).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
        /// A file (mode 0600) whose first line is the server's password.
        #[arg(long, value_name = "FILE", requires = "to")]
        registry_password_file: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent snapshot of the home to one file (a tar archive; the
    /// registry is copied with SQLite's online backup, so desks may keep issuing;
    /// key files stay encrypted). Restore: `mkdir -m 700 NEW && tar -xpf FILE -C NEW`.
    #[command(
        after_help = "Example:\n  citycard issuer backup --dir /srv/citycard --out /backup/citycard-$(date +%F).tar"
    )]
    Backup {
        #[command(flatten)]
        home: HomeArg,
        #[command(flatten)]
        out: OutArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `issuer init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The issuer home directory (created; must not hold a home already).
    #[arg(long)]
    pub dir: PathBuf,
    /// City name.
    #[arg(long)]
    city: String,
    /// Issuer id written in every certificate (1-16 printable ASCII, e.g. LIEGE).
    #[arg(long)]
    issuer_id: String,
    /// Card numbers are PREFIX-000001, …
    #[arg(long, default_value = "CC")]
    card_prefix: String,
    /// Keep residents' attributes (name, birth date, address, language) in the
    /// registry for DAYS after their card is issued, to reprint or replace it.
    /// Default: keep none (the card holds them; the registry keeps only the card record).
    #[arg(long, value_name = "DAYS")]
    retain_attributes: Option<u32>,
    /// Keep the registry on a PostgreSQL server shared by several offices
    /// (postgres://USER@HOST:PORT/DATABASE, no password in it) instead of
    /// registry.sqlite in the home. The password comes from
    /// CITYCARD_REGISTRY_PASSWORD or --registry-password-file.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// A file (mode 0600) whose first line is the registry's password.
    #[arg(long, value_name = "FILE", requires = "registry")]
    registry_password_file: Option<PathBuf>,
    /// Linkability groups on every card (1-8): partners of different
    /// groups cannot tell they saw the same card. Each group has its own
    /// revocation list and trust bundle (`revocation publish --group`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    groups: u8,
    #[command(flatten)]
    key: KeyArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `citycard issuer …`.
pub fn run(cmd: IssuerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IssuerCommand::Init(args) => init(&args),
        IssuerCommand::Show { home, json } => show(&home, json),
        IssuerCommand::Migrate {
            home,
            to,
            registry_password_file,
            json,
        } => migrate(&home, to, registry_password_file, json),
        IssuerCommand::Reconcile { home, spoil, json } => reconcile(&home, spoil, json),
        IssuerCommand::Backup { home, out, json } => backup(&home, &out, json),
    }
}

/// `issuer init`: creates the home, then prints what partners need (the
/// root fingerprint) and where things are.
fn init(new: &InitArgs) -> anyhow::Result<ExitCode> {
    let json = new.json;
    let server = match &new.registry {
        None => None,
        Some(url) => Some(issuer_try!(
            json,
            RegistryServer::new(url, absolute(new.registry_password_file.clone()))
        )),
    };
    let mut home = issuer_try!(
        json,
        IssuerHome::init_with_registry(
            &new.dir,
            &CityIdentity {
                city: &new.city,
                issuer_id: &new.issuer_id,
                card_number_prefix: &new.card_prefix,
            },
            new.key.location(),
            new.retain_attributes,
            server,
            &EnvOrPrompt
        )
    );
    if new.groups != 1 {
        issuer_try!(json, home.set_groups(new.groups));
    }
    let doc = issuer_try!(json, IssuerInit::new(&home, &new.dir));
    if json {
        print_json(&doc)?;
    } else {
        println!(
            "Issuer home created in {} for {} (issuer id {}).",
            new.dir.display(),
            new.city,
            new.issuer_id
        );
        println!("Root key: {}", doc.root_key);
        println!("Registry: {}", doc.registry);
        println!(
            "Root key fingerprint (give it to partners out of band): {}",
            doc.root_fingerprint
        );
        match new.retain_attributes {
            None => println!("Resident attributes: not kept in the registry."),
            Some(d) => println!("Resident attributes: kept {d} day(s) after issue."),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `issuer reconcile`: lists the intents of stopped runs, or (`spoil`)
/// settles them without a card.
fn reconcile(home: &HomeArg, spoil: bool, json: bool) -> anyhow::Result<ExitCode> {
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let mut reg = issuer_try!(json, h.registry());
    if spoil {
        let r = issuer_try!(
            json,
            citycard_issuer::desk::abandon_orphans(&h, &mut reg, &super::actor())
        );
        if json {
            print_json(&ReconcileSpoiled::from(&r))?;
        } else {
            println!(
                "Spoiled: [{}]; on the next revocation list: [{}].",
                r.spoiled.join(", "),
                r.listed.join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let orphans = issuer_try!(json, citycard_issuer::desk::all_orphans(&h, &reg));
    if json {
        print_json(&ReconcileOrphans::new(&orphans))?;
    } else if orphans.is_empty() {
        println!("No intents left open by stopped runs.");
    } else {
        for i in &orphans {
            println!(
                "{}  station {}  reader {}{}",
                i.card_number,
                i.station,
                i.owner.as_ref().map_or("(none)", |o| o.desk.as_str()),
                if i.card_key.is_some() {
                    "  (card key recorded)"
                } else {
                    ""
                }
            );
        }
        println!("Put each card back in its reader and run `batch --resume` there, or settle them all without a card: --spoil.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `issuer backup`: one consistent tar archive of the home.
fn backup(home: &HomeArg, out: &OutArgs, json: bool) -> anyhow::Result<ExitCode> {
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let report = issuer_try!(json, h.backup(&out.out, out.overwrite()));
    if json {
        print_json(&IssuerBackup::new(&out.out, &report))?;
    } else {
        eprintln!(
            "Backup written to {} ({} files, registry with {} card record(s)). Keep it like the registry: it holds what the registry holds.",
            out.out.display(),
            report.files.len(),
            report.cards
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(home: &HomeArg, json: bool) -> anyhow::Result<ExitCode> {
    let h = issuer_try!(json, IssuerHome::open(&home.dir));
    let s = issuer_try!(json, IssuerShow::of(&h));
    if json {
        print_json(&s)?;
    } else {
        println!("City: {} (issuer id {})", s.city, s.issuer_id);
        println!("Root key: {}", s.root_key);
        println!("Root key fingerprint: {}", s.root_fingerprint);
        println!("Registry: {}", s.registry);
        println!(
            "Card numbers: {}-NNNNNN, valid {} days",
            s.card_prefix, s.card_validity_days
        );
        match s.retain_attributes_days {
            None => println!("Resident attributes: not kept"),
            Some(d) => println!(
                "Resident attributes: kept {d} day(s) after issue ({} resident(s) now)",
                s.residents_with_attributes
            ),
        }
        let c = &s.cards;
        println!(
            "Cards: {} issued ({} live, {} revoked), {} spoiled, {} in progress",
            c.issued, c.live, c.revoked, c.spoiled, c.open_intents
        );
        println!(
            "Stations: {} ({} retired); partners: {}; desks at work: {}",
            s.stations, s.stations_retired, s.partners, s.desks_at_work
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn absolute(path: Option<PathBuf>) -> Option<PathBuf> {
    path.map(|p| std::path::absolute(&p).unwrap_or(p))
}

fn migrate(
    home: &HomeArg,
    to: Option<String>,
    password_file: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut h = issuer_try!(json, IssuerHome::open(&home.dir));
    let report = match to {
        None => issuer_try!(json, h.migrate_registry()),
        Some(url) => {
            let server = issuer_try!(json, RegistryServer::new(&url, absolute(password_file)));
            issuer_try!(json, h.move_registry_to(server))
        }
    };
    if json {
        print_json(&IssuerMigrate::from(&report))?;
        return Ok(ExitCode::SUCCESS);
    }
    match report {
        MigrateReport::Upgraded { location, from, to } => {
            if from == to {
                println!("Registry {location}: schema version {to}, up to date.");
            } else {
                println!("Registry {location}: schema upgraded from version {from} to {to}.");
            }
        }
        MigrateReport::Moved {
            url,
            copied,
            old_file,
        } => {
            println!(
                "Registry moved to {url}: {} card record(s), {} audit entries, {} resident(s) \
                 with kept attributes.",
                copied.cards, copied.audit_entries, copied.residents
            );
            println!(
                "The old file is kept as {} (private); delete it once the move is checked.",
                old_file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
