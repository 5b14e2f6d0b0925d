//! Card-verifiable certificates for issuing stations, partner readers,
//! preparers and prepared cards (spec §5.2), in the spirit of BSI TR-03110
//! CV certificates.
//!
//! ```text
//! 7F21 Certificate
//!   7F4E Body (signed bytes: the whole 7F4E TLV)
//!     5F29 01       version = 02
//!     42   1..16    issuer reference (the city's issuer id, ASCII)
//!     5F20 1..16    holder reference (station, partner, preparer or batch, ASCII)
//!     5F4C 05       role (01 station, 02 reader, 03 preparer, 04 prepared card)
//!                   ‖ grants (4-byte attribute mask)
//!     53   10       pseudonym domain (readers only)
//!     54   01       linkability group 0–7 (readers only)
//!     5F25 04       effective date
//!     5F24 04       expiry date
//!     7F49 { 86 21  holder public key, compressed P-256 }
//!   5F37 40         root signature r‖s over the 7F4E TLV
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use p256::{PublicKey, SecretKey};

use crate::attr::AttributeSet;
use crate::consts::PROTOCOL_VERSION;
use crate::crypto::{self, POINT_LEN, SIGNATURE_LEN};
use crate::date::Date;
use crate::error::{Error, Result};
use crate::limits::{MAX_CERTIFICATE_LEN, MAX_GROUPS};
use crate::tlv::{self, Sequence};

/// Tag of a certificate.
pub const TAG_CERTIFICATE: u32 = 0x7F21;
/// Tag of a certificate body.
pub const TAG_BODY: u32 = 0x7F4E;
/// Tag of a signature.
pub const TAG_SIGNATURE: u32 = 0x5F37;
const TAG_VERSION: u32 = 0x5F29;
const TAG_ISSUER: u32 = 0x42;
const TAG_HOLDER: u32 = 0x5F20;
const TAG_AUTHORISATION: u32 = 0x5F4C;
const TAG_DOMAIN: u32 = 0x53;
const TAG_GROUP: u32 = 0x54;
const TAG_EFFECTIVE: u32 = 0x5F25;
const TAG_EXPIRY: u32 = 0x5F24;
const TAG_PUBLIC_KEY: u32 = 0x7F49;
const TAG_POINT: u32 = 0x86;

/// Length of a certificate fingerprint (first bytes of SHA-256 over the certificate).
pub const FINGERPRINT_LEN: usize = 8;
/// Length of a pseudonym domain.
pub const DOMAIN_LEN: usize = 16;
/// Maximum length of issuer and holder references.
pub const MAX_REFERENCE_LEN: usize = 16;

/// What a certificate's holder may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// An issuing station: may personalise and terminate cards (signed by the root).
    Station,
    /// A partner reader: may read the attributes its certificate grants (signed by the root).
    Reader,
    /// A preparer: certifies prepared cards' attestation keys (signed by the root).
    Preparer,
    /// A prepared card's attestation key (signed by a preparer).
    PreparedCard,
}

impl Role {
    /// The role byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Station => 1,
            Self::Reader => 2,
            Self::Preparer => 3,
            Self::PreparedCard => 4,
        }
    }

    /// Decodes the role byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Station),
            2 => Some(Self::Reader),
            3 => Some(Self::Preparer),
            4 => Some(Self::PreparedCard),
            _ => None,
        }
    }
}

/// The signed content of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateBody {
    /// The issuer (city) identifier; must equal the root's.
    pub issuer: String,
    /// The holder's name (station or partner).
    pub holder: String,
    /// Station or reader.
    pub role: Role,
    /// Attributes a reader may read (empty for stations).
    pub grants: AttributeSet,
    /// The reader's pseudonym domain (readers only).
    pub domain: Option<[u8; DOMAIN_LEN]>,
    /// The reader's linkability group, `0..MAX_GROUPS` (readers only).
    pub group: Option<u8>,
    /// First valid day.
    pub effective: Date,
    /// Last valid day.
    pub expiry: Date,
    /// The holder's public key.
    pub public_key: PublicKey,
}

fn check_reference(s: &str, tag: u32) -> Result<()> {
    if s.is_empty() || s.len() > MAX_REFERENCE_LEN {
        return Err(Error::BadLength(tag));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadValue(tag));
    }
    Ok(())
}

impl CertificateBody {
    /// Checks field constraints (lengths, role/domain consistency, dates).
    pub fn validate(&self) -> Result<()> {
        check_reference(&self.issuer, TAG_ISSUER)?;
        check_reference(&self.holder, TAG_HOLDER)?;
        match (
            self.role,
            self.domain.is_some(),
            self.group,
            self.grants.is_empty(),
        ) {
            (Role::Reader, true, Some(g), _) if usize::from(g) < MAX_GROUPS => {}
            (Role::Station | Role::Preparer | Role::PreparedCard, false, None, true) => {}
            _ => return Err(Error::BadValue(TAG_AUTHORISATION)),
        }
        if self.expiry < self.effective {
            return Err(Error::BadValue(TAG_EXPIRY));
        }
        Ok(())
    }

