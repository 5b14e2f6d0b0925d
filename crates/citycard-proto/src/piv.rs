//! The PIV profile (`applet-spec/piv-profile.md`): the commands a host sends
//! to an off-the-shelf PIV card (NIST SP 800-73-4), the answers it parses,
//! and the citycard Card Authentication certificate.
//!
//! This module is host-side vocabulary only: the emulated PIV card
//! (`citycard-piv-card`) is a separate reading of SP 800-73-4, and both are
//! checked against yubico-piv-tool and OpenSC.
//!
//! The card holds:
//!
//! | where | what |
//! |---|---|
//! | key slot `9E` | the Card Authentication Key, P-256, generated on the card, usable without PIN |
//! | data object `5FC101` | the citycard Card Authentication certificate: X.509, signed by an issuing station ([`CardAuthenticationCertificate`]) |
//! | key reference `9B` | the city's management key (never the factory default in production) |
//!
//! A tap is SELECT, GET DATA `5FC101`, GENERAL AUTHENTICATE with `9E` over a
//! fresh 32-byte challenge.

use alloc::vec::Vec;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::PublicKey;

use crate::apdu::Command;
use crate::error::{Error, Result};
use crate::tlv;

/// The PIV application identifier (SP 800-73-4 Part 1 §2.2), full form.
pub const AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];
/// Key reference of the Card Authentication Key.
pub const SLOT_CARD_AUTHENTICATION: u8 = 0x9E;
/// Key reference of the PIV Card Application Administration (management) key.
pub const KEY_MANAGEMENT: u8 = 0x9B;
/// Cryptographic mechanism identifier of ECC P-256 (SP 800-78-4 Table 6-2).
pub const ALG_ECC_P256: u8 = 0x11;
/// BER-TLV tag of the X.509 Certificate for Card Authentication container.
pub const OBJECT_CARD_AUTHENTICATION_CERTIFICATE: u32 = 0x5F_C1_01;
/// The factory management key of PIV cards and YubiKeys (3DES,
/// `0102030405060708` three times). A card that still accepts it can be
/// rewritten by anyone: personalisation refuses it unless told otherwise.
pub const DEFAULT_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
/// Largest certificate this profile writes or accepts (DER bytes).
pub const MAX_CERTIFICATE_LEN: usize = 1024;

const INS_SELECT: u8 = 0xA4;
const INS_GET_DATA: u8 = 0xCB;
const INS_PUT_DATA: u8 = 0xDB;
const INS_GENERATE: u8 = 0x47;
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;

const TAG_APT: u32 = 0x61;
const TAG_AID: u32 = 0x4F;
const TAG_ALGORITHMS: u32 = 0xAC;
const TAG_ALGORITHM: u32 = 0x80;
const TAG_TAG_LIST: u32 = 0x5C;
const TAG_DATA: u32 = 0x53;
const TAG_CERT: u32 = 0x70;
const TAG_CERT_INFO: u32 = 0x71;
const TAG_EDC: u32 = 0xFE;
const TAG_PUBLIC_KEY: u32 = 0x7F49;
const TAG_POINT: u32 = 0x86;
const TAG_DYNAMIC: u32 = 0x7C;
const TAG_WITNESS: u32 = 0x80;
const TAG_CHALLENGE: u32 = 0x81;
const TAG_RESPONSE: u32 = 0x82;

/// SELECT of the PIV application (`00 A4 04 00 0B A0…00 00`).
pub fn select_command() -> Command {
    Command::new(0x00, INS_SELECT, 0x04, 0x00)
        .with_data(AID.to_vec())
        .with_le(256)
}

/// What the card's Application Property Template (its answer to SELECT) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationProperties {
    /// The cryptographic mechanism identifiers the card lists (tag `AC`/`80`).
    pub algorithms: Vec<u8>,
}

impl ApplicationProperties {
    /// Whether the card lists ECC P-256.
    pub fn supports_p256(&self) -> bool {
        self.algorithms.contains(&ALG_ECC_P256)
    }
}

