//! What only the PostgreSQL registry has: the issuing role's rights, the
//! database's own refusals whoever connects, versioned migrations under a
//! lock, and credentials that never travel in the URL or an error message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use citycard_registry::pg::schema::PG_SCHEMA_VERSION;
use citycard_registry::pg::{password_from_env_or_file, PASSWORD_ENV};
use citycard_registry::{PgRegistry, RegistryError};
use citycard_testkit::pg::{ADMIN, PASSWORD, STATION};
use common::*;

fn pg_fixture() -> AnyFixture {
    fixture_on(Backend::Postgres)
}

#[test]
fn the_issuing_role_cannot_rewrite_history() {
    let mut f = pg_fixture();
    let number = issue(&mut *f.reg, "r-1", 1);
    let mut station = f.raw_as_station().unwrap();
    for sql in [
        "UPDATE audit SET actor = 'someone-else'",
        "DELETE FROM audit",
        "TRUNCATE audit",
        "DELETE FROM cards",
        "TRUNCATE cards",
        "DELETE FROM card_group_keys",
        "UPDATE card_group_keys SET group_id = 1",
        "UPDATE registry_meta SET schema_version = 0",
        "DROP TABLE audit",
        "ALTER TABLE audit DISABLE TRIGGER audit_append_only",
        "CREATE TABLE notes (x text)",
    ] {
        let err = station.batch_execute(sql).unwrap_err();
        let code = err.code().unwrap().code();
        assert!(
            code == "42501" || code == "42P01" && sql.contains("notes"),
            "{sql}: {err}"
        );
    }
    // What issuance needs is granted: it just worked through the registry,
    // and an audit row may be appended.
    station
        .batch_execute("INSERT INTO audit (at, actor, action) VALUES (0, 'op-1', 'station-added')")
        .unwrap();
    assert_eq!(f.reg.card(&number).unwrap().unwrap().card_number, number);
}

#[test]
fn the_database_refuses_whoever_connects() {
    let mut f = pg_fixture();
    let number = issue(&mut *f.reg, "r-1", 1);
    let mut raw = f.raw();
    for (sql, rule) in [
        ("UPDATE audit SET actor = 'x'", "append-only"),
        ("DELETE FROM audit", "append-only"),
        ("TRUNCATE audit", "append-only"),
        ("TRUNCATE cards CASCADE", "append-only"),
        ("TRUNCATE card_group_keys", "append-only"),
        ("DELETE FROM cards", "never deleted"),
        ("UPDATE cards SET state = 'intent'", "disallowed change"),
        ("UPDATE cards SET card_key = NULL, revocation_id = NULL", "disallowed change"),
        ("UPDATE cards SET expires_on = '2040-01-01'", "disallowed change"),
        ("UPDATE cards SET state = 'revoked'", "CHECK"),
    ] {
        let err = raw.exec(sql).unwrap_err();
        assert!(err.contains(rule), "{sql}: {err}");
    }
    // An open intent is owned only by a lease still held.
    let lease = f.reg.acquire_lease("desk-1", "host:1", 60).unwrap();
    f.reg.release_lease(&lease.id).unwrap();
    let err = raw
        .exec(&format!(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
             state, created_at, lease_id) VALUES ('LG-9', 'r-9', 'desk-1', '2026-03-01', \
             '2031-02-28', 'intent', 0, '{}')",
            lease.id
        ))
        .unwrap_err();
    assert!(err.contains("held lease"), "{err}");
    // Group records: at most eight per card, keys unique, never changed.
    let id: i64 = match &mut raw {
        RawConn::Postgres(c) => c
            .query_one("SELECT intent_id FROM cards WHERE card_number = $1", &[&number])
            .unwrap()
            .get(0),
        RawConn::Sqlite(_) => unreachable!(),
    };
    let group = |index: i64, key: u8| {
        format!(
            "INSERT INTO card_group_keys (intent_id, group_index, group_id, card_key, \
             revocation_id) VALUES ({id}, {index}, {index}, '\\x{}', '\\x{}')",
            hex::encode([key; 33]),
            hex::encode([key; 8])
        )
    };
    for i in 0..8 {
        raw.exec(&group(i, i as u8 + 1)).unwrap();
    }
    assert!(raw.exec(&group(8, 99)).unwrap_err().contains("CHECK"));
    assert!(raw.exec(&group(3, 100)).unwrap_err().contains("UNIQUE"));
    assert!(raw
        .exec("UPDATE card_group_keys SET group_id = 42 WHERE group_index = 0")
        .unwrap_err()
        .contains("append-only"));
}