    /// The bytes the root signs: the encoded `7F4E` TLV.
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut v = Vec::with_capacity(128);
        tlv::push(&mut v, TAG_VERSION, &[PROTOCOL_VERSION]);
        tlv::push(&mut v, TAG_ISSUER, self.issuer.as_bytes());
        tlv::push(&mut v, TAG_HOLDER, self.holder.as_bytes());
        let mut auth = [0u8; 5];
        auth[0] = self.role.to_byte();
        auth[1..].copy_from_slice(&self.grants.to_bytes());
        tlv::push(&mut v, TAG_AUTHORISATION, &auth);
        if let Some(domain) = &self.domain {
            tlv::push(&mut v, TAG_DOMAIN, domain);
        }
        if let Some(group) = self.group {
            tlv::push(&mut v, TAG_GROUP, &[group]);
        }
        tlv::push(&mut v, TAG_EFFECTIVE, &self.effective.to_bytes());
        tlv::push(&mut v, TAG_EXPIRY, &self.expiry.to_bytes());
        tlv::push(
            &mut v,
            TAG_PUBLIC_KEY,
            &tlv::encode(TAG_POINT, &crypto::encode_point(&self.public_key)),
        );
        Ok(tlv::encode(TAG_BODY, &v))
    }

    /// Signs with the issuing key — the root, or a preparer for a prepared-card
    /// certificate (for file-held keys; HSMs sign [`Self::to_be_signed`]
    /// themselves and call [`Certificate::assemble`]).
    pub fn sign(self, root: &SecretKey) -> Result<Certificate> {
        let tbs = self.to_be_signed()?;
        let sig = crypto::sign(root, &tbs);
        Certificate::assemble(&tbs, &sig)
    }

    fn decode(body_tlv: &[u8]) -> Result<Self> {
        let body = tlv::read_exact(body_tlv, TAG_BODY)?;
        let mut s = Sequence::new(body.value)?;
        tlv::expect_version(&mut s, TAG_VERSION, PROTOCOL_VERSION)?;
        let text = |tag: u32, f: tlv::Field<'_>| -> Result<String> {
            let s = core::str::from_utf8(f.value).map_err(|_| Error::BadValue(tag))?;
            check_reference(s, tag)?;
            Ok(String::from(s))
        };
        let issuer = text(TAG_ISSUER, s.required(TAG_ISSUER)?)?;
        let holder = text(TAG_HOLDER, s.required(TAG_HOLDER)?)?;
        let auth = tlv::fixed::<5>(&s.required(TAG_AUTHORISATION)?)?;
        let role = Role::from_byte(auth[0]).ok_or(Error::BadValue(TAG_AUTHORISATION))?;
        let grants =
            AttributeSet::from_bytes(&auth[1..]).map_err(|_| Error::BadValue(TAG_AUTHORISATION))?;
        let domain = s
            .optional(TAG_DOMAIN)?
            .map(|f| tlv::fixed::<DOMAIN_LEN>(&f))
            .transpose()?;
        let group = s
            .optional(TAG_GROUP)?
            .map(|f| tlv::fixed::<1>(&f).map(|[g]| g))
            .transpose()?;
        let effective = Date::from_bytes(s.required(TAG_EFFECTIVE)?.value)?;
        let expiry = Date::from_bytes(s.required(TAG_EXPIRY)?.value)?;
        let pk_field = s.required(TAG_PUBLIC_KEY)?;
        s.finish()?;
        let point = tlv::read_exact(pk_field.value, TAG_POINT)?;
        if point.value.len() != POINT_LEN {
            return Err(Error::BadLength(TAG_POINT));
        }
        let public_key = crypto::decode_point(point.value)?;
        let body = Self {
            issuer,
            holder,
            role,
            grants,
            domain,
            group,
            effective,
            expiry,
            public_key,
        };
        body.validate()?;
        Ok(body)
    }
}

