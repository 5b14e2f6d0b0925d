//! The PIV profile's reader procedure (`applet-spec/piv-profile.md` §5)
//! against a scripted PIV card that can misbehave as each test needs. The
//! emulated PIV card (`citycard-piv-card`) and real peer tools are exercised
//! end to end in `tests/pcsc_piv_profile.rs`.
#![cfg(test)]

use citycard_proto::apdu::CommandView;
use citycard_proto::piv::{self, CardAuthenticationBody, CardAuthenticationCertificate};
use citycard_proto::revocation::{RevocationId, TrustBundle};
use citycard_proto::{apdu::CardLost, apdu::ContactlessCard, crypto, tlv};
use citycard_reader::{
    verify, AttributeId, AttributeSet, CardChannel, CardProfile, Date, PartnerCredential, Policy,
    Trust, Verdict,
};
use citycard_testkit::keys::{
    self, city, city_named, date, reader, test_key, trust_bundle, BundleSpec, TestCity,
};
use citycard_transport::{MemoryTransport, Traced};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::SecretKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn now() -> u64 {
    date(keys::TODAY).days_since_epoch() as u64 * 86_400 + 43_200
}

fn bundle(city: &TestCity, revoked: Vec<RevocationId>, group: u8) -> TrustBundle {
    trust_bundle(
        city,
        BundleSpec {
            revoked,
            ..BundleSpec::of(city, now() - 3_600, now() + 86_400).in_group(group)
        },
    )
}

fn trust_with(city: &TestCity, profile: &'static str, revoked: Vec<RevocationId>) -> Trust {
    let r = reader(city, profile);
    Trust::new(
        bundle(city, revoked, r.group),
        PartnerCredential::new(r.certificate, r.key).unwrap(),
    )
    .unwrap()
}

fn trust(city: &TestCity, profile: &'static str) -> Trust {
    trust_with(city, profile, vec![])
}

/// The certificate a station of `city` issues for `card_key`.
fn certificate(
    city: &TestCity,
    card_key: &SecretKey,
    from: Date,
    to: Date,
) -> CardAuthenticationCertificate {
    let body = CardAuthenticationBody {
        issuer_id: city.station_certificate.body().issuer.clone(),
        station_holder: city.station_certificate.body().holder.clone(),
        station: city.station_certificate.fingerprint(),
        card_number: "LG-2026-000042".into(),
        valid_from: from,
        valid_to: to,
        card_key: card_key.public_key(),
        predicates: AttributeSet::EMPTY.with(AttributeId::AGE_OVER_18),
    };
    let tbs = body.to_be_signed().unwrap();
    CardAuthenticationCertificate::assemble(&tbs, &crypto::sign(&city.station, &tbs)).unwrap()
}

#[derive(Clone)]
enum Signing {
    /// Signs the challenge with this key.
    With(SecretKey),
    /// Answers with a fixed (recorded) response.
    Recorded(Vec<u8>),
    /// Refuses with this status word.
    Refuse([u8; 2]),
}

/// A PIV card as SP 800-73-4 describes it, reduced to what a tap uses.
#[derive(Clone)]
struct ScriptedPiv {
    /// The raw `5FC101` container content, if any.
    container: Option<Vec<u8>>,
    signing: Signing,
    pending: Vec<u8>,
    /// Every 9E answer given (for replay tests).
    answers: Vec<Vec<u8>>,
    /// GET DATA and GET RESPONSE answer 256 bytes and `61 00` forever.
    endless: bool,
}

impl ScriptedPiv {
    fn issued(cert: &CardAuthenticationCertificate, key: &SecretKey) -> Self {
        Self {
            container: Some(piv::certificate_container(cert.as_bytes())),
            signing: Signing::With(key.clone()),
            pending: Vec::new(),
            answers: Vec::new(),
            endless: false,
        }
    }

    fn chunked(&mut self, mut data: Vec<u8>) -> Vec<u8> {
        if data.len() > 256 {
            self.pending = data.split_off(256);
            let left = self.pending.len().min(255) as u8;
            data.extend_from_slice(&[0x61, if self.pending.len() > 255 { 0 } else { left }]);
        } else {
            data.extend_from_slice(&[0x90, 0x00]);
        }
        data
    }
}

