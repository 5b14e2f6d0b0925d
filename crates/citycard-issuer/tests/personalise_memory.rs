//! Personalisation and read-back over the in-memory transport (the PC/SC path
//! is covered by the workspace end-to-end tests).
#![cfg(test)]

use citycard_card::{Applet, MemoryStorage};
use citycard_issuer::personalise::{
    inspect, personalise, read_back, Anchor, PersonaliseError, ReaderCredential, Station,
};
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::cert::{Certificate, CertificateBody, Role};
use citycard_proto::{crypto, Date, LifeCycle};
use citycard_transport::{CardChannel, MemoryTransport};
use p256::SecretKey;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct City {
    root: SecretKey,
    station: SecretKey,
    station_cert: Certificate,
    check_key: SecretKey,
    check_cert: Certificate,
}

fn d(y: u16, m: u8, day: u8) -> Date {
    Date::new(y, m, day).unwrap()
}

fn city(seed: u8, issuer: &str) -> City {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let root = crypto::generate(&mut rng);
    let station = crypto::generate(&mut rng);
    let check_key = crypto::generate(&mut rng);
    let cert = |holder: &str, role, grants, domain, pk| {
        CertificateBody {
            issuer: issuer.into(),
            holder: holder.into(),
            role,
            grants,
            domain,
            effective: d(2026, 1, 1),
            expiry: d(2027, 1, 1),
            public_key: pk,
        }
        .sign(&root)
        .unwrap()
    };
    let station_cert = cert(
        "s1",
        Role::Station,
        AttributeSet::EMPTY,
        None,
        station.public_key(),
    );
    let all: AttributeSet = citycard_proto::attr::ALL
        .iter()
        .copied()
        .filter(|id| id.kind() == citycard_proto::attr::AttributeKind::Stored)
        .collect();
    let check_cert = cert(
        "s1-check",
        Role::Reader,
        all,
        Some([7; 16]),
        check_key.public_key(),
    );
    City {
        root,
        station,
        station_cert,
        check_key,
        check_cert,
    }
}

fn attrs() -> Vec<(AttributeId, Vec<u8>)> {
    vec![
        (AttributeId::CARD_NUMBER, b"LG-000001".to_vec()),
        (AttributeId::NAME, b"Alex".to_vec()),
        (AttributeId::ADDRESS, b"Rue 1".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
    ]
}

fn issue(
    ch: &mut CardChannel<MemoryTransport<Applet<MemoryStorage, ChaCha20Rng>>>,
    c: &City,
    rng: &mut ChaCha20Rng,
) -> Result<(), PersonaliseError> {
    let sign = |m: &[u8]| Ok(crypto::sign(&c.station, m));
    let station = Station {
        certificate: &c.station_cert,
        sign: &sign,
    };
    let root = c.root.public_key();
    let anchor = Anchor {
        issuer: "LIEGE",
        root: &root,
    };
    let p = personalise(
        ch,
        &anchor,
        &station,
        &attrs(),
        d(2026, 6, 1),
        d(2031, 5, 31),
        rng,
    )?;
    let check = ReaderCredential {
        certificate: &c.check_cert,
        key: &c.check_key,
    };
    read_back(
        ch,
        &check,
        &c.station_cert,
        &p,
        &attrs(),
        d(2026, 6, 1),
        rng,
    )
}

fn new_card(seed: u8) -> CardChannel<MemoryTransport<Applet<MemoryStorage, ChaCha20Rng>>> {
    CardChannel::new(MemoryTransport::new(Applet::new(
        MemoryStorage::new(),
        ChaCha20Rng::from_seed([seed; 32]),
    )))
}

#[test]
fn blank_card_is_issued_and_reads_back() {
    let c = city(1, "LIEGE");
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(3);
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Blank);
    issue(&mut ch, &c, &mut rng).unwrap();
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Issued);
    // A second personalisation of the same card is refused before any write.
    match issue(&mut ch, &c, &mut rng) {
        Err(PersonaliseError::NotBlank(LifeCycle::Issued)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_card_anchored_to_another_city_is_refused() {
    let other = city(9, "LIEGE");
    let c = city(1, "LIEGE");
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(4);
    // Anchor it to the other root by starting a personalisation that fails after anchoring.
    let sign = |_: &[u8]| Err("station key unavailable".to_string());
    let station = Station {
        certificate: &other.station_cert,
        sign: &sign,
    };
    let root = other.root.public_key();
    let r = personalise(
        &mut ch,
        &Anchor {
            issuer: "LIEGE",
            root: &root,
        },
        &station,
        &attrs(),
        d(2026, 6, 1),
        d(2031, 5, 31),
        &mut rng,
    );
    assert!(matches!(r, Err(PersonaliseError::Signing(_))), "{r:?}");
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Anchored);
    match issue(&mut ch, &c, &mut rng) {
        Err(PersonaliseError::WrongIssuer) => {}
        other => panic!("{other:?}"),
    }
    // The right city can still finish it.
    issue(&mut ch, &other, &mut rng).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_pulled_card_is_a_transport_error_and_the_card_stays_not_issued() {
    let c = city(1, "LIEGE");
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(5);
    inspect(&mut ch).unwrap();
    ch.transport_mut().remove();
    assert!(matches!(
        issue(&mut ch, &c, &mut rng),
        Err(PersonaliseError::Transport(_))
    ));
    ch.reset().unwrap();
    assert_ne!(inspect(&mut ch).unwrap(), LifeCycle::Issued);
}

#[test]
fn a_station_certificate_outside_its_validity_cannot_sign_a_valid_record() {
    let c = city(1, "LIEGE");
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    let mut ch = new_card(6);
    let sign = |m: &[u8]| Ok(crypto::sign(&c.station, m));
    let station = Station {
        certificate: &c.station_cert,
        sign: &sign,
    };
    let root = c.root.public_key();
    // Issue date after the station certificate's expiry: the card refuses at ACTIVATE.
    let r = personalise(
        &mut ch,
        &Anchor {
            issuer: "LIEGE",
            root: &root,
        },
        &station,
        &attrs(),
        d(2027, 6, 1),
        d(2031, 5, 31),
        &mut rng,
    );
    match r {
        Err(PersonaliseError::Refused {
            step: "ACTIVATE",
            sw,
        }) => assert_eq!(sw.to_u16(), 0x6A80),
        other => panic!("{other:?}"),
    }
    assert_eq!(inspect(&mut ch).unwrap(), LifeCycle::Anchored);
}
