//! Where blank cards come from: a PC/SC reader (wait for insertion, power
//! the card down and wait for its removal after), or a directory of emulated
//! cards (`emulated:DIR`, one state file `card-NNNNNN.state` per card).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often waiting for a card checks whether the operator interrupted.
const INTERRUPT_POLL: Duration = Duration::from_millis(500);

use citycard_card::Applet;
use citycard_emulator::FileStore;
use citycard_piv_card::PivCard;
use citycard_transport::{
    CardChannel, CardTransport, MemoryTransport, PcscContext, Traced, TransportError,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::error::IssuerError;

/// Which kind of card is issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CardProfile {
    /// A card running the citycard applet (applet-spec/SPEC.md).
    #[default]
    Citycard,
    /// An off-the-shelf PIV card or YubiKey (applet-spec/piv-profile.md).
    Piv,
}

/// A channel to the card in the reader, with APDU tracing available.
pub type Channel = CardChannel<Traced<Box<dyn CardTransport>>>;

/// Where cards come from.
pub enum CardSource {
    /// A PC/SC reader.
    Pcsc {
        /// The PC/SC context.
        ctx: PcscContext,
        /// The resolved reader name.
        reader: String,
        /// Set by the operator (Ctrl-C): stop waiting for a card.
        interrupt: Option<Arc<AtomicBool>>,
    },
    /// Emulated cards, one state file per card in `dir`.
    Emulated {
        /// The directory.
        dir: PathBuf,
        /// The last card number used in `dir`.
        next: u32,
        /// What the emulated cards are.
        profile: CardProfile,
        /// New applet cards are prepared by this preparer first
        /// ([`CardSource::prepare_with`]).
        prepare: Option<Box<EmulatedPreparation>>,
    },
}

/// How new emulated applet cards are prepared (as cards arrive from the
/// city's preparation facility, SPEC §6.3).
pub struct EmulatedPreparation {
    preparer: crate::home::LoadedPreparer,
    issuer: String,
    root: p256::PublicKey,
    today: citycard_proto::date::Date,
}

impl EmulatedPreparation {
    /// The home's preparer `name`, preparing cards dated `today`.
    pub fn load(
        home: &crate::home::IssuerHome,
        name: &str,
        secrets: &dyn citycard_keys::SecretSource,
        today: citycard_proto::date::Date,
    ) -> Result<Self, IssuerError> {
        Ok(Self {
            preparer: home.preparer(name, secrets)?,
            issuer: home.config().issuer_id.clone(),
            root: home.root_public_key()?,
            today,
        })
    }

    /// Prepares the blank card behind `transport`.
    fn prepare(
        &self,
        transport: Box<dyn CardTransport>,
    ) -> Result<Box<dyn CardTransport>, IssuerError> {
        let mut ch = CardChannel::new(transport);
        let sign = |m: &[u8]| self.preparer.signer.sign(m);
        crate::personalise::prepare(
            &mut ch,
            &crate::personalise::Preparer {
                issuer: &self.issuer,
                root: &self.root,
                certificate: &self.preparer.certificate,
                sign: &sign,
                batch: "emulated",
            },
            self.today,
        )
        .map_err(|e| IssuerError::EmulatedPreparation(Box::new(e)))?;
        Ok(ch.into_inner())
    }
}

impl std::fmt::Debug for CardSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.desk_id())
    }
}

fn reader_error(e: TransportError) -> IssuerError {
    IssuerError::Reader(e)
}

impl CardSource {
    /// Parses `--reader`: `emulated:DIR` (the directory is created 0700), or
    /// a PC/SC reader name or unique part of one.
    pub fn parse(reader: &str, profile: CardProfile) -> Result<Self, IssuerError> {
        if let Some(dir) = reader.strip_prefix("emulated:") {
            let dir = PathBuf::from(dir);
            citycard_files::create_private_dir(&dir)?;
            return Ok(Self::Emulated {
                dir,
                next: 0,
                profile,
                prepare: None,
            });
        }
        let ctx = PcscContext::establish().map_err(IssuerError::NoPcscService)?;
        let reader = ctx.resolve_reader(reader).map_err(reader_error)?;
        Ok(Self::Pcsc {
            ctx,
            reader,
            interrupt: None,
        })
    }

    /// New emulated applet cards come prepared by `preparation`
    /// (`--prepare-with`); refused for a PC/SC reader, whose cards come
    /// prepared from the facility.
    pub fn prepare_with(&mut self, preparation: EmulatedPreparation) -> Result<(), IssuerError> {
        match self {
            Self::Emulated { prepare, .. } => {
                *prepare = Some(Box::new(preparation));
                Ok(())
            }
            Self::Pcsc { .. } => Err(IssuerError::Config(
                "--prepare-with is for emulated:DIR readers only".into(),
            )),
        }
    }

