//! `citycard personalise` and `citycard batch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use citycard_issuer::batch::{BatchEnd, BatchJob, Counter, RowOutcome, RowReport, StartReport};
use citycard_issuer::cards::{CardProfile, CardSource};
use citycard_issuer::home::IssuerHome;
use citycard_issuer::piv::{self as piv_issue, PivIssued, PivOptions};
use citycard_issuer::report::{BatchFinished, BatchLine, CardIssued};
use citycard_issuer::resident;
use citycard_keys::{open_management_key, ManagementKey, ManagementKeyLocation, SoftManagementKey};

use super::records::Reason;
use super::{code_of_issue_error, code_of_issuer_error, fail_json, print_json, HomeArg};
use crate::secrets::EnvOrPrompt;
use crate::{exit, issuer_try};

/// Which kind of card `personalise` and `batch` issue.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// A card running the citycard applet (applet-spec/SPEC.md).
    #[default]
    Citycard,
    /// An off-the-shelf PIV card or YubiKey (applet-spec/piv-profile.md).
    Piv,
}

impl From<Profile> for CardProfile {
    fn from(p: Profile) -> Self {
        match p {
            Profile::Citycard => Self::Citycard,
            Profile::Piv => Self::Piv,
        }
    }
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
                    exit::USAGE,
                    "--management-key and --allow-default-management-key need --profile piv".into(),
                ));
            }
            return Ok(None);
        }
        let alg = piv_issue::management_algorithm(&self.management_key_algorithm)
            .map_err(|e| (exit::USAGE, e.to_string()))?;
        let key: Box<dyn ManagementKey> = match &self.management_key {
            Some(text) => {
                let loc: ManagementKeyLocation = text
                    .parse()
                    .map_err(|e| (exit::USAGE, format!("--management-key: {e}")))?;
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
                    exit::USAGE,
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

/// Where and how a desk issues: shared by `personalise` and `batch`.
#[derive(clap::Args, Debug)]
pub struct DeskArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Issuing station name.
    #[arg(long)]
    station: String,
    /// PC/SC reader name (or unique part), or `emulated:DIR` for the built-in
    /// emulated cards (one state file per card, DIR/card-NNNNNN.state).
    #[arg(long)]
    reader: String,
    /// With `emulated:DIR` only: each new emulated applet card comes prepared
    /// by this preparer of the home (as cards arrive from the city's
    /// preparation facility).
    #[arg(long, value_name = "PREPARER")]
    prepare_with: Option<String>,
    /// Print every APDU exchange in hex on stderr (`>>` command, `<<` response).
    #[arg(long)]
    trace: bool,
    #[command(flatten)]
    profile: ProfileArgs,
}

impl DeskArgs {
    /// A counter on `home`: the station loaded, the registry, a desk lease
    /// for the reader, waiting `wait` seconds for each card.
    fn counter<'a>(
        &self,
        home: &'a IssuerHome,
        wait: u64,
    ) -> Result<Counter<'a>, citycard_issuer::IssuerError> {
        let (today, _) = citycard_issuer::home::now()?;
        let loaded = home.station(&self.station, &EnvOrPrompt, today)?;
        let mut source = CardSource::parse(&self.reader, self.profile.profile.into())?;
        if let Some(name) = &self.prepare_with {
            source.prepare_with(citycard_issuer::cards::EmulatedPreparation::load(
                home,
                name,
                &EnvOrPrompt,
                today,
            )?)?;
        }
        let mut counter = Counter::open(home, loaded, source, today, super::actor())?;
        counter.wait = Duration::from_secs(wait);
        counter.trace = self.trace;
        Ok(counter)
    }
}

