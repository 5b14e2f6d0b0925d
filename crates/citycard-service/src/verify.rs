//! One verification, start to finish, as the `verify.v1` JSON document.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use citycard_proto::attr::AttributeSet;
use citycard_reader::json::{ErrorJson, VerdictJson, VerifiedJson, VerifyJson};
use citycard_reader::{verify, CardChannel, Policy, StalePolicy, Trust, Verdict};
use citycard_transport::{Traced, TransportError};
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::emulated::{open_emulated_card, EMULATED_PREFIX};

/// A reader, by the name a partner gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReaderName {
    /// A PC/SC reader: its name, or a unique case-insensitive part of it.
    Pcsc(String),
    /// The built-in emulated card whose state is in this file
    /// (`emulated:FILE`): no pcscd needed.
    Emulated(PathBuf),
}

impl ReaderName {
    /// `emulated:FILE`, or else a PC/SC reader name.
    pub fn parse(name: &str) -> Self {
        match name.strip_prefix(EMULATED_PREFIX) {
            Some(path) => Self::Emulated(PathBuf::from(path)),
            None => Self::Pcsc(name.to_owned()),
        }
    }
}

/// What to do with a revocation list past its next update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleChoice {
    /// Refuse every card (verdict `revocation_list_stale`).
    #[default]
    Reject,
    /// Accept, flagging the verdict (`revocation_stale: true`).
    Accept,
}

fn default_wait_secs() -> u64 {
    30
}

/// One verification's inputs. As JSON (the C ABI's and Python's options),
/// every field but `reader`, `trust` and `credential` may be left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A PC/SC reader name (or unique part), or `emulated:FILE`.
    pub reader: String,
    /// The city's trust bundle file.
    pub trust: PathBuf,
    /// This partner's credential file.
    pub credential: PathBuf,
    /// The root key fingerprint the city handed out (64 hex digits), checked against the bundle.
    #[serde(default)]
    pub root_fingerprint: Option<String>,
    /// Attributes to ask for (names); default: everything the credential grants.
    #[serde(default)]
    pub attributes: Option<Vec<String>>,
    /// Revocation list past its next update: `reject` (default) or `accept`.
    #[serde(default)]
    pub stale: StaleChoice,
    /// Grace after next update before the list counts as stale, seconds.
    #[serde(default)]
    pub grace_secs: u64,
    /// Send the reader certificate on every tap (SPEC §11).
    #[serde(default)]
    pub always_send_certificate: bool,
    /// Seconds to wait for a card if none is present (default 30).
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u64,
}

impl VerifyRequest {
    /// A request with the defaults.
    pub fn new(reader: &str, trust: &Path, credential: &Path) -> Self {
        Self {
            reader: reader.to_owned(),
            trust: trust.to_path_buf(),
            credential: credential.to_path_buf(),
            root_fingerprint: None,
            attributes: None,
            stale: StaleChoice::Reject,
            grace_secs: 0,
            always_send_certificate: false,
            wait_secs: default_wait_secs(),
        }
    }

    /// The verification policy, clock now.
    ///
    /// # Errors
    ///
    /// An unknown attribute name.
    pub fn policy(&self) -> Result<Policy, ErrorJson> {
        let mut policy = Policy::now()
            .with_stale(
                match self.stale {
                    StaleChoice::Reject => StalePolicy::Reject,
                    StaleChoice::Accept => StalePolicy::AcceptFlagged,
                },
                self.grace_secs,
            )
            .with_always_send_certificate(self.always_send_certificate);
        if let Some(names) = &self.attributes {
            let list = names.join(",");
            let set = AttributeSet::parse_list(&list).map_err(|_| {
                ErrorJson::new(
                    "usage",
                    format!("attributes {list:?}: unknown attribute"),
                    2,
                )
            })?;
            policy = policy.with_requested(set);
        }
        Ok(policy)
    }

    /// The trust bundle and credential, checked against each other and the pinned root.
    ///
    /// # Errors
    ///
    /// `usage` (bad fingerprint, exit 2) or `trust_unusable` (exit 3).
    pub fn trust(&self) -> Result<Trust, ErrorJson> {
        let pin = match &self.root_fingerprint {
            None => None,
            Some(fp) => Some(
                hex::decode(fp)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        ErrorJson::new("usage", "root fingerprint must be 64 hex digits", 2)
                    })?,
            ),
        };
        let unusable =
            |e: citycard_reader::ReaderError| ErrorJson::new("trust_unusable", e.to_string(), 3);
        let trust = Trust::load(&self.trust, &self.credential).map_err(unusable)?;
        match pin {
            Some(pin) => trust.with_expected_root(&pin).map_err(unusable),
            None => Ok(trust),
        }
    }
}

