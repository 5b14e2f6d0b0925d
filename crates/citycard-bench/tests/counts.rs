//! The bench's APDU and byte counts come from the real exchange; they must
//! equal SPEC §12's cost table. Counts only: timings are never asserted.
#![cfg(test)]

use citycard_bench::model::{self, CardOps, Writes};

/// The public-key operations of one applet GENERAL AUTHENTICATE a trace
/// shows (SPEC §12): 1 keygen, 2 ECDH.
fn general_authenticate_ops() -> CardOps {
    CardOps {
        keygen: 1,
        ecdh: 2,
        ..CardOps::default()
    }
}

/// The operations of a cached tap as SPEC §12 lists them (measured by the
/// card): 1 keygen, 2 ECDH, SHA-256 over 298 bytes, `cmac` CMACs over
/// `cmac_bytes`, one CTR over `ctr_bytes`; no signature, no write.
fn cached_tap_ops(cmac: u32, cmac_bytes: u64, ctr_bytes: u64) -> CardOps {
    CardOps {
        keygen: 1,
        ecdh: 2,
        sha256_bytes: 298,
        cmac,
        cmac_bytes,
        ctr: 1,
        ctr_bytes,
        ..CardOps::default()
    }
}

#[test]
fn tap_counts_equal_spec_cost_table() {
    let ex = citycard_bench::exchange_counts().unwrap();
    let row = |name: &str| ex.iter().find(|e| e.name == name).unwrap();

    // SPEC §12: (APDUs, command bytes, response bytes). The bench's card holds
    // the SPEC's sample values (same lengths), so bytes match exactly too.
    let library = row("library");
    let c = &library.cached;
    assert_eq!((c.apdus, c.bytes_command, c.bytes_response), (3, 86, 462));
    // The reader's default first tap tries the cache first: GA (a decoy),
    // PSO, GA (SPEC §12's last row); with the certificate sent first: PSO, GA.
    let f = &library.first;
    assert_eq!((f.apdus, f.bytes_command, f.bytes_response), (6, 337, 902));
    let f = &library.first_certificate_first;
    assert_eq!((f.apdus, f.bytes_command, f.bytes_response), (4, 267, 464));
    let t = &row("transit").cached;
    assert_eq!((t.apdus, t.bytes_command, t.bytes_response), (3, 86, 433));
    let full = &row("full_identity").cached;
    assert_eq!(
        (full.apdus, full.bytes_command, full.bytes_response),
        (4, 91, 751)
    );

    // The counts are those of the traced exchange itself.
    for e in &ex {
        for tap in [&e.cached, &e.first, &e.first_certificate_first] {
            assert_eq!(tap.apdus, tap.entries.len() as u64);
            let cmd: u64 = tap.entries.iter().map(|x| x.command.len() as u64).sum();
            let resp: u64 = tap.entries.iter().map(|x| x.response.len() as u64).sum();
            assert_eq!((tap.bytes_command, tap.bytes_response), (cmd, resp));
        }
        // On-card operations (SPEC §12): a first tap (cache tried first) is
        // a decoy, a PSO (1 verification, the power-up's one write of at
        // most 100 changed bytes) and the answer; certificate first, the PSO
        // and the answer. What the card counts agrees with what the trace
        // shows.
        for (first, taps) in [(&e.first, 2), (&e.first_certificate_first, 1)] {
            let o = &first.card_ops;
            assert_eq!(o.ecdsa_verify, 1, "{}", e.name);
            assert_eq!((o.writes, o.write_units), (1, 1), "{}", e.name);
            assert!(o.write_bytes <= model::WRITE_UNIT_BYTES, "{}", e.name);
            assert_eq!((o.keygen, o.ecdh, o.ctr), (taps, 2 * taps, taps));
            let seen = model::card_ops(&first.entries, model::Writes::default());
            assert_eq!(
                (seen.keygen, seen.ecdh, seen.ecdsa_verify),
                (o.keygen, o.ecdh, o.ecdsa_verify)
            );
        }
        assert_eq!(
            model::card_ops(&e.cached.entries, model::Writes::default()),
            general_authenticate_ops()
        );
    }
    // A cached tap, as SPEC §12's table of measured operations.
    assert_eq!(library.cached.card_ops, cached_tap_ops(4, 942, 375));
    assert_eq!(row("transit").cached.card_ops, cached_tap_ops(2, 830, 346));
    assert_eq!(
        row("full_identity").cached.card_ops,
        cached_tap_ops(9, 1_601, 662)
    );
    // Certificate first: the cached tap plus a verification, SHA-256 over
    // 176 bytes more and one write.
    let f = &library.first_certificate_first.card_ops;
    assert_eq!(f.sha256_bytes, 298 + 176);
    // The estimate for the cached library tap (SPEC §12, §14): 27 + 40 +
    // 9.3 (SHA) + 4.9 (CMAC) + 1.7 (CTR) ≈ 83 ms compute; 548 bytes and 3
    // APDUs of air: ≈ 97 ms at 424 kbit/s, ≈ 133 ms at 106 kbit/s.
    let est = &library.cached.estimate;
    let aes = 5.0 * 0.5 + (942.0 + 375.0) / 16.0 * 0.05;
    assert!((est.compute_ms_jcop4 - (67.0 + 298.0 / 32.0 + aes)).abs() < 1e-9);
    assert_eq!(est.compute_ms_jcop4.round(), 83.0);
    assert_eq!(est.jcop4_424k.round(), 97.0);
    assert_eq!(est.jcop4_106k.round(), 133.0);
    // A first tap with the certificate sent first adds a verification (30),
    // the hash of the certificate (5.5) and one write (10): ≈ 148 ms, ≤ 160;
    // the cache tried first, ≈ 243 ms.
    let est = &library.first_certificate_first.estimate;
    assert_eq!(est.jcop4_424k.round(), 148.0);
    assert_eq!(library.first.estimate.jcop4_424k.round(), 243.0);
}

