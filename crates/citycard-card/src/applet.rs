//! The applet: a typed [`Instruction`] per command, the one life-cycle table
//! (SPEC §3.2, [`Instruction::accepted_in`]) and one handler per command.
//!
//! Chaining, GET RESPONSE and response shaping are the shared dispatcher's
//! ([`citycard_proto::dispatch`]): it asks [`Applet`] to *admit* a header
//! (selection, class, instruction, life cycle — the SPEC §3.2 order) and to
//! *execute* the whole command, so handlers see one whole command and return
//! one whole response.
//!
//! Every cryptographic operation and persistent write goes through one
//! [`OpCount`], readable with [`Applet::ops`]: tests compare the work of the
//! paths a skimmer must not tell apart.

use alloc::vec::Vec;
use citycard_proto::auth::{self, AuthRequest, AuthorisedReader, CardData, CardGroup, RealAnswer};
use citycard_proto::cert::{Certificate, Role, FINGERPRINT_LEN};
use citycard_proto::consts::{atr, cla, ins, AID};
use citycard_proto::crypto::{self, OpCount};
use citycard_proto::dispatch::{Application, Dispatcher, Header, Limits, Outcome, Segment};
use citycard_proto::limits::{CACHE_ENTRIES, MAX_CARD_DATE_STEP, MAX_CHAINED_DATA};
use citycard_proto::pers::{Prepare, SecureChannel, CHALLENGE_LEN};
use citycard_proto::record::{StoredValue, SEED_LEN};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard, consts::LifeCycle, sw::StatusWord};
use p256::SecretKey;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::state::{CachedReader, PersistentState};
use crate::storage::{Persistent, Storage};

mod personalisation;

/// The card's instructions (SPEC §4.2), parsed once from the INS byte. GET
/// RESPONSE is the dispatcher's and does not appear here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// SELECT (`00 A4`).
    Select,
    /// PREPARE (`80 10`).
    Prepare,
    /// STORE PREPARATION CERTIFICATE (`80 12`).
    StorePreparationCertificate,
    /// PSO: VERIFY CERTIFICATE (`00 2A`).
    VerifyCertificate,
    /// GET CHALLENGE (`00 84`).
    GetChallenge,
    /// EXTERNAL AUTHENTICATE (`00 82`).
    ExternalAuthenticate,
    /// PUT DATA, secured (`80 DA`).
    PutData,
    /// ACTIVATE, secured (`80 44`).
    Activate,
    /// TERMINATE, secured (`80 E6`).
    Terminate,
    /// GENERAL AUTHENTICATE (`00 86`).
    GeneralAuthenticate,
}

impl Instruction {
    /// The instruction an INS byte names; `None` for an unknown INS (`6D00`).
    pub const fn from_ins(ins_byte: u8) -> Option<Self> {
        Some(match ins_byte {
            ins::SELECT => Self::Select,
            ins::PREPARE => Self::Prepare,
            ins::STORE_PREPARATION_CERTIFICATE => Self::StorePreparationCertificate,
            ins::PSO => Self::VerifyCertificate,
            ins::GET_CHALLENGE => Self::GetChallenge,
            ins::EXTERNAL_AUTHENTICATE => Self::ExternalAuthenticate,
            ins::PUT_DATA => Self::PutData,
            ins::ACTIVATE => Self::Activate,
            ins::TERMINATE => Self::Terminate,
            ins::GENERAL_AUTHENTICATE => Self::GeneralAuthenticate,
            _ => return None,
        })
    }

    /// The class the instruction is sent in (SPEC §4.2); another class is `6E00`.
    pub const fn class(self) -> u8 {
        match self {
            Self::Prepare
            | Self::StorePreparationCertificate
            | Self::PutData
            | Self::Activate
            | Self::Terminate => cla::PROPRIETARY,
            _ => cla::ISO,
        }
    }

    /// `true` for the instructions that take command chaining (SPEC §4);
    /// chaining another one is `6884`.
    pub const fn chainable(self) -> bool {
        matches!(
            self,
            Self::VerifyCertificate | Self::PutData | Self::StorePreparationCertificate
        )
    }

    /// **The** life-cycle table of SPEC §3.2, the only one in code: `true`
    /// when the instruction runs in `life_cycle`, `false` for `6985`.
    ///
    /// SELECT runs in every state (a TERMINATED card answers `6283`).
    /// PERSONALISING is PREPARED with a station session; the session is
    /// checked by each command (`6982`). GENERAL AUTHENTICATE runs on an
    /// ISSUED card only (the life cycle is public), where it always answers
    /// (an answer or a decoy).
    pub const fn accepted_in(self, life_cycle: LifeCycle) -> bool {
        use LifeCycle::{Blank, Issued, Prepared, Terminated};
        match (self, life_cycle) {
            (Self::Select, _) => true,
            (_, Terminated) => false,
            (Self::Prepare | Self::StorePreparationCertificate, Blank) => true,
            (
                Self::VerifyCertificate | Self::GetChallenge | Self::ExternalAuthenticate,
                Prepared | Issued,
            ) => true,
            (Self::PutData | Self::Activate, Prepared) => true,
            (Self::Terminate | Self::GeneralAuthenticate, Issued) => true,
            _ => false,
        }
    }
}

