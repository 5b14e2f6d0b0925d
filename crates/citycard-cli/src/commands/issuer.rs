//! Issuing-side commands: `issuer init`, `station add`, `partner enrol`,
//! `trust export`, `personalise`, `batch`, `revoke`, `revocation publish`,
//! `resident forget`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use citycard_card::Applet;
use citycard_emulator::FileStore;
use citycard_issuer::home::{now, IssuerHome, LoadedStation};
use citycard_issuer::issue::{issue_one, reconcile, IssueError, Issued, Reconciled};
use citycard_issuer::personalise::PersonaliseError;
use citycard_issuer::piv::{self as piv_issue, PivIssued, PivOptions};
use citycard_issuer::resident;
use citycard_issuer::IssuerError;
use citycard_keys::{
    open_management_key, KeyLocation, ManagementKey, ManagementKeyLocation, Pkcs11Location,
    SoftManagementKey,
};
use citycard_piv_card::PivCard;

use crate::secrets::EnvOrPrompt;
use citycard_proto::attr::AttributeSet;
use citycard_registry::{RegistryError, RevocationReason};
use citycard_transport::{
    CardChannel, CardTransport, MemoryTransport, PcscContext, Traced, TransportError,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Which kind of card `personalise` and `batch` issue.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// A card running the citycard applet (applet-spec/SPEC.md).
    #[default]
    Citycard,
    /// An off-the-shelf PIV card or YubiKey (applet-spec/piv-profile.md).
    Piv,
}

