//! The citycard Card Authentication certificate (X.509 v3, DER).
//!
//! Written by hand over the crate's DER-canonical TLV reader rather than with
//! `x509-cert`: the profile is one fixed template, and the citycard extension's
//! OID lives under the registration-free UUID arc 2.25 (X.667), whose 128-bit
//! arc `const-oid` (and so `x509-cert`) cannot represent.

use alloc::string::String;
use alloc::vec::Vec;
use p256::PublicKey;

use super::*;
use crate::attr::{AttributeId, AttributeSet};
use crate::cert::FINGERPRINT_LEN;
use crate::date::Date;
use crate::error::{Error, Result};
use crate::revocation::{revocation_id, RevocationId};
use crate::tlv;

const DER_SEQUENCE: u32 = 0x30;
const DER_SET: u32 = 0x31;
const DER_INTEGER: u32 = 0x02;
const DER_BIT_STRING: u32 = 0x03;
const DER_OCTET_STRING: u32 = 0x04;
const DER_OID: u32 = 0x06;
const DER_UTF8: u32 = 0x0C;
const DER_UTC_TIME: u32 = 0x17;
const DER_GENERALIZED_TIME: u32 = 0x18;
const DER_BOOLEAN: u32 = 0x01;
const DER_VERSION: u32 = 0xA0;
const DER_EXTENSIONS: u32 = 0xA3;
const DER_KEY_IDENTIFIER: u32 = 0x80;

/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2), OID contents.
const OID_ECDSA_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// id-at-commonName (2.5.4.3).
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-at-organizationName (2.5.4.10).
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0A];
/// id-ce-authorityKeyIdentifier (2.5.29.35).
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1D, 0x23];
/// id-ce-keyUsage (2.5.29.15).
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x0F];
/// id-ce-extKeyUsage (2.5.29.37).
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x25];
/// id-PIV-cardAuth (2.16.840.1.101.3.6.8).
const OID_PIV_CARD_AUTH: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x06, 0x08];
/// The citycard card-information extension:
/// 2.25.149749403958764091002485810512216562325 (UUID
/// 70a8afa5-cfbd-44ab-9f69-16411e799a95 under the X.667 arc).
pub const OID_CITYCARD_CARD_INFO: &[u8] = &[
    0x69, 0x81, 0xE1, 0xA8, 0xD7, 0xE9, 0xB9, 0xFB, 0xEA, 0x92, 0xD7, 0x9F, 0xB4, 0xC5, 0xC8, 0x91,
    0xF3, 0xE6, 0xB5, 0x15,
];
/// Longest card number (as for the `card_number` attribute).
pub const MAX_CARD_NUMBER_LEN: usize = 20;

/// The age predicates a PIV card may carry: those true on the issue date
/// stay true, so they can be signed once (SPEC piv-profile §4).
pub const PIV_PREDICATES: [AttributeId; 3] = [
    AttributeId::AGE_OVER_18,
    AttributeId::AGE_OVER_21,
    AttributeId::AGE_OVER_65,
];

/// What a citycard Card Authentication certificate states.
#[derive(Clone, PartialEq, Eq)]
pub struct CardAuthenticationBody {
    /// The city's issuer id (subject and issuer `O`).
    pub issuer_id: String,
    /// The issuing station's holder reference (issuer `CN`).
    pub station_holder: String,
    /// Fingerprint of the station certificate that signs (authority key identifier).
    pub station: [u8; FINGERPRINT_LEN],
    /// The card number (subject `CN`), printable ASCII.
    pub card_number: String,
    /// First valid day (notBefore, 00:00:00 UTC).
    pub valid_from: Date,
    /// Last valid day (notAfter, 23:59:59 UTC).
    pub valid_to: Date,
    /// The Card Authentication Key (slot `9E`).
    pub card_key: PublicKey,
    /// Age predicates that held on the issue date (a subset of [`PIV_PREDICATES`]).
    pub predicates: AttributeSet,
}