/// A station that proved itself (certificate verified) in this session.
struct StationSession {
    certificate: Certificate,
    channel: Option<SecureChannel>,
}

/// Data staged during personalisation; committed only by ACTIVATE.
struct Staging {
    keys: Vec<SecretKey>,
    pseudonym_key: Zeroizing<[u8; 16]>,
    records: Vec<Option<Vec<u8>>>,
    seeds: Vec<Option<Zeroizing<[u8; SEED_LEN]>>>,
    values: Vec<StoredValue>,
    plaintext_bytes: usize,
}

/// What PREPARE staged for STORE PREPARATION CERTIFICATE.
struct Preparing {
    prepare: Prepare,
    attestation_key: SecretKey,
}

/// Session state lost on reset, deselect (SELECT) or power loss (chaining
/// and the pending response are the dispatcher's).
#[derive(Default)]
struct Volatile {
    selected: bool,
    challenge: Option<[u8; CHALLENGE_LEN]>,
    station: Option<StationSession>,
    staging: Option<Staging>,
    preparing: Option<Preparing>,
}

/// State kept until power-down (a SELECT does not clear it).
#[derive(Default)]
struct PowerSession {
    /// The first PSO of this power-up has made its write (W3).
    pso_written: bool,
    /// A reader certificate accepted by a later PSO of this power-up.
    reader_slot: Option<CachedReader>,
}

/// Test-bench faults the reference card can simulate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Use different private keys than the ones the records certify (a clone:
    /// same public data, wrong keys). In memory only; storage is untouched.
    pub clone: bool,
}

/// The reference card.
pub struct Applet<S: Storage, R: CryptoRngCore> {
    persistent: Persistent<S, PersistentState>,
    rng: R,
    volatile: Volatile,
    power: PowerSession,
    dispatcher: Dispatcher,
    faults: Faults,
    clone_key: Option<SecretKey>,
    ops: OpCount,
}

impl<S: Storage, R: CryptoRngCore> Applet<S, R> {
    /// A card over `storage` (a blank card if storage is empty), drawing
    /// randomness from `rng` (seed it for deterministic test vectors).
    pub fn new(storage: S, rng: R) -> Self {
        let mut applet = Self {
            persistent: Persistent::new(storage),
            rng,
            volatile: Volatile::default(),
            power: PowerSession::default(),
            dispatcher: Dispatcher::default(),
            faults: Faults::default(),
            clone_key: None,
            ops: OpCount::default(),
        };
        applet.power_up();
        applet
    }

    /// Enables test-bench faults.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.clone_key = if faults.clone {
            Some(crypto::generate(&mut self.rng))
        } else {
            None
        };
    }

    /// The current life-cycle state, or `None` if storage is unreadable.
    pub fn life_cycle(&self) -> Option<LifeCycle> {
        self.persistent.state().map(|s| s.life_cycle)
    }

    /// The persistent state as loaded (for tests and tools).
    pub fn state(&self) -> Option<&PersistentState> {
        self.persistent.state()
    }

    /// The operations (and persistent writes) performed since creation or
    /// the last [`Self::reset_ops`].
    pub fn ops(&self) -> OpCount {
        self.ops
    }

    /// Zeroes the operation counts.
    pub fn reset_ops(&mut self) {
        self.ops = OpCount::default();
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        self.persistent.storage()
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.persistent.into_storage()
    }

    fn power_up(&mut self) {
        self.volatile = Volatile::default();
        self.power = PowerSession::default();
        self.dispatcher = Dispatcher::default();
        self.persistent.power_up();
    }

    /// Commits `next` (one persistent write, counted).
    fn commit(&mut self, next: PersistentState) -> Result<(), StatusWord> {
        self.ops.writes += 1;
        self.persistent.commit(next)
    }
}

impl<S: Storage, R: CryptoRngCore> Application for Applet<S, R> {
    type Command = Instruction;

    const LIMITS: Limits = Limits::short(MAX_CHAINED_DATA);

    fn ready(&self) -> Result<(), StatusWord> {
        self.persistent
            .state()
            .map(|_| ())
            .ok_or(StatusWord::Unknown)
    }

