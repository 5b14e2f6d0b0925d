//! What a city office needs from the registry: the upgrade of an existing
//! version-2 file, refusals that consume no card number, attributes kept
//! only with a retention period, desk leases, files private to the owner,
//! and a consistent online backup.
#![cfg(test)]

mod common;

use citycard_registry::schema::{SCHEMA, SCHEMA_VERSION};
use citycard_registry::{CardNumber, NewIssuance, Registry, RegistryError};
use common::*;
use rstest::rstest;

fn next<'a>(
    resident: &'a str,
    attrs: &'a [(citycard_proto::attr::AttributeId, Vec<u8>)],
) -> NewIssuance<'a> {
    NewIssuance {
        card_number: CardNumber::Next { prefix: "LG" },
        retain_until: None,
        ..issuance("unused", resident, attrs)
    }
}

#[test]
fn a_version_2_registry_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute_batch(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, state, created_at) \
             VALUES ('LG-000001', 'file-1', 'desk-1', '2026-03-01', '2031-02-28', 'intent', 1);
             INSERT INTO residents VALUES ('file-1');
             INSERT INTO resident_attributes VALUES ('file-1', 2, X'416E6E');",
        )
        .unwrap();
    }
    let reg = Registry::open(&path).unwrap();
    let v: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let open = reg.open_intents().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0].owner, None,
        "a v2 intent has no owner: any desk may settle it"
    );
    assert_eq!(
        reg.resident_attributes("file-1").unwrap().unwrap().len(),
        1,
        "kept data survives the upgrade (until forgotten)"
    );
    drop(reg);
    // Opening again is a no-op.
    Registry::open(&path).unwrap();
}

/// A registry from the first release (version 1) is rebuilt to the current
/// schema on open: every row kept, and what version 1 refused (a card key on
/// an open intent) now works.
#[test]
fn a_version_1_registry_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let (key, rid) = card_key(1);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("data/schema-v1.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
             state, card_key, revocation_id, revoke_reason, revoked_at, created_at) VALUES \
             ('LG-000001', 'file-1', 'desk-1', '2026-03-01', '2031-02-28', 'revoked', ?1, ?2, \
              'lost', 5, 1)",
            rusqlite::params![key.as_slice(), rid.as_slice()],
        )
        .unwrap();
        conn.execute_batch(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, state, \
             spoil_reason, created_at) VALUES \
             ('LG-000002', 'file-2', 'desk-1', '2026-03-01', '2031-02-28', 'spoiled', 'torn', 2);
             INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, state, \
             created_at) VALUES ('LG-000003', 'file-2', 'desk-1', '2026-03-01', '2031-02-28', \
             'intent', 3);
             INSERT INTO counters VALUES ('card_number:LG', 3);
             INSERT INTO audit (at, actor, action, card_number) VALUES (1, 'op-1', 'intent', 'LG-000001');",
        )
        .unwrap();
    }
    let mut reg = Registry::open(&path).unwrap();
    reg.integrity_check().unwrap();
    let v: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let revoked = reg.card("LG-000001").unwrap().unwrap();
    assert_eq!(revoked.card_key, Some(key));
    assert_eq!(reg.revocation_ids().unwrap(), [rid]);
    assert_eq!(reg.counts().unwrap().open_intents, 1);
    assert_eq!(reg.audit_log().unwrap().len(), 1);
    // The open intent may now carry its card key; the rules still hold.
    let open = reg.open_intents().unwrap().pop().unwrap();
    let (k2, r2) = card_key(2);
    reg.attach_card_key(open.id, &k2, &r2, "op-1").unwrap();
    assert!(matches!(
        reg.begin_intent(&next("file-2", &attributes(NAME))),
        Err(RegistryError::ResidentHasOpenIntent { .. })
    ));
    assert_eq!(reg.next_card_number("LG").unwrap(), "LG-000004");
    let err = raw(&path).execute("DELETE FROM cards", []).unwrap_err();
    assert!(err.to_string().contains("never deleted"), "{err}");
    drop(reg);
    Registry::open(&path).unwrap();
}

#[rstest]
fn refused_issuances_consume_no_card_number(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    let first = f.reg.begin_intent(&next("r-1", &attrs)).unwrap();
    assert_eq!(first.card_number, "LG-000001");
    for _ in 0..5 {
        assert!(matches!(
            f.reg.begin_intent(&next("r-1", &attrs)),
            Err(RegistryError::ResidentHasOpenIntent { .. })
        ));
    }
    let second = f.reg.begin_intent(&next("r-2", &attrs)).unwrap();
    assert_eq!(second.card_number, "LG-000002", "no gap after refusals");
}