impl core::fmt::Debug for CardAuthenticationBody {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CardAuthenticationBody")
            .field("issuer_id", &self.issuer_id)
            .field("station", &self.station)
            .field("card_number", &"REDACTED")
            .field("valid_from", &self.valid_from)
            .field("valid_to", &self.valid_to)
            .field("predicates", &self.predicates)
            .finish()
    }
}

fn check_text(text: &str, max: usize, tag: u32) -> Result<()> {
    if text.is_empty() || text.len() > max || !text.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(Error::BadValue(tag));
    }
    Ok(())
}

fn predicate_mask() -> AttributeSet {
    PIV_PREDICATES
        .iter()
        .fold(AttributeSet::EMPTY, |s, id| s.with(*id))
}

fn push_name(out: &mut Vec<u8>, organization: &str, common_name: &str) {
    let mut rdns = Vec::new();
    for (oid, value) in [
        (OID_ORGANIZATION, organization),
        (OID_COMMON_NAME, common_name),
    ] {
        let mut atv = tlv::encode(DER_OID, oid);
        tlv::push(&mut atv, DER_UTF8, value.as_bytes());
        tlv::push(&mut rdns, DER_SET, &tlv::encode(DER_SEQUENCE, &atv));
    }
    tlv::push(out, DER_SEQUENCE, &rdns);
}

fn push_time(out: &mut Vec<u8>, date: Date, end_of_day: bool) {
    let clock = if end_of_day { "235959Z" } else { "000000Z" };
    let (y, m, d) = (date.year(), date.month(), date.day());
    if (1950..2050).contains(&y) {
        let s = alloc::format!("{:02}{m:02}{d:02}{clock}", y % 100);
        tlv::push(out, DER_UTC_TIME, s.as_bytes());
    } else {
        let s = alloc::format!("{y:04}{m:02}{d:02}{clock}");
        tlv::push(out, DER_GENERALIZED_TIME, s.as_bytes());
    }
}

fn push_extension(out: &mut Vec<u8>, oid: &[u8], critical: bool, value: &[u8]) {
    let mut ext = tlv::encode(DER_OID, oid);
    if critical {
        tlv::push(&mut ext, DER_BOOLEAN, &[0xFF]);
    }
    tlv::push(&mut ext, DER_OCTET_STRING, value);
    tlv::push(out, DER_SEQUENCE, &ext);
}

/// A positive DER INTEGER from big-endian bytes.
fn push_unsigned(out: &mut Vec<u8>, bytes: &[u8]) {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(&trimmed);
    tlv::push(out, DER_INTEGER, &value);
}

/// keyUsage contents: digitalSignature only.
const KEY_USAGE_DIGITAL_SIGNATURE: &[u8] = &[0x03, 0x02, 0x07, 0x80];

/// extKeyUsage contents: id-PIV-cardAuth.
fn ext_key_usage() -> Vec<u8> {
    tlv::encode(DER_SEQUENCE, &tlv::encode(DER_OID, OID_PIV_CARD_AUTH))
}

fn signature_algorithm() -> Vec<u8> {
    tlv::encode(DER_SEQUENCE, &tlv::encode(DER_OID, OID_ECDSA_SHA256))
}

impl CardAuthenticationBody {
    /// Checks the body's own rules: printable references and card number,
    /// dates in order, predicates only from [`PIV_PREDICATES`].
    pub fn validate(&self) -> Result<()> {
        check_text(&self.issuer_id, crate::cert::MAX_REFERENCE_LEN, 0x0A)?;
        check_text(&self.station_holder, crate::cert::MAX_REFERENCE_LEN, 0x03)?;
        check_text(&self.card_number, MAX_CARD_NUMBER_LEN, 0x03)?;
        if self.valid_to < self.valid_from {
            return Err(Error::BadDate);
        }
        if !self.predicates.is_subset_of(predicate_mask()) {
            return Err(Error::BadValue(0x04));
        }
        Ok(())
    }

    /// The revocation id of this card (the same function as for citycard
    /// applet cards, over the Card Authentication Key).
    pub fn revocation_id(&self) -> RevocationId {
        revocation_id(&self.card_key)
    }

