//! Preparation and personalisation messages (spec §6.3, §6.6–§6.9, §7.4).
//!
//! ```text
//! PREPARE                data 42 L issuer ‖ 86 21 root ‖ 82 04 date   ← 86 21 K_A
//! STORE PREPARATION CERTIFICATE   data 7F21 (role 04, holder key K_A)
//! GET CHALLENGE          → rnd_C (16 bytes)
//! EXTERNAL AUTHENTICATE  data 7C { 81 E_S, 82 sig_S, 83 G }, sig_S = ECDSA_station(
//!                          "citycard-v2 station-auth" ‖ rnd_C ‖ E_S ‖ G)
//!                        ← 7C { 85 preparation certificate,
//!                               87 seal(K_sm, iv(0), 00820000, K_0 ‖ … ‖ K_{G-1}) }
//! K_sm,enc ‖ K_sm,mac = KDF(ECDH(k_A, E_S), "citycard-v2 personalisation" ‖ rnd_C ‖ E_S)
//! iv(n) = n (4 bytes) ‖ 00·12 for the station's n-th secured command (n ≥ 1);
//!         80 ‖ n[1..4] ‖ 00·12 for the card's sealed answer to it
//! data  = seal(K_sm,enc, K_sm,mac, iv(n), CLA' ‖ INS ‖ P1 ‖ P2, plaintext)
//! check = AES-CMAC(K_sm,mac, "citycard-v2 issued" ‖ records ‖ stored values)
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};

use crate::auth::TAG_DYNAMIC;
use crate::cert::MAX_REFERENCE_LEN;
use crate::consts::{cla, ins, label};
use crate::crypto::{self, Key16, OpCount, IV_LEN, MAC_LEN, POINT_LEN, SIGNATURE_LEN, TAG_LEN};
use crate::date::Date;
use crate::error::{Error, Result};
use crate::limits::{MAX_CERTIFICATE_LEN, MAX_GROUPS};
use crate::record::StoredValue;
use crate::tlv::{self, Sequence};

/// Length of the card's challenge.
pub const CHALLENGE_LEN: usize = 16;
const TAG_STATION_EPHEMERAL: u32 = 0x81;
const TAG_STATION_SIGNATURE: u32 = 0x82;
const TAG_GROUPS: u32 = 0x83;
const TAG_PREPARATION_CERTIFICATE: u32 = 0x85;
const TAG_SEALED_KEYS: u32 = 0x87;
/// Tag of the issuer id in PREPARE.
pub const TAG_PREPARE_ISSUER: u32 = 0x42;
/// Tag of the root key in PREPARE and of K_A in its answer.
pub const TAG_PREPARE_KEY: u32 = 0x86;
/// Tag of the preparation date in PREPARE.
pub const TAG_PREPARE_DATE: u32 = 0x82;
/// Header bytes of EXTERNAL AUTHENTICATE, the associated data of the sealed group keys.
pub const EXTERNAL_AUTHENTICATE_HEADER: [u8; 4] = [cla::ISO, ins::EXTERNAL_AUTHENTICATE, 0, 0];
/// Highest secured-command counter (the iv's first byte stays below `80`).
pub const MAX_COUNTER: u32 = 0x00FF_FFFF;

fn check_issuer(issuer: &str) -> Result<()> {
    if issuer.is_empty()
        || issuer.len() > MAX_REFERENCE_LEN
        || !issuer.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::BadValue(TAG_PREPARE_ISSUER));
    }
    Ok(())
}

/// PREPARE command data: what the city installs on a blank card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepare {
    /// The issuer id (printable ASCII, 1–16).
    pub issuer: String,
    /// The root public key.
    pub root: PublicKey,
    /// The preparation date (the card's first card date).
    pub date: Date,
}

impl Prepare {
    /// `42 L issuer ‖ 86 21 root ‖ 82 04 date`.
    pub fn encode(&self) -> Result<Vec<u8>> {
        check_issuer(&self.issuer)?;
        let mut v = tlv::encode(TAG_PREPARE_ISSUER, self.issuer.as_bytes());
        tlv::push(&mut v, TAG_PREPARE_KEY, &crypto::encode_point(&self.root));
        tlv::push(&mut v, TAG_PREPARE_DATE, &self.date.to_bytes());
        Ok(v)
    }

