//! The city office's commands: the issuer home, stations, partners, trust
//! bundle and revocation list, issuance (`personalise`, `batch`), and the
//! registry (revoke, residents, cards, audit). Each module parses and
//! prints; the work is done by citycard-issuer and citycard-registry.

pub mod home;
pub mod issue;
pub mod partners;
pub mod preparers;
pub mod publish;
pub mod records;
pub mod stations;

use std::path::PathBuf;
use std::process::ExitCode;

use citycard_files::{Overwrite, Written};
use citycard_issuer::home::IssuerHome;
use citycard_issuer::issue::IssueError;
use citycard_issuer::personalise::PersonaliseError;
use citycard_issuer::report::{Failure, KeyCertified, KeyRole};
use citycard_issuer::IssuerError;
use citycard_keys::{KeyLocation, Pkcs11Location};
use citycard_registry::RegistryError;

use crate::exit;

/// The issuer home option shared by every office command.
#[derive(clap::Args, Debug, Clone)]
pub struct HomeArg {
    /// The issuer home directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// The options of a `list` command: the home, and `--json`.
#[derive(clap::Args, Debug, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Print one JSON object with the list (an array named after the command's subject).
    #[arg(long)]
    pub json: bool,
}

/// Prints what a command that certifies a key printed: `role` names the
/// key's holder, `what` the event (`added`, `renewed`).
fn print_certified(
    json: bool,
    role: KeyRole,
    name: &str,
    what: &str,
    cert: &citycard_proto::cert::Certificate,
) -> anyhow::Result<()> {
    let doc = KeyCertified::new(role, name, cert);
    if json {
        return print_json(&doc);
    }
    let mut title = role.name().to_string();
    if let Some(first) = title.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    println!(
        "{title} {name} {what}: certified from {} to {} (fingerprint {}).",
        doc.effective, doc.expiry, doc.fingerprint
    );
    Ok(())
}

/// Opens the home, runs `certify` (which certifies a key of `role` `name`
/// with today's date) and prints the certificate: `station add|renew`,
/// `preparer add`.
pub fn certify(
    json: bool,
    home: &HomeArg,
    role: KeyRole,
    name: &str,
    what: &str,
    certify: impl FnOnce(
        &IssuerHome,
        citycard_proto::date::Date,
    ) -> Result<citycard_proto::cert::Certificate, IssuerError>,
) -> anyhow::Result<ExitCode> {
    let h = crate::issuer_try!(json, IssuerHome::open(&home.dir));
    let (day, _) = crate::issuer_try!(json, today());
    let cert = crate::issuer_try!(json, certify(&h, day));
    print_certified(json, role, name, what, &cert)?;
    Ok(ExitCode::SUCCESS)
}

/// An output file: written atomically, mode 0600; an existing regular file
/// is replaced only with `--force`; a device or FIFO is written through.
#[derive(clap::Args, Debug, Clone)]
pub struct OutArgs {
    /// Output file (written atomically, mode 0600; a device or FIFO such as
    /// /dev/stdout is written through, never replaced).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace the output file if it exists (without it: exit 4).
    #[arg(long)]
    pub force: bool,
}

impl OutArgs {
    /// The overwrite rule.
    pub fn overwrite(&self) -> Overwrite {
        if self.force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        }
    }

    /// Refuses an existing output before any work is done.
    pub fn check(&self) -> Result<(), IssuerError> {
        Ok(citycard_files::check_output(&self.out, self.overwrite())?)
    }

    /// Writes the output.
    pub fn write(&self, bytes: &[u8]) -> Result<Written, IssuerError> {
        Ok(citycard_files::write_file(
            &self.out,
            bytes,
            self.overwrite(),
        )?)
    }
}

/// Key placement options shared by commands that create keys.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so): create the key in a token instead of a file.
    #[arg(long, requires_all = ["token", "key_label"])]
    pkcs11_module: Option<PathBuf>,
    /// Token label (with --pkcs11-module). The PIN comes from CITYCARD_PKCS11_PIN or a prompt.
    #[arg(long)]
    token: Option<String>,
    /// Key label in the token (with --pkcs11-module).
    #[arg(long)]
    key_label: Option<String>,
}

