//! A card key recorded on an intent before the card can hold a signed record
//! (schema version 2): attached once, never changed; kept by a spoiled
//! intent, whose revocation id then goes on the revocation list; the
//! issued/revoked invariants unchanged.
#![cfg(test)]

mod common;

use citycard_registry::{
    CardState, Intent, RegistryError, RevocationReason, SPOILED_AFTER_SIGNING,
};
use common::*;
use rstest::rstest;

fn actions(f: &AnyFixture) -> Vec<String> {
    f.reg
        .audit_log()
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// A registry and the two card keys the test attaches: `key` (the card's)
/// and `other` (another card's), each with its revocation id.
struct Keys {
    f: AnyFixture,
    key: [u8; 33],
    rid: [u8; 8],
    other: [u8; 33],
    other_rid: [u8; 8],
}

impl Keys {
    fn on(backend: Backend) -> Self {
        let (key, rid) = card_key(1);
        let (other, other_rid) = card_key(2);
        Self {
            f: fixture_on(backend),
            key,
            rid,
            other,
            other_rid,
        }
    }

    /// Begins an intent for `number` and `resident`.
    fn begin(&mut self, number: &str, resident: &str) -> Intent {
        let attrs = attributes(NAME);
        self.f
            .reg
            .begin_intent(&issuance(number, resident, &attrs))
            .unwrap()
    }

    /// The raw statement that sets `other` (and its revocation id) on the
    /// row of `number`.
    fn set_other_key_sql(&self, number: &str) -> String {
        format!(
            "UPDATE cards SET card_key = x'{}', revocation_id = x'{}' WHERE card_number = '{number}'",
            hex::encode(self.other),
            hex::encode(self.other_rid)
        )
    }
}

/// An attached key is checked like a commit (a real point, its own
/// revocation id); once attached, the intent's row and the open intent
/// carry it, and it finds the card.
fn key_checked_like_a_commit_then_recorded(k: &mut Keys, a: &Intent) {
    let (key, rid) = (k.key, k.rid);
    assert!(matches!(
        k.f.reg.attach_card_key(a.id, &key, &k.other_rid, "op-1"),
        Err(RegistryError::InvalidInput {
            field: "revocation_id",
            ..
        })
    ));
    assert!(matches!(
        k.f.reg.attach_card_key(a.id, &[0u8; 33], &rid, "op-1"),
        Err(RegistryError::InvalidInput {
            field: "card_key",
            ..
        })
    ));
    k.f.reg.attach_card_key(a.id, &key, &rid, "op-1").unwrap();
    let rec = k.f.reg.card("LG-1").unwrap().unwrap();
    assert_eq!(rec.state, CardState::Intent);
    assert_eq!(rec.card_key, Some(key));
    assert_eq!(rec.revocation_id, Some(rid));
    assert_eq!(k.f.reg.open_intents().unwrap()[0].card_key, Some(key));
    assert_eq!(
        k.f.reg.card_with_key(&key).unwrap().as_deref(),
        Some("LG-1")
    );
}

/// The same key again changes nothing (and writes no second entry);
/// another key is refused.
fn same_key_again_changes_nothing_another_is_refused(k: &mut Keys, a: &Intent) {
    let (key, rid, other, other_rid) = (k.key, k.rid, k.other, k.other_rid);
    k.f.reg.attach_card_key(a.id, &key, &rid, "op-1").unwrap();
    assert_eq!(actions(&k.f), ["intent", "card-key"]);
    assert!(matches!(
        k.f.reg.attach_card_key(a.id, &other, &other_rid, "op-1"),
        Err(RegistryError::CardKeyMismatch { card_number }) if card_number == "LG-1"
    ));
}

/// The database refuses to replace or remove the intent's key; committing
/// another card for the intent is refused and the intent stays open.
fn key_never_changed_in_the_database_nor_by_a_commit(k: &mut Keys, a: &Intent, conn: &mut RawConn) {
    let err = conn.exec(&k.set_other_key_sql("LG-1")).unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
    let err = conn
        .exec("UPDATE cards SET card_key = NULL, revocation_id = NULL WHERE card_number = 'LG-1'")
        .unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
    assert!(matches!(
        k.f.reg.commit_issued(a.id, &k.other, &k.other_rid, "op-1"),
        Err(RegistryError::CardKeyMismatch { .. })
    ));
    assert_eq!(
        k.f.reg.card("LG-1").unwrap().unwrap().state,
        CardState::Intent
    );
}

/// A key recorded for intent `a` cannot be attached to (or committed for)
/// intent `b`; it commits for `a`.
fn key_belongs_to_its_intent_only(k: &mut Keys, a: &Intent, b: &Intent) {
    let (key, rid) = (k.key, k.rid);
    assert!(matches!(
        k.f.reg.attach_card_key(b.id, &key, &rid, "op-1"),
        Err(RegistryError::CardKeyTaken { card_number }) if card_number == "LG-1"
    ));
    assert!(matches!(
        k.f.reg.commit_issued(b.id, &key, &rid, "op-1"),
        Err(RegistryError::CardKeyTaken { card_number }) if card_number == "LG-1"
    ));
    k.f.reg.commit_issued(a.id, &key, &rid, "op-1").unwrap();
    let rec = k.f.reg.card("LG-1").unwrap().unwrap();
    assert_eq!(rec.state, CardState::Issued);
    assert_eq!(rec.card_key, Some(key));
    assert_eq!(actions(&k.f), ["intent", "card-key", "intent", "issued"]);
}

/// No key is attached to an issued card (`a`) nor to a closed intent (`b`,
/// spoiled); the database refuses a key on a spoiled row that had none.
fn no_key_on_an_issued_card_or_a_closed_intent(
    k: &mut Keys,
    a: &Intent,
    b: &Intent,
    conn: &mut RawConn,
) {
    let (key, rid, other, other_rid) = (k.key, k.rid, k.other, k.other_rid);
    assert!(matches!(
        k.f.reg.attach_card_key(a.id, &key, &rid, "op-1"),
        Err(RegistryError::IntentNotOpen { .. })
    ));
    k.f.reg.mark_spoiled(b.id, "torn", "op-1").unwrap();
    assert!(matches!(
        k.f.reg.attach_card_key(b.id, &other, &other_rid, "op-1"),
        Err(RegistryError::IntentNotOpen { .. })
    ));
    let err = conn.exec(&k.set_other_key_sql("LG-2")).unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
}

/// The database refuses a key without its revocation id (or the reverse),
/// even on an intent.
fn no_key_without_its_revocation_id(k: &mut Keys, conn: &mut RawConn) {
    let c = k.begin("LG-3", "r-3");
    for sql in [
        format!(
            "UPDATE cards SET card_key = x'{}' WHERE intent_id = {}",
            hex::encode(k.other),
            c.id
        ),
        format!(
            "UPDATE cards SET revocation_id = x'{}' WHERE intent_id = {}",
            hex::encode(k.other_rid),
            c.id
        ),
    ] {
        let err = conn.exec(&sql).unwrap_err();
        assert!(err.to_string().contains("CHECK"), "{sql}: {err}");
    }
}

#[rstest]
fn a_key_is_attached_to_an_intent_once_and_never_changed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut k = Keys::on(backend);
    let a = k.begin("LG-1", "r-1");
    assert_eq!(a.card_key, None);
    key_checked_like_a_commit_then_recorded(&mut k, &a);
    same_key_again_changes_nothing_another_is_refused(&mut k, &a);
    let mut conn = k.f.raw();
    key_never_changed_in_the_database_nor_by_a_commit(&mut k, &a, &mut conn);
    let b = k.begin("LG-2", "r-2");
    key_belongs_to_its_intent_only(&mut k, &a, &b);
    no_key_on_an_issued_card_or_a_closed_intent(&mut k, &a, &b, &mut conn);
    no_key_without_its_revocation_id(&mut k, &mut conn);
}

