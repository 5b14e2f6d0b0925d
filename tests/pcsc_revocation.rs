//! Revocation at city scale through the real CLI, as the README's office
//! workflow runs it: 400 cards issued, 300 revoked (past every old size
//! limit), `citycard revocation publish` writes the bundle partners load,
//! `citycard verify` through pcscd says revoked; `trust export` refuses a
//! list that misses revocations; an older bundle is refused after the
//! partner's reader restarts; `trust show` reports the list.
#![cfg(test)]

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::verify_json as verify;
use citycard_e2e::{
    bench_available, citycard, enrol_partner, export_trust, issuer_home, vpcd_lock, EmulatorProcess,
};

const ISSUED: usize = 400;
const REVOKED: usize = 300;

#[test]
fn revoke_hundreds_publish_once_and_partners_see_it() {
    let _lock = vpcd_lock();
    if !bench_available("revoke_hundreds_publish_once") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = issuer_home(d, "LIEGE", "LG", &[]);
    let library = enrol_partner(&home, d, "library", "resident");

    // The partner's first bundle, before any revocation.
    let first = d.join("first.bundle");
    export_trust(&home, &first);

    // Issue 400 cards onto emulated card files, in one batch.
    let mut csv = String::from("resident_id,name,address,birth_date\n");
    for i in 0..ISSUED {
        csv.push_str(&format!("R-{i},Resident {i},Rue {i},1980-01-01\n"));
    }
    let rows = d.join("rows.csv");
    std::fs::write(&rows, csv).unwrap();
    let cards = d.join("cards");
    let reader = format!("emulated:{}", cards.display());
    ok(&[
        "batch",
        "--dir",
        &home,
        "--station",
        "desk-1",
        "--reader",
        &reader,
        "--prepare-with",
        "prep-1",
        rows.to_str().unwrap(),
    ]);

    // Revoke 300 of them, one `citycard revoke` each, as desks do.
    for i in 1..=REVOKED {
        let out = ok(&[
            "revoke",
            &format!("LG-{i:06}"),
            "--dir",
            &home,
            "--reason",
            "lost",
        ]);
        assert!(out.contains("revocation publish"), "{out}");
    }

    // `trust export` would ship the old list: it refuses and says what to do.
    let (code, _, err) = citycard(&[
        "trust",
        "export",
        "--dir",
        &home,
        "--out",
        d.join("stale.bundle").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("misses 300 revoked card(s)") && err.contains("revocation publish"),
        "{err}"
    );
    assert!(!d.join("stale.bundle").exists());

    // The one documented step.
    let bundle = d.join("liege.bundle");
    let out = ok(&[
        "revocation",
        "publish",
        "--dir",
        &home,
        "--out",
        bundle.to_str().unwrap(),
        "--json",
    ]);
    let published: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(published["revoked"], 300, "{out}");
    // Past the old 2,048-byte limit of every reader.
    assert!(std::fs::metadata(&bundle).unwrap().len() > 2048);
    let show: serde_json::Value =
        serde_json::from_str(ok(&["trust", "show", bundle.to_str().unwrap(), "--json"]).trim())
            .unwrap();
    assert_eq!(show["revocation_list"]["revoked"], REVOKED);
    assert_eq!(show["revocation_list"]["sequence"], 2);
    assert_eq!(show["issuer"], "LIEGE");
    assert_eq!(show["signature_valid"], true);
    assert_eq!(show["revocation_list"]["stale"], false);
    let text = ok(&["trust", "show", bundle.to_str().unwrap()]);
    assert!(text.contains("revoked cards     300"), "{text}");
    assert!(
        text.contains("in 7 d 0 h") || text.contains("in 6 d 23 h"),
        "{text}"
    );

    // A revoked card is revoked at the partner's reader.
    let emu = EmulatorProcess::start(&cards.join("card-000007.state"), &[]);
    let (code, v, err) = verify(&bundle, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (32, Some("revoked")),
        "{v} {err}"
    );
    emu.kill();
    // One that was not revoked is genuine.
    let emu = EmulatorProcess::start(&cards.join("card-000350.state"), &[]);
    let (code, v, err) = verify(&bundle, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (0, Some("genuine")),
        "{v} {err}"
    );

    // After that (a new process each time: a restart), the old, still fresh
    // bundle that would un-revoke the cards is refused.
    let (code, v, err) = verify(&first, &library, &[]);
    assert_eq!(code, 3, "{v} {err}");
    // With --json the error is the verify.v1 error document on stdout.
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("older than list #2")),
        "{v} {err}"
    );

    // Now `trust export` has nothing to miss, and the list is warned about
    // when it is close to its next update.
    let again = d.join("again.bundle");
    export_trust(&home, &again);
    let (code, v, err) = verify(&again, &library, &["--warn-before-hours", "200"]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (0, Some("genuine")),
        "{v} {err}"
    );
    let warning: serde_json::Value = err
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON warning: {err}"));
    assert_eq!(warning["event"], "warning");
    assert_eq!(warning["warning"], "revocation_list_expiring");
    emu.kill();
}
