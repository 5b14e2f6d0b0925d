//! The PIV card application: a typed [`Instruction`] per command, the
//! admission checks, and one handler per command of SP 800-73-4 Part 2 §3.
//!
//! Structured like the reference card (`citycard_card::Applet`): the shared
//! dispatcher ([`citycard_proto::dispatch`], here with extended length) owns
//! command chaining, GET RESPONSE and response shaping, asks the card to
//! admit a header and to execute one whole command, so handlers see one
//! whole command and return one whole response. Every persistent change is
//! one atomic commit of the whole state ([`Persistent::commit`]); security
//! status lives in `Volatile` and is lost on reset.
//!
//! One file on purpose: the handlers share the card's private state and
//! admission checks, one handler per command, in the order of SP 800-73-4 Part
//! 2 §3.

use alloc::vec::Vec;
use citycard_card::storage::{Persistent, Storage};
use citycard_proto::dispatch::{Application, Dispatcher, Header, Limits, Outcome, Segment};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard, sw::StatusWord};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::consts::{alg, ins, key_ref, sw, tag, MAX_CHAINED_DATA, MAX_OBJECT_LEN};
use crate::consts::{MAX_RESPONSE_DATA, MAX_TOTAL_OBJECTS, PIV_AID, PIV_RID};
use crate::mgmt;
use crate::state::{ManagementKey, PivState, Summary};
use crate::tlv;

/// The card's instructions (SP 800-73-4 Part 2 §3 and the Yubico SET
/// MANAGEMENT KEY extension), parsed once from the INS byte. GET RESPONSE is
/// the dispatcher's and does not appear here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// SELECT (`A4`).
    Select,
    /// GET DATA (`CB`).
    GetData,
    /// PUT DATA (`DB`).
    PutData,
    /// VERIFY (`20`).
    Verify,
    /// CHANGE REFERENCE DATA (`24`).
    ChangeReferenceData,
    /// RESET RETRY COUNTER (`2C`).
    ResetRetryCounter,
    /// GENERAL AUTHENTICATE (`87`).
    GeneralAuthenticate,
    /// GENERATE ASYMMETRIC KEY PAIR (`47`).
    GenerateKeyPair,
    /// Yubico SET MANAGEMENT KEY (`FF`).
    SetManagementKey,
}

impl Instruction {
    /// The instruction an INS byte names; `None` for an unknown INS (`6D00`).
    pub const fn from_ins(ins_byte: u8) -> Option<Self> {
        Some(match ins_byte {
            ins::SELECT => Self::Select,
            ins::GET_DATA => Self::GetData,
            ins::PUT_DATA => Self::PutData,
            ins::VERIFY => Self::Verify,
            ins::CHANGE_REFERENCE_DATA => Self::ChangeReferenceData,
            ins::RESET_RETRY_COUNTER => Self::ResetRetryCounter,
            ins::GENERAL_AUTHENTICATE => Self::GeneralAuthenticate,
            ins::GENERATE_ASYMMETRIC_KEY_PAIR => Self::GenerateKeyPair,
            ins::YUBICO_SET_MANAGEMENT_KEY => Self::SetManagementKey,
            _ => return None,
        })
    }

    /// `true` for the instructions that take command chaining; chaining
    /// another one is `6884`.
    pub const fn chainable(self) -> bool {
        matches!(
            self,
            Self::PutData | Self::GeneralAuthenticate | Self::SetManagementKey
        )
    }
}

/// `true` for the asymmetric key references this card can hold a key in:
/// `9A`, `9C`, `9D`, `9E` and the retired key management keys `82`–`95`.
pub fn is_key_slot(slot: u8) -> bool {
    matches!(
        slot,
        key_ref::PIV_AUTHENTICATION
            | key_ref::DIGITAL_SIGNATURE
            | key_ref::KEY_MANAGEMENT
            | key_ref::CARD_AUTHENTICATION
            | key_ref::RETIRED_FIRST..=key_ref::RETIRED_LAST
    )
}