#[rstest]
fn a_spoiled_intent_with_a_key_lands_in_the_revocation_list(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    // A revoked card, an issued one, a card spoiled before signing, one after.
    let revoked = issue(&mut *f.reg, "r-1", 1);
    f.reg
        .revoke(&revoked, RevocationReason::Lost, "op-1")
        .unwrap();
    issue(&mut *f.reg, "r-2", 2);
    let before = f
        .reg
        .begin_intent(&issuance("LG-10", "r-3", &attrs))
        .unwrap();
    assert!(!f
        .reg
        .mark_spoiled(before.id, "card-removed", "op-1")
        .unwrap());
    let after = f
        .reg
        .begin_intent(&issuance("LG-11", "r-3", &attrs))
        .unwrap();
    let (key, rid) = card_key(11);
    f.reg.attach_card_key(after.id, &key, &rid, "op-1").unwrap();
    assert!(f.reg.revocation_ids().unwrap().len() == 1, "not while open");
    assert!(f
        .reg
        .mark_spoiled(after.id, "open-at-restart", "op-1")
        .unwrap());

    // The spoiled row keeps its key; its revocation id is listed after the
    // revoked cards'.
    let rec = f.reg.card("LG-11").unwrap().unwrap();
    assert_eq!(
        rec.state,
        CardState::Spoiled {
            reason: "open-at-restart".into()
        }
    );
    assert_eq!((rec.card_key, rec.revocation_id), (Some(key), Some(rid)));
    assert_eq!(f.reg.card("LG-10").unwrap().unwrap().revocation_id, None);
    let revoked_rid = card_key(1).1;
    assert_eq!(f.reg.revocation_ids().unwrap(), [revoked_rid, rid]);
    // Still spoiled, not revoked: `revoked()` and the counts are unchanged,
    // and the card cannot be revoked (it was never issued).
    assert_eq!(f.reg.revoked().unwrap().len(), 1);
    let counts = f.reg.counts().unwrap();
    assert_eq!((counts.issued, counts.spoiled, counts.revoked), (2, 2, 1));
    assert!(matches!(
        f.reg.revoke("LG-11", RevocationReason::Lost, "op-1"),
        Err(RegistryError::CardNotIssued { .. })
    ));
    // Its key is taken for good.
    assert_eq!(f.reg.card_with_key(&key).unwrap().as_deref(), Some("LG-11"));
    let next = f
        .reg
        .begin_intent(&issuance("LG-12", "r-3", &attrs))
        .unwrap();
    assert!(matches!(
        f.reg.commit_issued(next.id, &key, &rid, "op-1"),
        Err(RegistryError::CardKeyTaken { card_number }) if card_number == "LG-11"
    ));
    // The audit log says why the id is listed.
    let log = f.reg.audit_log().unwrap();
    let spoiled: Vec<_> = log
        .iter()
        .filter(|e| e.card_number.as_deref() == Some("LG-11"))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        spoiled,
        [
            "intent",
            "card-key",
            "spoiled:open-at-restart",
            SPOILED_AFTER_SIGNING
        ]
    );
    assert!(!log
        .iter()
        .any(|e| e.card_number.as_deref() == Some("LG-10") && e.action == SPOILED_AFTER_SIGNING));
    // Nobody else can write these entries.
    for action in ["card-key", SPOILED_AFTER_SIGNING] {
        assert!(matches!(
            f.reg.record_action("issuer", None, action),
            Err(RegistryError::InvalidInput {
                field: "action",
                ..
            })
        ));
    }
}

