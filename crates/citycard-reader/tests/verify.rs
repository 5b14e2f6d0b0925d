//! The reader procedure (SPEC §8) against real reference cards (`Applet` over
//! `MemoryTransport`, personalised with the testkit's scripted station) and
//! fake cards where a real one cannot misbehave as needed.
//!
//! Long on purpose: one test per verdict of SPEC §8, all over the same city
//! and card fixtures.
#![cfg(test)]

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use citycard_card::{Applet, Faults, MemoryStorage};
use citycard_proto::apdu::CommandView;
use citycard_proto::auth::{
    card_answer, AuthRequest, AuthorisedReader, CardData, CardGroup, RealAnswer,
};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::consts::{ins, AID};
use citycard_proto::record::{GroupRecord, RecordBody, StoredValue};
use citycard_proto::revocation::{RevocationId, TrustBundle};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard, crypto, tlv};
use citycard_reader::{
    verify, AttributeId, AttributeSet, CardChannel, CardTransport, Date, PartnerCredential, Policy,
    StalePolicy, Trust, Verdict,
};
use citycard_testkit::keys::{
    self, city, city_named, date, reader, test_key, trust_bundle, BundleSpec, TestCity,
};
use citycard_testkit::script::{personalise, sample_resident, Personalisation, Script};
use citycard_transport::{MemoryTransport, Traced, TransportError};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

type Card = Applet<MemoryStorage, ChaCha20Rng>;

/// 2026-11-26 12:00 UTC.
fn now() -> u64 {
    date(keys::TODAY).days_since_epoch() as u64 * 86_400 + 43_200
}

fn policy() -> Policy {
    Policy::at(now())
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([0x42; 32])
}

fn set(ids: &[AttributeId]) -> AttributeSet {
    ids.iter().copied().collect()
}

fn bundle_with(
    city: &TestCity,
    stations: Vec<Certificate>,
    revoked: Vec<RevocationId>,
    next_update: u64,
) -> TrustBundle {
    trust_bundle(
        city,
        BundleSpec {
            stations,
            revoked,
            ..BundleSpec::of(city, now() - 3_600, next_update)
        },
    )
}

fn bundle(city: &TestCity) -> TrustBundle {
    bundle_with(
        city,
        vec![city.station_certificate.clone()],
        vec![],
        now() + 86_400,
    )
}

fn credential(city: &TestCity, profile: &'static str) -> PartnerCredential {
    let r = reader(city, profile);
    PartnerCredential::new(r.certificate, r.key).unwrap()
}

/// The profile's trust: its credential and its group's bundle.
fn trust(city: &TestCity, profile: &'static str) -> Trust {
    let b = trust_bundle(
        city,
        BundleSpec::of(city, now() - 3_600, now() + 86_400).in_group(keys::group_of(profile)),
    );
    Trust::new(b, credential(city, profile)).unwrap()
}

/// A reference card personalised by `city` with the sample resident.
/// (Valid-from is the first day of `from`'s month, SPEC §5.3.) The card has
/// groups 0–2 (the test readers' groups); the record returned is group 0's.
fn issued_card(city: &TestCity, seed: u8, from: Date, to: Date) -> (Card, GroupRecord) {
    let mut card = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([seed; 32]));
    let mut rng = ChaCha20Rng::from_seed([seed ^ 0x55; 32]);
    let record = {
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        personalise(
            &mut s,
            Personalisation {
                city,
                station_ephemeral: test_key("station ephemeral"),
                rng: &mut rng,
                resident: sample_resident(),
                issue_date: from,
                valid_to: to,
                groups: 3,
                prepare: true,
            },
        )
        .unwrap()
        .records
        .swap_remove(0)
    };
    (card, record)
}

fn new_card(city: &TestCity, seed: u8) -> (Card, GroupRecord) {
    issued_card(city, seed, date((2026, 11, 20)), date((2031, 11, 19)))
}

fn channel<C: ContactlessCard>(card: C) -> CardChannel<Traced<MemoryTransport<C>>> {
    CardChannel::new(Traced::new(MemoryTransport::new(card)))
}

fn genuine(v: &Verdict) -> &citycard_reader::Genuine {
    v.genuine()
        .unwrap_or_else(|| panic!("expected genuine, got {v:?}"))
}

/// A card that answers with a closure.
struct Fake<F>(F);

impl<F: FnMut(&[u8]) -> Result<Vec<u8>, CardLost>> ContactlessCard for Fake<F> {
    fn atr(&self) -> Vec<u8> {
        citycard_proto::consts::atr().to_vec()
    }
    fn reset(&mut self) {}
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        (self.0)(command)
    }
}

