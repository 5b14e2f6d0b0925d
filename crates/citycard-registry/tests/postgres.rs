//! What only the PostgreSQL registry has: the issuing role's rights, the
//! database's own refusals whoever connects, versioned migrations under a
//! lock, and credentials that never travel in the URL or an error message.
#![cfg(test)]

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
        (
            "UPDATE cards SET card_key = NULL, revocation_id = NULL",
            "disallowed change",
        ),
        (
            "UPDATE cards SET expires_on = '2040-01-01'",
            "disallowed change",
        ),
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
            .query_one(
                "SELECT intent_id FROM cards WHERE card_number = $1",
                &[&number],
            )
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
    // Once the card is revoked, each group's list carries that group's
    // record, until the card could no longer be valid.
    let on = date(2026, 6, 1);
    assert!(f.reg.revocation_ids_for(3, on).unwrap().is_empty());
    f.reg
        .revoke(&number, citycard_registry::RevocationReason::Lost, "op-1")
        .unwrap();
    for g in 1..8u8 {
        assert_eq!(f.reg.revocation_ids_for(g, on).unwrap(), [[g + 1; 8]]);
    }
    let group_0 = f.reg.revocation_ids_for(0, on).unwrap();
    assert_eq!(group_0.len(), 2, "the card's own id and its group-0 record");
    assert!(group_0.contains(&[1; 8]) && group_0.windows(2).all(|w| w[0] < w[1]));
    assert!(f
        .reg
        .revocation_ids_for(5, date(2040, 1, 1))
        .unwrap()
        .is_empty());
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
        &format!(
            "UPDATE registry_meta SET schema_version = {}",
            PG_SCHEMA_VERSION + 1
        ),
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
    assert!(matches!(
        err,
        RegistryError::InvalidInput {
            field: "registry",
            ..
        }
    ));
    assert!(!err.to_string().contains(PASSWORD), "{err}");
    // A wrong password fails without echoing it.
    let err =
        PgRegistry::connect(&cluster.url(STATION, &db), Some("wrong-secret-123")).unwrap_err();
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
    raw.batch_execute("INSERT INTO residents VALUES ('file-4711')")
        .unwrap();
    let e = raw
        .execute("INSERT INTO residents VALUES ('file-4711')", &[])
        .unwrap_err();
    // The server's detail names the value; the registry's error does not.
    assert!(format!("{:?}", e.as_db_error().unwrap().detail()).contains("file-4711"));
    let shown = RegistryError::from(e).to_string();
    assert!(shown.contains("23505"), "{shown}");
    assert!(!shown.contains("file-4711"), "{shown}");
}

