//! The text table of a [`Report`].

use std::fmt::Write as _;

use crate::Report;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/m".to_string(), |x| format!("{x:.digits$}"))
}

/// Renders `r` as the table `citycard bench` prints.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "citycard bench — `{}`", r.command);
    let _ = writeln!(
        s,
        "machine: {} × {} | {} | Linux {}{}{}",
        m.nproc,
        m.cpu.as_deref().unwrap_or("unknown CPU"),
        m.rustc.as_deref().unwrap_or("rustc ?"),
        m.kernel.as_deref().unwrap_or("?"),
        if m.release_build {
            ""
        } else {
            " | DEBUG BUILD"
        },
        if r.quick { " | --quick" } else { "" },
    );
    let _ = writeln!(s, "pcscd rows: reader {:?}", r.vpcd_reader);
    let _ = writeln!(s);
    let _ = writeln!(s, "Verification, certificate cached (APDUs/bytes from the traced exchange; card time = on-card ops × JCOP figures + air, SPEC §12; piv rows: the PIV profile on the emulated PIV card, one ECDSA signature on the card, host EC ops = 2 ECDSA verifications)");
    let _ = writeln!(
        s,
        "| profile | APDUs | bytes cmd+resp | est. card ms JCOP4 424k / 106k | JCOP3 424k / 106k | host verify µs med / p95 | EC ops alone µs | ratio | e2e pcscd ms med / p95 | raw APDUs ms med |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for v in &r.verification {
        let e2e = match (v.e2e_ms_median, v.e2e_ms_p95) {
            (Some(a), Some(b)) => format!("{a:.2} / {b:.2}"),
            _ => "not measured (start tools/testbench)".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} + {} = {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | {:.2}× | {} | {} |",
            v.profile,
            v.apdus,
            v.bytes_command,
            v.bytes_response,
            v.bytes_command + v.bytes_response,
            v.est_card_ms_jcop4_424k,
            v.est_card_ms_jcop4_106k,
            v.est_card_ms_jcop3_424k,
            v.est_card_ms_jcop3_106k,
            v.host_verify_us_median,
            v.host_verify_us_p95,
            v.host_crypto_us_median,
            v.host_verify_to_crypto_ratio,
            e2e,
            opt(v.e2e_raw_apdu_ms_median, 2),
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "First tap of a reader at a card (GA refused, PSO, GA — SPEC §8 step 2)"
    );
    let _ = writeln!(
        s,
        "| profile | APDUs | bytes cmd+resp | card writes | est. card ms JCOP4 424k / 106k |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for v in r.verification.iter().filter(|v| v.card_profile != "piv") {
        let f = &v.first_tap;
        let _ = writeln!(
            s,
            "| {} | {} | {} + {} = {} | {} | {:.0} / {:.0} |",
            v.profile,
            f.apdus,
            f.bytes_command,
            f.bytes_response,
            f.bytes_command + f.bytes_response,
            f.card_ops.writes,
            f.estimate.jcop4_424k,
            f.estimate.jcop4_106k,
        );
    }
    if r.verification.iter().any(|v| v.card_profile == "piv") {
        let _ = writeln!(
            s,
            "(piv rows: every tap is the first — a PIV card caches nothing; the table above is the whole cost.)"
        );
    }
    if let Some(v) = r.verification.first() {
        let h = &v.host;
        let _ = writeln!(
            s,
            "\nHost EC operations alone ({} profile, medians over {} runs): ephemeral keygen {:.0} µs, ECDH {:.0} µs, ECDSA verify {:.0} µs.",
            v.profile, h.runs, h.keygen_us_median, h.ecdh_us_median, h.ecdsa_verify_us_median
        );
    }
    if let Some(v) = r.verification.iter().find(|v| v.card_profile == "piv") {
        let h = &v.host;
        let _ = writeln!(
            s,
            "Host EC operations alone ({}, medians over {} runs): certificate ECDSA verify {:.0} µs, certificate + challenge ECDSA verify {:.0} µs.",
            v.profile, h.runs, h.ecdsa_verify_us_median, h.crypto_us_median
        );
    }
    let p = &r.personalisation;
    let i = &p.issuance;
    let o = &p.card_ops;
    let _ = writeln!(s);
    let _ = writeln!(s, "Personalisation (one card)");
    let _ = writeln!(
        s,
        "| part | APDUs | bytes cmd+resp | on-card ops | est. card ms JCOP4 424k / 106k |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, part) in [
        ("personalise (SELECT … ACTIVATE)", &i.personalise),
        ("read-back before commit", &i.read_back),
        ("issue_one total", &i.total),
    ] {
        let c = &part.card_ops;
        let _ = writeln!(
            s,
            "| {name} | {} | {} + {} = {} | {} verify, {} keygen, {} ECDH, ≈{} B hashed, {} writes | {:.0} / {:.0} |",
            part.apdus,
            part.bytes_command,
            part.bytes_response,
            part.bytes_command + part.bytes_response,
            c.ecdsa_verify,
            c.keygen,
            c.ecdh,
            c.sha256_bytes,
            c.writes,
            part.estimate.jcop4_424k,
            part.estimate.jcop4_106k,
        );
    }
    let _ = o;
    let _ = writeln!(
        s,
        "| host per card | {:.2} ms host side ({:.2} ms with the in-process card's compute), {:.1}% of the estimated card time; median of {} cards |||||",
        p.host_ms_per_card,
        p.host_ms_per_card_incl_card,
        p.host_share_of_est_card_time * 100.0,
        p.host_cards
    );
    let _ = writeln!(
        s,
        "| batch through pcscd | {} |||||",
        match p.cards_per_minute {
            Some(c) => format!(
                "{c:.0} cards/minute over {} swapped emulated cards (card swap detection included); issue_one over PC/SC alone {} ms per card",
                p.batch_cards,
                opt(p.batch_issue_ms_median, 1)
            ),
            None => "not measured (start tools/testbench)".into(),
        }
    );
    let _ = writeln!(
        s,
        "| registry | {:.0} commits/second (begin_intent + commit_issued, sqlite) |||||",
        p.registry_commits_per_second
    );
    let _ = writeln!(s);
    match &r.p256_vs_ring {
        Some(c) => {
            let _ = writeln!(s, "p256 vs {} (medians over {} runs)", c.other, c.runs);
            let _ = writeln!(
                s,
                "| operation | p256 µs | {} µs | p256 / {} |",
                c.other, c.other
            );
            let _ = writeln!(s, "|---|---|---|---|");
            let _ = writeln!(
                s,
                "| ECDSA P-256 verify | {:.0} | {:.0} | {:.1}× |",
                c.verify_us_p256, c.verify_us_ring, c.verify_ratio
            );
            let _ = writeln!(
                s,
                "| keygen + ECDH | {:.0} | {:.0} | {:.1}× |",
                c.keygen_ecdh_us_p256, c.keygen_ecdh_us_ring, c.keygen_ecdh_ratio
            );
            let _ = writeln!(s, "| ECDH alone | {:.0} | — | — |", c.ecdh_us_p256);
        }
        None => {
            let _ = writeln!(
                s,
                "p256 vs ring: not measured (run tools/bench --with-ring, \
                 which builds with the compare-ring feature)"
            );
        }
    }
    let v = &r.revocation;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Revocation ({} cards in the registry, {} revoked cards past validity pruned)",
        v.cards_in_registry, v.pruned
    );
    let _ = writeln!(
        s,
        "| ids | publish ms | bundle bytes (plain list) | reader load ms | lookup µs |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| {} | {:.0} | {} ({}) | {:.1} | {:.3} |",
        v.ids,
        v.publish_ms,
        v.bundle_bytes,
        v.bundle_bytes_plain_list,
        v.reader_load_ms,
        v.lookup_us
    );
    if let Some(why) = &r.pcsc_not_measured {
        let _ = writeln!(
            s,
            "\npcscd rows not measured: {why} (start tools/testbench)"
        );
    }
    let _ = writeln!(s, "\n({:.1} s)", r.elapsed_s);
    s
}
