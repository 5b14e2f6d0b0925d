//! `citycard partner enrol|list|renew`.

use std::process::ExitCode;

use crate::secrets::EnvOrPrompt;
use citycard_issuer::home::{IssuerHome, NewPartner};
use citycard_issuer::report::{PartnerCredential, PartnerList};
use citycard_issuer::IssuerError;
use citycard_proto::attr::AttributeSet;

use super::{fail_json, print_json, today, HomeArg, ListArgs, OutArgs};
use crate::{exit, issuer_try};

/// `citycard partner …`
#[derive(clap::Subcommand, Debug)]
pub enum PartnerCommand {
    /// Enrol a partner reader: key pair and certificate granting exactly LIST;
    /// the credential (with the private key) is written to --out. All or nothing:
    /// if the credential cannot be written, the partner is not registered.
    #[command(
        after_help = "Example:\n  citycard partner enrol library --dir /srv/citycard --attributes pseudonym,resident --out library.cred"
    )]
    Enrol {
        /// Partner name (e.g. library).
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// Attributes granted, comma-separated: card_number, name, birth_date,
        /// address, care_of_address, language, gender, resident, pseudonym,
        /// age_over_13, age_over_16, age_over_18, age_over_21, age_over_65, ...
        #[arg(long)]
        attributes: String,
        /// Linkability group of the partner (0-7): partners of different
        /// groups receive unrelated records of the same card (SPEC §5.3).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..8))]
        group: u8,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        #[command(flatten)]
        out: OutArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the partners: grants and validity (with --json: a `partners` array).
    #[command(after_help = "Example:\n  citycard partner list --dir /srv/citycard")]
    List(ListArgs),
    /// Renew a partner: a new key and certificate with the same grants and the
    /// same pseudonym domain (its pseudonyms do not change), valid N days from today.
    #[command(
        after_help = "Example:\n  citycard partner renew library --dir /srv/citycard --out library-2027.cred"
    )]
    Renew {
        /// Partner name.
        name: String,
        #[command(flatten)]
        home: HomeArg,
        /// Validity in days from today.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        #[command(flatten)]
        out: OutArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn deliver(
    out: &OutArgs,
) -> impl FnMut(&citycard_proto::cert::Certificate, &p256::SecretKey) -> Result<(), IssuerError> + '_
{
    move |cert, key| {
        let credential = citycard_reader::PartnerCredential::new(cert.clone(), key.clone())
            .map_err(|e| IssuerError::Config(format!("building the credential: {e}")))?;
        let text = credential
            .to_json()
            .map_err(|e| IssuerError::Config(format!("building the credential: {e}")))?;
        out.write(text.as_bytes()).map(|_| ())
    }
}

/// Runs `citycard partner …`.
pub fn run(cmd: PartnerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PartnerCommand::Enrol {
            name,
            home,
            attributes,
            group,
            valid_days,
            out,
            json,
        } => {
            let Ok(grants) = AttributeSet::parse_list(&attributes) else {
                return fail_json(
                    json,
                    exit::USAGE,
                    format!("--attributes {attributes:?}: unknown attribute (see `citycard partner enrol --help`)"),
                );
            };
            issuer_try!(json, out.check());
            let h = issuer_try!(json, IssuerHome::open(&home.dir));
            let (day, _) = issuer_try!(json, today());
            let cert = issuer_try!(
                json,
                h.enrol_partner_with(
                    &NewPartner {
                        name: &name,
                        grants,
                        group,
                        valid_days,
                        today: day,
                    },
                    &EnvOrPrompt,
                    &mut deliver(&out)
                )
            );
            report(json, "enrolled", &name, &cert, &out)?;
        }
        PartnerCommand::List(ListArgs { home, json }) => {
            let h = issuer_try!(json, IssuerHome::open(&home.dir));
            let partners = issuer_try!(json, h.partners());
            if json {
                print_json(&PartnerList::new(&partners))?;
            } else if partners.is_empty() {
                println!("No partners yet (citycard partner enrol NAME --dir DIR ...).");
            } else {
                for p in &partners {
                    println!(
                        "{:16} {} to {}  grants {}",
                        p.name, p.effective, p.expiry, p.grants
                    );
                }
            }
        }
        PartnerCommand::Renew {
            name,
            home,
            valid_days,
            out,
            json,
        } => {
            issuer_try!(json, out.check());
            let h = issuer_try!(json, IssuerHome::open(&home.dir));
            let (day, _) = issuer_try!(json, today());
            let cert = issuer_try!(
                json,
                h.renew_partner(&name, valid_days, &EnvOrPrompt, day, &mut deliver(&out))
            );
            report(json, "renewed", &name, &cert, &out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(
    json: bool,
    what: &str,
    name: &str,
    cert: &citycard_proto::cert::Certificate,
    out: &OutArgs,
) -> anyhow::Result<()> {
    let b = cert.body();
    if json {
        print_json(&PartnerCredential::new(name, cert, &out.out))?;
    } else {
        println!(
            "Partner {name} {what}: grants {}, valid {} to {}. Credential written to {} (contains the reader's private key: hand it over securely).",
            b.grants,
            b.effective,
            b.expiry,
            out.out.display()
        );
    }
    Ok(())
}
