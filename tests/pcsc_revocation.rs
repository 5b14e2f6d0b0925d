//! Revocation at city scale through the real CLI, as the README's office
//! workflow runs it: 400 cards issued, 300 revoked (past every old size
//! limit), `citycard revocation publish` writes the bundle partners load,
//! `citycard verify` through pcscd says revoked; `trust export` refuses a
//! list that misses revocations; an older bundle is refused after the
//! partner's reader restarts; `trust show` reports the list. The README's
//! revoke and publish lines run as written, the example systemd unit
//! publishes on every run for every group, partners are warned only inside
//! the default window, and a list past every old size limit goes through.
#![cfg(test)]

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::verify_json as verify;
use citycard_e2e::{
    bench_available, citycard, citycard_bin, enrol_partner, export_trust, issuer_home, vpcd_lock,
    EmulatorProcess,
};

const ISSUED: usize = 400;
const REVOKED: usize = 300;

/// One issuer's home with the library enrolled and its first bundle (before
/// any revocation) exported; each step of the city-scale revocation is a
/// method over it.
struct CityScale {
    tmp: tempfile::TempDir,
    home: String,
    library: std::path::PathBuf,
    first: std::path::PathBuf,
}

impl CityScale {
    fn open() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let home = issuer_home(d, "LIEGE", "LG", &[]);
        let library = enrol_partner(&home, d, "library", "resident");
        // The partner's first bundle, before any revocation.
        let first = d.join("first.bundle");
        export_trust(&home, &first);
        Self {
            tmp,
            home,
            library,
            first,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.tmp.path().join(name)
    }

    /// Issues 400 cards onto emulated card files, in one batch; returns
    /// the directory of the card files.
    fn issue_400_in_one_batch(&self) -> std::path::PathBuf {
        issue_emulated(&self.home, self.tmp.path(), ISSUED)
    }

    /// Revokes 300 of them, one `citycard revoke` each, as desks do; each
    /// revoke says to publish.
    fn revoke_300_one_at_a_time(&self) {
        for i in 1..=REVOKED {
            let out = ok(&[
                "revoke",
                &format!("LG-{i:06}"),
                "--dir",
                &self.home,
                "--reason",
                "lost",
            ]);
            assert!(out.contains("revocation publish"), "{out}");
        }
    }

    /// `trust export` would ship the old list: it refuses, says what to do,
    /// and writes nothing.
    fn trust_export_refuses_the_stale_list(&self) {
        let stale = self.path("stale.bundle");
        let (code, _, err) = citycard(&[
            "trust",
            "export",
            "--dir",
            &self.home,
            "--out",
            stale.to_str().unwrap(),
        ]);
        assert_ne!(code, 0);
        assert!(
            err.contains("misses 300 revoked card(s)") && err.contains("revocation publish"),
            "{err}"
        );
        assert!(!stale.exists());
    }

    /// The one documented step: `revocation publish` counts the 300 and
    /// writes a bundle past the old 2,048-byte limit of every reader.
    /// Returns the bundle's path.
    fn publish_once_past_every_old_limit(&self) -> std::path::PathBuf {
        let bundle = self.path("liege.bundle");
        let out = ok(&[
            "revocation",
            "publish",
            "--dir",
            &self.home,
            "--out",
            bundle.to_str().unwrap(),
            "--json",
        ]);
        let published: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(published["revoked"], 300, "{out}");
        assert!(std::fs::metadata(&bundle).unwrap().len() > 2048);
        bundle
    }

    /// A revoked card is revoked at the partner's reader.
    fn revoked_card_is_revoked(&self, cards: &std::path::Path, bundle: &std::path::Path) {
        let emu = EmulatorProcess::start(&cards.join("card-000007.state"), &[]);
        let (code, v, err) = verify(bundle, &self.library, &[]);
        assert_eq!(
            (code, v["verdict"].as_str()),
            (32, Some("revoked")),
            "{v} {err}"
        );
        emu.kill();
    }