fn fci(life_cycle: u8) -> Vec<u8> {
    let mut a5 = Vec::new();
    tlv::push(&mut a5, 0x80, &[citycard_proto::consts::PROTOCOL_VERSION]);
    tlv::push(&mut a5, 0x81, &[life_cycle]);
    let mut v = Vec::new();
    tlv::push(&mut v, 0x84, &AID);
    tlv::push(&mut v, 0xA5, &a5);
    let mut out = tlv::encode(0x6F, &v);
    out.extend_from_slice(&[0x90, 0x00]);
    out
}

/// A fake card with its own key that answers GENERAL AUTHENTICATE with
/// `card_answer` over the given raw record bytes (accepting any reader of
/// `reader_cert` without PSO).
fn protocol_card(
    card_key: p256::SecretKey,
    record: Vec<u8>,
    values: Vec<StoredValue>,
    reader_cert: &Certificate,
) -> impl ContactlessCard {
    let authorised = AuthorisedReader {
        public_key: reader_cert.body().public_key,
        grants: reader_cert.body().grants,
        domain: reader_cert.body().domain.unwrap(),
        group: reader_cert.body().group.unwrap(),
    };
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let mut pending: Vec<u8> = Vec::new();
    Fake(move |apdu: &[u8]| {
        let view = CommandView::parse(apdu).map_err(|_| CardLost)?;
        Ok(match view.ins {
            ins::SELECT => fci(0x07),
            ins::GENERAL_AUTHENTICATE => {
                let request = AuthRequest::decode(view.data).unwrap();
                let group = CardGroup {
                    card_key: &card_key,
                    record: &record,
                    seed: &FAKE_SEED,
                };
                let public = card_key.public_key();
                let answer = card_answer(
                    &mut citycard_proto::crypto::OpCount::default(),
                    view.data,
                    &request,
                    request.reader_point(),
                    &CardData {
                        group0: CardGroup {
                            card_key: &card_key,
                            record: &record,
                            seed: &FAKE_SEED,
                        },
                        group0_public: &public,
                        pseudonym_key: &[3; 16],
                        values: &values,
                    },
                    Some(RealAnswer {
                        reader: &authorised,
                        group,
                    }),
                    &mut rng,
                );
                let (first, rest) = answer.split_at(answer.len().min(256));
                pending = rest.to_vec();
                let mut out = first.to_vec();
                match pending.len() {
                    0 => out.extend_from_slice(&[0x90, 0x00]),
                    n => out.extend_from_slice(&[0x61, n.min(255) as u8]),
                }
                out
            }
            ins::GET_RESPONSE => {
                let mut out = std::mem::take(&mut pending);
                out.extend_from_slice(&[0x90, 0x00]);
                out
            }
            _ => vec![0x6D, 0x00],
        })
    })
}

/// The salt seed of the fake cards' records.
const FAKE_SEED: [u8; 16] = [0x5E; 16];

/// Values, signed body TLV and signature for a fake card's record of `group`.
fn fake_record(
    city: &TestCity,
    card_key: &p256::SecretKey,
    group: u8,
    from: Date,
    to: Date,
) -> (Vec<StoredValue>, Vec<u8>, [u8; 64]) {
    let values: Vec<StoredValue> = sample_resident()
        .into_iter()
        .map(|(id, v)| StoredValue::new(id, v).unwrap())
        .collect();
    let digests: Vec<_> = values.iter().map(|v| v.digest(&FAKE_SEED)).collect();
    let body = RecordBody::new(
        group,
        &city.station_certificate.fingerprint(),
        from,
        to,
        card_key.public_key(),
        &digests,
        &mut ChaCha20Rng::from_seed([8; 32]),
    )
    .unwrap();
    let tbs = body.to_be_signed().unwrap();
    let sig = crypto::sign(&city.station, &tbs);
    (values, tbs, sig)
}

fn encode_record(body_tlv: &[u8], sig: &[u8; 64]) -> Vec<u8> {
    let mut inner = body_tlv.to_vec();
    tlv::push(&mut inner, 0x5F37, sig);
    tlv::encode(0xE1, &inner)
}

// ---------------------------------------------------------------- genuine

