//! No-panic property of every `citycard-proto` decoder (STYLE item 11): the
//! bodies of the cargo-fuzz targets (`fuzz/bodies/proto.rs`, shared with
//! `fuzz/fuzz_targets`) run over their seed corpus and a few thousand
//! mutations of it, plus the regression inputs the fuzzers found.
#![cfg(test)]

#[path = "../../../fuzz/bodies/proto.rs"]
mod bodies;

use proptest::prelude::*;

#[test]
fn every_target_has_seeds() {
    let seeds = bodies::seeds();
    for t in bodies::TARGETS {
        assert!(
            seeds.iter().any(|(name, _)| name == t),
            "no seed for target {t}"
        );
    }
}

#[test]
fn seeds_and_mutations_never_panic() {
    let seeds = bodies::seeds();
    for (k, t) in bodies::TARGETS.iter().enumerate() {
        let mine: Vec<&[u8]> = seeds
            .iter()
            .filter(|(n, _)| n == t)
            .map(|(_, s)| s.as_slice())
            .collect();
        // Bodies that check signatures get fewer mutations.
        let n = match *t {
            "trust_bundle" | "revocation_list" | "certificate" | "record" | "session_open" => 500,
            _ => 3000,
        };
        bodies::run_mutations(&mine, n, 0x5EED + k as u64, |input| bodies::run(t, input));
    }
}

#[test]
fn seeds_are_accepted_by_their_decoder() {
    // The seeds are real objects: a decoder that refused them would leave
    // the fuzzer starting from nothing.
    use citycard_proto::cert::Certificate;
    use citycard_proto::record::{DisclosedEntry, GroupRecord, StoredValue};
    use citycard_proto::revocation::{RevocationList, TrustBundle};
    for (t, s) in bodies::seeds() {
        let ok = match t {
            "certificate" => Certificate::decode(&s).is_ok(),
            "record" => GroupRecord::decode(&s).is_ok(),
            "attribute_entry" => {
                StoredValue::decode_value(&s).is_ok() || DisclosedEntry::decode_value(&s).is_ok()
            }
            "revocation_list" => RevocationList::decode(&s).is_ok(),
            "trust_bundle" => TrustBundle::decode(&s).is_ok(),
            _ => true,
        };
        assert!(ok, "seed for {t} refused: {}", hex::encode(&s));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Arbitrary bytes, for every proto decoder.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        for t in bodies::TARGETS {
            bodies::run(t, &data);
        }
    }
}
