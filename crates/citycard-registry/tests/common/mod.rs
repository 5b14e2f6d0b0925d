//! Helpers shared by the registry's integration tests.
#![cfg(test)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use citycard_proto::{attr::AttributeId, crypto, date::Date, revocation};
use std::sync::{Arc, Mutex, Weak};

use citycard_registry::{
    CardNumber, CardState, IssuanceRegistry, NewIssuance, PgRegistry, Registry, RevocationReason,
};
use citycard_testkit::pg::{Cluster, ADMIN, PASSWORD, STATION};
use rand_chacha::rand_core::SeedableRng;

/// A real card key pair's public half and its revocation id, from a seed.
pub fn card_key(seed: u64) -> ([u8; 33], [u8; 8]) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let sk = crypto::generate(&mut rng);
    let pk = sk.public_key();
    (crypto::encode_point(&pk), revocation::revocation_id(&pk))
}

pub fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

pub const NAME: &str = "Zoé Quintessa-Marlowe";
pub const ADDRESS: &str = "Rue des Oubliés 17, 4000 Liège";

pub fn attributes(name: &str) -> Vec<(AttributeId, Vec<u8>)> {
    vec![
        (AttributeId::NAME, name.as_bytes().to_vec()),
        (
            AttributeId::BIRTH_DATE,
            date(1990, 5, 17).to_bytes().to_vec(),
        ),
        (AttributeId::ADDRESS, ADDRESS.as_bytes().to_vec()),
        (AttributeId::LANGUAGE, b"fr".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
    ]
}

pub fn issuance<'a>(
    card_number: &'a str,
    resident_ref: &'a str,
    attributes: &'a [(AttributeId, Vec<u8>)],
) -> NewIssuance<'a> {
    NewIssuance {
        card_number: card_number.into(),
        resident_ref,
        station: "desk-1",
        issued_on: date(2026, 3, 1),
        expires_on: date(2031, 2, 28),
        attributes,
        batch: None,
        replaces: None,
        actor: "op-1",
        lease: None,
        retain_until: Some(i64::MAX),
    }
}

pub fn with_replaces(n: NewIssuance<'_>, reason: RevocationReason) -> NewIssuance<'_> {
    NewIssuance {
        replaces: Some(reason),
        ..n
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub reg: Registry,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let reg = Registry::create(&path).unwrap();
    Fixture { dir, path, reg }
}

/// Begins and commits an issuance; returns the card number.
pub fn issue(reg: &mut dyn IssuanceRegistry, resident_ref: &str, seed: u64) -> String {
    issue_named(reg, resident_ref, NAME, seed)
}

/// Begins and commits an issuance for a person of that name; returns the card number.
pub fn issue_named(
    reg: &mut dyn IssuanceRegistry,
    resident_ref: &str,
    name: &str,
    seed: u64,
) -> String {
    let number = reg.next_card_number("LG").unwrap();
    let mut attrs = attributes(name);
    if name != NAME {
        attrs[2] = (AttributeId::ADDRESS, b"Other Street 1".to_vec());
    }
    let intent = reg
        .begin_intent(&issuance(&number, resident_ref, &attrs))
        .unwrap();
    let (key, rid) = card_key(seed);
    reg.commit_issued(intent.id, &key, &rid, "op-1").unwrap();
    number
}

/// A raw connection to the same file, bypassing the registry.
pub fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn
}

/// Every byte of the registry's files (database, WAL, journal).
pub fn all_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-journal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(p)) {
            out.extend(bytes);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Which registry implementation a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on a throwaway PostgreSQL cluster, used through the
    /// least-privileged issuing role.
    Postgres,
}

/// The throwaway cluster shared by the tests running at a time: started by
/// the first, stopped when the last one (passed or failed) drops its handle.
pub fn cluster() -> Arc<Cluster> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return c;
    }
    let c = Arc::new(Cluster::start());
    *shared = Arc::downgrade(&c);
    c
}

/// A registry on either backend, with what tests need to reach under it.
pub struct AnyFixture {
    pub backend: Backend,
    pub reg: Box<dyn IssuanceRegistry>,
    pub dir: tempfile::TempDir,
    /// The SQLite file, or the database URL (issuing role).
    pub location: String,
    /// PostgreSQL: the cluster and the database name.
    pub pg: Option<(Arc<Cluster>, String)>,
}

/// A new, empty registry on `backend`.
pub fn fixture_on(backend: Backend) -> AnyFixture {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => {
            let path = dir.path().join("registry.sqlite");
            let reg = Registry::create(&path).unwrap();
            AnyFixture {
                backend,
                reg: Box::new(reg),
                location: path.to_str().unwrap().to_string(),
                dir,
                pg: None,
            }
        }
        Backend::Postgres => {
            let cluster = cluster();
            let db = cluster.new_database();
            PgRegistry::migrate(&cluster.url(ADMIN, &db), Some(PASSWORD)).unwrap();
            let location = cluster.url(STATION, &db);
            let reg = PgRegistry::connect(&location, Some(PASSWORD)).unwrap();
            AnyFixture {
                backend,
                reg: Box::new(reg),
                location,
                dir,
                pg: Some((cluster, db)),
            }
        }
    }
}