#[test]
fn library_gets_exactly_pseudonym_and_resident() {
    let city = city();
    let (card, _) = new_card(&city, 1);
    let mut ch = channel(card);
    let v = verify(&mut ch, &trust(&city, "library"), &policy(), &mut rng());
    let g = genuine(&v);
    assert_eq!(g.attributes, vec![(AttributeId::RESIDENT, vec![1])]);
    assert!(g.pseudonym.is_some());
    assert!(g.predicates.is_empty());
    assert_eq!(g.card_number, None);
    assert_eq!(g.expires, date((2031, 11, 19)));
    assert_eq!(g.revocation_age_secs, 3_600);
    assert!(!g.revocation_stale);
    assert_eq!((v.code(), v.kind()), (0, "genuine"));

    let json = v.to_json();
    let attrs = json["attributes"].as_object().unwrap();
    assert_eq!(attrs.keys().collect::<Vec<_>>(), ["resident"]);
    assert_eq!(attrs["resident"], Value::Bool(true));
    assert_eq!(json["pseudonym"].as_str().unwrap().len(), 32);
    assert_eq!(json["schema_version"], 1);
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "schema_version",
            "verdict",
            "code",
            "attributes",
            "pseudonym",
            "revocation_age_secs",
            "revocation_stale",
            "profile"
        ])
    );
}

#[test]
fn transit_gets_age_over_65_only() {
    let city = city();
    let (card, _) = new_card(&city, 2);
    let mut ch = channel(card);
    let policy = policy().with_requested(set(&[AttributeId::AGE_OVER_65]));
    let v = verify(&mut ch, &trust(&city, "transit"), &policy, &mut rng());
    let g = genuine(&v);
    assert!(g.attributes.is_empty());
    assert_eq!(g.pseudonym, None);
    assert_eq!(g.predicates, vec![(AttributeId::AGE_OVER_65, Some(true))]);
    let json = v.to_json();
    assert_eq!(
        json["attributes"],
        serde_json::json!({ "age_over_65": true })
    );
    assert!(json.get("pseudonym").is_none());
}

#[test]
fn full_profile_discloses_verified_values_and_card_number() {
    let city = city();
    let (card, _) = new_card(&city, 3);
    let mut ch = channel(card);
    let v = verify(&mut ch, &trust(&city, "full"), &policy(), &mut rng());
    let g = genuine(&v);
    assert_eq!(g.card_number.as_deref(), Some("LG-2026-000042"));
    assert_eq!(
        g.attribute(AttributeId::NAME),
        Some("Alex Moreau".as_bytes())
    );
    assert_eq!(g.predicate(AttributeId::AGE_OVER_18), Some(true));
    let json = v.to_json();
    assert_eq!(json["attributes"]["birth_date"], "1958-03-14");
    assert_eq!(json["attributes"]["name"], "Alex Moreau");
    assert_eq!(json["attributes"]["card_number"], "LG-2026-000042");
    // Debug output never shows values.
    let debug = format!("{v:?}");
    assert!(
        !debug.contains("Alex") && !debug.contains("LG-2026"),
        "{debug}"
    );
}

#[test]
fn first_tap_sends_the_certificate_second_tap_uses_the_cache() {
    let city = city();
    let (card, _) = new_card(&city, 4);
    let trust = trust(&city, "library");
    let mut ch = channel(card);
    // First tap (SPEC §8 step 2): SELECT, GA → decoy (61xx, GET RESPONSE),
    // PSO, GA → 61xx, GET RESPONSE.
    assert!(verify(&mut ch, &trust, &policy(), &mut rng()).is_genuine());
    let first: Vec<u8> = ch
        .transport()
        .entries()
        .iter()
        .map(|e| e.command[1])
        .collect();
    assert_eq!(
        first,
        [
            ins::SELECT,
            ins::GENERAL_AUTHENTICATE,
            ins::GET_RESPONSE,
            ins::PSO,
            ins::GENERAL_AUTHENTICATE,
            ins::GET_RESPONSE
        ]
    );
    // The decoy looks like the answer: same status words, same lengths.
    let e = ch.transport().entries();
    assert_eq!(e[1].response.len(), e[4].response.len());
    assert_eq!(e[1].response[256..], e[4].response[256..]);
    assert_eq!(e[2].response.len(), e[5].response.len());
    assert_eq!(ch.transport().stats().apdus, 6);
    // Second tap: cache hit, 3 APDUs (SPEC §12).
    ch.transport_mut().clear();
    assert!(verify(&mut ch, &trust, &policy(), &mut rng()).is_genuine());
    assert_eq!(ch.transport().stats().apdus, 3);
    // always_send_certificate: PSO first, never a refused GA: 4 APDUs.
    ch.transport_mut().clear();
    let p = policy().with_always_send_certificate(true);
    assert!(verify(&mut ch, &trust, &p, &mut rng()).is_genuine());
    let cmds: Vec<u8> = ch
        .transport()
        .entries()
        .iter()
        .map(|e| e.command[1])
        .collect();
    assert_eq!(
        cmds,
        [
            ins::SELECT,
            ins::PSO,
            ins::GENERAL_AUTHENTICATE,
            ins::GET_RESPONSE
        ]
    );
}