impl ContactlessCard for ScriptedPiv {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x80, 0x80, 0x01, 0x01]
    }
    fn reset(&mut self) {
        self.pending.clear();
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        let Ok(cmd) = CommandView::parse(command) else {
            return Ok(vec![0x67, 0x00]);
        };
        Ok(match cmd.ins {
            0xA4 if cmd.data == piv::AID => {
                let mut apt = Vec::new();
                tlv::push(&mut apt, 0x4F, &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
                tlv::push(&mut apt, 0xAC, &[0x80, 0x01, 0x11, 0x06, 0x00]);
                let mut r = tlv::encode(0x61, &apt);
                r.extend_from_slice(&[0x90, 0x00]);
                r
            }
            0xA4 => vec![0x6A, 0x82],
            0xCB | 0xC0 if self.endless => {
                let mut r = vec![0x53; 256];
                r.extend_from_slice(&[0x61, 0x00]);
                r
            }
            0xCB => match self.container.clone() {
                Some(c) if cmd.data == [0x5C, 0x03, 0x5F, 0xC1, 0x01] => {
                    let data = tlv::encode(0x53, &c);
                    self.chunked(data)
                }
                _ => vec![0x6A, 0x82],
            },
            0xC0 => {
                let rest = std::mem::take(&mut self.pending);
                self.chunked(rest)
            }
            0x87 if cmd.p1 == 0x11 && cmd.p2 == 0x9E => {
                let template = tlv::read_exact(cmd.data, 0x7C).unwrap();
                let challenge = tlv::read_all(template.value)
                    .unwrap()
                    .into_iter()
                    .find(|f| f.tag == 0x81)
                    .unwrap()
                    .value
                    .to_vec();
                let answer = match &self.signing {
                    Signing::With(key) => {
                        let sig: Signature =
                            SigningKey::from(key).sign_prehash(&challenge).unwrap();
                        let mut r = tlv::encode(0x7C, &tlv::encode(0x82, sig.to_der().as_bytes()));
                        r.extend_from_slice(&[0x90, 0x00]);
                        r
                    }
                    Signing::Recorded(r) => r.clone(),
                    Signing::Refuse(sw) => sw.to_vec(),
                };
                self.answers.push(answer.clone());
                answer
            }
            _ => vec![0x6D, 0x00],
        })
    }
}

fn tap(card: ScriptedPiv, trust: &Trust, policy: &Policy) -> (Verdict, ScriptedPiv, u64) {
    let mut channel = CardChannel::new(Traced::new(MemoryTransport::new(card)));
    let verdict = verify(
        &mut channel,
        trust,
        policy,
        &mut ChaCha20Rng::from_seed([3; 32]),
    );
    let apdus = channel.transport().stats().apdus;
    let card = channel.transport().inner().card().clone();
    (verdict, card, apdus)
}

fn issued(city: &TestCity) -> (ScriptedPiv, CardAuthenticationCertificate) {
    let key = test_key("piv card 9E");
    let cert = certificate(city, &key, date((2026, 11, 20)), date((2031, 11, 19)));
    (ScriptedPiv::issued(&cert, &key), cert)
}

