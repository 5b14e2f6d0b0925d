//! A city office that runs citycard for a year, through the CLI with
//! emulated cards (`--reader emulated:DIR`, no PC/SC bench): many desks on
//! one home with kill -9 and `--resume`, files private whatever the umask,
//! no resident attribute kept by default, a home that can move and be backed
//! up during a batch, validation before allocation, the officer's commands,
//! all-or-nothing writes, output files that are never replaced when they are
//! devices, `resident forget` of a live card, Ctrl-C in a batch.
//!
//! Long on purpose: each test is one office scenario through the CLI, and they
//! share the home, desk and emulated-reader helpers at the top.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use citycard_e2e::citycard_ok as ok;
use citycard_e2e::path_str as s;
use citycard_e2e::{
    batch_args, citycard, citycard_bin, init_args, issued_card_keys, run_with_random_kills,
};
use citycard_registry::{CardState, Registry};
use rand_chacha::rand_core::SeedableRng;

const PASS: &str = "correct horse battery staple";

/// `citycard ARGS` must succeed and print one JSON object.
fn ok_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(ok(args).trim()).unwrap()
}

/// The process ended with `code`; its stderr otherwise.
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The arguments of `personalise` on an emulated reader.
fn personalise<'a>(
    home: &'a str,
    station: &'a str,
    reader: &'a str,
    resident: &'a Path,
) -> Vec<&'a str> {
    vec![
        "personalise",
        "--dir",
        home,
        "--station",
        station,
        "--reader",
        reader,
        "--prepare-with",
        "prep-1",
        "--resident",
        s(resident),
    ]
}

/// A Liège home (prefix LG, `issuer init` with `extra`) with stations
/// desk-1 and desk-2 and preparer prep-1.
fn home(tmp: &Path, extra: &[&str]) -> PathBuf {
    let home = tmp.join("home");
    ok(&init_args(s(&home), extra));
    ok(&["station", "add", "desk-1", "--dir", s(&home)]);
    ok(&["station", "add", "desk-2", "--dir", s(&home)]);
    ok(&["preparer", "add", "prep-1", "--dir", s(&home)]);
    home
}