#[test]
fn two_partners_get_unlinkable_outputs() {
    let city = city();
    let (card, _) = new_card(&city, 5);
    let mut ch = channel(card);
    let a = verify(&mut ch, &trust(&city, "library"), &policy(), &mut rng());
    let b = verify(&mut ch, &trust(&city, "full"), &policy(), &mut rng());
    let (ga, gb) = (genuine(&a), genuine(&b));
    assert_ne!(ga.pseudonym, gb.pseudonym);
    assert!(ga.pseudonym.is_some() && gb.pseudonym.is_some());
    // Stable per partner.
    let a2 = verify(&mut ch, &trust(&city, "library"), &policy(), &mut rng());
    assert_eq!(genuine(&a2).pseudonym, ga.pseudonym);

    fn strings(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                out.insert(s.clone());
            }
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let (mut sa, mut sb) = (BTreeSet::new(), BTreeSet::new());
    strings(&a.to_json(), &mut sa);
    strings(&b.to_json(), &mut sb);
    let shared: Vec<_> = sa.intersection(&sb).collect();
    // Only constants every card of the profile shares: the verdict and the profile.
    assert_eq!(shared, ["citycard", "genuine"], "shared values: {shared:?}");
    // No card-specific value in either: expiry, card key, revocation id.
    for json in [a.to_json(), b.to_json()] {
        let text = json.to_string();
        assert!(!text.contains("2031"), "{text}");
    }
}

// ---------------------------------------------------------------- refusals

#[test]
fn asking_beyond_the_grants_is_unauthorised_and_the_card_releases_nothing() {
    let city = city();
    let (card, _) = new_card(&city, 6);
    let mut ch = channel(card);
    let p = policy().with_requested(set(&[
        AttributeId::PSEUDONYM,
        AttributeId::RESIDENT,
        AttributeId::NAME,
        AttributeId::BIRTH_DATE,
    ]));
    let v = verify(&mut ch, &trust(&city, "library"), &p, &mut rng());
    assert_eq!(
        v,
        Verdict::Unauthorised {
            not_granted: set(&[AttributeId::NAME, AttributeId::BIRTH_DATE])
        }
    );
    assert_eq!(
        v.to_json()["not_granted"],
        serde_json::json!(["name", "birth_date"])
    );
    let entries = ch.transport().entries();
    // The over-broad request really reached the card, twice (before and after
    // PSO), and was answered with decoys of the answer's length…
    let gas: Vec<_> = entries
        .iter()
        .filter(|e| e.command[1] == ins::GENERAL_AUTHENTICATE)
        .collect();
    assert_eq!(gas.len(), 2);
    for ga in &gas {
        let req = AuthRequest::decode(&ga.command[5..ga.command.len() - 1]).unwrap();
        assert!(req.requested.contains(AttributeId::NAME));
        assert_eq!(ga.response.len(), 258);
        assert_eq!(ga.response[256], 0x61);
    }
    // …in which none of the resident's values appear, in clear or otherwise.
    let all: Vec<u8> = entries.iter().flat_map(|e| e.response.clone()).collect();
    // (Values of 1–2 bytes, `01` and "fr", match by chance anywhere.)
    for (id, value) in sample_resident().into_iter().filter(|(_, v)| v.len() >= 4) {
        assert!(
            !all.windows(value.len()).any(|w| w == value.as_slice()),
            "{id}"
        );
    }
}

#[test]
fn clone_is_detected() {
    let city = city();
    let (mut card, _) = new_card(&city, 7);
    card.set_faults(Faults { clone: true });
    let v = verify(
        &mut channel(card),
        &trust(&city, "library"),
        &policy(),
        &mut rng(),
    );
    assert_eq!(v, Verdict::Clone);
    assert_eq!((v.code(), v.kind()), (22, "clone"));
}

