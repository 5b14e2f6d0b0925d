//! PIV-profile issuance against the emulated PIV card (crate
//! `citycard-piv-card`) over the in-memory transport: the whole flow with a
//! real issuer home and registry, the management-key rules, proof of
//! possession, cards pulled mid-way and reconciliation, revocation.
//!
//! Long on purpose: the PIV issuance flow and each of its refusals and
//! reconciliations share one city and card fixture.
#![cfg(test)]

mod common;
use common::{city, secrets, today, City, Pull};

use std::collections::BTreeMap;

use citycard_card::MemoryStorage;
use citycard_issuer::issue::IssueError;
use citycard_issuer::personalise::{ManagementKeyRefusal, PersonaliseError, PossessionFailure};
use citycard_issuer::piv::{self, PivOptions};
use citycard_issuer::resident::{validate, Resident};
use citycard_issuer::IssuerError;
use citycard_keys::{ManagementKey, SoftManagementKey};
use citycard_piv_card::PivCard;
use citycard_proto::piv::{
    CardAuthenticationCertificate, ManagementAlgorithm, OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
    SLOT_CARD_AUTHENTICATION,
};
use citycard_proto::revocation::revocation_id;
use citycard_proto::{apdu::Command, attr::AttributeId, attr::AttributeSet, sw::StatusWord};
use citycard_registry::{CardState, IssuanceRegistry, RevocationReason};
use citycard_transport::{CardChannel, CardTransport, MemoryTransport};
use p256::PublicKey;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

type Card = PivCard<MemoryStorage, ChaCha20Rng>;
type Ch = CardChannel<Pull<MemoryTransport<Card>>>;

const CITY_KEY: [u8; 24] = [
    0x3A, 0x91, 0x5C, 0x07, 0xE2, 0x44, 0x1B, 0x68, 0x9F, 0x10, 0xD3, 0x7E, 0x25, 0xB6, 0x81, 0x4C,
    0x0D, 0xF9, 0x62, 0xA7, 0x33, 0xC8, 0x5E, 0x14,
];

fn resident(id: &str, birth: &str) -> Resident {
    let mut f = BTreeMap::new();
    f.insert("resident_id".to_string(), id.to_string());
    f.insert("name".to_string(), "Alex Moreau".to_string());
    f.insert("address".to_string(), "Rue Léopold 12".to_string());
    f.insert("birth_date".to_string(), birth.to_string());
    validate(&f).unwrap()
}

fn new_card(seed: u8) -> Ch {
    let card = PivCard::new(MemoryStorage::new(), ChaCha20Rng::from_seed([seed; 32]));
    CardChannel::new(Pull {
        inner: MemoryTransport::new(card),
        armed: None,
        pulled: false,
    })
}

fn city_key() -> SoftManagementKey {
    SoftManagementKey::new(ManagementAlgorithm::TripleDes, &CITY_KEY, "test").unwrap()
}

fn default_key() -> SoftManagementKey {
    SoftManagementKey::factory_default(ManagementAlgorithm::TripleDes)
}

fn ok(ch: &mut Ch, cmd: &Command) -> Vec<u8> {
    let r = ch.exchange(cmd).unwrap();
    assert_eq!(r.sw, StatusWord::Success, "{cmd:?}");
    r.data
}

/// SELECT, then mutual authentication with `key` (the host's witness
/// `challenge`), as the peer tools do before a write.
fn authenticate(ch: &mut Ch, key: &dyn ManagementKey, challenge: &[u8]) {
    let alg = key.algorithm();
    ok(ch, &citycard_proto::piv::select_command());
    let data = ok(ch, &citycard_proto::piv::management_witness_request(alg));
    let w = citycard_proto::piv::parse_management_witness(&data, alg).unwrap();
    let plain = key.decrypt_block(&w).unwrap();
    ok(
        ch,
        &citycard_proto::piv::management_response_command(alg, &plain, challenge),
    );
}

/// Mutual authentication, then the Yubico SET MANAGEMENT KEY command: what
/// `yubico-piv-tool -a set-mgm-key` does.
fn set_management_key(ch: &mut Ch, old: &dyn ManagementKey, new_alg: u8, new: &[u8]) {
    authenticate(ch, old, &vec![7; old.algorithm().block_len()]);
    let mut data = vec![new_alg, 0x9B, new.len() as u8];
    data.extend_from_slice(new);
    ok(ch, &Command::new(0x00, 0xFF, 0xFF, 0xFF).with_data(data));
}

