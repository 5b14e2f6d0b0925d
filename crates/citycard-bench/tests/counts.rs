//! The bench's APDU and byte counts come from the real exchange; they must
//! equal SPEC §12's cost table. Counts only: timings are never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use citycard_bench::model::{self, CardOps};

#[test]
fn tap_counts_equal_spec_cost_table() {
    let ex = citycard_bench::exchange_counts().unwrap();
    let row = |name: &str| ex.iter().find(|e| e.name == name).unwrap();

    // SPEC §12: (APDUs, command bytes, response bytes). The bench's card holds
    // the SPEC's sample values (same lengths), so bytes match exactly too.
    let library = row("library");
    let c = &library.cached;
    assert_eq!((c.apdus, c.bytes_command, c.bytes_response), (3, 86, 407));
    let f = &library.first;
    assert_eq!((f.apdus, f.bytes_command, f.bytes_response), (5, 329, 411));
    let t = &row("transit").cached;
    assert_eq!((t.apdus, t.bytes_command, t.bytes_response), (3, 86, 375));
    let full = &row("full_identity").cached;
    assert_eq!(
        (full.apdus, full.bytes_command, full.bytes_response),
        (4, 91, 569)
    );

    // The counts are those of the traced exchange itself.
    for e in &ex {
        for tap in [&e.cached, &e.first] {
            assert_eq!(tap.apdus, tap.entries.len() as u64);
            let cmd: u64 = tap.entries.iter().map(|x| x.command.len() as u64).sum();
            let resp: u64 = tap.entries.iter().map(|x| x.response.len() as u64).sum();
            assert_eq!((tap.bytes_command, tap.bytes_response), (cmd, resp));
        }
        // On-card operations (SPEC §12): a cached tap is 1 keygen, 2 ECDH, no
        // signature work, no write; a first tap adds 1 verification and 1 write.
        assert_eq!(
            e.cached.card_ops,
            CardOps {
                keygen: 1,
                ecdh: 2,
                sha256_bytes: model::GA_KDF_BYTES,
                aes_units: 1,
                ..CardOps::default()
            }
        );
        assert_eq!(e.first.card_ops.ecdsa_verify, 1);
        assert_eq!(e.first.card_ops.writes, 1);
    }
    // SPEC §12's estimate for the cached library tap: 80 ms compute, ≈ 93 ms at
    // 424 kbit/s, ≈ 125 ms at 106 kbit/s.
    let est = &library.cached.estimate;
    assert!((est.compute_ms_jcop4 - 80.0).abs() < 1e-9);
    assert_eq!(est.jcop4_424k.round(), 93.0);
    assert_eq!(est.jcop4_106k.round(), 125.0);
}

#[test]
fn personalisation_counts_equal_spec() {
    let mut city = citycard_bench::City::new().unwrap();
    let c = citycard_bench::personalisation::counts(&mut city).unwrap();
    // SPEC §12 (personalise.json): 8 APDUs, 91 response bytes; on card 3 ECDSA
    // verifications, 1 key generation, 1 ECDH, 2 persistent writes. Command
    // bytes depend on the values (card number, station), so they are checked
    // against the trace only.
    let p = &c.personalise;
    assert_eq!((p.apdus, p.bytes_response), (8, 91));
    let o = &p.card_ops;
    assert_eq!(
        (o.ecdsa_verify, o.keygen, o.ecdh, o.ecdsa_sign, o.writes),
        (3, 1, 1, 0, 2)
    );
    // The read-back is a reader's first tap with the station's check credential.
    assert_eq!(c.read_back.card_ops.writes, 1);
    assert_eq!(c.total.apdus, p.apdus + c.read_back.apdus);
    assert_eq!(
        c.total.bytes_command,
        p.bytes_command + c.read_back.bytes_command
    );
}
