//! The cryptographic primitives of the protocol (spec §7.1), in one place.
//!
//! - Curve: NIST P-256; points travel compressed (33 bytes).
//! - Signatures: ECDSA P-256 with SHA-256, raw `r‖s` (64 bytes), **low S**:
//!   [`sign`] produces only low-S signatures and [`verify`] refuses high-S ones,
//!   so every signature (and every certificate) has exactly one encoding.
//! - Key agreement: ECDH P-256, shared secret = x-coordinate (32 bytes).
//! - KDF: the one-step KDF of NIST SP 800-56C rev. 2 with SHA-256, one block
//!   (`K = SHA-256(00000001 ‖ Z ‖ FixedInfo)`, 32 bytes).
//! - MAC and PRF: AES-128-CMAC (NIST SP 800-38B), 16 bytes.
//! - Cipher: AES-128-CTR (NIST SP 800-38A) with AES-CMAC, encrypt-then-MAC
//!   ([`seal`], [`open`]). No AES-GCM: JCOP4-class cards lack it (spec §14).
//!
//! [`OpCount`] performs the same operations while counting them: the card
//! does all its cryptography through one, so tests can compare the work of
//! two paths (an answer and a decoy, an accepted and a refused certificate).

use alloc::vec::Vec;
use ctr::cipher::{KeyIvInit, StreamCipher};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of a compressed P-256 point.
pub const POINT_LEN: usize = 33;
/// Length of a raw ECDSA signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an AES-CMAC.
pub const MAC_LEN: usize = 16;
/// Length of the tag [`seal`] appends.
pub const TAG_LEN: usize = 16;
/// Length of an AES-128 key.
pub const KEY_LEN: usize = 16;
/// Length of a CTR initial counter block.
pub const IV_LEN: usize = 16;
/// Length of the KDF output.
pub const KDF_LEN: usize = 32;

/// A 32-byte secret (shared secret or derived key) that is wiped on drop.
pub type Secret32 = Zeroizing<[u8; 32]>;
/// A 16-byte key that is wiped on drop.
pub type Key16 = Zeroizing<[u8; KEY_LEN]>;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The first `N` (≤ 32) bytes of SHA-256 over the concatenation of `parts`.
pub fn sha256_trunc<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let full = sha256(parts);
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    out
}

/// Encodes a public key as a compressed SEC1 point.
pub fn encode_point(pk: &PublicKey) -> [u8; POINT_LEN] {
    let ep = pk.to_encoded_point(true);
    let mut out = [0u8; POINT_LEN];
    if ep.as_bytes().len() == POINT_LEN {
        out.copy_from_slice(ep.as_bytes());
    }
    out
}

/// Decodes a compressed SEC1 point; rejects uncompressed forms, the identity
/// and points not on the curve.
pub fn decode_point(bytes: &[u8]) -> Result<PublicKey> {
    if bytes.len() != POINT_LEN || !matches!(bytes.first(), Some(2 | 3)) {
        return Err(Error::BadPublicKey);
    }
    PublicKey::from_sec1_bytes(bytes).map_err(|_| Error::BadPublicKey)
}

/// Generates a key pair from `rng`.
pub fn generate(rng: &mut impl CryptoRngCore) -> SecretKey {
    SecretKey::random(rng)
}

/// ECDH: the x-coordinate of `sk · pk`.
pub fn ecdh(sk: &SecretKey, pk: &PublicKey) -> Secret32 {
    let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    let mut out = Zeroizing::new([0u8; 32]);
    let raw: &[u8] = shared.raw_secret_bytes();
    out.copy_from_slice(raw);
    out
}

/// One-step KDF (NIST SP 800-56C rev. 2, option 1, SHA-256), one block:
/// `SHA-256(00 00 00 01 ‖ z ‖ fixed_info…)` (32 bytes).
pub fn kdf(z: &[u8], fixed_info: &[&[u8]]) -> Secret32 {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for part in fixed_info {
        h.update(part);
    }
    Zeroizing::new(<[u8; 32]>::from(h.finalize()))
}

/// The first 16 bytes of a KDF output (one AES-128 key).
pub fn kdf_key(z: &[u8], fixed_info: &[&[u8]]) -> Key16 {
    split_keys(&kdf(z, fixed_info)).0
}

