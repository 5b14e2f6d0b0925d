//! PIV management keys (key reference `9B`, SP 800-73-4 Part 2 Appendix A):
//! the city's 3DES or AES key that lets an issuing station write to a PIV
//! card, in a file or as a secret key object on a PKCS#11 token.
//!
//! Issuing needs only single-block ECB operations: decrypting the card's
//! witness and encrypting the host's challenge. A file key is held in memory
//! (zeroized on drop) and used with RustCrypto `des`/`aes`; a token key never
//! leaves the token, which does the block operations (`C_Encrypt` /
//! `C_Decrypt` with `CKM_DES3_ECB` or `CKM_AES_ECB`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use aes::cipher::{Block, BlockDecrypt, BlockEncrypt, KeyInit};
use citycard_proto::piv::{ManagementAlgorithm, DEFAULT_MANAGEMENT_KEY};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use crate::file::key_file_metadata;
use crate::location::{parse_pkcs11, LocatorParseError};
use crate::pkcs11::{attribute, find, login, the_one};
use crate::{KeyError, Pkcs11Location, SecretSource};

/// Management key files larger than this are not management key files.
const MAX_FILE_LEN: u64 = 4096;

/// A PIV management key, wherever it lives: one-block ECB encryption and
/// decryption with the card's management-key algorithm.
pub trait ManagementKey: Send {
    /// The block cipher (and so the `P1` of GENERAL AUTHENTICATE).
    fn algorithm(&self) -> ManagementAlgorithm;

    /// Encrypts exactly one block (8 bytes for 3DES, 16 for AES).
    fn encrypt_block(&self, block: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// Decrypts exactly one block.
    fn decrypt_block(&self, block: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// Where the key lives, for messages (never secret).
    fn locator(&self) -> String;
}

impl std::fmt::Debug for dyn ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementKey")
            .field("algorithm", &self.algorithm())
            .field("locator", &self.locator())
            .finish_non_exhaustive()
    }
}

/// Where a management key lives: a file holding the key in hex, or a secret
/// key object on a PKCS#11 token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagementKeyLocation {
    /// A file with the key in hex on its own line (mode 0600 or stricter).
    File(PathBuf),
    /// A `CKO_SECRET_KEY` (`CKK_DES3` or `CKK_AES`) labelled `key_label`.
    Pkcs11(Pkcs11Location),
}

impl ManagementKeyLocation {
    /// `file:/path`, or `pkcs11:token=…;object=…;type=secret-key?module-path=…`.
    pub fn locator(&self) -> String {
        match self {
            Self::File(p) => format!("file:{}", p.display()),
            Self::Pkcs11(p) => p.locator_of_type("secret-key"),
        }
    }
}

impl std::fmt::Display for ManagementKeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.locator())
    }
}

impl FromStr for ManagementKeyLocation {
    type Err = LocatorParseError;

    /// Parses `file:/path`, a bare path, or
    /// `pkcs11:token=T;object=L[;type=secret-key]?module-path=M`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("pkcs11:") {
            return Ok(Self::Pkcs11(parse_pkcs11(rest, "secret-key")?));
        }
        let path = s.strip_prefix("file:").unwrap_or(s);
        if path.is_empty() {
            return Err(LocatorParseError("empty path"));
        }
        Ok(Self::File(path.into()))
    }
}

/// Opens the management key at `loc` for `algorithm` (a token key's type and
/// length must match it; a file key's length too).
pub fn open_management_key(
    loc: &ManagementKeyLocation,
    algorithm: ManagementAlgorithm,
    secrets: &dyn SecretSource,
) -> Result<Box<dyn ManagementKey>, KeyError> {
    match loc {
        ManagementKeyLocation::File(path) => {
            Ok(Box::new(SoftManagementKey::from_file(path, algorithm)?))
        }
        ManagementKeyLocation::Pkcs11(p) => {
            Ok(Box::new(Pkcs11ManagementKey::open(p, algorithm, secrets)?))
        }
    }
}