    /// The DER `TBSCertificate`: the bytes the station signs.
    pub fn to_be_signed(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut tbs = Vec::with_capacity(400);
        tlv::push(&mut tbs, DER_VERSION, &[0x02, 0x01, 0x02]);
        push_unsigned(&mut tbs, &self.revocation_id());
        tbs.extend_from_slice(&signature_algorithm());
        push_name(&mut tbs, &self.issuer_id, &self.station_holder);
        let mut validity = Vec::new();
        push_time(&mut validity, self.valid_from, false);
        push_time(&mut validity, self.valid_to, true);
        tlv::push(&mut tbs, DER_SEQUENCE, &validity);
        push_name(&mut tbs, &self.issuer_id, &self.card_number);
        let mut algorithm = tlv::encode(DER_OID, OID_EC_PUBLIC_KEY);
        tlv::push(&mut algorithm, DER_OID, OID_P256);
        let mut spki = tlv::encode(DER_SEQUENCE, &algorithm);
        let mut point = Vec::with_capacity(66);
        point.push(0);
        point.extend_from_slice(p256::EncodedPoint::from(self.card_key).as_bytes());
        tlv::push(&mut spki, DER_BIT_STRING, &point);
        tlv::push(&mut tbs, DER_SEQUENCE, &spki);

        let mut extensions = Vec::new();
        let aki = tlv::encode(
            DER_SEQUENCE,
            &tlv::encode(DER_KEY_IDENTIFIER, &self.station),
        );
        push_extension(&mut extensions, OID_AUTHORITY_KEY_ID, false, &aki);
        // digitalSignature only.
        push_extension(
            &mut extensions,
            OID_KEY_USAGE,
            true,
            &[0x03, 0x02, 0x07, 0x80],
        );
        let eku = tlv::encode(DER_SEQUENCE, &tlv::encode(DER_OID, OID_PIV_CARD_AUTH));
        push_extension(&mut extensions, OID_EXT_KEY_USAGE, false, &eku);
        let mut info = Vec::new();
        tlv::push(&mut info, DER_INTEGER, &[0x01]);
        tlv::push(&mut info, DER_OCTET_STRING, &self.predicates.to_bytes());
        push_extension(
            &mut extensions,
            OID_CITYCARD_CARD_INFO,
            false,
            &tlv::encode(DER_SEQUENCE, &info),
        );
        tlv::push(
            &mut tbs,
            DER_EXTENSIONS,
            &tlv::encode(DER_SEQUENCE, &extensions),
        );
        Ok(tlv::encode(DER_SEQUENCE, &tbs))
    }
}

/// A citycard Card Authentication certificate: the X.509 certificate in
/// data object `5FC101`, signed by an issuing station.
#[derive(Clone, PartialEq, Eq)]
pub struct CardAuthenticationCertificate {
    der: Vec<u8>,
    tbs_len: usize,
    tbs_offset: usize,
    body: CardAuthenticationBody,
    signature: Signature,
}