/// Parses the answer to [`select_command`]: tag `61` with the PIV AID (`4F`,
/// the PIX `00 00 10 00 01 00` or the full AID) and, when present, the
/// algorithm list. Unknown tags inside are skipped (SP 800-73-4 allows more).
pub fn parse_application_property_template(data: &[u8]) -> Result<ApplicationProperties> {
    let apt = tlv::read_exact(data, TAG_APT)?;
    let mut aid_ok = false;
    let mut algorithms = Vec::new();
    for field in tlv::read_all(apt.value)? {
        match field.tag {
            TAG_AID => {
                aid_ok = AID.ends_with(field.value) && field.value.len() >= 6;
            }
            TAG_ALGORITHMS => {
                for alg in tlv::read_all(field.value)? {
                    if alg.tag == TAG_ALGORITHM {
                        if let [id] = alg.value {
                            algorithms.push(*id);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !aid_ok {
        return Err(Error::Missing(TAG_AID));
    }
    Ok(ApplicationProperties { algorithms })
}

/// The three-byte BER-TLV tag list element for a data object tag.
fn tag_list(object: u32) -> Vec<u8> {
    let bytes = object.to_be_bytes();
    let skip = bytes.iter().take(3).take_while(|b| **b == 0).count();
    tlv::encode(TAG_TAG_LIST, bytes.get(skip..).unwrap_or(&[]))
}

/// GET DATA for one data object (`00 CB 3F FF 5C …`).
pub fn get_data_command(object: u32) -> Command {
    Command::new(0x00, INS_GET_DATA, 0x3F, 0xFF)
        .with_data(tag_list(object))
        .with_le(256)
}

/// PUT DATA of one data object (`00 DB 3F FF 5C … 53 …`); the transport
/// chains it when it exceeds 255 bytes.
pub fn put_data_command(object: u32, content: &[u8]) -> Command {
    let mut data = tag_list(object);
    tlv::push(&mut data, TAG_DATA, content);
    Command::new(0x00, INS_PUT_DATA, 0x3F, 0xFF).with_data(data)
}

/// The content of a GET DATA answer (the value of tag `53`).
pub fn parse_data_object(data: &[u8]) -> Result<&[u8]> {
    Ok(tlv::read_exact(data, TAG_DATA)?.value)
}

/// A certificate container's content (SP 800-73-4 Part 1 Table 15):
/// `70` certificate, `71 01 00` (not compressed), `FE 00` (error detection code).
pub fn certificate_container(certificate: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(certificate.len() + 12);
    tlv::push(&mut out, TAG_CERT, certificate);
    tlv::push(&mut out, TAG_CERT_INFO, &[0x00]);
    tlv::push(&mut out, TAG_EDC, &[]);
    out
}

/// Splits a flat sequence of one-byte-tag BER-TLVs (a PIV container), with
/// the strict reader of [`tlv`]: one level only, so SP 800-73-4's CertInfo
/// `71 01 00` (tag 71 has the constructed bit) stays a plain byte.
fn flat_fields(input: &[u8]) -> Result<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    for field in tlv::read_all(input)? {
        let tag = u8::try_from(field.tag).map_err(|_| Error::MalformedTlv)?;
        if tag == 0 || tag == 0xFF {
            return Err(Error::MalformedTlv);
        }
        out.push((tag, field.value));
    }
    Ok(out)
}

/// The certificate in a container's content. A compressed certificate
/// (`71 01 01`) is refused: this profile never writes one.
pub fn parse_certificate_container(content: &[u8]) -> Result<&[u8]> {
    let mut certificate = None;
    for (tag, value) in flat_fields(content)? {
        match u32::from(tag) {
            TAG_CERT if certificate.is_none() => certificate = Some(value),
            TAG_CERT => return Err(Error::Duplicate),
            TAG_CERT_INFO if value.iter().any(|b| *b != 0) => {
                return Err(Error::BadValue(TAG_CERT_INFO))
            }
            _ => {}
        }
    }
    let certificate = certificate.ok_or(Error::Missing(TAG_CERT))?;
    if certificate.len() > MAX_CERTIFICATE_LEN {
        return Err(Error::TooLong);
    }
    Ok(certificate)
}

/// GENERATE ASYMMETRIC KEY PAIR, P-256, in `slot` (`00 47 00 slot AC 03 80 01 11`).
pub fn generate_command(slot: u8) -> Command {
    Command::new(0x00, INS_GENERATE, 0x00, slot)
        .with_data([0xAC, 0x03, 0x80, 0x01, ALG_ECC_P256].to_vec())
        .with_le(256)
}

/// The public key in the answer to [`generate_command`]: `7F49 { 86 04‖X‖Y }`.
pub fn parse_generated_public_key(data: &[u8]) -> Result<PublicKey> {
    let template = tlv::read_exact(data, TAG_PUBLIC_KEY)?;
    let point = tlv::read_all(template.value)?
        .into_iter()
        .find(|f| f.tag == TAG_POINT)
        .ok_or(Error::Missing(TAG_POINT))?;
    if point.value.len() != 65 {
        return Err(Error::BadLength(TAG_POINT));
    }
    PublicKey::from_sec1_bytes(point.value).map_err(|_| Error::BadPublicKey)
}

/// GENERAL AUTHENTICATE asking the key in `slot` to sign `challenge` as a
/// SHA-256-sized prehash (`00 87 11 slot 7C 24 82 00 81 20 …`).
pub fn sign_command(slot: u8, challenge: &[u8; 32]) -> Command {
    let mut inner = Vec::with_capacity(36);
    tlv::push(&mut inner, TAG_RESPONSE, &[]);
    tlv::push(&mut inner, TAG_CHALLENGE, challenge);
    Command::new(0x00, INS_GENERAL_AUTHENTICATE, ALG_ECC_P256, slot)
        .with_data(tlv::encode(TAG_DYNAMIC, &inner))
        .with_le(256)
}

/// The signature in the answer to [`sign_command`]: `7C { 82 <DER ECDSA> }`.
pub fn parse_signature(data: &[u8]) -> Result<Signature> {
    let der = dynamic_field(data, TAG_RESPONSE)?;
    Signature::from_der(der).map_err(|_| Error::BadSignature)
}

/// Checks a card's signature over `challenge` (a prehash) with its key.
pub fn verify_challenge(
    key: &PublicKey,
    challenge: &[u8; 32],
    signature: &Signature,
) -> Result<()> {
    VerifyingKey::from(key)
        .verify_prehash(challenge, signature)
        .map_err(|_| Error::BadSignature)
}

/// One element of a dynamic authentication template (`7C`).
fn dynamic_field(data: &[u8], tag: u32) -> Result<&[u8]> {
    let template = tlv::read_exact(data, TAG_DYNAMIC)?;
    tlv::read_all(template.value)?
        .into_iter()
        .find(|f| f.tag == tag)
        .map(|f| f.value)
        .ok_or(Error::Missing(tag))
}

/// The block cipher of a management key (SP 800-78-4 Table 6-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManagementAlgorithm {
    /// Three-key Triple DES (`03`), the factory default.
    TripleDes,
    /// AES-128 (`08`).
    Aes128,
    /// AES-192 (`0A`).
    Aes192,
    /// AES-256 (`0C`).
    Aes256,
}

impl ManagementAlgorithm {
    /// The mechanism identifier sent in P1.
    pub const fn id(self) -> u8 {
        match self {
            Self::TripleDes => 0x03,
            Self::Aes128 => 0x08,
            Self::Aes192 => 0x0A,
            Self::Aes256 => 0x0C,
        }
    }

    /// Block length in bytes (the witness and challenge length).
    pub const fn block_len(self) -> usize {
        match self {
            Self::TripleDes => 8,
            _ => 16,
        }
    }

    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Self::TripleDes | Self::Aes192 => 24,
            Self::Aes128 => 16,
            Self::Aes256 => 32,
        }
    }

    /// Parses `3des`, `aes128`, `aes192`, `aes256`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "3des" | "tdes" => Some(Self::TripleDes),
            "aes128" => Some(Self::Aes128),
            "aes192" => Some(Self::Aes192),
            "aes256" => Some(Self::Aes256),
            _ => None,
        }
    }

    /// The name [`Self::from_name`] accepts.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TripleDes => "3des",
            Self::Aes128 => "aes128",
            Self::Aes192 => "aes192",
            Self::Aes256 => "aes256",
        }
    }
}