fn csv(path: &Path, rows: &[(String, &str)]) {
    let mut text = String::from("resident_id,name,address,birth_date\n");
    for (id, name) in rows {
        text.push_str(&format!("{id},{name},Rue {id} 1,1970-05-17\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A CSV of `n` residents `PREFIX0`, `PREFIX1`, … all named `name`.
fn csv_of(path: &Path, prefix: &str, n: usize, name: &str) {
    csv(
        path,
        &(0..n)
            .map(|i| (format!("{prefix}{i}"), name))
            .collect::<Vec<_>>(),
    );
}

/// `batch FILE --resume --json` at `station` on the emulated cards in
/// `cards`, output captured.
fn batch_cmd(home: &Path, station: &str, cards: &Path, file: &Path) -> Command {
    let reader = format!("emulated:{}", cards.display());
    let mut c = Command::new(citycard_bin());
    c.args(batch_args(
        s(home),
        station,
        &reader,
        file,
        &["--resume", "--json"],
    ))
    .env("CITYCARD_PASSPHRASE", PASS)
    .env("CITYCARD_OPERATOR", "desk")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Waits (at most 60 s) until the home's registry holds at least `n` issued cards.
fn wait_for_issued(home: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "fewer than {n} card(s) issued");
        if let Ok(reg) = Registry::open(home.join("registry.sqlite")) {
            if reg.counts().unwrap().issued >= n {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Four desks (two stations, four readers) run batches on one home at once;
/// desks are killed with SIGKILL at random moments and restarted with
/// `--resume` until every batch completes. Two files share residents.
#[test]
fn four_desks_on_one_home_with_kill_9_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &[]);
    let mut files = Vec::new();
    let mut residents = BTreeSet::new();
    for desk in 0..4 {
        let mut rows: Vec<(String, &str)> = (0..6)
            .map(|i| (format!("D{desk}-{i}"), "Ann Lee"))
            .collect();
        if desk < 2 {
            // The same two residents at two desks: only one card each.
            rows.push(("SHARED-1".into(), "Bo Yu"));
            rows.push(("SHARED-2".into(), "Cy Ng"));
        }
        for (id, _) in &rows {
            residents.insert(id.clone());
        }
        let f = tmp.path().join(format!("desk{desk}.csv"));
        csv(&f, &rows);
        files.push(f);
    }
    let cards: Vec<PathBuf> = (0..4)
        .map(|d| tmp.path().join(format!("cards{d}")))
        .collect();
    let station = |d: usize| ["desk-1", "desk-2"][d % 2];
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xC17C);
    let spawn = |d: usize| {
        batch_cmd(&home, station(d), &cards[d], &files[d])
            .spawn()
            .unwrap()
    };
    let kills = run_with_random_kills(4, &spawn, 12, &mut rng, Duration::from_secs(600));
    assert!(kills > 0, "the test must kill desks");

    let reg = Registry::open(home.join("registry.sqlite")).unwrap();
    reg.integrity_check().unwrap();
    // Every card that was finished is committed as issued (none spoiled by
    // another desk), and no card number is used twice.
    let mut numbers = BTreeSet::new();
    for dir in &cards {
        for key in issued_card_keys(dir) {
            let number = reg
                .card_with_key(&key)
                .unwrap()
                .expect("a finished card is in the registry");
            let record = reg.card(&number).unwrap().unwrap();
            assert_eq!(record.state, CardState::Issued, "{number}: {record:?}");
            assert!(numbers.insert(number), "card number used twice");
        }
    }
    // Every resident has exactly one live card, and nothing is left open.
    let counts = reg.counts().unwrap();
    assert_eq!(counts.open_intents, 0);
    assert_eq!(counts.issued, residents.len() as u64, "{counts:?}");
    for r in &residents {
        let live = reg.live_card_of(r).unwrap().expect("one live card");
        assert_eq!(live.state, CardState::Issued);
    }
    assert_eq!(numbers.len(), residents.len());
}

/// Two desks at once on one home and one file set: neither reconciles the
/// other's intents, each finishes its own cards (the original report).
#[test]
fn two_desks_do_not_spoil_each_others_cards() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &[]);
    let a = tmp.path().join("a.csv");
    let b = tmp.path().join("b.csv");
    csv_of(&a, "A", 300, "Ann");
    csv_of(&b, "B", 30, "Bob");
    let mut one = batch_cmd(&home, "desk-1", &tmp.path().join("c1"), &a);
    let mut two = batch_cmd(&home, "desk-1", &tmp.path().join("c2"), &b);
    let (p1, p2) = (one.spawn().unwrap(), two.spawn().unwrap());
    // A third process on a reader already in use is refused: it would take
    // that desk's cards.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Registry::open(home.join("registry.sqlite"))
        .unwrap()
        .active_leases(0)
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "desks did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = batch_cmd(&home, "desk-2", &tmp.path().join("c1"), &b)
        .output()
        .unwrap();
    assert_exit(&out, 5);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another issuing process"));
    for p in [p1, p2] {
        assert_exit(&p.wait_with_output().unwrap(), 0);
    }
    let reg = Registry::open(home.join("registry.sqlite")).unwrap();
    let c = reg.counts().unwrap();
    assert_eq!((c.issued, c.spoiled, c.open_intents), (330, 0, 0));
}

fn modes(dir: &Path, out: &mut BTreeMap<PathBuf, u32>) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        out.insert(p.clone(), m.permissions().mode() & 0o777);
        if m.is_dir() {
            modes(&p, out);
        }
    }
}

