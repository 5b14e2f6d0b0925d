//! The applet: a typed [`Instruction`] per command, the one life-cycle table
//! (SPEC §3.2, [`Instruction::accepted_in`]) and one handler per command.
//!
//! Chaining, GET RESPONSE and response shaping are the shared dispatcher's
//! ([`citycard_proto::dispatch`]): it asks [`Applet`] to *admit* a header
//! (selection, class, instruction, life cycle — the SPEC §3.2 order) and to
//! *execute* the whole command, so handlers see one whole command and return
//! one whole response.

use alloc::vec::Vec;
use citycard_proto::attr::AttributeKind;
use citycard_proto::auth::{self, AuthRequest, CardData};
use citycard_proto::cert::{Certificate, Role};
use citycard_proto::consts::{atr, cla, ins, AID};
use citycard_proto::crypto;
use citycard_proto::dispatch::{Application, Dispatcher, Header, Limits, Outcome, Segment};
use citycard_proto::pers::{
    self, SecureChannel, StationAuth, CHALLENGE_LEN, TAG_ANCHOR_ISSUER, TAG_ANCHOR_KEY,
};
use citycard_proto::record::{AttributeEntry, ResidentRecord, TAG_ATTRIBUTE, TAG_RECORD};
use citycard_proto::tlv;
use citycard_proto::{CardLost, ContactlessCard, LifeCycle, StatusWord};
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::state::{Anchor, CachedReader, PersistentState, Personalisation, CACHE_ENTRIES};
use crate::storage::{Persistent, Storage};

/// Largest command data a chain may accumulate.
pub const MAX_CHAINED_DATA: usize = 1024;

/// The card's instructions (SPEC §4.2), parsed once from the INS byte. GET
/// RESPONSE is the dispatcher's and does not appear here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// SELECT (`00 A4`).
    Select,
    /// SET ISSUER ANCHOR (`80 10`).
    SetAnchor,
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
            ins::SET_ANCHOR => Self::SetAnchor,
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
            Self::SetAnchor | Self::PutData | Self::Activate | Self::Terminate => cla::PROPRIETARY,
            _ => cla::ISO,
        }
    }

    /// `true` for the instructions that take command chaining (SPEC §4);
    /// chaining another one is `6884`.
    pub const fn chainable(self) -> bool {
        matches!(self, Self::VerifyCertificate | Self::PutData)
    }

    /// **The** life-cycle table of SPEC §3.2, the only one in code: `true`
    /// when the instruction runs in `life_cycle`, `false` for `6985`.
    ///
    /// SELECT runs in every state (a TERMINATED card answers `6283`).
    /// PERSONALISING is ANCHORED with a station session; the session is
    /// checked by each command (`6982`). GENERAL AUTHENTICATE runs in every
    /// state but TERMINATED and fails uniformly (`6982`) on a card that is
    /// not ISSUED (SPEC §10.9).
    pub const fn accepted_in(self, life_cycle: LifeCycle) -> bool {
        use LifeCycle::{Anchored, Blank, Issued, Terminated};
        match (self, life_cycle) {
            (Self::Select, _) => true,
            (_, Terminated) => false,
            (Self::SetAnchor, Blank) => true,
            (
                Self::VerifyCertificate | Self::GetChallenge | Self::ExternalAuthenticate,
                Anchored | Issued,
            ) => true,
            (Self::PutData | Self::Activate, Anchored) => true,
            (Self::Terminate, Issued) => true,
            (Self::GeneralAuthenticate, _) => true,
            _ => false,
        }
    }
}

/// A station that proved itself in this session.
struct StationSession {
    certificate: Certificate,
    channel: Option<SecureChannel>,
}

/// Data staged during personalisation; committed only by ACTIVATE.
struct Staging {
    card_key: SecretKey,
    pseudonym_key: Zeroizing<[u8; 16]>,
    record: Option<Vec<u8>>,
    attributes: Vec<AttributeEntry>,
}

/// Session state lost on reset, deselect or power loss (chaining and the
/// pending response are the dispatcher's).
#[derive(Default)]
struct Volatile {
    selected: bool,
    challenge: Option<[u8; CHALLENGE_LEN]>,
    station: Option<StationSession>,
    staging: Option<Staging>,
}

/// Test-bench faults the reference card can simulate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Use a different private key than the one the record certifies (a clone:
    /// same public data, wrong key). In memory only; storage is untouched.
    pub clone: bool,
}