/// A card as the city receives it after preparing it: the city's key set.
fn prepared_card(seed: u8) -> Ch {
    let mut ch = new_card(seed);
    set_management_key(&mut ch, &default_key(), 0x03, &CITY_KEY);
    ch
}

fn options(key: &dyn ManagementKey) -> PivOptions<'_> {
    PivOptions {
        management_key: key,
        allow_default_management_key: false,
        card_key: None,
    }
}

fn issue(
    c: &City,
    ch: &mut Ch,
    r: &Resident,
    opts: &PivOptions<'_>,
) -> Result<piv::PivIssued, IssueError> {
    let mut reg = c.home.registry().unwrap();
    issue_on(c, &mut reg, ch, r, None, opts, 9)
}

/// `piv::issue_one` by actor `test` on `today()` with the issuer's random
/// generator seeded with `seed`.
fn issue_on<T: CardTransport>(
    c: &City,
    reg: &mut dyn IssuanceRegistry,
    ch: &mut CardChannel<T>,
    r: &Resident,
    replaces: Option<RevocationReason>,
    opts: &PivOptions<'_>,
    seed: u8,
) -> Result<piv::PivIssued, IssueError> {
    piv::issue_one(
        &c.home,
        &c.station,
        reg,
        ch,
        &citycard_issuer::IssueRequest {
            resident: r,
            actor: "test",
            batch: None,
            replaces,
            today: today(),
        },
        opts,
        &mut ChaCha20Rng::from_seed([seed; 32]),
    )
}

/// What a reader sees: the certificate in 5FC101, and a 9E signature.
fn card_certificate(ch: &mut Ch) -> Option<CardAuthenticationCertificate> {
    ok(ch, &citycard_proto::piv::select_command());
    let r = ch
        .exchange(&citycard_proto::piv::get_data_command(
            OBJECT_CARD_AUTHENTICATION_CERTIFICATE,
        ))
        .unwrap();
    if r.sw != StatusWord::Success {
        return None;
    }
    let content = citycard_proto::piv::parse_data_object(&r.data).unwrap();
    let der = citycard_proto::piv::parse_certificate_container(content).unwrap();
    Some(CardAuthenticationCertificate::decode(der).unwrap())
}

fn signs_with(ch: &mut Ch, key: &PublicKey) -> bool {
    let mut challenge = [0u8; 32];
    ChaCha20Rng::from_seed([3; 32]).fill_bytes(&mut challenge);
    let r = ch
        .exchange(&citycard_proto::piv::sign_command(
            SLOT_CARD_AUTHENTICATION,
            &challenge,
        ))
        .unwrap();
    r.sw == StatusWord::Success
        && citycard_proto::piv::parse_signature(&r.data)
            .and_then(|s| citycard_proto::piv::verify_challenge(key, &challenge, &s))
            .is_ok()
}

fn objects_on(ch: &Ch) -> Vec<u32> {
    ch.transport()
        .inner
        .card()
        .state()
        .unwrap()
        .object_tags()
        .collect()
}

fn key_slots(ch: &Ch) -> Vec<u8> {
    ch.transport()
        .inner
        .card()
        .state()
        .unwrap()
        .key_slots()
        .collect()
}

