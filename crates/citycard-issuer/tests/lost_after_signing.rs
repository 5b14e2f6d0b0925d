//! Applet cards lost after the station signed for them: the card key is
//! recorded in the intent right after station authentication, so a card
//! pulled after ACTIVATE (complete and genuine, but never committed) that
//! does not come back — another card is reconciled instead — ends spoiled
//! *and revoked in practice*: its revocation id is in the next published
//! list, and the reader library says `Revoked`. The same card put back is
//! committed (its key matches the recorded one) and stays valid.
#![cfg(test)]

mod common;
use common::{city, secrets, today, City, Pull};

use std::collections::BTreeMap;

use citycard_card::{Applet, MemoryStorage};
use citycard_issuer::issue::{self, IssueError};
use citycard_issuer::personalise::{self, PreparationTrust, Station};
use citycard_issuer::resident::{validate, Resident};
use citycard_proto::consts::ins;
use citycard_proto::revocation::revocation_id;
use citycard_proto::{attr::AttributeId, attr::AttributeSet, consts::LifeCycle, crypto};
use citycard_reader::{PartnerCredential, Policy, Trust, Verdict};
use citycard_registry::{CardState, SPOILED_AFTER_SIGNING};
use citycard_transport::{CardChannel, MemoryTransport};
use p256::PublicKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = Applet<MemoryStorage, ChaCha20Rng>;
type Ch = CardChannel<Pull<MemoryTransport<Card>>>;

fn resident(id: &str) -> Resident {
    let mut f = BTreeMap::new();
    f.insert("resident_id".to_string(), id.to_string());
    f.insert("name".to_string(), "Alex Moreau".to_string());
    f.insert("address".to_string(), "Rue Léopold 12".to_string());
    validate(&f).unwrap()
}

/// A card fresh from the city's preparation facility.
fn new_card(c: &City, seed: u8) -> Ch {
    let mut ch = CardChannel::new(Pull {
        inner: MemoryTransport::new(Applet::new(
            MemoryStorage::new(),
            ChaCha20Rng::from_seed([seed; 32]),
        )),
        armed: None,
        pulled: false,
    });
    c.prepare(&mut ch);
    ch
}

fn issue(c: &City, ch: &mut Ch, r: &Resident) -> Result<issue::Issued, IssueError> {
    let mut reg = c.home.registry().unwrap();
    issue::issue_one(
        &c.home,
        &c.station,
        &mut reg,
        ch,
        &citycard_issuer::IssueRequest {
            resident: r,
            actor: "test",
            batch: None,
            replaces: None,
            today: today(),
        },
        &mut ChaCha20Rng::from_seed([9; 32]),
    )
}

fn reconcile(c: &City, ch: &mut Ch) -> issue::Reconciled {
    let mut reg = c.home.registry().unwrap();
    issue::reconcile(
        &c.home,
        &mut reg,
        &c.station,
        Some(ch),
        "test",
        &mut ChaCha20Rng::from_seed([4; 32]),
    )
    .unwrap()
}

/// The card's group-0 key, as a new station session reads it.
fn identify(c: &City, ch: &mut Ch) -> Option<PublicKey> {
    let root = c.home.root_public_key().unwrap();
    let preparers = c.home.preparer_certificates().unwrap();
    let sign = |m: &[u8]| c.station.signer.sign(m);
    let station = Station {
        certificate: &c.station.certificate,
        sign: &sign,
    };
    let trust = PreparationTrust {
        root: &root,
        preparers: &preparers,
    };
    personalise::identify(ch, &trust, &station, &mut ChaCha20Rng::from_seed([5; 32]))
        .unwrap()
        .map(|keys| keys[0])
}

fn granted() -> AttributeSet {
    [AttributeId::CARD_NUMBER, AttributeId::RESIDENT]
        .into_iter()
        .collect()
}