impl core::fmt::Debug for CardAuthenticationCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CardAuthenticationCertificate")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl CardAuthenticationCertificate {
    /// Joins a `TBSCertificate` (from [`CardAuthenticationBody::to_be_signed`])
    /// and the station's raw `r‖s` signature over it, and checks the result
    /// decodes.
    pub fn assemble(tbs: &[u8], raw_signature: &[u8]) -> Result<Self> {
        let signature = Signature::from_slice(raw_signature).map_err(|_| Error::BadSignature)?;
        let der_sig = signature.to_der();
        let mut bits = Vec::with_capacity(der_sig.as_bytes().len() + 1);
        bits.push(0);
        bits.extend_from_slice(der_sig.as_bytes());
        let mut cert = tbs.to_vec();
        cert.extend_from_slice(&signature_algorithm());
        tlv::push(&mut cert, DER_BIT_STRING, &bits);
        Self::decode(&tlv::encode(DER_SEQUENCE, &cert))
    }

    /// Decodes a certificate of this profile (strict DER; anything outside
    /// the template is an error, an unknown critical extension too).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_CERTIFICATE_LEN {
            return Err(Error::TooLong);
        }
        let outer = tlv::read_exact(bytes, DER_SEQUENCE)?;
        let mut parts = tlv::Sequence::new(outer.value)?;
        let tbs = parts.required(DER_SEQUENCE)?;
        let alg = parts.required(DER_SEQUENCE)?;
        let sig = parts.required(DER_BIT_STRING)?;
        parts.finish()?;
        if alg.raw != signature_algorithm().as_slice() {
            return Err(Error::BadValue(DER_SEQUENCE));
        }
        let der_sig = match sig.value.split_first() {
            Some((0, rest)) => rest,
            _ => return Err(Error::BadValue(DER_BIT_STRING)),
        };
        let signature = Signature::from_der(der_sig).map_err(|_| Error::BadSignature)?;
        let body = decode_tbs(tbs.value)?;
        // `bytes` is exactly the outer SEQUENCE, and the TBSCertificate is its
        // first element: it starts where the outer header ends.
        let tbs_offset = bytes
            .len()
            .checked_sub(outer.value.len())
            .ok_or(Error::MalformedTlv)?;
        Ok(Self {
            der: bytes.to_vec(),
            tbs_len: tbs.raw.len(),
            tbs_offset,
            body,
            signature,
        })
    }

    /// Checks the station's signature over the `TBSCertificate`.
    pub fn verify(&self, station: &PublicKey) -> Result<()> {
        use p256::ecdsa::signature::Verifier;
        VerifyingKey::from(station)
            .verify(self.signed_bytes(), &self.signature)
            .map_err(|_| Error::BadSignature)
    }

    /// The signed `TBSCertificate` bytes.
    pub fn signed_bytes(&self) -> &[u8] {
        self.der
            .get(self.tbs_offset..self.tbs_offset.saturating_add(self.tbs_len))
            .unwrap_or(&[])
    }

    /// What the certificate states.
    pub fn body(&self) -> &CardAuthenticationBody {
        &self.body
    }

    /// The DER encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.der
    }

    /// The revocation id of the card.
    pub fn revocation_id(&self) -> RevocationId {
        self.body.revocation_id()
    }
}

fn decode_text(value: &[u8], max: usize, tag: u32) -> Result<String> {
    let text = core::str::from_utf8(value).map_err(|_| Error::BadValue(tag))?;
    check_text(text, max, tag)?;
    Ok(String::from(text))
}

/// `Name ::= SEQUENCE { SET { O }, SET { CN } }` exactly; returns (O, CN).
fn decode_name(value: &[u8], cn_max: usize) -> Result<(String, String)> {
    let rdns = tlv::read_all(value)?;
    let [o, cn] = rdns.as_slice() else {
        return Err(Error::BadValue(DER_SEQUENCE));
    };
    let mut out = Vec::with_capacity(2);
    for (rdn, oid, max) in [
        (o, OID_ORGANIZATION, crate::cert::MAX_REFERENCE_LEN),
        (cn, OID_COMMON_NAME, cn_max),
    ] {
        tlv::expect_tag(rdn, DER_SET)?;
        let atv = tlv::read_exact(rdn.value, DER_SEQUENCE)?;
        let mut s = tlv::Sequence::new(atv.value)?;
        if s.required(DER_OID)?.value != oid {
            return Err(Error::BadValue(DER_OID));
        }
        let text = s.required(DER_UTF8)?;
        s.finish()?;
        out.push(decode_text(text.value, max, DER_UTF8)?);
    }
    let cn = out.pop().ok_or(Error::Missing(DER_UTF8))?;
    let o = out.pop().ok_or(Error::Missing(DER_UTF8))?;
    Ok((o, cn))
}