#[test]
fn personalisation_counts_equal_spec() {
    let mut city = citycard_bench::City::new().unwrap();
    let c = citycard_bench::personalisation::counts(&mut city).unwrap();
    // All eight linkability groups (SPEC §12, `personalise.json`): on card
    // 10 ECDSA verifications (station certificate, EXTERNAL AUTHENTICATE, 8
    // records), 8 key generations (group keys), 1 ECDH (secure channel), a
    // salt (CMAC) and a digest per stored value and group, and one
    // persistent write (ACTIVATE: the card was prepared before) charged by
    // the bytes it changed. Command bytes depend on the values (card number,
    // station), so they are checked against the trace only.
    assert_eq!((c.groups, c.stored_values), (8, 6));
    let p = &c.personalise;
    let o = &p.card_ops;
    assert_eq!(
        (o.ecdsa_verify, o.keygen, o.ecdh, o.ecdsa_sign, o.writes),
        (10, 8, 1, 0, 1)
    );
    assert!(o.cmac >= 8 * 6, "{o:?}");
    // The trace shows the same public-key operations.
    let seen = model::card_ops(&c.total_entries, model::Writes::default());
    assert_eq!(
        (seen.ecdsa_verify, seen.keygen, seen.ecdh),
        (o.ecdsa_verify, o.keygen, o.ecdh)
    );
    assert_eq!(
        o.write_units,
        o.write_bytes.div_ceil(model::WRITE_UNIT_BYTES)
    );
    // The write is the whole issued state, less what preparation already
    // stored.
    assert!(o.write_bytes > 2_784 && o.write_bytes <= c.state_bytes);
    // Budgets (protocol version 2): ≤ 2 s of estimated card time and ≤ 3 KiB
    // of card storage for the records (8 × (300 + 32 + 16) = 2,784 bytes).
    assert_eq!(c.record_storage_bytes, 8 * (300 + 32 + 16));
    assert!(c.record_storage_bytes <= 3 * 1024);
    assert!(p.estimate.jcop4_424k <= 2_000.0, "{:?}", p.estimate);
    // No read-back any more: the check value at ACTIVATE replaces it.
    assert_eq!(c.read_back.apdus, 0);
    assert_eq!(c.total.apdus, p.apdus + c.read_back.apdus);
    assert_eq!(
        c.total.bytes_command,
        p.bytes_command + c.read_back.bytes_command
    );
}

#[test]
fn writes_are_charged_by_the_bytes_they_change() {
    use citycard_bench::city::changed_bytes;
    // One unit per started 100 bytes, at least one per write.
    assert_eq!(Writes::one(0).units, 1);
    assert_eq!(Writes::one(100).units, 1);
    assert_eq!(Writes::one(101).units, 2);
    assert_eq!(Writes::one(3_137).units, 32);
    // The changed span: an insertion in the middle changes only itself.
    assert_eq!(changed_bytes(b"", b"abcdef"), 6);
    assert_eq!(changed_bytes(b"abcdef", b"abcdef"), 0);
    assert_eq!(changed_bytes(b"abcdef", b"abcXYZdef"), 3);
    assert_eq!(changed_bytes(b"abcdef", b"abXdef"), 1);
    assert_eq!(changed_bytes(b"abcdef", b"abc"), 0);
    // A 70-byte entry appended to a list whose length byte changes: the
    // entries already there count as unchanged.
    let header: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
    let entry = |seed: u8| -> Vec<u8> { (0..70u8).map(|i| i.wrapping_mul(31) ^ seed).collect() };
    let before = [header.clone(), vec![1], entry(1)].concat();
    let after = [header, vec![2], entry(1), entry(2)].concat();
    let changed = changed_bytes(&before, &after);
    assert!((71..=90).contains(&changed), "{changed}");
    let mut w = Writes::one(150);
    w.add(&Writes::one(20));
    assert_eq!(
        w,
        Writes {
            count: 2,
            bytes: 170,
            units: 3
        }
    );
    assert_eq!(w.since(&Writes::one(150)), Writes::one(20));
}