fn run_umask(umask: &str, args: &[&str]) -> (i32, String, String) {
    let script = format!("umask {umask}; exec \"$0\" \"$@\"");
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(citycard_bin())
        .args(args)
        .env("CITYCARD_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file of the home is 0600 and every directory 0700 even with umask
/// 000; after a default issuance the database and its WAL hold no name,
/// address or birth date (docs/privacy.md cites this test).
#[test]
fn private_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = s(&home);
    let go = |args: &[&str]| {
        let (code, out, err) = run_umask("000", args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    };
    go(&init_args(h, &[]));
    go(&["station", "add", "desk-1", "--dir", h]);
    go(&["preparer", "add", "prep-1", "--dir", h]);
    go(&[
        "partner",
        "enrol",
        "library",
        "--dir",
        h,
        "--attributes",
        "pseudonym,resident",
        "--out",
        s(&tmp.path().join("lib.cred")),
    ]);
    let resident = tmp.path().join("r.json");
    std::fs::write(
        &resident,
        r#"{"resident_id": "F-77", "name": "Quintessa Marlowe", "birth_date": "1958-03-14", "address": "Rue des Oubliés 17", "care_of_address": "Asbl Zéphyrine", "language": "fr"}"#,
    )
    .unwrap();
    let reader = format!("emulated:{}", tmp.path().join("cards").display());
    go(&personalise(h, "desk-1", &reader, &resident));
    let bundle = tmp.path().join("l.bundle");
    go(&["revocation", "publish", "--dir", h, "--out", s(&bundle)]);
    let backup = tmp.path().join("b.tar");
    go(&["issuer", "backup", "--dir", h, "--out", s(&backup)]);
    let mut m = BTreeMap::new();
    modes(&home, &mut m);
    for name in ["lib.cred", "l.bundle", "b.tar"] {
        m.insert(tmp.path().join(name), {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(tmp.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        });
    }
    for (p, mode) in &m {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", p.display());
    }
    let mut bytes = std::fs::read(home.join("registry.sqlite")).unwrap();
    bytes.extend(std::fs::read(home.join("registry.sqlite-wal")).unwrap_or_default());
    let birth = citycard_proto::date::Date::new(1958, 3, 14)
        .unwrap()
        .to_bytes();
    for needle in [
        b"Quintessa".as_slice(),
        b"Marlowe",
        b"Oubli",
        b"Z\xc3\xa9phyrine",
        b"1958-03-14",
        &birth,
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "registry holds {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    let out = ok(&["resident", "show", "F-77", "--dir", h, "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["attributes"], serde_json::json!({}));
    assert_eq!(v["live_card"], "LG-000001");
}

/// A city that opts in keeps attributes for the period, can show them and erase them.
#[test]
fn retention_is_opt_in_and_erasable() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &["--retain-attributes", "30"]);
    let h = s(&home);
    let resident = tmp.path().join("r.json");
    std::fs::write(
        &resident,
        r#"{"resident_id": "F-1", "name": "Quintessa Marlowe", "birth_date": "1958-03-14", "address": "Rue 1"}"#,
    )
    .unwrap();
    let reader = format!("emulated:{}", tmp.path().join("cards").display());
    ok(&personalise(h, "desk-1", &reader, &resident));
    let v: serde_json::Value = ok_json(&["resident", "show", "F-1", "--dir", h, "--json"]);
    assert_eq!(v["attributes"]["name"], "Quintessa Marlowe");
    assert_eq!(v["attributes"]["birth_date"], "1958-03-14");
    assert!(v["retained_until"].as_i64().unwrap() > 0);
    // A live card: forgetting needs --force and says why.
    let (code, _, err) = citycard(&["resident", "forget", "F-1", "--dir", h]);
    assert_eq!(code, 8, "{err}");
    assert!(err.contains("one-live-card rule"), "{err}");
    let (code, out, _) = citycard(&["resident", "forget", "F-1", "--dir", h, "--force", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["attributes_erased"], 4);
    let db = std::fs::read(home.join("registry.sqlite")).unwrap();
    assert!(!db.windows(9).any(|w| w == b"Quintessa"));
    // Now the rule cannot recognise them: that is what --force accepted.
    ok(&personalise(h, "desk-1", &reader, &resident));
}

/// Validation before allocation, delimiter detection, file line numbers,
/// resident ids in every row report, `--resume` on a corrected copy.
#[test]
fn batch_rows_are_validated_before_anything_is_allocated() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &[]);
    let h = s(&home);
    let file = tmp.path().join("rows.csv");
    let tomorrow = citycard_issuer::home::now()
        .unwrap()
        .0
        .add_days(1)
        .to_string();
    std::fs::write(
        &file,
        format!("resident_id;name;address;birth_date\nA-1;Ann Lee;Rue 1, 4000 Liège;1980-01-01\nA-2;Bo;Rue 2;2090-01-01\nA-3;Cy;Rue 3;{tomorrow}\nA-4;Di;Rue 4;1899-12-31\nA-5;;Rue 5;\nA-6;Ed;Rue 6;\n"),
    )
    .unwrap();
    let reader = format!("emulated:{}", tmp.path().join("cards").display());
    let (code, out, err) = citycard(&batch_args(h, "desk-1", &reader, &file, &["--json"]));
    assert_eq!(code, 50, "{out}{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_line: BTreeMap<u64, &serde_json::Value> = rows
        .iter()
        .filter_map(|r| r["line"].as_u64().map(|l| (l, r)))
        .collect();
    assert_eq!(by_line[&2]["card_number"], "LG-000001");
    assert_eq!(
        by_line[&7]["card_number"], "LG-000002",
        "refused rows consume no number"
    );
    for line in 3..=6 {
        assert_eq!(by_line[&line]["status"], "refused", "{line}");
        assert_eq!(by_line[&line]["resident_id"], format!("A-{}", line - 1));
    }
    for line in 3..=5 {
        assert!(by_line[&line]["error"]
            .as_str()
            .unwrap()
            .contains("1900-01-01 to today"));
    }
    assert!(err.contains("line 6: resident A-5: name: missing"), "{err}");
    // The officer fixes the bad rows in the file and resumes: the rows
    // already issued are skipped, not failed.
    std::fs::write(
        &file,
        "resident_id;name;address;birth_date\nA-1;Ann Lee;Rue 1, 4000 Liège;1980-01-01\nA-2;Bo;Rue 2;1990-01-01\nA-3;Cy;Rue 3;1990-01-01\nA-4;Di;Rue 4;1900-01-01\nA-5;Flo;Rue 5;\nA-6;Ed;Rue 6;\n",
    )
    .unwrap();
    let (code, out, err) = citycard(&batch_args(
        h,
        "desk-1",
        &reader,
        &file,
        &["--json", "--resume"],
    ));
    assert_eq!(code, 0, "{out}{err}");
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["skipped"], 2, "{summary}");
    assert_eq!(summary["summary"]["failed"], 0, "{summary}");
    assert_eq!(summary["summary"]["issued"], 4, "{summary}");
    let v: serde_json::Value = ok_json(&["card", "show", "LG-000006", "--dir", h, "--json"]);
    assert_eq!(v["state"], "issued", "numbers stay contiguous: {v}");
}

