//! The revocation ids a signed list carries: per linkability group, as of a
//! date, without cards that can no longer be valid.
#![cfg(test)]

mod common;

use citycard_proto::revocation::REVOCATION_GRACE_DAYS;
use citycard_registry::{NewIssuance, RevocationReason};
use common::*;
use rstest::rstest;

/// Issues a card valid from `issued_on` to `expires_on`.
fn issue_dated(
    f: &mut AnyFixture,
    resident: &str,
    seed: u64,
    expires_on: citycard_proto::date::Date,
) -> String {
    let attrs = attributes(NAME);
    let number = f.reg.next_card_number("LG").unwrap();
    let intent = f
        .reg
        .begin_intent(&NewIssuance {
            expires_on,
            ..issuance(&number, resident, &attrs)
        })
        .unwrap();
    let (key, rid) = card_key(seed);
    f.reg.commit_issued(intent.id, &key, &rid, "op-1").unwrap();
    number
}

#[rstest]
fn a_revoked_card_leaves_the_list_after_its_validity_and_the_grace(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let expires = date(2027, 6, 30);
    let short = issue_dated(&mut f, "r-1", 1, expires);
    let long = issue_dated(&mut f, "r-2", 2, date(2031, 2, 28));
    f.reg
        .revoke(&short, RevocationReason::Lost, "op-1")
        .unwrap();
    f.reg
        .revoke(&long, RevocationReason::Stolen, "op-1")
        .unwrap();
    let (short_id, long_id) = (card_key(1).1, card_key(2).1);
    let mut both = vec![short_id, long_id];
    both.sort_unstable();

    // While valid, and through the last grace day: listed.
    assert_eq!(f.reg.revocation_ids_for(0, date(2026, 6, 1)).unwrap(), both);
    let last_listed = expires.add_days(REVOCATION_GRACE_DAYS);
    assert_eq!(f.reg.revocation_ids_for(0, last_listed).unwrap(), both);
    // The day after: pruned.
    assert_eq!(
        f.reg
            .revocation_ids_for(0, last_listed.add_days(1))
            .unwrap(),
        vec![long_id]
    );
    // Groups other than 0 have no cards yet; a group past 7 is refused.
    assert!(f
        .reg
        .revocation_ids_for(1, date(2026, 6, 1))
        .unwrap()
        .is_empty());
    assert!(f.reg.revocation_ids_for(8, date(2026, 6, 1)).is_err());
}

#[rstest]
fn a_spoiled_intents_key_leaves_the_list_once_its_card_could_not_be_valid(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    let expires = date(2028, 1, 31);
    let intent = f
        .reg
        .begin_intent(&NewIssuance {
            expires_on: expires,
            ..issuance("LG-50", "r-9", &attrs)
        })
        .unwrap();
    let (key, rid) = card_key(50);
    f.reg
        .attach_card_key(intent.id, &key, &rid, "op-1")
        .unwrap();
    assert!(f
        .reg
        .mark_spoiled(intent.id, "open-at-restart", "op-1")
        .unwrap());

    let last_listed = expires.add_days(REVOCATION_GRACE_DAYS);
    assert_eq!(
        f.reg.revocation_ids_for(0, date(2026, 3, 2)).unwrap(),
        vec![rid]
    );
    assert_eq!(f.reg.revocation_ids_for(0, last_listed).unwrap(), vec![rid]);
    assert!(f
        .reg
        .revocation_ids_for(0, last_listed.add_days(1))
        .unwrap()
        .is_empty());
}
