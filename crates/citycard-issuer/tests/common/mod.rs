//! Test support shared by the issuer's in-process tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use citycard_issuer::home::{IssuerHome, LoadedPreparer, LoadedStation};
use citycard_issuer::personalise::{self, Preparer};
use citycard_keys::FixedSecrets;
use citycard_proto::date::Date;
use citycard_transport::{CardTransport, TransportError};

/// A transport that loses the card right after the card has executed the
/// last (unchained) command with instruction `ins`: the card did the work,
/// the host never sees the answer.
pub struct Pull<T> {
    /// The transport to the card.
    pub inner: T,
    /// Instruction after which the card is lost (none: never).
    pub armed: Option<u8>,
    /// The card has been lost (until the next reset).
    pub pulled: bool,
}

impl<T: CardTransport> CardTransport for Pull<T> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.pulled {
            return Err(TransportError::CardRemoved);
        }
        let r = self.inner.transmit_raw(apdu)?;
        if let (Some(ins), [cla, i, ..]) = (self.armed, apdu) {
            if *i == ins && cla & 0x10 == 0 {
                self.pulled = true;
                return Err(TransportError::CardRemoved);
            }
        }
        Ok(r)
    }
    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.pulled = false;
        self.armed = None;
        self.inner.reset()
    }
    fn transaction(
        &mut self,
        body: &mut citycard_transport::TransactionFn<'_>,
    ) -> Result<(), TransportError> {
        body(self)
    }
}

/// The tests' issue date.
pub fn today() -> Date {
    Date::new(2026, 11, 27).unwrap()
}

/// Passphrase and PIN of the test keys.
pub fn secrets() -> FixedSecrets {
    FixedSecrets::new("correct horse", "0000")
}

/// An issuer home with one station, in a temporary folder.
pub struct City {
    _dir: tempfile::TempDir,
    /// The issuer home.
    pub home: IssuerHome,
    /// Its station `desk-1`.
    pub station: LoadedStation,
    /// Its preparer `prep-1`.
    pub preparer: LoadedPreparer,
}

impl City {
    /// Prepares the blank card on `ch` with the city's preparer (SPEC §6.3).
    pub fn prepare<T: CardTransport>(&self, ch: &mut citycard_transport::CardChannel<T>) {
        let root = self.home.root_public_key().unwrap();
        let sign = |m: &[u8]| self.preparer.signer.sign(m);
        personalise::prepare(
            ch,
            &Preparer {
                issuer: &self.home.config().issuer_id,
                root: &root,
                certificate: &self.preparer.certificate,
                sign: &sign,
                batch: "2026-11-B0001",
            },
            Date::new(2026, 11, 2).unwrap(),
        )
        .unwrap();
    }
}

/// A fresh city: LIEGE, card prefix LG, station `desk-1`.
pub fn city() -> City {
    let dir = tempfile::tempdir().unwrap();
    let home = IssuerHome::init(
        &dir.path().join("home"),
        "Liège",
        "LIEGE",
        "LG",
        None,
        Some(365),
        &secrets(),
    )
    .unwrap();
    home.add_station("desk-1", 180, None, &secrets(), today())
        .unwrap();
    let station = home.station("desk-1", &secrets(), today()).unwrap();
    home.add_preparer(
        "prep-1",
        365,
        None,
        &secrets(),
        Date::new(2026, 1, 2).unwrap(),
    )
    .unwrap();
    let preparer = home.preparer("prep-1", &secrets()).unwrap();
    City {
        _dir: dir,
        home,
        station,
        preparer,
    }
}