/// A new key's passphrase has a minimum length; the refusal leaves nothing behind.
#[test]
fn short_passphrases_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = Command::new(citycard_bin())
        .args(init_args(s(&home), &[]))
        .env("CITYCARD_PASSPHRASE", "x")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
    assert!(!home.exists(), "a failed init leaves no home behind");
    ok(&init_args(s(&home), &[]));
}

/// The home can be moved (paths inside are relative) and backed up during a
/// running batch; the restored copy continues issuing.
#[test]
fn a_home_moves_and_a_backup_taken_during_a_batch_restores_elsewhere() {
    const ROWS: usize = 60;
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &[]);
    let moved = tmp.path().join("moved");
    std::fs::rename(&home, &moved).unwrap();
    let text = std::fs::read_to_string(moved.join("issuer.json")).unwrap();
    assert!(!text.contains(tmp.path().to_str().unwrap()), "{text}");
    let file = tmp.path().join("rows.csv");
    csv_of(&file, "R", ROWS, "Ann");
    let mut running = batch_cmd(&moved, "desk-1", &tmp.path().join("cards"), &file)
        .spawn()
        .unwrap();
    // The backup is taken once the batch has issued a card, and returns
    // while the batch is still at work.
    wait_for_issued(&moved, 1);
    let backup = tmp.path().join("home.tar");
    ok(&["issuer", "backup", "--dir", s(&moved), "--out", s(&backup)]);
    assert!(
        running.try_wait().unwrap().is_none(),
        "the batch must still be running when the backup returns"
    );
    assert_exit(&running.wait_with_output().unwrap(), 0);
    // Restore elsewhere with tar, as docs/office.md says: a snapshot taken
    // mid-batch, with some of the batch's cards and not all.
    let restored = tmp.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    let st = Command::new("tar")
        .args(["-xpf", s(&backup), "-C", s(&restored)])
        .status()
        .unwrap();
    assert!(st.success());
    let show: serde_json::Value = ok_json(&["issuer", "show", "--dir", s(&restored), "--json"]);
    assert_eq!(show["city"], "Liège");
    let at_backup = show["cards"]["issued"].as_u64().unwrap();
    eprintln!("the backup holds {at_backup} of {ROWS} cards");
    assert!(
        at_backup >= 1 && at_backup < ROWS as u64,
        "the backup holds {at_backup} of the batch's {ROWS} cards"
    );
    let finished: serde_json::Value = ok_json(&["issuer", "show", "--dir", s(&moved), "--json"]);
    assert_eq!(finished["cards"]["issued"], ROWS);
    let more = tmp.path().join("more.csv");
    csv_of(&more, "N", 3, "Ned");
    let out = batch_cmd(&restored, "desk-2", &tmp.path().join("cards2"), &more)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    // The intent that was open at backup time belongs to a reader that is
    // not here: settled without a card, its key (if recorded) listed.
    let v: serde_json::Value = ok_json(&[
        "issuer",
        "reconcile",
        "--dir",
        s(&restored),
        "--spoil",
        "--json",
    ]);
    assert!(v["spoiled"].as_array().unwrap().len() <= 1, "{v}");
    let reg = Registry::open(restored.join("registry.sqlite")).unwrap();
    reg.integrity_check().unwrap();
    assert!(reg.live_card_of("N2").unwrap().is_some());
    assert_eq!(reg.counts().unwrap().open_intents, 0);
    assert_eq!(reg.counts().unwrap().issued, at_backup + 3);
}

