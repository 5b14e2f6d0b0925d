//! Byte-exact vectors for the PIV profile (`applet-spec/piv-profile.md` §9):
//! the Card Authentication certificate from fixed keys, and one tap.

use citycard_proto::piv::{self, CardAuthenticationBody, CardAuthenticationCertificate};
use citycard_proto::{apdu::Command, attr::AttributeId, attr::AttributeSet, crypto, tlv};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};

use crate::keys::{city, date, key_hex, test_key};

/// The folder holding the committed PIV vectors.
pub fn dir() -> std::path::PathBuf {
    crate::vectors::vectors_dir().join("piv")
}

fn hexs(b: &[u8]) -> String {
    hex::encode_upper(b)
}

fn cmd(c: &Command) -> String {
    hexs(&c.to_short_bytes().unwrap_or_default())
}

/// `(file name, JSON)` for every PIV vector.
pub fn generate_all() -> Vec<(&'static str, Value)> {
    let city = city();
    let card = test_key("piv vector card 9E");
    let body = CardAuthenticationBody {
        issuer_id: city.station_certificate.body().issuer.clone(),
        station_holder: city.station_certificate.body().holder.clone(),
        station: city.station_certificate.fingerprint(),
        card_number: "LG-2026-000042".into(),
        valid_from: date((2026, 11, 26)),
        valid_to: date((2031, 11, 25)),
        card_key: card.public_key(),
        predicates: AttributeSet::EMPTY.with(AttributeId::AGE_OVER_18),
    };
    let tbs = body.to_be_signed().expect("fixture body");
    let signature = crypto::sign(&city.station, &tbs);
    let cert = CardAuthenticationCertificate::assemble(&tbs, &signature).expect("fixture cert");
    let container = piv::certificate_container(cert.as_bytes());
    let certificate = json!({
        "name": "certificate",
        "description": "citycard Card Authentication certificate (piv-profile.md §3) from the test city's station; RFC 6979 signature",
        "station_private_key": key_hex(&city.station),
        "station_certificate": hexs(city.station_certificate.as_bytes()),
        "card_private_key": key_hex(&card),
        "body": {
            "issuer_id": body.issuer_id,
            "station_holder": body.station_holder,
            "station_fingerprint": hexs(&body.station),
            "card_number": body.card_number,
            "valid_from": body.valid_from.to_string(),
            "valid_to": body.valid_to.to_string(),
            "card_public_key_uncompressed": hexs(p256::EncodedPoint::from(body.card_key).as_bytes()),
            "predicates": ["age_over_18"],
        },
        "revocation_id": hexs(&cert.revocation_id()),
        "tbs_certificate": hexs(&tbs),
        "station_signature_raw": hexs(&signature),
        "certificate": hexs(cert.as_bytes()),
        "container_5FC101": hexs(&container),
    });

    // One tap: what a reader sends and a card of this profile answers.
    let challenge: [u8; 32] = crypto::sha256(&[b"piv vector challenge"]);
    let object = tlv::encode(0x53, &container);
    let (first, rest) = object.split_at(256.min(object.len()));
    let mut apt = Vec::new();
    tlv::push(&mut apt, 0x4F, &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
    tlv::push(
        &mut apt,
        0x79,
        &tlv::encode(0x4F, &[0xA0, 0x00, 0x00, 0x03, 0x08]),
    );
    tlv::push(&mut apt, 0xAC, &[0x80, 0x01, 0x11, 0x06, 0x00]);
    let apt = tlv::encode(0x61, &apt);
    let sig: Signature = SigningKey::from(&card)
        .sign_prehash(&challenge)
        .expect("prehash signature");
    let answer = tlv::encode(0x7C, &tlv::encode(0x82, sig.to_der().as_bytes()));
    let with_sw = |data: &[u8], sw: [u8; 2]| {
        let mut v = data.to_vec();
        v.extend_from_slice(&sw);
        hexs(&v)
    };
    let remaining = u8::try_from(rest.len()).unwrap_or(0);
    let tap = json!({
        "name": "tap",
        "description": "one reader tap of a PIV-profile card (piv-profile.md §5); the card key's ECDSA signature is RFC 6979 here, a real card's is randomised",
        "card_public_key_uncompressed": hexs(p256::EncodedPoint::from(card.public_key()).as_bytes()),
        "challenge": hexs(&challenge),
        "steps": [
            { "note": "SELECT citycard: not here", "command": cmd(&citycard_proto::fci::select_command()), "response": "6A82" },
            { "note": "SELECT PIV: Application Property Template", "command": cmd(&piv::select_command()), "response": with_sw(&apt, [0x90, 0x00]) },
            { "note": "GET DATA 5FC101, first 256 bytes", "command": cmd(&piv::get_data_command(piv::OBJECT_CARD_AUTHENTICATION_CERTIFICATE)), "response": with_sw(first, [0x61, remaining]) },
            { "note": "GET RESPONSE, the rest", "command": hexs(&[0x00, 0xC0, 0x00, 0x00, remaining]), "response": with_sw(rest, [0x90, 0x00]) },
            { "note": "GENERAL AUTHENTICATE 9E over the challenge", "command": cmd(&piv::sign_command(piv::SLOT_CARD_AUTHENTICATION, &challenge)), "response": with_sw(&answer, [0x90, 0x00]) },
        ],
    });
    vec![("certificate", certificate), ("tap", tap)]
}

/// Serialises a vector as committed (pretty JSON, trailing newline).
pub fn to_json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