#[test]
fn a_prepared_card_is_issued_verifies_and_signs() {
    let c = city();
    let mut ch = prepared_card(1);
    let key = city_key();
    let r = resident("F-1", "1958-03-14");
    let issued = issue(&c, &mut ch, &r, &options(&key)).unwrap();
    assert_eq!(issued.issued.card_number, "LG-000001");
    assert!(issued.key_generated);
    // The resident's attributes are reported as not written.
    assert!(issued.not_on_card.contains(&AttributeId::NAME));
    assert!(issued.not_on_card.contains(&AttributeId::BIRTH_DATE));

    let cert = card_certificate(&mut ch).expect("a certificate in 5FC101");
    cert.verify(&c.station.certificate.body().public_key)
        .unwrap();
    let b = cert.body();
    assert_eq!(b.card_number, "LG-000001");
    assert_eq!(b.issuer_id, "LIEGE");
    assert_eq!(b.station_holder, "desk-1");
    assert_eq!(b.station, c.station.certificate.fingerprint());
    assert_eq!(b.valid_from, today());
    assert_eq!(b.valid_to, issued.issued.expires_on);
    assert!(signs_with(&mut ch, &b.card_key));
    // Nothing personal on the card: only the certificate object.
    assert_eq!(objects_on(&ch), [OBJECT_CARD_AUTHENTICATION_CERTIFICATE]);
    assert_eq!(key_slots(&ch), [SLOT_CARD_AUTHENTICATION]);
    let der = cert.as_bytes();
    for personal in ["Alex", "Moreau", "Léopold", "1958"] {
        assert!(
            !der.windows(personal.len())
                .any(|w| w == personal.as_bytes()),
            "{personal} on the card"
        );
    }

    // The registry has the 9E key as the card key.
    let reg = c.home.registry().unwrap();
    let rec = reg.card("LG-000001").unwrap().unwrap();
    assert_eq!(rec.state, CardState::Issued);
    assert_eq!(
        rec.card_key.unwrap(),
        citycard_proto::crypto::encode_point(&b.card_key)
    );
    assert_eq!(rec.revocation_id.unwrap(), cert.revocation_id());
}

#[test]
fn predicates_are_those_true_on_the_issue_date() {
    let c = city();
    let key = city_key();
    // 17 (18 tomorrow), 70, exactly 21 today, no birth date.
    let cases: [(&str, Option<&str>, &[AttributeId]); 4] = [
        ("A", Some("2008-11-28"), &[]),
        (
            "B",
            Some("1956-01-01"),
            &[
                AttributeId::AGE_OVER_18,
                AttributeId::AGE_OVER_21,
                AttributeId::AGE_OVER_65,
            ],
        ),
        (
            "C",
            Some("2005-11-27"),
            &[AttributeId::AGE_OVER_18, AttributeId::AGE_OVER_21],
        ),
        ("D", None, &[]),
    ];
    for (i, (id, birth, want)) in cases.iter().enumerate() {
        let mut ch = prepared_card(10 + i as u8);
        let r = match birth {
            Some(b) => resident(id, b),
            None => {
                let mut f = BTreeMap::new();
                f.insert("resident_id".to_string(), id.to_string());
                f.insert("name".to_string(), "N".to_string());
                f.insert("address".to_string(), "A".to_string());
                validate(&f).unwrap()
            }
        };
        let issued = issue(&c, &mut ch, &r, &options(&key)).unwrap();
        let want: AttributeSet = want.iter().copied().collect();
        assert_eq!(issued.predicates, want, "{id}");
        assert_eq!(
            card_certificate(&mut ch).unwrap().body().predicates,
            want,
            "{id}"
        );
    }
}