#[test]
fn a_genuine_piv_card_discloses_only_what_the_profile_holds_and_the_partner_may_see() {
    let city = city();
    let (card, _) = issued(&city);

    // Desk ("full"): card number and residence; nothing the profile lacks.
    let policy = Policy::at(now());
    let (v, _, apdus) = tap(card.clone(), &trust(&city, "full"), &policy);
    let g = v.genuine().unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!(g.profile, CardProfile::Piv);
    assert_eq!(g.card_number.as_deref(), Some("LG-2026-000042"));
    assert_eq!(g.attribute(AttributeId::RESIDENT), Some(&[1u8][..]));
    assert_eq!(g.attribute(AttributeId::NAME), None);
    assert_eq!(g.pseudonym, None);
    assert_eq!(g.expires, date((2031, 11, 19)));
    // SELECT citycard (6A82), SELECT PIV, GET DATA + one GET RESPONSE, GENERAL AUTHENTICATE.
    assert_eq!(apdus, 5);
    let json = v.to_json();
    assert_eq!(json["profile"], "piv");
    assert_eq!(json["attributes"]["card_number"], "LG-2026-000042");

    // Transit: age predicates only; 18 was signed at issue, 65 is not proven.
    let (v, _, _) = tap(card.clone(), &trust(&city, "transit"), &policy);
    let g = v.genuine().unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!(g.predicate(AttributeId::AGE_OVER_18), Some(true));
    assert_eq!(g.predicate(AttributeId::AGE_OVER_65), None);
    assert_eq!(g.card_number, None);
    assert!(g.attributes.is_empty());
    let json = v.to_json().to_string();
    assert!(!json.contains("LG-2026"), "{json}");

    // Library: no pseudonym on PIV, residence yes.
    let (v, _, _) = tap(card, &trust(&city, "library"), &policy);
    let g = v.genuine().unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!(g.pseudonym, None);
    assert_eq!(g.attribute(AttributeId::RESIDENT), Some(&[1u8][..]));
}

#[test]
fn the_partner_limits_hold_even_though_the_card_cannot_enforce_them() {
    let city = city();
    let (card, _) = issued(&city);
    let policy = Policy::at(now()).with_requested([AttributeId::CARD_NUMBER].into_iter().collect());
    let (v, _, _) = tap(card, &trust(&city, "library"), &policy);
    match v {
        Verdict::Unauthorised { not_granted } => {
            assert!(not_granted.contains(AttributeId::CARD_NUMBER))
        }
        other => panic!("expected unauthorised, got {other:?}"),
    }
}

#[test]
fn a_card_without_the_certified_key_is_a_clone() {
    let city = city();
    let (mut card, _) = issued(&city);
    card.signing = Signing::With(test_key("another card"));
    let (v, _, _) = tap(card, &trust(&city, "full"), &Policy::at(now()));
    assert_eq!(v, Verdict::Clone);
}

#[test]
fn a_recorded_answer_replayed_to_a_new_challenge_is_refused() {
    let city = city();
    let (card, _) = issued(&city);
    let policy = Policy::at(now());
    let t = trust(&city, "full");
    let mut channel = CardChannel::new(Traced::new(MemoryTransport::new(card)));
    let first = verify(
        &mut channel,
        &t,
        &policy,
        &mut ChaCha20Rng::from_seed([1; 32]),
    );
    assert!(first.is_genuine(), "{first:?}");
    let mut replayer = channel.transport().inner().card().clone();
    let recorded = replayer.answers.last().unwrap().clone();
    replayer.signing = Signing::Recorded(recorded);
    let mut channel = CardChannel::new(Traced::new(MemoryTransport::new(replayer)));
    let second = verify(
        &mut channel,
        &t,
        &policy,
        &mut ChaCha20Rng::from_seed([2; 32]),
    );
    assert_eq!(second, Verdict::Clone);
}

#[test]
fn a_card_that_refuses_to_sign_or_answers_garbage_is_not_genuine() {
    let city = city();
    let (mut card, _) = issued(&city);
    card.signing = Signing::Refuse([0x6A, 0x82]);
    let (v, _, _) = tap(card.clone(), &trust(&city, "full"), &Policy::at(now()));
    assert_eq!(v, Verdict::Clone);
    card.signing = Signing::Recorded(vec![0x7C, 0x03, 0x82, 0x01, 0x00, 0x90, 0x00]);
    let (v, _, _) = tap(card, &trust(&city, "full"), &Policy::at(now()));
    assert_eq!(v.kind(), "tampered", "{v:?}");
}