    /// One that was not revoked is genuine; it stays in the reader for the
    /// next steps, so the emulator is returned.
    fn unrevoked_card_is_genuine(
        &self,
        cards: &std::path::Path,
        bundle: &std::path::Path,
    ) -> EmulatorProcess {
        let emu = EmulatorProcess::start(&cards.join("card-000350.state"), &[]);
        let (code, v, err) = verify(bundle, &self.library, &[]);
        assert_eq!(
            (code, v["verdict"].as_str()),
            (0, Some("genuine")),
            "{v} {err}"
        );
        emu
    }

    /// After that (a new process each time: a restart), the old, still fresh
    /// bundle that would un-revoke the cards is refused; with --json the
    /// error is the verify.v1 error document on stdout.
    fn older_bundle_is_refused_after_a_restart(&self) {
        let (code, v, err) = verify(&self.first, &self.library, &[]);
        assert_eq!(code, 3, "{v} {err}");
        assert!(
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("older than list #2")),
            "{v} {err}"
        );
    }

    /// Now `trust export` has nothing to miss, and the list is warned about
    /// when it is close to its next update.
    fn fresh_export_is_warned_near_its_next_update(&self) {
        let again = self.path("again.bundle");
        export_trust(&self.home, &again);
        let (code, v, err) = verify(&again, &self.library, &["--warn-before-hours", "200"]);
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
    }
}

/// `trust show` reports the published list: 300 revoked, sequence 2, the
/// issuer, a valid signature, not stale, and (as text) the count and the
/// next update in 7 days.
fn trust_show_reports_the_list(bundle: &std::path::Path) {
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
}

#[test]
fn revoke_hundreds_publish_once_and_partners_see_it() {
    let _lock = vpcd_lock();
    if !bench_available("revoke_hundreds_publish_once") {
        return;
    }
    let city = CityScale::open();
    let cards = city.issue_400_in_one_batch();
    city.revoke_300_one_at_a_time();
    city.trust_export_refuses_the_stale_list();
    let bundle = city.publish_once_past_every_old_limit();
    trust_show_reports_the_list(&bundle);
    city.revoked_card_is_revoked(&cards, &bundle);
    let emu = city.unrevoked_card_is_genuine(&cards, &bundle);
    city.older_bundle_is_refused_after_a_restart();
    city.fresh_export_is_warned_near_its_next_update();
    emu.kill();
}

// --- the README's workflow, the systemd units, warnings, every old limit -----

/// The README's first-day block (after its `office-first-day` marker): the
/// lines that begin with one of `starts`, in order, the home's path put for
/// `/srv/citycard`.
fn readme_lines(starts: &[&str], home: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let start = readme
        .find("<!-- office-first-day")
        .expect("office-first-day marker in README.md");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    let lines: Vec<String> = block
        .lines()
        .filter(|l| starts.iter().any(|s| l.starts_with(s)))
        .map(|l| l.replace("/srv/citycard", home))
        .collect();
    for s in starts {
        assert!(
            lines.iter().any(|l| l.starts_with(s)),
            "no `{s}` line in the README's first-day block"
        );
    }
    lines
}