#[test]
fn a_replayed_transcript_is_detected() {
    let city = city();
    let (card, _) = new_card(&city, 8);
    let trust = trust(&city, "library");
    let mut ch = channel(card);
    assert!(verify(&mut ch, &trust, &policy(), &mut rng()).is_genuine());
    ch.transport_mut().clear();
    assert!(verify(&mut ch, &trust, &policy(), &mut rng()).is_genuine());
    // Record the cached tap's responses, by instruction.
    let mut recorded: Vec<(u8, VecDeque<Vec<u8>>)> = Vec::new();
    for e in ch.transport().entries() {
        match recorded.iter_mut().find(|(i, _)| *i == e.command[1]) {
            Some((_, q)) => q.push_back(e.response.clone()),
            None => recorded.push((e.command[1], VecDeque::from([e.response.clone()]))),
        }
    }
    let replayer = Fake(move |apdu: &[u8]| {
        Ok(recorded
            .iter_mut()
            .find(|(i, _)| *i == apdu[1])
            .and_then(|(_, q)| q.pop_front())
            .unwrap_or_else(|| vec![0x6D, 0x00]))
    });
    // A later tap draws a fresh ephemeral key (a differently seeded generator
    // here; the operating system's in production).
    let mut later = ChaCha20Rng::from_seed([0x43; 32]);
    let v = verify(&mut channel(replayer), &trust, &policy(), &mut later);
    assert_eq!(v, Verdict::Replay);
}

#[test]
fn a_record_with_a_wrong_station_signature_is_refused() {
    let city = city();
    let reader = reader(&city, "library");
    let key = test_key("fake card");
    let (entries, tbs, sig) = fake_record(
        &city,
        &key,
        reader.group,
        date((2026, 11, 20)),
        date((2031, 11, 19)),
    );
    // Control: the honest fake card is genuine.
    let honest = protocol_card(
        key.clone(),
        encode_record(&tbs, &sig),
        entries.clone(),
        &reader.certificate,
    );
    let t = trust(&city, "library");
    assert!(verify(&mut channel(honest), &t, &policy(), &mut rng()).is_genuine());
    // Extend the validity by one year, keep the signature.
    let mut forged = tbs.clone();
    let to = date((2031, 11, 19)).to_bytes();
    let at = forged.windows(4).position(|w| w == to).unwrap();
    forged[at + 1] += 1;
    let card = protocol_card(
        key,
        encode_record(&forged, &sig),
        entries,
        &reader.certificate,
    );
    let v = verify(&mut channel(card), &t, &policy(), &mut rng());
    assert_eq!(v, Verdict::BadIssuerSignature);
}

#[test]
fn a_flipped_byte_anywhere_in_the_record_is_never_genuine() {
    let city = city();
    let reader = reader(&city, "full");
    let t = trust(&city, "full");
    let key = test_key("fake card");
    let (entries, tbs, sig) = fake_record(
        &city,
        &key,
        reader.group,
        date((2026, 11, 20)),
        date((2031, 11, 19)),
    );
    let record = encode_record(&tbs, &sig);
    let mut seen = BTreeSet::new();
    for i in 0..record.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = record.clone();
            bad[i] ^= mask;
            let card = protocol_card(key.clone(), bad, entries.clone(), &reader.certificate);
            let v = verify(&mut channel(card), &t, &policy(), &mut rng());
            assert!(!v.is_genuine(), "flip {mask:#04x} at {i} accepted");
            seen.insert(v.kind());
        }
    }
    // The flips hit every check: structure, card key (MAC), digests, station, signature.
    for kind in [
        "tampered",
        "clone",
        "unknown_issuer",
        "bad_issuer_signature",
    ] {
        assert!(seen.contains(kind), "{kind} not seen: {seen:?}");
    }
    // Control: the unflipped record is genuine.
    let card = protocol_card(key, record, entries, &reader.certificate);
    assert!(verify(&mut channel(card), &t, &policy(), &mut rng()).is_genuine());
}

#[test]
fn a_station_not_valid_on_the_issue_date_is_refused() {
    let city = city();
    let reader = reader(&city, "library");
    let key = test_key("fake card 2");
    // The station certificate starts on 2026-01-01.
    let (entries, tbs, sig) = fake_record(
        &city,
        &key,
        reader.group,
        date((2025, 6, 1)),
        date((2030, 5, 31)),
    );
    let card = protocol_card(key, encode_record(&tbs, &sig), entries, &reader.certificate);
    let v = verify(
        &mut channel(card),
        &trust(&city, "library"),
        &policy(),
        &mut rng(),
    );
    assert_eq!(v, Verdict::StationNotValidAtIssue);
}

