//! The signed revocation list and the trust bundle (spec §5.7, §5.8).
//!
//! ```text
//! E3 RevocationList
//!   E4 Body (signed bytes: the whole E4 TLV)
//!     80 01    version = 01
//!     42 1–16  issuer id
//!     81 04    sequence number (u32, strictly increasing per issuer)
//!     82 08    issued at (Unix seconds, u64)
//!     83 08    next update (Unix seconds, u64)
//!     84 8·n   revocation ids (SHA-256(card key)[0..8]), strictly ascending
//!   5F37 40    root signature over the E4 TLV
//!
//! E5 TrustBundle
//!   E6 Body (signed bytes: the whole E6 TLV)
//!     80 01    version = 01
//!     42 1–16  issuer id
//!     86 21    root public key
//!     81 08    bundle issued at (Unix seconds)
//!     7F21 …   station certificates, zero or more
//!     E3 …     the current revocation list
//!   5F37 40    root signature over the E6 TLV
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use p256::PublicKey;

use crate::cert::{Certificate, Role, MAX_REFERENCE_LEN, TAG_CERTIFICATE};
use crate::crypto::{self, SIGNATURE_LEN};
use crate::error::{Error, Result};
use crate::tlv::{self, Sequence};

/// Tag of a revocation list.
pub const TAG_REVOCATION_LIST: u32 = 0xE3;
const TAG_REVOCATION_BODY: u32 = 0xE4;
/// Tag of a trust bundle.
pub const TAG_TRUST_BUNDLE: u32 = 0xE5;
const TAG_BUNDLE_BODY: u32 = 0xE6;
/// Most revocation ids a list may hold (bounds readers' memory: 64 KiB of ids).
pub const MAX_REVOKED: usize = 8192;
/// Most station certificates a bundle may hold.
pub const MAX_STATIONS: usize = 256;
/// Largest encoded trust bundle accepted.
pub const MAX_BUNDLE_LEN: usize = 128 * 1024;

/// A revocation identifier: SHA-256 of the card's compressed public key, first 8 bytes.
pub type RevocationId = [u8; 8];

/// Computes the revocation id of a card key.
pub fn revocation_id(card_key: &PublicKey) -> RevocationId {
    let h = crypto::sha256(&[&crypto::encode_point(card_key)]);
    let mut out = [0u8; 8];
    out.copy_from_slice(h.get(..8).unwrap_or(&[0; 8]));
    out
}

fn check_issuer(issuer: &str) -> Result<()> {
    if issuer.is_empty()
        || issuer.len() > MAX_REFERENCE_LEN
        || !issuer.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::BadValue(0x42));
    }
    Ok(())
}

/// Reads the issuer id field (`42`) and checks it.
fn issuer_field<'a>(s: &mut Sequence<'a>) -> Result<&'a str> {
    let issuer =
        core::str::from_utf8(s.required(0x42)?.value).map_err(|_| Error::BadValue(0x42))?;
    check_issuer(issuer)?;
    Ok(issuer)
}

fn u64_field(f: &tlv::Field<'_>) -> Result<u64> {
    Ok(u64::from_be_bytes(tlv::fixed::<8>(f)?))
}

/// The content of a revocation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationListBody {
    /// Issuer id.
    pub issuer: String,
    /// Sequence number.
    pub sequence: u32,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Next scheduled update, Unix seconds.
    pub next_update: u64,
    /// Revoked card ids (sorted and deduplicated when encoded).
    pub revoked: Vec<RevocationId>,
}

impl RevocationListBody {
    /// The bytes the root signs (the `E4` TLV).
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        check_issuer(&self.issuer)?;
        if self.next_update < self.issued_at {
            return Err(Error::BadValue(0x83));
        }
        let mut ids = self.revoked.clone();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > MAX_REVOKED {
            return Err(Error::TooLong);
        }
        let mut v = Vec::with_capacity(64 + ids.len() * 8);
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x42, self.issuer.as_bytes());
        tlv::push(&mut v, 0x81, &self.sequence.to_be_bytes());
        tlv::push(&mut v, 0x82, &self.issued_at.to_be_bytes());
        tlv::push(&mut v, 0x83, &self.next_update.to_be_bytes());
        tlv::push(&mut v, 0x84, &ids.concat());
        Ok(tlv::encode(TAG_REVOCATION_BODY, &v))
    }
}