fn decode_time(field: &tlv::Field<'_>, end_of_day: bool) -> Result<Date> {
    let text = core::str::from_utf8(field.value).map_err(|_| Error::BadDate)?;
    let clock = if end_of_day { "235959Z" } else { "000000Z" };
    let digits = |s: &str| -> Result<u16> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::BadDate);
        }
        s.parse().map_err(|_| Error::BadDate)
    };
    let (year, rest) = match field.tag {
        DER_UTC_TIME if text.len() == 13 => {
            let yy = digits(text.get(..2).ok_or(Error::BadDate)?)?;
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            (year, text.get(2..).ok_or(Error::BadDate)?)
        }
        DER_GENERALIZED_TIME if text.len() == 15 => (
            digits(text.get(..4).ok_or(Error::BadDate)?)?,
            text.get(4..).ok_or(Error::BadDate)?,
        ),
        _ => return Err(Error::BadDate),
    };
    if (1950..2050).contains(&year) != (field.tag == DER_UTC_TIME) {
        return Err(Error::BadDate);
    }
    let month = digits(rest.get(..2).ok_or(Error::BadDate)?)?;
    let day = digits(rest.get(2..4).ok_or(Error::BadDate)?)?;
    if rest.get(4..) != Some(clock) {
        return Err(Error::BadDate);
    }
    Date::new(
        year,
        u8::try_from(month).map_err(|_| Error::BadDate)?,
        u8::try_from(day).map_err(|_| Error::BadDate)?,
    )
}

fn decode_tbs(value: &[u8]) -> Result<CardAuthenticationBody> {
    let mut s = tlv::Sequence::new(value)?;
    if s.required(DER_VERSION)?.value != [0x02, 0x01, 0x02] {
        return Err(Error::UnsupportedVersion(0));
    }
    let serial = s.required(DER_INTEGER)?;
    let alg = s.required(DER_SEQUENCE)?;
    if alg.raw != signature_algorithm().as_slice() {
        return Err(Error::BadValue(DER_SEQUENCE));
    }
    let (issuer_id, station_holder) = decode_name(
        s.required(DER_SEQUENCE)?.value,
        crate::cert::MAX_REFERENCE_LEN,
    )?;
    let validity = s.required(DER_SEQUENCE)?;
    let times = tlv::read_all(validity.value)?;
    let [from, to] = times.as_slice() else {
        return Err(Error::BadValue(DER_SEQUENCE));
    };
    let valid_from = decode_time(from, false)?;
    let valid_to = decode_time(to, true)?;
    let (subject_issuer, card_number) =
        decode_name(s.required(DER_SEQUENCE)?.value, MAX_CARD_NUMBER_LEN)?;
    if subject_issuer != issuer_id {
        return Err(Error::BadValue(0x0A));
    }
    let card_key = decode_spki(s.required(DER_SEQUENCE)?.value)?;
    let extensions = s.required(DER_EXTENSIONS)?;
    s.finish()?;

    // Exactly the four extensions of the template, in order, with exactly
    // the template's criticality and (for key usages) contents.
    let list = tlv::read_exact(extensions.value, DER_SEQUENCE)?;
    let exts = tlv::read_all(list.value)?;
    let [aki, ku, eku, info] = exts.as_slice() else {
        return Err(Error::BadValue(DER_EXTENSIONS));
    };
    let aki = extension(aki, OID_AUTHORITY_KEY_ID, false)?;
    let aki = tlv::read_exact(aki, DER_SEQUENCE)?;
    let station = tlv::fixed::<FINGERPRINT_LEN>(&tlv::read_exact(aki.value, DER_KEY_IDENTIFIER)?)?;
    if extension(ku, OID_KEY_USAGE, true)? != KEY_USAGE_DIGITAL_SIGNATURE {
        return Err(Error::BadValue(DER_BIT_STRING));
    }
    if extension(eku, OID_EXT_KEY_USAGE, false)? != ext_key_usage().as_slice() {
        return Err(Error::BadValue(DER_OID));
    }
    let info = tlv::read_exact(
        extension(info, OID_CITYCARD_CARD_INFO, false)?,
        DER_SEQUENCE,
    )?;
    let mut i = tlv::Sequence::new(info.value)?;
    if i.required(DER_INTEGER)?.value != [0x01] {
        return Err(Error::UnsupportedVersion(0));
    }
    let predicates = AttributeSet::from_bytes(i.required(DER_OCTET_STRING)?.value)?;
    i.finish()?;
    let body = CardAuthenticationBody {
        issuer_id,
        station_holder,
        station,
        card_number,
        valid_from,
        valid_to,
        card_key,
        predicates,
    };
    if serial.raw != tlv_integer(&body.revocation_id()).as_slice() {
        return Err(Error::BadValue(DER_INTEGER));
    }
    body.validate()?;
    Ok(body)
}

