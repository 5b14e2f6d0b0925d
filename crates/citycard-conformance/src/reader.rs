//! The reader kit: a sequence of emulated cards (citycards good and bad, and a
//! PIV-profile card) presented one after another
//! in a vpcd reader (`Virtual PCD 00 00`), each with the verdict a correct
//! reader must report (the table's [`ReaderCase`]s).
//!
//! [`ReaderKit::prepare`] generates a throwaway city and writes the files the
//! reader under test loads (`conformance.bundle`, `library.cred`: the formats
//! of `citycard trust export` and `citycard partner enrol`), and issues every
//! card. [`ReaderKit::run`] then serves each card in turn and reads the
//! reader's verdicts as JSON lines (`{"verdict": "genuine"}`, or the line of
//! `citycard watch`, whose `verdict` is an object with a `verdict` field).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citycard_card::{Applet, Faults, MemoryStorage};
use citycard_emulator::{serve, AnswerFault, AnswerFaults, ReconnectPolicy, ServeOptions};
use citycard_keys::{ManagementKey, SoftManagementKey};
use citycard_piv_card::PivCard;
use citycard_proto::attr::AttributeSet;
use citycard_proto::auth::ReaderSession;
use citycard_proto::consts::{cla, ins};
use citycard_proto::pers::{self, CHALLENGE_LEN};
use citycard_proto::piv::{
    self, CardAuthenticationBody, CardAuthenticationCertificate, ManagementAlgorithm,
};
use citycard_proto::record::{self, GroupRecord};
use citycard_proto::revocation::{
    RevocationList, RevocationListBody, TrustBundle, TrustBundleBody,
};
use citycard_proto::{
    apdu::CardLost, apdu::Command, apdu::ContactlessCard, crypto, date::Date, fci,
};
use citycard_reader::PartnerCredential;
use citycard_transport::MemoryTransport;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};

use crate::city::{self, City, OTHER_ISSUER, TEST_ISSUER};
use crate::expect::{ReaderCase, SpecVersion};
use crate::issue;
use crate::link::Link;
use crate::report::{Outcome, Report};
use crate::ConformanceError;

/// The reference card as the reader kit serves it.
pub type KitCard = Applet<MemoryStorage, ChaCha20Rng>;

/// File name of the trust bundle the kit writes (the throwaway city's, named
/// like a city's `liege.bundle`).
pub const TRUST_FILE: &str = "conformance.bundle";
/// File name of the partner credential the kit writes (the library profile,
/// named like the `library.cred` of `citycard partner enrol`). Written last:
/// once it exists, both files are complete.
pub const CREDENTIAL_FILE: &str = "library.cred";

/// A card with an answer fault applied in front of it.
pub struct FaultyCard {
    card: KitCard,
    layer: Option<AnswerFaults>,
}

impl ContactlessCard for FaultyCard {
    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }
    fn reset(&mut self) {
        self.card.reset();
        if let Some(layer) = self.layer.as_mut() {
            layer.reset();
        }
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        match self.layer.as_mut() {
            None => self.card.transmit(command),
            Some(layer) => match layer.handle(&mut self.card, command)? {
                citycard_emulator::answer_fault::Action::Reply(r) => Ok(r),
                citycard_emulator::answer_fault::Action::Remove => Err(CardLost),
            },
        }
    }
}

/// The PIV-profile card as the reader kit serves it.
pub type KitPivCard = PivCard<MemoryStorage, ChaCha20Rng>;

/// A card the reader kit serves: a citycard (perhaps faulty) or a PIV card.
pub enum ServedCard {
    /// The reference citycard.
    Citycard(Box<FaultyCard>),
    /// The emulated PIV card.
    Piv(Box<KitPivCard>),
}

impl ContactlessCard for ServedCard {
    fn atr(&self) -> Vec<u8> {
        match self {
            Self::Citycard(c) => c.atr(),
            Self::Piv(c) => c.atr(),
        }
    }
    fn reset(&mut self) {
        match self {
            Self::Citycard(c) => c.reset(),
            Self::Piv(c) => c.reset(),
        }
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        match self {
            Self::Citycard(c) => c.transmit(command),
            Self::Piv(c) => c.transmit(command),
        }
    }
}

