//! The PIV vectors (`applet-spec/vectors/piv/`) are current, and what they
//! state checks out independently of the code that wrote them: the
//! certificate decodes and verifies under the station key, OpenSSL reads it
//! as an X.509 certificate with the fields the profile promises, and the
//! tap's signature verifies over its challenge.
#![cfg(test)]

use citycard_proto::cert::Certificate;
use citycard_proto::piv::{self, CardAuthenticationCertificate};
use citycard_testkit::piv_vectors::{dir, generate_all, to_json};
use serde_json::Value;

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[test]
fn committed_piv_vectors_match_the_generator() {
    for (name, v) in generate_all() {
        let committed = std::fs::read_to_string(dir().join(format!("{name}.json"))).unwrap();
        assert_eq!(
            committed,
            to_json(&v),
            "applet-spec/vectors/piv/{name}.json is stale: run `cargo run -p citycard-testkit --bin gen-vectors`"
        );
    }
}

#[test]
fn the_certificate_vector_verifies_and_openssl_reads_it() {
    let v = load("certificate");
    let station = Certificate::decode(&bytes(&v["station_certificate"])).unwrap();
    let der = bytes(&v["certificate"]);
    let cert = CardAuthenticationCertificate::decode(&der).unwrap();
    cert.verify(&station.body().public_key).unwrap();
    assert_eq!(cert.signed_bytes(), bytes(&v["tbs_certificate"]).as_slice());
    assert_eq!(cert.body().card_number, v["body"]["card_number"]);
    assert_eq!(hex::encode_upper(cert.revocation_id()), v["revocation_id"]);
    let container = bytes(&v["container_5FC101"]);
    assert_eq!(
        piv::parse_certificate_container(&container).unwrap(),
        der.as_slice()
    );

    let path = std::env::temp_dir().join(format!("citycard-piv-vector-{}.der", std::process::id()));
    std::fs::write(&path, &der).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("openssl must be installed (it is part of the test bench)");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "Version: 3",
        "ecdsa-with-SHA256",
        "CN = LG-2026-000042",
        "Not Before: Nov 26 00:00:00 2026 GMT",
        "Not After : Nov 25 23:59:59 2031 GMT",
        "prime256v1",
        "Digital Signature",
        "2.16.840.1.101.3.6.8",
        "2.25.149749403958764091002485810512216562325",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[test]
fn the_tap_vector_signature_verifies_over_its_challenge() {
    let v = load("tap");
    let key = p256::PublicKey::from_sec1_bytes(&bytes(&v["card_public_key_uncompressed"])).unwrap();
    let challenge: [u8; 32] = bytes(&v["challenge"]).try_into().unwrap();
    let steps = v["steps"].as_array().unwrap();
    let last = bytes(&steps[4]["response"]);
    let (data, sw) = last.split_at(last.len() - 2);
    assert_eq!(sw, [0x90, 0x00]);
    let sig = piv::parse_signature(data).unwrap();
    piv::verify_challenge(&key, &challenge, &sig).unwrap();
    let mut other = challenge;
    other[0] ^= 1;
    assert!(piv::verify_challenge(&key, &other, &sig).is_err());
    // The certificate split over GET DATA + GET RESPONSE reassembles.
    let mut object = bytes(&steps[2]["response"]);
    object.truncate(object.len() - 2);
    let mut rest = bytes(&steps[3]["response"]);
    rest.truncate(rest.len() - 2);
    object.extend_from_slice(&rest);
    let content = piv::parse_data_object(&object).unwrap();
    let der = piv::parse_certificate_container(content).unwrap();
    assert_eq!(
        CardAuthenticationCertificate::decode(der)
            .unwrap()
            .body()
            .card_key,
        key
    );
}