/// A signed revocation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationList {
    body: RevocationListBody,
    encoded: Vec<u8>,
    signed: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl RevocationList {
    /// Joins signed body bytes and a raw root signature (does not verify).
    pub fn assemble(body_tlv: &[u8], signature: &[u8]) -> Result<Self> {
        Self::decode(&tlv::join_signed(TAG_REVOCATION_LIST, body_tlv, signature))
    }

    /// Decodes (structure only; see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(Error::TooLong);
        }
        let parts = tlv::split_signed(bytes, TAG_REVOCATION_LIST, TAG_REVOCATION_BODY)?;
        let (body, signature) = (parts.body, parts.signature);
        let mut s = Sequence::new(body.value)?;
        tlv::expect_version_1(&mut s, 0x80)?;
        let issuer = issuer_field(&mut s)?;
        let sequence = u32::from_be_bytes(tlv::fixed::<4>(&s.required(0x81)?)?);
        let issued_at = u64_field(&s.required(0x82)?)?;
        let next_update = u64_field(&s.required(0x83)?)?;
        let ids = s.required(0x84)?;
        s.finish()?;
        if ids.value.len() % 8 != 0 {
            return Err(Error::BadLength(0x84));
        }
        if ids.value.len() / 8 > MAX_REVOKED {
            return Err(Error::TooLong);
        }
        let mut revoked: Vec<RevocationId> = Vec::with_capacity(ids.value.len() / 8);
        for chunk in ids.value.chunks_exact(8) {
            let id: RevocationId = chunk.try_into().map_err(|_| Error::BadLength(0x84))?;
            if revoked.last().is_some_and(|last| *last >= id) {
                return Err(Error::Duplicate);
            }
            revoked.push(id);
        }
        if next_update < issued_at {
            return Err(Error::BadValue(0x83));
        }
        Ok(Self {
            body: RevocationListBody {
                issuer: issuer.into(),
                sequence,
                issued_at,
                next_update,
                revoked,
            },
            encoded: bytes.to_vec(),
            signed: body.raw.to_vec(),
            signature,
        })
    }

    /// Verifies the root signature.
    pub fn verify(&self, root: &PublicKey) -> Result<()> {
        crypto::verify(root, &self.signed, &self.signature)
    }

    /// The content.
    pub fn body(&self) -> &RevocationListBody {
        &self.body
    }

    /// `true` if `id` is revoked.
    pub fn is_revoked(&self, id: &RevocationId) -> bool {
        self.body.revoked.binary_search(id).is_ok()
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }
}

/// The content of a trust bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundleBody {
    /// Issuer id.
    pub issuer: String,
    /// Root public key.
    pub root: PublicKey,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Station certificates.
    pub stations: Vec<Certificate>,
    /// The current revocation list.
    pub revocations: RevocationList,
}

impl TrustBundleBody {
    /// The bytes the root signs (the `E6` TLV).
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        check_issuer(&self.issuer)?;
        if self.stations.len() > MAX_STATIONS {
            return Err(Error::TooLong);
        }
        let mut v = Vec::with_capacity(256 + self.stations.len() * 180);
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x42, self.issuer.as_bytes());
        tlv::push(&mut v, 0x86, &crypto::encode_point(&self.root));
        tlv::push(&mut v, 0x81, &self.issued_at.to_be_bytes());
        for s in &self.stations {
            v.extend_from_slice(s.as_bytes());
        }
        v.extend_from_slice(self.revocations.as_bytes());
        Ok(tlv::encode(TAG_BUNDLE_BODY, &v))
    }
}

