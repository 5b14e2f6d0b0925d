//! The signed revocation list and the trust bundle (spec §5.7, §5.8).
//!
//! ```text
//! E3 RevocationList                          at most MAX_REVOCATION_LIST_LEN bytes
//!   E4 Body (signed bytes: the whole E4 TLV)
//!     80 01    version = 01
//!     42 1–16  issuer id
//!     85 01    linkability group (0–7; every current card and partner: 0)
//!     81 04    sequence number (u32, strictly increasing per issuer and group)
//!     82 08    issued at (Unix seconds, u64)
//!     83 08    next update (Unix seconds, u64)
//!     84 04    n, the number of revoked ids (u32, at most MAX_REVOKED)
//!     86 01    Rice parameter k (0–63, the one that gives the shortest 87)
//!     87 …     the ids, strictly ascending, Rice-coded (see below)
//!   5F37 40    root signature over the E4 TLV
//!
//! E5 TrustBundle                             at most MAX_BUNDLE_LEN bytes
//!   E6 Body (signed bytes: the whole E6 TLV)
//!     80 01    version = 01
//!     42 1–16  issuer id
//!     85 01    linkability group (the list's group)
//!     86 21    root public key
//!     81 08    bundle issued at (Unix seconds)
//!     7F21 …   station certificates, zero or more (at most MAX_STATIONS)
//!     E3 …     the group's current revocation list
//!   5F37 40    root signature over the E6 TLV
//! ```
//!
//! A revocation id is 8 bytes, read as a big-endian `u64`. The ids are coded
//! as the gaps `d0 = id0`, `di = id(i) − id(i−1) − 1`, each gap as Golomb–Rice
//! with parameter `k`: `d >> k` one bits, a zero bit, then the low `k` bits of
//! `d`, most significant bit first, the whole padded with zero bits to a
//! byte. Ids are hash outputs, so the gaps are geometric-like and this takes
//! about `k + 2` bits per id (49 bits at 100,000 ids instead of 64).
//!
//! One file on purpose: the list and the bundle share their limits, encoders
//! and signature checks (the bundle carries the list), and the tests at the
//! bottom check writer and reader against the same constants.

use alloc::string::String;
use alloc::vec::Vec;
use p256::PublicKey;

use crate::cert::{Certificate, Role, MAX_REFERENCE_LEN, TAG_CERTIFICATE};
use crate::crypto::{self, SIGNATURE_LEN};
use crate::error::{Error, Result};
use crate::tlv::{self, Sequence, MAX_CARD_OBJECT_LEN};

/// Tag of a revocation list.
pub const TAG_REVOCATION_LIST: u32 = 0xE3;
const TAG_REVOCATION_BODY: u32 = 0xE4;
/// Tag of a trust bundle.
pub const TAG_TRUST_BUNDLE: u32 = 0xE5;
const TAG_BUNDLE_BODY: u32 = 0xE6;
const TAG_GROUP: u32 = 0x85;
const TAG_COUNT: u32 = 0x84;
const TAG_RICE_PARAMETER: u32 = 0x86;
const TAG_CODED_IDS: u32 = 0x87;

/// Number of linkability groups; a group number is `0..GROUP_COUNT`.
pub const GROUP_COUNT: u8 = 8;
/// Most revocation ids a list may hold (a reader keeps them sorted in memory:
/// 8 MiB at the limit).
pub const MAX_REVOKED: usize = 1 << 20;
/// Longest Rice-coded id field: with the best parameter no id takes more than
/// 65 bits (`k = 63` bounds every gap to one quotient bit).
pub const MAX_CODED_IDS_LEN: usize = (MAX_REVOKED * 65).div_ceil(8);
/// Largest encoded revocation list (`E3`), writer and reader alike.
pub const MAX_REVOCATION_LIST_LEN: usize = MAX_CODED_IDS_LEN + 256;
/// Most station certificates a bundle may hold.
pub const MAX_STATIONS: usize = 256;
/// Largest encoded trust bundle (`E5`), writer and reader alike: a list at
/// its limit and every station certificate at the card-object limit.
pub const MAX_BUNDLE_LEN: usize =
    MAX_REVOCATION_LIST_LEN + MAX_STATIONS * MAX_CARD_OBJECT_LEN + 512;
