//! The APDU and byte counts of SPEC.md §12, asserted exactly from the
//! committed vectors (a tap is the steps from one SELECT to the next).

#![cfg(test)]

use citycard_testkit::vectors::{load_all, vectors_dir};

/// (APDUs, command bytes, response bytes) of the `k`-th tap from the end
/// of vector `name` (1 = the last tap).
fn tap_cost(name: &str, k: usize) -> (usize, usize, usize) {
    let v = load_all(&vectors_dir())
        .unwrap()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    let selects: Vec<usize> = v
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.note.as_deref().is_some_and(|n| n.starts_with("SELECT")))
        .map(|(i, _)| i)
        .collect();
    let at = selects.len() - k;
    let start = selects[at];
    let end = selects.get(at + 1).copied().unwrap_or(v.steps.len());
    let tap = &v.steps[start..end];
    let cmd = tap.iter().map(|s| s.command.len() / 2).sum();
    let resp = tap
        .iter()
        .map(|s| s.response.as_ref().unwrap().len() / 2)
        .sum();
    (tap.len(), cmd, resp)
}

#[test]
fn verification_costs_match_the_spec() {
    let measured = [
        ("library, cached", tap_cost("verify-library", 1)),
        ("transit, cached", tap_cost("verify-transit", 1)),
        ("full identity, cached", tap_cost("verify-full", 1)),
        (
            "library, first tap, certificate first",
            tap_cost("verify-library", 2),
        ),
        (
            "library, first tap, cache first",
            tap_cost("verify-cache-first", 1),
        ),
    ];
    for (what, cost) in &measured {
        println!("{what}: {cost:?}");
    }
    let expected = [
        (3, 86, 462),
        (3, 86, 433),
        (4, 91, 751),
        (4, 267, 464),
        (6, 337, 902),
    ];
    for ((what, cost), want) in measured.iter().zip(expected) {
        assert_eq!(*cost, want, "{what}");
    }
}

/// The card's own operation counts for the personalisation with 8 groups
/// (`personalise.json`, from the station's PSO to ACTIVATE), SPEC §12.
#[test]
fn personalisation_operations_match_the_spec() {
    use citycard_proto::apdu::ContactlessCard;
    let v = load_all(&vectors_dir())
        .unwrap()
        .into_iter()
        .find(|v| v.name == "personalise")
        .unwrap();
    let mut card = citycard_testkit::vectors::card_for(&v).unwrap();
    let mut state_len = 0;
    for step in &v.steps {
        let note = step.note.as_deref().unwrap_or("");
        if note.starts_with("PSO: VERIFY CERTIFICATE (station)") {
            card.reset_ops();
        }
        card.transmit(&hex::decode(&step.command).unwrap()).unwrap();
        if note == "ACTIVATE" {
            state_len = card.state().unwrap().encode().len();
            break;
        }
    }
    let ops = card.ops();
    println!("{ops:?}, state {state_len} bytes");
    assert_eq!(
        (ops.ecdsa_verify, ops.keygen, ops.ecdh, ops.writes),
        (10, 8, 1, 1),
        "station certificate + EXTERNAL AUTHENTICATE + 8 records; 8 group keys; 1 ECDH; W2"
    );
    assert_eq!(state_len, 3137, "the W2 state");
}
