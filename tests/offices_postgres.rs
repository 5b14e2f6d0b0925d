//! A city whose offices share one PostgreSQL registry, through the CLI with
//! emulated cards (`--reader emulated:DIR`, no PC/SC bench) and a throwaway
//! PostgreSQL cluster: the office's first day on the server, and several
//! offices (separate homes restored from one backup, so one city's keys)
//! issuing at once with desks killed by SIGKILL and resumed.
//!
//! Long on purpose: each scenario is a struct with one method per step, and
//! they share the server, home and desk helpers at the top.
#![cfg(test)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use citycard_e2e::{
    batch_args, citycard_bin, init_args, issued_card_keys, path_str as s, run_with_random_kills,
    test_seed,
};
use citycard_registry::pg::PASSWORD_ENV;
use citycard_registry::{CardState, IssuanceRegistry, PgRegistry};
use citycard_testkit::pg::{Cluster, ADMIN, PASSWORD, STATION};

const PASS: &str = "correct horse battery staple";

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(citycard_bin());
    c.args(args)
        .env("CITYCARD_PASSPHRASE", PASS)
        .env("CITYCARD_OPERATOR", "e2e")
        .env(PASSWORD_ENV, PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = cmd(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run(args);
    assert_eq!(code, 0, "citycard {args:?} failed ({code}):\n{out}\n{err}");
    out
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(ok(args).trim()).unwrap()
}

fn csv(path: &Path, ids: &[String]) {
    let mut text = String::from("resident_id,name,address,birth_date\n");
    for id in ids {
        text.push_str(&format!("{id},Ann Lee,Rue {id} 1,1970-05-17\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// A home on the server: `issuer init --registry`, stations desk-1 and desk-2.
fn server_home(dir: &Path, url: &str) {
    ok(&init_args(s(dir), &["--registry", url]));
    ok(&["station", "add", "desk-1", "--dir", s(dir)]);
    ok(&["station", "add", "desk-2", "--dir", s(dir)]);
    ok(&["preparer", "add", "prep-1", "--dir", s(dir)]);
}

fn registry(cluster: &Cluster, db: &str) -> PgRegistry {
    PgRegistry::connect(&cluster.url(STATION, db), Some(PASSWORD)).unwrap()
}

/// One office's home on a fresh database of a throwaway PostgreSQL cluster;
/// each step of the README's first day is a method over it.
struct ServerOffice {
    tmp: tempfile::TempDir,
    home: PathBuf,
    cluster: Cluster,
    db: String,
    url: String,
}

impl ServerOffice {
    fn start() -> Self {
        let cluster = Cluster::start();
        let db = cluster.new_database();
        let url = cluster.url(ADMIN, &db);
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        Self {
            tmp,
            home,
            cluster,
            db,
            url,
        }
    }

    fn h(&self) -> &str {
        s(&self.home)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The `emulated:` reader whose card files are in `cards/`.
    fn reader(&self) -> String {
        format!("emulated:{}", self.path("cards").display())
    }

    /// A password in the URL is refused (a usage error) before anything is
    /// created, and is not echoed.
    fn password_in_the_url_is_refused(&self) {
        let with_password = self.url.replace(ADMIN, &format!("{ADMIN}:{PASSWORD}"));
        let (code, out, err) = run(&init_args(self.h(), &["--registry", &with_password]));
        assert_eq!(code, 2, "a usage error: {out}{err}");
        assert!(!format!("{out}{err}").contains(PASSWORD), "{out}{err}");
        assert!(!self.home.exists());
    }

    /// The home on the server has no SQLite registry, and its configuration
    /// names the URL without the password.
    fn home_on_the_server_keeps_no_password(&self) {
        server_home(&self.home, &self.url);
        assert!(!self.home.join("registry.sqlite").exists());
        let config = std::fs::read_to_string(self.home.join("issuer.json")).unwrap();
        assert!(
            config.contains(&self.url) && !config.contains(PASSWORD),
            "{config}"
        );
    }

    /// The library is enrolled and the trust bundle exported.
    fn library_enrolled_and_trust_exported(&self) {
        let h = self.h();
        ok(&[
            "partner",
            "enrol",
            "library",
            "--dir",
            h,
            "--attributes",
            "pseudonym,resident",
            "--out",
            s(&self.path("library.cred")),
        ]);
        ok(&[
            "trust",
            "export",
            "--dir",
            h,
            "--out",
            s(&self.path("liege.bundle")),
        ]);
    }

    /// Alex is personalised at desk-1, then a batch of five; the whole
    /// batch again issues nothing twice.
    fn alex_then_a_batch_run_twice(&self) {
        let (h, reader) = (self.h(), self.reader());
        let resident = self.path("alex.json");
        std::fs::write(
            &resident,
            r#"{"resident_id": "F-77", "name": "Alex Marlowe", "birth_date": "1958-03-14", "address": "Rue des Oubliés 17", "language": "fr"}"#,
        )
        .unwrap();
        ok(&[
            "personalise",
            "--dir",
            h,
            "--station",
            "desk-1",
            "--reader",
            &reader,
            "--prepare-with",
            "prep-1",
            "--resident",
            s(&resident),
        ]);
        let file = self.path("residents.csv");
        csv(&file, &(0..5).map(|i| format!("R-{i}")).collect::<Vec<_>>());
        ok(&batch_args(h, "desk-1", &reader, &file, &["--json"]));
        // The whole batch again: every row is done, nothing is issued twice.
        ok(&batch_args(
            h,
            "desk-1",
            &reader,
            &file,
            &["--resume", "--json"],
        ));
    }

    /// Alex's card is issued; revoked and published, the registry counts six
    /// issued, one revoked, no intent open, and lists exactly its revocation;
    /// `issuer show` names the city, the server and the one revocation.
    fn revoke_alex_and_publish(&self) {
        let h = self.h();
        let reg = registry(&self.cluster, &self.db);
        let alex = reg.live_card_of("F-77").unwrap().unwrap();
        assert_eq!(alex.state, CardState::Issued);
        ok(&["revoke", &alex.card_number, "--dir", h, "--reason", "lost"]);
        ok(&[
            "revocation",
            "publish",
            "--dir",
            h,
            "--out",
            s(&self.path("liege.crl")),
        ]);
        let counts = reg.counts().unwrap();
        assert_eq!(
            (counts.issued, counts.revoked, counts.open_intents),
            (6, 1, 0)
        );
        let rid = reg
            .card(&alex.card_number)
            .unwrap()
            .unwrap()
            .revocation_id
            .unwrap();
        assert_eq!(reg.revocation_ids().unwrap(), [rid]);
        let show = ok_json(&["issuer", "show", "--dir", h, "--json"]);
        assert_eq!(show["city"], "Liège");
        assert_eq!(show["registry"], self.url.as_str());
        assert_eq!(show["cards"]["revoked"], 1);
    }

    /// The home's backup holds keys and configuration; the registry is the
    /// server's to back up.
    fn backup_holds_the_home_not_the_registry(&self) {
        let backup = self.path("home.tar");
        ok(&["issuer", "backup", "--dir", self.h(), "--out", s(&backup)]);
        let listing = Command::new("tar")
            .args(["-tf", s(&backup)])
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("issuer.json") && !listing.contains("registry.sqlite"),
            "{listing}"
        );
    }

    /// Migrations: up to date; a database from a newer citycard is refused
    /// by `issuer migrate` and by `revocation publish`.
    fn a_database_from_a_newer_citycard_is_refused(&self) {
        let h = self.h();
        let m = ok_json(&["issuer", "migrate", "--dir", h, "--json"]);
        assert_eq!(m["from_version"], m["to_version"]);
        self.cluster.sql(
            &self.db,
            "UPDATE registry_meta SET schema_version = schema_version + 1",
        );
        for args in [
            vec!["issuer", "migrate", "--dir", h],
            vec!["revocation", "publish", "--dir", h, "--out", "/dev/null"],
        ] {
            let (code, out, err) = run(&args);
            assert_ne!(code, 0, "{args:?}");
            assert!(
                err.contains("newer than this program"),
                "{args:?}: {out}{err}"
            );
        }
    }
}

/// The README's first day, with the registry on PostgreSQL.
#[test]
fn a_city_office_first_day_on_postgres() {
    let office = ServerOffice::start();
    office.password_in_the_url_is_refused();
    office.home_on_the_server_keeps_no_password();
    office.library_enrolled_and_trust_exported();
    office.alex_then_a_batch_run_twice();
    office.revoke_alex_and_publish();
    office.backup_holds_the_home_not_the_registry();
    office.a_database_from_a_newer_citycard_is_refused();
}

/// A home on SQLite moves to PostgreSQL with `issuer migrate --to`, and
/// carries on there.
#[test]
fn a_home_moves_from_sqlite_to_postgres() {
    let cluster = Cluster::start();
    let db = cluster.new_database();
    let url = cluster.url(ADMIN, &db);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = s(&home);
    ok(&init_args(h, &[]));
    ok(&["station", "add", "desk-1", "--dir", h]);
    ok(&["preparer", "add", "prep-1", "--dir", h]);
    let reader = format!("emulated:{}", tmp.path().join("cards").display());
    let file = tmp.path().join("residents.csv");
    csv(&file, &(0..4).map(|i| format!("R-{i}")).collect::<Vec<_>>());
    ok(&batch_args(h, "desk-1", &reader, &file, &[]));
    ok(&["revoke", "LG-000002", "--dir", h, "--reason", "stolen"]);

    let moved = ok_json(&["issuer", "migrate", "--dir", h, "--to", &url, "--json"]);
    assert_eq!(moved["cards"], 4);
    assert!(!home.join("registry.sqlite").exists());
    assert!(home.join("registry.sqlite.moved").exists());
    // A second move is refused: the home is on the server already.
    assert_eq!(
        run(&["issuer", "migrate", "--dir", h, "--to", &url]).0,
        2,
        "a usage error"
    );

    let reg = registry(&cluster, &db);
    let counts = reg.counts().unwrap();
    assert_eq!((counts.issued, counts.revoked), (4, 1));
    assert!(matches!(
        reg.card("LG-000002").unwrap().unwrap().state,
        CardState::Revoked { .. }
    ));
    // The office carries on: residents with a live card get none, the one
    // whose card was stolen and two new ones get the next numbers, and the
    // published list has the old revocation.
    csv(&file, &(0..6).map(|i| format!("R-{i}")).collect::<Vec<_>>());
    let (code, out, err) = run(&batch_args(h, "desk-1", &reader, &file, &[]));
    assert!(code == 0 || code == 50, "{code}: {out}{err}");
    assert_eq!(reg.counts().unwrap().issued, 7);
    assert_eq!(
        reg.live_card_of("R-1").unwrap().unwrap().card_number,
        "LG-000005"
    );
    assert_eq!(
        reg.live_card_of("R-5").unwrap().unwrap().card_number,
        "LG-000007"
    );
    ok(&[
        "revocation",
        "publish",
        "--dir",
        h,
        "--out",
        s(&tmp.path().join("l.crl")),
    ]);
    assert_eq!(reg.revocation_ids().unwrap().len(), 1);
    assert!(reg
        .audit_log()
        .unwrap()
        .iter()
        .any(|e| e.action == "revoked:stolen"));
}

const OFFICES: usize = 4;
const DESKS: usize = 2;

/// One desk's batch: its office's home, its station, the directory of its
/// card files and its residents file.
struct DeskJob {
    home: PathBuf,
    station: &'static str,
    cards: PathBuf,
    file: PathBuf,
}

/// One city's offices on one PostgreSQL registry: office 0's home on the
/// server, backed up and restored as the homes of the others (one city, one
/// set of keys).
struct City {
    tmp: tempfile::TempDir,
    homes: Vec<PathBuf>,
    cluster: Cluster,
    db: String,
}

impl City {
    fn offices_restored_from_one_backup() -> Self {
        let cluster = Cluster::start();
        let db = cluster.new_database();
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("office-0");
        server_home(&first, &cluster.url(ADMIN, &db));
        let backup = tmp.path().join("city.tar");
        ok(&["issuer", "backup", "--dir", s(&first), "--out", s(&backup)]);
        let homes: Vec<PathBuf> = (0..OFFICES)
            .map(|o| {
                let home = tmp.path().join(format!("office-{o}"));
                if o > 0 {
                    std::fs::create_dir(&home).unwrap();
                    let st = Command::new("tar")
                        .args(["-xpf", s(&backup), "-C", s(&home)])
                        .status()
                        .unwrap();
                    assert!(st.success());
                }
                home
            })
            .collect();
        Self {
            tmp,
            homes,
            cluster,
            db,
        }
    }

    /// Two desks per office, each with five residents of its own and three
    /// who also went to another office (or the other desk); the desks' jobs
    /// and every resident.
    fn desk_jobs(&self) -> (Vec<DeskJob>, BTreeSet<String>) {
        let mut residents = BTreeSet::new();
        let jobs = (0..OFFICES * DESKS)
            .map(|j| {
                let (office, desk) = (j / DESKS, j % DESKS);
                let mut ids: Vec<String> =
                    (0..5).map(|i| format!("O{office}D{desk}-{i}")).collect();
                // Residents who went to two offices (and two desks of one).
                ids.extend((0..3).map(|i| format!("SHARED-{}", (j + i) % 6)));
                residents.extend(ids.iter().cloned());
                let file = self.tmp.path().join(format!("job{j}.csv"));
                csv(&file, &ids);
                DeskJob {
                    home: self.homes[office].clone(),
                    station: ["desk-1", "desk-2"][desk],
                    cards: self.tmp.path().join(format!("cards{j}")),
                    file,
                }
            })
            .collect();
        (jobs, residents)
    }

    fn registry(&self) -> PgRegistry {
        registry(&self.cluster, &self.db)
    }

    /// Each office revokes one of its residents' cards; their revocation ids.
    fn each_office_revokes_one_card(&self, reg: &PgRegistry) -> Vec<[u8; 8]> {
        let mut revoked = Vec::new();
        for (o, home) in self.homes.iter().enumerate() {
            let card = reg.live_card_of(&format!("O{o}D0-0")).unwrap().unwrap();
            ok(&[
                "revoke",
                &card.card_number,
                "--dir",
                s(home),
                "--reason",
                "lost",
            ]);
            revoked.push(card.revocation_id.unwrap());
        }
        revoked
    }

    /// Office 1 publishes: the registry lists every office's revocations,
    /// and so does the signed bundle (the list of group 0) it wrote.
    fn one_office_publishes_every_office_s_revocations(
        &self,
        reg: &PgRegistry,
        revoked: &[[u8; 8]],
    ) {
        let published = self.tmp.path().join("city.bundle");
        ok(&[
            "revocation",
            "publish",
            "--dir",
            s(&self.homes[1]),
            "--out",
            s(&published),
        ]);
        let listed = reg.revocation_ids().unwrap();
        for rid in revoked {
            assert!(listed.contains(rid));
        }
        let bundle =
            citycard_proto::revocation::TrustBundle::decode(&std::fs::read(&published).unwrap())
                .unwrap();
        bundle.verify().unwrap();
        for rid in revoked {
            assert!(
                bundle.body().revocations.is_revoked(rid),
                "a revocation made at another office is missing from the published list"
            );
        }
    }
}

/// Every desk's batch runs with `--resume`, desks killed with SIGKILL at
/// random and started again until all are done; at least one is killed.
/// Returns the seed and how many kills.
fn desks_killed_at_random_and_resumed(jobs: &[DeskJob]) -> (u64, usize) {
    let spawn = |j: usize| -> Child {
        let job = &jobs[j];
        let reader = format!("emulated:{}", job.cards.display());
        cmd(&batch_args(
            s(&job.home),
            job.station,
            &reader,
            &job.file,
            &["--resume", "--json"],
        ))
        .spawn()
        .unwrap()
    };
    let (seed, mut rng) = test_seed();
    let kills = run_with_random_kills(jobs.len(), &spawn, 24, &mut rng, Duration::from_secs(900));
    assert!(kills > 0, "the test must kill desks");
    (seed, kills)
}

/// Every card a desk finished is in the registry, committed (issued), and
/// no card number is used twice; returns the card numbers.
fn every_finished_card_is_committed_once(
    reg: &PgRegistry,
    jobs: &[DeskJob],
    seed: u64,
) -> BTreeSet<String> {
    let mut numbers = BTreeSet::new();
    for job in jobs {
        for key in issued_card_keys(&job.cards) {
            let number = reg
                .card_with_key(&key)
                .unwrap()
                .unwrap_or_else(|| panic!("a finished card is not in the registry (seed {seed})"));
            let record = reg.card(&number).unwrap().unwrap();
            assert_eq!(
                record.state,
                CardState::Issued,
                "{number}: {record:?} (seed {seed})"
            );
            assert!(
                numbers.insert(number),
                "card number used twice (seed {seed})"
            );
        }
    }
    numbers
}

/// No intent is left open, and every resident has exactly one live card:
/// as many issued cards (and finished card numbers) as residents.
fn one_live_card_per_resident(
    reg: &PgRegistry,
    residents: &BTreeSet<String>,
    numbers: &BTreeSet<String>,
    seed: u64,
) {
    let counts = reg.counts().unwrap();
    assert_eq!(counts.open_intents, 0, "seed {seed}");
    assert_eq!(
        counts.issued,
        residents.len() as u64,
        "{counts:?} (seed {seed})"
    );
    for r in residents {
        assert_eq!(
            reg.live_card_of(r).unwrap().expect("one live card").state,
            CardState::Issued
        );
    }
    assert_eq!(numbers.len(), residents.len());
}

/// Four offices (four homes restored from one backup: one city, one set of
/// keys) with two desks each — eight batch processes — issue at once on one
/// PostgreSQL registry; residents who went to two offices are in both files.
/// Desks are killed with SIGKILL at random and resumed until every batch is
/// done. Then: every finished card is committed, no resident has two live
/// cards, no card number is used twice, no intent is left open, and cards
/// revoked at every office are on the list published by one of them.
#[test]
fn offices_on_one_registry_with_kill_9_and_resume() {
    let city = City::offices_restored_from_one_backup();
    let (jobs, residents) = city.desk_jobs();
    let (seed, kills) = desks_killed_at_random_and_resumed(&jobs);
    let reg = city.registry();
    let numbers = every_finished_card_is_committed_once(&reg, &jobs, seed);
    one_live_card_per_resident(&reg, &residents, &numbers, seed);
    let revoked = city.each_office_revokes_one_card(&reg);
    city.one_office_publishes_every_office_s_revocations(&reg, &revoked);
    println!("{} cards, {kills} kills, seed {seed}", numbers.len());
}

/// Two offices' homes on one machine (restored from one backup) share the
/// registry: a reconciliation at one office never settles the open intent
/// of a desk at work at the other — that desk's lock file is in the other
/// home — and settles it once that desk is gone.
#[test]
fn one_office_never_settles_the_intents_of_a_desk_at_work_at_another() {
    use citycard_issuer::desk::Desk;
    use citycard_issuer::home::IssuerHome;
    use citycard_registry::{CardNumber, NewIssuance};
    let cluster = Cluster::start();
    let db = cluster.new_database();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("office-a"), tmp.path().join("office-b"));
    server_home(&a, &cluster.url(ADMIN, &db));
    let backup = tmp.path().join("city.tar");
    ok(&["issuer", "backup", "--dir", s(&a), "--out", s(&backup)]);
    std::fs::create_dir(&b).unwrap();
    assert!(Command::new("tar")
        .args(["-xpf", s(&backup), "-C", s(&b)])
        .status()
        .unwrap()
        .success());

    // A desk at work at office A, in the middle of a card.
    std::env::set_var(PASSWORD_ENV, PASSWORD);
    let home_a = IssuerHome::open(&a).unwrap();
    let desk = Desk::start(&home_a, "reader-a").unwrap();
    let mut reg = home_a.open_registry().unwrap();
    let intent = reg
        .begin_intent(&NewIssuance {
            card_number: CardNumber::Next { prefix: "LG" },
            resident_ref: "F-1",
            station: "desk-1",
            issued_on: citycard_proto::date::Date::new(2026, 3, 1).unwrap(),
            expires_on: citycard_proto::date::Date::new(2031, 2, 28).unwrap(),
            attributes: &[],
            batch: None,
            replaces: None,
            actor: "op-a",
            lease: Some(desk.lease_id()),
            retain_until: None,
        })
        .unwrap();

    // Office B reconciles: the intent is not an orphan.
    let out = ok_json(&["issuer", "reconcile", "--dir", s(&b), "--spoil", "--json"]);
    let open = registry(&cluster, &db).open_intents().unwrap();
    assert_eq!(open.len(), 1, "{out}");
    assert_eq!(open[0].id, intent.id);

    // Desk A is done without finishing (released): now B settles it.
    drop(desk);
    ok(&["issuer", "reconcile", "--dir", s(&b), "--spoil"]);
    assert!(registry(&cluster, &db).open_intents().unwrap().is_empty());
    assert!(matches!(
        registry(&cluster, &db)
            .card(&intent.card_number)
            .unwrap()
            .unwrap()
            .state,
        CardState::Spoiled { .. }
    ));
}

/// `issuer init --registry URL --registry-password-file FILE`, without the
/// password in the environment: a file others can read (0644) is refused,
/// saying why, before anything is created; a private one (0600) is used, by
/// `init` and by every later command; made readable again, it is refused.
#[test]
fn the_registry_password_comes_from_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start();
    let db = cluster.new_database();
    let url = cluster.url(ADMIN, &db);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = s(&home);
    let file = tmp.path().join("registry.password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let mode =
        |m: u32| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
    let run_without_env = |args: &[&str]| {
        let out = cmd(args).env_remove(PASSWORD_ENV).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let init = init_args(
        h,
        &["--registry", &url, "--registry-password-file", s(&file)],
    );

    mode(0o644);
    let (code, out) = run_without_env(&init);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("registry.password") && out.contains("mode 0600"),
        "the error names the file and the rule: {out}"
    );
    assert!(!out.contains(PASSWORD), "{out}");
    assert!(!home.join("issuer.json").exists(), "nothing created");

    mode(0o600);
    let (code, out) = run_without_env(&init);
    assert_eq!(code, 0, "{out}");
    let config = std::fs::read_to_string(home.join("issuer.json")).unwrap();
    assert!(
        config.contains("registry.password") && !config.contains(PASSWORD),
        "{config}"
    );
    // Later commands find the password through the home.
    let (code, out) = run_without_env(&["station", "add", "desk-1", "--dir", h]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run_without_env(&["issuer", "migrate", "--dir", h, "--json"]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["from_version"], report["to_version"], "{report}");

    mode(0o644);
    let (code, out) = run_without_env(&["issuer", "migrate", "--dir", h]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("mode 0600"), "{out}");
}

/// `citycard issuer migrate` on a home with the default SQLite registry:
/// up to date after `issuer init`; a registry written by a newer citycard
/// (a higher schema version) is refused, saying to upgrade citycard, and
/// left as it is.
#[test]
fn issuer_migrate_on_a_sqlite_home() {
    use citycard_registry::schema::SCHEMA_VERSION;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let h = s(&home);
    ok(&init_args(h, &[]));
    let text = ok(&["issuer", "migrate", "--dir", h]);
    assert!(
        text.contains(&format!("schema version {SCHEMA_VERSION}, up to date")),
        "{text}"
    );
    let report = ok_json(&["issuer", "migrate", "--dir", h, "--json"]);
    assert_eq!(report["from_version"], SCHEMA_VERSION, "{report}");
    assert_eq!(report["to_version"], SCHEMA_VERSION, "{report}");

    let file = home.join("registry.sqlite");
    let version = || -> i64 {
        rusqlite::Connection::open(&file)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };
    rusqlite::Connection::open(&file)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    for args in [
        &["issuer", "migrate", "--dir", h][..],
        &["issuer", "migrate", "--dir", h, "--json"][..],
    ] {
        let (code, out, err) = run(args);
        assert_ne!(code, 0, "{out}{err}");
        assert!(
            format!("{out}{err}").contains("upgrade citycard"),
            "{out}{err}"
        );
    }
    assert_eq!(version(), SCHEMA_VERSION + 1, "left as it was");
}