/// A partner of the city, as a reader library user.
fn partner(c: &City) -> PartnerCredential {
    let (cert, reader_key) = c
        .home
        .enrol_partner("transit", granted(), 0, 365, &secrets(), today())
        .unwrap();
    PartnerCredential::new(cert, reader_key).unwrap()
}

/// What the partner's reader says about the card, with a trust bundle exported now.
fn verdict(c: &City, credential: &PartnerCredential, ch: &mut Ch) -> Verdict {
    let granted = granted();
    let credential = credential.clone();
    let now = u64::try_from(today().days_since_epoch()).unwrap() * 86_400 + 3_600;
    let bundle = c.home.export_trust(&secrets(), now).unwrap();
    let trust = Trust::new(bundle, credential).unwrap();
    let policy = Policy::at(now).with_today(today()).with_requested(granted);
    citycard_reader::verify(ch, &trust, &policy, &mut ChaCha20Rng::from_seed([6; 32]))
}

fn publish(c: &City) -> citycard_proto::revocation::RevocationList {
    c.home
        .publish_revocations(7, &secrets(), 1_800_000_000)
        .unwrap()
}

/// Issues `LG-000001` on a card that is pulled right after it executed
/// ACTIVATE: the card is complete, the intent open with the key recorded.
fn lost_after_activate(c: &City, seed: u8) -> Ch {
    let mut ch = new_card(c, seed);
    ch.transport_mut().armed = Some(ins::ACTIVATE);
    let err = issue(c, &mut ch, &resident("F-1")).unwrap_err();
    match &err {
        IssueError::CardLost { card_number, .. } => assert_eq!(card_number, "LG-000001"),
        other => panic!("{other:?}"),
    }
    ch.reset().unwrap();
    assert_eq!(personalise::inspect(&mut ch).unwrap(), LifeCycle::Issued);
    let reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert_eq!(record.state, CardState::Intent);
    let key = identify(c, &mut ch).unwrap();
    assert_eq!(record.card_key, Some(crypto::encode_point(&key)));
    assert_eq!(record.revocation_id, Some(revocation_id(&key)));
    ch
}

#[test]
fn a_card_lost_after_activate_then_another_card_is_revoked_by_the_next_list() {
    let c = city();
    let transit = partner(&c);
    let mut torn = lost_after_activate(&c, 1);
    let torn_key = identify(&c, &mut torn).unwrap();
    // Before anything is published the card reads as genuine: the hole this closes.
    assert!(
        matches!(verdict(&c, &transit, &mut torn), Verdict::Genuine(_)),
        "the torn card is complete"
    );

    // The operator puts another card in the reader: the intent is spoiled ...
    let mut other = new_card(&c, 2);
    let rec = reconcile(&c, &mut other);
    assert_eq!(rec.spoiled, ["LG-000001"]);
    assert_eq!(rec.listed, ["LG-000001"]);
    assert!(rec.committed.is_empty());
    let reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert!(matches!(record.state, CardState::Spoiled { .. }));
    assert_eq!(record.card_key, Some(crypto::encode_point(&torn_key)));
    assert!(reg.audit_log().unwrap().iter().any(
        |e| e.action == SPOILED_AFTER_SIGNING && e.card_number.as_deref() == Some("LG-000001")
    ));
    drop(reg);

    // ... and the next list revokes the torn card.
    let list = publish(&c);
    assert!(list.is_revoked(&revocation_id(&torn_key)));
    assert_eq!(list.body().revoked.len(), 1);
    assert!(
        matches!(verdict(&c, &transit, &mut torn), Verdict::Revoked),
        "the torn card must read as revoked"
    );
    // The resident gets a card on the other one; it is not revoked.
    issue(&c, &mut other, &resident("F-1")).unwrap();
    assert!(matches!(
        verdict(&c, &transit, &mut other),
        Verdict::Genuine(_)
    ));
}