/// The algorithms whose factory key is `0102030405060708` × 3: 3DES (PIV
/// cards, YubiKey before firmware 5.7) and AES-192 (YubiKey 5.7 and later).
pub const FACTORY_DEFAULT_ALGORITHMS: [ManagementAlgorithm; 2] =
    [ManagementAlgorithm::TripleDes, ManagementAlgorithm::Aes192];

/// Whether `key` is the public factory default key (see
/// [`FACTORY_DEFAULT_ALGORITHMS`]): compared by a known-answer block
/// operation, so it works for a token key whose value cannot be read.
pub fn is_factory_default(key: &dyn ManagementKey) -> Result<bool, KeyError> {
    let alg = key.algorithm();
    if !FACTORY_DEFAULT_ALGORITHMS.contains(&alg) {
        return Ok(false);
    }
    let default = SoftManagementKey::factory_default(alg);
    let probe: Vec<u8> = (0u8..).take(alg.block_len()).collect();
    Ok(key.encrypt_block(&probe)? == default.encrypt_block(&probe)?)
}

/// A management key held in memory (from a file, or given as bytes).
pub struct SoftManagementKey {
    algorithm: ManagementAlgorithm,
    key: Zeroizing<Vec<u8>>,
    origin: String,
}

impl std::fmt::Debug for SoftManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftManagementKey")
            .field("algorithm", &self.algorithm)
            .field("origin", &self.origin)
            .field("key", &"REDACTED")
            .finish()
    }
}

fn bad_key(origin: &str, reason: impl Into<String>) -> KeyError {
    KeyError::BadManagementKey {
        origin: origin.to_owned(),
        reason: reason.into(),
    }
}

impl SoftManagementKey {
    /// A key from its bytes; `origin` names it in messages (never the value).
    pub fn new(algorithm: ManagementAlgorithm, key: &[u8], origin: &str) -> Result<Self, KeyError> {
        if key.len() != algorithm.key_len() {
            return Err(bad_key(
                origin,
                format!(
                    "{} bytes, but {} needs {}",
                    key.len(),
                    algorithm.name(),
                    algorithm.key_len()
                ),
            ));
        }
        Ok(Self {
            algorithm,
            key: Zeroizing::new(key.to_vec()),
            origin: origin.to_owned(),
        })
    }

    /// The public factory key `0102030405060708` × 3 for `algorithm` (3DES or
    /// AES-192; for AES-128/256 its first 16 or a repetition to 32 bytes, which
    /// no card ships with). For probing cards and tests only.
    pub fn factory_default(algorithm: ManagementAlgorithm) -> Self {
        let key: Vec<u8> = DEFAULT_MANAGEMENT_KEY
            .iter()
            .copied()
            .cycle()
            .take(algorithm.key_len())
            .collect();
        Self {
            algorithm,
            key: Zeroizing::new(key),
            origin: "factory default".into(),
        }
    }

    /// Reads a key file: the key in hex on its own line (blank lines and
    /// lines starting with `#` are ignored). Refuses a file that group or
    /// others may read or write (like `ssh` does with private keys).
    pub fn from_file(path: &Path, algorithm: ManagementAlgorithm) -> Result<Self, KeyError> {
        let origin = format!("file:{}", path.display());
        let meta = key_file_metadata(path)?;
        if !meta.is_file() || meta.len() > MAX_FILE_LEN {
            return Err(bad_key(&origin, "not a management key file"));
        }
        check_owner_only(path, &meta)?;
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.to_owned(),
                    source,
                })?,
            );
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(bad_key(
                &origin,
                "expected exactly one line with the key in hex",
            ));
        };
        let key = Zeroizing::new(
            hex::decode(line).map_err(|_| bad_key(&origin, "the key line is not hex"))?,
        );
        Self::new(algorithm, &key, &origin)
    }

    fn run(&self, block: &[u8], encrypt: bool) -> Result<Vec<u8>, KeyError> {
        let out = match self.algorithm {
            ManagementAlgorithm::TripleDes => one_block::<des::TdesEde3>(&self.key, block, encrypt),
            ManagementAlgorithm::Aes128 => one_block::<aes::Aes128>(&self.key, block, encrypt),
            ManagementAlgorithm::Aes192 => one_block::<aes::Aes192>(&self.key, block, encrypt),
            ManagementAlgorithm::Aes256 => one_block::<aes::Aes256>(&self.key, block, encrypt),
        };
        out.ok_or_else(|| {
            bad_key(
                &self.origin,
                format!("not one {}-byte block", self.algorithm.block_len()),
            )
        })
    }
}