/// What [`verify_once`] found.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// The `verify.v1` document.
    pub json: VerifyJson,
    /// The process exit code: the verdict's, or the error's.
    pub code: u8,
    /// The verdict, if one was reached.
    pub verdict: Option<Verdict>,
}

impl VerifyOutcome {
    fn error(e: ErrorJson) -> Self {
        Self {
            code: e.code,
            json: VerifyJson::Error(e),
            verdict: None,
        }
    }
}

/// Loads the trust, waits for a card in the reader, verifies it: a verdict
/// or an error, never a panic. With `trace`, every APDU goes to stderr in hex.
pub fn verify_once(request: &VerifyRequest, trace: bool) -> VerifyOutcome {
    match run(request, trace) {
        Ok(o) => o,
        Err(e) => VerifyOutcome::error(e),
    }
}

fn transport_error(e: &TransportError) -> ErrorJson {
    let kind = match e {
        TransportError::NoService => "pcsc_unavailable",
        TransportError::NoReadersAvailable
        | TransportError::ReaderNotFound { .. }
        | TransportError::AmbiguousReader { .. } => "reader_not_found",
        _ => "reader_failed",
    };
    ErrorJson::new(kind, e.to_string(), 1)
}

fn run(request: &VerifyRequest, trace: bool) -> Result<VerifyOutcome, ErrorJson> {
    let trust = request.trust()?;
    let policy = request.policy()?;
    let wait = Duration::from_secs(request.wait_secs);
    let reader = ReaderName::parse(&request.reader);
    let (name, transport) = connect(&reader, wait)?;
    let started = Instant::now();
    let mut traced = Traced::new(transport);
    if trace {
        traced = traced.echo_to_stderr();
    }
    let mut channel = CardChannel::new(traced);
    let mut rng = rand_chacha::ChaCha20Rng::from_rng(rand_core::OsRng)
        .map_err(|e| ErrorJson::new("internal", format!("no OS randomness: {e}"), 1))?;
    let verdict = verify(&mut channel, &trust, &policy, &mut rng);
    let elapsed = started.elapsed();
    let apdus = channel.transport().stats().apdus;
    let json = VerifyJson::Verdict(VerifiedJson {
        verdict: VerdictJson::from(&verdict),
        reader: Some(name),
        apdus: Some(apdus),
        timing_ms: Some(citycard_reader::json::millis(elapsed)),
    });
    Ok(VerifyOutcome {
        code: verdict.code(),
        json,
        verdict: Some(verdict),
    })
}

/// The full reader name and the connected card, after waiting up to `wait`.
fn connect(
    reader: &ReaderName,
    wait: Duration,
) -> Result<(String, citycard_reader::watch::BoxedTransport), ErrorJson> {
    let no_card = |name: &str| {
        ErrorJson::new(
            "no_card",
            format!("no card in {name} within {}s", wait.as_secs()),
            1,
        )
    };
    match reader {
        ReaderName::Emulated(path) => {
            let name = format!("{EMULATED_PREFIX}{}", path.display());
            let end = Instant::now() + wait;
            while !path.is_file() {
                if Instant::now() >= end {
                    return Err(no_card(&name));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let card = open_emulated_card(path).map_err(|e| transport_error(&e))?;
            Ok((name, card))
        }
        #[cfg(feature = "pcsc")]
        ReaderName::Pcsc(name) => {
            use citycard_transport::PcscContext;
            let ctx = PcscContext::establish().map_err(|e| {
                ErrorJson::new(
                    "pcsc_unavailable",
                    format!("cannot reach pcscd (is it running?): {e}"),
                    1,
                )
            })?;
            let full = ctx.resolve_reader(name).map_err(|e| transport_error(&e))?;
            match ctx.wait_for_card(&full, Some(wait)) {
                Ok(_) => {}
                Err(TransportError::Timeout) => return Err(no_card(&full)),
                Err(e) => return Err(transport_error(&e)),
            }
            let card = ctx.connect(&full).map_err(|e| transport_error(&e))?;
            Ok((full, Box::new(card)))
        }
        #[cfg(not(feature = "pcsc"))]
        ReaderName::Pcsc(name) => Err(ErrorJson::new(
            "pcsc_unavailable",
            format!("reader {name:?}: this build has no PC/SC support; use emulated:FILE"),
            1,
        )),
    }
}
