//! `citycard demo` runs the whole story on the built-in emulated card and
//! every step behaves as specified (the JSON form reports each check).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

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