#[test]
fn the_factory_key_is_refused_unless_allowed() {
    let c = city();
    let r = resident("F-1", "1990-01-01");
    // 1. Configured key is the default: refused before the card is touched.
    let mut ch = new_card(2);
    let d = default_key();
    match issue(&c, &mut ch, &r, &options(&d)) {
        Err(IssueError::Issuer(IssuerError::DefaultManagementKey(_))) => {}
        other => panic!("{other:?}"),
    }
    // 2. City key configured, but the card still accepts the default.
    let key = city_key();
    let err = issue(&c, &mut ch, &r, &options(&key)).unwrap_err();
    match &err {
        IssueError::Refused(PersonaliseError::DefaultManagementKey(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("set-mgm-key"), "{err}");
    assert!(objects_on(&ch).is_empty() && key_slots(&ch).is_empty());
    let reg = c.home.registry().unwrap();
    assert_eq!(
        reg.counts().unwrap(),
        Default::default(),
        "no intent written"
    );
    drop(reg);
    // 3. With the flag, a test card with the factory key is issued.
    let allowed = PivOptions {
        management_key: &d,
        allow_default_management_key: true,
        card_key: None,
    };
    let issued = issue(&c, &mut ch, &r, &allowed).unwrap();
    assert_eq!(issued.issued.card_number, "LG-000001");
    assert!(card_certificate(&mut ch).is_some());
}

#[test]
fn aes192_factory_keys_are_probed_too() {
    // YubiKey 5.7+: the same bytes as an AES-192 key.
    let c = city();
    let mut ch = new_card(3);
    set_management_key(
        &mut ch,
        &default_key(),
        0x0A,
        &citycard_proto::piv::DEFAULT_MANAGEMENT_KEY,
    );
    let key = city_key();
    match issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)) {
        Err(IssueError::Refused(PersonaliseError::DefaultManagementKey(
            ManagementAlgorithm::Aes192,
        ))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wrong_management_key_writes_nothing() {
    let c = city();
    let mut ch = prepared_card(4);
    let wrong =
        SoftManagementKey::new(ManagementAlgorithm::TripleDes, &[0x77; 24], "wrong").unwrap();
    let err = issue(
        &c,
        &mut ch,
        &resident("F-1", "1990-01-01"),
        &options(&wrong),
    )
    .unwrap_err();
    match &err {
        IssueError::Refused(PersonaliseError::ManagementKeyRefused(
            ManagementKeyRefusal::Refused { sw, .. },
        )) => assert_ne!(*sw, citycard_proto::sw::StatusWord::Success),
        other => panic!("{other:?}"),
    }
    // Wrong algorithm for the card's key (AES-192 on a 3DES card).
    let aes = SoftManagementKey::new(ManagementAlgorithm::Aes192, &CITY_KEY, "aes").unwrap();
    assert!(matches!(
        issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&aes)),
        Err(IssueError::Refused(PersonaliseError::ManagementKeyRefused(
            _
        )))
    ));
    assert!(objects_on(&ch).is_empty() && key_slots(&ch).is_empty());
    let reg = c.home.registry().unwrap();
    assert_eq!(reg.counts().unwrap(), Default::default());
    assert!(reg.card("LG-000001").unwrap().is_none());
}

#[test]
fn a_card_without_p256_is_refused() {
    // A card that is not PIV at all (the citycard applet answers 6A82).
    let c = city();
    let key = city_key();
    let mut ch = CardChannel::new(MemoryTransport::new(citycard_card::Applet::new(
        MemoryStorage::new(),
        ChaCha20Rng::from_seed([5; 32]),
    )));
    let mut reg = c.home.registry().unwrap();
    let err = issue_on(
        &c,
        &mut reg,
        &mut ch,
        &resident("F-1", "1990-01-01"),
        None,
        &options(&key),
        1,
    )
    .unwrap_err();
    assert!(
        matches!(err, IssueError::Refused(PersonaliseError::NotPiv(_))),
        "{err:?}"
    );
}

/// Generates a key in 9E with the city key, as yubico-piv-tool would, and
/// returns its public key.
fn generate_elsewhere(ch: &mut Ch) -> PublicKey {
    authenticate(ch, &city_key(), &[1; 8]);
    let data = ok(
        ch,
        &citycard_proto::piv::generate_command(SLOT_CARD_AUTHENTICATION),
    );
    citycard_proto::piv::parse_generated_public_key(&data).unwrap()
}

#[test]
fn a_supplied_card_key_is_used_only_if_the_card_proves_it() {
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(6);
    let on_card = generate_elsewhere(&mut ch);
    // The wrong public key: refused, nothing signed or written.
    let other = citycard_proto::crypto::generate(&mut ChaCha20Rng::from_seed([8; 32])).public_key();
    let wrong = PivOptions {
        card_key: Some(other),
        ..options(&key)
    };
    let err = issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &wrong).unwrap_err();
    assert!(
        matches!(err, IssueError::Refused(PersonaliseError::Possession(_))),
        "{err:?}"
    );
    assert!(objects_on(&ch).is_empty());
    assert_eq!(
        c.home.registry().unwrap().counts().unwrap(),
        Default::default()
    );
    // The right one: issued with that key, not a new one.
    let right = PivOptions {
        card_key: Some(on_card),
        ..options(&key)
    };
    let issued = issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &right).unwrap();
    assert!(!issued.key_generated);
    let cert = card_certificate(&mut ch).unwrap();
    assert_eq!(cert.body().card_key, on_card);
    assert!(signs_with(&mut ch, &on_card));
    // The same key is never certified twice, even after a revocation.
    c.home
        .registry()
        .unwrap()
        .revoke("LG-000001", RevocationReason::Lost, "test")
        .unwrap();
    match issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &right) {
        Err(IssueError::Refused(PersonaliseError::Possession(PossessionFailure::KeyInUse(
            number,
        )))) => assert_eq!(number, "LG-000001"),
        other => panic!("{other:?}"),
    }
    // A PEM as yubico-piv-tool prints it parses to the same key.
    use p256::pkcs8::EncodePublicKey as _;
    let pem = on_card
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    assert_eq!(piv::parse_public_key_pem(&pem).unwrap(), on_card);
    assert!(piv::parse_public_key_pem(
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    .is_err());
}