    /// Waiting for a card stops with [`IssuerError::Interrupted`] once `flag`
    /// is set (checked twice a second).
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        if let Self::Pcsc { interrupt, .. } = self {
            *interrupt = Some(flag);
        }
    }

    /// This source as a desk identity for leases: the host and reader name,
    /// or the emulated cards' directory. Intents left by a stopped desk are
    /// reconciled only by a desk with the same identity (the card is there).
    pub fn desk_id(&self) -> String {
        match self {
            Self::Pcsc { reader, .. } => {
                let host = crate::desk::holder();
                let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
                format!("pcsc:{host}:{reader}")
            }
            Self::Emulated { dir, .. } => {
                let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                format!("emulated:{}", dir.display())
            }
        }
    }

    /// The next card: waits for insertion (PC/SC), or takes the next blank
    /// emulated card (`card-NNNNNN.state`, continuing after existing files).
    pub fn next_card(&mut self, wait: Duration, trace: bool) -> Result<Channel, IssuerError> {
        let transport: Box<dyn CardTransport> = match self {
            Self::Pcsc {
                ctx,
                reader,
                interrupt,
            } => {
                let deadline = std::time::Instant::now() + wait;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match ctx.wait_for_card(reader, Some(left.min(INTERRUPT_POLL))) {
                        Ok(_) => break,
                        Err(TransportError::Timeout) => {}
                        Err(other) => return Err(reader_error(other)),
                    }
                    if interrupt.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
                        return Err(IssuerError::Interrupted);
                    }
                    if left <= INTERRUPT_POLL {
                        return Err(IssuerError::NoCard {
                            reader: reader.clone(),
                            secs: wait.as_secs(),
                        });
                    }
                }
                Box::new(ctx.connect(reader).map_err(reader_error)?)
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
                    if !p.exists() || (*profile == CardProfile::Piv && piv_card_waiting(&p)) {
                        break p;
                    }
                };
                let fresh = !path.exists();
                let card = emulated_card(&path, *profile)?;
                match prepare {
                    Some(p) if fresh && *profile == CardProfile::Citycard => p.prepare(card)?,
                    _ => card,
                }
            }
        };
        Ok(channel(transport, trace))
    }

    /// The card the reader held when a previous run stopped (emulated: the
    /// newest card file), for reconciliation; `None` if there is none.
    pub fn current_card(
        &mut self,
        wait: Duration,
        trace: bool,
    ) -> Result<Option<Channel>, IssuerError> {
        match self {
            Self::Pcsc { ctx, reader, .. } => {
                if ctx
                    .wait_for_card(reader, Some(Duration::from_millis(300)))
                    .is_err()
                {
                    return Ok(None);
                }
                self.next_card(wait, trace).map(Some)
            }
            Self::Emulated { dir, profile, .. } => {
                let mut newest = None;
                let entries = std::fs::read_dir(&*dir).map_err(|e| IssuerError::io(dir, e))?;
                for entry in entries {
                    let name = entry
                        .map_err(|e| IssuerError::io(dir, e))?
                        .file_name()
                        .to_string_lossy()
                        .into_owned();
                    if name.starts_with("card-")
                        && name.ends_with(".state")
                        && newest.as_ref().is_none_or(|n: &String| name > *n)
                    {
                        newest = Some(name);
                    }
                }
                let Some(name) = newest else { return Ok(None) };
                let transport = emulated_card(&dir.join(name), *profile)?;
                Ok(Some(channel(transport, trace)))
            }
        }
    }

    /// Whether cards come from a PC/SC reader (an operator inserts them).
    pub fn is_pcsc(&self) -> bool {
        matches!(self, Self::Pcsc { .. })
    }

    /// The reader's name, for prompts (`None` for emulated cards).
    pub fn reader_name(&self) -> Option<&str> {
        match self {
            Self::Pcsc { reader, .. } => Some(reader),
            Self::Emulated { .. } => None,
        }
    }

    /// The current card is finished: power it down and wait for its removal.
    pub fn card_done(&mut self, ch: Channel, wait: Duration) {
        let mut transport = ch.into_inner().into_inner();
        if let Self::Pcsc { ctx, reader, .. } = self {
            // Power-cycle the card so it keeps no session, then let it go.
            let _ = transport.reset();
            drop(transport);
            ctx.wait_for_removal(reader, Some(wait)).ok();
        }
    }
}

fn channel(transport: Box<dyn CardTransport>, trace: bool) -> Channel {
    let mut traced = Traced::new(transport);
    if trace {
        traced = traced.echo_to_stderr();
    }
    CardChannel::new(traced)
}

/// An emulated card over the state file `path` (created blank if absent):
/// the citycard applet, or for [`CardProfile::Piv`] the emulated PIV card
/// (the state format of `card emulate --profile piv`).
pub fn emulated_card(
    path: &Path,
    profile: CardProfile,
) -> Result<Box<dyn CardTransport>, IssuerError> {
    let store = FileStore::new(path).map_err(IssuerError::EmulatedCard)?;
    let rng = ChaCha20Rng::from_rng(rand_core::OsRng)
        .map_err(|_| IssuerError::Config("no OS randomness".into()))?;
    Ok(match profile {
        CardProfile::Citycard => Box::new(MemoryTransport::new(Applet::new(store, rng))),
        CardProfile::Piv => Box::new(MemoryTransport::new(PivCard::new(store, rng))),
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