/// Issues a PIV-profile card (piv-profile.md §4) with the factory management
/// key: key pair generated in slot `9E`, the station-signed certificate in
/// object `5FC101`.
fn issue_piv(city: &City) -> Result<KitPivCard, ConformanceError> {
    let card = PivCard::new(MemoryStorage::default(), rng());
    let mut t = MemoryTransport::new(card);
    {
        let mut link = Link::new(&mut t, 8);
        let fail = |what: &'static str| ConformanceError::Kit(what);
        let mut tx = |c: &Command, what: &'static str| match link.send(c) {
            Ok(o) if o.sw == 0x9000 => Ok(o.data),
            _ => Err(fail(what)),
        };
        tx(&piv::select_command(), "PIV select")?;
        let alg = ManagementAlgorithm::TripleDes;
        let key = SoftManagementKey::factory_default(alg);
        let witness = tx(&piv::management_witness_request(alg), "management witness")?;
        let witness = piv::parse_management_witness(&witness, alg)?;
        let plain = key
            .decrypt_block(&witness)
            .map_err(|_| fail("management key"))?;
        let mut challenge = vec![0u8; alg.block_len()];
        OsRng.fill_bytes(&mut challenge);
        tx(
            &piv::management_response_command(alg, &plain, &challenge),
            "management response",
        )?;
        let generated = tx(
            &piv::generate_command(piv::SLOT_CARD_AUTHENTICATION),
            "generate 9E",
        )?;
        let card_key = piv::parse_generated_public_key(&generated)?;
        let body = CardAuthenticationBody {
            issuer_id: city.issuer.clone(),
            station_holder: city.station_certificate.body().holder.clone(),
            station: city.station_certificate.fingerprint(),
            card_number: "TEST-PIV-0001".into(),
            valid_from: city.today,
            valid_to: city::shift(city.today, 365)?,
            card_key,
            predicates: AttributeSet::EMPTY,
        };
        let tbs = body.to_be_signed()?;
        let certificate =
            CardAuthenticationCertificate::assemble(&tbs, &crypto::sign(&city.station, &tbs))?;
        tx(
            &piv::put_data_command(
                piv::OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
                &piv::certificate_container(certificate.as_bytes()),
            ),
            "PUT DATA 5FC101",
        )?;
    }
    Ok(t.into_inner())
}

/// One prepared card.
pub struct PreparedCard {
    /// Its case.
    pub case: ReaderCase,
    card: Option<ServedCard>,
    /// An answer fault the bridge applies (the ones that drop the connection).
    bridge_fault: Option<AnswerFault>,
}

/// The reader kit, ready to run.
pub struct ReaderKit {
    /// Where the trust bundle and credential were written.
    pub dir: PathBuf,
    /// The cards, in order.
    pub cards: Vec<PreparedCard>,
    version: SpecVersion,
}

/// Prepares (on `valid_from`) and personalises a blank card for `city` with
/// [`city::GROUPS`] groups; returns it and its group-0 record.
fn issue(
    card: KitCard,
    city: &City,
    valid_from: Date,
    valid_to: Date,
) -> Result<(KitCard, GroupRecord), ConformanceError> {
    let mut t = MemoryTransport::new(card);
    let record = {
        let mut link = Link::new(&mut t, 8);
        let fail = |what: &'static str| ConformanceError::Kit(what);
        let tx = |link: &mut Link<'_>, c: &Command, what: &'static str| {
            link.send(c).map_err(|_| fail(what)).and_then(|o| {
                if o.sw == 0x9000 {
                    Ok(o.data)
                } else {
                    Err(fail(what))
                }
            })
        };
        tx(&mut link, &fci::select_command(), "select")?;
        let k_a = tx(
            &mut link,
            &issue::prepare_command(city, valid_from)?,
            "prepare",
        )?;
        let k_a = pers::decode_attestation_key(&k_a)?;
        let cert = issue::preparation_certificate(city, &k_a, valid_from)?;
        tx(
            &mut link,
            &issue::store_certificate_command(&cert),
            "preparation certificate",
        )?;
        tx(
            &mut link,
            &Command::new(cla::ISO, ins::PSO, 0, 0xBE)
                .with_data(city.station_certificate.as_bytes().to_vec()),
            "station certificate",
        )?;
        let challenge = tx(
            &mut link,
            &Command::new(cla::ISO, ins::GET_CHALLENGE, 0, 0).with_le(CHALLENGE_LEN),
            "challenge",
        )?;
        let e_s = city::fresh_key();
        let answer = tx(
            &mut link,
            &issue::station_auth(&city.station, &e_s, &challenge, city::GROUPS),
            "station authentication",
        )?;
        let (keys, mut channel) =
            issue::open_card_auth(city, &e_s, &challenge, &answer, city::GROUPS)
                .map_err(|_| fail("station authentication answer"))?;
        let valid_from =
            record::valid_from_for(valid_from, city.station_certificate.body().effective);
        let staged = issue::stage(city, &keys, valid_from, valid_to)?;
        for plaintext in &staged.plaintexts {
            let cmd = issue::secured(&mut channel, ins::PUT_DATA, plaintext)?;
            tx(&mut link, &cmd, "put data")?;
        }
        let cmd = issue::secured(&mut channel, ins::ACTIVATE, &[])?;
        let check = tx(&mut link, &cmd, "activate")?;
        if !issue::check_activation(&channel, &staged, &check)? {
            return Err(fail("issuance check value"));
        }
        staged
            .records
            .into_iter()
            .next()
            .ok_or(ConformanceError::Kit("no record"))?
    };
    Ok((t.into_inner(), record))
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_rng(OsRng).unwrap_or_else(|_| ChaCha20Rng::from_seed(random_seed()))
}