#[test]
fn migrations_are_versioned_and_a_newer_database_is_refused() {
    let cluster = cluster();
    let db = cluster.new_database();
    let admin = cluster.url(ADMIN, &db);
    let station = cluster.url(STATION, &db);
    // An empty database is not a registry yet.
    assert!(matches!(
        PgRegistry::connect(&station, Some(PASSWORD)),
        Err(RegistryError::NeedsMigration { found: 0, .. })
    ));
    // Offices upgrading at once: applied exactly once.
    let results: Vec<_> = (0..4)
        .map(|_| {
            let admin = admin.clone();
            std::thread::spawn(move || PgRegistry::migrate(&admin, Some(PASSWORD)).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|(from, _)| *from == 0).count(),
        1,
        "{results:?}"
    );
    assert!(results.iter().all(|(_, to)| *to == PG_SCHEMA_VERSION));
    assert!(matches!(
        PgRegistry::create(&admin, Some(PASSWORD)),
        Err(RegistryError::AlreadyExistsAt { .. })
    ));
    PgRegistry::connect(&station, Some(PASSWORD)).unwrap();
    // A database written by a newer program: this one refuses it, clearly.
    cluster.sql(
        &db,
        &format!("UPDATE registry_meta SET schema_version = {}", PG_SCHEMA_VERSION + 1),
    );
    let err = PgRegistry::connect(&station, Some(PASSWORD)).unwrap_err();
    assert!(matches!(err, RegistryError::NewerSchema { .. }), "{err}");
    assert!(err.to_string().contains("upgrade citycard"), "{err}");
    assert!(matches!(
        PgRegistry::migrate(&admin, Some(PASSWORD)),
        Err(RegistryError::NewerSchema { .. })
    ));
}

#[test]
fn credentials_never_travel_in_the_url_or_an_error() {
    let cluster = cluster();
    let db = cluster.new_database();
    let with_password = format!(
        "postgres://{STATION}:{PASSWORD}@127.0.0.1:{}/{db}",
        cluster.port()
    );
    let err = PgRegistry::connect(&with_password, None).unwrap_err();
    assert!(matches!(err, RegistryError::InvalidInput { field: "registry", .. }));
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    // A wrong password fails without echoing it.
    let err = PgRegistry::connect(&cluster.url(STATION, &db), Some("wrong-secret-123")).unwrap_err();
    assert!(!err.to_string().contains("wrong-secret-123"), "{err}");
    assert!(!format!("{err:?}").contains("wrong-secret-123"));
    // From a file: only if private to its owner.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    if std::env::var(PASSWORD_ENV).is_err() {
        assert!(password_from_env_or_file(Some(&file)).is_err());
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            password_from_env_or_file(Some(&file)).unwrap().as_deref(),
            Some(PASSWORD)
        );
    }
}

#[test]
fn server_errors_do_not_quote_the_failing_row() {
    let f = pg_fixture();
    let mut raw = f.raw_as_station().unwrap();
    raw.batch_execute("INSERT INTO residents VALUES ('file-4711')").unwrap();
    let e = raw
        .execute("INSERT INTO residents VALUES ('file-4711')", &[])
        .unwrap_err();
    // The server's detail names the value; the registry's error does not.
    assert!(format!("{:?}", e.as_db_error().unwrap().detail()).contains("file-4711"));
    let shown = RegistryError::from(e).to_string();
    assert!(shown.contains("23505"), "{shown}");
    assert!(!shown.contains("file-4711"), "{shown}");
}