/// The officer's commands, and all-or-nothing writes: one home, in steps.
#[test]
fn officer_commands_and_failures_that_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &[]);
    partner_enrol_is_all_or_nothing_and_renew_needs_force(tmp.path(), &home);
    output_files_are_written_through_or_need_force(tmp.path(), &home);
    station_add_is_all_or_nothing(tmp.path(), &home);
    stations_are_listed_renewed_and_retired(tmp.path(), &home);
    issuer_card_and_audit_lookups(tmp.path(), &home);
}

/// `partner enrol` to a path that cannot be written registers nothing; the
/// retry works; `partner list`; `partner renew` over the credential needs `--force`.
fn partner_enrol_is_all_or_nothing_and_renew_needs_force(tmp: &Path, home: &Path) {
    let h = s(home);
    let enrol = |out: &str| {
        citycard(&[
            "partner",
            "enrol",
            "museum",
            "--dir",
            h,
            "--attributes",
            "resident",
            "--out",
            out,
        ])
    };
    let (code, _, err) = enrol("/nonexistent/m.cred");
    assert_ne!(code, 0, "{err}");
    assert!(!home.join("partners/museum.cert").exists());
    let cred = tmp.join("museum.cred");
    let (code, _, err) = enrol(s(&cred));
    assert_eq!(code, 0, "{err}");
    let v = ok_json(&["partner", "list", "--dir", h, "--json"]);
    assert_eq!(v["partners"][0]["name"], "museum");
    let renew = ["partner", "renew", "museum", "--dir", h, "--out", s(&cred)];
    assert_eq!(citycard(&renew).0, 4, "an existing output needs --force");
    ok(&[&renew[..], &["--force"]].concat());
}

/// `FILE` is still a FIFO (not replaced by a regular file).
fn assert_fifo(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).unwrap().file_type();
    assert!(t.is_fifo(), "{} is no longer a FIFO", path.display());
}

