//! The applet: dispatch (chaining, GET RESPONSE), life-cycle guard, commands.
//!
//! Structured as parse → guard → execute, in the spirit of trussed's
//! apdu-dispatch: the dispatcher owns chaining and response buffering, so
//! command handlers see one whole command and return one whole response.

use alloc::vec::Vec;
use citycard_proto::apdu::CommandView;
use citycard_proto::attr::AttributeKind;
use citycard_proto::auth::{self, AuthRequest, CardData};
use citycard_proto::cert::{Certificate, Role};
use citycard_proto::consts::{atr, cla, ins, AID};
use citycard_proto::crypto;
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
use crate::storage::{Storage, StorageError};

/// Largest command data a chain may accumulate.
pub const MAX_CHAINED_DATA: usize = 1024;

type Outcome = Result<Vec<u8>, StatusWord>;

/// `6A86` unless the command's P1-P2 are exactly `p1p2`.
fn expect_p1p2(command: &CommandView<'_>, p1p2: (u8, u8)) -> Result<(), StatusWord> {
    if (command.p1, command.p2) == p1p2 {
        Ok(())
    } else {
        Err(StatusWord::IncorrectP1P2)
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

/// State lost on reset, deselect or power loss.
#[derive(Default)]
struct Volatile {
    selected: bool,
    chain: Option<([u8; 4], Vec<u8>)>,
    pending: Vec<u8>,
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
    storage: S,
    rng: R,
    state: Option<PersistentState>,
    volatile: Volatile,
    powered: bool,
    faults: Faults,
    clone_key: Option<SecretKey>,
}

impl<S: Storage, R: CryptoRngCore> Applet<S, R> {
    /// A card over `storage` (a blank card if storage is empty), drawing
    /// randomness from `rng` (seed it for deterministic test vectors).
    pub fn new(storage: S, rng: R) -> Self {
        let mut applet = Self {
            storage,
            rng,
            state: None,
            volatile: Volatile::default(),
            powered: true,
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
        self.state.as_ref().map(|s| s.life_cycle)
    }

    /// The persistent state as loaded (for tests and tools).
    pub fn state(&self) -> Option<&PersistentState> {
        self.state.as_ref()
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Gives the storage back.
    pub fn into_storage(self) -> S {
        self.storage
    }

    fn power_up(&mut self) {
        self.volatile = Volatile::default();
        self.powered = true;
        self.state = match self.storage.load() {
            Ok(None) => Some(PersistentState::blank()),
            Ok(Some(bytes)) => PersistentState::decode(&bytes).ok(),
            Err(_) => None,
        };
    }

    /// Commits `next` as the new persistent state. On success the in-memory
    /// state becomes `next`.
    fn commit(&mut self, next: PersistentState) -> Result<(), StatusWord> {
        match self.storage.commit(&next.encode()) {
            Ok(()) => {
                self.state = Some(next);
                Ok(())
            }
            Err(StorageError::PowerLost) => {
                self.powered = false;
                Err(StatusWord::MemoryFailure)
            }
            Err(_) => Err(StatusWord::MemoryFailure),
        }
    }

    /// Processes one raw command APDU; the whole response (data + SW).
    fn process(&mut self, raw: &[u8]) -> Vec<u8> {
        let (data, sw) = match self.dispatch(raw) {
            Ok(data) => self.shape_response(data, raw),
            Err(sw) => (Vec::new(), sw),
        };
        let mut out = data;
        out.extend_from_slice(&sw.to_bytes());
        out
    }

    /// Splits long responses for GET RESPONSE.
    fn shape_response(&mut self, data: Vec<u8>, raw: &[u8]) -> (Vec<u8>, StatusWord) {
        let le = CommandView::parse(raw)
            .ok()
            .and_then(|c| c.le)
            .unwrap_or(256)
            .min(256);
        if data.len() <= le {
            let sw = match self.volatile.pending.len() {
                0 => StatusWord::Success,
                n if n > 255 => StatusWord::BytesRemaining(0),
                n => StatusWord::BytesRemaining(n as u8),
            };
            return (data, sw);
        }
        let mut data = data;
        let rest = data.split_off(le);
        let remaining = rest.len();
        self.volatile.pending = rest;
        (
            data,
            StatusWord::BytesRemaining(if remaining > 255 { 0 } else { remaining as u8 }),
        )
    }

    fn dispatch(&mut self, raw: &[u8]) -> Outcome {
        let state = match &self.state {
            Some(s) => s,
            None => return Err(StatusWord::Unknown),
        };
        let command = CommandView::parse(raw).map_err(|e| e.status())?;

        // GET RESPONSE continues a pending response; anything else drops it.
        if command.ins == ins::GET_RESPONSE && command.cla == cla::ISO {
            expect_p1p2(&command, (0, 0))?;
            if self.volatile.pending.is_empty() {
                return Err(StatusWord::ConditionsNotSatisfied);
            }
            let take = command.le.unwrap_or(256).min(self.volatile.pending.len());
            let rest = self.volatile.pending.split_off(take);
            let chunk = core::mem::replace(&mut self.volatile.pending, rest);
            return Ok(chunk);
        }
        self.volatile.pending.clear();

        // Command chaining (ISO 7816-4 5.3.3).
        let header = [
            command.cla & !cla::CHAIN,
            command.ins,
            command.p1,
            command.p2,
        ];
        let mut assembled: Option<Vec<u8>> = None;
        if let Some((chain_header, buffer)) = self.volatile.chain.take() {
            if chain_header != header {
                return Err(StatusWord::LastCommandExpected);
            }
            let mut buffer = buffer;
            if buffer.len() + command.data.len() > MAX_CHAINED_DATA {
                return Err(StatusWord::WrongLength);
            }
            buffer.extend_from_slice(command.data);
            if command.is_chained() {
                self.volatile.chain = Some((header, buffer));
                return Ok(Vec::new());
            }
            assembled = Some(buffer);
        } else if command.is_chained() {
            if !matches!(command.ins, ins::PSO | ins::PUT_DATA) {
                return Err(StatusWord::ChainingNotSupported);
            }
            // A chain is refused at its first segment exactly as the whole
            // command would be (selection, class, life cycle: SPEC §3.2, §4).
            self.guard(header[0], command.ins)?;
            self.volatile.chain = Some((header, command.data.to_vec()));
            return Ok(Vec::new());
        }
        let data_owned;
        let data: &[u8] = match &assembled {
            Some(buffer) => {
                data_owned = buffer.clone();
                &data_owned
            }
            None => command.data,
        };

        if command.ins == ins::SELECT {
            return self.select(command, data);
        }
        self.guard(header[0], command.ins)?;
        let life_cycle = state.life_cycle;
        match (command.ins, life_cycle) {
            (_, LifeCycle::Terminated) => Err(StatusWord::ConditionsNotSatisfied),
            (ins::SET_ANCHOR, LifeCycle::Blank) => self.set_anchor(command, data),
            (ins::PSO, LifeCycle::Anchored | LifeCycle::Issued) => {
                expect_p1p2(&command, (0x00, 0xBE))?;
                // Uniform failure: every reason is 6982.
                self.verify_certificate(data)
                    .map_err(|_| StatusWord::SecurityStatusNotSatisfied)
            }
            (ins::GET_CHALLENGE, LifeCycle::Anchored | LifeCycle::Issued) => {
                self.get_challenge(command)
            }
            (ins::EXTERNAL_AUTHENTICATE, LifeCycle::Anchored | LifeCycle::Issued) => {
                self.external_authenticate(command, data)
            }
            (ins::PUT_DATA, LifeCycle::Anchored) => self.put_data(header, command, data),
            (ins::ACTIVATE, LifeCycle::Anchored) => self.activate(header, command, data),
            (ins::TERMINATE, LifeCycle::Issued) => self.terminate(header, command, data),
            (ins::GENERAL_AUTHENTICATE, _) => {
                expect_p1p2(&command, (0, 0))?;
                // Uniform failure: every reason, including a card that is not issued, is 6982.
                self.general_authenticate(data)
                    .map_err(|_| StatusWord::SecurityStatusNotSatisfied)
            }
            (
                ins::SET_ANCHOR
                | ins::PSO
                | ins::GET_CHALLENGE
                | ins::EXTERNAL_AUTHENTICATE
                | ins::PUT_DATA
                | ins::ACTIVATE
                | ins::TERMINATE,
                _,
            ) => Err(StatusWord::ConditionsNotSatisfied),
            _ => Err(StatusWord::InstructionNotSupported),
        }
    }

    /// The checks every command but SELECT and GET RESPONSE passes before it
    /// runs (or before the first segment of its chain is accepted): the
    /// application is selected, the class fits the instruction, and the life
    /// cycle accepts it (SPEC §3.2). Session conditions are checked by each command.
    fn guard(&self, cla_byte: u8, ins_byte: u8) -> Result<(), StatusWord> {
        let life_cycle = self
            .state
            .as_ref()
            .map(|s| s.life_cycle)
            .ok_or(StatusWord::Unknown)?;
        if !self.volatile.selected {
            return Err(StatusWord::ConditionsNotSatisfied);
        }
        let expected_cla = match ins_byte {
            ins::SET_ANCHOR | ins::PUT_DATA | ins::ACTIVATE | ins::TERMINATE => cla::PROPRIETARY,
            _ => cla::ISO,
        };
        let known = matches!(
            ins_byte,
            ins::SET_ANCHOR
                | ins::PSO
                | ins::GET_CHALLENGE
                | ins::EXTERNAL_AUTHENTICATE
                | ins::PUT_DATA
                | ins::ACTIVATE
                | ins::TERMINATE
                | ins::GENERAL_AUTHENTICATE
        );
        if cla_byte != expected_cla {
            return Err(StatusWord::ClassNotSupported);
        }
        if !known {
            return Err(StatusWord::InstructionNotSupported);
        }
        let allowed = match (ins_byte, life_cycle) {
            (_, LifeCycle::Terminated) => false,
            (ins::SET_ANCHOR, LifeCycle::Blank) => true,
            (
                ins::PSO | ins::GET_CHALLENGE | ins::EXTERNAL_AUTHENTICATE,
                LifeCycle::Anchored | LifeCycle::Issued,
            ) => true,
            (ins::PUT_DATA | ins::ACTIVATE, LifeCycle::Anchored) => true,
            (ins::TERMINATE, LifeCycle::Issued) => true,
            (ins::GENERAL_AUTHENTICATE, _) => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(StatusWord::ConditionsNotSatisfied)
        }
    }

    fn select(&mut self, command: CommandView<'_>, data: &[u8]) -> Outcome {
        if command.cla & !cla::CHAIN != cla::ISO {
            return Err(StatusWord::ClassNotSupported);
        }
        if command.p1 != 0x04 || !matches!(command.p2, 0x00 | 0x0C) {
            return Err(StatusWord::IncorrectP1P2);
        }
        // Selecting anything clears every session, as a deselect would.
        self.volatile = Volatile::default();
        if data != AID {
            return Err(StatusWord::FileNotFound);
        }
        let life_cycle = self
            .state
            .as_ref()
            .map(|s| s.life_cycle)
            .ok_or(StatusWord::Unknown)?;
        self.volatile.selected = true;
        if life_cycle == LifeCycle::Terminated {
            return Err(StatusWord::SelectedFileDeactivated);
        }
        if command.p2 == 0x0C {
            return Ok(Vec::new());
        }
        Ok(citycard_proto::fci::encode(life_cycle))
    }

    fn set_anchor(&mut self, command: CommandView<'_>, data: &[u8]) -> Outcome {
        expect_p1p2(&command, (0, 0))?;
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
        let mut next = self.state.clone().ok_or(StatusWord::Unknown)?;
        next.anchor = Some(Anchor {
            issuer: issuer.into(),
            root,
        });
        next.life_cycle = LifeCycle::Anchored;
        self.commit(next)?;
        Ok(Vec::new())
    }

    fn verify_certificate(&mut self, data: &[u8]) -> Outcome {
        let state = self.state.as_ref().ok_or(StatusWord::Unknown)?;
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
                self.commit(next)?;
                Ok(Vec::new())
            }
        }
    }

    fn get_challenge(&mut self, command: CommandView<'_>) -> Outcome {
        expect_p1p2(&command, (0, 0))?;
        if command.le != Some(CHALLENGE_LEN) {
            return Err(StatusWord::WrongLength);
        }
        let mut challenge = [0u8; CHALLENGE_LEN];
        self.rng.fill_bytes(&mut challenge);
        self.volatile.challenge = Some(challenge);
        Ok(challenge.to_vec())
    }

    fn external_authenticate(&mut self, command: CommandView<'_>, data: &[u8]) -> Outcome {
        expect_p1p2(&command, (0, 0))?;
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
                .state
                .as_ref()
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
        header: [u8; 4],
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StatusWord> {
        let channel = self
            .volatile
            .station
            .as_mut()
            .and_then(|s| s.channel.as_mut());
        let opened = match channel {
            Some(channel) => channel.open(header, data).ok(),
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

    fn put_data(&mut self, header: [u8; 4], command: CommandView<'_>, data: &[u8]) -> Outcome {
        expect_p1p2(&command, (0, 0))?;
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

    fn activate(&mut self, header: [u8; 4], command: CommandView<'_>, data: &[u8]) -> Outcome {
        expect_p1p2(&command, (0, 0))?;
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
        let mut next = self.state.clone().ok_or(StatusWord::Unknown)?;
        next.personalisation = Some(personalisation);
        next.life_cycle = LifeCycle::Issued;
        self.commit(next)?;
        self.volatile.station = None;
        self.volatile.staging = None;
        Ok(Vec::new())
    }

    fn terminate(&mut self, header: [u8; 4], command: CommandView<'_>, data: &[u8]) -> Outcome {
        expect_p1p2(&command, (0, 0))?;
        let plaintext = self.open_secured(header, data)?;
        if !plaintext.is_empty() {
            return Err(StatusWord::IncorrectData);
        }
        // Terminating wipes keys and personal data; only the state byte remains.
        let next = PersistentState {
            life_cycle: LifeCycle::Terminated,
            ..PersistentState::blank()
        };
        self.commit(next)?;
        self.volatile = Volatile {
            selected: true,
            ..Volatile::default()
        };
        Ok(Vec::new())
    }

    fn general_authenticate(&mut self, data: &[u8]) -> Outcome {
        let deny = StatusWord::SecurityStatusNotSatisfied;
        let state = self.state.as_ref().ok_or(deny)?;
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
        if !self.powered {
            return Err(CardLost);
        }
        let response = self.process(command);
        if !self.powered {
            return Err(CardLost);
        }
        Ok(response)
    }
}