/// `true` for the data object tags this card stores (`5FC101`–`5FC123`).
pub fn is_container(object: u32) -> bool {
    (tag::FIRST_CONTAINER..=tag::LAST_CONTAINER).contains(&object)
}

/// `true` for the objects whose GET DATA needs the PIN (SP 800-73-4 Part 1,
/// Table 1: fingerprints, facial image, printed information, iris images).
pub fn is_pin_protected(object: u32) -> bool {
    matches!(
        object,
        tag::FINGERPRINTS | tag::FACIAL_IMAGE | tag::PRINTED_INFORMATION | tag::IRIS
    )
}

/// Test-bench faults the PIV card can simulate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Card Authentication (`9E`) answers with a different private key than
    /// the one generated (a cloned card: same data objects and certificate,
    /// wrong key). In memory only; storage is untouched.
    pub clone: bool,
}

/// A pending management-key exchange (SP 800-73-4 Part 2, Appendix A).
enum MgmtPending {
    /// The plaintext witness the host must send back decrypted (mutual authentication).
    Witness(Zeroizing<Vec<u8>>),
    /// The challenge the host must send back encrypted (challenge-response).
    Challenge(Zeroizing<Vec<u8>>),
}

/// Security status lost on reset (chaining and the pending response are
/// the dispatcher's).
#[derive(Default)]
struct Volatile {
    selected: bool,
    pin_verified: bool,
    /// One use of a "PIN always" key (`9C`) granted by the last successful VERIFY.
    pin_always: bool,
    mgmt_authenticated: bool,
    mgmt_pending: Option<MgmtPending>,
}

/// The emulated PIV card.
pub struct PivCard<S: Storage, R: CryptoRngCore> {
    persistent: Persistent<S, PivState>,
    rng: R,
    volatile: Volatile,
    dispatcher: Dispatcher,
    faults: Faults,
    clone_key: Option<SecretKey>,
}

impl<S: Storage, R: CryptoRngCore> PivCard<S, R> {
    /// A card over `storage` (a factory-fresh card if storage is empty),
    /// drawing randomness from `rng` (seed it for deterministic runs).
    pub fn new(storage: S, rng: R) -> Self {
        let mut card = Self {
            persistent: Persistent::new(storage),
            rng,
            volatile: Volatile::default(),
            dispatcher: Dispatcher::default(),
            faults: Faults::default(),
            clone_key: None,
        };
        card.power_up();
        card
    }

    /// Enables test-bench faults.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.clone_key = faults.clone.then(|| SecretKey::random(&mut self.rng));
    }

    /// The persistent state as loaded; `None` if storage is unreadable or
    /// corrupt (the card is then mute: every command answers `6F00`).
    pub fn state(&self) -> Option<&PivState> {
        self.persistent.state()
    }

    /// A read-only summary (key slots, object tags, retry counters).
    pub fn summary(&self) -> Option<Summary> {
        self.persistent.state().map(Summary::of)
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

    fn state_ref(&self) -> Result<&PivState, StatusWord> {
        self.persistent.state().ok_or(StatusWord::Unknown)
    }
}

impl<S: Storage, R: CryptoRngCore> Application for PivCard<S, R> {
    type Command = Instruction;

    const LIMITS: Limits = Limits {
        extended_length: true,
        max_chained_data: MAX_CHAINED_DATA,
        max_response_data: MAX_RESPONSE_DATA,
    };

    fn ready(&self) -> Result<(), StatusWord> {
        self.state_ref().map(|_| ())
    }

    /// Class (`6E00`) first. The first segment of a chain: chaining allowed
    /// (`6884`), application selected (`6985`), and, for every chainable
    /// command but GENERAL AUTHENTICATE, management-key authentication
    /// (`6982`). A whole command: SELECT, else a known instruction (`6D00`)
    /// of a selected application (`6985`); each handler checks its own
    /// security conditions.
    fn admit(&self, header: Header, segment: Segment) -> Result<Instruction, StatusWord> {
        if header.cla != 0x00 {
            return Err(StatusWord::ClassNotSupported);
        }
        let instruction = Instruction::from_ins(header.ins);
        if segment == Segment::FirstOfChain {
            let instruction = instruction
                .filter(|i| i.chainable())
                .ok_or(StatusWord::ChainingNotSupported)?;
            if !self.volatile.selected {
                return Err(StatusWord::ConditionsNotSatisfied);
            }
            if instruction != Instruction::GeneralAuthenticate && !self.volatile.mgmt_authenticated
            {
                return Err(StatusWord::SecurityStatusNotSatisfied);
            }
            return Ok(instruction);
        }
        let instruction = instruction.ok_or(StatusWord::InstructionNotSupported)?;
        if instruction != Instruction::Select && !self.volatile.selected {
            return Err(StatusWord::ConditionsNotSatisfied);
        }
        Ok(instruction)
    }