/// Exit codes of the issuing commands (documented in the README).
pub mod exit {
    /// Input file invalid.
    pub const INPUT: u8 = 3;
    /// Something already exists (home, station, partner, file).
    pub const EXISTS: u8 = 4;
    /// Not an issuer home, unknown station, bad configuration.
    pub const CONFIG: u8 = 5;
    /// Key access failed (wrong passphrase, missing token or PIN).
    pub const KEY: u8 = 6;
    /// The station is outside its validity window.
    pub const STATION_NOT_VALID: u8 = 7;
    /// The resident already has a live card (use --replace).
    pub const LIVE_CARD: u8 = 8;
    /// Unknown card number, already revoked, unknown resident.
    pub const REGISTRY: u8 = 9;
    /// Wrong card: not blank, another issuer's, not a citycard.
    pub const WRONG_CARD: u8 = 10;
    /// The card was removed or the reader failed mid-way.
    pub const CARD_REMOVED: u8 = 11;
    /// The card refused a step or failed the read-back check.
    pub const CARD_FAILED: u8 = 12;
    /// A batch finished with some rows not issued.
    pub const BATCH_PARTIAL: u8 = 13;
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
    fn location(&self) -> Option<KeyLocation> {
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

/// `citycard issuer …`
#[derive(clap::Subcommand, Debug)]
pub enum IssuerCommand {
    /// Create the city's issuer home: root key, configuration, empty registry.
    Init {
        /// The issuer home directory (created; must not hold a home already).
        #[arg(long)]
        dir: PathBuf,
        /// City name.
        #[arg(long)]
        city: String,
        /// Issuer id written in every certificate (1-16 printable ASCII, e.g. LIEGE).
        #[arg(long)]
        issuer_id: String,
        /// Card numbers are PREFIX-000001, …
        #[arg(long, default_value = "CC")]
        card_prefix: String,
        #[command(flatten)]
        key: KeyArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `citycard station …`
#[derive(clap::Subcommand, Debug)]
pub enum StationCommand {
    /// Add an issuing station: a key certified by the root for N days.
    Add {
        /// Station name.
        name: String,
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
        /// Validity in days (a station key is used for months, not years).
        #[arg(long, default_value_t = 180)]
        valid_days: u32,
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// `citycard preparer …`
#[derive(clap::Subcommand, Debug)]
pub enum PreparerCommand {
    /// Add a preparer (the city's preparation facility): a key certified by the root.
    Add {
        /// Preparer name.
        name: String,
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Prepare the blank card in a reader (in the trusted setting of the
    /// preparation facility): the card generates its attestation key and the
    /// preparer certifies it. Stations personalise only prepared cards.
    Prepare {
        /// Preparer name.
        name: String,
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
        /// PC/SC reader name (or unique part), or `emulated:FILE` for the
        /// built-in emulated card with its state in FILE.
        #[arg(long)]
        reader: String,
        /// Preparation batch (written in the card's certificate; seen by stations only).
        #[arg(long, default_value = "batch-1")]
        batch: String,
        /// Seconds to wait for a card.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

/// `citycard partner …`
#[derive(clap::Subcommand, Debug)]
pub enum PartnerCommand {
    /// Enrol a partner reader: key pair and certificate granting exactly LIST.
    Enrol {
        /// Partner name (e.g. library).
        name: String,
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
        /// Attributes granted, comma-separated (e.g. pseudonym,resident).
        #[arg(long)]
        attributes: String,
        /// Linkability group of the partner (0-7): partners of different
        /// groups receive unrelated records of the same card.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..8))]
        group: u8,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        /// Where to write the partner credential (key + certificate; give it to the partner).
        #[arg(long)]
        out: PathBuf,
    },
}

/// `citycard trust …`
#[derive(clap::Subcommand, Debug)]
pub enum TrustCommand {
    /// Write the trust bundle partners load offline.
    Export {
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `citycard revocation …`
#[derive(clap::Subcommand, Debug)]
pub enum RevocationCommand {
    /// Sign and write the current revocation list.
    Publish {
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
        /// Days until the next scheduled update.
        #[arg(long, default_value_t = 7)]
        next_update_days: u32,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `citycard resident …`
#[derive(clap::Subcommand, Debug)]
pub enum ResidentCommand {
    /// Erase a resident's stored attributes from the registry (retention/deletion);
    /// card numbers, dates and revocation state are kept so revocation still works.
    Forget {
        /// The resident id (the office's file reference).
        resident_id: String,
        /// Issuer home.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Card profile and PIV options shared by `personalise` and `batch`.
#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Card profile: `citycard` (the citycard applet; the default) or `piv` (an
    /// off-the-shelf PIV card or YubiKey: slot 9E key and a station-signed Card
    /// Authentication certificate, no resident attributes on the card;
    /// applet-spec/piv-profile.md).
    #[arg(long, value_enum, default_value_t = Profile::Citycard)]
    profile: Profile,
    /// PIV: the city's management key: a file with the key in hex on its own line
    /// (mode 0600), or `pkcs11:token=T;object=LABEL;type=secret-key?module-path=M`
    /// (a DES3/AES secret key on the token; PIN from CITYCARD_PKCS11_PIN or a prompt).
    #[arg(long, value_name = "FILE|pkcs11:…")]
    management_key: Option<String>,
    /// PIV: the management key's algorithm: 3des, aes128, aes192 or aes256.
    #[arg(long, value_name = "ALG", default_value = "3des")]
    management_key_algorithm: String,
    /// PIV: accept the factory management key (configured, or still accepted by
    /// the card). Test cards only: anyone can rewrite such a card. Without
    /// --management-key, the factory key itself is used.
    #[arg(long)]
    allow_default_management_key: bool,
}

impl ProfileArgs {
    /// The PIV management key, or why not (exit code, message). `None` for
    /// the citycard profile (PIV options are then refused as usage errors).
    fn management_key(&self) -> Result<Option<Box<dyn ManagementKey>>, (u8, String)> {
        if self.profile != Profile::Piv {
            if self.management_key.is_some() || self.allow_default_management_key {
                return Err((
                    2,
                    "--management-key and --allow-default-management-key need --profile piv".into(),
                ));
            }
            return Ok(None);
        }
        let alg = piv_issue::management_algorithm(&self.management_key_algorithm)
            .map_err(|e| (2, e.to_string()))?;
        let key: Box<dyn ManagementKey> = match &self.management_key {
            Some(text) => {
                let loc: ManagementKeyLocation =
                    text.parse().map_err(|e| (2, format!("--management-key: {e}")))?;
                open_management_key(&loc, alg, &EnvOrPrompt).map_err(|e| {
                    let code = match e {
                        citycard_keys::KeyError::BadManagementKey { .. }
                        | citycard_keys::KeyError::KeyFilePermissions { .. } => exit::CONFIG,
                        _ => exit::KEY,
                    };
                    (code, e.to_string())
                })?
            }
            None if self.allow_default_management_key => {
                Box::new(SoftManagementKey::factory_default(alg))
            }
            None => {
                return Err((
                    2,
                    "--profile piv needs --management-key FILE|pkcs11:… (the city's PIV management key)"
                        .into(),
                ))
            }
        };
        piv_issue::check_configured_key(key.as_ref(), self.allow_default_management_key)
            .map_err(|e| (exit::CONFIG, e.to_string()))?;
        Ok(Some(key))
    }
}

/// Exit codes of `personalise` and `batch` (README "exit codes"; PIV cases
/// in docs/piv-issuance.md).
const ISSUE_EXIT_CODES: &str = "\
Exit codes:
  0   issued (batch: every row issued or already done)
  2   usage error (e.g. PIV options without --profile piv, unknown --management-key-algorithm)
  3   invalid resident file (or --card-key-from is not a P-256 public key PEM)
  5   bad configuration: not an issuer home, unknown station; PIV: the management key file is
      readable by group/others or malformed, or the configured key is the factory key
  6   key access failed (passphrase, PKCS#11 token, PIN)
  7   the station is outside its validity window
  8   the resident already has a live card (use --replace)
  9   registry refusal (open intents without --resume, ...)
  10  wrong card: not blank, another city's, not a citycard; PIV: no PIV application or no
      ECC P-256, the card still accepts the factory management key, the card refuses the
      city's management key, or it holds a certificate that must not be overwritten
      (PIV refusals write nothing: no intent, no change to the card)
  11  the card was removed mid-way (the intent stays open; put the same card back and rerun)
  12  the card refused a step or failed the read-back; PIV: slot 9E did not prove
      possession of the --card-key-from key (nothing written)
  13  batch: some rows not issued";

/// Arguments of `personalise`.
#[derive(clap::Args, Debug)]
#[command(after_help = ISSUE_EXIT_CODES)]
pub struct PersonaliseArgs {
    /// Issuer home.
    #[arg(long)]
    dir: PathBuf,
    /// Issuing station name.
    #[arg(long)]
    station: String,
    /// PC/SC reader name (or unique part), or `emulated:DIR` for the built-in emulated card (state in DIR/card.state).
    #[arg(long)]
    reader: String,
    /// With `emulated:DIR` only: each new emulated card comes prepared by
    /// this preparer of the home (as cards arrive from the preparation facility).
    #[arg(long, value_name = "PREPARER")]
    prepare_with: Option<String>,
    /// The resident, as a JSON object.
    #[arg(long)]
    resident: PathBuf,
    /// Replace the resident's live card, revoking it with this reason (lost, stolen, damaged).
    #[arg(long)]
    replace: Option<RevocationReason>,
    /// Seconds to wait for a card.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    profile: ProfileArgs,
    /// PIV: the slot 9E key was generated by another tool (e.g. `yubico-piv-tool -a
    /// generate -s 9e -A ECCP256`): its public key as PEM. The card must prove it
    /// holds the private key before anything is signed. Default: generate on the card.
    #[arg(long, value_name = "PEM")]
    card_key_from: Option<PathBuf>,
}

/// Arguments of `batch`.
#[derive(clap::Args, Debug)]
#[command(after_help = ISSUE_EXIT_CODES)]
pub struct BatchArgs {
    /// Issuer home.
    #[arg(long)]
    dir: PathBuf,
    /// Issuing station name.
    #[arg(long)]
    station: String,
    /// PC/SC reader name (or unique part), or `emulated:DIR` (one card state file per card in DIR).
    #[arg(long)]
    reader: String,
    /// With `emulated:DIR` only: each new emulated card comes prepared by
    /// this preparer of the home (as cards arrive from the preparation facility).
    #[arg(long, value_name = "PREPARER")]
    prepare_with: Option<String>,
    /// Residents: .csv with a header row, or .jsonl.
    file: PathBuf,
    /// Continue an interrupted batch: rows already issued (or with an open intent) are skipped.
    #[arg(long)]
    resume: bool,
    /// Seconds to wait for each card to be inserted (and removed).
    #[arg(long, default_value_t = 120)]
    wait: u64,
    /// Print one JSON object per row and a summary as JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    profile: ProfileArgs,
}

/// Arguments of `revoke`.
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// Card number.
    card: String,
    /// Issuer home.
    #[arg(long)]
    dir: PathBuf,
    /// Why.
    #[arg(long)]
    reason: RevocationReason,
}

fn code_of_issuer_error(e: &IssuerError) -> u8 {
    match e {
        IssuerError::AlreadyExists(_) => exit::EXISTS,
        IssuerError::NotAnIssuerHome(_)
        | IssuerError::Config(_)
        | IssuerError::UnknownStation(_) => exit::CONFIG,
        IssuerError::InvalidName { .. } | IssuerError::InvalidValidity(_) => 2,
        IssuerError::StationNotValid { .. } => exit::STATION_NOT_VALID,
        IssuerError::Key(_) => exit::KEY,
        IssuerError::Registry(RegistryError::ResidentHasLiveCard { .. }) => exit::LIVE_CARD,
        IssuerError::Registry(_) => exit::REGISTRY,
        _ => 1,
    }
}

fn code_of_card_error(e: &PersonaliseError) -> u8 {
    match e {
        PersonaliseError::NotBlank(_)
        | PersonaliseError::WrongIssuer
        | PersonaliseError::NotACitycard(_)
        | PersonaliseError::NotPiv(_)
        | PersonaliseError::DefaultManagementKey(_)
        | PersonaliseError::ManagementKeyRefused(_)
        | PersonaliseError::CardOccupied(_) => exit::WRONG_CARD,
        PersonaliseError::Transport(_) => exit::CARD_REMOVED,
        _ => exit::CARD_FAILED,
    }
}

fn code_of_issue_error(e: &IssueError) -> u8 {
    match e {
        IssueError::Issuer(e) => code_of_issuer_error(e),
        IssueError::Card { error, .. }
        | IssueError::CardLost { error, .. }
        | IssueError::Refused(error) => code_of_card_error(error),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("citycard: error: {message}");
    Ok(ExitCode::from(code))
}

macro_rules! issuer_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return fail(code_of_issuer_error(&e), &e),
        }
    };
}

/// `issuer init`.
pub fn issuer(cmd: IssuerCommand) -> anyhow::Result<ExitCode> {
    let IssuerCommand::Init {
        dir,
        city,
        issuer_id,
        card_prefix,
        key,
        json,
    } = cmd;
    let home = issuer_try!(IssuerHome::init(
        &dir,
        &city,
        &issuer_id,
        &card_prefix,
        key.location(),
        &EnvOrPrompt
    ));
    let root = issuer_try!(home.root_public_key());
    let fingerprint = hex::encode(citycard_proto::crypto::sha256(&[
        &citycard_proto::crypto::encode_point(&root),
    ]));
    if json {
        println!(
            "{}",
            serde_json::json!({"schema_version": 1, "dir": dir, "issuer_id": issuer_id, "root_key": home.config().root.locator(), "root_fingerprint": fingerprint})
        );
    } else {
        println!(
            "Issuer home created in {} for {} (issuer id {}).",
            dir.display(),
            city,
            issuer_id
        );
        println!("Root key: {}", home.config().root.locator());
        println!("Root key fingerprint (give it to partners out of band): {fingerprint}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `station add`.
pub fn station(cmd: StationCommand) -> anyhow::Result<ExitCode> {
    let StationCommand::Add {
        name,
        dir,
        valid_days,
        key,
    } = cmd;
    let home = issuer_try!(IssuerHome::open(&dir));
    let (today, _) = issuer_try!(now());
    let cert =
        issuer_try!(home.add_station(&name, valid_days, key.location(), &EnvOrPrompt, today));
    println!(
        "Station {name} certified from {} to {} (fingerprint {}).",
        cert.body().effective,
        cert.body().expiry,
        hex::encode(cert.fingerprint())
    );
    Ok(ExitCode::SUCCESS)
}

/// `preparer add` and `preparer prepare`.
pub fn preparer(cmd: PreparerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PreparerCommand::Add {
            name,
            dir,
            valid_days,
            key,
        } => {
            let home = issuer_try!(IssuerHome::open(&dir));
            let (today, _) = issuer_try!(now());
            let cert = issuer_try!(home.add_preparer(
                &name,
                valid_days,
                key.location(),
                &EnvOrPrompt,
                today
            ));
            println!(
                "Preparer {name} certified from {} to {} (fingerprint {}).",
                cert.body().effective,
                cert.body().expiry,
                hex::encode(cert.fingerprint())
            );
            Ok(ExitCode::SUCCESS)
        }
        PreparerCommand::Prepare {
            name,
            dir,
            reader,
            batch,
            wait,
        } => {
            let home = issuer_try!(IssuerHome::open(&dir));
            let (today, _) = issuer_try!(now());
            let preparer = issuer_try!(home.preparer(&name, &EnvOrPrompt));
            let root = issuer_try!(home.root_public_key());
            let transport: Box<dyn CardTransport> =
                if let Some(file) = reader.strip_prefix("emulated:") {
                    emulated_card(Path::new(file), Profile::Citycard)?
                } else {
                    let ctx =
                        PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
                    let reader = ctx.resolve_reader(&reader)?;
                    ctx.wait_for_card(&reader, Some(Duration::from_secs(wait)))?;
                    Box::new(ctx.connect(&reader)?)
                };
            let mut ch = CardChannel::new(transport);
            let sign = |m: &[u8]| preparer.signer.sign(m).map_err(|e| e.to_string());
            let prepared = citycard_issuer::personalise::prepare(
                &mut ch,
                &citycard_issuer::personalise::Preparer {
                    issuer: &home.config().issuer_id,
                    root: &root,
                    certificate: &preparer.certificate,
                    sign: &sign,
                    batch: &batch,
                },
                today,
            );
            match prepared {
                Ok(_) => {
                    println!("Card prepared by {name} (batch {batch}): ready for a station.");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => fail(exit::CARD_FAILED, format!("preparation failed: {e}")),
            }
        }
    }
}

/// `partner enrol`.
pub fn partner(cmd: PartnerCommand) -> anyhow::Result<ExitCode> {
    let PartnerCommand::Enrol {
        name,
        dir,
        attributes,
        group,
        valid_days,
        out,
    } = cmd;
    let grants = match AttributeSet::parse_list(&attributes) {
        Ok(g) => g,
        Err(_) => {
            return fail(
                2,
                format!("--attributes {attributes:?}: unknown attribute (see SPEC §5.4 for names)"),
            )
        }
    };
    if out.exists() {
        return fail(
            exit::EXISTS,
            format!("{} already exists; refusing to overwrite", out.display()),
        );
    }
    let home = issuer_try!(IssuerHome::open(&dir));
    let (today, _) = issuer_try!(now());
    let (cert, key) =
        issuer_try!(home.enrol_partner(&name, grants, group, valid_days, &EnvOrPrompt, today));
    let credential = citycard_reader::PartnerCredential::new(cert.clone(), key)
        .map_err(|e| anyhow::anyhow!("building the credential: {e}"))?;
    credential
        .write_to(&out)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    println!(
        "Partner {name} enrolled: grants {grants}, valid {} to {}. Credential written to {} (contains the reader's private key: hand it over securely).",
        cert.body().effective,
        cert.body().expiry,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_out(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// `trust export`.
pub fn trust(cmd: TrustCommand) -> anyhow::Result<ExitCode> {
    let TrustCommand::Export { dir, out } = cmd;
    let home = issuer_try!(IssuerHome::open(&dir));
    let (_, now_unix) = issuer_try!(now());
    let bundle = issuer_try!(home.export_trust(&EnvOrPrompt, now_unix));
    write_out(&out, bundle.as_bytes())?;
    println!(
        "Trust bundle written to {} ({} bytes: root, {} station certificate(s), revocation list #{} with {} card(s)).",
        out.display(),
        bundle.as_bytes().len(),
        bundle.body().stations.len(),
        bundle.body().revocations.body().sequence,
        bundle.body().revocations.body().revoked.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `revocation publish`.
pub fn revocation(cmd: RevocationCommand) -> anyhow::Result<ExitCode> {
    let RevocationCommand::Publish {
        dir,
        next_update_days,
        out,
    } = cmd;
    let home = issuer_try!(IssuerHome::open(&dir));
    let (_, now_unix) = issuer_try!(now());
    let list = issuer_try!(home.publish_revocations(next_update_days, &EnvOrPrompt, now_unix));
    write_out(&out, list.as_bytes())?;
    println!(
        "Revocation list #{} written to {} ({} bytes, {} revoked card(s), next update in {next_update_days} day(s)).",
        list.body().sequence,
        out.display(),
        list.as_bytes().len(),
        list.body().revoked.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `revoke`.
pub fn revoke(args: &RevokeArgs) -> anyhow::Result<ExitCode> {
    let home = issuer_try!(IssuerHome::open(&args.dir));
    let mut reg = issuer_try!(home.registry());
    issuer_try!(reg
        .revoke(&args.card, args.reason, &actor())
        .map_err(IssuerError::from));
    println!(
        "Card {} revoked ({}). Publish a new revocation list to tell the readers.",
        args.card, args.reason
    );
    Ok(ExitCode::SUCCESS)
}

/// `resident forget`.
pub fn resident(cmd: ResidentCommand) -> anyhow::Result<ExitCode> {
    let ResidentCommand::Forget { resident_id, dir } = cmd;
    let home = issuer_try!(IssuerHome::open(&dir));
    let mut reg = issuer_try!(home.registry());
    let report = issuer_try!(reg
        .forget_resident(&resident_id, &actor())
        .map_err(IssuerError::from));
    println!("Resident {resident_id}: stored attributes erased ({report:?}).");
    Ok(ExitCode::SUCCESS)
}

/// Who runs the command, for the audit log: the operator's login name.
fn actor() -> String {
    std::env::var("CITYCARD_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into())
}

/// Where cards come from.
enum CardSource {
    Pcsc {
        ctx: PcscContext,
        reader: String,
    },
    Emulated {
        dir: PathBuf,
        next: u32,
        profile: Profile,
        prepare: Option<Box<EmulatedPreparation>>,
    },
}

/// How new emulated cards are prepared (`--prepare-with`).
struct EmulatedPreparation {
    preparer: citycard_issuer::home::LoadedPreparer,
    issuer: String,
    root: p256::PublicKey,
    today: citycard_proto::Date,
}

impl EmulatedPreparation {
    fn load(home: &IssuerHome, name: &str) -> Result<Self, IssuerError> {
        let (today, _) = now()?;
        Ok(Self {
            preparer: home.preparer(name, &EnvOrPrompt)?,
            issuer: home.config().issuer_id.clone(),
            root: home.root_public_key()?,
            today,
        })
    }

    /// Prepares the blank card behind `transport`.
    fn prepare(&self, transport: Box<dyn CardTransport>) -> anyhow::Result<Box<dyn CardTransport>> {
        let mut ch = CardChannel::new(transport);
        let sign = |m: &[u8]| self.preparer.signer.sign(m).map_err(|e| e.to_string());
        citycard_issuer::personalise::prepare(
            &mut ch,
            &citycard_issuer::personalise::Preparer {
                issuer: &self.issuer,
                root: &self.root,
                certificate: &self.preparer.certificate,
                sign: &sign,
                batch: "emulated",
            },
            self.today,
        )
        .map_err(|e| anyhow::anyhow!("preparing the emulated card: {e}"))?;
        Ok(ch.into_inner())
    }
}

type Channel = CardChannel<Traced<Box<dyn CardTransport>>>;

impl CardSource {
    fn parse(
        reader: &str,
        profile: Profile,
        prepare: Option<Box<EmulatedPreparation>>,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = reader.strip_prefix("emulated:") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            return Ok(Self::Emulated {
                dir,
                next: 0,
                profile,
                prepare,
            });
        }
        if prepare.is_some() {
            anyhow::bail!("--prepare-with is for emulated:DIR readers only");
        }
        let ctx = PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
        let reader = ctx.resolve_reader(reader)?;
        Ok(Self::Pcsc { ctx, reader })
    }

    /// The next card: waits for insertion (PC/SC), or takes the next blank
    /// emulated card (`card-NNNNNN.state`, continuing after existing files).
    fn next_card(
        &mut self,
        wait: Duration,
        trace: bool,
        announce: bool,
    ) -> anyhow::Result<Channel> {
        let transport: Box<dyn CardTransport> = match self {
            Self::Pcsc { ctx, reader } => {
                if announce {
                    eprintln!("Insert a blank card in {reader}…");
                }
                ctx.wait_for_card(reader, Some(wait)).map_err(|e| match e {
                    TransportError::Timeout => {
                        anyhow::anyhow!("no card inserted in {reader} within {}s", wait.as_secs())
                    }
                    other => other.into(),
                })?;
                Box::new(ctx.connect(reader)?)
            }
            Self::Emulated {
                dir,
                next,
                profile,
                prepare,
            } => {
                let path = loop {
                    *next += 1;
                    let p = dir.join(format!("card-{:06}.state", *next));
                    if !p.exists() || (*profile == Profile::Piv && piv_card_waiting(&p)) {
                        break p;
                    }
                };
                let fresh = !path.exists();
                let card = emulated_card(&path, *profile)?;
                match prepare {
                    Some(p) if fresh && *profile == Profile::Citycard => p.prepare(card)?,
                    _ => card,
                }
            }
        };
        let mut traced = Traced::new(transport);
        if trace {
            traced = traced.echo_to_stderr();
        }
        Ok(CardChannel::new(traced))
    }

    /// The card the reader held when a previous run stopped (emulated: the
    /// newest card file), for reconciliation; `None` if there is none.
    fn current_card(&mut self, wait: Duration, trace: bool) -> anyhow::Result<Option<Channel>> {
        match self {
            Self::Pcsc { ctx, reader } => {
                if ctx
                    .wait_for_card(reader, Some(Duration::from_millis(300)))
                    .is_err()
                {
                    return Ok(None);
                }
                self.next_card(wait, trace, false).map(Some)
            }
            Self::Emulated { dir, profile, .. } => {
                let mut newest = None;
                for entry in std::fs::read_dir(&*dir).with_context(|| dir.display().to_string())? {
                    let name = entry?.file_name().to_string_lossy().into_owned();
                    if name.starts_with("card-")
                        && name.ends_with(".state")
                        && newest.as_ref().is_none_or(|n: &String| name > *n)
                    {
                        newest = Some(name);
                    }
                }
                let Some(name) = newest else { return Ok(None) };
                let transport = emulated_card(&dir.join(name), *profile)?;
                let mut traced = Traced::new(transport);
                if trace {
                    traced = traced.echo_to_stderr();
                }
                Ok(Some(CardChannel::new(traced)))
            }
        }
    }

    /// The current card is finished: power it down and wait for its removal.
    fn card_done(&mut self, ch: Channel, wait: Duration) -> anyhow::Result<()> {
        let mut transport = ch.into_inner().into_inner();
        if let Self::Pcsc { ctx, reader } = self {
            // Power-cycle the card so it keeps no session, then let it go.
            let _ = transport.reset();
            drop(transport);
            eprintln!("Remove the card from {reader}.");
            ctx.wait_for_removal(reader, Some(wait)).ok();
        }
        Ok(())
    }
}

/// An emulated card over the state file `path` (created blank if absent):
/// the citycard applet, or for `--profile piv` the emulated PIV card
/// (crate citycard-piv-card, the state format of `card emulate --profile piv`).
fn emulated_card(path: &Path, profile: Profile) -> anyhow::Result<Box<dyn CardTransport>> {
    let store = FileStore::new(path)?;
    let rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    Ok(match profile {
        Profile::Citycard => Box::new(MemoryTransport::new(Applet::new(store, rng))),
        Profile::Piv => Box::new(MemoryTransport::new(PivCard::new(store, rng))),
    })
}

/// Whether the PIV state file at `path` is a card waiting to be issued: a
/// readable PIV state (e.g. prepared with `card emulate --profile piv` and
/// `yubico-piv-tool -a set-mgm-key`) without a Card Authentication certificate.
fn piv_card_waiting(path: &Path) -> bool {
    use citycard_card::Storage as _;
    let Ok(mut store) = FileStore::new(path) else {
        return false;
    };
    match store.load() {
        Ok(Some(bytes)) => citycard_piv_card::PivState::decode(&bytes).is_ok_and(|s| {
            !s.object_tags()
                .any(|t| t == citycard_proto::piv::OBJECT_CARD_AUTHENTICATION_CERTIFICATE)
        }),
        _ => false,
    }
}

fn load_station(
    home: &IssuerHome,
    name: &str,
) -> Result<(LoadedStation, citycard_proto::Date), IssuerError> {
    let (today, _) = now()?;
    Ok((home.station(name, &EnvOrPrompt, today)?, today))
}

/// What a PIV card carries, for the operator (text) and for machines (JSON).
fn piv_report(p: &PivIssued) -> (String, serde_json::Value) {
    let predicates: Vec<&str> = p.predicates.iter().map(|id| id.name()).collect();
    let not_on_card: Vec<&str> = p.not_on_card.iter().map(|id| id.name()).collect();
    let text = format!(
        "Issued PIV card {} (valid {} to {}); certificate in 5FC101 read back and verified, slot 9E key {} and proven by a signature.\n\
         Signed age predicates (true on the issue date): {}.\n\
         Not written to the card (a PIV card is readable by anyone, so the PIV profile carries no resident data; the registry keeps them as for any card): {}.",
        p.issued.card_number,
        p.issued.issued_on,
        p.issued.expires_on,
        if p.key_generated { "generated on the card" } else { "supplied (--card-key-from)" },
        if predicates.is_empty() { "none".to_string() } else { predicates.join(", ") },
        if not_on_card.is_empty() { "none".to_string() } else { not_on_card.join(", ") },
    );
    let json = serde_json::json!({
        "profile": "piv", "predicates": predicates, "not_on_card": not_on_card,
        "key_generated": p.key_generated,
    });
    (text, json)
}

/// Reads the `--card-key-from` PEM.
fn card_key_from(path: &Path) -> Result<p256::PublicKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    piv_issue::parse_public_key_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Settles intents left open, with the flow of the profile being issued:
/// the applet's, or the PIV one when `piv` is set.
fn reconcile_profile<T: CardTransport>(
    piv: bool,
    home: &IssuerHome,
    station: &LoadedStation,
    reg: &mut citycard_registry::Registry,
    ch: Option<&mut CardChannel<T>>,
    today: citycard_proto::Date,
    rng: &mut ChaCha20Rng,
) -> Result<Reconciled, IssuerError> {
    if piv {
        piv_issue::reconcile(home, reg, ch, &actor(), rng)
    } else {
        reconcile(home, reg, station, ch, &actor(), today, rng)
    }
}

/// Issues one card with the flow of the profile being issued: the applet's,
/// or the PIV one with `piv`'s options (its [`PivIssued`] beside).
#[allow(clippy::too_many_arguments)]
fn issue_profile<T: CardTransport>(
    piv: Option<&PivOptions<'_>>,
    home: &IssuerHome,
    station: &LoadedStation,
    reg: &mut citycard_registry::Registry,
    ch: &mut CardChannel<T>,
    resident: &resident::Resident,
    batch: Option<(&str, u64)>,
    replaces: Option<RevocationReason>,
    today: citycard_proto::Date,
    rng: &mut ChaCha20Rng,
) -> Result<(Issued, Option<PivIssued>), IssueError> {
    match piv {
        None => issue_one(
            home,
            station,
            reg,
            ch,
            resident,
            &actor(),
            batch,
            replaces,
            today,
            rng,
        )
        .map(|issued| (issued, None)),
        Some(options) => piv_issue::issue_one(
            home,
            station,
            reg,
            ch,
            resident,
            &actor(),
            batch,
            replaces,
            today,
            options,
            rng,
        )
        .map(|p| (p.issued.clone(), Some(p))),
    }
}

/// `personalise`.
pub fn personalise(args: &PersonaliseArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let piv_key = match args.profile.management_key() {
        Ok(k) => k,
        Err((code, message)) => return fail(code, message),
    };
    let card_key = match (&args.card_key_from, &piv_key) {
        (None, _) => None,
        (Some(_), None) => return fail(2, "--card-key-from needs --profile piv"),
        (Some(path), Some(_)) => match card_key_from(path) {
            Ok(k) => Some(k),
            Err(e) => return fail(exit::INPUT, e),
        },
    };
    let piv_options = piv_key.as_ref().map(|key| PivOptions {
        management_key: key.as_ref(),
        allow_default_management_key: args.profile.allow_default_management_key,
        card_key,
    });
    let resident = match resident::from_json_file(&args.resident) {
        Ok(r) => r,
        Err(e) => return fail(exit::INPUT, format!("{}: {e}", args.resident.display())),
    };
    let home = issuer_try!(IssuerHome::open(&args.dir));
    let (station, today) = issuer_try!(load_station(&home, &args.station));
    let mut reg = issuer_try!(home.registry());
    let prepare = match &args.prepare_with {
        Some(name) => Some(Box::new(issuer_try!(EmulatedPreparation::load(
            &home, name
        )))),
        None => None,
    };
    let mut source = CardSource::parse(&args.reader, args.profile.profile, prepare)?;
    let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let mut ch = source.next_card(Duration::from_secs(args.wait), trace, false)?;
    let rec = issuer_try!(reconcile_profile(
        piv_options.is_some(),
        &home,
        &station,
        &mut reg,
        Some(&mut ch),
        today,
        &mut rng
    ));
    if !rec.committed.is_empty() || !rec.spoiled.is_empty() {
        eprintln!(
            "Reconciled open intents: committed {:?}, spoiled {:?}.",
            rec.committed, rec.spoiled
        );
        if !rec.listed.is_empty() {
            eprintln!(
                "Spoiled after the station signed for them (the cards may be complete): {:?}; \
                 their revocation ids go on the next revocation list (run `citycard revocation publish`).",
                rec.listed
            );
        }
    }
    let result = issue_profile(
        piv_options.as_ref(),
        &home,
        &station,
        &mut reg,
        &mut ch,
        &resident,
        None,
        args.replace,
        today,
        &mut rng,
    )
    .map(|(issued, piv)| (issued, piv.as_ref().map(piv_report)));
    let stats = ch.transport().stats();
    match result {
        Ok((issued, piv)) => {
            if args.json {
                let mut v = serde_json::json!({
                    "schema_version": 1, "ok": true, "card_number": issued.card_number,
                    "issued_on": issued.issued_on.to_string(), "expires_on": issued.expires_on.to_string(),
                    "apdus": stats.apdus, "bytes_sent": stats.bytes_sent, "bytes_received": stats.bytes_received,
                });
                if let (Some((_, extra)), Some(obj)) = (&piv, v.as_object_mut()) {
                    if let Some(extra) = extra.as_object() {
                        obj.extend(extra.clone());
                    }
                }
                println!("{v}");
            } else if let Some((text, _)) = &piv {
                println!("{text}");
            } else {
                println!(
                    "Issued card {} (valid {} to {}); the card's check value matches what was sent.",
                    issued.card_number, issued.issued_on, issued.expires_on
                );
            }
            source.card_done(ch, Duration::from_secs(args.wait))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"schema_version": 1, "ok": false, "error": e.to_string(), "exit_code": code_of_issue_error(&e)})
                );
            }
            fail(code_of_issue_error(&e), &e)
        }
    }
}

/// `batch`.
pub fn batch(args: &BatchArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let piv_key = match args.profile.management_key() {
        Ok(k) => k,
        Err((code, message)) => return fail(code, message),
    };
    let rows = match resident::read_batch(&args.file) {
        Ok(rows) => rows,
        Err(e) => return fail(exit::INPUT, format!("{}: {e}", args.file.display())),
    };
    let content = std::fs::read(&args.file).with_context(|| args.file.display().to_string())?;
    let batch_id = hex::encode(&citycard_proto::crypto::sha256(&[&content])[..8]);
    let home = issuer_try!(IssuerHome::open(&args.dir));
    let (station, today) = issuer_try!(load_station(&home, &args.station));
    let mut reg = issuer_try!(home.registry());
    let prepare = match &args.prepare_with {
        Some(name) => Some(Box::new(issuer_try!(EmulatedPreparation::load(
            &home, name
        )))),
        None => None,
    };
    let mut source = CardSource::parse(&args.reader, args.profile.profile, prepare)?;
    let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let wait = Duration::from_secs(args.wait);
    let piv_options = piv_key.as_ref().map(|key| PivOptions {
        management_key: key.as_ref(),
        allow_default_management_key: args.profile.allow_default_management_key,
        card_key: None,
    });

    // Crash recovery first: intents left open by an interrupted run.
    let open = issuer_try!(reg.open_intents().map_err(IssuerError::from));
    if !open.is_empty() {
        if !args.resume {
            return fail(
                exit::REGISTRY,
                format!("{} intent(s) left open by an interrupted run; rerun with --resume to reconcile and continue", open.len()),
            );
        }
        // The card of the interrupted row may still be in the reader.
        let mut current = source.current_card(wait, trace)?;
        let rec = issuer_try!(reconcile_profile(
            piv_options.is_some(),
            &home,
            &station,
            &mut reg,
            current.as_mut(),
            today,
            &mut rng
        ));
        if let Some(ch) = current {
            source.card_done(ch, wait)?;
        }
        eprintln!(
            "Reconciled open intents: committed {:?}, spoiled {:?}.",
            rec.committed, rec.spoiled
        );
        if !rec.listed.is_empty() {
            eprintln!(
                "Spoiled after the station signed for them (the cards may be complete): {:?}; \
                 their revocation ids go on the next revocation list (run `citycard revocation publish`).",
                rec.listed
            );
        }
    }

    let total = rows.len() as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} rows · {per_sec} · ETA {eta} · {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut issued, mut skipped, mut failed) = (0u64, 0u64, 0u64);
    for (row, parsed) in rows {
        let line = |v: serde_json::Value| {
            if args.json {
                bar.suspend(|| println!("{v}"));
            }
        };
        let resident = match parsed {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("row {row}: {}: {}", e.field, e.reason));
                line(serde_json::json!({"row": row, "ok": false, "error": e.to_string()}));
                bar.inc(1);
                continue;
            }
        };
        if args.resume {
            if let Some(number) = issuer_try!(reg
                .batch_row_done(&batch_id, row)
                .map_err(IssuerError::from))
            {
                skipped += 1;
                line(
                    serde_json::json!({"row": row, "ok": true, "card_number": number, "skipped": true}),
                );
                bar.inc(1);
                continue;
            }
        }
        let mut ch = match source.next_card(wait, trace, true) {
            Ok(ch) => ch,
            Err(e) => {
                bar.abandon();
                eprintln!("row {row}: {e:#}; stopping (rerun with --resume to continue)");
                return Ok(ExitCode::from(exit::BATCH_PARTIAL));
            }
        };
        let result = issue_profile(
            piv_options.as_ref(),
            &home,
            &station,
            &mut reg,
            &mut ch,
            &resident,
            Some((&batch_id, row)),
            None,
            today,
            &mut rng,
        )
        .map(|(card, piv)| (card, piv.as_ref().map(|p| piv_report(p).1)));
        match result {
            Ok((card, piv)) => {
                issued += 1;
                bar.set_message(card.card_number.clone());
                let mut v =
                    serde_json::json!({"row": row, "ok": true, "card_number": card.card_number});
                if let (Some(extra), Some(obj)) =
                    (piv.as_ref().and_then(|e| e.as_object()), v.as_object_mut())
                {
                    obj.extend(extra.clone());
                }
                line(v);
            }
            Err(e @ IssueError::CardLost { .. }) => {
                // The card may have committed before it was lost: its intent
                // stays open until the same card is back in the reader.
                bar.abandon();
                return fail(
                    exit::CARD_REMOVED,
                    format!(
                        "row {row}: {e}; stopping: put the same card back and rerun with --resume"
                    ),
                );
            }
            Err(IssueError::Issuer(e))
                if !matches!(
                    e,
                    IssuerError::Registry(RegistryError::ResidentHasLiveCard { .. })
                ) =>
            {
                bar.abandon();
                return fail(
                    code_of_issuer_error(&e),
                    format!("row {row}: {e}; stopping"),
                );
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("row {row}: {e}"));
                line(serde_json::json!({"row": row, "ok": false, "error": e.to_string()}));
            }
        }
        source.card_done(ch, wait)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let counts = issuer_try!(reg.counts().map_err(IssuerError::from));
    if args.json {
        println!(
            "{}",
            serde_json::json!({"summary": {"rows": total, "issued": issued, "skipped": skipped, "failed": failed,
                "registry": {"issued": counts.issued, "spoiled": counts.spoiled, "revoked": counts.revoked, "open_intents": counts.open_intents}}})
        );
    }
    eprintln!(
        "Batch done: {total} rows, {issued} issued, {skipped} already done, {failed} failed."
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::BATCH_PARTIAL)
    })
}
