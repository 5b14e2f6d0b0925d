//! The management key's block ciphers (SP 800-78-4 §3.1): 3-key Triple DES
//! and AES-128/192/256, used on single blocks (ECB) by the GENERAL
//! AUTHENTICATE witness and challenge exchanges (SP 800-73-4 Part 2, Appendix A).

use aes::cipher::{Block, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use alloc::vec::Vec;
use des::TdesEde3;

use crate::consts::alg;

/// Key length in bytes of a management-key algorithm, `None` for others.
pub fn key_len(algorithm: u8) -> Option<usize> {
    match algorithm {
        alg::TDES => Some(24),
        alg::AES128 => Some(16),
        alg::AES192 => Some(24),
        alg::AES256 => Some(32),
        _ => None,
    }
}

/// Block length in bytes (the witness and challenge length).
pub fn block_len(algorithm: u8) -> Option<usize> {
    match algorithm {
        alg::TDES => Some(8),
        alg::AES128 | alg::AES192 | alg::AES256 => Some(16),
        _ => None,
    }
}

fn encrypt_with<C: BlockEncrypt + KeyInit>(key: &[u8], block: &[u8]) -> Option<Vec<u8>> {
    let cipher = C::new_from_slice(key).ok()?;
    let mut b = Block::<C>::default();
    if b.len() != block.len() {
        return None;
    }
    b.copy_from_slice(block);
    cipher.encrypt_block(&mut b);
    Some(b.to_vec())
}

/// Encrypts exactly one block; `None` if the algorithm, key or block length is wrong.
pub fn encrypt_block(algorithm: u8, key: &[u8], block: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        alg::TDES => encrypt_with::<TdesEde3>(key, block),
        alg::AES128 => encrypt_with::<Aes128>(key, block),
        alg::AES192 => encrypt_with::<Aes192>(key, block),
        alg::AES256 => encrypt_with::<Aes256>(key, block),
        _ => None,
    }
}

/// Constant-time equality of two byte strings (lengths are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 197 Appendix C.1 (AES-128).
        let key = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let pt = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        assert_eq!(
            hex::encode(encrypt_block(alg::AES128, &key, &pt).unwrap()),
            "69c4e0d86a7b0430d8cdb78070b4c55a"
        );
        // 3DES with K1 = K2 = K3 is single DES: the classic FIPS 81 example
        // (key 0123456789ABCDEF, "Now is t" -> 3FA40E8A984D4815).
        let k = hex::decode("0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            hex::encode(encrypt_block(alg::TDES, &k, b"Now is t").unwrap()),
            "3fa40e8a984d4815"
        );
        assert!(encrypt_block(alg::TDES, &k, b"short").is_none());
        assert!(encrypt_block(0x11, &k, b"Now is t").is_none());
        assert!(ct_eq(b"ab", b"ab") && !ct_eq(b"ab", b"ac") && !ct_eq(b"a", b"ab"));
    }
}
