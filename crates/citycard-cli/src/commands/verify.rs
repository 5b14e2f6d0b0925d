//! `citycard verify`: one tap, one verdict.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use citycard_proto::attr::AttributeSet;
use citycard_reader::{verify, CardChannel, Freshness, Policy, StalePolicy, Trust};
use citycard_transport::{PcscContext, Traced, TransportError};
use rand_chacha::rand_core::SeedableRng;

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
    /// Warn (stderr; a `revocation_list_expiring` JSON event with --json or in
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
    /// PC/SC reader name (or unique part of it).
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
    /// Print the verdict as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `verify`. The exit code is the verdict's (0 only for a genuine, valid, unrevoked card).
pub fn run(args: &VerifyArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let mut trust = match Trust::load(&args.trust, &args.credential) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("citycard: error: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    if let Some(bytes) = args.policy.root_fingerprint()? {
        trust = match trust.with_expected_root(&bytes) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("citycard: error: {e}");
                return Ok(ExitCode::from(3));
            }
        };
    }
    let policy = args
        .policy
        .policy()?
        .with_always_send_certificate(args.always_send_certificate);
    warn_freshness(
        &trust,
        policy.now_unix,
        args.policy.warn_before_secs(),
        args.json,
    );
    let ctx = PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
    let reader = ctx.resolve_reader(&args.reader)?;
    match ctx.wait_for_card(&reader, Some(Duration::from_secs(args.wait))) {
        Ok(_) => {}
        Err(TransportError::Timeout) => {
            eprintln!("citycard: error: no card in {reader} within {}s", args.wait);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    }
    let started = Instant::now();
    let transport = ctx.connect(&reader)?;
    let mut traced = Traced::new(transport);
    if trace {
        traced = traced.echo_to_stderr();
    }
    let mut channel = CardChannel::new(traced);
    let mut rng =
        rand_chacha::ChaCha20Rng::from_rng(rand_core::OsRng).context("no OS randomness")?;
    let verdict = verify(&mut channel, &trust, &policy, &mut rng);
    let elapsed = started.elapsed();
    let stats = channel.transport().stats();
    if args.json {
        let mut v = verdict.to_json();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("reader".into(), serde_json::json!(reader));
            obj.insert(
                "timing_ms".into(),
                serde_json::json!(elapsed.as_secs_f64() * 1000.0),
            );
            obj.insert("apdus".into(), serde_json::json!(stats.apdus));
        }
        println!("{v}");
    } else {
        println!("{}", describe(&verdict));
        eprintln!("{} APDUs, {} ms", stats.apdus, elapsed.as_millis());
    }
    // Leave the card powered for the next reader action; errors here change nothing.
    let _ = channel.into_inner().into_inner().disconnect();
    Ok(ExitCode::from(verdict.code()))
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

/// Warns on stderr when the revocation list is near or past its next update:
/// one line of text, or with `json` one JSON event
/// (`{"event":"revocation_list_expiring","next_update":…,"remaining_secs":…,"stale":…}`).
pub fn warn_freshness(trust: &Trust, now_unix: u64, warn_before_secs: u64, json: bool) {
    let (next_update, remaining, stale) = match trust.freshness(now_unix, warn_before_secs) {
        Freshness::Fresh => return,
        Freshness::ExpiresSoon {
            next_update,
            remaining_secs,
        } => (next_update, remaining_secs, false),
        Freshness::Stale { next_update } => (next_update, 0, true),
    };
    if json {
        eprintln!(
            "{}",
            serde_json::json!({
                "schema_version": 1,
                "event": "revocation_list_expiring",
                "next_update": next_update,
                "remaining_secs": remaining,
                "stale": stale,
            })
        );
    } else if stale {
        eprintln!(
            "citycard: warning: the revocation list passed its next update {} ago; get the city's new trust bundle",
            human_duration(now_unix.saturating_sub(next_update))
        );
    } else {
        eprintln!(
            "citycard: warning: the revocation list reaches its next update in {}; get the city's new trust bundle before then",
            human_duration(remaining)
        );
    }
}

/// `3 d 4 h`, `5 h 12 min`, `40 min`, `12 s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min")
    } else {
        format!("{secs} s")
    }
}