fn fresh_card() -> KitCard {
    Applet::new(MemoryStorage::default(), rng())
}

fn random_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    OsRng.fill_bytes(&mut s);
    s
}

/// The kit taps `card` once itself (so that `replay` and `stale-record` have
/// an earlier tap to use).
fn earlier_tap(
    card: FaultyCard,
    credential: &(p256::SecretKey, citycard_proto::cert::Certificate),
    today: Date,
) -> FaultyCard {
    let mut t = MemoryTransport::new(card);
    let mut link = Link::new(&mut t, 8);
    let _ = link.send(&fci::select_command());
    let _ = link.send(
        &Command::new(cla::ISO, ins::PSO, 0, 0xBE).with_data(credential.1.as_bytes().to_vec()),
    );
    let requested: AttributeSet = credential.1.body().grants;
    let session = ReaderSession::new(&mut OsRng, credential.1.fingerprint(), requested, today);
    let _ = link.send(&session.command());
    t.into_inner()
}

impl ReaderKit {
    /// Generates the city, writes `conformance.bundle` and `library.cred` into
    /// `dir` (which must not hold them yet) and issues every card.
    ///
    /// # Errors
    ///
    /// Kit failures (files, clock, issuing the cards).
    pub fn prepare(dir: &Path) -> Result<Self, ConformanceError> {
        let version = SpecVersion::current().ok_or(ConformanceError::UnknownVersion)?;
        let today = city::today()?;
        let home = City::generate(TEST_ISSUER, today)?;
        let other = City::generate(OTHER_ISSUER, today)?;
        let partner = home
            .readers
            .first()
            .ok_or(ConformanceError::Kit("no reader"))?;
        let credential = (partner.key.clone(), partner.certificate.clone());
        let in_a_year = city::shift(today, 365)?;
        let mut cards = Vec::new();
        let mut revoked = Vec::new();
        for case in version.table().reader_cases {
            if case.name == "piv" {
                cards.push(PreparedCard {
                    case: *case,
                    card: Some(ServedCard::Piv(Box::new(issue_piv(&home)?))),
                    bridge_fault: None,
                });
                continue;
            }
            let fault = case.name.parse::<AnswerFault>().ok();
            let (mut card, record) = match case.name {
                "expired" => issue(
                    fresh_card(),
                    &home,
                    city::shift(today, -20)?,
                    city::shift(today, -1)?,
                )?,
                "other-city" => issue(fresh_card(), &other, today, in_a_year)?,
                _ => issue(fresh_card(), &home, today, in_a_year)?,
            };
            match case.name {
                "clone" => card.set_faults(Faults { clone: true }),
                "revoked" => revoked.push(record.revocation_id()),
                _ => {}
            }
            let bridge_fault = fault.filter(|f| *f == AnswerFault::RemovedMidAnswer);
            let layer_fault = fault.filter(|f| *f != AnswerFault::RemovedMidAnswer);
            let mut faulty = FaultyCard {
                card,
                layer: layer_fault.map(AnswerFaults::new),
            };
            if layer_fault.is_some_and(AnswerFault::needs_earlier_tap) {
                faulty = earlier_tap(faulty, &credential, today);
            }
            cards.push(PreparedCard {
                case: *case,
                card: Some(ServedCard::Citycard(Box::new(faulty))),
                bridge_fault,
            });
        }
        revoked.sort_unstable();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| ConformanceError::Clock)?
            .as_secs();
        let list = RevocationListBody {
            issuer: home.issuer.clone(),
            group: 0,
            sequence: 1,
            issued_at: now,
            next_update: now + 7 * 86_400,
            revoked,
        };
        let tbs = list.to_be_signed()?;
        let list = RevocationList::assemble(&tbs, &crypto::sign(&home.root, &tbs))?;
        let body = TrustBundleBody {
            issuer: home.issuer.clone(),
            group: 0,
            root: home.root.public_key(),
            issued_at: now,
            stations: vec![home.station_certificate.clone()],
            revocations: list,
        };
        let tbs = body.to_be_signed()?;
        let bundle = TrustBundle::assemble(&tbs, &crypto::sign(&home.root, &tbs))?;
        let file_error = |e: citycard_files::FileError| ConformanceError::Io(e.to_string());
        citycard_files::create_private_dir(dir).map_err(file_error)?;
        citycard_files::write_file(
            &dir.join(TRUST_FILE),
            bundle.as_bytes(),
            citycard_files::Overwrite::Refuse,
        )
        .map_err(file_error)?;
        let cred = PartnerCredential::new(credential.1, credential.0)
            .map_err(|e| ConformanceError::Io(e.to_string()))?;
        cred.write_to(&dir.join(CREDENTIAL_FILE))
            .map_err(|e| ConformanceError::Io(e.to_string()))?;
        Ok(Self {
            dir: dir.to_owned(),
            cards,
            version,
        })
    }

    /// Presents every card in turn at `vpcd` and checks the verdict the reader
    /// reports: `next_line(timeout)` returns the reader's next output line (or
    /// `None` on timeout); `drain()` discards lines already waiting.
    ///
    /// Each card stays in the reader until a verdict arrives or `timeout`
    /// passes, then is removed; `settle` is the pause before the next card.
    pub fn run(
        mut self,
        vpcd: SocketAddr,
        target: &str,
        timeout: Duration,
        settle: Duration,
        next_line: &mut dyn FnMut(Duration) -> Option<String>,
        drain: &mut dyn FnMut(),
    ) -> Report {
        let mut report = Report::new("reader", self.version.byte(), target);
        for prepared in &mut self.cards {
            let case = prepared.case;
            let id = format!("reader.{}", case.name);
            let Some(mut card) = prepared.card.take() else {
                continue;
            };
            drain();
            let stop = Arc::new(AtomicBool::new(false));
            let mut opts = ServeOptions::new(vpcd);
            opts.stop = Some(stop.clone());
            opts.answer_fault = prepared.bridge_fault;
            opts.reconnect = ReconnectPolicy {
                max_attempts: Some(40),
                ..ReconnectPolicy::default()
            };
            let server = std::thread::spawn(move || serve(&mut card, &opts));
            let start = Instant::now();
            let mut observed = None;
            while observed.is_none() {
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                match next_line(left) {
                    Some(line) => observed = verdict_of(&line),
                    None => break,
                }
            }
            stop.store(true, Ordering::SeqCst);
            let served = server.join();
            let elapsed = start.elapsed();
            std::thread::sleep(settle);
            let expected = case.verdict.to_string();
            match (observed, served) {
                (_, Err(_)) => report.push(
                    &id,
                    case.spec,
                    Outcome::Fail,
                    expected,
                    "the emulated card crashed (kit bug)".into(),
                    elapsed,
                ),
                (_, Ok(Err(e))) => report.push(
                    &id,
                    case.spec,
                    Outcome::Fail,
                    expected,
                    format!("vpcd: {e}"),
                    elapsed,
                ),
                (None, _) => report.push(
                    &id,
                    case.spec,
                    Outcome::Fail,
                    expected,
                    format!("no verdict within {} s", timeout.as_secs()),
                    elapsed,
                ),
                (Some(v), _) => {
                    let outcome = if v == case.verdict {
                        Outcome::Pass
                    } else {
                        Outcome::Fail
                    };
                    report.push(&id, case.spec, outcome, expected, v, elapsed);
                }
            }
        }
        report
    }
}