/// The value of one extension with `oid` and exactly the criticality given.
fn extension<'a>(ext: &tlv::Field<'a>, oid: &[u8], critical: bool) -> Result<&'a [u8]> {
    tlv::expect_tag(ext, DER_SEQUENCE)?;
    let mut e = tlv::Sequence::new(ext.value)?;
    if e.required(DER_OID)?.value != oid {
        return Err(Error::BadValue(DER_OID));
    }
    let flag = e.optional(DER_BOOLEAN)?;
    if critical != flag.is_some() || flag.is_some_and(|b| b.value != [0xFF]) {
        return Err(Error::BadValue(DER_BOOLEAN));
    }
    let value = e.required(DER_OCTET_STRING)?.value;
    e.finish()?;
    Ok(value)
}

fn tlv_integer(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_unsigned(&mut out, bytes);
    out
}

fn decode_spki(value: &[u8]) -> Result<PublicKey> {
    let mut s = tlv::Sequence::new(value)?;
    let alg = s.required(DER_SEQUENCE)?;
    let key = s.required(DER_BIT_STRING)?;
    s.finish()?;
    let mut a = tlv::Sequence::new(alg.value)?;
    let (kind, curve) = (a.required(DER_OID)?, a.required(DER_OID)?);
    a.finish()?;
    if kind.value != OID_EC_PUBLIC_KEY || curve.value != OID_P256 {
        return Err(Error::BadPublicKey);
    }
    match key.value.split_first() {
        Some((0, point)) if point.len() == 65 => {
            PublicKey::from_sec1_bytes(point).map_err(|_| Error::BadPublicKey)
        }
        _ => Err(Error::BadPublicKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto;
    use rand_chacha::rand_core::SeedableRng;

    fn body() -> (CardAuthenticationBody, p256::SecretKey) {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
        let card = crypto::generate(&mut rng);
        let station = crypto::generate(&mut rng);
        (
            CardAuthenticationBody {
                issuer_id: "liege".into(),
                station_holder: "desk-1".into(),
                station: [1, 2, 3, 4, 5, 6, 7, 8],
                card_number: "LG-000042".into(),
                valid_from: Date::new(2026, 11, 27).unwrap(),
                valid_to: Date::new(2031, 11, 26).unwrap(),
                card_key: card.public_key(),
                predicates: AttributeSet::EMPTY.with(AttributeId::AGE_OVER_18),
            },
            station,
        )
    }

    #[test]
    fn certificate_round_trips_and_verifies() {
        let (body, station) = body();
        let tbs = body.to_be_signed().unwrap();
        let sig = crypto::sign(&station, &tbs);
        let cert = CardAuthenticationCertificate::assemble(&tbs, &sig).unwrap();
        assert_eq!(cert.body(), &body);
        assert_eq!(cert.signed_bytes(), tbs.as_slice());
        cert.verify(&station.public_key()).unwrap();
        let again = CardAuthenticationCertificate::decode(cert.as_bytes()).unwrap();
        assert_eq!(again, cert);
        let other = crypto::generate(&mut rand_chacha::ChaCha20Rng::from_seed([9; 32]));
        assert_eq!(cert.verify(&other.public_key()), Err(Error::BadSignature));
    }

    #[test]
    fn every_flipped_byte_is_refused_or_breaks_the_signature() {
        let (body, station) = body();
        let tbs = body.to_be_signed().unwrap();
        let cert =
            CardAuthenticationCertificate::assemble(&tbs, &crypto::sign(&station, &tbs)).unwrap();
        let bytes = cert.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            if let Ok(c) = CardAuthenticationCertificate::decode(&t) {
                assert!(c.verify(&station.public_key()).is_err(), "byte {i}");
            }
        }
    }

    /// Regression (found by the `piv_certificate` fuzz body): a changed byte
    /// inside the extKeyUsage OID was accepted (the signature would still
    /// have failed, but the decoder must accept the template only).
    #[test]
    fn only_the_exact_extension_template_decodes() {
        let (body, station) = body();
        let tbs = body.to_be_signed().unwrap();
        let cert =
            CardAuthenticationCertificate::assemble(&tbs, &crypto::sign(&station, &tbs)).unwrap();
        let der = cert.as_bytes().to_vec();
        let eku = der
            .windows(OID_PIV_CARD_AUTH.len())
            .position(|w| w == OID_PIV_CARD_AUTH)
            .unwrap();
        let mut t = der.clone();
        t[eku + 6] ^= 0x06;
        assert_eq!(
            CardAuthenticationCertificate::decode(&t).map(|_| ()),
            Err(Error::BadValue(DER_OID))
        );
        // Key usage other than digitalSignature.
        let ku = der
            .windows(KEY_USAGE_DIGITAL_SIGNATURE.len())
            .position(|w| w == KEY_USAGE_DIGITAL_SIGNATURE)
            .unwrap();
        let mut t = der.clone();
        t[ku + 3] = 0x40;
        assert!(CardAuthenticationCertificate::decode(&t).is_err());
    }

    #[test]
    fn far_dates_use_generalized_time_and_round_trip() {
        let (mut body, station) = body();
        body.valid_to = Date::new(2061, 2, 28).unwrap();
        let tbs = body.to_be_signed().unwrap();
        let cert =
            CardAuthenticationCertificate::assemble(&tbs, &crypto::sign(&station, &tbs)).unwrap();
        assert_eq!(cert.body().valid_to, body.valid_to);
    }

    #[test]
    fn bodies_outside_the_profile_are_refused() {
        let (mut body, _) = body();
        body.predicates = AttributeSet::EMPTY.with(AttributeId::NAME);
        assert!(body.to_be_signed().is_err());
        let (mut body, _) = self::body();
        body.card_number = "é".into();
        assert!(body.to_be_signed().is_err());
    }

    #[test]
    fn apdus_and_answers() {
        assert_eq!(
            select_command().to_short_bytes().unwrap(),
            hex::decode("00A404000BA000000308000010000100 00".replace(' ', "")).unwrap()
        );
        assert_eq!(
            get_data_command(OBJECT_CARD_AUTHENTICATION_CERTIFICATE)
                .to_short_bytes()
                .unwrap(),
            hex::decode("00CB3FFF055C035FC10100").unwrap()
        );
        let apt =
            hex::decode("6111 4F06000010000100 7907 4F05A000000308".replace(' ', "")).unwrap();
        // 7907 value is 7 bytes: 4F 05 A0 00 00 03 08.
        let props = parse_application_property_template(&apt).unwrap();
        assert!(!props.supports_p256());
        let apt = hex::decode("610F 4F06000010000100 AC05 8001110600".replace(' ', "")).unwrap();
        assert!(parse_application_property_template(&apt)
            .unwrap()
            .supports_p256());
        assert!(
            parse_application_property_template(&hex::decode("61054F03010203").unwrap()).is_err()
        );
        let container = certificate_container(&[0x30, 0x00]);
        assert_eq!(container, hex::decode("70023000710100FE00").unwrap());
        assert_eq!(
            parse_certificate_container(&container),
            Ok(&[0x30u8, 0x00][..])
        );
        assert!(parse_certificate_container(&hex::decode("70023000710101").unwrap()).is_err());
        assert_eq!(
            sign_command(0x9E, &[0xAB; 32]).to_short_bytes().unwrap()[..10],
            hex::decode("00871 19E267C24820081".replace(' ', "")).unwrap()[..]
        );
    }
}
