//! `citycard demo` runs the whole story on the built-in emulated card and
//! every step behaves as specified (the JSON form reports each check).
#![cfg(test)]

#[test]
fn demo_tells_the_whole_story() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["demo", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["life_cycle"], serde_json::json!(["blank", "issued"]));
    assert_eq!(v["library"]["resident"], true);
    assert_eq!(v["library"]["only_granted"], true);
    assert_eq!(v["transit"]["age_over_65"], true);
    assert_eq!(v["clone_rejected"], true);
    assert_eq!(v["revoked_rejected"], true);

    // The PIV part: a second card, on the emulated PIV card.
    let p = &v["piv"];
    let number = p["card_number"].as_str().unwrap();
    assert_eq!(number, "DC-000002", "{p}");
    assert_eq!(p["factory_management_key_allowed"], true);
    assert_eq!(p["only_certificate_on_card"], true);
    // Born 1950: every age predicate held on the issue date, so all are signed.
    assert_eq!(
        p["predicates"],
        serde_json::json!(["age_over_18", "age_over_21", "age_over_65"])
    );
    // The library: genuine, PIV profile, resident, and no pseudonym (none exists).
    assert_eq!(p["library"]["verdict"], "genuine");
    assert_eq!(p["library"]["profile"], "piv");
    assert_eq!(p["library"]["resident"], true);
    assert!(p["library"]["pseudonym"].is_null(), "{p}");
    // piv-profile.md §6: 5 APDUs, ≈ 660 bytes on the emulated card (the DER
    // signatures vary by a few bytes).
    assert_eq!(p["library"]["apdus"], 5);
    assert!(
        (650..=670).contains(&p["library"]["bytes"].as_u64().unwrap()),
        "{p}"
    );
    assert_eq!(p["transit"]["verdict"], "genuine");
    assert_eq!(p["transit"]["profile"], "piv");
    assert_eq!(p["transit"]["age_over_65"], true);
    // Anyone reads the card number, no credential needed.
    assert_eq!(p["card_number_read_without_credential"], number);
    assert_eq!(p["clone"], "clone");
    assert_eq!(p["revoked"], "revoked");
}

#[test]
fn demo_text_tells_the_piv_part() {
    let start = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citycard"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |prefix: &str| {
        text.lines()
            .skip_while(|l| !l.starts_with(prefix))
            .take_while(|l| l.starts_with(prefix) || l.starts_with("   "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        line("9. Card DC-000002 issued on an emulated PIV card").contains("factory management key"),
        "{text}"
    );
    let tap = line("10. Library desk");
    assert!(
        tap.contains("genuine, profile piv. Resident: yes; pseudonym: none"),
        "{text}"
    );
    assert!(
        tap.contains("Transit gate: genuine, profile piv. Age over 65: yes"),
        "{text}"
    );
    assert!(
        tap.contains("with no credential, reads DC-000002"),
        "{text}"
    );
    assert!(
        line("11. A cloned PIV card").ends_with(": clone."),
        "{text}"
    );
    assert!(
        line("12. The PIV card is reported stolen").ends_with(": revoked."),
        "{text}"
    );
    assert!(text.contains("Demo complete: every step behaved as specified."));
    // The whole demo stays quick (≈ 1–2 s; generous bound for a loaded debug build).
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn usage_errors_exit_2_and_unknown_fault_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args(["no-such-command"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_citycard"))
        .args([
            "card",
            "emulate",
            "--state",
            "/nonexistent/x.state",
            "--fault",
            "melt",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid fault"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