/// The verdict name in one line of reader output: `{"verdict": "x"}` or
/// `{"verdict": {"verdict": "x", …}}`; `None` for other lines.
pub fn verdict_of(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let verdict = v.get("verdict")?;
    match verdict {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("verdict")?.as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lines_in_both_shapes() {
        assert_eq!(
            verdict_of(r#"{"verdict":"clone"}"#).as_deref(),
            Some("clone")
        );
        assert_eq!(
            verdict_of(r#"{"reader":"Virtual PCD 00 00","verdict":{"schema_version":1,"verdict":"genuine","code":0}}"#).as_deref(),
            Some("genuine")
        );
        assert_eq!(verdict_of(r#"{"event":"reader_added"}"#), None);
        assert_eq!(verdict_of("not json"), None);
    }

    #[test]
    fn prepares_every_card_and_the_files() {
        let dir = std::env::temp_dir().join(format!("citycard-conformance-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kit = ReaderKit::prepare(&dir).unwrap();
        assert_eq!(
            kit.cards.len(),
            SpecVersion::current().unwrap().table().reader_cases.len()
        );
        let bundle = TrustBundle::decode(&std::fs::read(dir.join(TRUST_FILE)).unwrap()).unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.body().revocations.body().revoked.len(), 1);
        assert!(PartnerCredential::load(&dir.join(CREDENTIAL_FILE)).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(TRUST_FILE)), 0o600);
            assert_eq!(mode(&dir.join(CREDENTIAL_FILE)), 0o600);
        }
        // A second prepare into the same directory refuses to overwrite.
        assert!(ReaderKit::prepare(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