/// The reference card.
pub struct Applet<S: Storage, R: CryptoRngCore> {
    persistent: Persistent<S, PersistentState>,
    rng: R,
    volatile: Volatile,
    dispatcher: Dispatcher,
    faults: Faults,
    clone_key: Option<SecretKey>,
}

impl<S: Storage, R: CryptoRngCore> Applet<S, R> {
    /// A card over `storage` (a blank card if storage is empty), drawing
    /// randomness from `rng` (seed it for deterministic test vectors).
    pub fn new(storage: S, rng: R) -> Self {
        let mut applet = Self {
            persistent: Persistent::new(storage),
            rng,
            volatile: Volatile::default(),
            dispatcher: Dispatcher::default(),
            faults: Faults::default(),
            clone_key: None,
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
        self.dispatcher = Dispatcher::default();
        self.persistent.power_up();
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
        match instruction {
            Instruction::Select => self.select(header, data),
            Instruction::SetAnchor => self.set_anchor(header, data),
            Instruction::VerifyCertificate => {
                header.expect_p1p2((0x00, 0xBE))?;
                // Uniform failure: every reason is 6982.
                self.verify_certificate(data)
                    .map_err(|_| StatusWord::SecurityStatusNotSatisfied)
            }
            Instruction::GetChallenge => self.get_challenge(header, le),
            Instruction::ExternalAuthenticate => self.external_authenticate(header, data),
            Instruction::PutData => self.put_data(header, data),
            Instruction::Activate => self.activate(header, data),
            Instruction::Terminate => self.terminate(header, data),
            Instruction::GeneralAuthenticate => {
                header.expect_p1p2((0, 0))?;
                // Uniform failure: every reason, including a card that is not issued, is 6982.
                self.general_authenticate(data)
                    .map_err(|_| StatusWord::SecurityStatusNotSatisfied)
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
        let life_cycle = self
            .persistent
            .state()
            .map(|s| s.life_cycle)
            .ok_or(StatusWord::Unknown)?;
        self.volatile.selected = true;
        if life_cycle == LifeCycle::Terminated {
            return Err(StatusWord::SelectedFileDeactivated);
        }
        if header.p2 == 0x0C {
            return Ok(Vec::new());
        }
        Ok(citycard_proto::fci::encode(life_cycle))
    }

    fn set_anchor(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        let mut s = tlv::Sequence::new(data).map_err(|_| StatusWord::IncorrectData)?;
        let issuer = s
            .required(TAG_ANCHOR_ISSUER)
            .map_err(|_| StatusWord::IncorrectData)?;
        let key = s
            .required(TAG_ANCHOR_KEY)
            .map_err(|_| StatusWord::IncorrectData)?;
        s.finish().map_err(|_| StatusWord::IncorrectData)?;
        let issuer = core::str::from_utf8(issuer.value).map_err(|_| StatusWord::IncorrectData)?;
        if issuer.is_empty() || issuer.len() > 16 || !issuer.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StatusWord::IncorrectData);
        }
        let root = crypto::decode_point(key.value).map_err(|_| StatusWord::IncorrectData)?;
        let mut next = self
            .persistent
            .state()
            .cloned()
            .ok_or(StatusWord::Unknown)?;
        next.anchor = Some(Anchor {
            issuer: issuer.into(),
            root,
        });
        next.life_cycle = LifeCycle::Anchored;
        self.persistent.commit(next)?;
        Ok(Vec::new())
    }

    fn verify_certificate(&mut self, data: &[u8]) -> Outcome {
        let state = self.persistent.state().ok_or(StatusWord::Unknown)?;
        let anchor = state
            .anchor
            .as_ref()
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        let cert = Certificate::decode(data).map_err(|_| StatusWord::SecurityStatusNotSatisfied)?;
        let body = cert.body();
        if body.issuer != anchor.issuer {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        if state.card_date.is_some_and(|today| body.expiry < today) {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        match body.role {
            Role::Station => {
                cert.verify(&anchor.root)
                    .map_err(|_| StatusWord::SecurityStatusNotSatisfied)?;
                self.volatile.station = Some(StationSession {
                    certificate: cert,
                    channel: None,
                });
                self.volatile.staging = None;
                Ok(Vec::new())
            }
            Role::Reader => {
                if state.life_cycle != LifeCycle::Issued {
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
                let fingerprint = cert.fingerprint();
                if state.cache.iter().any(|c| c.fingerprint == fingerprint) {
                    // Already verified once: no signature check, no write.
                    return Ok(Vec::new());
                }
                cert.verify(&anchor.root)
                    .map_err(|_| StatusWord::SecurityStatusNotSatisfied)?;
                let domain = body.domain.ok_or(StatusWord::SecurityStatusNotSatisfied)?;
                let mut next = state.clone();
                next.card_date = Some(match state.card_date {
                    Some(d) if d > body.effective => d,
                    _ => body.effective,
                });
                if next.cache.len() >= CACHE_ENTRIES {
                    next.cache.remove(0);
                }
                next.cache.push(CachedReader {
                    fingerprint,
                    reader: auth::AuthorisedReader {
                        public_key: body.public_key,
                        grants: body.grants,
                        domain,
                    },
                    effective: body.effective,
                    expiry: body.expiry,
                });
                self.persistent.commit(next)?;
                Ok(Vec::new())
            }
        }
    }

    fn get_challenge(&mut self, header: Header, le: Option<usize>) -> Outcome {
        header.expect_p1p2((0, 0))?;
        if le != Some(CHALLENGE_LEN) {
            return Err(StatusWord::WrongLength);
        }
        let mut challenge = [0u8; CHALLENGE_LEN];
        self.rng.fill_bytes(&mut challenge);
        self.volatile.challenge = Some(challenge);
        Ok(challenge.to_vec())
    }

    fn external_authenticate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        // One attempt per challenge, whatever the outcome.
        let challenge = self.volatile.challenge.take();
        let result = self.try_external_authenticate(challenge, data);
        if result.is_err() {
            self.volatile.station = None;
            self.volatile.staging = None;
        }
        result
    }

    fn try_external_authenticate(
        &mut self,
        challenge: Option<[u8; CHALLENGE_LEN]>,
        data: &[u8],
    ) -> Outcome {
        let deny = StatusWord::SecurityStatusNotSatisfied;
        let challenge = challenge.ok_or(deny)?;
        let station = self.volatile.station.as_ref().ok_or(deny)?;
        if station.channel.is_some() {
            return Err(deny);
        }
        let auth = StationAuth::decode(data).map_err(|_| deny)?;
        let message = pers::station_auth_message(&challenge, &auth.ephemeral);
        crypto::verify(
            &station.certificate.body().public_key,
            &message,
            &auth.signature,
        )
        .map_err(|_| deny)?;
        let station_ephemeral: PublicKey =
            crypto::decode_point(&auth.ephemeral).map_err(|_| deny)?;
        let life_cycle = self.life_cycle().ok_or(StatusWord::Unknown)?;
        let card_key = match life_cycle {
            LifeCycle::Anchored => {
                // Key generation on the card: the private key never leaves it.
                let card_key = crypto::generate(&mut self.rng);
                let mut pseudonym_key = Zeroizing::new([0u8; 16]);
                self.rng.fill_bytes(pseudonym_key.as_mut_slice());
                self.volatile.staging = Some(Staging {
                    card_key: card_key.clone(),
                    pseudonym_key,
                    record: None,
                    attributes: Vec::new(),
                });
                card_key
            }
            _ => self
                .persistent
                .state()
                .and_then(|s| s.personalisation.as_ref())
                .map(|p| p.card_key.clone())
                .ok_or(deny)?,
        };
        let channel = SecureChannel::for_card(&card_key, &station_ephemeral, &challenge);
        if let Some(station) = self.volatile.station.as_mut() {
            station.channel = Some(channel);
        }
        Ok(pers::encode_card_key(&card_key.public_key()))
    }

    /// Decrypts a secured command; any failure ends the station session.
    fn open_secured(
        &mut self,
        header: Header,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StatusWord> {
        let channel = self
            .volatile
            .station
            .as_mut()
            .and_then(|s| s.channel.as_mut());
        let opened = match channel {
            Some(channel) => channel.open(header.to_bytes(), data).ok(),
            None => None,
        };
        match opened {
            Some(plaintext) => Ok(Zeroizing::new(plaintext)),
            None => {
                self.volatile.station = None;
                self.volatile.staging = None;
                Err(StatusWord::SecurityStatusNotSatisfied)
            }
        }
    }

    fn put_data(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        if self.volatile.staging.is_none() {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let plaintext = self.open_secured(header, data)?;
        let fields = tlv::read_all(&plaintext).map_err(|_| StatusWord::IncorrectData)?;
        let staging = self
            .volatile
            .staging
            .as_mut()
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        // Validate everything before staging anything: a bad command stages nothing.
        let mut record = None;
        let mut entries = Vec::new();
        for f in &fields {
            match f.tag {
                TAG_RECORD if record.is_none() && staging.record.is_none() => {
                    ResidentRecord::decode(f.raw).map_err(|_| StatusWord::IncorrectData)?;
                    record = Some(f.raw.to_vec());
                }
                TAG_ATTRIBUTE => {
                    let entry = AttributeEntry::decode_value(f.value)
                        .map_err(|_| StatusWord::IncorrectData)?;
                    let duplicate = staging
                        .attributes
                        .iter()
                        .chain(entries.iter())
                        .any(|e| e.id == entry.id);
                    if duplicate || entry.id.kind() != AttributeKind::Stored {
                        return Err(StatusWord::IncorrectData);
                    }
                    entries.push(entry);
                }
                _ => return Err(StatusWord::IncorrectData),
            }
        }
        if staging.attributes.len() + entries.len() > citycard_proto::record::MAX_ATTRIBUTES {
            return Err(StatusWord::NotEnoughMemory);
        }
        if record.is_some() {
            staging.record = record;
        }
        staging.attributes.extend(entries);
        Ok(Vec::new())
    }

    fn activate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        if self.volatile.staging.is_none() {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let plaintext = self.open_secured(header, data)?;
        if !plaintext.is_empty() {
            return Err(StatusWord::IncorrectData);
        }
        let station = self
            .volatile
            .station
            .as_ref()
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        let staging = self
            .volatile
            .staging
            .as_ref()
            .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
        let record_bytes = staging
            .record
            .as_ref()
            .ok_or(StatusWord::ConditionsNotSatisfied)?;
        let record = ResidentRecord::decode(record_bytes).map_err(|_| StatusWord::IncorrectData)?;
        let body = record.body();
        // The record must certify this card's key, come from the authenticated
        // station, be signed by it, and match the staged attributes exactly.
        let station_cert = &station.certificate;
        if body.card_key != staging.card_key.public_key()
            || body.station != station_cert.fingerprint()
            || !station_cert.is_valid_on(body.valid_from)
            || record.verify(&station_cert.body().public_key).is_err()
            || body.digests.len() != staging.attributes.len()
            || staging
                .attributes
                .iter()
                .any(|e| record.check_entry(e).is_err())
        {
            return Err(StatusWord::IncorrectData);
        }
        let mut attributes = staging.attributes.clone();
        attributes.sort_by_key(|e| e.id);
        let personalisation = Personalisation {
            card_key: staging.card_key.clone(),
            pseudonym_key: staging.pseudonym_key.clone(),
            record: record_bytes.clone(),
            attributes,
        };
        let mut next = self
            .persistent
            .state()
            .cloned()
            .ok_or(StatusWord::Unknown)?;
        next.personalisation = Some(personalisation);
        next.life_cycle = LifeCycle::Issued;
        self.persistent.commit(next)?;
        self.volatile.station = None;
        self.volatile.staging = None;
        Ok(Vec::new())
    }

    fn terminate(&mut self, header: Header, data: &[u8]) -> Outcome {
        header.expect_p1p2((0, 0))?;
        let plaintext = self.open_secured(header, data)?;
        if !plaintext.is_empty() {
            return Err(StatusWord::IncorrectData);
        }
        // Terminating wipes keys and personal data; only the state byte remains.
        let next = PersistentState {
            life_cycle: LifeCycle::Terminated,
            ..PersistentState::blank()
        };
        self.persistent.commit(next)?;
        self.volatile = Volatile {
            selected: true,
            ..Volatile::default()
        };
        Ok(Vec::new())
    }

    fn general_authenticate(&mut self, data: &[u8]) -> Outcome {
        let deny = StatusWord::SecurityStatusNotSatisfied;
        let state = self.persistent.state().ok_or(deny)?;
        let personalisation = state.personalisation.as_ref().ok_or(deny)?;
        if state.life_cycle != LifeCycle::Issued {
            return Err(deny);
        }
        let request = AuthRequest::decode(data).map_err(|_| deny)?;
        let cached = state
            .cache
            .iter()
            .find(|c| c.fingerprint == request.certificate)
            .ok_or(deny)?;
        if request.date < cached.effective || request.date > cached.expiry {
            return Err(deny);
        }
        if state.card_date.is_some_and(|today| request.date < today) {
            return Err(deny);
        }
        if !request.requested.is_subset_of(cached.reader.grants) {
            return Err(deny);
        }
        let card_key = match (&self.clone_key, self.faults.clone) {
            (Some(k), true) => k,
            _ => &personalisation.card_key,
        };
        let card = CardData {
            card_key,
            pseudonym_key: &personalisation.pseudonym_key,
            record: &personalisation.record,
            attributes: &personalisation.attributes,
        };
        Ok(auth::card_respond(
            data,
            &request,
            &cached.reader,
            &card,
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