/// Splits a 32-byte KDF output into two 16-byte keys.
pub fn split_keys(k: &[u8; 32]) -> (Key16, Key16) {
    let mut a = Zeroizing::new([0u8; KEY_LEN]);
    let mut b = Zeroizing::new([0u8; KEY_LEN]);
    let (lo, hi) = k.split_at(KEY_LEN);
    a.copy_from_slice(lo);
    b.copy_from_slice(hi);
    (a, b)
}

/// AES-128-CMAC over the concatenation of `parts`.
pub fn cmac(key: &[u8; 16], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    use cmac::Mac as _;
    let mut m = <cmac::Cmac<aes::Aes128> as cmac::Mac>::new(key.into());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time comparison of two MACs.
pub fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// AES-128-CTR keystream applied in place (encryption and decryption alike).
pub fn ctr_apply(key: &[u8; KEY_LEN], iv: &[u8; IV_LEN], data: &mut [u8]) {
    let mut c = Aes128Ctr::new(key.into(), iv.into());
    c.apply_keystream(data);
}

/// `seal(K_enc, K_mac, iv, aad, P) = CT ‖ AES-CMAC(K_mac, aad ‖ iv ‖ CT)`
/// with `CT = AES-128-CTR(K_enc, iv, P)` (spec §7.1).
pub fn seal(
    k_enc: &[u8; KEY_LEN],
    k_mac: &[u8; KEY_LEN],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + TAG_LEN);
    out.extend_from_slice(plaintext);
    ctr_apply(k_enc, iv, &mut out);
    let tag = cmac(k_mac, &[aad, iv, &out]);
    out.extend_from_slice(&tag);
    out
}

/// Checks the tag of `sealed` (constant time): `true` when it is valid.
pub fn tag_valid(k_mac: &[u8; KEY_LEN], iv: &[u8; IV_LEN], aad: &[u8], sealed: &[u8]) -> bool {
    let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
        return false;
    };
    let (ct, tag) = sealed.split_at(split);
    mac_eq(&cmac(k_mac, &[aad, iv, ct]), tag)
}