    /// Decodes PREPARE command data.
    pub fn decode(data: &[u8]) -> Result<Self> {
        let mut s = Sequence::new(data)?;
        let issuer = s.required(TAG_PREPARE_ISSUER)?;
        let root = s.required(TAG_PREPARE_KEY)?;
        let date = s.required(TAG_PREPARE_DATE)?;
        s.finish()?;
        let issuer =
            core::str::from_utf8(issuer.value).map_err(|_| Error::BadValue(TAG_PREPARE_ISSUER))?;
        check_issuer(issuer)?;
        Ok(Self {
            issuer: String::from(issuer),
            root: crypto::decode_point(root.value)?,
            date: Date::from_bytes(date.value)?,
        })
    }
}

/// The answer to PREPARE: `86 21 K_A`.
pub fn encode_attestation_key(key: &PublicKey) -> Vec<u8> {
    tlv::encode(TAG_PREPARE_KEY, &crypto::encode_point(key))
}

/// Decodes the answer to PREPARE.
pub fn decode_attestation_key(data: &[u8]) -> Result<PublicKey> {
    crypto::decode_point(tlv::read_exact(data, TAG_PREPARE_KEY)?.value)
}

/// The message a station signs to authenticate to a card.
pub fn station_auth_message(
    challenge: &[u8; CHALLENGE_LEN],
    station_ephemeral: &[u8; POINT_LEN],
    groups: u8,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(label::STATION_AUTH.len() + CHALLENGE_LEN + POINT_LEN + 1);
    m.extend_from_slice(label::STATION_AUTH);
    m.extend_from_slice(challenge);
    m.extend_from_slice(station_ephemeral);
    m.push(groups);
    m
}

/// EXTERNAL AUTHENTICATE command data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationAuth {
    /// The station's ephemeral public key.
    pub ephemeral: [u8; POINT_LEN],
    /// The station's signature over [`station_auth_message`].
    pub signature: [u8; SIGNATURE_LEN],
    /// G, the number of groups to issue (1–8).
    pub groups: u8,
}

impl StationAuth {
    /// Encodes the `7C` template.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(110);
        tlv::push(&mut v, TAG_STATION_EPHEMERAL, &self.ephemeral);
        tlv::push(&mut v, TAG_STATION_SIGNATURE, &self.signature);
        tlv::push(&mut v, TAG_GROUPS, &[self.groups]);
        tlv::encode(TAG_DYNAMIC, &v)
    }

    /// Decodes the `7C` template (G within 1–8).
    pub fn decode(data: &[u8]) -> Result<Self> {
        let outer = tlv::read_exact(data, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let ephemeral = tlv::fixed::<POINT_LEN>(&s.required(TAG_STATION_EPHEMERAL)?)?;
        let signature = tlv::fixed::<SIGNATURE_LEN>(&s.required(TAG_STATION_SIGNATURE)?)?;
        let [groups] = tlv::fixed::<1>(&s.required(TAG_GROUPS)?)?;
        s.finish()?;
        if groups == 0 || usize::from(groups) > MAX_GROUPS {
            return Err(Error::BadValue(TAG_GROUPS));
        }
        Ok(Self {
            ephemeral,
            signature,
            groups,
        })
    }
}

/// The card's answer to EXTERNAL AUTHENTICATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardAuthAnswer {
    /// The card's preparation certificate (role 04), in clear.
    pub preparation_certificate: Vec<u8>,
    /// The group public keys, sealed under the secure channel (counter 0).
    pub sealed_keys: Vec<u8>,
}

impl CardAuthAnswer {
    /// `7C { 85 L certificate, 87 L sealed keys }`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.preparation_certificate.len() + 300);
        tlv::push(
            &mut v,
            TAG_PREPARATION_CERTIFICATE,
            &self.preparation_certificate,
        );
        tlv::push(&mut v, TAG_SEALED_KEYS, &self.sealed_keys);
        tlv::encode(TAG_DYNAMIC, &v)
    }

    /// Decodes the answer.
    pub fn decode(data: &[u8]) -> Result<Self> {
        let outer = tlv::read_exact(data, TAG_DYNAMIC)?;
        let mut s = Sequence::new(outer.value)?;
        let cert = s.required(TAG_PREPARATION_CERTIFICATE)?;
        let sealed = s.required(TAG_SEALED_KEYS)?;
        s.finish()?;
        if cert.value.len() > MAX_CERTIFICATE_LEN {
            return Err(Error::TooLong);
        }
        Ok(Self {
            preparation_certificate: cert.value.to_vec(),
            sealed_keys: sealed.value.to_vec(),
        })
    }
}