    /// SPEC §3.2: selection, then class (`6E00`), then instruction (`6D00`),
    /// then life cycle ([`Instruction::accepted_in`], `6985`), for a whole
    /// command and for the first segment of a chain alike. SELECT is
    /// admitted in any state; it checks its own class and parameters.
    fn admit(&self, header: Header, segment: Segment) -> Result<Instruction, StatusWord> {
        let life_cycle = self.life_cycle().ok_or(StatusWord::Unknown)?;
        let instruction = Instruction::from_ins(header.ins);
        if segment == Segment::FirstOfChain && !instruction.is_some_and(Instruction::chainable) {
            return Err(StatusWord::ChainingNotSupported);
        }
        if instruction == Some(Instruction::Select) {
            return Ok(Instruction::Select);
        }
        if !self.volatile.selected {
            return Err(StatusWord::ConditionsNotSatisfied);
        }
        let expected_class = instruction.map_or(cla::ISO, Instruction::class);
        if header.cla != expected_class {
            return Err(StatusWord::ClassNotSupported);
        }
        let instruction = instruction.ok_or(StatusWord::InstructionNotSupported)?;
        if !instruction.accepted_in(life_cycle) {
            return Err(StatusWord::ConditionsNotSatisfied);
        }
        Ok(instruction)
    }

    fn execute(
        &mut self,
        instruction: Instruction,
        header: Header,
        data: &[u8],
        le: Option<usize>,
    ) -> Outcome {
        let life_cycle = self.life_cycle().ok_or(StatusWord::Unknown)?;
        match instruction {
            Instruction::Select => self.select(header, data),
            Instruction::Prepare => self.prepare(header, data),
            Instruction::StorePreparationCertificate => {
                self.store_preparation_certificate(header, data)
            }
            Instruction::VerifyCertificate => {
                header.expect_p1p2((0x00, 0xBE))?;
                if life_cycle == LifeCycle::Issued {
                    self.verify_certificate_issued(data)
                } else {
                    self.verify_station_certificate(data)
                }
            }
            Instruction::GetChallenge => self.get_challenge(header, le),
            Instruction::ExternalAuthenticate => self.external_authenticate(header, data),
            Instruction::PutData => self.put_data(header, data),
            Instruction::Activate => self.activate(header, data),
            Instruction::Terminate => self.terminate(header, data),
            Instruction::GeneralAuthenticate => {
                header.expect_p1p2((0, 0))?;
                self.general_authenticate(data)
            }
        }
    }

    fn dispatcher(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    fn powered(&self) -> bool {
        self.persistent.powered()
    }
}

impl<S: Storage, R: CryptoRngCore> Applet<S, R> {
    fn select(&mut self, header: Header, data: &[u8]) -> Outcome {
        if header.cla != cla::ISO {
            return Err(StatusWord::ClassNotSupported);
        }
        if header.p1 != 0x04 || !matches!(header.p2, 0x00 | 0x0C) {
            return Err(StatusWord::IncorrectP1P2);
        }
        // Selecting anything clears every session, as a deselect would.
        self.volatile = Volatile::default();
        if data != AID {
            return Err(StatusWord::FileNotFound);
        }
        let life_cycle = self.life_cycle().ok_or(StatusWord::Unknown)?;
        self.volatile.selected = true;
        if life_cycle == LifeCycle::Terminated {
            return Err(StatusWord::SelectedFileDeactivated);
        }
        if header.p2 == 0x0C {
            return Ok(Vec::new());
        }
        Ok(citycard_proto::fci::encode(life_cycle))
    }

    /// Fingerprint, then the root signature, then the other checks: the
    /// same work whatever the certificate (spec §6.4 steps 1–3). `Ok` with
    /// the certificate and its fingerprint when everything passed.
    fn check_certificate(
        &mut self,
        cert: Certificate,
    ) -> Result<(Certificate, [u8; FINGERPRINT_LEN]), ()> {
        let state = self.persistent.state().ok_or(())?;
        let anchor = state.anchor.as_ref().ok_or(())?;
        let digest = self.ops.sha256(&[cert.as_bytes()]);
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        for (f, d) in fingerprint.iter_mut().zip(digest) {
            *f = d;
        }
        let signed = self
            .ops
            .verify(&anchor.root, cert.signed_bytes(), cert.signature());
        let body = cert.body();
        let issuer = body.issuer == anchor.issuer;
        let unexpired = state.card_date.is_none_or(|today| body.expiry >= today);
        let role = match body.role {
            Role::Reader => body.domain.is_some() && body.group.is_some(),
            Role::Station => true,
            Role::Preparer | Role::PreparedCard => false,
        };
        if signed & issuer & unexpired & role {
            Ok((cert, fingerprint))
        } else {
            Err(())
        }
    }

