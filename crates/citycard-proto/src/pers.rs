//! Personalisation messages (spec §6.6–§6.9, §7.4): station authentication and the
//! secure-messaging wrapper for PUT DATA, ACTIVATE and TERMINATE.
//!
//! ```text
//! GET CHALLENGE          → rnd_C (16 bytes)
//! EXTERNAL AUTHENTICATE  data 7C { 81 E_S, 82 sig_S }, sig_S = ECDSA_station(
//!                           "citycard-v1 station-auth" ‖ rnd_C ‖ E_S)
//!                        ← 7C { 84 card public key }
//! K_sm  = KDF(ECDH(card, E_S), "citycard-v1 personalisation" ‖ rnd_C)[16]
//! secured command data  = AES-128-GCM(K_sm, nonce = 0⁸ ‖ counter (u32 BE, from 1),
//!                         aad = CLA (chaining bit cleared) ‖ INS ‖ P1 ‖ P2, plaintext)
//! ```

use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};

use crate::auth::TAG_DYNAMIC;
use crate::consts::{cla, label};
use crate::crypto::{self, POINT_LEN, SIGNATURE_LEN};
use crate::error::{Error, Result};
use crate::tlv::{self, Sequence};

/// Length of the card's challenge.
pub const CHALLENGE_LEN: usize = 16;
const TAG_STATION_EPHEMERAL: u32 = 0x81;
const TAG_STATION_SIGNATURE: u32 = 0x82;
const TAG_CARD_KEY: u32 = 0x84;
/// Tag of the issuer reference in SET ISSUER ANCHOR.
pub const TAG_ANCHOR_ISSUER: u32 = 0x42;
/// Tag of the root public key in SET ISSUER ANCHOR.
pub const TAG_ANCHOR_KEY: u32 = 0x86;

/// The message a station signs to authenticate to a card.
pub fn station_auth_message(
    challenge: &[u8; CHALLENGE_LEN],
    station_ephemeral: &[u8; POINT_LEN],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(label::STATION_AUTH.len() + CHALLENGE_LEN + POINT_LEN);
    m.extend_from_slice(label::STATION_AUTH);
    m.extend_from_slice(challenge);
    m.extend_from_slice(station_ephemeral);
    m
}

/// EXTERNAL AUTHENTICATE command data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationAuth {
    /// The station's ephemeral public key.
    pub ephemeral: [u8; POINT_LEN],
    /// The station's signature over [`station_auth_message`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl StationAuth {
    /// Encodes the `7C` template.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(110);
        tlv::push(&mut v, TAG_STATION_EPHEMERAL, &self.ephemeral);
        tlv::push(&mut v, TAG_STATION_SIGNATURE, &self.signature);
        tlv::encode(TAG_DYNAMIC, &v)
    }

    /// Decodes the `7C` template.
    pub fn decode(data: &[u8]) -> Result<Self> {
        let outer = tlv::read_exact(data, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let ephemeral = tlv::fixed::<POINT_LEN>(&s.required(TAG_STATION_EPHEMERAL)?)?;
        let signature = tlv::fixed::<SIGNATURE_LEN>(&s.required(TAG_STATION_SIGNATURE)?)?;
        s.finish()?;
        Ok(Self {
            ephemeral,
            signature,
        })
    }
}

/// Encodes the card's answer to EXTERNAL AUTHENTICATE.
pub fn encode_card_key(card_key: &PublicKey) -> Vec<u8> {
    tlv::encode(
        TAG_DYNAMIC,
        &tlv::encode(TAG_CARD_KEY, &crypto::encode_point(card_key)),
    )
}

/// Decodes the card's answer to EXTERNAL AUTHENTICATE.
pub fn decode_card_key(data: &[u8]) -> Result<PublicKey> {
    let outer = tlv::read_exact(data, TAG_DYNAMIC)?;
    let key = tlv::read_exact(outer.value, TAG_CARD_KEY)?;
    crypto::decode_point(key.value)
}

/// SET ISSUER ANCHOR command data: `42 issuer ‖ 86 root key`.
pub fn encode_anchor(issuer: &str, root: &PublicKey) -> Vec<u8> {
    let mut v = tlv::encode(TAG_ANCHOR_ISSUER, issuer.as_bytes());
    tlv::push(&mut v, TAG_ANCHOR_KEY, &crypto::encode_point(root));
    v
}

/// Secure-messaging session keys and counter, identical on card and station.
pub struct SecureChannel {
    key: zeroize::Zeroizing<[u8; 16]>,
    counter: u32,
}

impl SecureChannel {
    /// Card side: from the card key and the station's ephemeral key.
    pub fn for_card(
        card_key: &SecretKey,
        station_ephemeral: &PublicKey,
        challenge: &[u8; CHALLENGE_LEN],
    ) -> Self {
        let z = crypto::ecdh(card_key, station_ephemeral);
        Self {
            key: crypto::kdf::<16>(z.as_slice(), &[label::PERSONALISATION, challenge]),
            counter: 0,
        }
    }

    /// Station side: from the station's ephemeral key and the card's public key.
    pub fn for_station(
        station_ephemeral: &SecretKey,
        card_key: &PublicKey,
        challenge: &[u8; CHALLENGE_LEN],
    ) -> Self {
        let z = crypto::ecdh(station_ephemeral, card_key);
        Self {
            key: crypto::kdf::<16>(z.as_slice(), &[label::PERSONALISATION, challenge]),
            counter: 0,
        }
    }

    fn next_nonce(&mut self) -> Result<[u8; 12]> {
        self.counter = self.counter.checked_add(1).ok_or(Error::TooLong)?;
        let mut nonce = [0u8; 12];
        nonce[8..].copy_from_slice(&self.counter.to_be_bytes());
        Ok(nonce)
    }

    fn aad(header: [u8; 4]) -> [u8; 4] {
        let [c, i, p1, p2] = header;
        [c & !cla::CHAIN, i, p1, p2]
    }

    /// Station: protects the data of the command with header `header`.
    pub fn seal(&mut self, header: [u8; 4], plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = self.next_nonce()?;
        Ok(crypto::seal(
            &self.key,
            &nonce,
            &Self::aad(header),
            plaintext,
        ))
    }

    /// Card: checks and decrypts the data of a command with header `header`.
    /// The counter advances even on failure (the card ends the session anyway).
    pub fn open(&mut self, header: [u8; 4], data: &[u8]) -> Result<Vec<u8>> {
        let nonce = self.next_nonce()?;
        crypto::open(&self.key, &nonce, &Self::aad(header), data)
    }
}