/// The issuance check value (spec §6.8) over the records (in group order)
/// and the stored values (`C1` TLVs, ids ascending).
pub fn check_value(
    ops: &mut OpCount,
    k_mac: &[u8; 16],
    records: &[&[u8]],
    values: &[StoredValue],
) -> [u8; MAC_LEN] {
    let mut input = zeroize::Zeroizing::new(Vec::with_capacity(4096));
    input.extend_from_slice(label::ISSUED);
    for r in records {
        input.extend_from_slice(r);
    }
    let mut sorted: Vec<&StoredValue> = values.iter().collect();
    sorted.sort_by_key(|v| v.id);
    for v in sorted {
        input.extend_from_slice(&v.encode());
    }
    ops.cmac(k_mac, &[&input])
}

/// Secure-messaging keys and counter, identical on card and station (spec §7.4).
pub struct SecureChannel {
    enc: Key16,
    mac: Key16,
    counter: u32,
}

fn command_iv(n: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[..4].copy_from_slice(&n.to_be_bytes());
    iv
}

fn answer_iv(n: u32) -> [u8; IV_LEN] {
    let mut iv = command_iv(n);
    iv[0] = 0x80;
    iv
}

fn aad(header: [u8; 4]) -> [u8; 4] {
    let [c, i, p1, p2] = header;
    [c & !cla::CHAIN, i, p1, p2]
}

impl SecureChannel {
    fn from_secret(
        z: &[u8],
        challenge: &[u8; CHALLENGE_LEN],
        e_s: &[u8; POINT_LEN],
        ops: &mut OpCount,
    ) -> Self {
        let k = ops.kdf(z, &[label::PERSONALISATION, challenge, e_s]);
        let (enc, mac) = crypto::split_keys(&k);
        Self {
            enc,
            mac,
            counter: 0,
        }
    }

    /// Card side: from the attestation key and the station's ephemeral key.
    pub fn for_card(
        ops: &mut OpCount,
        attestation_key: &SecretKey,
        station_ephemeral: &PublicKey,
        challenge: &[u8; CHALLENGE_LEN],
    ) -> Self {
        let z = ops.ecdh(attestation_key, station_ephemeral);
        let e_s = crypto::encode_point(station_ephemeral);
        Self::from_secret(z.as_slice(), challenge, &e_s, ops)
    }

    /// Station side: from the station's ephemeral key and the card's attestation key.
    pub fn for_station(
        station_ephemeral: &SecretKey,
        attestation_key: &PublicKey,
        challenge: &[u8; CHALLENGE_LEN],
    ) -> Self {
        let z = crypto::ecdh(station_ephemeral, attestation_key);
        let e_s = crypto::encode_point(&station_ephemeral.public_key());
        Self::from_secret(z.as_slice(), challenge, &e_s, &mut OpCount::default())
    }

    /// The MAC key (for the issuance check value).
    pub fn mac_key(&self) -> &[u8; 16] {
        &self.mac
    }

    /// Card: seals the group public keys for the EXTERNAL AUTHENTICATE answer (counter 0).
    pub fn seal_group_keys(&self, ops: &mut OpCount, keys: &[PublicKey]) -> Vec<u8> {
        let mut p = Vec::with_capacity(keys.len() * POINT_LEN);
        for k in keys {
            p.extend_from_slice(&crypto::encode_point(k));
        }
        ops.seal(
            &self.enc,
            &self.mac,
            &command_iv(0),
            &EXTERNAL_AUTHENTICATE_HEADER,
            &p,
        )
    }

    /// Station: opens the group public keys; proves the card holds k_A.
    pub fn open_group_keys(&self, sealed: &[u8], groups: u8) -> Result<Vec<PublicKey>> {
        let p = crypto::open(
            &self.enc,
            &self.mac,
            &command_iv(0),
            &EXTERNAL_AUTHENTICATE_HEADER,
            sealed,
        )?;
        if p.len() != usize::from(groups) * POINT_LEN {
            return Err(Error::BadLength(TAG_SEALED_KEYS));
        }
        p.chunks_exact(POINT_LEN)
            .map(crypto::decode_point)
            .collect()
    }

    fn next(&mut self) -> Result<u32> {
        if self.counter >= MAX_COUNTER {
            return Err(Error::TooLong);
        }
        self.counter += 1;
        Ok(self.counter)
    }