/// Output files: a device and a FIFO are written through (never replaced,
/// no `--force` needed); an existing regular file needs `--force`.
fn output_files_are_written_through_or_need_force(tmp: &Path, home: &Path) {
    let h = s(home);
    ok(&["trust", "export", "--dir", h, "--out", "/dev/null"]);
    {
        use std::os::unix::fs::FileTypeExt;
        let t = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(t.is_char_device());
    }
    // A FIFO read by another process (here a thread), as a pipeline would.
    let fifo = tmp.join("bundle.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        std::thread::spawn(move || tx.send(std::fs::read(&fifo).unwrap()));
    }
    let (code, out, err) = citycard(&["trust", "export", "--dir", h, "--out", s(&fifo)]);
    let received = rx.recv_timeout(Duration::from_secs(20));
    if received.is_err() {
        // Unblock the reader (waiting to open the FIFO) before failing.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo));
    }
    assert_eq!(code, 0, "{out}{err}");
    let bytes = received.expect("the bundle arrives through the FIFO");
    let bundle = citycard_proto::revocation::TrustBundle::decode(&bytes)
        .expect("a whole trust bundle came through the FIFO");
    assert_eq!(bundle.body().issuer, "LIEGE");
    assert_fifo(&fifo);

    let bundle = tmp.join("liege.bundle");
    ok(&["trust", "export", "--dir", h, "--out", s(&bundle)]);
    let export = ["trust", "export", "--dir", h, "--out", s(&bundle)];
    assert_eq!(citycard(&export).0, 4);
    ok(&[&export[..], &["--force"]].concat());
    let publish = ["revocation", "publish", "--dir", h, "--out", s(&bundle)];
    assert_eq!(citycard(&publish).0, 4);
    ok(&[&publish[..], &["--force"]].concat());
    ok(&["revocation", "publish", "--dir", h, "--out", "/dev/null"]);
}

/// `station add` that fails half-way (the registry is away) leaves nothing;
/// the retry works.
fn station_add_is_all_or_nothing(tmp: &Path, home: &Path) {
    let h = s(home);
    std::fs::rename(home.join("registry.sqlite"), tmp.join("away")).unwrap();
    let (code, _, _) = citycard(&["station", "add", "desk-3", "--dir", h]);
    assert_ne!(code, 0);
    assert!(!home.join("stations/desk-3").exists());
    std::fs::rename(tmp.join("away"), home.join("registry.sqlite")).unwrap();
    ok(&["station", "add", "desk-3", "--dir", h]);
}