/// Length of the DER INTEGER contents of the unsigned big-endian `bytes`:
/// leading zero bytes dropped (at least one byte kept), one `00` added when
/// the first remaining byte has its top bit set (X.690 §8.3).
fn der_uint_len(bytes: &[u8]) -> u64 {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let rest = &bytes[first..];
    rest.len() as u64 + u64::from(rest[0] & 0x80 != 0)
}

/// DER length of an ECDSA signature `SEQUENCE { INTEGER r, INTEGER s }`.
fn der_signature_len(sig: &p256::ecdsa::Signature) -> u64 {
    2 + (2 + der_uint_len(&sig.r().to_bytes())) + (2 + der_uint_len(&sig.s().to_bytes()))
}

/// The PIV tap (piv-profile.md §5), byte by byte, from the APDU layout:
///
/// | APDU | command | response |
/// |---|---|---|
/// | SELECT citycard `00 A4 04 00 0A <AID 10> 00` → `6A82` | 5 + 10 + 1 = 16 | 2 |
/// | SELECT PIV `00 A4 04 00 0B <AID 11> 00` → APT | 5 + 11 + 1 = 17 | 53 + 2 = 55 |
/// | GET DATA `00 CB 3F FF 05 5C 03 5F C1 01 00` | 11 | 256 + `61xx` = 258 |
/// | GET RESPONSE `00 C0 00 00 xx` | 5 | (C + 13 − 256) + 2 |
/// | GENERAL AUTHENTICATE `00 87 11 9E 26 7C 24 82 00 81 20 <32> 00` | 5 + 38 + 1 = 44 | `7C L 82 L <S>` + 2 = S + 6 |
///
/// The emulated card's Application Property Template is `61 33` + 51 bytes:
/// `4F 06 <PIX>` (8), `79 07 4F 05 <RID>` (9), `50 0C "citycard PIV"` (14),
/// `AC 12 { 80 01 alg × 5 (03 08 0A 0C 11), 06 01 00 }` (20). The object
/// answered to GET DATA is `53 82 LL LL { 70 82 LL LL <C> 71 01 00 FE 00 }`:
/// C + 13 bytes. S is the DER length of the card's signature (70 when r and s
/// are 32-byte INTEGERs).
///
/// C, the certificate: 423 bytes in `applet-spec/vectors/piv/certificate.json`
/// (station `station-1`, card number `LG-2026-000042`, an 8-byte serial, a
/// 70-byte station signature); the bench's city has station `desk-1` (3
/// bytes shorter) and card number `LG-000001` (5 shorter): 415 bytes, plus
/// one byte if the serial (revocation id) has its top bit set and the
/// station signature's DER length minus 70 (the station key is random per
/// run, the issue date changes daily).
///
/// Totals: 5 APDUs, 93 command bytes, C + S + 80 response bytes — 565 + the
/// DER extras, ≈ 658 bytes in all.
#[test]
fn piv_tap_counts_follow_the_piv_profile_layout() {
    // The vector the hand computation starts from.
    let vector: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../applet-spec/vectors/piv/certificate.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(vector["certificate"].as_str().unwrap().len() / 2, 423);
    assert_eq!(vector["body"]["station_holder"], "station-1");
    assert_eq!(vector["body"]["card_number"], "LG-2026-000042");
    assert!(vector["certificate"]
        .as_str()
        .unwrap()
        .contains("020841FB67C58B13203A")); // 8-byte serial
    assert!(vector["certificate"]
        .as_str()
        .unwrap()
        .contains("034700304402")); // 70-byte signature

    let ex = citycard_bench::piv_exchange_counts().unwrap();
    assert_eq!(
        ex.iter().map(|e| (e.name, e.partner)).collect::<Vec<_>>(),
        [
            ("piv (full)", "full_identity"),
            ("piv (transit)", "transit")
        ]
    );
    for e in &ex {
        let tap = &e.tap;
        let parts = citycard_bench::piv::tap_parts(&tap.entries).unwrap();
        let body = parts.certificate.body();
        assert_eq!(body.card_number, "LG-000001");
        assert_eq!(body.station_holder, "desk-1");
        assert_eq!(body.issuer_id, "LIEGE");

        // The station signature: after the TBSCertificate come the algorithm
        // (12 bytes) and `03 LL 00`.
        let der = parts.certificate.as_bytes();
        let tbs = parts.certificate.signed_bytes();
        let at = der.windows(tbs.len()).position(|w| w == tbs).unwrap() + tbs.len();
        let station_sig = p256::ecdsa::Signature::from_der(&der[at + 12 + 3..]).unwrap();
        let serial_extra = der_uint_len(&parts.certificate.revocation_id()) - 8;
        let c = 415 + serial_extra + der_signature_len(&station_sig) - 70;
        assert_eq!(der.len() as u64, c, "certificate length");
        let s = der_signature_len(&parts.signature);
        assert_eq!(parts.signature_der_len as u64, s);
        assert!((415..=418).contains(&c) && (68..=72).contains(&s));

        let per_apdu: Vec<(u64, u64)> = tap
            .entries
            .iter()
            .map(|x| (x.command.len() as u64, x.response.len() as u64))
            .collect();
        assert_eq!(
            per_apdu,
            [
                (16, 2),
                (17, 55),
                (11, 258),
                (5, c + 13 - 256 + 2),
                (44, s + 6)
            ],
            "{}",
            e.name
        );
        assert_eq!(tap.entries[0].response, [0x6A, 0x82]);
        assert_eq!(&tap.entries[3].command[..4], [0x00, 0xC0, 0x00, 0x00]);
        assert_eq!(&tap.entries[4].command[..4], [0x00, 0x87, 0x11, 0x9E]);
        assert_eq!(
            (tap.apdus, tap.bytes_command, tap.bytes_response),
            (5, 93, c + s + 80)
        );

        // On the card: one ECDSA P-256 signature (the challenge is signed as
        // a prehash), nothing hashed, nothing written.
        assert_eq!(
            tap.card_ops,
            CardOps {
                ecdsa_sign: 1,
                ..CardOps::default()
            }
        );
        let bytes = (93 + c + s + 80) as f64;
        let est = &tap.estimate;
        assert!((est.compute_ms_jcop4 - model::SIGN_MS).abs() < 1e-9);
        assert!((est.jcop4_424k - (32.0 + bytes * 0.021 + 5.0)).abs() < 1e-9);
        assert!((est.jcop4_106k - (32.0 + bytes * 0.085 + 5.0)).abs() < 1e-9);
        assert!((est.jcop3_424k - (64.0 + bytes * 0.021 + 5.0)).abs() < 1e-9);
    }
    // Both partners see exactly the same exchange: same card, same layout.
    assert_eq!(ex[0].tap.bytes_response, ex[1].tap.bytes_response);
}

