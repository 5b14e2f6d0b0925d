//! Conformance of the reference card, in-process: the committed vectors are
//! exactly what the card produces, and every vector replays byte for byte.
#![cfg(test)]

use citycard_proto::apdu::ContactlessCard;
use citycard_testkit::vectors::{card_for, generate_all, load_all, run, to_json, vectors_dir};

#[test]
fn committed_vectors_match_the_reference_card() {
    let committed = load_all(&vectors_dir()).expect("load vectors");
    let generated = generate_all();
    assert!(generated.len() >= 12, "scenarios: {}", generated.len());
    assert_eq!(
        committed.len(),
        generated.len(),
        "run `cargo run -p citycard-testkit --bin gen-vectors`"
    );
    for g in &generated {
        let c = committed
            .iter()
            .find(|c| c.name == g.name)
            .unwrap_or_else(|| panic!("{} not committed", g.name));
        assert_eq!(
            to_json(c),
            to_json(g),
            "vector {} is stale; regenerate",
            g.name
        );
    }
}

#[test]
fn every_vector_replays_in_process() {
    let vectors = load_all(&vectors_dir()).expect("load vectors");
    assert!(!vectors.is_empty());
    for v in &vectors {
        let mut card = card_for(v).unwrap();
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        run(v, &mut link).unwrap_or_else(|e| panic!("{}: {e}", v.name));
    }
}

#[test]
fn a_changed_byte_in_a_response_is_detected() {
    let vectors = load_all(&vectors_dir()).expect("load vectors");
    let mut v = vectors
        .into_iter()
        .find(|v| v.name == "verify-library")
        .expect("verify-library");
    let step = v
        .steps
        .iter_mut()
        .rev()
        .find(|s| s.response.as_ref().is_some_and(|r| r.len() > 8))
        .unwrap();
    let r = step.response.as_mut().unwrap();
    let flipped = if r.starts_with('0') { "1" } else { "0" };
    r.replace_range(0..1, flipped);
    let mut card = card_for(&v).unwrap();
    let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
    assert!(run(&v, &mut link).is_err());
}
