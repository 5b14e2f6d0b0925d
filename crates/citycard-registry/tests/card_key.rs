//! A card key recorded on an intent before the card can hold a signed record
//! (schema version 2): attached once, never changed; kept by a spoiled
//! intent, whose revocation id then goes on the revocation list; the
//! issued/revoked invariants unchanged.
#![cfg(test)]

mod common;

use citycard_registry::{CardState, RegistryError, RevocationReason, SPOILED_AFTER_SIGNING};
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

#[rstest]
fn a_key_is_attached_to_an_intent_once_and_never_changed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let mut f = fixture_on(backend);
    let attrs = attributes(NAME);
    let a = f
        .reg
        .begin_intent(&issuance("LG-1", "r-1", &attrs))
        .unwrap();
    assert_eq!(a.card_key, None);
    let (key, rid) = card_key(1);
    let (other, other_rid) = card_key(2);
    // Checked like a commit: a real point, its own revocation id.
    assert!(matches!(
        f.reg.attach_card_key(a.id, &key, &other_rid, "op-1"),
        Err(RegistryError::InvalidInput {
            field: "revocation_id",
            ..
        })
    ));
    assert!(matches!(
        f.reg.attach_card_key(a.id, &[0u8; 33], &rid, "op-1"),
        Err(RegistryError::InvalidInput {
            field: "card_key",
            ..
        })
    ));
    f.reg.attach_card_key(a.id, &key, &rid, "op-1").unwrap();
    let rec = f.reg.card("LG-1").unwrap().unwrap();
    assert_eq!(rec.state, CardState::Intent);
    assert_eq!(rec.card_key, Some(key));
    assert_eq!(rec.revocation_id, Some(rid));
    assert_eq!(f.reg.open_intents().unwrap()[0].card_key, Some(key));
    assert_eq!(f.reg.card_with_key(&key).unwrap().as_deref(), Some("LG-1"));
    // The same key again changes nothing (and writes no second entry) ...
    f.reg.attach_card_key(a.id, &key, &rid, "op-1").unwrap();
    assert_eq!(actions(&f), ["intent", "card-key"]);
    // ... another key is refused, through the API and in the database.
    assert!(matches!(
        f.reg.attach_card_key(a.id, &other, &other_rid, "op-1"),
        Err(RegistryError::CardKeyMismatch { card_number }) if card_number == "LG-1"
    ));
    let mut conn = f.raw();
    let err = conn
        .exec(&format!(
            "UPDATE cards SET card_key = x'{}', revocation_id = x'{}' WHERE card_number = 'LG-1'",
            hex::encode(other),
            hex::encode(other_rid)
        ))
        .unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
    let err = conn
        .exec("UPDATE cards SET card_key = NULL, revocation_id = NULL WHERE card_number = 'LG-1'")
        .unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
    // Committing another card for this intent is refused; the recorded one commits.
    assert!(matches!(
        f.reg.commit_issued(a.id, &other, &other_rid, "op-1"),
        Err(RegistryError::CardKeyMismatch { .. })
    ));
    assert_eq!(
        f.reg.card("LG-1").unwrap().unwrap().state,
        CardState::Intent
    );
    // A key recorded for one intent cannot be attached to (or committed for) another.
    let b = f
        .reg
        .begin_intent(&issuance("LG-2", "r-2", &attrs))
        .unwrap();
    assert!(matches!(
        f.reg.attach_card_key(b.id, &key, &rid, "op-1"),
        Err(RegistryError::CardKeyTaken { card_number }) if card_number == "LG-1"
    ));
    assert!(matches!(
        f.reg.commit_issued(b.id, &key, &rid, "op-1"),
        Err(RegistryError::CardKeyTaken { card_number }) if card_number == "LG-1"
    ));
    f.reg.commit_issued(a.id, &key, &rid, "op-1").unwrap();
    let rec = f.reg.card("LG-1").unwrap().unwrap();
    assert_eq!(rec.state, CardState::Issued);
    assert_eq!(rec.card_key, Some(key));
    assert_eq!(actions(&f), ["intent", "card-key", "intent", "issued"]);
    // Not on an issued card, nor on a closed intent.
    assert!(matches!(
        f.reg.attach_card_key(a.id, &key, &rid, "op-1"),
        Err(RegistryError::IntentNotOpen { .. })
    ));
    f.reg.mark_spoiled(b.id, "torn", "op-1").unwrap();
    assert!(matches!(
        f.reg.attach_card_key(b.id, &other, &other_rid, "op-1"),
        Err(RegistryError::IntentNotOpen { .. })
    ));
    // The database refuses a key on a spoiled row that had none.
    let err = conn
        .exec(&format!(
            "UPDATE cards SET card_key = x'{}', revocation_id = x'{}' WHERE card_number = 'LG-2'",
            hex::encode(other),
            hex::encode(other_rid)
        ))
        .unwrap_err();
    assert!(err.to_string().contains("disallowed change"), "{err}");
    // And a key without its revocation id (or the reverse), even on an intent.
    let c = f
        .reg
        .begin_intent(&issuance("LG-3", "r-3", &attrs))
        .unwrap();
    for sql in [
        format!(
            "UPDATE cards SET card_key = x'{}' WHERE intent_id = {}",
            hex::encode(other),
            c.id
        ),
        format!(
            "UPDATE cards SET revocation_id = x'{}' WHERE intent_id = {}",
            hex::encode(other_rid),
            c.id
        ),
    ] {
        let err = conn.exec(&sql).unwrap_err();
        assert!(err.to_string().contains("CHECK"), "{sql}: {err}");
    }
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
