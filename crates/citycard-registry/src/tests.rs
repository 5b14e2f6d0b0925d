//! Unit tests that need the registry's internals (fault injection).

use citycard_proto::{attr::AttributeId, crypto, date::Date, revocation};
use rand_chacha::rand_core::SeedableRng;

use crate::{CardState, NewIssuance, Registry, RegistryError, RevocationReason};

fn issuance<'a>(
    card_number: &'a str,
    attributes: &'a [(AttributeId, Vec<u8>)],
    replaces: Option<RevocationReason>,
) -> NewIssuance<'a> {
    NewIssuance {
        card_number: card_number.into(),
        resident_ref: "r-1",
        station: "desk-1",
        issued_on: Date::new(2026, 3, 1).unwrap(),
        expires_on: Date::new(2031, 2, 28).unwrap(),
        attributes,
        batch: None,
        replaces,
        actor: "op-1",
        lease: None,
        retain_until: Some(i64::MAX),
    }
}

#[test]
fn failure_after_revoke_inside_the_transaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite");
    let mut reg = Registry::create(&path).unwrap();
    let attrs = vec![(AttributeId::NAME, b"Old Name".to_vec())];
    let intent = reg.begin_intent(&issuance("LG-1", &attrs, None)).unwrap();
    let pk = crypto::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(7)).public_key();
    reg.commit_issued(
        intent.id,
        &crypto::encode_point(&pk),
        &revocation::revocation_id(&pk),
        "op-1",
    )
    .unwrap();
    let audit_before = reg.audit_log().unwrap();

    reg.fail_after_revoke = true;
    let new_attrs = vec![(AttributeId::NAME, b"New Name".to_vec())];
    let err = reg
        .begin_intent(&issuance("LG-2", &new_attrs, Some(RevocationReason::Lost)))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Sqlite(_)), "{err}");
    // Nothing changed: old card live, no revocation, no new card, same audit
    // log, same attributes — in this connection and in a fresh one.
    for reg in [&reg, &Registry::open(&path).unwrap()] {
        assert_eq!(reg.card("LG-1").unwrap().unwrap().state, CardState::Issued);
        assert!(reg.card("LG-2").unwrap().is_none());
        assert!(reg.revoked().unwrap().is_empty());
        assert_eq!(reg.audit_log().unwrap(), audit_before);
        assert_eq!(reg.resident_attributes("r-1").unwrap().unwrap(), attrs);
    }

    // Without the fault the same call goes through, revocation included.
    reg.fail_after_revoke = false;
    reg.begin_intent(&issuance("LG-2", &new_attrs, Some(RevocationReason::Lost)))
        .unwrap();
    assert!(matches!(
        reg.card("LG-1").unwrap().unwrap().state,
        CardState::Revoked {
            reason: RevocationReason::Lost,
            ..
        }
    ));
}

#[test]
fn connection_settings_make_commits_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite");
    for reg in [
        Registry::create(&path).unwrap(),
        Registry::open(&path).unwrap(),
    ] {
        let get = |name: &str| -> String {
            reg.conn
                .pragma_query_value(None, name, |r| {
                    Ok(match r.get_ref(0)? {
                        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        other => format!("{:?}", other.as_i64()?),
                    })
                })
                .unwrap()
        };
        assert_eq!(get("journal_mode"), "wal");
        assert_eq!(get("synchronous"), "2", "FULL");
        assert_eq!(get("foreign_keys"), "1");
        assert_eq!(get("secure_delete"), "1");
        assert_eq!(
            get("user_version"),
            crate::schema::SCHEMA_VERSION.to_string()
        );
    }
}

/// A PostgreSQL write that keeps losing to concurrent commits runs alone
/// after [`crate::pg::RUN_ALONE_AFTER`] conflicts: its attempts hold the
/// counters table in `ROW SHARE` mode (every writer), then one holds it in
/// `EXCLUSIVE` mode (no other writer can run) and commits. The conflicts
/// are real server errors (SQLSTATE 40001), raised by the transaction body.
#[test]
fn a_postgres_write_that_keeps_conflicting_runs_alone() {
    use citycard_testkit::pg::{Cluster, ADMIN, PASSWORD, STATION};
    let cluster = Cluster::start();
    let db = cluster.new_database();
    crate::PgRegistry::migrate(&cluster.url(ADMIN, &db), Some(PASSWORD)).unwrap();
    // As a desk connects: the issuing role may take the lock it needs.
    let reg = crate::PgRegistry::connect(&cluster.url(STATION, &db), Some(PASSWORD)).unwrap();
    let mut modes = Vec::new();
    let value = reg
        .write(|tx| {
            let held: Vec<String> = tx
                .query(
                    "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() \
                     AND relation = 'counters'::regclass ORDER BY mode",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            modes.push(held.join(","));
            if modes.len() <= crate::pg::RUN_ALONE_AFTER as usize {
                tx.batch_execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'lost to a concurrent commit' \
                     USING ERRCODE = '40001'; END $$",
                )?;
            }
            Ok(modes.len())
        })
        .unwrap();
    assert_eq!(value, crate::pg::RUN_ALONE_AFTER as usize + 1);
    let (before, alone) = modes.split_at(crate::pg::RUN_ALONE_AFTER as usize);
    assert!(before.iter().all(|m| m == "RowShareLock"), "{modes:?}");
    assert_eq!(alone, ["ExclusiveLock"], "{modes:?}");
    // A conflict that never ends still ends, as an error, after MAX_ATTEMPTS.
    let mut attempts = 0;
    let err = reg
        .write(|tx| {
            attempts += 1;
            tx.batch_execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40001'; END $$")?;
            Ok(())
        })
        .unwrap_err();
    assert!(crate::pg::is_conflict(&err), "{err}");
    assert_eq!(attempts, crate::pg::MAX_ATTEMPTS);
}