/// A raw connection that bypasses the registry, as the owner of the tables
/// (PostgreSQL) or to the file (SQLite): what the database itself refuses.
pub enum RawConn {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl RawConn {
    /// Runs one statement. Errors are given as text that names the rule
    /// broken the same way on both backends (`UNIQUE`, `CHECK`,
    /// `FOREIGN KEY`, or the trigger's message).
    pub fn exec(&mut self, sql: &str) -> Result<u64, String> {
        match self {
            Self::Sqlite(c) => c
                .execute(sql, [])
                .map(|n| n as u64)
                .map_err(|e| e.to_string()),
            Self::Postgres(c) => {
                // SQLite blob literals x'..' are bytea escapes in PostgreSQL.
                let sql = sql.replace(" x'", " '\\x");
                c.execute(sql.as_str(), &[]).map_err(|e| {
                    let Some(db) = e.as_db_error() else {
                        return e.to_string();
                    };
                    let rule = match db.code().code() {
                        "23505" => "UNIQUE",
                        "23514" => "CHECK",
                        "23503" => "FOREIGN KEY",
                        "42501" => "permission denied",
                        _ => "",
                    };
                    format!("{rule} {} ({})", db.message(), db.code().code())
                })
            }
        }
    }
}

impl AnyFixture {
    /// A second, independent connection to the same registry.
    pub fn reopen(&self) -> Box<dyn IssuanceRegistry> {
        match self.backend {
            Backend::Sqlite => Box::new(Registry::open(&self.location).unwrap()),
            Backend::Postgres => {
                Box::new(PgRegistry::connect(&self.location, Some(PASSWORD)).unwrap())
            }
        }
    }

    /// A raw connection as the tables' owner.
    pub fn raw(&self) -> RawConn {
        match &self.pg {
            None => RawConn::Sqlite(raw(Path::new(&self.location))),
            Some((cluster, db)) => RawConn::Postgres(admin_client(cluster, db)),
        }
    }

    /// A raw connection as the issuing role (PostgreSQL only).
    pub fn raw_as_station(&self) -> Option<postgres::Client> {
        let (cluster, db) = self.pg.as_ref()?;
        let mut config: postgres::Config = cluster.url(STATION, db).parse().unwrap();
        config.password(PASSWORD);
        Some(config.connect(postgres::NoTls).unwrap())
    }
}

/// A client connected as the cluster's superuser.
pub fn admin_client(cluster: &Cluster, db: &str) -> postgres::Client {
    let mut config: postgres::Config = cluster.url(ADMIN, db).parse().unwrap();
    config.password(PASSWORD);
    config.connect(postgres::NoTls).unwrap()
}

/// A random seed for a randomised test, printed so a failure can be replayed.
pub fn test_seed() -> (u64, rand_chacha::ChaCha20Rng) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    (seed, rand_chacha::ChaCha20Rng::seed_from_u64(seed))
}

/// Whether a card found in `found` has reached the state a killed process
/// reported (`intent`: any, it may have been settled since; `issued`: issued
/// or revoked since; `spoiled`; `revoked`).
pub fn reached(reported: &str, found: &CardState) -> bool {
    match reported {
        "intent" => true,
        "issued" => matches!(found, CardState::Issued | CardState::Revoked { .. }),
        "spoiled" => matches!(found, CardState::Spoiled { .. }),
        _ => matches!(found, CardState::Revoked { .. }),
    }
}

/// What a registry holding `cards` spoiled records `LG-000000`… and `audit`
/// audit entries must still do at once: the next number skips every recorded
/// one, the open intent is found, the audit log streams in order, counts per
/// station add up.
pub fn city_scale_checks(reg: &mut dyn IssuanceRegistry, cards: i64, audit: i64) {
    let attrs = attributes(NAME);
    let open = reg
        .begin_intent(&NewIssuance {
            card_number: CardNumber::Next { prefix: "LG" },
            retain_until: None,
            ..issuance("unused", "r-open", &attrs)
        })
        .unwrap();
    assert_eq!(
        open.card_number,
        format!("LG-{cards:06}"),
        "numbers skip every recorded one"
    );
    assert_eq!(reg.open_intents().unwrap().len(), 1);
    let mut seen = 0u64;
    let mut last = i64::MIN;
    let n = reg
        .for_each_audit_since(audit / 2, &mut |e| {
            assert!(e.seq > last);
            last = e.seq;
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert!(n >= (audit / 2) as u64 && n == seen, "{n}");
    let by_station = reg.counts_by_station().unwrap();
    let spoiled: u64 = by_station.iter().map(|(_, c)| c.spoiled).sum();
    assert_eq!(spoiled, cards as u64);
}
