//! `citycard verify`: one tap, one verdict.

use std::path::PathBuf;
use std::process::ExitCode;

use citycard_proto::attr::AttributeSet;
use citycard_reader::json::VerifyJson;
use citycard_reader::{Policy, StalePolicy};
use citycard_service::{verify_once, StaleChoice, VerifyRequest};

/// What to do with a stale revocation list.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum StaleArg {
    /// Refuse every card (verdict revocation_list_stale).
    Reject,
    /// Accept, flagging the verdict.
    Accept,
}

/// The reader policy options `verify` and `watch` share.
#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    /// Attributes to ask for (comma-separated); default: everything the credential grants.
    #[arg(long)]
    attributes: Option<String>,
    /// Expected root key fingerprint (hex SHA-256 of the root point), checked against the bundle.
    #[arg(long)]
    root_fingerprint: Option<String>,
    /// Policy for a revocation list past its next update.
    #[arg(long, value_enum, default_value_t = StaleArg::Reject)]
    stale: StaleArg,
    /// Grace period after next update before the list counts as stale, in seconds.
    #[arg(long, default_value_t = 0)]
    grace: u64,
    /// Warn (stderr: a line of text, or with `--json` a `warning` event as in
    /// `watch`) from this many hours before the revocation list's next update.
    #[arg(long, default_value_t = citycard_reader::DEFAULT_WARN_BEFORE_SECS / 3600)]
    warn_before_hours: u64,
}

impl PolicyArgs {
    /// The expected root fingerprint, if given.
    pub fn root_fingerprint(&self) -> anyhow::Result<Option<[u8; 32]>> {
        self.root_fingerprint
            .as_deref()
            .map(|fp| {
                hex::decode(fp)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow::anyhow!("--root-fingerprint must be 64 hex digits"))
            })
            .transpose()
    }

    /// The warning window before the list's next update, in seconds.
    pub fn warn_before_secs(&self) -> u64 {
        self.warn_before_hours.saturating_mul(3600)
    }

    /// The verification policy (clock: now).
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let mut policy = Policy::now().with_stale(
            match self.stale {
                StaleArg::Reject => StalePolicy::Reject,
                StaleArg::Accept => StalePolicy::AcceptFlagged,
            },
            self.grace,
        );
        if let Some(list) = &self.attributes {
            let set = AttributeSet::parse_list(list)
                .map_err(|_| anyhow::anyhow!("--attributes {list:?}: unknown attribute"))?;
            policy = policy.with_requested(set);
        }
        Ok(policy)
    }
}

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// PC/SC reader name (or unique part of it), or `emulated:FILE` for the
    /// built-in emulated card whose state is in FILE (no pcscd needed).
    #[arg(long)]
    reader: String,
    /// The city's trust bundle.
    #[arg(long)]
    trust: PathBuf,
    /// This partner's credential.
    #[arg(long)]
    credential: PathBuf,
    /// Seconds to wait for a card if none is present.
    #[arg(long, default_value_t = 30)]
    wait: u64,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Send the reader certificate on every tap instead of relying on the card's cache (SPEC §11).
    #[arg(long)]
    always_send_certificate: bool,
    /// Print the result as one JSON object (schemas/verify.v1.json), errors included.
    #[arg(long)]
    json: bool,
}

impl PolicyArgs {
    /// These options as a verification request's fields.
    pub fn apply(&self, request: &mut VerifyRequest) {
        request.root_fingerprint = self.root_fingerprint.clone();
        request.attributes = self.attributes.as_ref().map(|l| {
            l.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        });
        request.stale = match self.stale {
            StaleArg::Reject => StaleChoice::Reject,
            StaleArg::Accept => StaleChoice::Accept,
        };
        request.grace_secs = self.grace;
    }
}

/// Runs `verify`. The exit code is the verdict's (0 only for a genuine,
/// valid, unrevoked card), else 1 (no card, reader or PC/SC failure), 2
/// (usage) or 3 (unusable trust bundle or credential).
pub fn run(args: &VerifyArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let mut request = VerifyRequest::new(&args.reader, &args.trust, &args.credential);
    args.policy.apply(&mut request);
    request.always_send_certificate = args.always_send_certificate;
    request.wait_secs = args.wait;
    warn_freshness(&args.trust, args.policy.warn_before_secs(), args.json);
    let outcome = verify_once(&request, trace);
    if args.json {
        println!("{}", serde_json::to_string(&outcome.json)?);
    } else {
        match (&outcome.verdict, &outcome.json) {
            (Some(verdict), VerifyJson::Verdict(v)) => {
                println!("{}", describe(verdict));
                eprintln!(
                    "{} APDUs, {:.0} ms",
                    v.apdus.unwrap_or(0),
                    v.timing_ms.unwrap_or(0.0)
                );
            }
            (_, VerifyJson::Error(e)) => eprintln!("citycard: error: {}", e.message),
            (None, VerifyJson::Verdict(_)) => {}
        }
    }
    Ok(ExitCode::from(outcome.code))
}

fn describe(verdict: &citycard_reader::Verdict) -> String {
    match verdict.genuine() {
        Some(g) => {
            let piv = g.profile == citycard_reader::CardProfile::Piv;
            let mut lines = vec![String::from(if piv {
                "GENUINE card of this city (PIV profile), valid and not revoked."
            } else {
                "GENUINE card of this city, valid and not revoked."
            })];
            if let Some(p) = g.pseudonym {
                lines.push(format!("  pseudonym: {}", hex::encode(p)));
            }
            for (id, value) in &g.attributes {
                lines.push(format!("  {}: {}", id.name(), id.display_value(value)));
            }
            for (id, answer) in &g.predicates {
                let a = match answer {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None if piv => {
                        "not proven (a PIV card carries only what held on its issue date)"
                    }
                    None => "unknown (no birth date on the card)",
                };
                lines.push(format!("  {}: {a}", id.name()));
            }
            if g.revocation_stale {
                lines.push("  WARNING: the revocation list is stale".into());
            }
            lines.join("\n")
        }
        None => format!(
            "REJECTED: {} (exit code {})",
            verdict.kind(),
            verdict.code()
        ),
    }
}

/// Warns on stderr when the bundle's revocation list is close to or past its
/// next update: a line of text, or with `json` a `warning` event line of
/// `schemas/tap-event.v1.json`. A bundle that does not load is left to the
/// verification, which reports it.
fn warn_freshness(bundle: &std::path::Path, warn_before_secs: u64, json: bool) {
    let Ok(bundle) = citycard_reader::load_bundle(bundle) else {
        return;
    };
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let Some((kind, message)) =
        citycard_reader::freshness(&bundle, now_unix, warn_before_secs).warning(now_unix)
    else {
        return;
    };
    if json {
        eprintln!(
            "{}",
            citycard_reader::TapEvent::warning(kind, message, None).to_json_line()
        );
    } else {
        eprintln!("citycard: warning: {message}");
    }
}