    /// Station: protects the data of the next command with header `header`.
    pub fn seal(&mut self, header: [u8; 4], plaintext: &[u8]) -> Result<Vec<u8>> {
        let n = self.next()?;
        Ok(crypto::seal(
            &self.enc,
            &self.mac,
            &command_iv(n),
            &aad(header),
            plaintext,
        ))
    }

    /// Station: opens the card's sealed answer to the last command.
    pub fn open_answer(&self, header: [u8; 4], data: &[u8]) -> Result<Vec<u8>> {
        crypto::open(
            &self.enc,
            &self.mac,
            &answer_iv(self.counter),
            &aad(header),
            data,
        )
    }

    /// Card: checks and decrypts the data of a command with header `header`.
    /// The counter advances even on failure (the card ends the session anyway).
    pub fn open(&mut self, ops: &mut OpCount, header: [u8; 4], data: &[u8]) -> Result<Vec<u8>> {
        let n = self.next()?;
        ops.open(&self.enc, &self.mac, &command_iv(n), &aad(header), data)
    }

    /// Card: seals its answer to the current command.
    pub fn seal_answer(&self, ops: &mut OpCount, header: [u8; 4], plaintext: &[u8]) -> Vec<u8> {
        ops.seal(
            &self.enc,
            &self.mac,
            &answer_iv(self.counter),
            &aad(header),
            plaintext,
        )
    }
}

/// Length of the sealed check value in ACTIVATE's answer.
pub const SEALED_CHECK_LEN: usize = MAC_LEN + TAG_LEN;

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn prepare_round_trips_and_refuses_bad_issuers() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let root = crypto::generate(&mut rng).public_key();
        let p = Prepare {
            issuer: "LIEGE".into(),
            root,
            date: Date::new(2026, 11, 2).unwrap(),
        };
        assert_eq!(Prepare::decode(&p.encode().unwrap()).unwrap(), p);
        let mut bad = p.clone();
        bad.issuer = "LI EGE".into();
        assert!(bad.encode().is_err());
        let mut data = p.encode().unwrap();
        data.push(0);
        assert!(Prepare::decode(&data).is_err());
    }

    #[test]
    fn channel_keys_agree_and_ivs_never_repeat() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([2; 32]);
        let k_a = crypto::generate(&mut rng);
        let e_s = crypto::generate(&mut rng);
        let challenge = [9u8; 16];
        let mut ops = OpCount::default();
        let mut card = SecureChannel::for_card(&mut ops, &k_a, &e_s.public_key(), &challenge);
        let mut station = SecureChannel::for_station(&e_s, &k_a.public_key(), &challenge);
        let keys = [k_a.public_key(), e_s.public_key()];
        let sealed = card.seal_group_keys(&mut ops, &keys);
        assert_eq!(station.open_group_keys(&sealed, 2).unwrap(), keys);
        assert!(station.open_group_keys(&sealed, 1).is_err());
        let header = [0x80, 0xDA, 0, 0];
        let data = station.seal(header, b"hello").unwrap();
        // The chaining bit is not part of the associated data.
        assert_eq!(
            card.open(&mut ops, [0x90, 0xDA, 0, 0], &data).unwrap(),
            b"hello"
        );
        let answer = card.seal_answer(&mut ops, header, b"check");
        assert_eq!(station.open_answer(header, &answer).unwrap(), b"check");
        // A command replayed (counter 2 now) fails; so does the answer taken as a command.
        let again = station.seal(header, b"x").unwrap();
        assert!(card.open(&mut ops, header, &data).is_err());
        assert!(
            card.open(&mut ops, header, &again).is_err(),
            "counter moved on"
        );
        assert_ne!(command_iv(1), answer_iv(1));
        assert_eq!(answer_iv(0x0000_0102)[..4], [0x80, 0, 1, 2]);
    }

    #[test]
    fn station_auth_round_trips_and_bounds_groups() {
        let a = StationAuth {
            ephemeral: [2; 33],
            signature: [3; 64],
            groups: 8,
        };
        assert_eq!(StationAuth::decode(&a.encode()).unwrap(), a);
        for g in [0u8, 9] {
            let bad = StationAuth {
                groups: g,
                ..a.clone()
            };
            assert!(StationAuth::decode(&bad.encode()).is_err());
        }
        assert_eq!(station_auth_message(&[1; 16], &[2; 33], 3).last(), Some(&3));
    }
}
