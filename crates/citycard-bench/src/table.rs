//! The text table of a [`Report`].

use std::fmt::Write as _;

use crate::personalisation::Part;
use crate::Report;

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/m".to_string(), |x| format!("{x:.digits$}"))
}

/// Renders `r` as the table `citycard bench` prints.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    header(&mut s, r);
    verification(&mut s, r);
    first_taps(&mut s, r);
    host_ec(&mut s, r);
    personalisation(&mut s, r);
    comparison(&mut s, r);
    revocation(&mut s, r);
    if let Some(why) = &r.pcsc_not_measured {
        let _ = writeln!(
            s,
            "\npcscd rows not measured: {why} (start tools/testbench)"
        );
    }
    let _ = writeln!(s, "\n({:.1} s)", r.elapsed_s);
    s
}

/// The command, the machine and the vpcd reader.
fn header(s: &mut String, r: &Report) {
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
}

/// The cached taps, one row per profile.
fn verification(s: &mut String, r: &Report) {
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
}

/// The first tap of a reader at a card, both strategies of SPEC §8 step 2.
fn first_taps(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "First tap of a reader at a card (SPEC §8 step 2): cache tried first (GA answered by a decoy, PSO, GA — the reader's default) or certificate sent first (PSO, GA)"
    );
    let _ = writeln!(
        s,
        "| profile | strategy | APDUs | bytes cmd+resp | card writes (bytes changed) | est. card ms JCOP4 424k / 106k |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for v in r.verification.iter().filter(|v| v.card_profile != "piv") {
        for (strategy, f) in [
            ("cache first", &v.first_tap),
            ("certificate first", &v.first_tap_certificate_first),
        ] {
            let _ = writeln!(
                s,
                "| {} | {strategy} | {} | {} + {} = {} | {} ({}) | {:.0} / {:.0} |",
                v.profile,
                f.apdus,
                f.bytes_command,
                f.bytes_response,
                f.bytes_command + f.bytes_response,
                f.card_ops.writes,
                f.card_ops.write_bytes,
                f.estimate.jcop4_424k,
                f.estimate.jcop4_106k,
            );
        }
    }
    if r.verification.iter().any(|v| v.card_profile == "piv") {
        let _ = writeln!(
            s,
            "(piv rows: every tap is the first — a PIV card caches nothing; the table above is the whole cost.)"
        );
    }
}

/// The host's EC operations alone.
fn host_ec(s: &mut String, r: &Report) {
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
}

/// One row of the personalisation table.
fn personalisation_part(s: &mut String, name: &str, part: &Part, storage: &str) {
    let c = &part.card_ops;
    let _ = writeln!(
        s,
        "| {name} | {} | {} + {} = {} | {} verify, {} keygen, {} ECDH, SHA-256 {} B, {} CMAC / {} B, {} CTR / {} B, {} writes ({} B changed) | {:.0} / {:.0} | {storage} |",
        part.apdus,
        part.bytes_command,
        part.bytes_response,
        part.bytes_command + part.bytes_response,
        c.ecdsa_verify,
        c.keygen,
        c.ecdh,
        c.sha256_bytes,
        c.cmac,
        c.cmac_bytes,
        c.ctr,
        c.ctr_bytes,
        c.writes,
        c.write_bytes,
        part.estimate.jcop4_424k,
        part.estimate.jcop4_106k,
    );
}

/// Issuance: counts, estimated card time, card storage, host and batch.
fn personalisation(s: &mut String, r: &Report) {
    let p = &r.personalisation;
    let i = &p.issuance;
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Personalisation (one card, {} linkability groups, {} stored attributes)",
        p.groups, i.stored_values
    );
    let _ = writeln!(
        s,
        "| part | APDUs | bytes cmd+resp | on-card ops | est. card ms JCOP4 424k / 106k | card storage |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let storage = format!(
        "{} B for the {} group records (records, keys, salt seeds); whole state {} B",
        p.record_storage_bytes, p.groups, p.state_bytes
    );
    personalisation_part(
        s,
        "personalise (SELECT … ACTIVATE)",
        &i.personalise,
        &storage,
    );
    personalisation_part(s, "read-back before commit", &i.read_back, "—");
    personalisation_part(s, "issue_one total", &i.total, "—");
    let _ = writeln!(
        s,
        "| host per card | {:.2} ms host side ({:.2} ms with the in-process card's compute), {:.1}% of the estimated card time; median of {} cards ||||||",
        p.host_ms_per_card,
        p.host_ms_per_card_incl_card,
        p.host_share_of_est_card_time * 100.0,
        p.host_cards
    );
    let _ = writeln!(
        s,
        "| batch through pcscd | {} ||||||",
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
        "| registry | {:.0} commits/second (begin_intent + commit_issued, sqlite) ||||||",
        p.registry_commits_per_second
    );
    let _ = writeln!(s);
}

/// p256 against ring.
fn comparison(s: &mut String, r: &Report) {
    let Some(c) = &r.p256_vs_ring else {
        let _ = writeln!(
            s,
            "p256 vs ring: not measured (run tools/bench --with-ring, \
             which builds with the compare-ring feature)"
        );
        return;
    };
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

/// Revocation at city scale.
fn revocation(s: &mut String, r: &Report) {
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
}
