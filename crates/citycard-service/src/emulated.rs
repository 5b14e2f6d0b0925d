//! The emulated reader: the built-in reference card (citycard applet or
//! emulated PIV card) over its state file, in this process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use citycard_card::{Applet, Storage as _};
use citycard_emulator::FileStore;
use citycard_piv_card::{PivCard, PivState};
use citycard_reader::watch::{BoxedTransport, ReaderMonitor, ReaderPort, ReaderSystem};
use citycard_transport::{MemoryTransport, TransportError};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The reader-name prefix of the emulated reader: `emulated:FILE`.
pub const EMULATED_PREFIX: &str = "emulated:";

/// How often an emulated reader looks for its card file.
const POLL: Duration = Duration::from_millis(50);

/// Opens the card whose state is in `path`, as a connected card: the
/// emulated PIV card if the file holds a PIV card's state, else the citycard
/// applet (the state format of `citycard card emulate` and of
/// `citycard personalise --reader emulated:DIR`). The card writes its state
/// back to `path` atomically, as a real card writes its EEPROM.
///
/// # Errors
///
/// [`TransportError::NoCard`] if `path` does not exist; others if it cannot
/// be opened.
pub fn open_emulated_card(path: &Path) -> Result<BoxedTransport, TransportError> {
    if !path.is_file() {
        return Err(TransportError::NoCard);
    }
    let backend = |e: &dyn std::fmt::Display| {
        TransportError::Backend(format!("emulated card {}: {e}", path.display()).into())
    };
    let rng = ChaCha20Rng::from_rng(rand_core::OsRng).map_err(|e| backend(&e))?;
    let mut probe = FileStore::new(path).map_err(|e| backend(&e))?;
    let piv = matches!(probe.load(), Ok(Some(bytes)) if PivState::decode(&bytes).is_ok());
    let store = FileStore::new(path).map_err(|e| backend(&e))?;
    Ok(if piv {
        Box::new(MemoryTransport::new(PivCard::new(store, rng)))
    } else {
        Box::new(MemoryTransport::new(Applet::new(store, rng)))
    })
}

/// Emulated readers for the tap service, one per card state file: the card
/// is on the reader while its file exists. Tap it by moving a card's state
/// file to that path (`mv card.state desk.card`), take it away by moving it
/// elsewhere. The reader's name is `emulated:PATH`.
#[derive(Clone, Debug)]
pub struct EmulatedReaders {
    paths: Vec<PathBuf>,
}

impl EmulatedReaders {
    /// Readers at these card paths.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        Self { paths }
    }

    /// The reader names (`emulated:PATH`).
    pub fn names(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| format!("{EMULATED_PREFIX}{}", p.display()))
            .collect()
    }
}

impl ReaderSystem for EmulatedReaders {
    fn monitor(&self) -> Result<Box<dyn ReaderMonitor>, TransportError> {
        Ok(Box::new(EmulatedMonitor(self.names())))
    }

    fn open(&self, reader: &str) -> Result<Box<dyn ReaderPort>, TransportError> {
        match reader.strip_prefix(EMULATED_PREFIX) {
            Some(path) if self.names().iter().any(|n| n == reader) => Ok(Box::new(EmulatedPort {
                path: PathBuf::from(path),
            })),
            _ => Err(TransportError::ReaderNotFound {
                name: reader.to_owned(),
                available: self.names(),
            }),
        }
    }
}

struct EmulatedMonitor(Vec<String>);

impl ReaderMonitor for EmulatedMonitor {
    fn list_readers(&mut self) -> Result<Vec<String>, TransportError> {
        Ok(self.0.clone())
    }

    fn wait_for_change(&mut self, timeout: Duration, stop: &dyn Fn() -> bool) {
        let end = Instant::now() + timeout;
        while !stop() && Instant::now() < end {
            std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
        }
    }
}

struct EmulatedPort {
    path: PathBuf,
}

impl EmulatedPort {
    fn wait_until(&self, present: bool, timeout: Duration) -> Result<(), TransportError> {
        let end = Instant::now() + timeout;
        loop {
            if self.path.is_file() == present {
                return Ok(());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout);
            }
            std::thread::sleep(POLL.min(left));
        }
    }
}

impl ReaderPort for EmulatedPort {
    fn wait_for_card(&mut self, timeout: Duration) -> Result<(), TransportError> {
        self.wait_until(true, timeout)
    }

    fn connect(&mut self) -> Result<BoxedTransport, TransportError> {
        open_emulated_card(&self.path)
    }

    fn wait_for_removal(&mut self, timeout: Duration) -> Result<(), TransportError> {
        self.wait_until(false, timeout)
    }
}