#[rstest]
fn attributes_are_kept_only_with_a_retention_period(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    f.reg.begin_intent(&next("r-1", &attrs)).unwrap();
    assert_eq!(f.reg.resident_attributes("r-1").unwrap(), None);
    assert_eq!(f.reg.residents_with_attributes().unwrap(), 0);
    let kept = NewIssuance {
        retain_until: Some(1_000),
        ..next("r-2", &attrs)
    };
    f.reg.begin_intent(&kept).unwrap();
    assert_eq!(f.reg.retained_until("r-2").unwrap(), Some(1_000));
    assert_eq!(f.reg.residents_with_attributes().unwrap(), 1);
    assert_eq!(f.reg.purge_expired_attributes(999, "op-1").unwrap(), 0);
    assert_eq!(f.reg.purge_expired_attributes(1_001, "op-1").unwrap(), 1);
    assert_eq!(f.reg.resident_attributes("r-2").unwrap(), None);
    if backend != Backend::Sqlite {
        return;
    }
    drop(f.reg);
    let path = std::path::Path::new(&f.location);
    let mut bytes = std::fs::read(path).unwrap();
    if let Ok(wal) = std::fs::read(path.with_extension("sqlite-wal")) {
        bytes.extend(wal);
    }
    assert!(!bytes.windows(NAME.len()).any(|w| w == NAME.as_bytes()));
    assert!(!bytes
        .windows(ADDRESS.len())
        .any(|w| w == ADDRESS.as_bytes()));
}

#[rstest]
fn leases_own_intents_and_can_be_taken_over_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    let a = f.reg.acquire_lease("reader-a", "host:1", 60).unwrap();
    let b = f.reg.acquire_lease("reader-b", "host:2", 60).unwrap();
    let intent = f
        .reg
        .begin_intent(&NewIssuance {
            lease: Some(&a.id),
            ..next("r-1", &attrs)
        })
        .unwrap();
    let open = f.reg.open_intents().unwrap();
    assert_eq!(open[0].owner.as_ref().unwrap().id, a.id);
    assert!(!open[0].owner.as_ref().unwrap().is_gone_at(0));
    f.reg.renew_lease(&a.id, 60).unwrap();
    // Desk b takes the intent over once; the second attempt (or another
    // desk's) loses the compare-and-set.
    assert!(f
        .reg
        .take_over_intent(intent.id, Some(&a.id), &b.id)
        .unwrap());
    assert!(!f
        .reg
        .take_over_intent(intent.id, Some(&a.id), &b.id)
        .unwrap());
    // The old holder learns it must stop.
    assert!(matches!(
        f.reg.renew_lease(&a.id, 60),
        Err(RegistryError::LeaseGone { .. })
    ));
    assert!(matches!(
        f.reg.begin_intent(&NewIssuance {
            lease: Some(&a.id),
            ..next("r-2", &attrs)
        }),
        Err(RegistryError::LeaseGone { .. })
    ));
    f.reg.release_lease(&b.id).unwrap();
    assert!(f.reg.active_leases(0).unwrap().is_empty());
}

#[cfg(unix)]
#[test]
fn registry_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let mut attrs = attributes(NAME);
    attrs.truncate(1);
    let mut reg = f.reg;
    reg.begin_intent(&next("r-1", &attrs)).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let mut p = f.path.as_os_str().to_owned();
        p.push(suffix);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{p:?}");
    }
    let copy = f.dir.path().join("copy.sqlite");
    reg.backup_to(&copy).unwrap();
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(matches!(
        reg.backup_to(&copy),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let restored = Registry::open(&copy).unwrap();
    assert_eq!(restored.open_intents().unwrap().len(), 1);
}

/// City scale: 10^5 card records and 10^6 audit entries. The audit log is
/// streamed (never all in memory), the backup copies everything, counts per
/// station add up, an open intent among them is found.
#[test]
fn city_scale_audit_stream_backup_and_counts() {
    const CARDS: i64 = 100_000;
    const AUDIT: i64 = 1_000_000;
    let mut f = fixture();
    {
        let conn = rusqlite::Connection::open(&f.path).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut card = conn
                .prepare(
                    "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
                     state, spoil_reason, created_at) VALUES (?1, ?2, ?3, '2026-03-01', '2031-02-28', \
                     'spoiled', 'torn', 1)",
                )
                .unwrap();
            for i in 0..CARDS {
                card.execute(rusqlite::params![
                    format!("LG-{i:06}"),
                    format!("r-{i}"),
                    format!("desk-{}", i % 4)
                ])
                .unwrap();
            }
            let mut audit = conn
                .prepare(
                    "INSERT INTO audit (at, actor, station, action, card_number) \
                     VALUES (?1, 'op', 'desk-1', 'intent', 'LG-000001')",
                )
                .unwrap();
            for i in 0..AUDIT {
                audit.execute([i]).unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    city_scale_checks(&mut f.reg, CARDS, AUDIT);
    let copy = f.dir.path().join("copy.sqlite");
    f.reg.backup_to(&copy).unwrap();
    let restored = Registry::open(&copy).unwrap();
    assert_eq!(restored.counts().unwrap().spoiled, CARDS as u64);
    assert_eq!(restored.open_intents().unwrap().len(), 1);
}