fn one_block<C: BlockEncrypt + BlockDecrypt + KeyInit>(
    key: &[u8],
    block: &[u8],
    encrypt: bool,
) -> Option<Vec<u8>> {
    let cipher = C::new_from_slice(key).ok()?;
    let mut b = Block::<C>::default();
    if b.len() != block.len() {
        return None;
    }
    b.copy_from_slice(block);
    if encrypt {
        cipher.encrypt_block(&mut b);
    } else {
        cipher.decrypt_block(&mut b);
    }
    Some(b.to_vec())
}

#[cfg(unix)]
fn check_owner_only(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), KeyError> {
    Ok(())
}

impl ManagementKey for SoftManagementKey {
    fn algorithm(&self) -> ManagementAlgorithm {
        self.algorithm
    }

    fn encrypt_block(&self, block: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.run(block, true)
    }

    fn decrypt_block(&self, block: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.run(block, false)
    }

    fn locator(&self) -> String {
        self.origin.clone()
    }
}

/// A management key on a PKCS#11 token: a secret key object (`CKK_DES3` for
/// 3DES, `CKK_AES` of the right length for AES) with `CKA_ENCRYPT` and
/// `CKA_DECRYPT`. The key never leaves the token; one logged-in session.
pub struct Pkcs11ManagementKey {
    loc: Pkcs11Location,
    algorithm: ManagementAlgorithm,
    session: Session,
    key: ObjectHandle,
}