/// Opens [`seal`]'s output: checks the tag in constant time, then decrypts.
pub fn open(
    k_enc: &[u8; KEY_LEN],
    k_mac: &[u8; KEY_LEN],
    iv: &[u8; IV_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>> {
    if !tag_valid(k_mac, iv, aad, sealed) {
        return Err(Error::DecryptionFailed);
    }
    let ct = sealed
        .get(..sealed.len().saturating_sub(TAG_LEN))
        .ok_or(Error::DecryptionFailed)?;
    let mut out = ct.to_vec();
    ctr_apply(k_enc, iv, &mut out);
    Ok(out)
}

/// ECDSA P-256 / SHA-256 signature over `message`, raw `r‖s`, deterministic
/// (RFC 6979) and always low S.
pub fn sign(sk: &SecretKey, message: &[u8]) -> [u8; SIGNATURE_LEN] {
    let signing = SigningKey::from(sk);
    let sig: Signature = signing.sign(message);
    let sig = sig.normalize_s().unwrap_or(sig);
    sig.to_bytes().into()
}

/// Brings a raw `r‖s` signature made elsewhere (an HSM) to low S; fails on a
/// malformed signature.
pub fn normalize_signature(signature: &[u8]) -> Result<[u8; SIGNATURE_LEN]> {
    let sig = Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
    let sig = sig.normalize_s().unwrap_or(sig);
    Ok(sig.to_bytes().into())
}

/// Verifies a raw `r‖s` ECDSA P-256 / SHA-256 signature; refuses high S.
pub fn verify(pk: &PublicKey, message: &[u8], signature: &[u8]) -> Result<()> {
    let sig = Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
    let low = sig.normalize_s().is_none();
    let ok = VerifyingKey::from(pk).verify(message, &sig).is_ok();
    if low && ok {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// Counts of the card-side cryptographic operations (and persistent writes)
/// of an exchange. The card performs all its cryptography through one of
/// these, so two paths can be compared operation by operation and byte by byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCount {
    /// P-256 key generations.
    pub keygen: u32,
    /// P-256 ECDH computations.
    pub ecdh: u32,
    /// ECDSA verifications.
    pub ecdsa_verify: u32,
    /// Bytes of messages given to ECDSA verification.
    pub verify_bytes: u64,
    /// SHA-256 computations (digests, fingerprints, KDF blocks).
    pub sha256: u32,
    /// Bytes hashed by those.
    pub sha256_bytes: u64,
    /// AES-CMAC computations.
    pub cmac: u32,
    /// Bytes MACed.
    pub cmac_bytes: u64,
    /// Bytes through AES-CTR.
    pub ctr_bytes: u64,
    /// Random bytes drawn (besides key generation).
    pub random_bytes: u64,
    /// Persistent writes (counted by the card).
    pub writes: u32,
}

fn total_len(parts: &[&[u8]]) -> u64 {
    parts.iter().map(|p| p.len() as u64).sum()
}

impl OpCount {
    /// Key generation.
    pub fn generate(&mut self, rng: &mut impl CryptoRngCore) -> SecretKey {
        self.keygen += 1;
        generate(rng)
    }

    /// Random bytes.
    pub fn fill(&mut self, rng: &mut impl CryptoRngCore, out: &mut [u8]) {
        self.random_bytes += out.len() as u64;
        rng.fill_bytes(out);
    }

    /// ECDH.
    pub fn ecdh(&mut self, sk: &SecretKey, pk: &PublicKey) -> Secret32 {
        self.ecdh += 1;
        ecdh(sk, pk)
    }

    /// Signature verification (result as a `bool`, so callers can go on
    /// with the same work whatever it says).
    pub fn verify(&mut self, pk: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        self.ecdsa_verify += 1;
        self.verify_bytes += message.len() as u64;
        verify(pk, message, signature).is_ok()
    }

    /// SHA-256.
    pub fn sha256(&mut self, parts: &[&[u8]]) -> [u8; 32] {
        self.sha256 += 1;
        self.sha256_bytes += total_len(parts);
        sha256(parts)
    }

    /// The KDF (one SHA-256 block computation).
    pub fn kdf(&mut self, z: &[u8], fixed_info: &[&[u8]]) -> Secret32 {
        self.sha256 += 1;
        self.sha256_bytes += 4 + z.len() as u64 + total_len(fixed_info);
        kdf(z, fixed_info)
    }

    /// AES-CMAC.
    pub fn cmac(&mut self, key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; MAC_LEN] {
        self.cmac += 1;
        self.cmac_bytes += total_len(parts);
        cmac(key, parts)
    }

    /// [`seal`].
    pub fn seal(
        &mut self,
        k_enc: &[u8; KEY_LEN],
        k_mac: &[u8; KEY_LEN],
        iv: &[u8; IV_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        self.ctr_bytes += plaintext.len() as u64;
        self.cmac += 1;
        self.cmac_bytes += (aad.len() + IV_LEN + plaintext.len()) as u64;
        seal(k_enc, k_mac, iv, aad, plaintext)
    }

    /// [`open`] (the tag is checked whatever happens; decryption only when valid).
    pub fn open(
        &mut self,
        k_enc: &[u8; KEY_LEN],
        k_mac: &[u8; KEY_LEN],
        iv: &[u8; IV_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        self.cmac += 1;
        self.cmac_bytes += (aad.len() + IV_LEN + sealed.len().saturating_sub(TAG_LEN)) as u64;
        let out = open(k_enc, k_mac, iv, aad, sealed)?;
        self.ctr_bytes += out.len() as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn ecdh_agrees_and_points_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let a = generate(&mut rng);
        let b = generate(&mut rng);
        assert_eq!(*ecdh(&a, &b.public_key()), *ecdh(&b, &a.public_key()));
        let enc = encode_point(&a.public_key());
        assert_eq!(decode_point(&enc).unwrap(), a.public_key());
        let mut bad = enc;
        bad[0] = 4;
        assert!(decode_point(&bad).is_err());
        assert!(decode_point(&enc[..32]).is_err());
    }

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
        let k = generate(&mut rng);
        let sig = sign(&k, b"record");
        verify(&k.public_key(), b"record", &sig).unwrap();
        assert_eq!(
            verify(&k.public_key(), b"recorD", &sig),
            Err(Error::BadSignature)
        );
        assert_eq!(
            verify(&k.public_key(), b"record", &sig[..63]),
            Err(Error::BadSignature)
        );
    }

    /// The high-S twin `(r, n - s)` of a valid signature verifies under plain
    /// ECDSA; ours refuses it, and `sign` never produces one.
    #[test]
    fn high_s_is_refused_and_never_produced() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
        let k = generate(&mut rng);
        let mut high_seen = 0;
        for i in 0u8..64 {
            let msg = [i; 5];
            let sig = sign(&k, &msg);
            let parsed = Signature::from_slice(&sig).unwrap();
            assert!(parsed.normalize_s().is_none(), "sign produced high S");
            let neg_s = -*parsed.s();
            let twin = Signature::from_scalars(*parsed.r(), neg_s).unwrap();
            let twin_bytes: [u8; 64] = twin.to_bytes().into();
            // The twin is a valid plain-ECDSA signature...
            assert!(VerifyingKey::from(&k.public_key())
                .verify(&msg, &twin)
                .is_ok());
            // ...which the protocol refuses.
            assert_eq!(
                verify(&k.public_key(), &msg, &twin_bytes),
                Err(Error::BadSignature)
            );
            assert_eq!(normalize_signature(&twin_bytes).unwrap(), sig);
            high_seen += 1;
        }
        assert_eq!(high_seen, 64);
    }

    #[test]
    fn cmac_matches_sp800_38b_example() {
        // NIST SP 800-38B, D.1 example 2 (AES-128, 16-byte message).
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
            .unwrap()
            .try_into()
            .unwrap();
        let msg = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        assert_eq!(
            hex::encode(cmac(&key, &[&msg])),
            "070a16b46b4d4144f79bdd9dd04a287c"
        );
        assert_eq!(cmac(&key, &[&msg[..5], &msg[5..]]), cmac(&key, &[&msg]));
    }

    #[test]
    fn ctr_matches_sp800_38a_example() {
        // NIST SP 800-38A, F.5.1 CTR-AES128.Encrypt, first block.
        let key: [u8; 16] = hex::decode("2b7e151628aed2a6abf7158809cf4f3c")
            .unwrap()
            .try_into()
            .unwrap();
        let iv: [u8; 16] = hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
            .unwrap()
            .try_into()
            .unwrap();
        let mut block = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        ctr_apply(&key, &iv, &mut block);
        assert_eq!(hex::encode(block), "874d6191b620e3261bef6864990db6ce");
    }

    #[test]
    fn kdf_is_sha256_of_counter_z_info() {
        let k = kdf(b"zz", &[b"info"]);
        let full = sha256(&[&[0, 0, 0, 1], b"zz", b"info"]);
        assert_eq!(&k[..], &full[..]);
        assert_eq!(&kdf_key(b"zz", &[b"info"])[..], &full[..16]);
    }

    #[test]
    fn seal_is_ctr_then_cmac_and_open_detects_modification() {
        let (ke, km) = ([1u8; 16], [2u8; 16]);
        let iv = [3u8; 16];
        let sealed = seal(&ke, &km, &iv, b"aad", b"hello");
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        let mut ct = b"hello".to_vec();
        ctr_apply(&ke, &iv, &mut ct);
        assert_eq!(&sealed[..5], &ct[..]);
        assert_eq!(&sealed[5..], &cmac(&km, &[b"aad", &iv, &ct])[..]);
        assert_eq!(open(&ke, &km, &iv, b"aad", &sealed).unwrap(), b"hello");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                open(&ke, &km, &iv, b"aad", &bad),
                Err(Error::DecryptionFailed)
            );
        }
        assert!(open(&ke, &km, &iv, b"AAD", &sealed).is_err());
        assert!(open(&ke, &km, &[4; 16], b"aad", &sealed).is_err());
        assert!(open(&ke, &km, &iv, b"aad", &sealed[..10]).is_err());
        assert!(open(&ke, &km, &iv, b"aad", &[]).is_err());
    }

    #[test]
    fn op_count_counts() {
        let mut ops = OpCount::default();
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let k = ops.generate(&mut rng);
        let _ = ops.ecdh(&k, &k.public_key());
        let _ = ops.kdf(&[0; 32], &[b"ab"]);
        let s = ops.seal(&[0; 16], &[0; 16], &[0; 16], b"x", &[0; 20]);
        assert!(ops.open(&[0; 16], &[0; 16], &[0; 16], b"x", &s).is_ok());
        assert_eq!(
            (ops.keygen, ops.ecdh, ops.sha256, ops.cmac, ops.ctr_bytes),
            (1, 1, 1, 2, 40)
        );
        assert_eq!(ops.sha256_bytes, 4 + 32 + 2);
    }
}