#[test]
fn a_sqlite_registry_moves_to_postgres_with_every_record() {
    use citycard_registry::pg::copy_sqlite_to_postgres;
    use citycard_registry::{CardNumber, IssuanceRegistry, NewIssuance, RevocationReason};
    let mut f = fixture();
    let attrs = attributes(NAME);
    let mut numbers = Vec::new();
    for i in 0..20u64 {
        numbers.push(issue(&mut f.reg, &format!("r-{i}"), i + 1));
    }
    f.reg
        .revoke(&numbers[3], RevocationReason::Lost, "op-1")
        .unwrap();
    let replacement = f
        .reg
        .begin_intent(&with_replaces(
            NewIssuance {
                batch: Some(("night-1", 7)),
                ..issuance("LG-900", "r-5", &attrs)
            },
            RevocationReason::Stolen,
        ))
        .unwrap();
    let (key, rid) = card_key(500);
    f.reg
        .attach_card_key(replacement.id, &key, &rid, "op-1")
        .unwrap();
    f.reg.mark_spoiled(replacement.id, "torn", "op-1").unwrap();
    let lease = f.reg.acquire_lease("reader-a", "host:1", 600).unwrap();
    let gone = f.reg.acquire_lease("reader-b", "host:2", 600).unwrap();
    f.reg.release_lease(&gone.id).unwrap();
    f.reg
        .begin_intent(&NewIssuance {
            card_number: CardNumber::Next { prefix: "LG" },
            lease: Some(&lease.id),
            ..issuance("unused", "r-open", &attrs)
        })
        .unwrap();
    f.reg
        .record_action("issuer", Some("desk-1"), "station-added")
        .unwrap();
    f.reg.next_revocation_sequence().unwrap();
    f.reg.forget_resident("r-7", "op-1").unwrap();

    let cluster = cluster();
    let db = cluster.new_database();
    let admin = cluster.url(ADMIN, &db);
    PgRegistry::migrate(&admin, Some(PASSWORD)).unwrap();
    let report = copy_sqlite_to_postgres(&f.reg, &admin, Some(PASSWORD)).unwrap();
    assert_eq!(report.cards, 22);
    assert_eq!(report.leases, 2);
    // A second copy into the same database is refused.
    assert!(matches!(
        copy_sqlite_to_postgres(&f.reg, &admin, Some(PASSWORD)),
        Err(RegistryError::AlreadyExistsAt { .. })
    ));

    let mut pg = PgRegistry::connect(&cluster.url(STATION, &db), Some(PASSWORD)).unwrap();
    let sqlite: &mut dyn IssuanceRegistry = &mut f.reg;
    let all: Vec<String> = numbers
        .iter()
        .cloned()
        .chain(["LG-900".to_string(), "LG-000021".to_string()])
        .collect();
    for n in &all {
        assert_eq!(pg.card(n).unwrap(), sqlite.card(n).unwrap(), "{n}");
    }
    assert_eq!(pg.audit_log().unwrap(), sqlite.audit_log().unwrap());
    assert_eq!(pg.counts().unwrap(), sqlite.counts().unwrap());
    assert_eq!(
        pg.counts_by_station().unwrap(),
        sqlite.counts_by_station().unwrap()
    );
    assert_eq!(
        pg.revocation_ids().unwrap(),
        sqlite.revocation_ids().unwrap()
    );
    assert_eq!(pg.revoked().unwrap(), sqlite.revoked().unwrap());
    assert_eq!(pg.open_intents().unwrap(), sqlite.open_intents().unwrap());
    assert_eq!(
        pg.active_leases(0).unwrap(),
        sqlite.active_leases(0).unwrap()
    );
    assert_eq!(pg.lease(&gone.id).unwrap(), sqlite.lease(&gone.id).unwrap());
    for r in ["r-1", "r-5", "r-7", "r-open"] {
        assert_eq!(
            pg.resident_attributes(r).unwrap(),
            sqlite.resident_attributes(r).unwrap(),
            "{r}"
        );
        assert_eq!(pg.live_card_of(r).unwrap(), sqlite.live_card_of(r).unwrap());
    }
    assert_eq!(pg.batch_row_done("night-1", 7).unwrap(), None);
    // Counters and ids carry on where SQLite stopped.
    assert_eq!(
        pg.next_card_number("LG").unwrap(),
        sqlite.next_card_number("LG").unwrap()
    );
    assert_eq!(pg.next_revocation_sequence().unwrap(), 2);
    issue(&mut pg, "r-new", 77);
    let log = pg.audit_log().unwrap();
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    // The one-live-card rule holds across the move.
    assert!(matches!(
        pg.begin_intent(&issuance("LG-999", "r-1", &attrs)),
        Err(RegistryError::ResidentHasLiveCard { .. })
    ));
}

/// City scale on the server: 10^5 card records and 10^6 audit entries. The
/// next card number skips every recorded one, the audit log streams in
/// order, counts per station add up, the open intent among them is found,
/// and the one-live-card index still answers at once.
#[test]
fn city_scale_on_postgres() {
    const CARDS: i64 = 100_000;
    const AUDIT: i64 = 1_000_000;
    let mut f = pg_fixture();
    let mut raw = match f.raw() {
        RawConn::Postgres(c) => c,
        RawConn::Sqlite(_) => unreachable!(),
    };
    raw.batch_execute(&format!(
        "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, state, \
         spoil_reason, created_at) SELECT 'LG-' || lpad(i::text, 6, '0'), 'r-' || i, \
         'desk-' || (i % 4), '2026-03-01', '2031-02-28', 'spoiled', 'torn', 1 \
         FROM generate_series(0, {}) AS i;
         INSERT INTO audit (at, actor, station, action, card_number) \
         SELECT i, 'op', 'desk-1', 'intent', 'LG-000001' FROM generate_series(0, {}) AS i;
         ANALYZE",
        CARDS - 1,
        AUDIT - 1
    ))
    .unwrap();
    let started = std::time::Instant::now();
    city_scale_checks(&mut *f.reg, CARDS, AUDIT);
    println!("checks at city scale: {:?}", started.elapsed());
    assert_eq!(f.reg.next_card_number("LG").unwrap(), "LG-100001");
    assert!(matches!(
        f.reg
            .begin_intent(&issuance("LG-X1", "r-open", &attributes(NAME))),
        Err(RegistryError::ResidentHasOpenIntent { .. })
    ));
    assert_eq!(f.reg.counts_by_station().unwrap().len(), 4);
}