// Both host-side objects fit the longest length form, `83 xx xx xx`.
const _: () = assert!(MAX_REVOCATION_LIST_LEN < MAX_BUNDLE_LEN);
const _: () = assert!(MAX_BUNDLE_LEN <= tlv::MAX_VALUE_LEN);

/// The encoded length of a signed object (`E3` or `E5`) whose body TLV is
/// `body_len` bytes: the one-byte outer tag, its length field (as
/// [`tlv::push_len`] writes it), the body and the `5F37` signature field.
fn signed_len(body_len: usize) -> usize {
    let inner = body_len + 3 + SIGNATURE_LEN;
    let mut length_field = Vec::with_capacity(4);
    tlv::push_len(&mut length_field, inner);
    1 + length_field.len() + inner
}

/// The writers' check: the signed object made of a body TLV of `body_len`
/// bytes is at most `max` bytes, the limit its reader applies.
fn check_signed_len(body_len: usize, max: usize) -> Result<()> {
    if signed_len(body_len) > max {
        return Err(Error::TooLong);
    }
    Ok(())
}

/// Days a revoked card (or a spoiled intent's key) stays on the list after
/// the last day a card with that key could be valid, for readers whose clock
/// is behind.
pub const REVOCATION_GRACE_DAYS: u32 = 31;

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

fn check_group(group: u8) -> Result<()> {
    if group < GROUP_COUNT {
        Ok(())
    } else {
        Err(Error::BadValue(TAG_GROUP))
    }
}

fn group_field(s: &mut Sequence<'_>) -> Result<u8> {
    let [group] = tlv::fixed::<1>(&s.required(TAG_GROUP)?)?;
    check_group(group)?;
    Ok(group)
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

/// The Rice coding of a strictly ascending id list.
mod rice {
    use super::{Error, Result, RevocationId, TAG_CODED_IDS};
    use alloc::vec::Vec;

    /// The gaps of a strictly ascending list.
    fn gaps(ids: &[u64]) -> impl Iterator<Item = u64> + '_ {
        let mut prev: Option<u64> = None;
        ids.iter().map(move |&id| {
            let gap = match prev {
                None => id,
                Some(p) => id.wrapping_sub(p).wrapping_sub(1),
            };
            prev = Some(id);
            gap
        })
    }

    /// Bits each parameter 0–63 would take; the smallest parameter of the
    /// shortest coding.
    pub fn best_parameter(ids: &[u64]) -> u8 {
        let mut quotients = [0u128; 64];
        for gap in gaps(ids) {
            for (k, q) in quotients.iter_mut().enumerate() {
                *q += u128::from(gap >> k);
            }
        }
        let n = ids.len() as u128;
        let mut best = (u128::MAX, 0u8);
        for (k, q) in quotients.iter().enumerate() {
            let bits = q + n * (k as u128 + 1);
            if bits < best.0 {
                best = (bits, k as u8);
            }
        }
        best.1
    }

    struct BitWriter {
        out: Vec<u8>,
        acc: u64,
        used: u32,
    }

    impl BitWriter {
        fn bit(&mut self, b: bool) {
            self.acc = (self.acc << 1) | u64::from(b);
            self.used += 1;
            if self.used == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.used = 0;
            }
        }
        fn bits(&mut self, value: u64, count: u8) {
            for i in (0..count).rev() {
                self.bit((value >> i) & 1 == 1);
            }
        }
        fn finish(mut self) -> Vec<u8> {
            while self.used != 0 {
                self.bit(false);
            }
            self.out
        }
    }

    /// Codes strictly ascending `ids` with parameter `k`.
    pub fn encode(ids: &[u64], k: u8) -> Vec<u8> {
        let mut w = BitWriter {
            out: Vec::with_capacity(ids.len() * (usize::from(k) + 2) / 8 + 1),
            acc: 0,
            used: 0,
        };
        for gap in gaps(ids) {
            for _ in 0..(gap >> k) {
                w.bit(true);
            }
            w.bit(false);
            w.bits(gap, k);
        }
        w.finish()
    }

    struct BitReader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl BitReader<'_> {
        fn bit(&mut self) -> Result<bool> {
            let byte = self
                .bytes
                .get(self.pos / 8)
                .ok_or(Error::BadLength(TAG_CODED_IDS))?;
            let b = (byte >> (7 - (self.pos % 8))) & 1 == 1;
            self.pos += 1;
            Ok(b)
        }
        fn bits(&mut self, count: u8) -> Result<u64> {
            let mut v = 0u64;
            for _ in 0..count {
                v = (v << 1) | u64::from(self.bit()?);
            }
            Ok(v)
        }
    }

    /// Decodes `n` ids coded with parameter `k`; fails on an id that does
    /// not ascend, a gap past `u64`, missing bits, or anything but zero
    /// padding (less than a byte) at the end.
    pub fn decode(coded: &[u8], n: usize, k: u8) -> Result<Vec<RevocationId>> {
        let bad = Error::BadValue(TAG_CODED_IDS);
        // Every id takes at least k + 1 bits.
        if coded.len().saturating_mul(8) / (usize::from(k) + 1) < n {
            return Err(Error::BadLength(TAG_CODED_IDS));
        }
        let mut r = BitReader {
            bytes: coded,
            pos: 0,
        };
        let mut out: Vec<RevocationId> = Vec::with_capacity(n);
        let mut prev: Option<u64> = None;
        let max_quotient = u64::MAX >> k;
        for _ in 0..n {
            let mut q = 0u64;
            while r.bit()? {
                if q == max_quotient {
                    return Err(bad);
                }
                q += 1;
            }
            let gap = (q << k) | r.bits(k)?;
            let id = match prev {
                None => gap,
                Some(p) => p
                    .checked_add(1)
                    .and_then(|x| x.checked_add(gap))
                    .ok_or(bad)?,
            };
            prev = Some(id);
            out.push(id.to_be_bytes());
        }
        let used_bytes = r.pos.div_ceil(8);
        if used_bytes != coded.len() {
            return Err(Error::BadLength(TAG_CODED_IDS));
        }
        while r.pos % 8 != 0 {
            if r.bit()? {
                return Err(bad);
            }
        }
        Ok(out)
    }
}

