//! Independent PC/SC clients see the emulated card as a card: `opensc-tool`
//! sends SELECT and gets the FCI; `pcsc_scan` sees the ATR.
#![cfg(test)]

use std::process::Command;

use citycard_e2e::{bench_available, vpcd_lock, ServedCard};

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (install opensc / pcsc-tools)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed: {text}");
    text
}

#[test]
fn opensc_tool_selects_the_application() {
    let _lock = vpcd_lock();
    if !bench_available("opensc_tool_selects_the_application") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = ServedCard::start(&dir.path().join("card.state"), [1; 32]);
    // opensc-tool names readers by index or name; use the name.
    let text = run(
        "opensc-tool",
        &[
            "-r",
            "Virtual PCD 00 00",
            "-s",
            "00:A4:04:00:0A:F0:43:49:54:59:43:41:52:44:02:00",
        ],
    );
    let upper = text.to_uppercase();
    // FCI of a blank card: 6F 14 84 0A <AID> A5 06 80 01 02 81 01 01, then SW 90 00.
    assert!(
        upper.contains("6F 14 84 0A F0 43 49 54 59 43 41 52 44 02 A5 06"),
        "{text}"
    );
    assert!(
        upper.contains("SW1=0X90, SW2=0X00") || upper.contains("90 00"),
        "{text}"
    );
    // An unknown AID is refused with 6A82.
    let text = run(
        "opensc-tool",
        &[
            "-r",
            "Virtual PCD 00 00",
            "-s",
            "00:A4:04:00:05:F0:00:00:00:00:00",
        ],
    );
    assert!(text.to_uppercase().contains("SW1=0X6A, SW2=0X82"), "{text}");
    // The ATR as opensc-tool reads it.
    let text = run("opensc-tool", &["-r", "Virtual PCD 00 00", "-a"]);
    assert!(
        text.to_uppercase()
            .contains("3B:88:80:01:43:49:54:59:43:41:52:44"),
        "{text}"
    );
}

#[test]
fn pcsc_scan_sees_the_card() {
    let _lock = vpcd_lock();
    if !bench_available("pcsc_scan_sees_the_card") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _card = ServedCard::start(&dir.path().join("card.state"), [2; 32]);
    let out = Command::new("pcsc_scan")
        .args(["-n", "-t", "2"])
        .output()
        .expect("pcsc_scan (install pcsc-tools)");
    let text = String::from_utf8_lossy(&out.stdout).to_uppercase();
    assert!(text.contains("VIRTUAL PCD 00 00"), "{text}");
    assert!(
        text.contains("3B 88 80 01 43 49 54 59 43 41 52 44"),
        "{text}"
    );
}