    fn execute(
        &mut self,
        instruction: Instruction,
        header: Header,
        data: &[u8],
        _le: Option<usize>,
    ) -> Outcome {
        let (p1, p2) = (header.p1, header.p2);
        match instruction {
            Instruction::Select => self.select(p1, p2, data),
            Instruction::GetData => self.get_data(p1, p2, data),
            Instruction::PutData => self.put_data(p1, p2, data),
            Instruction::Verify => self.verify(p1, p2, data),
            Instruction::ChangeReferenceData => self.change_reference_data(p1, p2, data),
            Instruction::ResetRetryCounter => self.reset_retry_counter(p1, p2, data),
            Instruction::GeneralAuthenticate => self.general_authenticate(p1, p2, data),
            Instruction::GenerateKeyPair => self.generate(p1, p2, data),
            Instruction::SetManagementKey => self.set_management_key(p1, p2, data),
        }
    }

    fn dispatcher(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    fn powered(&self) -> bool {
        self.persistent.powered()
    }
}

impl<S: Storage, R: CryptoRngCore> PivCard<S, R> {
    /// SELECT (SP 800-73-4 Part 2, §3.1.1): by the PIV AID or any
    /// right-truncation of it down to the NIST RID. Answers the Application
    /// Property Template. Re-selecting keeps the security status; a failed
    /// SELECT keeps the current selection.
    fn select(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if p1 != 0x04 {
            return Err(StatusWord::FileNotFound);
        }
        if !matches!(p2, 0x00 | 0x0C) {
            return Err(StatusWord::IncorrectP1P2);
        }
        if data.len() < PIV_RID.len() || !PIV_AID.starts_with(data) {
            return Err(StatusWord::FileNotFound);
        }
        self.volatile.selected = true;
        if p2 == 0x0C {
            return Ok(Vec::new());
        }
        Ok(application_property_template())
    }