#[test]
fn another_citys_card_is_refused_and_an_unknown_station_is_unknown_issuer() {
    let city = city();
    for other in [
        city_named("BRUXELLES", "root"),
        city_named("LIEGE", "rogue root"),
    ] {
        let (card, _) = new_card(&other, 9);
        let v = verify(
            &mut channel(card),
            &trust(&city, "library"),
            &policy(),
            &mut rng(),
        );
        assert_eq!(v, Verdict::CardRefused);
    }
    // Our city's card, but its station is not in the bundle.
    let (card, _) = new_card(&city, 10);
    let no_station = bundle_with(&city, vec![], vec![], now() + 86_400);
    let t = Trust::new(no_station, credential(&city, "library")).unwrap();
    assert_eq!(
        verify(&mut channel(card), &t, &policy(), &mut rng()),
        Verdict::UnknownIssuer
    );
}

#[test]
fn card_validity_is_checked() {
    let city = city();
    let (card, _) = issued_card(&city, 11, date((2026, 11, 20)), date((2026, 11, 25)));
    let v = verify(
        &mut channel(card),
        &trust(&city, "library"),
        &policy(),
        &mut rng(),
    );
    assert_eq!(
        v,
        Verdict::Expired {
            on: date((2026, 11, 25))
        }
    );
    assert_eq!(v.to_json()["expired_on"], "2026-11-25");
    // A genuine card issued for next month has that month as its card date:
    // it refuses a reader dated before it (a decoy), so the reader can only
    // say it was refused.
    let (card, _) = issued_card(&city, 12, date((2026, 12, 1)), date((2031, 11, 30)));
    let v = verify(
        &mut channel(card),
        &trust(&city, "library"),
        &policy(),
        &mut rng(),
    );
    assert_eq!(v, Verdict::CardRefused);
    // A card that answers anyway (one that ignores its card date) is not yet valid.
    let reader = reader(&city, "library");
    let key = test_key("early card");
    let (values, tbs, sig) = fake_record(
        &city,
        &key,
        reader.group,
        date((2026, 12, 1)),
        date((2031, 11, 30)),
    );
    let card = protocol_card(key, encode_record(&tbs, &sig), values, &reader.certificate);
    let v = verify(
        &mut channel(card),
        &trust(&city, "library"),
        &policy(),
        &mut rng(),
    );
    assert_eq!(
        v,
        Verdict::NotYetValid {
            from: date((2026, 12, 1))
        }
    );
    // The policy's date decides: the same card is fine on its last day.
    let (card, _) = issued_card(&city, 13, date((2026, 11, 20)), date((2026, 11, 25)));
    let p = policy().with_today(date((2026, 11, 25)));
    assert!(verify(&mut channel(card), &trust(&city, "library"), &p, &mut rng()).is_genuine());
}

#[test]
fn a_revoked_card_is_refused() {
    let city = city();
    let (card, record) = new_card(&city, 14);
    let b = bundle_with(
        &city,
        vec![city.station_certificate.clone()],
        vec![[0; 8], record.revocation_id(), [0xFF; 8]],
        now() + 86_400,
    );
    let t = Trust::new(b, credential(&city, "library")).unwrap();
    assert_eq!(
        verify(&mut channel(card), &t, &policy(), &mut rng()),
        Verdict::Revoked
    );
    // Another card is not affected by that list.
    let (other, _) = new_card(&city, 15);
    assert!(verify(&mut channel(other), &t, &policy(), &mut rng()).is_genuine());
}

#[test]
fn a_stale_revocation_list_follows_the_policy() {
    let city = city();
    let next_update = now() - 600;
    let b = bundle_with(
        &city,
        vec![city.station_certificate.clone()],
        vec![],
        next_update,
    );
    let t = Trust::new(b, credential(&city, "library")).unwrap();
    let (card, _) = new_card(&city, 16);
    let mut ch = channel(card);
    assert_eq!(
        verify(&mut ch, &t, &policy(), &mut rng()),
        Verdict::RevocationListStale { next_update }
    );
    let flagged = policy().with_stale(StalePolicy::AcceptFlagged, 0);
    let v = verify(&mut ch, &t, &flagged, &mut rng());
    assert!(genuine(&v).revocation_stale);
    assert_eq!(v.to_json()["revocation_stale"], true);
    // Within the grace period, the list is still fresh.
    let graced = policy().with_stale(StalePolicy::Reject, 601);
    assert!(!genuine(&verify(&mut ch, &t, &graced, &mut rng())).revocation_stale);
    let graced = policy().with_stale(StalePolicy::Reject, 599);
    assert!(!verify(&mut ch, &t, &graced, &mut rng()).is_genuine());
}

