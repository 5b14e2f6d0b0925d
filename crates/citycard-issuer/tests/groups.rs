//! Cards of eight linkability groups (SPEC §5.3): the registry records every
//! group's card key and revocation id as soon as the card gives them, a
//! revoked card goes on each group's list with that group's id only (no two
//! lists share an id, so partners of different groups cannot link it), a
//! reader of group 3 says revoked with group 3's bundle, and a card torn
//! after ACTIVATE and put back is reconciled by all eight keys.
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
use citycard_registry::{CardState, RevocationReason};
use citycard_transport::{CardChannel, MemoryTransport};
use p256::PublicKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type Card = Applet<MemoryStorage, ChaCha20Rng>;
type Ch = CardChannel<Pull<MemoryTransport<Card>>>;

const GROUPS: u8 = 8;

fn resident(id: &str) -> Resident {
    let mut f = BTreeMap::new();
    f.insert("resident_id".to_string(), id.to_string());
    f.insert("name".to_string(), "Alex Moreau".to_string());
    f.insert("address".to_string(), "Rue Léopold 12".to_string());
    validate(&f).unwrap()
}

/// A city whose home issues eight groups per card.
fn city_of_eight() -> City {
    let mut c = city();
    c.home.set_groups(GROUPS).unwrap();
    assert_eq!(c.home.config().groups, GROUPS);
    c
}

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

/// Every group key of the card, as a new station session reads them.
fn group_keys(c: &City, ch: &mut Ch) -> Vec<PublicKey> {
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
        .unwrap()
}

fn granted() -> AttributeSet {
    [AttributeId::CARD_NUMBER, AttributeId::RESIDENT]
        .into_iter()
        .collect()
}

fn now() -> u64 {
    u64::try_from(today().days_since_epoch()).unwrap() * 86_400 + 3_600
}

/// What a partner of `group` reads on the card with its group's bundle.
fn verdict(c: &City, name: &str, group: u8, ch: &mut Ch) -> Verdict {
    let (cert, key) = c
        .home
        .enrol_partner(name, granted(), group, 365, &secrets(), today())
        .unwrap();
    let credential = PartnerCredential::new(cert, key).unwrap();
    let bundle = c.home.export_trust_for(group, &secrets(), now()).unwrap();
    assert_eq!(bundle.body().group, group);
    let trust = Trust::new(bundle, credential).unwrap();
    let policy = Policy::at(now())
        .with_today(today())
        .with_requested(granted());
    citycard_reader::verify(ch, &trust, &policy, &mut ChaCha20Rng::from_seed([6; 32]))
}