#[test]
fn a_card_lost_after_activate_and_put_back_is_committed_and_not_revoked() {
    let c = city();
    let transit = partner(&c);
    let mut torn = lost_after_activate(&c, 3);
    let rec = reconcile(&c, &mut torn);
    assert_eq!(rec.committed, ["LG-000001"]);
    assert!(rec.spoiled.is_empty() && rec.listed.is_empty());
    let reg = c.home.registry().unwrap();
    assert_eq!(
        reg.card("LG-000001").unwrap().unwrap().state,
        CardState::Issued
    );
    drop(reg);
    let list = publish(&c);
    assert!(list.body().revoked.is_empty());
    assert!(matches!(
        verdict(&c, &transit, &mut torn),
        Verdict::Genuine(_)
    ));
}

/// Pulled right after PUT DATA of the signed record: the record never got
/// to ACTIVATE (the card drops staged data on reset), but the station had
/// signed it and the key was recorded, so the spoiled intent is listed all
/// the same — harmless for a key that no card holds any more.
#[test]
fn a_card_lost_after_the_record_was_sent_is_listed_when_spoiled() {
    let c = city();
    let mut ch = new_card(&c, 4);
    ch.transport_mut().armed = Some(ins::PUT_DATA);
    let err = issue(&c, &mut ch, &resident("F-1")).unwrap_err();
    assert!(matches!(err, IssueError::CardLost { .. }), "{err:?}");
    let key = c
        .home
        .registry()
        .unwrap()
        .card("LG-000001")
        .unwrap()
        .unwrap()
        .revocation_id
        .expect("key recorded before PUT DATA");
    ch.reset().unwrap();
    assert_eq!(personalise::inspect(&mut ch).unwrap(), LifeCycle::Prepared);
    let rec = reconcile(&c, &mut ch);
    assert_eq!(rec.listed, ["LG-000001"]);
    assert!(publish(&c).is_revoked(&key));
}

/// Lost before the station authenticated (no key known): spoiled, nothing to list.
#[test]
fn a_card_lost_before_the_key_was_known_is_spoiled_without_listing() {
    let c = city();
    let mut ch = new_card(&c, 5);
    ch.transport_mut().armed = Some(ins::GET_CHALLENGE);
    let err = issue(&c, &mut ch, &resident("F-1")).unwrap_err();
    assert!(matches!(err, IssueError::CardLost { .. }), "{err:?}");
    let rec = reconcile(&c, &mut new_card(&c, 6));
    assert_eq!(rec.spoiled, ["LG-000001"]);
    assert!(rec.listed.is_empty());
    let reg = c.home.registry().unwrap();
    assert_eq!(reg.card("LG-000001").unwrap().unwrap().card_key, None);
    drop(reg);
    assert!(publish(&c).body().revoked.is_empty());
}

/// A home configured (by hand) for more linkability groups than a card can
/// have is refused before any intent or card write.
#[test]
fn more_groups_than_a_card_has_are_refused() {
    let c = city();
    let path = c.home.dir().join("issuer.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["groups"] = serde_json::json!(9);
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    let home = citycard_issuer::IssuerHome::open(c.home.dir()).unwrap();
    assert_eq!(home.config().groups, 9);
    let mut ch = new_card(&c, 7);
    let mut reg = home.registry().unwrap();
    let err = issue::issue_one(
        &home,
        &c.station,
        &mut reg,
        &mut ch,
        &citycard_issuer::IssueRequest {
            resident: &resident("F-9"),
            actor: "test",
            batch: None,
            replaces: None,
            today: today(),
        },
        &mut ChaCha20Rng::from_seed([9; 32]),
    )
    .unwrap_err();
    assert!(matches!(err, IssueError::Issuer(_)), "{err:?}");
    assert!(
        reg.card("LG-000001").unwrap().is_none(),
        "no intent written"
    );
    assert_eq!(personalise::inspect(&mut ch).unwrap(), LifeCycle::Prepared);
}