    /// PSO on a PREPARED card (personalisation): station certificates only.
    fn verify_station_certificate(&mut self, data: &[u8]) -> Outcome {
        let cert = Certificate::decode(data).map_err(|_| StatusWord::IncorrectData)?;
        let (cert, _) = self
            .check_certificate(cert)
            .map_err(|()| StatusWord::SecurityStatusNotSatisfied)?;
        if cert.body().role != Role::Station {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        self.volatile.station = Some(StationSession {
            certificate: cert,
            channel: None,
        });
        self.volatile.staging = None;
        Ok(Vec::new())
    }

    /// PSO on an ISSUED card (spec §6.4): `9000` after the same work on every
    /// path, and exactly one write — on the first PSO of a power-up.
    fn verify_certificate_issued(&mut self, data: &[u8]) -> Outcome {
        let cert = Certificate::decode(data).map_err(|_| StatusWord::IncorrectData)?;
        let checked = self.check_certificate(cert);
        let mut next = self
            .persistent
            .state()
            .cloned()
            .ok_or(StatusWord::Unknown)?;
        let mut reader = None;
        if let Ok((cert, fingerprint)) = checked {
            {
                let body = cert.body();
                match (body.role, body.domain, body.group) {
                    (Role::Reader, Some(domain), Some(group)) => {
                        let entry = CachedReader {
                            fingerprint,
                            reader: AuthorisedReader {
                                public_key: body.public_key,
                                grants: body.grants,
                                domain,
                                group,
                            },
                            effective: body.effective,
                            expiry: body.expiry,
                        };
                        reader = Some(entry);
                        // Card date (spec §5.6): raised to the effective date
                        // when that lies at most MAX_CARD_DATE_STEP days ahead;
                        // a certificate dated further ahead moves nothing. So a
                        // certificate moves the card date once, by at most a
                        // step, however often it is replayed.
                        if let Some(today) = next.card_date {
                            if today < body.effective
                                && body.effective <= today.add_days(MAX_CARD_DATE_STEP)
                            {
                                next.card_date = Some(body.effective);
                            }
                        }
                    }
                    _ => {
                        self.volatile.station = Some(StationSession {
                            certificate: cert,
                            channel: None,
                        });
                    }
                }
            }
        }
        if self.power.pso_written {
            if reader.is_some() {
                self.power.reader_slot = reader;
            }
            return Ok(Vec::new());
        }
        self.power.pso_written = true;
        if let Some(entry) = reader {
            // Least recently verified first: move (or add) the entry to the end.
            next.cache.retain(|c| c.fingerprint != entry.fingerprint);
            if next.cache.len() >= CACHE_ENTRIES {
                next.cache.remove(0);
            }
            next.cache.push(entry);
        } else {
            next.card_date = self.persistent.state().and_then(|s| s.card_date);
        }
        self.commit(next)?;
        Ok(Vec::new())
    }

    /// GENERAL AUTHENTICATE (spec §6.10): an answer or a decoy of
    /// `answer_len(request)` bytes, with the same work.
    fn general_authenticate(&mut self, data: &[u8]) -> Outcome {
        let request = AuthRequest::decode(data).map_err(|_| StatusWord::IncorrectData)?;
        let state = self.persistent.state().ok_or(StatusWord::Unknown)?;
        let personalisation = state
            .personalisation
            .as_ref()
            .ok_or(StatusWord::ConditionsNotSatisfied)?;
        let group0 = personalisation.groups.first().ok_or(StatusWord::Unknown)?;
        let group0_public = group0.card_key.public_key();
        let reader = state
            .cache
            .iter()
            .chain(self.power.reader_slot.iter())
            .find(|c| c.fingerprint == request.certificate);
        let reader_point = request.reader_point();
        let real = reader.and_then(|cached| {
            let group = personalisation
                .groups
                .get(usize::from(cached.reader.group))?;
            let in_validity = cached.effective <= request.date && request.date <= cached.expiry;
            let not_before_card_date = state.card_date.is_none_or(|d| request.date >= d);
            let granted = request.requested.is_subset_of(cached.reader.grants);
            (in_validity && not_before_card_date && granted).then(|| RealAnswer {
                reader: &cached.reader,
                group: CardGroup {
                    card_key: match (&self.clone_key, self.faults.clone) {
                        (Some(k), true) => k,
                        _ => &group.card_key,
                    },
                    record: &group.record,
                    seed: &group.seed,
                },
            })
        });
        let card = CardData {
            group0: CardGroup {
                card_key: &group0.card_key,
                record: &group0.record,
                seed: &group0.seed,
            },
            group0_public: &group0_public,
            pseudonym_key: &personalisation.pseudonym_key,
            values: &personalisation.values,
        };
        Ok(auth::card_answer(
            &mut self.ops,
            data,
            &request,
            reader_point,
            &card,
            real,
            &mut self.rng,
        ))
    }
}

impl<S: Storage, R: CryptoRngCore> ContactlessCard for Applet<S, R> {
    fn atr(&self) -> Vec<u8> {
        atr().to_vec()
    }

    fn reset(&mut self) {
        self.power_up();
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        self.transmit_apdu(command)
    }
}