/// A city-sized SQLite registry (10^5 cards, 10^6 audit entries) moves to
/// PostgreSQL in one streamed transaction, every row and every odd byte
/// (a backslash in a reference) intact.
#[test]
fn a_city_sized_registry_moves_to_postgres() {
    use citycard_registry::pg::copy_sqlite_to_postgres;
    use citycard_registry::IssuanceRegistry;
    const CARDS: i64 = 100_000;
    const AUDIT: i64 = 1_000_000;
    let mut f = fixture();
    let odd = r"file\4711 'x'";
    issue(&mut f.reg, odd, 1);
    {
        let conn = rusqlite::Connection::open(&f.path).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        let mut card = conn
            .prepare(
                "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
                 state, spoil_reason, created_at) VALUES (?1, ?2, 'desk-1', '2026-03-01', \
                 '2031-02-28', 'spoiled', 'torn', 1)",
            )
            .unwrap();
        for i in 0..CARDS {
            card.execute(rusqlite::params![format!("ZZ-{i:06}"), format!("r-{i}")])
                .unwrap();
        }
        let mut audit = conn
            .prepare(
                "INSERT INTO audit (at, actor, station, action, card_number) \
                 VALUES (?1, 'op', 'desk-1', 'intent', 'ZZ-000001')",
            )
            .unwrap();
        for i in 0..AUDIT {
            audit.execute([i]).unwrap();
        }
        drop((card, audit));
        conn.execute_batch("COMMIT").unwrap();
    }
    let cluster = cluster();
    let db = cluster.new_database();
    let admin = cluster.url(ADMIN, &db);
    PgRegistry::migrate(&admin, Some(PASSWORD)).unwrap();
    let started = std::time::Instant::now();
    let report = copy_sqlite_to_postgres(&f.reg, &admin, Some(PASSWORD)).unwrap();
    println!("moved in {:?}: {report:?}", started.elapsed());
    assert_eq!(report.cards, CARDS as u64 + 1);
    assert_eq!(report.audit_entries, AUDIT as u64 + 2);
    let mut pg = PgRegistry::connect(&cluster.url(STATION, &db), Some(PASSWORD)).unwrap();
    assert_eq!(pg.counts().unwrap(), f.reg.counts().unwrap());
    assert_eq!(
        pg.live_card_of(odd).unwrap(),
        f.reg.live_card_of(odd).unwrap()
    );
    assert_eq!(
        pg.resident_attributes(odd).unwrap(),
        f.reg.resident_attributes(odd).unwrap()
    );
    let last_sqlite = f.reg.audit_since(AUDIT).unwrap();
    assert_eq!(pg.audit_since(AUDIT).unwrap(), last_sqlite);
    pg.record_action("issuer", None, "moved").unwrap();
    // Sequence numbers carry on after the largest copied one.
    let after = pg.audit_since(AUDIT).unwrap();
    assert_eq!(after.last().unwrap().seq, AUDIT + 2 + 1);
}

/// The server restarts (or fails over) under a desk: the call in flight
/// fails, nothing half-done is kept, and the next call reconnects. A
/// callback that calls back into the registry gets an error, not a panic.
#[test]
fn a_server_restart_costs_one_call_and_callbacks_cannot_reenter() {
    use citycard_registry::IssuanceRegistry;
    let cluster = citycard_testkit::pg::Cluster::start();
    let db = cluster.new_database();
    PgRegistry::migrate(&cluster.url(ADMIN, &db), Some(PASSWORD)).unwrap();
    let mut reg = PgRegistry::connect(&cluster.url(STATION, &db), Some(PASSWORD)).unwrap();
    let first = issue(&mut reg, "r-1", 1);
    cluster.restart();
    let mut failures = 0;
    let second = loop {
        let number = match reg.next_card_number("LG") {
            Ok(n) => n,
            Err(e) => {
                failures += 1;
                assert!(failures <= 1, "no reconnection: {e}");
                continue;
            }
        };
        break number;
    };
    assert_ne!(second, first);
    assert_eq!(
        reg.card(&first).unwrap().unwrap().state,
        citycard_registry::CardState::Issued
    );

    let err = reg
        .for_each_audit_since(0, &mut |_| reg.card(&first).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::InvalidInput {
                field: "registry",
                ..
            }
        ),
        "{err}"
    );
    // And the registry still works afterwards.
    assert_eq!(reg.audit_log().unwrap().len(), 2);
}