/// Stations: list, renew, retire; a retired station may not sign, another issues.
fn stations_are_listed_renewed_and_retired(tmp: &Path, home: &Path) {
    let h = s(home);
    ok(&[
        "station",
        "renew",
        "desk-3",
        "--dir",
        h,
        "--valid-days",
        "30",
    ]);
    ok(&["station", "retire", "desk-3", "--dir", h]);
    let v = ok_json(&["station", "list", "--dir", h, "--json"]);
    let retired: Vec<_> = v["stations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["retired_on"].is_null())
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(retired, ["desk-3"]);
    assert!(!home.join("stations/desk-3/station.key.pem").exists());
    let resident = tmp.join("r.json");
    std::fs::write(
        &resident,
        r#"{"resident_id": "F-1", "name": "Ann", "address": "Rue 1"}"#,
    )
    .unwrap();
    let reader = format!("emulated:{}", tmp.join("cards").display());
    let (code, _, err) = citycard(&personalise(h, "desk-3", &reader, &resident));
    assert_eq!(code, 5, "{err}");
    ok(&personalise(h, "desk-1", &reader, &resident));
}

/// `issuer show`, `card show`, `audit export` (after the steps above).
fn issuer_card_and_audit_lookups(tmp: &Path, home: &Path) {
    let h = s(home);
    let v = ok_json(&["issuer", "show", "--dir", h, "--json"]);
    assert_eq!(v["cards"]["live"], 1);
    assert_eq!(v["root_fingerprint"].as_str().unwrap().len(), 64);
    assert_eq!(v["stations_retired"], 1);
    let v = ok_json(&["card", "show", "LG-000001", "--dir", h, "--json"]);
    assert_eq!(v["state"], "issued");
    assert_eq!(v["station"], "desk-1");
    assert!(v.get("name").is_none());
    assert_eq!(citycard(&["card", "show", "LG-999999", "--dir", h]).0, 9);
    assert_eq!(
        citycard(&["card", "show", "--state", "/nonexistent/x.state"]).0,
        3
    );
    let log = ok(&["audit", "export", "--dir", h, "--since", "2000-01-01"]);
    let actions: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for a in [
        "station-added",
        "station-retired",
        "partner-enrolled",
        "partner-renewed",
        "intent",
        "issued",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing: {actions:?}");
    }
    assert!(!log.contains("Ann"));
    assert_eq!(
        ok(&["audit", "export", "--dir", h, "--since", "2999-01-01"]),
        ""
    );
    let audit = tmp.join("audit.jsonl");
    ok(&["audit", "export", "--dir", h, "--out", s(&audit)]);
    assert_eq!(
        std::fs::read_to_string(&audit).unwrap(),
        ok(&["audit", "export", "--dir", h])
    );
    assert_eq!(
        citycard(&["audit", "export", "--dir", h, "--out", s(&audit)]).0,
        4
    );
}

/// One CLI: `--trace` only where APDUs flow (`preparer prepare` among them,
/// printing its exchanges); completions, a man page, and help texts with an
/// example.
#[test]
fn trace_only_where_apdus_flow_and_help_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = s(&home);
    ok(&init_args(h, &[]));
    ok(&["preparer", "add", "prep-1", "--dir", h]);
    assert_eq!(citycard(&["--trace", "issuer", "show", "--dir", h]).0, 2);
    let (code, _, err) = citycard(&["--trace", "preparer", "add", "prep-2", "--dir", h]);
    assert_eq!(code, 2, "preparer add sends no APDU: {err}");
    let state = tmp.path().join("card.state");
    let reader = format!("emulated:{}", state.display());
    let (code, out, err) = citycard(&[
        "--trace", "preparer", "prepare", "prep-1", "--dir", h, "--reader", &reader,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let commands = err.lines().filter(|l| l.starts_with(">> ")).count();
    let responses = err.lines().filter(|l| l.starts_with("<< ")).count();
    assert!(commands >= 2 && commands == responses, "{err}");
    assert!(out.contains("Card prepared by prep-1"), "{out}");
    // Without --trace, no exchange is printed.
    let (code, _, err) = citycard(&[
        "preparer",
        "prepare",
        "prep-1",
        "--dir",
        h,
        "--reader",
        &format!("emulated:{}", tmp.path().join("other.state").display()),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(">> "), "{err}");

    assert!(ok(&["completions", "bash"]).contains("citycard"));
    assert!(ok(&["man"]).contains(".TH"));
    assert!(!ok(&["bench", "--help"]).contains("issue 5"));
    assert!(ok(&["revoke", "--help"]).contains("withdrawn"));
    for command in [&["conformance", "card"][..], &["conformance", "reader"]] {
        let help = ok(&[command, &["--help"]].concat());
        assert!(
            help.contains("Examples:\n  citycard conformance"),
            "{command:?}: {help}"
        );
    }
}

/// The exit codes in a table: code → meaning, normalised (Markdown code
/// spans and links reduced to their text, dashes and spaces folded).
fn normalised(meaning: &str) -> String {
    let mut text = meaning.replace(['`'], "").replace('–', "-");
    while let Some(open) = text.find("](") {
        let close = open + text[open..].find(')').unwrap();
        let start = text[..open].rfind('[').unwrap();
        text = format!(
            "{}{}{}",
            &text[..start],
            &text[start + 1..open],
            &text[close + 1..]
        );
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `11, 12, 14-33, 41` → every code it names.
fn codes(cell: &str) -> Vec<u32> {
    cell.split(',')
        .flat_map(|part| {
            let part = part.trim().replace('–', "-");
            match part.split_once('-') {
                Some((a, b)) => (a.trim().parse().unwrap()..=b.trim().parse().unwrap()).collect(),
                None => vec![part.parse::<u32>().unwrap()],
            }
        })
        .collect()
}

/// The table `citycard --help` prints: rows `  CODES  MEANING`, wrapped
/// lines indented further.
fn help_exit_codes(help: &str) -> BTreeMap<u32, String> {
    let table = &help[help
        .find("Exit codes")
        .expect("an exit-code table in --help")..];
    let mut rows: Vec<(String, String)> = Vec::new();
    for line in table.lines().skip(1) {
        if line.trim().is_empty() {
            break;
        }
        let row = line.strip_prefix("  ").unwrap_or(line);
        if row.starts_with(|c: char| c.is_ascii_digit()) {
            let (cell, meaning) = row.split_once("  ").unwrap();
            rows.push((cell.to_string(), meaning.to_string()));
        } else {
            rows.last_mut()
                .unwrap()
                .1
                .push_str(&format!(" {}", line.trim()));
        }
    }
    rows.iter()
        .flat_map(|(cell, m)| codes(cell).into_iter().map(|c| (c, normalised(m))))
        .collect()
}

/// The README's "`citycard` exit codes" table.
fn readme_exit_codes(readme: &str) -> BTreeMap<u32, String> {
    let section = &readme[readme
        .find("## `citycard` exit codes")
        .expect("the README's exit-code section")..];
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .flat_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').splitn(2, " | ").collect();
            let (cell, meaning) = (cells[0], cells[1].trim_end_matches(" |"));
            codes(cell)
                .into_iter()
                .map(move |c| (c, normalised(meaning)))
        })
        .collect()
}

/// `citycard --help` and the README list the same exit codes with the same meanings.
#[test]
fn the_exit_code_table_in_help_is_the_readmes() {
    let help = help_exit_codes(&ok(&["--help"]));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let readme = readme_exit_codes(&readme);
    assert!(help.len() > 20 && help.contains_key(&130), "{help:#?}");
    assert_eq!(
        help.keys().collect::<Vec<_>>(),
        readme.keys().collect::<Vec<_>>(),
        "the same codes"
    );
    for (code, meaning) in &help {
        assert_eq!(meaning, &readme[code], "exit code {code}");
    }
}

/// The subcommands a `--help` lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let Some(start) = help.find("Commands:\n") else {
        return Vec::new();
    };
    help[start + "Commands:\n".len()..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command (`issuer`, `issuer init`, `batch`, …) and its help.
fn every_command(prefix: &[String], out: &mut Vec<(String, String)>) {
    let mut args: Vec<&str> = prefix.iter().map(String::as_str).collect();
    args.push("--help");
    let help = ok(&args);
    let children = subcommands(&help);
    if !prefix.is_empty() {
        out.push((prefix.join(" "), help));
    }
    for child in children {
        let mut path = prefix.to_vec();
        path.push(child);
        every_command(&path, out);
    }
}

/// Every command with `--json` is named in docs/office.md's "JSON output"
/// section (`group a|b` names `group a` and `group b`), and every command it
/// names exists.
#[test]
fn the_office_guide_lists_every_command_with_json() {
    let mut commands = Vec::new();
    every_command(&[], &mut commands);
    assert!(commands.len() > 30, "{commands:?}");
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/office.md"))
            .unwrap();
    let section = &guide[guide.find("## JSON output").unwrap()..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let exists: BTreeSet<&str> = commands.iter().map(|(c, _)| c.as_str()).collect();
    // `group a|b` names commands (and must); a single word may be a command
    // or a JSON field (`ok`).
    let mut named = BTreeSet::new();
    for span in section.split('`').skip(1).step_by(2) {
        let words = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase());
        match span.split_once(' ') {
            Some((group, rest)) if words(group) && rest.split('|').all(words) => {
                for name in rest.split('|').map(|w| format!("{group} {w}")) {
                    assert!(
                        exists.contains(name.as_str()),
                        "docs/office.md names `{name}`, not a command"
                    );
                    named.insert(name);
                }
            }
            None if exists.contains(span) => {
                named.insert(span.to_string());
            }
            _ => {}
        }
    }
    for (command, help) in &commands {
        // An option line (not a mention in another command's description).
        if help.lines().any(|l| l.trim_start().starts_with("--json")) {
            assert!(
                named.contains(command),
                "`{command}` has --json but docs/office.md's JSON section does not name it"
            );
        }
    }
}

/// Ctrl-C in a batch: the card in progress is finished, the summary printed,
/// exit 130, nothing left open.
#[test]
fn ctrl_c_in_a_batch_finishes_the_card_and_prints_the_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let home = home(tmp.path(), &[]);
    let file = tmp.path().join("rows.csv");
    csv_of(&file, "R", 200, "Ann");
    let child = batch_cmd(&home, "desk-1", &tmp.path().join("cards"), &file)
        .spawn()
        .unwrap();
    // Wait for the first card, then press Ctrl-C.
    wait_for_issued(&home, 1);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 130);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["end"], "interrupted");
    let issued = summary["summary"]["issued"].as_u64().unwrap();
    assert!(issued > 0 && issued < 200, "{summary}");
    let reg = Registry::open(home.join("registry.sqlite")).unwrap();
    let c = reg.counts().unwrap();
    assert_eq!((c.issued, c.open_intents, c.spoiled), (issued, 0, 0));
}