/// Runs one shell line (as an officer types it) in `dir` with `citycard` on
/// the PATH; its stdout and stderr.
fn shell_ok(dir: &std::path::Path, line: &str) -> String {
    let bin_dir = citycard_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", line])
        .current_dir(dir)
        .env("PATH", path)
        .env("CITYCARD_PASSPHRASE", "correct horse battery staple")
        .env("CITYCARD_OPERATOR", "e2e")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{line}` failed ({:?}):\n{text}",
        out.status
    );
    text
}

/// Issues `n` cards in one batch onto emulated card files in `DIR/cards`.
fn issue_emulated(home: &str, d: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut csv = String::from("resident_id,name,address,birth_date\n");
    for i in 0..n {
        csv.push_str(&format!("R-{i},Resident {i},Rue {i},1980-01-01\n"));
    }
    let rows = d.join("rows.csv");
    std::fs::write(&rows, csv).unwrap();
    let cards = d.join("cards");
    ok(&[
        "batch",
        "--dir",
        home,
        "--station",
        "desk-1",
        "--reader",
        &format!("emulated:{}", cards.display()),
        "--prepare-with",
        "prep-1",
        rows.to_str().unwrap(),
    ]);
    cards
}

/// The README's revocation workflow as written — its `trust export`, then
/// (cards issued) its `revoke` and `revocation publish` lines, only the home's
/// path changed — and the partner's `verify` through pcscd + vpcd says
/// revoked. The publish line replaces the bundle the export wrote.
#[test]
fn the_readme_revocation_workflow_runs_as_written() {
    let _lock = vpcd_lock();
    if !bench_available("the_readme_revocation_workflow") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = issuer_home(d, "LIEGE", "LG", &[]);
    let library = enrol_partner(&home, d, "library", "resident");
    let export = readme_lines(&["citycard trust export"], &home);
    let revoke = readme_lines(&["citycard revoke", "citycard revocation publish"], &home);
    for line in &export {
        shell_ok(d, line);
    }
    let bundle = d.join("liege.bundle");
    assert!(bundle.exists(), "the README's export writes liege.bundle");
    let cards = issue_emulated(&home, d, 3);
    for line in &revoke {
        shell_ok(d, line);
    }
    let show: serde_json::Value =
        serde_json::from_str(ok(&["trust", "show", bundle.to_str().unwrap(), "--json"]).trim())
            .unwrap();
    assert_eq!(show["revocation_list"]["sequence"], 2, "{show}");
    assert_eq!(show["revocation_list"]["revoked"], 1, "{show}");
    // The README revokes LG-000002: that card is refused, the others not.
    let emu = EmulatorProcess::start(&cards.join("card-000002.state"), &[]);
    let (code, v, err) = verify(&bundle, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (32, Some("revoked")),
        "{v} {err}"
    );
    emu.kill();
    let emu = EmulatorProcess::start(&cards.join("card-000003.state"), &[]);
    let (code, v, err) = verify(&bundle, &library, &[]);
    assert_eq!(
        (code, v["verdict"].as_str()),
        (0, Some("genuine")),
        "{v} {err}"
    );
    // With a 2-day list, as the README publishes it, no warning.
    assert!(!err.contains("warning"), "{err}");
    emu.kill();
}

/// The example systemd service, as its timer runs it: every `Exec…` line of
/// `contrib/systemd/citycard-revocation-publish@.service` with the instance
/// (the group) and the paths substituted, run again and again, for group 0
/// and another group. Every run succeeds and hands partners a newer bundle.
#[test]
fn the_systemd_unit_publishes_on_every_run_and_for_every_group() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = issuer_home(d, "LIEGE", "LG", &[]);
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contrib/systemd/citycard-revocation-publish@.service"),
    )
    .unwrap();
    assert!(unit.contains("StateDirectory=citycard-publish"), "{unit}");
    let (state, www) = (d.join("state"), d.join("www"));
    // What systemd creates before the run (StateDirectory=), and the site.
    std::fs::create_dir(&state).unwrap();
    std::fs::create_dir(&www).unwrap();
    let bin = citycard_bin();
    for group in ["0", "5"] {
        let lines: Vec<String> = unit
            .lines()
            .filter_map(|l| {
                l.strip_prefix("ExecStart=")
                    .or_else(|| l.strip_prefix("ExecStartPost="))
            })
            .map(|l| {
                l.replace("%i", group)
                    .replace("/usr/local/bin/citycard", bin.to_str().unwrap())
                    .replace("/var/lib/citycard-publish", state.to_str().unwrap())
                    .replace("/srv/citycard", &home)
                    .replace("/var/www/citycard", www.to_str().unwrap())
            })
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        let published = www.join(format!("group-{group}.bundle"));
        let mut last = 0;
        for run in 0..3 {
            for line in &lines {
                let out = shell_ok(d, line);
                assert!(!out.contains("error"), "run {run}: {out}");
            }
            let show: serde_json::Value = serde_json::from_str(
                ok(&["trust", "show", published.to_str().unwrap(), "--json"]).trim(),
            )
            .unwrap();
            assert_eq!(show["group"].to_string(), group, "{show}");
            let sequence = show["revocation_list"]["sequence"].as_u64().unwrap();
            assert!(sequence > last, "run {run}: a newer list ({show})");
            last = sequence;
            // Two days ahead: inside no partner's warning window.
            let next = show["revocation_list"]["next_update"].as_u64().unwrap();
            let issued = show["revocation_list"]["issued_at"].as_u64().unwrap();
            assert_eq!(next - issued, 2 * 86_400, "{show}");
        }
        assert!(
            !www.join(format!(".group-{group}.bundle.tmp")).exists(),
            "the temporary file is renamed into place"
        );
    }
}

/// Lines of `text` that are JSON `warning` events.
fn warning_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "warning")
        .collect()
}

/// `citycard watch` on `reader` with `bundle` for a few seconds (long
/// enough for the trust file watcher's first check); every line it printed.
fn watch_for_a_while(reader: &str, bundle: &std::path::Path, cred: &std::path::Path) -> String {
    let child = std::process::Command::new(citycard_bin())
        .args([
            "watch",
            "--readers",
            reader,
            "--trust",
            bundle.to_str().unwrap(),
            "--credential",
            cred.to_str().unwrap(),
            "--stdout",
            "all",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    // SIGTERM: the service stops cleanly and flushes its events.
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The default warning window: a bundle just published with the
/// recommended `--next-update-days 2` gives no warning, in `verify` (text
/// and JSON) and in `watch`; one within a day of its next update
/// (`--next-update-days 1`) gives a line of text and a JSON `warning`
/// event, in both. No pcscd: the built-in emulated card.
#[test]
fn partners_are_warned_only_inside_the_default_window() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = issuer_home(d, "LIEGE", "LG", &[]);
    let library = enrol_partner(&home, d, "library", "resident");
    let cards = issue_emulated(&home, d, 1);
    let card = format!("emulated:{}", cards.join("card-000001.state").display());
    let publish = |days: &str, out: &std::path::Path| {
        ok(&[
            "revocation",
            "publish",
            "--dir",
            &home,
            "--next-update-days",
            days,
            "--out",
            out.to_str().unwrap(),
        ]);
    };
    let verify_emulated = |bundle: &std::path::Path, json: bool| {
        let mut args = vec![
            "verify",
            "--reader",
            &card,
            "--trust",
            bundle.to_str().unwrap(),
            "--credential",
            library.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        let (code, out, err) = citycard(&args);
        assert_eq!(code, 0, "genuine: {out}{err}");
        err
    };

    // Just published, two days ahead: quiet. (This bundle first: a reader
    // refuses an older list once it has loaded a newer one.)
    let two_days = d.join("two-days.bundle");
    publish("2", &two_days);
    let err = verify_emulated(&two_days, false);
    assert!(!err.contains("warning"), "{err}");
    let err = verify_emulated(&two_days, true);
    assert!(warning_events(&err).is_empty(), "{err}");
    let events = watch_for_a_while(&card, &two_days, &library);
    assert!(events.contains("\"started\""), "{events}");
    assert!(warning_events(&events).is_empty(), "{events}");

    // Within a day of the next update: warned.
    let one_day = d.join("one-day.bundle");
    publish("1", &one_day);
    let err = verify_emulated(&one_day, false);
    assert!(
        err.contains("citycard: warning: the revocation list reaches its next update in"),
        "{err}"
    );
    let err = verify_emulated(&one_day, true);
    let warnings = warning_events(&err);
    assert_eq!(warnings.len(), 1, "{err}");
    assert_eq!(warnings[0]["warning"], "revocation_list_expiring");
    citycard_testkit::schemas::assert_valid_text(
        citycard_testkit::schemas::Schema::TapEvent,
        &warnings[0].to_string(),
    );
    let events = watch_for_a_while(&card, &one_day, &library);
    let warnings = warning_events(&events);
    assert_eq!(warnings.len(), 1, "one warning per bundle: {events}");
    assert_eq!(warnings[0]["warning"], "revocation_list_expiring");
}

/// Revoked cards past every old limit, through the CLI: 25,000 revoked
/// records put into the home's registry with SQL (as many desks would have
/// made over the years), one more card revoked with `citycard revoke`, then
/// `revocation publish`: more than 8,192 ids, a bundle over 128 KiB whose
/// TLV length takes the 3-byte form; `trust show` counts them, `verify`
/// refuses the revoked card and accepts a live one.
#[test]
fn a_list_past_every_old_limit_through_the_cli() {
    const BULK: u64 = 25_000;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let home = issuer_home(d, "LIEGE", "LG", &[]);
    let library = enrol_partner(&home, d, "library", "resident");
    let cards = issue_emulated(&home, d, 2);
    {
        let mut conn =
            rusqlite::Connection::open(std::path::Path::new(&home).join("registry.sqlite"))
                .unwrap();
        let tx = conn.transaction().unwrap();
        let inserted = tx
            .execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
                 state, card_key, revocation_id, revoke_reason, revoked_at, created_at) \
                 SELECT printf('OLD-%06d', i), printf('old-%d', i), 'desk-1', date('now'), \
                 date('now', '+5 years'), 'revoked', unhex('02' || hex(randomblob(32))), randomblob(8), \
                 'lost', unixepoch(), unixepoch() FROM n",
                [BULK],
            )
            .unwrap();
        assert_eq!(inserted as u64, BULK);
        tx.commit().unwrap();
    }
    ok(&["revoke", "LG-000001", "--dir", &home, "--reason", "stolen"]);
    let bundle = d.join("liege.bundle");
    let published: serde_json::Value = serde_json::from_str(
        ok(&[
            "revocation",
            "publish",
            "--dir",
            &home,
            "--out",
            bundle.to_str().unwrap(),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(published["revoked"], BULK + 1, "{published}");
    let bytes = std::fs::read(&bundle).unwrap();
    assert!(bytes.len() > 128 * 1024, "{} bytes", bytes.len());
    // E5 83 xx xx xx: the 3-byte length form, and the length is right.
    assert_eq!(bytes[..2], [0xE5, 0x83]);
    let len = usize::from(bytes[2]) << 16 | usize::from(bytes[3]) << 8 | usize::from(bytes[4]);
    assert_eq!(len + 5, bytes.len());
    let show: serde_json::Value =
        serde_json::from_str(ok(&["trust", "show", bundle.to_str().unwrap(), "--json"]).trim())
            .unwrap();
    assert_eq!(show["revocation_list"]["revoked"], BULK + 1, "{show}");
    assert_eq!(show["signature_valid"], true);
    for (card, code, verdict) in [
        ("card-000001", 32, "revoked"),
        ("card-000002", 0, "genuine"),
    ] {
        let reader = format!("emulated:{}", cards.join(format!("{card}.state")).display());
        let (got, out, err) = citycard(&[
            "verify",
            "--reader",
            &reader,
            "--trust",
            bundle.to_str().unwrap(),
            "--credential",
            library.to_str().unwrap(),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(
            (got, v["verdict"].as_str()),
            (code, Some(verdict)),
            "{out}{err}"
        );
    }
}