/// Arguments of `personalise`.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Example:\n  citycard personalise --dir /srv/citycard --station desk-1 --reader 'ACS ACR122U' --resident alex.json\n\n", "Many desks may issue on one home at once: each process holds a lease on the intents it\nbegins; a run reconciles only intents of stopped runs on the same reader.\nExit codes: see `citycard --help`."))]
pub struct PersonaliseArgs {
    #[command(flatten)]
    desk: DeskArgs,
    /// The resident, as a JSON object (resident_id, name, birth_date, address or
    /// care_of_address, language; birth dates from 1900-01-01 to today).
    #[arg(long)]
    resident: PathBuf,
    /// Replace the resident's live card, revoking it with this reason.
    #[arg(long, value_enum)]
    replace: Option<Reason>,
    /// Seconds to wait for a card.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// PIV: the slot 9E key was generated by another tool (e.g. `yubico-piv-tool -a
    /// generate -s 9e -A ECCP256`): its public key as PEM. The card must prove it
    /// holds the private key before anything is signed. Default: generate on the card.
    #[arg(long, value_name = "PEM")]
    card_key_from: Option<PathBuf>,
}

/// Arguments of `batch`.
#[derive(clap::Args, Debug)]
#[command(after_help = concat!("Example:\n  citycard batch --dir /srv/citycard --station desk-1 --reader 'ACS ACR122U' residents.csv\n  citycard batch --dir /srv/citycard --station desk-1 --reader 'ACS ACR122U' residents.csv --resume\n\n", "Ctrl-C finishes the card in progress, prints the summary and exits 130.\nMany desks may issue on one home at once: each process holds a lease on the intents it\nbegins; a run reconciles only intents of stopped runs on the same reader.\nExit codes: see `citycard --help`."))]
pub struct BatchArgs {
    #[command(flatten)]
    desk: DeskArgs,
    /// Residents: .csv with a header row (separated by ',' or ';', detected),
    /// or .jsonl. Rows are named by their line in the file.
    file: PathBuf,
    /// Continue an interrupted batch: reconcile what the stopped run left on
    /// this reader; rows already issued (also from an earlier copy of the file)
    /// are reported as skipped.
    #[arg(long)]
    resume: bool,
    /// Seconds to wait for each card to be inserted (and removed).
    #[arg(long, default_value_t = 120)]
    wait: u64,
    /// Print one JSON object per row and a summary as JSON lines.
    #[arg(long)]
    json: bool,
}

impl PersonaliseArgs {
    /// With the top-level `--trace` folded in.
    pub fn with_trace(mut self, trace: bool) -> Self {
        self.desk.trace |= trace;
        self
    }
}

impl BatchArgs {
    /// With the top-level `--trace` folded in.
    pub fn with_trace(mut self, trace: bool) -> Self {
        self.desk.trace |= trace;
        self
    }
}

/// What a PIV card carries, for the operator.
fn piv_report(p: &PivIssued) -> String {
    let predicates: Vec<&str> = p.predicates.iter().map(|id| id.name()).collect();
    let not_on_card: Vec<&str> = p.not_on_card.iter().map(|id| id.name()).collect();
    format!(
        "Issued PIV card {} (valid {} to {}); certificate in 5FC101 read back and verified, slot 9E key {} and proven by a signature.\n\
         Signed age predicates (true on the issue date): {}.\n\
         Not written to the card (a PIV card is readable by anyone, so the PIV profile carries no resident data): {}.",
        p.issued.card_number,
        p.issued.issued_on,
        p.issued.expires_on,
        if p.key_generated { "generated on the card" } else { "supplied (--card-key-from)" },
        if predicates.is_empty() { "none".to_string() } else { predicates.join(", ") },
        if not_on_card.is_empty() { "none".to_string() } else { not_on_card.join(", ") },
    )
}

fn print_start(report: &StartReport) {
    let r = &report.reconciled;
    if !r.committed.is_empty() || !r.spoiled.is_empty() {
        eprintln!(
            "Reconciled intents of a stopped run on this reader: committed [{}], spoiled [{}].",
            r.committed.join(", "),
            r.spoiled.join(", ")
        );
    }
    if !r.listed.is_empty() {
        eprintln!(
            "Spoiled after the station signed for them (the cards may be complete): [{}]; their revocation ids go on the next revocation list (run `citycard revocation publish`).",
            r.listed.join(", ")
        );
    }
    if !report.elsewhere.is_empty() {
        eprintln!(
            "Intents of stopped runs on other readers, left for them: [{}] (run `batch --resume` on that reader).",
            report.elsewhere.join(", ")
        );
    }
}

