//! A card's keys of every linkability group (SPEC §5.3), on both backends:
//! recorded together on the open intent, never changed, kept on commit and
//! spoiling, and each group's revocation list carries only that group's ids.
#![cfg(test)]

mod common;

use citycard_registry::{RegistryError, RevocationReason, MAX_GROUP_KEYS};
use common::*;
use rstest::rstest;

/// Eight real keys (group g from seed `base + g`) and their revocation ids.
fn eight(base: u64) -> (Vec<[u8; 33]>, Vec<[u8; 8]>) {
    (0..8).map(|g| card_key(base + g)).unzip()
}

fn as_of() -> citycard_proto::date::Date {
    date(2027, 1, 1)
}

#[rstest]
fn every_group_key_is_recorded_once_and_listed_in_its_group_only(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    let (keys, ids) = eight(100);
    let a = f
        .reg
        .begin_intent(&issuance("LG-1", "r-1", &attrs))
        .unwrap();
    // Bad input refused: no key, too many, not a point.
    for bad in [Vec::new(), vec![keys[0]; MAX_GROUP_KEYS + 1]] {
        assert!(matches!(
            f.reg.attach_group_keys(a.id, &bad, "op-1"),
            Err(RegistryError::InvalidInput { .. })
        ));
    }
    let mut not_a_point = keys.clone();
    not_a_point[5] = [0u8; 33];
    assert!(matches!(
        f.reg.attach_group_keys(a.id, &not_a_point, "op-1"),
        Err(RegistryError::InvalidInput { .. })
    ));
    assert!(f.reg.group_keys(a.id).unwrap().is_empty());

    f.reg.attach_group_keys(a.id, &keys, "op-1").unwrap();
    let rec = f.reg.card("LG-1").unwrap().unwrap();
    assert_eq!(rec.card_key, Some(keys[0]));
    assert_eq!(rec.revocation_id, Some(ids[0]));
    assert_eq!(f.reg.group_keys(a.id).unwrap(), keys[1..].to_vec());
    // The same keys again change nothing; any other key set is refused.
    f.reg.attach_group_keys(a.id, &keys, "op-1").unwrap();
    let mut changed = keys.clone();
    changed[5] = card_key(999).0;
    assert!(matches!(
        f.reg.attach_group_keys(a.id, &changed, "op-1"),
        Err(RegistryError::CardKeyMismatch { .. })
    ));
    assert!(matches!(
        f.reg.attach_group_keys(a.id, &keys[..4], "op-1"),
        Err(RegistryError::CardKeyMismatch { .. })
    ));
    assert_eq!(f.reg.group_keys(a.id).unwrap(), keys[1..].to_vec());

    // Another card may not reuse any group's key, in any group.
    let b = f
        .reg
        .begin_intent(&issuance("LG-2", "r-2", &attrs))
        .unwrap();
    let (mut b_keys, b_ids) = eight(200);
    b_keys[2] = keys[6];
    assert!(matches!(
        f.reg.attach_group_keys(b.id, &b_keys, "op-1"),
        Err(RegistryError::CardKeyTaken { .. })
    ));
    assert!(f.reg.group_keys(b.id).unwrap().is_empty());
    assert_eq!(f.reg.card("LG-2").unwrap().unwrap().card_key, None);
    let (b_keys, _) = eight(200);
    f.reg.attach_group_keys(b.id, &b_keys, "op-1").unwrap();

    // Commit keeps them; revoke A; spoil B (lost after signing): both on
    // every group's list, each with that group's id.
    f.reg
        .commit_issued(a.id, &keys[0], &ids[0], "op-1")
        .unwrap();
    assert_eq!(f.reg.group_keys(a.id).unwrap(), keys[1..].to_vec());
    for g in 0..8u8 {
        assert!(f.reg.revocation_ids_for(g, as_of()).unwrap().is_empty());
    }
    f.reg
        .revoke("LG-1", RevocationReason::Lost, "op-1")
        .unwrap();
    assert!(f.reg.mark_spoiled(b.id, "card-lost", "op-1").unwrap());
    let mut seen = std::collections::BTreeSet::new();
    for g in 0..8usize {
        let mut want = vec![ids[g], b_ids[g]];
        want.sort();
        let list = f.reg.revocation_ids_for(g as u8, as_of()).unwrap();
        assert_eq!(list, want, "group {g}");
        for id in list {
            assert!(seen.insert(id), "group {g} shares an id with another group");
        }
    }
    // Past the grace period every group's list is pruned alike.
    for g in 0..8u8 {
        assert!(f
            .reg
            .revocation_ids_for(g, date(2040, 1, 1))
            .unwrap()
            .is_empty());
    }
}

#[test]
fn sqlite_group_keys_are_never_changed_or_deleted() {
    let mut f = fixture_on(Backend::Sqlite);
    let attrs = attributes(NAME);
    let a = f
        .reg
        .begin_intent(&issuance("LG-1", "r-1", &attrs))
        .unwrap();
    let (keys, _) = eight(300);
    f.reg.attach_group_keys(a.id, &keys, "op-1").unwrap();
    let conn = raw(std::path::Path::new(&f.location));
    for sql in [
        "UPDATE card_group_keys SET group_id = 7 WHERE group_id = 1",
        "UPDATE card_group_keys SET card_key = zeroblob(33)",
        "DELETE FROM card_group_keys",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("never"), "{sql}: {err}");
    }
    // The table checks refuse a group outside 1-7 and a short key.
    for sql in [
        "INSERT INTO card_group_keys VALUES (1, 0, zeroblob(33), zeroblob(8))",
        "INSERT INTO card_group_keys VALUES (1, 8, randomblob(33), randomblob(8))",
        "INSERT INTO card_group_keys VALUES (1, 3, randomblob(32), randomblob(8))",
    ] {
        assert!(conn.execute(sql, []).is_err(), "{sql}");
    }
    assert_eq!(f.reg.group_keys(a.id).unwrap(), keys[1..].to_vec());
}