#[test]
fn card_ops_tell_piv_card_authentication_from_the_applet() {
    use citycard_transport::TraceEntry;
    let entry = |command: &[u8], response: &[u8]| TraceEntry {
        command: command.to_vec(),
        response: response.to_vec(),
        error: None,
        elapsed: std::time::Duration::ZERO,
    };
    // PIV GENERAL AUTHENTICATE 9E, accepted: one signature.
    let sign = entry(&[0x00, 0x87, 0x11, 0x9E, 0x00], &[0x7C, 0x00, 0x90, 0x00]);
    assert_eq!(
        model::card_ops(std::slice::from_ref(&sign), Writes::default()),
        CardOps {
            ecdsa_sign: 1,
            ..CardOps::default()
        }
    );
    // Refused: nothing.
    let refused = entry(&[0x00, 0x87, 0x11, 0x9E, 0x00], &[0x6A, 0x82]);
    assert_eq!(
        model::card_ops(&[refused], Writes::default()),
        CardOps::default()
    );
    // PIV management-key authentication (87 … 9B): not a P-256 signature.
    let mgmt = entry(&[0x00, 0x87, 0x03, 0x9B, 0x00], &[0x7C, 0x00, 0x90, 0x00]);
    assert_eq!(
        model::card_ops(&[mgmt], Writes::default()),
        CardOps::default()
    );
    // The applet's GENERAL AUTHENTICATE (INS 86) is unchanged.
    let ga = entry(&[0x00, 0x86, 0x00, 0x00, 0x00], &[0x61, 0x10]);
    assert_eq!(
        model::card_ops(&[ga], Writes::default()),
        general_authenticate_ops()
    );
}