#[test]
fn a_live_card_is_not_overwritten_but_a_revoked_one_is_reused() {
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(7);
    issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)).unwrap();
    let err = issue(&c, &mut ch, &resident("F-2", "1990-01-01"), &options(&key)).unwrap_err();
    assert!(
        matches!(err, IssueError::Refused(PersonaliseError::CardOccupied(_))),
        "{err:?}"
    );
    assert_eq!(
        card_certificate(&mut ch).unwrap().body().card_number,
        "LG-000001"
    );
    // Replacing F-1's damaged card with the same physical card: allowed.
    let mut reg = c.home.registry().unwrap();
    let issued = issue_on(
        &c,
        &mut reg,
        &mut ch,
        &resident("F-1", "1990-01-01"),
        Some(RevocationReason::Damaged),
        &options(&key),
        2,
    )
    .unwrap();
    assert_eq!(issued.issued.card_number, "LG-000002");
    assert!(matches!(
        reg.card("LG-000001").unwrap().unwrap().state,
        CardState::Revoked { .. }
    ));
    drop(reg);
    // Revoked F-1 card now on the card? No: LG-000002 is live. Revoke it; then
    // the card can go to F-2.
    c.home
        .registry()
        .unwrap()
        .revoke("LG-000002", RevocationReason::Withdrawn, "test")
        .unwrap();
    let issued = issue(&c, &mut ch, &resident("F-2", "1990-01-01"), &options(&key)).unwrap();
    assert_eq!(issued.issued.card_number, "LG-000003");
}

fn reconcile(c: &City, ch: &mut Ch) -> citycard_issuer::issue::Reconciled {
    let mut reg = c.home.registry().unwrap();
    piv::reconcile(
        &c.home,
        &mut reg,
        Some(ch),
        "test",
        &mut ChaCha20Rng::from_seed([4; 32]),
    )
    .unwrap()
}

#[test]
fn a_card_pulled_after_generate_is_spoiled_and_can_be_issued_again() {
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(8);
    ch.transport_mut().armed = Some(0x47); // GENERATE
    let err = issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)).unwrap_err();
    match &err {
        IssueError::CardLost { card_number, .. } => assert_eq!(card_number, "LG-000001"),
        other => panic!("{other:?}"),
    }
    // The card has a new 9E key but no certificate; the intent is open.
    assert_eq!(key_slots(&ch), [SLOT_CARD_AUTHENTICATION]);
    assert!(objects_on(&ch).is_empty());
    assert_eq!(c.home.registry().unwrap().counts().unwrap().open_intents, 1);
    // Back in the reader: reconciled as spoiled.
    ch.reset().unwrap();
    let rec = reconcile(&c, &mut ch);
    assert_eq!(rec.spoiled, ["LG-000001"]);
    assert!(rec.committed.is_empty());
    // The host never saw the generated key: nothing was recorded, nothing to revoke.
    assert!(rec.listed.is_empty());
    let reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert!(matches!(record.state, CardState::Spoiled { .. }));
    assert_eq!(record.card_key, None);
    assert!(reg.revocation_ids().unwrap().is_empty());
    drop(reg);
    // The same card is issued on the next try.
    let issued = issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)).unwrap();
    assert_eq!(issued.issued.card_number, "LG-000002");
}