impl std::fmt::Debug for Pkcs11ManagementKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11ManagementKey")
            .field("location", &self.loc)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Pkcs11ManagementKey {
    /// Opens the secret key labelled `loc.key_label` on the token and checks
    /// its type (and, for AES, its length) against `algorithm`.
    pub fn open(
        loc: &Pkcs11Location,
        algorithm: ManagementAlgorithm,
        secrets: &dyn SecretSource,
    ) -> Result<Self, KeyError> {
        let session = login(loc, secrets, false)?;
        let found = find(
            &session,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(loc.key_label.as_bytes().to_vec()),
            ],
        )?;
        let key = the_one(&found, loc, "secret keys")?;
        let origin = loc.locator_of_type("secret-key");
        let expected = match algorithm {
            ManagementAlgorithm::TripleDes => KeyType::DES3,
            _ => KeyType::AES,
        };
        match attribute(&session, key, AttributeType::KeyType)? {
            Some(Attribute::KeyType(t)) if t == expected => {}
            _ => {
                return Err(bad_key(
                    &origin,
                    format!("the token key is not a {} key", algorithm.name()),
                ))
            }
        }
        if expected == KeyType::AES {
            if let Some(Attribute::ValueLen(len)) =
                attribute(&session, key, AttributeType::ValueLen)?
            {
                if usize::from(len) != algorithm.key_len() {
                    return Err(bad_key(
                        &origin,
                        format!(
                            "the token key is {} bytes, but {} needs {}",
                            usize::from(len),
                            algorithm.name(),
                            algorithm.key_len()
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            loc: loc.clone(),
            algorithm,
            session,
            key,
        })
    }

    fn mechanism(&self) -> Mechanism<'static> {
        match self.algorithm {
            ManagementAlgorithm::TripleDes => Mechanism::Des3Ecb,
            _ => Mechanism::AesEcb,
        }
    }

    fn check_block(&self, block: &[u8]) -> Result<(), KeyError> {
        if block.len() != self.algorithm.block_len() {
            return Err(bad_key(
                &self.locator(),
                format!("not one {}-byte block", self.algorithm.block_len()),
            ));
        }
        Ok(())
    }

    /// One block through the token key (`C_Encrypt` or `C_Decrypt`).
    fn run(&self, block: &[u8], encrypt: bool) -> Result<Vec<u8>, KeyError> {
        self.check_block(block)?;
        let out = if encrypt {
            self.session
                .encrypt(&self.mechanism(), self.key, block)
                .map_err(KeyError::pkcs11("C_Encrypt"))?
        } else {
            self.session
                .decrypt(&self.mechanism(), self.key, block)
                .map_err(KeyError::pkcs11("C_Decrypt"))?
        };
        if out.len() != block.len() {
            return Err(KeyError::BadTokenOutput("block length"));
        }
        Ok(out)
    }
}

impl ManagementKey for Pkcs11ManagementKey {
    fn algorithm(&self) -> ManagementAlgorithm {
        self.algorithm
    }

    fn encrypt_block(&self, block: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.run(block, true)
    }

    fn decrypt_block(&self, block: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.run(block, false)
    }

    fn locator(&self) -> String {
        self.loc.locator_of_type("secret-key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_and_round_trip() {
        // FIPS 197 Appendix C.1 (AES-128).
        let key = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let k = SoftManagementKey::new(ManagementAlgorithm::Aes128, &key, "t").unwrap();
        let pt = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        let ct = k.encrypt_block(&pt).unwrap();
        assert_eq!(hex::encode(&ct), "69c4e0d86a7b0430d8cdb78070b4c55a");
        assert_eq!(k.decrypt_block(&ct).unwrap(), pt);
        // 3DES with K1 = K2 = K3 is single DES (FIPS 81 example).
        let k = hex::decode("0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
        let k = SoftManagementKey::new(ManagementAlgorithm::TripleDes, &k, "t").unwrap();
        assert_eq!(
            hex::encode(k.encrypt_block(b"Now is t").unwrap()),
            "3fa40e8a984d4815"
        );
        assert!(k.encrypt_block(b"short").is_err());
        assert!(SoftManagementKey::new(ManagementAlgorithm::Aes256, &[0; 24], "t").is_err());
    }

    #[test]
    fn the_factory_key_is_recognised_for_3des_and_aes192_only() {
        for alg in [
            ManagementAlgorithm::TripleDes,
            ManagementAlgorithm::Aes128,
            ManagementAlgorithm::Aes192,
            ManagementAlgorithm::Aes256,
        ] {
            let d = SoftManagementKey::factory_default(alg);
            assert_eq!(
                is_factory_default(&d).unwrap(),
                FACTORY_DEFAULT_ALGORITHMS.contains(&alg),
                "{alg:?}"
            );
            let other = SoftManagementKey::new(alg, &vec![0x5A; alg.key_len()], "t").unwrap();
            assert!(!is_factory_default(&other).unwrap());
        }
        assert!(!format!(
            "{:?}",
            SoftManagementKey::factory_default(ManagementAlgorithm::TripleDes)
        )
        .contains("0102"));
    }

    #[test]
    fn locators_parse() {
        let l: ManagementKeyLocation =
            "pkcs11:token=city;object=mgm;type=secret-key?module-path=/m.so"
                .parse()
                .unwrap();
        assert_eq!(
            l.locator(),
            "pkcs11:token=city;object=mgm;type=secret-key?module-path=/m.so"
        );
        assert_eq!(l.locator().parse::<ManagementKeyLocation>().unwrap(), l);
        assert!("pkcs11:token=c;object=m;type=private?module-path=/m.so"
            .parse::<ManagementKeyLocation>()
            .is_err());
        assert_eq!(
            "/etc/mgm.key".parse::<ManagementKeyLocation>().unwrap(),
            ManagementKeyLocation::File("/etc/mgm.key".into())
        );
    }
}