/// A certificate as encoded on the wire, with its decoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    body: CertificateBody,
    encoded: Vec<u8>,
    signed: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl Certificate {
    /// Joins signed body bytes (from [`CertificateBody::to_be_signed`]) and a
    /// raw signature into a certificate. Does not verify the signature.
    pub fn assemble(body_tlv: &[u8], signature: &[u8]) -> Result<Self> {
        Self::decode(&tlv::join_signed(TAG_CERTIFICATE, body_tlv, signature))
    }

    /// Decodes a certificate (structure and field checks only; see [`Self::verify`]).
    /// Longer than [`MAX_CERTIFICATE_LEN`]: [`Error::TooLong`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_CERTIFICATE_LEN {
            return Err(Error::TooLong);
        }
        let parts = tlv::split_signed(bytes, TAG_CERTIFICATE, TAG_BODY)?;
        let body = CertificateBody::decode(parts.body.raw)?;
        Ok(Self {
            body,
            encoded: bytes.to_vec(),
            signed: parts.body.raw.to_vec(),
            signature: parts.signature,
        })
    }

    /// Verifies the issuing key's signature (low S).
    pub fn verify(&self, root: &PublicKey) -> Result<()> {
        crypto::verify(root, self.signed_bytes(), &self.signature)
    }

    /// The signed bytes (the `7F4E` TLV).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// The decoded body.
    pub fn body(&self) -> &CertificateBody {
        &self.body
    }

    /// The raw signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The full encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The certificate's fingerprint: the first 8 bytes of SHA-256 over its encoding.
    pub fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        fingerprint(&self.encoded)
    }

    /// `true` when `date` is within the validity window (inclusive).
    pub fn is_valid_on(&self, date: Date) -> bool {
        self.body.effective <= date && date <= self.body.expiry
    }
}

/// Fingerprint of an encoded certificate.
pub fn fingerprint(encoded: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let h = crypto::sha256(&[encoded]);
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(h.get(..FINGERPRINT_LEN).unwrap_or(&[0; FINGERPRINT_LEN]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttributeId;
    use rand_chacha::rand_core::SeedableRng;

    fn body(pk: PublicKey) -> CertificateBody {
        CertificateBody {
            issuer: "LIEGE".into(),
            holder: "library".into(),
            role: Role::Reader,
            grants: AttributeSet::EMPTY
                .with(AttributeId::PSEUDONYM)
                .with(AttributeId::RESIDENT),
            domain: Some([9; 16]),
            group: Some(3),
            effective: Date::new(2026, 1, 1).unwrap(),
            expiry: Date::new(2027, 1, 1).unwrap(),
            public_key: pk,
        }
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let root = crypto::generate(&mut rng);
        let reader = crypto::generate(&mut rng);
        let cert = body(reader.public_key()).sign(&root).unwrap();
        let again = Certificate::decode(cert.as_bytes()).unwrap();
        assert_eq!(again.body(), cert.body());
        again.verify(&root.public_key()).unwrap();
        assert!(again.verify(&reader.public_key()).is_err());
        assert!(cert.as_bytes().len() < 200, "{}", cert.as_bytes().len());
    }

    #[test]
    fn any_flipped_byte_is_rejected() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([2; 32]);
        let root = crypto::generate(&mut rng);
        let cert = body(crypto::generate(&mut rng).public_key())
            .sign(&root)
            .unwrap();
        for i in 0..cert.as_bytes().len() {
            let mut bad = cert.as_bytes().to_vec();
            bad[i] ^= 0x01;
            let accepted = Certificate::decode(&bad).and_then(|c| c.verify(&root.public_key()));
            assert!(accepted.is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn station_cannot_carry_grants() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let mut b = body(crypto::generate(&mut rng).public_key());
        b.role = Role::Station;
        assert!(b.to_be_signed().is_err());
        b.domain = None;
        b.grants = AttributeSet::EMPTY;
        assert!(b.to_be_signed().is_err(), "a station has no group");
        b.group = None;
        assert!(b.to_be_signed().is_ok());
        for role in [Role::Preparer, Role::PreparedCard] {
            b.role = role;
            let c = b.clone().sign(&crypto::generate(&mut rng)).unwrap();
            assert_eq!(Certificate::decode(c.as_bytes()).unwrap().body().role, role);
        }
    }

    #[test]
    fn a_reader_needs_a_group_below_eight() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
        let root = crypto::generate(&mut rng);
        let mut b = body(crypto::generate(&mut rng).public_key());
        b.group = None;
        assert!(b.to_be_signed().is_err());
        b.group = Some(8);
        assert!(b.to_be_signed().is_err());
        b.group = Some(7);
        let cert = b.sign(&root).unwrap();
        assert_eq!(cert.body().group, Some(7));
        // The group field sits after the domain: tag 54, length 1.
        let at = cert
            .as_bytes()
            .windows(3)
            .position(|w| w == [0x54, 0x01, 0x07])
            .unwrap();
        assert!(at > 0);
    }

    #[test]
    fn version_one_and_oversized_certificates_are_refused() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
        let root = crypto::generate(&mut rng);
        let cert = body(crypto::generate(&mut rng).public_key())
            .sign(&root)
            .unwrap();
        let mut v1 = cert.as_bytes().to_vec();
        let at = v1.windows(3).position(|w| w == [0x5F, 0x29, 0x01]).unwrap();
        v1[at + 3] = 1;
        assert_eq!(
            Certificate::decode(&v1).unwrap_err(),
            Error::UnsupportedVersion(1)
        );
        assert_eq!(
            Certificate::decode(&[0u8; MAX_CERTIFICATE_LEN + 1]).unwrap_err(),
            Error::TooLong
        );
    }
}