#[test]
fn a_card_pulled_after_put_data_is_committed_on_reconcile() {
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(9);
    ch.transport_mut().armed = Some(0xDB); // the last segment of PUT DATA
    let err = issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)).unwrap_err();
    assert!(matches!(err, IssueError::CardLost { .. }), "{err:?}");
    assert_eq!(objects_on(&ch), [OBJECT_CARD_AUTHENTICATION_CERTIFICATE]);
    assert_eq!(c.home.registry().unwrap().counts().unwrap().open_intents, 1);
    // The key was recorded in the intent before PUT DATA.
    ch.reset().unwrap();
    let cert = card_certificate(&mut ch).unwrap();
    let intent = c.home.registry().unwrap().open_intents().unwrap();
    assert_eq!(
        intent[0].card_key,
        Some(citycard_proto::crypto::encode_point(&cert.body().card_key))
    );
    // Another card in the reader would spoil it; the same card commits it.
    let rec = reconcile(&c, &mut ch);
    assert_eq!(rec.committed, ["LG-000001"]);
    assert!(rec.spoiled.is_empty() && rec.listed.is_empty());
    let reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert_eq!(record.state, CardState::Issued);
    assert_eq!(record.revocation_id.unwrap(), cert.revocation_id());
    drop(reg);
    // Committed, not revoked.
    let list = c
        .home
        .publish_revocations(7, &secrets(), 1_800_000_000)
        .unwrap();
    assert!(list.body().revoked.is_empty());
}

/// The card is lost right after PUT DATA 5FC101 (it holds a complete,
/// station-signed certificate) and the operator reconciles with another
/// card: the intent is spoiled, but its 9E key was recorded before PUT DATA,
/// so the next list revokes the lost card and a partner's reader says so.
/// The card itself can be issued again later (GENERATE replaces the key).
#[test]
fn a_card_lost_after_put_data_then_another_card_is_revoked_by_the_next_list() {
    use citycard_reader::{PartnerCredential, Policy, Trust, Verdict};
    let c = city();
    let key = city_key();
    let granted: AttributeSet = [AttributeId::CARD_NUMBER, AttributeId::RESIDENT]
        .into_iter()
        .collect();
    let (cert, reader_key) = c
        .home
        .enrol_partner("transit", granted, 0, 365, &secrets(), today())
        .unwrap();
    let credential = PartnerCredential::new(cert, reader_key).unwrap();
    let now = u64::try_from(today().days_since_epoch()).unwrap() * 86_400 + 3_600;
    let verdict = |c: &City, ch: &mut Ch| {
        let bundle = c.home.export_trust(&secrets(), now).unwrap();
        let trust = Trust::new(bundle, credential.clone()).unwrap();
        let policy = Policy::at(now).with_today(today()).with_requested(granted);
        citycard_reader::verify(ch, &trust, &policy, &mut ChaCha20Rng::from_seed([6; 32]))
    };

    let mut torn = prepared_card(21);
    torn.transport_mut().armed = Some(0xDB);
    let err = issue(
        &c,
        &mut torn,
        &resident("F-1", "1990-01-01"),
        &options(&key),
    )
    .unwrap_err();
    assert!(matches!(err, IssueError::CardLost { .. }), "{err:?}");
    torn.reset().unwrap();
    let torn_cert = card_certificate(&mut torn).unwrap();
    assert_eq!(torn_cert.body().card_number, "LG-000001");
    assert!(
        matches!(verdict(&c, &mut torn), Verdict::Genuine(_)),
        "the lost card is complete"
    );

    let mut other = prepared_card(22);
    let rec = reconcile(&c, &mut other);
    assert_eq!(rec.spoiled, ["LG-000001"]);
    assert_eq!(rec.listed, ["LG-000001"]);
    let reg = c.home.registry().unwrap();
    let record = reg.card("LG-000001").unwrap().unwrap();
    assert!(matches!(record.state, CardState::Spoiled { .. }));
    assert_eq!(record.revocation_id, Some(torn_cert.revocation_id()));
    drop(reg);

    let list = c.home.publish_revocations(7, &secrets(), now).unwrap();
    assert!(list.is_revoked(&torn_cert.revocation_id()));
    assert_eq!(list.body().revoked.len(), 1);
    assert!(
        matches!(verdict(&c, &mut torn), Verdict::Revoked),
        "the lost card must read as revoked"
    );

    // The resident's card is issued on the other card, and the lost one can
    // be issued again with a new key: neither is revoked.
    issue(
        &c,
        &mut other,
        &resident("F-1", "1990-01-01"),
        &options(&key),
    )
    .unwrap();
    assert!(matches!(verdict(&c, &mut other), Verdict::Genuine(_)));
    let again = issue(
        &c,
        &mut torn,
        &resident("F-2", "1990-01-01"),
        &options(&key),
    )
    .unwrap();
    assert_eq!(again.issued.card_number, "LG-000003");
    c.home.publish_revocations(7, &secrets(), now).unwrap();
    assert!(matches!(verdict(&c, &mut torn), Verdict::Genuine(_)));
}

