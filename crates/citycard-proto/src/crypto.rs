//! The cryptographic primitives of the protocol (spec §7.1), in one place.
//!
//! - Curve: NIST P-256; points travel compressed (33 bytes).
//! - Signatures: ECDSA P-256 with SHA-256, raw `r‖s` (64 bytes).
//! - Key agreement: ECDH P-256, shared secret = x-coordinate (32 bytes).
//! - KDF: the one-step KDF of NIST SP 800-56C rev. 2 with SHA-256
//!   (`K = SHA-256(00000001 ‖ Z ‖ FixedInfo)`, truncated), as in BSI TR-03110;
//!   one or two SHA-256 blocks on the card instead of HKDF's four HMAC passes.
//! - MAC and PRF: AES-128-CMAC (NIST SP 800-38B), 16 bytes.
//! - Cipher: AES-128-GCM, 12-byte nonce, 16-byte tag.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use alloc::vec::Vec;
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
/// Length of the truncated MAC.
pub const MAC_LEN: usize = 16;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;

/// A 32-byte secret (shared secret or derived key) that is wiped on drop.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
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

/// One-step KDF (NIST SP 800-56C rev. 2, option 1, SHA-256) with a single
/// counter block: the first `N` (≤ 32) bytes of
/// `SHA-256(00 00 00 01 ‖ z ‖ fixed_info…)`.
pub fn kdf<const N: usize>(z: &[u8], fixed_info: &[&[u8]]) -> Zeroizing<[u8; N]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for part in fixed_info {
        h.update(part);
    }
    let full = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    let mut out = Zeroizing::new([0u8; N]);
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    out
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

/// AES-128-GCM encryption.
pub fn seal(key: &[u8; 16], nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes128Gcm::new(key.into());
    // Encryption only fails for inputs beyond GCM's 64 GiB limit.
    cipher
        .encrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default()
}

/// AES-128-GCM decryption; fails on any modification.
pub fn open(key: &[u8; 16], nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
    let cipher = Aes128Gcm::new(key.into());
    cipher
        .decrypt(
            &Nonce::from(*nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| Error::DecryptionFailed)
}

/// ECDSA P-256 / SHA-256 signature over `message`, raw `r‖s`. Deterministic (RFC 6979).
pub fn sign(sk: &SecretKey, message: &[u8]) -> [u8; SIGNATURE_LEN] {
    let signing = SigningKey::from(sk);
    let sig: Signature = signing.sign(message);
    sig.to_bytes().into()
}

/// Verifies a raw `r‖s` ECDSA P-256 / SHA-256 signature.
pub fn verify(pk: &PublicKey, message: &[u8], signature: &[u8]) -> Result<()> {
    let sig = Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
    VerifyingKey::from(pk)
        .verify(message, &sig)
        .map_err(|_| Error::BadSignature)
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
        assert!(decode_point(&[2; 33]).is_err() || decode_point(&[2; 33]).is_ok());
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
    fn kdf_is_sha256_of_counter_z_info() {
        let k = kdf::<16>(b"zz", &[b"info"]);
        let full = sha256(&[&[0, 0, 0, 1], b"zz", b"info"]);
        assert_eq!(&k[..], &full[..16]);
    }

    #[test]
    fn aead_detects_modification() {
        let key = [1u8; 16];
        let ct = seal(&key, &[0; 12], b"aad", b"hello");
        assert_eq!(open(&key, &[0; 12], b"aad", &ct).unwrap(), b"hello");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            open(&key, &[0; 12], b"aad", &bad),
            Err(Error::DecryptionFailed)
        );
        assert_eq!(
            open(&key, &[0; 12], b"AAD", &ct),
            Err(Error::DecryptionFailed)
        );
    }
}