/// Runs `personalise`.
pub fn personalise(args: &PersonaliseArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let piv_key = match args.desk.profile.management_key() {
        Ok(k) => k,
        Err((code, message)) => return fail_json(json, code, message),
    };
    let card_key = match (&args.card_key_from, &piv_key) {
        (None, _) => None,
        (Some(_), None) => {
            return fail_json(json, exit::USAGE, "--card-key-from needs --profile piv")
        }
        (Some(path), Some(_)) => match card_key_from(path) {
            Ok(k) => Some(k),
            Err(e) => return fail_json(json, exit::INPUT, e),
        },
    };
    let piv_options = piv_key.as_ref().map(|key| PivOptions {
        management_key: key.as_ref(),
        allow_default_management_key: args.desk.profile.allow_default_management_key,
        card_key,
    });
    let resident = match resident::from_json_file(&args.resident) {
        Ok(r) => r,
        Err(e) => {
            return fail_json(
                json,
                exit::INPUT,
                format!("{}: {e}", args.resident.display()),
            )
        }
    };
    let home = issuer_try!(json, IssuerHome::open(&args.desk.home.dir));
    let mut counter = issuer_try!(json, args.desk.counter(&home, args.wait));
    let mut ch = issuer_try!(json, counter.next_card());
    let start = issuer_try!(
        json,
        counter.reconcile(piv_options.is_some(), Some(&mut ch))
    );
    print_start(&start);
    let result = counter.issue(
        &mut ch,
        piv_options.as_ref(),
        &resident,
        None,
        args.replace.map(Into::into),
    );
    let stats = ch.transport().stats();
    match result {
        Ok((issued, piv)) => {
            if json {
                print_json(&CardIssued::new(
                    &resident.resident_id,
                    &issued,
                    piv.as_ref(),
                    &stats,
                ))?;
            } else if let Some(p) = &piv {
                println!("{}", piv_report(p));
            } else {
                println!(
                    "Issued card {} (valid {} to {}) to resident {}; the card's check value matches what was sent.",
                    issued.card_number, issued.issued_on, issued.expires_on, resident.resident_id
                );
            }
            counter.source.card_done(ch, Duration::from_secs(args.wait));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail_json(
            json,
            code_of_issue_error(&e),
            format!("resident {}: {e}", resident.resident_id),
        ),
    }
}

/// Reads the `--card-key-from` PEM.
fn card_key_from(path: &Path) -> Result<p256::PublicKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    piv_issue::parse_public_key_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A flag set by Ctrl-C (SIGINT) and SIGTERM, for the batch to stop between cards.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                set.store(true, Ordering::SeqCst);
                eprintln!("\nInterrupted: finishing the card in progress, then stopping with a summary (kill -9 is safe too: the next run reconciles).");
            });
        });
    if spawned.is_err() {
        eprintln!("citycard: warning: cannot watch for Ctrl-C");
    }
    // Give the signal handler a moment to be installed before the first card.
    std::thread::sleep(Duration::from_millis(20));
    flag
}

/// A batch row's JSON line, with the exit code its failure maps to.
fn row_json(r: &RowReport) -> BatchLine {
    let code = match &r.outcome {
        RowOutcome::Refused(_) => exit::INPUT,
        RowOutcome::Failed(e) => code_of_issue_error(e),
        RowOutcome::Issued { .. } | RowOutcome::Skipped { .. } => exit::OK,
    };
    BatchLine::new(r, code)
}

fn row_text(r: &RowReport) -> Option<String> {
    let who = r
        .resident_id
        .as_ref()
        .map(|id| format!("resident {id}: "))
        .unwrap_or_default();
    match &r.outcome {
        RowOutcome::Issued { .. } => None,
        RowOutcome::Skipped { card_number } => Some(format!(
            "line {}: {who}already has card {card_number}; skipped",
            r.line
        )),
        RowOutcome::Refused(e) => Some(format!("line {}: {who}{}: {}", r.line, e.field, e.reason)),
        RowOutcome::Failed(e) => Some(format!("line {}: {who}{e}", r.line)),
    }
}