#[test]
fn a_card_of_eight_groups_is_recorded_and_revoked_in_each_group_with_that_groups_id() {
    let c = city_of_eight();
    let mut ch = new_card(&c, 1);
    issue(&c, &mut ch, &resident("G-1")).unwrap();
    let keys = group_keys(&c, &mut ch);
    assert_eq!(keys.len(), usize::from(GROUPS));
    let ids: Vec<[u8; 8]> = keys.iter().map(revocation_id).collect();

    // The registry holds all eight keys: group 0's in the card record, the
    // others by group.
    let mut reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert_eq!(record.state, CardState::Issued);
    assert_eq!(record.card_key, Some(crypto::encode_point(&keys[0])));
    assert_eq!(record.revocation_id, Some(ids[0]));
    let others: Vec<[u8; 33]> = keys[1..].iter().map(crypto::encode_point).collect();
    assert_eq!(reg.group_keys(record.intent_id).unwrap(), others);

    // A second card, not revoked, so each list is not just "every card".
    let mut other = new_card(&c, 2);
    issue(&c, &mut other, &resident("G-2")).unwrap();
    let other_ids: Vec<[u8; 8]> = group_keys(&c, &mut other)
        .iter()
        .map(revocation_id)
        .collect();

    // Before revocation a group-3 reader says genuine.
    assert!(matches!(
        verdict(&c, "museum", 3, &mut ch),
        Verdict::Genuine(_)
    ));

    reg.revoke("LG-000001", RevocationReason::Lost, "test")
        .unwrap();
    drop(reg);

    let list_0 = c.home.publish_for(0, 7, &secrets(), now()).unwrap();
    let list_3 = c.home.publish_for(3, 7, &secrets(), now()).unwrap();
    let list_0 = list_0.body().revocations.body().clone();
    let list_3 = list_3.body().revocations.body().clone();
    assert_eq!(list_0.group, 0);
    assert_eq!(list_3.group, 3);
    assert_eq!(list_0.revoked, vec![ids[0]]);
    assert_eq!(list_3.revoked, vec![ids[3]]);
    assert!(
        list_0.revoked.iter().all(|id| !list_3.revoked.contains(id)),
        "two groups' lists share no id"
    );
    for (g, id) in ids.iter().enumerate() {
        assert_eq!(
            list_0.revoked.contains(id),
            g == 0,
            "group {g} id in list 0"
        );
        assert_eq!(
            list_3.revoked.contains(id),
            g == 3,
            "group {g} id in list 3"
        );
    }
    assert!(other_ids
        .iter()
        .all(|id| !list_0.revoked.contains(id) && !list_3.revoked.contains(id)));
    // Every group's list (as the registry gives it) holds exactly its id.
    let reg = c.home.registry().unwrap();
    for g in 0..GROUPS {
        assert_eq!(
            reg.revocation_ids_for(g, today()).unwrap(),
            vec![ids[usize::from(g)]],
            "group {g}"
        );
    }
    drop(reg);

    // The group-3 reader, with group 3's bundle, says revoked; the other
    // card still reads genuine.
    assert!(
        matches!(verdict(&c, "library", 3, &mut ch), Verdict::Revoked),
        "a group-3 reader must see the card revoked"
    );
    assert!(matches!(
        verdict(&c, "pool", 3, &mut other),
        Verdict::Genuine(_)
    ));
    // The stored group-3 list is the one just published.
    let stored = c.home.current_revocations_for(3).unwrap().unwrap();
    assert_eq!(stored.body().revoked, vec![ids[3]]);
}

#[test]
fn a_card_of_eight_groups_torn_after_activate_and_put_back_is_committed() {
    let c = city_of_eight();
    let mut ch = new_card(&c, 3);
    ch.transport_mut().armed = Some(ins::ACTIVATE);
    let err = issue(&c, &mut ch, &resident("G-3")).unwrap_err();
    assert!(matches!(err, IssueError::CardLost { .. }), "{err:?}");
    ch.reset().unwrap();
    assert_eq!(personalise::inspect(&mut ch).unwrap(), LifeCycle::Issued);
    let keys = group_keys(&c, &mut ch);
    assert_eq!(keys.len(), usize::from(GROUPS));
    let reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert_eq!(record.state, CardState::Intent);
    let others: Vec<[u8; 33]> = keys[1..].iter().map(crypto::encode_point).collect();
    assert_eq!(reg.group_keys(record.intent_id).unwrap(), others);
    drop(reg);

    let mut reg = c.home.registry().unwrap();
    let rec = issue::reconcile(
        &c.home,
        &mut reg,
        &c.station,
        Some(&mut ch),
        "test",
        &mut ChaCha20Rng::from_seed([4; 32]),
    )
    .unwrap();
    assert_eq!(rec.committed, ["LG-000001"]);
    assert!(rec.spoiled.is_empty() && rec.listed.is_empty());
    assert_eq!(
        reg.card("LG-000001").unwrap().unwrap().state,
        CardState::Issued
    );
    // The group keys survive the commit.
    assert_eq!(reg.group_keys(record.intent_id).unwrap(), others);
}

#[test]
fn nine_groups_are_refused_before_any_intent() {
    let mut c = city();
    assert!(c.home.set_groups(9).is_err());
    assert!(c.home.set_groups(0).is_err());
    assert_eq!(c.home.config().groups, 1);
    assert!(c.home.publish_for(8, 7, &secrets(), now()).is_err());
}