#[rstest]
fn issued_and_revoked_rows_still_need_a_key(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let number = issue(&mut *f.reg, "r-1", 1);
    let mut conn = f.raw();
    for state in ["issued", "revoked"] {
        let err = conn
            .exec(&format!(
                "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
                 state, revoke_reason, revoked_at, created_at) VALUES \
                 ('LG-900', 'r-9', 'desk-1', '2026-03-01', '2031-02-28', '{state}', \
                  CASE '{state}' WHEN 'revoked' THEN 'lost' END, \
                  CASE '{state}' WHEN 'revoked' THEN 1 END, 0)"
            ))
            .unwrap_err();
        assert!(err.to_string().contains("CHECK"), "{state}: {err}");
    }
    // An issued card's key never changes or goes away.
    let (other, other_rid) = card_key(2);
    for sql in [
        format!("UPDATE cards SET card_key = NULL, revocation_id = NULL WHERE card_number = '{number}'"),
        format!(
            "UPDATE cards SET card_key = x'{}', revocation_id = x'{}' WHERE card_number = '{number}'",
            hex::encode(other),
            hex::encode(other_rid)
        ),
    ] {
        let err = conn.exec(&sql).unwrap_err();
        assert!(
            err.to_string().contains("disallowed change"),
            "{sql}: {err}"
        );
    }
    // Committing an intent without an attached key works as before.
    let rec = f.reg.card(&number).unwrap().unwrap();
    assert_eq!(rec.state, CardState::Issued);
    assert_eq!(rec.card_key, Some(card_key(1).0));
    f.reg
        .revoke(&number, RevocationReason::Stolen, "op-1")
        .unwrap();
    let err = conn
        .exec(&format!(
            "UPDATE cards SET card_key = NULL, revocation_id = NULL WHERE card_number = '{number}'"
        ))
        .unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
    assert_eq!(f.reg.revocation_ids().unwrap(), [card_key(1).1]);
}