#[test]
fn every_tampered_certificate_byte_is_caught() {
    let city = city();
    let (card, cert) = issued(&city);
    let t = trust(&city, "full");
    let policy = Policy::at(now());
    let bytes = cert.as_bytes().to_vec();
    let mut kinds = std::collections::BTreeSet::new();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut tampered = bytes.clone();
            tampered[i] ^= flip;
            let mut c = card.clone();
            c.container = Some(piv::certificate_container(&tampered));
            let (v, _, _) = tap(c, &t, &policy);
            assert!(!v.is_genuine(), "byte {i} ^ {flip:#04x} accepted");
            kinds.insert(v.kind());
        }
    }
    // The parser and the station signature both fire; a flipped extension
    // OID makes it someone else's certificate; nothing else can happen.
    for expected in ["bad_issuer_signature", "tampered"] {
        assert!(kinds.contains(expected), "{kinds:?}");
    }
    let allowed = [
        "bad_issuer_signature",
        "tampered",
        "not_a_citycard",
        "unknown_issuer",
        "clone",
    ];
    assert!(kinds.iter().all(|k| allowed.contains(k)), "{kinds:?}");
}

#[test]
fn issuer_validity_and_revocation_verdicts_match_the_applet_profile() {
    let city = city();
    let key = test_key("piv card 9E");
    let policy = Policy::at(now());
    let t = trust(&city, "full");
    let card_for = |cert: &CardAuthenticationCertificate| ScriptedPiv::issued(cert, &key);

    // Another city's station.
    let other = city_named("ZURICH", "root");
    let cert = certificate(&other, &key, date((2026, 11, 20)), date((2031, 11, 19)));
    assert_eq!(tap(card_for(&cert), &t, &policy).0, Verdict::UnknownIssuer);

    // Issued before the station certificate began (2026-01-01).
    let cert = certificate(&city, &key, date((2025, 12, 15)), date((2030, 12, 14)));
    assert_eq!(
        tap(card_for(&cert), &t, &policy).0,
        Verdict::StationNotValidAtIssue
    );

    // Expired and not yet valid.
    let cert = certificate(&city, &key, date((2026, 1, 2)), date((2026, 11, 25)));
    assert_eq!(
        tap(card_for(&cert), &t, &policy).0,
        Verdict::Expired {
            on: date((2026, 11, 25))
        }
    );
    let cert = certificate(&city, &key, date((2026, 11, 27)), date((2031, 11, 26)));
    assert_eq!(
        tap(card_for(&cert), &t, &policy).0,
        Verdict::NotYetValid {
            from: date((2026, 11, 27))
        }
    );

    // Revoked by the same revocation id function as applet cards.
    let cert = certificate(&city, &key, date((2026, 11, 20)), date((2031, 11, 19)));
    let revoked = trust_with(&city, "full", vec![cert.revocation_id()]);
    assert_eq!(tap(card_for(&cert), &revoked, &policy).0, Verdict::Revoked);
}

#[test]
fn piv_cards_that_are_not_ours_are_not_a_citycard() {
    let city = city();
    let t = trust(&city, "full");
    let policy = Policy::at(now());
    let (mut card, _) = issued(&city);
    card.container = None;
    assert_eq!(tap(card.clone(), &t, &policy).0, Verdict::NotACitycard);
    // Somebody else's X.509 certificate (no citycard extension).
    card.container = Some(piv::certificate_container(&[
        0x30, 0x06, 0x30, 0x00, 0x30, 0x00, 0x03, 0x00,
    ]));
    assert_eq!(tap(card.clone(), &t, &policy).0, Verdict::NotACitycard);
    // A broken container.
    card.container = Some(vec![0x70, 0x82, 0xFF]);
    assert_eq!(tap(card, &t, &policy).0.kind(), "tampered");
}

#[test]
fn a_piv_card_that_never_stops_answering_gets_a_verdict_not_a_hang() {
    let city = city();
    let (mut card, _) = issued(&city);
    card.endless = true;
    let (v, _, apdus) = tap(card, &trust(&city, "full"), &Policy::at(now()));
    assert_eq!(v.kind(), "tampered", "{v:?}");
    // SELECT ×2, GET DATA, then GET RESPONSE up to the reader's bound.
    assert!(
        apdus <= 3 + citycard_reader::MAX_GET_RESPONSE as u64,
        "{apdus} APDUs"
    );
}