/// Step 1 of mutual authentication with the management key: ask for a
/// witness (`00 87 alg 9B 7C 02 80 00`).
pub fn management_witness_request(alg: ManagementAlgorithm) -> Command {
    Command::new(0x00, INS_GENERAL_AUTHENTICATE, alg.id(), KEY_MANAGEMENT)
        .with_data(tlv::encode(TAG_DYNAMIC, &tlv::encode(TAG_WITNESS, &[])))
        .with_le(256)
}

/// The encrypted witness in the answer to [`management_witness_request`].
pub fn parse_management_witness(data: &[u8], alg: ManagementAlgorithm) -> Result<Vec<u8>> {
    let witness = dynamic_field(data, TAG_WITNESS)?;
    if witness.len() != alg.block_len() {
        return Err(Error::BadLength(TAG_WITNESS));
    }
    Ok(witness.to_vec())
}

/// Step 2: the decrypted witness and the host's own challenge
/// (`00 87 alg 9B 7C { 80 witness, 81 challenge }`).
pub fn management_response_command(
    alg: ManagementAlgorithm,
    decrypted_witness: &[u8],
    challenge: &[u8],
) -> Command {
    let mut inner = Vec::with_capacity(4 + decrypted_witness.len() + challenge.len());
    tlv::push(&mut inner, TAG_WITNESS, decrypted_witness);
    tlv::push(&mut inner, TAG_CHALLENGE, challenge);
    Command::new(0x00, INS_GENERAL_AUTHENTICATE, alg.id(), KEY_MANAGEMENT)
        .with_data(tlv::encode(TAG_DYNAMIC, &inner))
        .with_le(256)
}

/// The card's encryption of the host challenge (`7C { 82 … }`); the host
/// compares it with its own encryption to authenticate the card.
pub fn parse_management_response(data: &[u8], alg: ManagementAlgorithm) -> Result<Vec<u8>> {
    let response = dynamic_field(data, TAG_RESPONSE)?;
    if response.len() != alg.block_len() {
        return Err(Error::BadLength(TAG_RESPONSE));
    }
    Ok(response.to_vec())
}

mod certificate;
pub use certificate::*;