/// A signed trust bundle, as partners load it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    body: TrustBundleBody,
    encoded: Vec<u8>,
    signed: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl TrustBundle {
    /// Joins signed body bytes and a raw root signature (does not verify).
    pub fn assemble(body_tlv: &[u8], signature: &[u8]) -> Result<Self> {
        Self::decode(&tlv::join_signed(TAG_TRUST_BUNDLE, body_tlv, signature))
    }

    /// Decodes (structure only; see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(Error::TooLong);
        }
        let parts = tlv::split_signed(bytes, TAG_TRUST_BUNDLE, TAG_BUNDLE_BODY)?;
        let (body, signature) = (parts.body, parts.signature);
        let mut s = Sequence::new(body.value)?;
        tlv::expect_version_1(&mut s, 0x80)?;
        let issuer = issuer_field(&mut s)?;
        let root = crypto::decode_point(s.required(0x86)?.value)?;
        let issued_at = u64_field(&s.required(0x81)?)?;
        let station_fields = s.repeated(TAG_CERTIFICATE);
        if station_fields.len() > MAX_STATIONS {
            return Err(Error::TooLong);
        }
        let mut stations = Vec::with_capacity(station_fields.len());
        for f in station_fields {
            stations.push(Certificate::decode(f.raw)?);
        }
        let revocations = RevocationList::decode(s.required(TAG_REVOCATION_LIST)?.raw)?;
        s.finish()?;
        Ok(Self {
            body: TrustBundleBody {
                issuer: issuer.into(),
                root,
                issued_at,
                stations,
                revocations,
            },
            encoded: bytes.to_vec(),
            signed: body.raw.to_vec(),
            signature,
        })
    }

    /// Verifies everything inside with the bundle's root key: the bundle's
    /// signature, every station certificate (signature, role station, same
    /// issuer), the revocation list (signature, same issuer).
    pub fn verify(&self) -> Result<()> {
        let root = &self.body.root;
        crypto::verify(root, &self.signed, &self.signature)?;
        for s in &self.body.stations {
            if s.body().role != Role::Station || s.body().issuer != self.body.issuer {
                return Err(Error::BadValue(TAG_CERTIFICATE));
            }
            s.verify(root)?;
        }
        if self.body.revocations.body().issuer != self.body.issuer {
            return Err(Error::BadValue(TAG_REVOCATION_LIST));
        }
        self.body.revocations.verify(root)
    }

    /// The content.
    pub fn body(&self) -> &TrustBundleBody {
        &self.body
    }

    /// The station certificate with this fingerprint.
    pub fn station(&self, fingerprint: &[u8; 8]) -> Option<&Certificate> {
        self.body
            .stations
            .iter()
            .find(|c| &c.fingerprint() == fingerprint)
    }

    /// The station certificate whose group-`group` station reference
    /// (SPEC §5.3) is `reference`.
    pub fn station_by_reference(
        &self,
        group: u8,
        reference: &[u8; crate::record::STATION_REF_LEN],
    ) -> Option<&Certificate> {
        self.body.stations.iter().find(|c| {
            crypto::mac_eq(
                &crate::record::station_reference(group, &c.fingerprint()),
                reference,
            )
        })
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttributeSet;
    use crate::cert::CertificateBody;
    use crate::date::Date;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn lists_and_bundles_round_trip_and_verify() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
        let root = crypto::generate(&mut rng);
        let list_body = RevocationListBody {
            issuer: "LIEGE".into(),
            sequence: 3,
            issued_at: 1_790_000_000,
            next_update: 1_790_086_400,
            revoked: alloc::vec![[9; 8], [1; 8], [9; 8]],
        };
        let tbs = list_body.to_be_signed().unwrap();
        let list = RevocationList::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        list.verify(&root.public_key()).unwrap();
        assert!(list.is_revoked(&[1; 8]) && list.is_revoked(&[9; 8]) && !list.is_revoked(&[2; 8]));
        assert_eq!(list.body().revoked.len(), 2);
        let station = CertificateBody {
            group: None,
            issuer: "LIEGE".into(),
            holder: "s1".into(),
            role: Role::Station,
            grants: AttributeSet::EMPTY,
            domain: None,
            effective: Date::new(2026, 1, 1).unwrap(),
            expiry: Date::new(2026, 12, 31).unwrap(),
            public_key: crypto::generate(&mut rng).public_key(),
        }
        .sign(&root)
        .unwrap();
        let body = TrustBundleBody {
            issuer: "LIEGE".into(),
            root: root.public_key(),
            issued_at: 1_790_000_100,
            stations: alloc::vec![station.clone()],
            revocations: list.clone(),
        };
        let tbs = body.to_be_signed().unwrap();
        let bundle = TrustBundle::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.station(&station.fingerprint()), Some(&station));
        let again = TrustBundle::decode(bundle.as_bytes()).unwrap();
        assert_eq!(again, bundle);
        for i in 0..bundle.as_bytes().len() {
            let mut bad = bundle.as_bytes().to_vec();
            bad[i] ^= 0x01;
            assert!(
                TrustBundle::decode(&bad).and_then(|b| b.verify()).is_err(),
                "flip at {i}"
            );
        }
    }
}
