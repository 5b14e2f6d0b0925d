//! The APDU and byte counts of SPEC.md §12, asserted exactly from the
//! committed vectors (the tap is the steps from the last SELECT).
#![cfg(test)]

use citycard_testkit::vectors::{load_all, vectors_dir};

fn tap_cost(name: &str, from_select: usize) -> (usize, usize, usize) {
    let v = load_all(&vectors_dir())
        .unwrap()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap();
    let selects: Vec<usize> = v
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.note.as_deref().is_some_and(|n| n.starts_with("SELECT")))
        .map(|(i, _)| i)
        .collect();
    let start = selects[selects.len() - from_select];
    let tap = &v.steps[start..];
    let cmd = tap.iter().map(|s| s.command.len() / 2).sum();
    let resp = tap
        .iter()
        .map(|s| s.response.as_ref().unwrap().len() / 2)
        .sum();
    (tap.len(), cmd, resp)
}

#[test]
fn verification_costs_match_the_spec() {
    assert_eq!(
        tap_cost("verify-cached", 1),
        (3, 86, 407),
        "library, cached"
    );
    assert_eq!(
        tap_cost("verify-library", 1),
        (4, 264, 409),
        "library, first tap"
    );
    assert_eq!(
        tap_cost("verify-transit", 1),
        (4, 264, 377),
        "transit, first tap"
    );
    assert_eq!(tap_cost("verify-full", 1), (5, 266, 571), "full, first tap");
}