/// Runs `batch`.
pub fn batch(args: &BatchArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let interrupted = interrupt_flag();
    let piv_key = match args.desk.profile.management_key() {
        Ok(k) => k,
        Err((code, message)) => return fail_json(json, code, message),
    };
    let rows = match resident::read_batch(&args.file) {
        Ok(rows) => rows,
        Err(e) => return fail_json(json, exit::INPUT, format!("{}: {e}", args.file.display())),
    };
    let content = match std::fs::read(&args.file) {
        Ok(c) => c,
        Err(e) => return fail_json(json, exit::INPUT, format!("{}: {e}", args.file.display())),
    };
    let batch_id = hex::encode(&citycard_proto::crypto::sha256(&[&content])[..8]);
    let home = issuer_try!(json, IssuerHome::open(&args.desk.home.dir));
    let mut counter = issuer_try!(json, args.desk.counter(&home, args.wait));
    counter.source.set_interrupt(interrupted.clone());
    let piv_options = piv_key.as_ref().map(|key| PivOptions {
        management_key: key.as_ref(),
        allow_default_management_key: args.desk.profile.allow_default_management_key,
        card_key: None,
    });
    let total = rows.len() as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} rows · {per_sec} · ETA {eta} · {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let announce = counter.source.reader_name().map(str::to_string);
    let job = BatchJob {
        batch_id: &batch_id,
        resume: args.resume,
        piv: piv_options.as_ref(),
        interrupted: &interrupted,
    };
    let summary = counter.run_batch(
        rows,
        &job,
        &mut |start| bar.suspend(|| print_start(start)),
        &mut |row| {
            if let RowOutcome::Issued { card, .. } = &row.outcome {
                bar.set_message(card.card_number.clone());
            }
            bar.suspend(|| {
                if let Some(text) = row_text(row) {
                    eprintln!("{text}");
                }
                if json {
                    if let Err(e) = print_json(&row_json(row)) {
                        eprintln!("citycard: error: line {}: {e}", row.line);
                    }
                }
                if let Some(reader) = &announce {
                    eprintln!("Next: insert a blank card in {reader}…");
                }
            });
            bar.inc(1);
        },
    );
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            bar.abandon();
            return fail_json(json, code_of_issuer_error(&e), e);
        }
    };
    bar.finish_and_clear();
    let end = summary.end.name();
    let (code, message) = match &summary.end {
        BatchEnd::Completed if summary.failed + summary.refused == 0 => (exit::OK, None),
        BatchEnd::Completed => (exit::BATCH_PARTIAL, None),
        BatchEnd::Interrupted => (exit::INTERRUPTED, Some("interrupted by the operator; rerun with --resume to continue".to_string())),
        BatchEnd::LeaseLost => (exit::REGISTRY, Some("this desk's lease was taken over by another desk (was it suspended?); rerun with --resume".to_string())),
        BatchEnd::CardLost { line, error } => (
            code_of_issue_error(error),
            Some(format!("line {line}: {error}; stopping: put the same card back and rerun with --resume")),
        ),
        BatchEnd::NoCard { line, error } => (
            code_of_issuer_error(error),
            Some(format!("line {line}: {error}; stopping (rerun with --resume to continue)")),
        ),
        BatchEnd::Fatal { line, error } => (
            code_of_issue_error(error),
            Some(format!("line {line}: {error}; stopping")),
        ),
    };
    let counts = issuer_try!(json, counter.registry.counts());
    if json {
        print_json(&BatchFinished::new(&summary, code, &counts))?;
    }
    if let Some(m) = &message {
        eprintln!("citycard: {m}");
    }
    eprintln!(
        "Batch {end}: {total} rows, {} issued, {} already done, {} invalid, {} not issued.",
        summary.issued, summary.skipped, summary.refused, summary.failed
    );
    Ok(ExitCode::from(code))
}