impl KeyArgs {
    /// The key's location, if a token was named.
    pub fn location(&self) -> Option<KeyLocation> {
        match (&self.pkcs11_module, &self.token, &self.key_label) {
            (Some(module), Some(token), Some(label)) => Some(KeyLocation::Pkcs11(Pkcs11Location {
                module: module.clone(),
                token: token.clone(),
                key_label: label.clone(),
            })),
            _ => None,
        }
    }
}

/// The exit code of an issuer error.
pub fn code_of_issuer_error(e: &IssuerError) -> u8 {
    match e {
        IssuerError::AlreadyExists(_) => exit::EXISTS,
        IssuerError::NotAnIssuerHome(_)
        | IssuerError::Config(_)
        | IssuerError::UnknownStation(_)
        | IssuerError::UnknownPartner(_)
        | IssuerError::StationRetired(_)
        | IssuerError::ReaderBusy { .. } => exit::CONFIG,
        IssuerError::InvalidName { .. } | IssuerError::InvalidValidity(_) => exit::USAGE,
        IssuerError::StationNotValid { .. } => exit::STATION_NOT_VALID,
        IssuerError::Key(_) => exit::KEY,
        IssuerError::NeedsResume { .. } => exit::REGISTRY,
        IssuerError::NoCard { .. } => exit::CARD_REMOVED,
        IssuerError::Interrupted => exit::INTERRUPTED,
        IssuerError::Registry(RegistryError::ResidentHasLiveCard { .. }) => exit::LIVE_CARD,
        IssuerError::Registry(
            RegistryError::AlreadyExists { .. } | RegistryError::AlreadyExistsAt { .. },
        ) => exit::EXISTS,
        // A registry URL with a password, a password file others can read.
        IssuerError::Registry(RegistryError::InvalidInput {
            field: "registry" | "password file",
            ..
        }) => exit::USAGE,
        IssuerError::Registry(_) => exit::REGISTRY,
        _ => exit::ERROR,
    }
}

/// The exit code of a card error.
pub fn code_of_card_error(e: &PersonaliseError) -> u8 {
    match e {
        PersonaliseError::NotBlank(_)
        | PersonaliseError::NotPrepared
        | PersonaliseError::WrongIssuer
        | PersonaliseError::NotACitycard(_)
        | PersonaliseError::NotPiv(_)
        | PersonaliseError::DefaultManagementKey(_)
        | PersonaliseError::ManagementKeyRefused(_)
        | PersonaliseError::CardOccupied(_) => exit::WRONG_CARD,
        PersonaliseError::Transport(_) => exit::CARD_REMOVED,
        // The station's key failed (a locked PKCS#11 token, a wrong PIN):
        // a key problem, not the card's.
        PersonaliseError::Signing(_) => exit::KEY,
        _ => exit::CARD_FAILED,
    }
}

/// The exit code of an issuance error.
pub fn code_of_issue_error(e: &IssueError) -> u8 {
    match e {
        IssueError::Issuer(e) => code_of_issuer_error(e),
        IssueError::Card { error, .. }
        | IssueError::CardLost { error, .. }
        | IssueError::Refused(error) => code_of_card_error(error),
    }
}

/// Prints `citycard: error: MESSAGE` and returns `code`.
pub fn fail(code: u8, message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("citycard: error: {message}");
    Ok(ExitCode::from(code))
}

/// Like `fail`, and with `--json` also prints `{"ok": false, ...}` on stdout.
pub fn fail_json(
    json: bool,
    code: u8,
    message: impl std::fmt::Display,
) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&Failure::new(&message, code))?;
    }
    fail(code, message)
}

/// Prints one JSON document (citycard_issuer::report) on a line.
pub fn print_json(doc: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(doc)?);
    Ok(())
}

/// Unwraps an issuer result or returns its exit code (with `--json`, the
/// error object too).
#[macro_export]
macro_rules! issuer_try {
    ($json:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                let e: citycard_issuer::IssuerError = e.into();
                return $crate::commands::office::fail_json(
                    $json,
                    $crate::commands::office::code_of_issuer_error(&e),
                    &e,
                );
            }
        }
    };
}

/// Who runs the command, for the audit log: the operator's login name.
pub fn actor() -> String {
    std::env::var("CITYCARD_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into())
}

/// Today (UTC) and now (unix seconds).
pub fn today() -> Result<(citycard_proto::date::Date, u64), IssuerError> {
    citycard_issuer::home::now()
}