/// The content of a revocation list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationListBody {
    /// Issuer id.
    pub issuer: String,
    /// Linkability group (`0..GROUP_COUNT`; every current card: 0).
    pub group: u8,
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
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] past [`MAX_REVOKED`] ids, [`Error::BadValue`] for a
    /// bad issuer, group or next update.
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        check_issuer(&self.issuer)?;
        check_group(self.group)?;
        if self.next_update < self.issued_at {
            return Err(Error::BadValue(0x83));
        }
        let mut ids: Vec<u64> = self
            .revoked
            .iter()
            .map(|id| u64::from_be_bytes(*id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > MAX_REVOKED {
            return Err(Error::TooLong);
        }
        let k = rice::best_parameter(&ids);
        let coded = rice::encode(&ids, k);
        let count = u32::try_from(ids.len()).map_err(|_| Error::TooLong)?;
        let mut v = Vec::with_capacity(64 + coded.len());
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x42, self.issuer.as_bytes());
        tlv::push(&mut v, TAG_GROUP, &[self.group]);
        tlv::push(&mut v, 0x81, &self.sequence.to_be_bytes());
        tlv::push(&mut v, 0x82, &self.issued_at.to_be_bytes());
        tlv::push(&mut v, 0x83, &self.next_update.to_be_bytes());
        tlv::push(&mut v, TAG_COUNT, &count.to_be_bytes());
        tlv::push(&mut v, TAG_RICE_PARAMETER, &[k]);
        tlv::push(&mut v, TAG_CODED_IDS, &coded);
        let body = tlv::encode(TAG_REVOCATION_BODY, &v);
        // The signature (5F37 40) and the outer header must still fit.
        check_signed_len(body.len(), MAX_REVOCATION_LIST_LEN)?;
        Ok(body)
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

    /// Decodes (structure only; see [`Self::verify`]). Accepts exactly the
    /// encoding [`RevocationListBody::to_be_signed`] writes, at most
    /// [`MAX_REVOCATION_LIST_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_REVOCATION_LIST_LEN {
            return Err(Error::TooLong);
        }
        let parts = tlv::split_signed_within(
            bytes,
            TAG_REVOCATION_LIST,
            TAG_REVOCATION_BODY,
            MAX_REVOCATION_LIST_LEN,
        )?;
        let (body, signature) = (parts.body, parts.signature);
        let mut s = Sequence::within(body.value, MAX_REVOCATION_LIST_LEN)?;
        tlv::expect_version_1(&mut s, 0x80)?;
        let issuer = issuer_field(&mut s)?;
        let group = group_field(&mut s)?;
        let sequence = u32::from_be_bytes(tlv::fixed::<4>(&s.required(0x81)?)?);
        let issued_at = u64_field(&s.required(0x82)?)?;
        let next_update = u64_field(&s.required(0x83)?)?;
        let count = u32::from_be_bytes(tlv::fixed::<4>(&s.required(TAG_COUNT)?)?);
        let [k] = tlv::fixed::<1>(&s.required(TAG_RICE_PARAMETER)?)?;
        let coded = s.required(TAG_CODED_IDS)?;
        s.finish()?;
        let count = usize::try_from(count).map_err(|_| Error::TooLong)?;
        if count > MAX_REVOKED || coded.value.len() > MAX_CODED_IDS_LEN {
            return Err(Error::TooLong);
        }
        if k > 63 {
            return Err(Error::BadValue(TAG_RICE_PARAMETER));
        }
        if next_update < issued_at {
            return Err(Error::BadValue(0x83));
        }
        let revoked = rice::decode(coded.value, count, k)?;
        // One encoding only: the writer's parameter.
        let as_u64: Vec<u64> = revoked.iter().map(|id| u64::from_be_bytes(*id)).collect();
        if rice::best_parameter(&as_u64) != k {
            return Err(Error::BadValue(TAG_RICE_PARAMETER));
        }
        Ok(Self {
            body: RevocationListBody {
                issuer: issuer.into(),
                group,
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

    /// `true` if `id` is revoked (binary search: O(log n)).
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
    /// Linkability group the bundle serves (the list's group).
    pub group: u8,
    /// Root public key.
    pub root: PublicKey,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Station certificates.
    pub stations: Vec<Certificate>,
    /// The group's current revocation list.
    pub revocations: RevocationList,
}

impl TrustBundleBody {
    /// The bytes the root signs (the `E6` TLV).
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] past [`MAX_STATIONS`] or [`MAX_BUNDLE_LEN`],
    /// [`Error::BadValue`] for a bad issuer or group, or a list of another
    /// group.
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        check_issuer(&self.issuer)?;
        check_group(self.group)?;
        if self.revocations.body().group != self.group {
            return Err(Error::BadValue(TAG_GROUP));
        }
        if self.stations.len() > MAX_STATIONS {
            return Err(Error::TooLong);
        }
        let mut v =
            Vec::with_capacity(256 + self.stations.len() * 180 + self.revocations.as_bytes().len());
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x42, self.issuer.as_bytes());
        tlv::push(&mut v, TAG_GROUP, &[self.group]);
        tlv::push(&mut v, 0x86, &crypto::encode_point(&self.root));
        tlv::push(&mut v, 0x81, &self.issued_at.to_be_bytes());
        for s in &self.stations {
            v.extend_from_slice(s.as_bytes());
        }
        v.extend_from_slice(self.revocations.as_bytes());
        let body = tlv::encode(TAG_BUNDLE_BODY, &v);
        check_signed_len(body.len(), MAX_BUNDLE_LEN)?;
        Ok(body)
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

    /// Decodes (structure only; see [`Self::verify`]), at most
    /// [`MAX_BUNDLE_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(Error::TooLong);
        }
        let parts =
            tlv::split_signed_within(bytes, TAG_TRUST_BUNDLE, TAG_BUNDLE_BODY, MAX_BUNDLE_LEN)?;
        let (body, signature) = (parts.body, parts.signature);
        let mut s = Sequence::within(body.value, MAX_REVOCATION_LIST_LEN)?;
        tlv::expect_version_1(&mut s, 0x80)?;
        let issuer = issuer_field(&mut s)?;
        let group = group_field(&mut s)?;
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
        if revocations.body().group != group {
            return Err(Error::BadValue(TAG_GROUP));
        }
        Ok(Self {
            body: TrustBundleBody {
                issuer: issuer.into(),
                group,
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
            group: 0,
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
            group: 0,
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

    fn signed_list(root: &p256::SecretKey, revoked: Vec<RevocationId>) -> Result<RevocationList> {
        let body = RevocationListBody {
            issuer: "LIEGE".into(),
            group: 0,
            sequence: 1,
            issued_at: 10,
            next_update: 20,
            revoked,
        };
        let tbs = body.to_be_signed()?;
        RevocationList::assemble(&tbs, &crypto::sign(root, &tbs))
    }

    /// Pseudo-random ids, as SHA-256 prefixes are.
    fn random_ids(n: usize, seed: u8) -> Vec<RevocationId> {
        use rand_chacha::rand_core::RngCore;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([seed; 32]);
        (0..n).map(|_| rng.next_u64().to_be_bytes()).collect()
    }

    #[test]
    fn rice_coding_round_trips_edge_ids() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
        let root = crypto::generate(&mut rng);
        for ids in [
            alloc::vec![],
            alloc::vec![[0; 8]],
            alloc::vec![[0xFF; 8]],
            alloc::vec![[0; 8], [0xFF; 8]],
            alloc::vec![[0; 8], 1u64.to_be_bytes(), 2u64.to_be_bytes(), [0xFF; 8]],
            (0..300u64).map(|i| (i * 3).to_be_bytes()).collect(),
            random_ids(1000, 6),
        ] {
            let list = signed_list(&root, ids.clone()).unwrap();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(list.body().revoked, sorted);
            for id in &ids {
                assert!(list.is_revoked(id));
            }
            let again = RevocationList::decode(list.as_bytes()).unwrap();
            assert_eq!(again, list);
        }
    }

    #[test]
    fn rice_coding_refuses_bad_streams() {
        // Coded bytes with trailing garbage, a non-zero pad, or too few bits.
        let ids = [5u64, 9, 200];
        let k = rice::best_parameter(&ids);
        let coded = rice::encode(&ids, k);
        assert_eq!(rice::decode(&coded, 3, k).unwrap().len(), 3);
        let mut extra = coded.clone();
        extra.push(0);
        assert!(rice::decode(&extra, 3, k).is_err());
        assert!(rice::decode(&coded, 4, k).is_err());
        // One id of value 0 with k = 0 is the single bit 0: seven pad bits.
        assert_eq!(rice::encode(&[0], 0), [0x00]);
        assert_eq!(rice::decode(&[0x00], 1, 0).unwrap(), [[0u8; 8]]);
        assert!(rice::decode(&[0x01], 1, 0).is_err(), "non-zero padding");
        // A quotient that overflows u64.
        assert!(rice::decode(&[0xFF; 64], 1, 0).is_err());
    }

    #[test]
    fn compact_coding_is_smaller_than_the_plain_list() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let root = crypto::generate(&mut rng);
        let list = signed_list(&root, random_ids(100_000, 8)).unwrap();
        let plain = 100_000 * 8;
        let coded = list.as_bytes().len();
        assert!(coded < plain * 8 / 10, "{coded} bytes vs {plain} plain");
        assert!(coded < 1 << 20);
    }

    #[test]
    fn revoked_limit_at_and_past() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
        let root = crypto::generate(&mut rng);
        // At the limit, with the widest gaps the parameter allows (the
        // longest coding): every id spaced 2^44 apart.
        let step = u64::MAX / MAX_REVOKED as u64;
        let at: Vec<RevocationId> = (0..MAX_REVOKED as u64)
            .map(|i| (i * step).to_be_bytes())
            .collect();
        let list = signed_list(&root, at).unwrap();
        assert_eq!(list.body().revoked.len(), MAX_REVOKED);
        assert!(list.as_bytes().len() <= MAX_REVOCATION_LIST_LEN);
        let again = RevocationList::decode(list.as_bytes()).unwrap();
        assert!(again.is_revoked(&(5 * step).to_be_bytes()));
        assert!(!again.is_revoked(&(5 * step + 1).to_be_bytes()));
        // The list at its limit travels in a bundle.
        let body = TrustBundleBody {
            issuer: "LIEGE".into(),
            group: 0,
            root: root.public_key(),
            issued_at: 10,
            stations: Vec::new(),
            revocations: again,
        };
        let tbs = body.to_be_signed().unwrap();
        let bundle = TrustBundle::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.body().revocations.body().revoked.len(), MAX_REVOKED);
        assert_eq!(
            TrustBundle::decode(&alloc::vec![0xE5; MAX_BUNDLE_LEN + 1]).unwrap_err(),
            Error::TooLong
        );
        // One past: the writer refuses.
        let past: Vec<RevocationId> = (0..=MAX_REVOKED as u64).map(|i| i.to_be_bytes()).collect();
        assert_eq!(signed_list(&root, past).unwrap_err(), Error::TooLong);
        // And a reader refuses a count past the limit whatever the bytes say.
        let mut v = Vec::new();
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x42, b"LIEGE");
        tlv::push(&mut v, TAG_GROUP, &[0]);
        tlv::push(&mut v, 0x81, &1u32.to_be_bytes());
        tlv::push(&mut v, 0x82, &1u64.to_be_bytes());
        tlv::push(&mut v, 0x83, &2u64.to_be_bytes());
        tlv::push(&mut v, TAG_COUNT, &(MAX_REVOKED as u32 + 1).to_be_bytes());
        tlv::push(&mut v, TAG_RICE_PARAMETER, &[0]);
        tlv::push(
            &mut v,
            TAG_CODED_IDS,
            &alloc::vec![0; (MAX_REVOKED + 1).div_ceil(8)],
        );
        let body = tlv::encode(TAG_REVOCATION_BODY, &v);
        let bytes = tlv::join_signed(TAG_REVOCATION_LIST, &body, &[0; 64]);
        assert_eq!(RevocationList::decode(&bytes).unwrap_err(), Error::TooLong);
        // Past the encoded-length limit.
        let long = tlv::join_signed(
            TAG_REVOCATION_LIST,
            &tlv::encode(
                TAG_REVOCATION_BODY,
                &alloc::vec![0; MAX_REVOCATION_LIST_LEN],
            ),
            &[0; 64],
        );
        assert_eq!(RevocationList::decode(&long).unwrap_err(), Error::TooLong);
    }

    #[test]
    fn group_is_signed_and_must_match() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([10; 32]);
        let root = crypto::generate(&mut rng);
        let body = RevocationListBody {
            issuer: "LIEGE".into(),
            group: 3,
            sequence: 1,
            issued_at: 10,
            next_update: 20,
            revoked: alloc::vec![[1; 8]],
        };
        let tbs = body.to_be_signed().unwrap();
        let list = RevocationList::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        assert_eq!(list.body().group, 3);
        let bundle = TrustBundleBody {
            issuer: "LIEGE".into(),
            group: 0,
            root: root.public_key(),
            issued_at: 10,
            stations: Vec::new(),
            revocations: list,
        };
        assert_eq!(
            bundle.to_be_signed().unwrap_err(),
            Error::BadValue(TAG_GROUP)
        );
        let bad = RevocationListBody {
            group: GROUP_COUNT,
            ..body
        };
        assert_eq!(bad.to_be_signed().unwrap_err(), Error::BadValue(TAG_GROUP));
    }

    /// A station certificate of `root`'s city.
    fn station_of(root: &p256::SecretKey, rng: &mut rand_chacha::ChaCha20Rng) -> Certificate {
        CertificateBody {
            group: None,
            issuer: "LIEGE".into(),
            holder: "s1".into(),
            role: Role::Station,
            grants: AttributeSet::EMPTY,
            domain: None,
            effective: Date::new(2026, 1, 1).unwrap(),
            expiry: Date::new(2026, 12, 31).unwrap(),
            public_key: crypto::generate(rng).public_key(),
        }
        .sign(root)
        .unwrap()
    }

    #[test]
    fn stations_limit_at_and_past() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([11; 32]);
        let root = crypto::generate(&mut rng);
        let station = station_of(&root, &mut rng);
        let list = signed_list(&root, alloc::vec![[1; 8]]).unwrap();
        let body = |n: usize| TrustBundleBody {
            issuer: "LIEGE".into(),
            group: 0,
            root: root.public_key(),
            issued_at: 10,
            stations: alloc::vec![station.clone(); n],
            revocations: list.clone(),
        };
        // At the limit: written, read back, verified.
        let tbs = body(MAX_STATIONS).to_be_signed().unwrap();
        let bundle = TrustBundle::assemble(&tbs, &crypto::sign(&root, &tbs)).unwrap();
        bundle.verify().unwrap();
        assert_eq!(bundle.body().stations.len(), MAX_STATIONS);
        // One past: the writer refuses.
        assert_eq!(
            body(MAX_STATIONS + 1).to_be_signed().unwrap_err(),
            Error::TooLong
        );
        // And the reader refuses a bundle that holds one more, whoever made it.
        let mut v = Vec::new();
        tlv::push(&mut v, 0x80, &[1]);
        tlv::push(&mut v, 0x42, b"LIEGE");
        tlv::push(&mut v, TAG_GROUP, &[0]);
        tlv::push(&mut v, 0x86, &crypto::encode_point(&root.public_key()));
        tlv::push(&mut v, 0x81, &10u64.to_be_bytes());
        for _ in 0..=MAX_STATIONS {
            v.extend_from_slice(station.as_bytes());
        }
        v.extend_from_slice(list.as_bytes());
        let past = tlv::encode(TAG_BUNDLE_BODY, &v);
        let bytes = tlv::join_signed(TAG_TRUST_BUNDLE, &past, &crypto::sign(&root, &past));
        assert!(bytes.len() < MAX_BUNDLE_LEN);
        assert_eq!(TrustBundle::decode(&bytes).unwrap_err(), Error::TooLong);
    }

    /// The body TLV length at which a signed object is exactly `max` bytes.
    fn body_len_at(max: usize) -> usize {
        let at = (max - 80..max)
            .rev()
            .find(|&b| signed_len(b) <= max)
            .unwrap();
        assert_eq!(signed_len(at), max, "every length is reachable here");
        at
    }

    /// A body TLV of exactly `len` bytes (its value all zero).
    fn body_of_len(tag: u32, len: usize) -> Vec<u8> {
        // One tag byte and the four-byte length field `83 xx xx xx`.
        let body = tlv::encode(tag, &alloc::vec![0; len - 5]);
        assert_eq!(body.len(), len);
        body
    }

    #[test]
    fn signed_length_limits_at_and_past_for_writer_and_reader() {
        for (max, outer, inner) in [
            (MAX_BUNDLE_LEN, TAG_TRUST_BUNDLE, TAG_BUNDLE_BODY),
            (
                MAX_REVOCATION_LIST_LEN,
                TAG_REVOCATION_LIST,
                TAG_REVOCATION_BODY,
            ),
        ] {
            let at = body_len_at(max);
            // The writers' check: a body that makes an object of exactly the
            // limit is written, one byte more is refused.
            assert_eq!(check_signed_len(at, max), Ok(()));
            assert_eq!(check_signed_len(at + 1, max), Err(Error::TooLong));
            // What the writer computes is what it writes.
            let bytes = tlv::join_signed(outer, &body_of_len(inner, at), &[0; 64]);
            assert_eq!(bytes.len(), max);
            let longer = tlv::join_signed(outer, &body_of_len(inner, at + 1), &[0; 64]);
            assert_eq!(longer.len(), max + 1);
            // The reader takes an object of exactly the limit past its length
            // check (an all-zero body is then malformed, not too long), and
            // refuses one byte more as too long.
            let (at_limit, past) = if outer == TAG_TRUST_BUNDLE {
                (
                    TrustBundle::decode(&bytes).map(|_| ()),
                    TrustBundle::decode(&longer).map(|_| ()),
                )
            } else {
                (
                    RevocationList::decode(&bytes).map(|_| ()),
                    RevocationList::decode(&longer).map(|_| ()),
                )
            };
            assert!(
                !matches!(at_limit, Ok(()) | Err(Error::TooLong)),
                "{at_limit:?}"
            );
            assert_eq!(past, Err(Error::TooLong));
        }
    }

    #[test]
    fn limits_are_the_specified_ones_and_fit_the_longest_length_form() {
        // SPEC §1's table.
        assert_eq!(MAX_REVOKED, 1_048_576);
        assert_eq!(MAX_REVOCATION_LIST_LEN, 8_519_936);
        assert_eq!(MAX_BUNDLE_LEN, 9_044_736);
    }
}