    /// GET DATA (§3.1.2): `5C` with one object tag → `53 L content`, or the
    /// built-in Discovery Object `7E`.
    fn get_data(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if (p1, p2) != (0x3F, 0xFF) {
            return Err(StatusWord::IncorrectP1P2);
        }
        let object =
            object_tag(tlv::read_only(data, tag::TAG_LIST).ok_or(StatusWord::IncorrectData)?)?;
        if object == tag::DISCOVERY {
            return Ok(discovery_object());
        }
        if !is_container(object) {
            return Err(StatusWord::FileNotFound);
        }
        if is_pin_protected(object) && !self.volatile.pin_verified {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let content = self
            .state_ref()?
            .objects
            .get(&object)
            .ok_or(StatusWord::FileNotFound)?;
        Ok(tlv::encode(tag::DATA, content))
    }

    /// PUT DATA (§3.3.1): `5C tag 53 content`; needs management-key
    /// authentication. Empty content deletes the object.
    fn put_data(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if (p1, p2) != (0x3F, 0xFF) {
            return Err(StatusWord::IncorrectP1P2);
        }
        if !self.volatile.mgmt_authenticated {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let (list, rest) = tlv::read(data).ok_or(StatusWord::IncorrectData)?;
        if list.tag != tag::TAG_LIST {
            // Discovery Object and BIT group template writes (`7E`, `7F61`).
            return Err(sw::FUNCTION_NOT_SUPPORTED);
        }
        let object = object_tag(list.value)?;
        if !is_container(object) {
            return Err(sw::FUNCTION_NOT_SUPPORTED);
        }
        let content = tlv::read_only(rest, tag::DATA).ok_or(StatusWord::IncorrectData)?;
        if content.len() > MAX_OBJECT_LEN {
            return Err(StatusWord::NotEnoughMemory);
        }
        let mut next = self.state_ref()?.clone();
        if content.is_empty() {
            next.objects.remove(&object);
        } else {
            next.objects.insert(object, content.to_vec());
        }
        if next.objects.values().map(Vec::len).sum::<usize>() > MAX_TOTAL_OBJECTS {
            return Err(StatusWord::NotEnoughMemory);
        }
        self.persistent.commit(next)?;
        Ok(Vec::new())
    }

    /// VERIFY (§3.2.1) of the PIN (`80`). Empty data: the verification
    /// status. `P1 = FF`: reset the verification status. Tear-safe: the retry
    /// counter is decremented and committed before the comparison.
    fn verify(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if p2 != key_ref::PIN {
            return Err(StatusWord::ReferencedDataNotFound);
        }
        match (p1, data.is_empty()) {
            (0xFF, true) => {
                self.volatile.pin_verified = false;
                self.volatile.pin_always = false;
                return Ok(Vec::new());
            }
            (0x00, true) => {
                let tries = self.state_ref()?.pin_tries;
                return if self.volatile.pin_verified {
                    Ok(Vec::new())
                } else if tries == 0 {
                    Err(sw::AUTH_BLOCKED)
                } else {
                    Err(sw::tries_left(tries))
                };
            }
            (0x00, false) => {}
            _ => return Err(StatusWord::IncorrectP1P2),
        }
        let candidate: [u8; 8] = data.try_into().map_err(|_| StatusWord::IncorrectData)?;
        self.volatile.pin_verified = false;
        self.volatile.pin_always = false;
        self.check_reference(key_ref::PIN, &candidate)?;
        self.volatile.pin_verified = true;
        self.volatile.pin_always = true;
        Ok(Vec::new())
    }

    /// Checks `candidate` against the PIN or PUK with its retry counter:
    /// decrement and commit, compare, and on a match restore and commit.
    fn check_reference(&mut self, reference: u8, candidate: &[u8; 8]) -> Result<(), StatusWord> {
        let state = self.state_ref()?;
        let (stored, tries) = match reference {
            key_ref::PIN => (&state.pin, state.pin_tries),
            _ => (&state.puk, state.puk_tries),
        };
        if tries == 0 {
            return Err(sw::AUTH_BLOCKED);
        }
        let matches = mgmt::ct_eq(stored.as_slice(), candidate);
        let mut next = state.clone();
        set_tries(&mut next, reference, tries - 1);
        self.persistent.commit(next)?;
        if !matches {
            return Err(sw::tries_left(tries - 1));
        }
        let mut next = self.state_ref()?.clone();
        set_tries(&mut next, reference, crate::consts::DEFAULT_TRIES);
        self.persistent.commit(next)
    }

    /// CHANGE REFERENCE DATA (§3.2.2) of the PIN (`80`) or PUK (`81`):
    /// old value ‖ new value, 8 bytes each.
    fn change_reference_data(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if p1 != 0x00 || !matches!(p2, key_ref::PIN | key_ref::PUK) {
            return Err(StatusWord::IncorrectP1P2);
        }
        let (old, new) = split_pair(data)?;
        self.check_reference(p2, &old)?;
        let mut next = self.state_ref()?.clone();
        match p2 {
            key_ref::PIN => next.pin = Zeroizing::new(new),
            _ => next.puk = Zeroizing::new(new),
        }
        self.persistent.commit(next)?;
        Ok(Vec::new())
    }

    /// RESET RETRY COUNTER (§3.2.3): PUK ‖ new PIN; unblocks the PIN.
    fn reset_retry_counter(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if (p1, p2) != (0x00, key_ref::PIN) {
            return Err(StatusWord::IncorrectP1P2);
        }
        let (puk, pin) = split_pair(data)?;
        self.check_reference(key_ref::PUK, &puk)?;
        let mut next = self.state_ref()?.clone();
        next.pin = Zeroizing::new(pin);
        next.pin_tries = crate::consts::DEFAULT_TRIES;
        self.persistent.commit(next)?;
        Ok(Vec::new())
    }

    /// GENERAL AUTHENTICATE (§3.2.4): management-key authentication (`9B`)
    /// or a private-key operation in a key slot.
    fn general_authenticate(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        let template = tlv::read_only(data, tag::DYNAMIC_AUTH).ok_or(StatusWord::IncorrectData)?;
        let items = tlv::read_all(template).ok_or(StatusWord::IncorrectData)?;
        let mut fields: [Option<&[u8]>; 6] = [None; 6];
        for item in &items {
            // 80 witness, 81 challenge, 82 response, 85 exponentiation (ECDH).
            let index = match item.tag {
                0x80..=0x85 => (item.tag - 0x80) as usize,
                _ => return Err(StatusWord::IncorrectData),
            };
            match fields.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.value),
                _ => return Err(StatusWord::IncorrectData),
            }
        }
        let [witness, challenge, response, _, _, exponentiation] = fields;
        if p2 == key_ref::MANAGEMENT {
            return self.management_authenticate(p1, witness, challenge, response, exponentiation);
        }
        if !is_key_slot(p2) {
            return Err(StatusWord::IncorrectP1P2);
        }
        let state = self.state_ref()?;
        let key = state
            .keys
            .get(&p2)
            .ok_or(StatusWord::ReferencedDataNotFound)?;
        if p1 != alg::ECC_P256 {
            return Err(StatusWord::IncorrectP1P2);
        }
        // Validate the request before the access check, so that a malformed
        // request does not consume a `9C` authorisation.
        let operation = match (witness, challenge, response, exponentiation) {
            (None, Some(c), Some([]), None) if c.len() == 32 => Operation::Sign(c),
            (None, None, Some([]), Some(p)) => Operation::Agree(
                PublicKey::from_sec1_bytes(p).map_err(|_| StatusWord::IncorrectData)?,
            ),
            _ => return Err(StatusWord::IncorrectData),
        };
        let key = match (&self.clone_key, p2) {
            (Some(clone), key_ref::CARD_AUTHENTICATION) if self.faults.clone => clone,
            _ => key,
        }
        .clone();
        // Access rules: 9E needs nothing, 9C needs a VERIFY right before each
        // use, every other slot needs the PIN verified in this session.
        match p2 {
            key_ref::CARD_AUTHENTICATION => {}
            key_ref::DIGITAL_SIGNATURE => {
                if !core::mem::take(&mut self.volatile.pin_always) {
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
            }
            _ => {
                if !self.volatile.pin_verified {
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
            }
        }
        let value = match operation {
            Operation::Sign(prehash) => {
                let signature: Signature = SigningKey::from(&key)
                    .sign_prehash(prehash)
                    .map_err(|_| StatusWord::IncorrectData)?;
                signature.to_der().as_bytes().to_vec()
            }
            Operation::Agree(peer) => {
                let shared = p256::ecdh::diffie_hellman(key.to_nonzero_scalar(), peer.as_affine());
                shared.raw_secret_bytes().to_vec()
            }
        };
        Ok(tlv::encode(tag::DYNAMIC_AUTH, &tlv::encode(0x82, &value)))
    }

    /// Management-key authentication (SP 800-73-4 Part 2, Appendix A):
    /// mutual authentication (`80 00` → encrypted witness; `80 witness 81
    /// challenge` → `82` encrypted challenge) or the card authenticating the
    /// host (`81 00` → challenge; `82` encrypted challenge → `9000`).
    fn management_authenticate(
        &mut self,
        p1: u8,
        witness: Option<&[u8]>,
        challenge: Option<&[u8]>,
        response: Option<&[u8]>,
        exponentiation: Option<&[u8]>,
    ) -> Outcome {
        let key = self.state_ref()?.management.clone();
        if p1 != key.algorithm {
            return Err(StatusWord::IncorrectP1P2);
        }
        let block = mgmt::block_len(key.algorithm).ok_or(StatusWord::Unknown)?;
        // Any new attempt replaces the previous status and exchange.
        self.volatile.mgmt_authenticated = false;
        let pending = self.volatile.mgmt_pending.take();
        match (witness, challenge, response, exponentiation) {
            (Some([]), None, None, None) => {
                let plain = self.random_block(block);
                let encrypted = mgmt::encrypt_block(key.algorithm, &key.key, &plain)
                    .ok_or(StatusWord::Unknown)?;
                self.volatile.mgmt_pending = Some(MgmtPending::Witness(plain));
                Ok(tlv::encode(
                    tag::DYNAMIC_AUTH,
                    &tlv::encode(0x80, &encrypted),
                ))
            }
            (Some(w), Some(c), None | Some([]), None) if !w.is_empty() => {
                let Some(MgmtPending::Witness(expected)) = pending else {
                    return Err(StatusWord::ConditionsNotSatisfied);
                };
                if !mgmt::ct_eq(&expected, w) {
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
                if c.len() != block {
                    return Err(StatusWord::IncorrectData);
                }
                let encrypted =
                    mgmt::encrypt_block(key.algorithm, &key.key, c).ok_or(StatusWord::Unknown)?;
                self.volatile.mgmt_authenticated = true;
                Ok(tlv::encode(
                    tag::DYNAMIC_AUTH,
                    &tlv::encode(0x82, &encrypted),
                ))
            }
            (None, Some([]), None, None) => {
                let plain = self.random_block(block);
                let out = tlv::encode(tag::DYNAMIC_AUTH, &tlv::encode(0x81, &plain));
                self.volatile.mgmt_pending = Some(MgmtPending::Challenge(plain));
                Ok(out)
            }
            (None, None, Some(r), None) if !r.is_empty() => {
                let Some(MgmtPending::Challenge(plain)) = pending else {
                    return Err(StatusWord::ConditionsNotSatisfied);
                };
                let expected = Zeroizing::new(
                    mgmt::encrypt_block(key.algorithm, &key.key, &plain)
                        .ok_or(StatusWord::Unknown)?,
                );
                if !mgmt::ct_eq(&expected, r) {
                    return Err(StatusWord::SecurityStatusNotSatisfied);
                }
                self.volatile.mgmt_authenticated = true;
                Ok(Vec::new())
            }
            // Encrypting a host-chosen challenge without a verified witness
            // would be an encryption oracle for the management key.
            _ => Err(StatusWord::IncorrectData),
        }
    }

    fn random_block(&mut self, len: usize) -> Zeroizing<Vec<u8>> {
        let mut block = Zeroizing::new(alloc::vec![0u8; len]);
        self.rng.fill_bytes(&mut block);
        block
    }

    /// GENERATE ASYMMETRIC KEY PAIR (§3.3.2): `AC {80 11}` → `7F49 {86 04‖X‖Y}`.
    /// P-256 only; needs management-key authentication. The private key
    /// never leaves the card.
    fn generate(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if p1 != 0x00 || !is_key_slot(p2) {
            return Err(StatusWord::IncorrectP1P2);
        }
        if !self.volatile.mgmt_authenticated {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let template = tlv::read_only(data, tag::KEY_TEMPLATE).ok_or(StatusWord::IncorrectData)?;
        // Only `80 alg`; Yubico's PIN and touch policies (AA, AB) are not supported.
        match tlv::read_only(template, 0x80) {
            Some([alg::ECC_P256]) => {}
            _ => return Err(StatusWord::IncorrectData),
        }
        let key = SecretKey::random(&mut self.rng);
        let point = key.public_key().to_encoded_point(false);
        let mut next = self.state_ref()?.clone();
        next.keys.insert(p2, key);
        self.persistent.commit(next)?;
        Ok(tlv::encode(
            tag::PUBLIC_KEY,
            &tlv::encode(0x86, point.as_bytes()),
        ))
    }

    /// Yubico extension SET MANAGEMENT KEY (`00 FF FF FF`, data `alg 9B len
    /// key`): replaces the management key; needs management-key
    /// authentication. `P2 = FE` (touch required) is refused: this card has no
    /// touch sensor.
    fn set_management_key(&mut self, p1: u8, p2: u8, data: &[u8]) -> Outcome {
        if (p1, p2) != (0xFF, 0xFF) {
            return Err(StatusWord::IncorrectP1P2);
        }
        if !self.volatile.mgmt_authenticated {
            return Err(StatusWord::SecurityStatusNotSatisfied);
        }
        let [algorithm, reference, len, key @ ..] = data else {
            return Err(StatusWord::IncorrectData);
        };
        if *reference != key_ref::MANAGEMENT
            || mgmt::key_len(*algorithm) != Some(key.len())
            || usize::from(*len) != key.len()
        {
            return Err(StatusWord::IncorrectData);
        }
        let mut next = self.state_ref()?.clone();
        next.management = ManagementKey {
            algorithm: *algorithm,
            key: Zeroizing::new(key.to_vec()),
        };
        self.persistent.commit(next)?;
        Ok(Vec::new())
    }
}

/// A validated private-key operation: ECDSA over a 32-byte prehash, or ECDH.
enum Operation<'a> {
    Sign(&'a [u8]),
    Agree(PublicKey),
}

fn set_tries(state: &mut PivState, reference: u8, tries: u8) {
    match reference {
        key_ref::PIN => state.pin_tries = tries,
        _ => state.puk_tries = tries,
    }
}

/// Splits `old ‖ new` (8 bytes each) and checks the new value's format: 6 to
/// 8 bytes padded with `FF`.
fn split_pair(data: &[u8]) -> Result<([u8; 8], [u8; 8]), StatusWord> {
    let (old, new) = data
        .split_first_chunk::<8>()
        .ok_or(StatusWord::IncorrectData)?;
    let new: [u8; 8] = new.try_into().map_err(|_| StatusWord::IncorrectData)?;
    let used = new.iter().take_while(|b| **b != 0xFF).count();
    if used < 6 || new.iter().skip(used).any(|b| *b != 0xFF) {
        return Err(StatusWord::IncorrectData);
    }
    Ok((*old, new))
}

/// The object tag named by a `5C` value (1 to 3 bytes).
fn object_tag(bytes: &[u8]) -> Result<u32, StatusWord> {
    if bytes.is_empty() || bytes.len() > 3 {
        return Err(StatusWord::IncorrectData);
    }
    Ok(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// The Application Property Template answered by SELECT (SP 800-73-4 Part 2,
/// Table 3): PIX, coexistent tag allocation authority, label, algorithms.
pub fn application_property_template() -> Vec<u8> {
    let mut body = Vec::new();
    tlv::push(&mut body, 0x4F, PIV_AID.get(5..).unwrap_or_default());
    tlv::push(&mut body, 0x79, &tlv::encode(0x4F, &PIV_RID));
    tlv::push(&mut body, 0x50, b"citycard PIV");
    let mut algorithms = Vec::new();
    for a in [
        alg::TDES,
        alg::AES128,
        alg::AES192,
        alg::AES256,
        alg::ECC_P256,
    ] {
        tlv::push(&mut algorithms, 0x80, &[a]);
    }
    tlv::push(&mut algorithms, 0x06, &[0x00]);
    tlv::push(&mut body, 0xAC, &algorithms);
    tlv::encode(0x61, &body)
}

/// The Discovery Object (SP 800-73-4 Part 1, §3.3.2): the PIV AID and the PIN
/// usage policy `40 00` (PIV Card Application PIN only, no global PIN, no OCC).
pub fn discovery_object() -> Vec<u8> {
    let mut body = Vec::new();
    tlv::push(&mut body, 0x4F, &PIV_AID);
    tlv::push(&mut body, 0x5F2F, &[0x40, 0x00]);
    tlv::encode(tag::DISCOVERY, &body)
}

impl<S: Storage, R: CryptoRngCore> ContactlessCard for PivCard<S, R> {
    fn atr(&self) -> Vec<u8> {
        crate::consts::ATR.to_vec()
    }

    fn reset(&mut self) {
        self.power_up();
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        self.transmit_apdu(command)
    }
}