#[test]
fn a_bundle_of_another_group_is_refused() {
    let city = city();
    // The full profile is in group 2; a group-0 bundle carries group 0's list.
    let err = Trust::new(bundle(&city), credential(&city, "full")).unwrap_err();
    assert!(
        matches!(
            err,
            citycard_reader::ReaderError::CredentialNotForThisGroup {
                credential: 2,
                bundle: 0
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_expired_partner_credential_is_reported_as_such() {
    let city = city();
    let key = test_key("old reader");
    let cert = CertificateBody {
        issuer: "LIEGE".into(),
        holder: "old-library".into(),
        role: Role::Reader,
        grants: set(&[AttributeId::PSEUDONYM, AttributeId::RESIDENT]),
        domain: Some([5; 16]),
        group: Some(0),
        effective: date((2026, 1, 1)),
        expiry: date((2026, 6, 30)),
        public_key: key.public_key(),
    }
    .sign(&city.root)
    .unwrap();
    let t = Trust::new(bundle(&city), PartnerCredential::new(cert, key).unwrap()).unwrap();
    let (card, _) = new_card(&city, 17);
    let v = verify(&mut channel(card), &t, &policy(), &mut rng());
    assert_eq!(
        v,
        Verdict::CredentialExpired {
            effective: date((2026, 1, 1)),
            expiry: date((2026, 6, 30))
        }
    );
}

#[test]
fn blank_terminated_and_foreign_cards() {
    let city = city();
    let t = trust(&city, "library");
    let blank = Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed([1; 32]));
    assert_eq!(
        verify(&mut channel(blank), &t, &policy(), &mut rng()),
        Verdict::Blank
    );
    let not_ours = Fake(|_: &[u8]| Ok(vec![0x6A, 0x82]));
    assert_eq!(
        verify(&mut channel(not_ours), &t, &policy(), &mut rng()),
        Verdict::NotACitycard
    );
    let garbage_fci = Fake(|_: &[u8]| Ok(vec![0x6F, 0x01, 0x00, 0x90, 0x00]));
    assert_eq!(
        verify(&mut channel(garbage_fci), &t, &policy(), &mut rng()),
        Verdict::NotACitycard
    );
    let terminated = Fake(|_: &[u8]| Ok(vec![0x62, 0x83]));
    assert_eq!(
        verify(&mut channel(terminated), &t, &policy(), &mut rng()),
        Verdict::Terminated
    );
    let short = Fake(|_: &[u8]| Ok(vec![0x90]));
    assert!(matches!(
        verify(&mut channel(short), &t, &policy(), &mut rng()),
        Verdict::TransportError(_)
    ));
}

// ---------------------------------------------------------------- transport

/// Pulls the card off the reader before APDU number `after` (0-based).
struct PullAfter<C: ContactlessCard> {
    inner: MemoryTransport<C>,
    after: usize,
}

impl<C: ContactlessCard> CardTransport for PullAfter<C> {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if self.after == 0 {
            self.inner.remove();
        }
        self.after = self.after.saturating_sub(1);
        self.inner.transmit_raw(apdu)
    }
    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        self.inner.atr()
    }
    fn reset(&mut self) -> Result<(), TransportError> {
        self.inner.reset()
    }
    fn transaction(
        &mut self,
        body: &mut citycard_transport::TransactionFn<'_>,
    ) -> Result<(), TransportError> {
        body(self)
    }
}

#[test]
fn a_card_pulled_at_any_apdu_gives_card_removed() {
    let city = city();
    let t = trust(&city, "library");
    for after in 0..5 {
        let (card, _) = new_card(&city, 18);
        let mut ch = CardChannel::new(PullAfter {
            inner: MemoryTransport::new(card),
            after,
        });
        assert_eq!(
            verify(&mut ch, &t, &policy(), &mut rng()),
            Verdict::CardRemoved,
            "pulled before APDU {after}"
        );
    }
}

#[test]
fn endless_or_huge_answers_are_bounded() {
    let city = city();
    let t = trust(&city, "library");
    // 61 00 forever, without data.
    let mut calls = 0usize;
    let endless = Fake(move |apdu: &[u8]| {
        calls += 1;
        assert!(calls < 100, "the reader does not stop");
        Ok(if apdu[1] == ins::SELECT {
            fci(7)
        } else {
            vec![0x61, 0x00]
        })
    });
    let mut ch = channel(endless);
    let v = verify(&mut ch, &t, &policy(), &mut rng());
    assert_eq!(v.kind(), "tampered", "{v:?}");
    assert!(ch.transport().stats().apdus <= 2 + 16);
    // 61 00 forever, with 256 bytes each time.
    let flood = Fake(|apdu: &[u8]| {
        Ok(if apdu[1] == ins::SELECT {
            fci(7)
        } else {
            let mut r = vec![0xAA; 256];
            r.extend_from_slice(&[0x61, 0x00]);
            r
        })
    });
    let mut ch = channel(flood);
    assert_eq!(
        verify(&mut ch, &t, &policy(), &mut rng()).kind(),
        "tampered"
    );
    assert!(ch.transport().stats().bytes_received < 6_000);
    // 10 KB in one answer.
    let huge = Fake(|apdu: &[u8]| {
        Ok(if apdu[1] == ins::SELECT {
            fci(7)
        } else {
            let mut r = vec![0x7C; 10_240];
            r.extend_from_slice(&[0x90, 0x00]);
            r
        })
    });
    assert_eq!(
        verify(&mut channel(huge), &t, &policy(), &mut rng()).kind(),
        "tampered"
    );
    // A plausible-length answer of garbage, and an unexpected status word.
    let garbage = Fake(|apdu: &[u8]| {
        Ok(if apdu[1] == ins::SELECT {
            fci(7)
        } else {
            vec![0x7C, 0x03, 0x86, 0x01, 0x00, 0x90, 0x00]
        })
    });
    assert_eq!(
        verify(&mut channel(garbage), &t, &policy(), &mut rng()).kind(),
        "tampered"
    );
    let odd = Fake(|apdu: &[u8]| {
        Ok(if apdu[1] == ins::SELECT {
            fci(7)
        } else {
            vec![0x6D, 0x00]
        })
    });
    assert_eq!(
        verify(&mut channel(odd), &t, &policy(), &mut rng()).kind(),
        "tampered"
    );
}

#[test]
fn the_channel_limits_are_restored_after_a_verification() {
    let city = city();
    let (card, _) = new_card(&city, 19);
    let mut ch = channel(card);
    ch.config_mut().max_get_response = 100;
    ch.config_mut().max_response_len = 100_000;
    let before = ch.config().clone();
    assert!(verify(&mut ch, &trust(&city, "library"), &policy(), &mut rng()).is_genuine());
    assert_eq!(ch.config(), &before);
}

#[test]
fn exit_codes_and_kinds_are_distinct() {
    let d = date((2026, 1, 1));
    let all = [
        Verdict::NotACitycard,
        Verdict::Blank,
        Verdict::Terminated,
        Verdict::CardRefused,
        Verdict::Unauthorised {
            not_granted: AttributeSet::EMPTY,
        },
        Verdict::CredentialExpired {
            effective: d,
            expiry: d,
        },
        Verdict::Tampered {
            detail: String::new(),
        },
        Verdict::Replay,
        Verdict::Clone,
        Verdict::UnknownIssuer,
        Verdict::BadIssuerSignature,
        Verdict::StationNotValidAtIssue,
        Verdict::Expired { on: d },
        Verdict::NotYetValid { from: d },
        Verdict::Revoked,
        Verdict::RevocationListStale { next_update: 0 },
        Verdict::CardRemoved,
        Verdict::TransportError(TransportError::NoService.into()),
    ];
    let codes: BTreeSet<u8> = all.iter().map(Verdict::code).collect();
    let kinds: BTreeSet<&str> = all.iter().map(Verdict::kind).collect();
    assert_eq!((codes.len(), kinds.len()), (all.len(), all.len()));
    assert!(!codes.contains(&0) && !codes.contains(&1) && !codes.contains(&2));
    for v in &all {
        assert_eq!(v.to_json()["verdict"], v.kind());
        assert_eq!(v.to_json()["code"], v.code());
        assert!(v
            .kind()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_async_runs_on_the_blocking_pool() {
    let city = city();
    let t = Arc::new(trust(&city, "library"));
    let mut tasks = Vec::new();
    for seed in [20u8, 21, 22] {
        let (card, _) = new_card(&city, seed);
        let ch = channel(card);
        tasks.push(tokio::spawn(citycard_reader::verify_async(
            ch,
            t.clone(),
            policy(),
        )));
    }
    let mut pseudonyms = BTreeSet::new();
    for task in tasks {
        let (verdict, ch) = task.await.unwrap().unwrap();
        pseudonyms.insert(genuine(&verdict).pseudonym.unwrap());
        // SELECT, GA (decoy) + GET RESPONSE, PSO, GA + GET RESPONSE.
        assert_eq!(ch.transport().stats().apdus, 6);
    }
    assert_eq!(pseudonyms.len(), 3);
}