#[test]
fn reconcile_spoils_an_intent_when_another_card_is_in_the_reader() {
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(11);
    ch.transport_mut().armed = Some(0xDB);
    issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)).unwrap_err();
    let mut other = prepared_card(12);
    let rec = reconcile(&c, &mut other);
    assert_eq!(rec.spoiled, ["LG-000001"]);
}

#[test]
fn a_revoked_piv_card_is_in_the_published_revocation_list() {
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(13);
    issue(&c, &mut ch, &resident("F-1", "1990-01-01"), &options(&key)).unwrap();
    let card_key = card_certificate(&mut ch).unwrap().body().card_key;
    c.home
        .registry()
        .unwrap()
        .revoke("LG-000001", RevocationReason::Lost, "test")
        .unwrap();
    let list = c
        .home
        .publish_revocations(7, &secrets(), 1_800_000_000)
        .unwrap();
    assert!(list.is_revoked(&revocation_id(&card_key)));
    assert_eq!(list.body().revoked.len(), 1);
}

/// The citycard reader library, as a partner embeds it, accepts the issued
/// card (profile `piv`, the signed predicates, the card number), and says
/// `revoked` once the card is revoked and a new list is published.
#[test]
fn the_reader_library_verifies_the_issued_card_and_then_its_revocation() {
    use citycard_reader::{CardProfile, PartnerCredential, Policy, Trust, Verdict};
    let c = city();
    let key = city_key();
    let mut ch = prepared_card(14);
    let r = resident("F-1", "2005-01-01"); // 21 on the issue date, not 65
    issue(&c, &mut ch, &r, &options(&key)).unwrap();
    let granted: AttributeSet = [
        AttributeId::CARD_NUMBER,
        AttributeId::RESIDENT,
        AttributeId::AGE_OVER_21,
        AttributeId::AGE_OVER_65,
    ]
    .into_iter()
    .collect();
    let (cert, reader_key) = c
        .home
        .enrol_partner("transit", granted, 0, 365, &secrets(), today())
        .unwrap();
    let credential = PartnerCredential::new(cert, reader_key).unwrap();
    let now = u64::try_from(today().days_since_epoch()).unwrap() * 86_400 + 3_600;
    let verdict = |c: &City, ch: &mut Ch| {
        let bundle = c.home.export_trust(&secrets(), now).unwrap();
        let trust = Trust::new(bundle, credential.clone()).unwrap();
        let policy = Policy::at(now).with_today(today()).with_requested(granted);
        citycard_reader::verify(ch, &trust, &policy, &mut ChaCha20Rng::from_seed([6; 32]))
    };
    match verdict(&c, &mut ch) {
        Verdict::Genuine(g) => {
            assert_eq!(g.profile, CardProfile::Piv);
            assert_eq!(g.card_number.as_deref(), Some("LG-000001"));
            assert!(g
                .predicates
                .contains(&(AttributeId::AGE_OVER_21, Some(true))));
            assert!(g.predicates.contains(&(AttributeId::AGE_OVER_65, None)));
        }
        other => panic!("{other:?}"),
    }
    c.home
        .registry()
        .unwrap()
        .revoke("LG-000001", RevocationReason::Stolen, "test")
        .unwrap();
    c.home.publish_revocations(7, &secrets(), now).unwrap();
    assert!(
        matches!(verdict(&c, &mut ch), Verdict::Revoked),
        "not revoked"
    );
}
