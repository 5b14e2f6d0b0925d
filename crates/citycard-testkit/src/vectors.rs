//! The `applet-spec/vectors/*.json` test vectors: generation from the
//! reference card in deterministic mode, and a runner that replays a vector
//! against any card link and compares every response byte for byte.
//!
//! One file on purpose: the vector format, its generator (one function per
//! scenario family) and its runner must agree byte for byte.

use std::collections::BTreeMap;

use citycard_card::{Applet, MemoryStorage};
use citycard_proto::apdu::Command;
use citycard_proto::attr::{AttributeId, AttributeSet};
use citycard_proto::consts::{cla, ins};
use citycard_proto::crypto;
use citycard_proto::pers;
use citycard_proto::record::{self, RecordBody, StoredValue};
use citycard_proto::{apdu::ContactlessCard, sw::StatusWord};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::keys::{
    city, city_named, date, key_hex, reader, test_key, TestCity, ISSUE_DATE, PREPARATION_DATE,
    TODAY, VALID_TO,
};
use crate::script::{
    self, personalise, sample_resident, select_command, Personalisation, Script, Step,
};

/// One vector file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vector {
    /// Scenario name (file stem).
    pub name: String,
    /// What the scenario shows.
    pub description: String,
    /// 32-byte seed of the card's deterministic mode, hex (null: no randomness used).
    pub card_seed: Option<String>,
    /// Fixed host-side keys used by the scenario (hex private scalars), for
    /// reproducing the host side.
    #[serde(default)]
    pub host_keys: BTreeMap<String, String>,
    /// The exchanges, in order, starting from a card fresh from the factory.
    pub steps: Vec<Step>,
}

/// A response that differs from the vector.
#[derive(Debug, thiserror::Error)]
pub enum VectorMismatch {
    /// The link failed.
    #[error("step {step}: link error: {error}")]
    Link { step: usize, error: String },
    /// A response differs.
    #[error("step {step} ({note}): command {command}\n  expected {expected}\n  got      {got}")]
    Response {
        step: usize,
        note: String,
        command: String,
        expected: String,
        got: String,
    },
    /// The vector itself is malformed.
    #[error("step {step}: malformed vector: {reason}")]
    Malformed { step: usize, reason: String },
}

/// Replays `vector` over `link` (a card fresh from the factory in
/// deterministic mode with the vector's seed).
pub fn run(vector: &Vector, link: &mut crate::script::RawLink<'_>) -> Result<(), VectorMismatch> {
    for (i, step) in vector.steps.iter().enumerate() {
        let command = hex::decode(&step.command).map_err(|e| VectorMismatch::Malformed {
            step: i,
            reason: e.to_string(),
        })?;
        let got = link(&command).map_err(|error| VectorMismatch::Link { step: i, error })?;
        let got_hex = hex::encode_upper(&got);
        let ok = match (&step.response, &step.response_sw) {
            (Some(r), _) => r.eq_ignore_ascii_case(&got_hex),
            (None, Some(sw)) => {
                got_hex.len() >= 4 && got_hex[got_hex.len() - 4..].eq_ignore_ascii_case(sw)
            }
            (None, None) => {
                return Err(VectorMismatch::Malformed {
                    step: i,
                    reason: "no expected response".into(),
                })
            }
        };
        if !ok {
            return Err(VectorMismatch::Response {
                step: i,
                note: step.note.clone().unwrap_or_default(),
                command: step.command.clone(),
                expected: step
                    .response
                    .clone()
                    .or_else(|| step.response_sw.clone())
                    .unwrap_or_default(),
                got: got_hex,
            });
        }
    }
    Ok(())
}

/// The deterministic seed of a named scenario.
pub fn seed_for(name: &str) -> [u8; 32] {
    crypto::sha256(&[b"citycard vector ", name.as_bytes()])
}

/// A reference card in deterministic mode.
pub fn deterministic_card(seed: [u8; 32]) -> Applet<MemoryStorage, ChaCha20Rng> {
    Applet::new(MemoryStorage::new(), ChaCha20Rng::from_seed(seed))
}

struct Builder {
    name: &'static str,
    description: &'static str,
    card: Applet<MemoryStorage, ChaCha20Rng>,
    host_keys: BTreeMap<String, String>,
    steps: Vec<Step>,
}

impl Builder {
    fn new(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            card: deterministic_card(seed_for(name)),
            host_keys: BTreeMap::new(),
            steps: Vec::new(),
        }
    }

    fn key(&mut self, label: &str, k: &p256::SecretKey) {
        self.host_keys.insert(label.to_string(), key_hex(k));
    }

    fn with<T>(&mut self, f: impl FnOnce(&mut Script<'_>) -> T) -> T {
        let card = &mut self.card;
        let mut link = |apdu: &[u8]| card.transmit(apdu).map_err(|e| e.to_string());
        let mut s = Script::new(&mut link);
        let out = f(&mut s);
        self.steps.extend(s.steps);
        out
    }

    fn raw(&mut self, note: &str, apdu: &[u8]) -> StatusWord {
        self.with(|s| {
            s.note(note);
            s.raw(apdu).map(|r| r.sw).unwrap_or(StatusWord::Unknown)
        })
    }

    fn city_keys(&mut self, city: &TestCity) {
        self.key("root", &city.root);
        self.key("preparer", &city.preparer);
        self.key("station", &city.station);
        self.key("station_ephemeral", &test_key("station ephemeral"));
    }

    fn prepare(&mut self, city: &TestCity) {
        self.city_keys(city);
        self.with(|s| {
            s.note("SELECT");
            s.send(&select_command()).unwrap();
            script::prepare(s, city, date(PREPARATION_DATE)).expect("preparation")
        });
    }

    /// Prepares and personalises the sample resident for `groups` groups;
    /// seeds and decoy slots come from a generator seeded with the name.
    fn personalise(&mut self, city: &TestCity, groups: u8) {
        self.city_keys(city);
        let mut rng = ChaCha20Rng::from_seed(crypto::sha256(&[b"station ", self.name.as_bytes()]));
        self.with(|s| {
            personalise(
                s,
                Personalisation {
                    city,
                    station_ephemeral: test_key("station ephemeral"),
                    rng: &mut rng,
                    resident: sample_resident(),
                    issue_date: date(ISSUE_DATE),
                    valid_to: date(VALID_TO),
                    groups,
                    prepare: true,
                },
            )
            .expect("personalisation of the vector card")
        });
    }

    fn verify(
        &mut self,
        city: &TestCity,
        profile: &'static str,
        requested: AttributeSet,
        pso: bool,
        eph: &str,
    ) {
        let r = reader(city, profile);
        self.key(&format!("reader_{profile}"), &r.key);
        let e = test_key(eph);
        self.key(&format!("reader_ephemeral_{eph}"), &e);
        self.with(|s| {
            script::verify(s, &r, requested, date(TODAY), e, pso)
                .expect("verification of the vector card")
        });
    }

    fn finish(self) -> Vector {
        Vector {
            name: self.name.into(),
            description: self.description.into(),
            card_seed: Some(hex::encode(seed_for(self.name))),
            host_keys: self.host_keys,
            steps: self.steps,
        }
    }
}

fn set(ids: &[AttributeId]) -> AttributeSet {
    ids.iter().copied().collect()
}

/// Reader profiles used in the verification vectors: (profile, requested set).
pub fn profiles() -> Vec<(&'static str, AttributeSet)> {
    vec![
        (
            "library",
            set(&[AttributeId::PSEUDONYM, AttributeId::RESIDENT]),
        ),
        ("transit", set(&[AttributeId::AGE_OVER_65])),
        (
            "full",
            set(&[
                AttributeId::PSEUDONYM,
                AttributeId::CARD_NUMBER,
                AttributeId::NAME,
                AttributeId::BIRTH_DATE,
                AttributeId::ADDRESS,
                AttributeId::LANGUAGE,
                AttributeId::RESIDENT,
            ]),
        ),
    ]
}

fn gen_auth(data: &[u8]) -> Vec<u8> {
    Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
        .with_data(data.to_vec())
        .with_le(256)
        .to_short_bytes()
        .unwrap()
}

fn secured(channel: &mut pers::SecureChannel, ins_byte: u8, plaintext: &[u8]) -> Command {
    let header = [cla::PROPRIETARY, ins_byte, 0, 0];
    Command::new(cla::PROPRIETARY, ins_byte, 0, 0)
        .with_data(channel.seal(header, plaintext).unwrap())
        .with_le(256)
}

/// Number of groups of the verification vectors' cards (library 0, transit 1, full 2).
pub const VERIFY_GROUPS: u8 = 3;
/// Number of groups of the personalisation vector (the maximum).
pub const PERSONALISE_GROUPS: u8 = 8;

/// Generates every vector from the reference card.
pub fn generate_all() -> Vec<Vector> {
    let city = city();
    let city = &city;
    let mut out = vec![
        select(),
        error_not_selected(),
        error_malformed(),
        prepare_vector(city),
        personalise_vector(city),
        error_station(city),
        error_activate_wrong_key(city),
    ];
    out.extend(verify_profiles(city));
    out.push(verify_cache_first(city));
    out.push(error_verify_uniform(city));
    out.push(terminate_vector(city));
    out
}

/// `select`: SELECT with and without FCI.
fn select() -> Vector {
    let mut b = Builder::new("select", "SELECT by AID on a blank card: FCI with protocol version 02 and life cycle 01 (blank); SELECT with P2=0C returns no FCI.");
    b.with(|s| {
        s.note("SELECT, FCI requested");
        s.send(&select_command()).unwrap();
        s.note("SELECT, no FCI (P2=0C)");
        s.raw(
            &Command::new(0, ins::SELECT, 4, 0x0C)
                .with_data(citycard_proto::consts::AID.to_vec())
                .to_short_bytes()
                .unwrap(),
        )
        .unwrap();
    });
    b.finish()
}

/// `error-not-selected`: commands before SELECT.
fn error_not_selected() -> Vector {
    let mut b = Builder::new(
        "error-not-selected",
        "Commands before the application is selected, and SELECT of another AID, are refused.",
    );
    b.raw(
        "GENERAL AUTHENTICATE before SELECT: 6985",
        &gen_auth(&[0x7C, 0x00]),
    );
    b.raw(
        "SELECT of an unknown AID: 6A82",
        &Command::new(0, ins::SELECT, 4, 0)
            .with_data(vec![0xF0, 0, 0, 0, 0, 1])
            .with_le(256)
            .to_short_bytes()
            .unwrap(),
    );
    b.raw(
        "GET CHALLENGE after a failed SELECT: 6985",
        &[0x00, 0x84, 0x00, 0x00, 0x10],
    );
    b.finish_without_seed()
}

/// `error-malformed`: malformed and unsupported APDUs.
fn error_malformed() -> Vector {
    let mut b = Builder::new(
        "error-malformed",
        "Malformed and unsupported APDUs get ISO status words, never a crash.",
    );
    b.with(|s| {
        s.note("SELECT");
        s.send(&select_command()).unwrap();
    });
    b.raw("3-byte APDU: 6700", &[0x00, 0xA4, 0x04]);
    b.raw(
        "Lc larger than the data: 6700",
        &[0x00, 0xA4, 0x04, 0x00, 0x05, 0x01],
    );
    b.raw(
        "extended length: 6700",
        &[0x00, 0x86, 0x00, 0x00, 0x00, 0x00, 0x01, 0xAA],
    );
    b.raw("unknown INS: 6D00", &[0x00, 0xCA, 0x00, 0x00, 0x00]);
    b.raw(
        "wrong CLA for GENERAL AUTHENTICATE: 6E00",
        &[0x80, 0x86, 0x00, 0x00, 0x02, 0x7C, 0x00, 0x00],
    );
    b.raw(
        "GET RESPONSE with nothing pending: 6985",
        &[0x00, 0xC0, 0x00, 0x00, 0x00],
    );
    b.raw(
        "chaining on a command that does not chain: 6884",
        &[0x10, 0x86, 0x00, 0x00, 0x02, 0x7C, 0x00],
    );
    b.raw(
        "PSO on a blank card (life cycle is checked before parameters): 6985",
        &[0x00, 0x2A, 0x00, 0x00, 0x01, 0x00],
    );
    b.raw(
        "GET CHALLENGE on a blank card: 6985",
        &[0x00, 0x84, 0x00, 0x00, 0x10],
    );
    b.raw(
        "GENERAL AUTHENTICATE on a blank card: 6985 (the life cycle is public)",
        &gen_auth(&[0x7C, 0x00]),
    );
    b.finish()
}

/// `prepare`: preparation of a blank card.
fn prepare_vector(city: &TestCity) -> Vector {
    let mut b = Builder::new("prepare", "Preparation of a blank card: STORE PREPARATION CERTIFICATE without PREPARE and bad PREPARE data are refused (6A80); PREPARE answers the attestation key; a certificate whose effective date is not the preparation date is refused (6A80, nothing written); PREPARE again, the preparer-signed certificate: one write, blank → prepared (03); PREPARE is then refused (6985).");
    b.city_keys(city);
    b.with(|s| {
        s.note("SELECT");
        s.send(&select_command()).unwrap();
    });
    let prepare_cmd = prepare_command(city);
    let any_cert = script::preparation_certificate(
        city,
        &test_key("not a card").public_key(),
        date(PREPARATION_DATE),
    )
    .unwrap();
    let store = |cert: &citycard_proto::cert::Certificate| {
        Command::new(cla::PROPRIETARY, ins::STORE_PREPARATION_CERTIFICATE, 0, 0)
            .with_data(cert.as_bytes().to_vec())
    };
    b.with(|s| {
        s.note("STORE PREPARATION CERTIFICATE without PREPARE: 6A80");
        let r = s.send(&store(&any_cert)).unwrap();
        assert_eq!(r.sw, StatusWord::IncorrectData);
        s.note("PREPARE with a malformed root key: 6A80");
        let r = s
            .send(
                &Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
                    .with_data(vec![0x42, 0x01, 0x41, 0x86, 0x01, 0x02, 0x82, 0x00])
                    .with_le(256),
            )
            .unwrap();
        assert_eq!(r.sw, StatusWord::IncorrectData);
        s.note("PREPARE: the card answers its attestation key");
        let k_a = pers::decode_attestation_key(&s.send(&prepare_cmd).unwrap().data).unwrap();
        let wrong = script::preparation_certificate(city, &k_a, date(PREPARATION_DATE).add_days(1))
            .unwrap();
        s.note("STORE PREPARATION CERTIFICATE dated another day: 6A80, nothing written");
        let r = s.send(&store(&wrong)).unwrap();
        assert_eq!(r.sw, StatusWord::IncorrectData);
        s.note("PREPARE again");
        let k_a = pers::decode_attestation_key(&s.send(&prepare_cmd).unwrap().data).unwrap();
        let good = script::preparation_certificate(city, &k_a, date(PREPARATION_DATE)).unwrap();
        s.note("STORE PREPARATION CERTIFICATE: 9000 (one write)");
        s.expect_ok("STORE", &store(&good)).unwrap();
        s.note("SELECT: life cycle 03 (prepared)");
        s.send(&select_command()).unwrap();
        s.note("PREPARE on a prepared card: 6985");
        let r = s.send(&prepare_cmd).unwrap();
        assert_eq!(r.sw, StatusWord::ConditionsNotSatisfied);
    });
    b.finish()
}

/// The PREPARE command of the test city.
fn prepare_command(city: &TestCity) -> Command {
    Command::new(cla::PROPRIETARY, ins::PREPARE, 0, 0)
        .with_data(
            pers::Prepare {
                issuer: crate::keys::ISSUER.into(),
                root: city.root.public_key(),
                date: date(PREPARATION_DATE),
            }
            .encode()
            .unwrap(),
        )
        .with_le(256)
}

/// `personalise`: a whole personalisation for 8 groups.
fn personalise_vector(city: &TestCity) -> Vector {
    let prepare_cmd = prepare_command(city);
    let mut b = Builder::new("personalise", "A whole personalisation for 8 linkability groups: preparation, station certificate, challenge, station authentication (the card generates 8 group keys and answers its preparation certificate and the sealed group keys), secured PUT DATA of the 8 records, 8 salt seeds and the stored values, ACTIVATE answering the sealed issuance check value (prepared → issued). Then everything that would write is refused.");
    b.personalise(city, PERSONALISE_GROUPS);
    b.with(|s| {
        s.note("SELECT: life cycle 07 (issued)");
        s.send(&select_command()).unwrap();
    });
    b.raw(
        "PUT DATA after issuance: 6985",
        &[0x80, 0xDA, 0x00, 0x00, 0x01, 0x00],
    );
    b.raw(
        "ACTIVATE after issuance: 6985",
        &[0x80, 0x44, 0x00, 0x00, 0x01, 0x00],
    );
    b.raw(
        "PREPARE after issuance: 6985",
        &prepare_cmd.to_short_bytes().unwrap(),
    );
    b.finish()
}

/// `error-station`: station authentication failures.
fn error_station(city: &TestCity) -> Vector {
    let mut b = Builder::new("error-station", "Station authentication failures on a prepared card: another city's station certificate, EXTERNAL AUTHENTICATE without a verified station (the card still verifies one signature, with its own attestation key) or over the wrong challenge, secured commands without a session. All 6982, nothing written.");
    b.prepare(city);
    let other = city_named("LIEGE", "forged root");
    b.with(|s| {
        s.note("PSO with a station certificate signed by another root: 6982");
        let r = s
            .send(&script::pso_command(&other.station_certificate))
            .unwrap();
        assert_eq!(r.sw, StatusWord::SecurityStatusNotSatisfied);
    });
    b.raw("GET CHALLENGE", &[0x00, 0x84, 0x00, 0x00, 0x10]);
    b.raw("EXTERNAL AUTHENTICATE without a verified station: 6982", &{
        let auth = pers::StationAuth {
            ephemeral: crypto::encode_point(&test_key("x").public_key()),
            signature: [1; 64],
            groups: 1,
        };
        Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0)
            .with_data(auth.encode())
            .with_le(256)
            .to_short_bytes()
            .unwrap()
    });
    b.with(|s| {
        s.note("PSO: VERIFY CERTIFICATE (station)");
        s.send(&script::pso_command(&city.station_certificate))
            .unwrap();
        s.note("GET CHALLENGE");
        s.send(&Command::new(0, ins::GET_CHALLENGE, 0, 0).with_le(16))
            .unwrap();
        s.note("EXTERNAL AUTHENTICATE signed over the wrong challenge: 6982");
        let e = crypto::encode_point(&test_key("station ephemeral").public_key());
        let sig = crypto::sign(&city.station, &pers::station_auth_message(&[0; 16], &e, 1));
        let r = s
            .send(
                &Command::new(0, ins::EXTERNAL_AUTHENTICATE, 0, 0)
                    .with_data(
                        pers::StationAuth {
                            ephemeral: e,
                            signature: sig,
                            groups: 1,
                        }
                        .encode(),
                    )
                    .with_le(256),
            )
            .unwrap();
        assert_eq!(r.sw, StatusWord::SecurityStatusNotSatisfied);
    });
    b.raw(
        "PUT DATA without a session: 6982",
        &[
            0x80, 0xDA, 0x00, 0x00, 0x11, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    b.with(|s| {
        s.note("SELECT: still 03 (prepared)");
        s.send(&select_command()).unwrap();
    });
    b.finish()
}

/// `error-activate-wrong-key`: ACTIVATE refuses a record for another key.
fn error_activate_wrong_key(city: &TestCity) -> Vector {
    let mut b = Builder::new("error-activate-wrong-key", "ACTIVATE refuses a record that certifies another key than the card's group key (6A80); nothing is written, the card stays prepared.");
    b.prepare(city);
    b.with(|s| {
        let (_keys, mut channel) =
            script::authenticate_station(s, city, &test_key("station ephemeral"), 1).unwrap();
        let wrong = test_key("not this card").public_key();
        let value = StoredValue::new(AttributeId::RESIDENT, vec![1]).unwrap();
        let seed = [7u8; 16];
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let record = RecordBody::new(
            0,
            &city.station_certificate.fingerprint(),
            record::valid_from_for(date(ISSUE_DATE), date((2026, 1, 1))),
            date(VALID_TO),
            wrong,
            &[value.digest(&seed)],
            &mut rng,
        )
        .unwrap()
        .sign(&city.station)
        .unwrap();
        let mut data = record.as_bytes().to_vec();
        data.extend_from_slice(&record::encode_salt_seed(0, &seed));
        data.extend_from_slice(&value.encode());
        s.note("PUT DATA (record for another key, salt seed, value)");
        s.send(&secured(&mut channel, ins::PUT_DATA, &data))
            .unwrap();
        s.note("ACTIVATE: 6A80");
        let r = s.send(&secured(&mut channel, ins::ACTIVATE, &[])).unwrap();
        assert_eq!(r.sw, StatusWord::IncorrectData);
        s.note("SELECT: still 03 (prepared)");
        s.send(&select_command()).unwrap();
    });
    b.finish()
}

/// `verify-<profile>`: a first and a cached tap of each reader profile.
fn verify_profiles(city: &TestCity) -> Vec<Vector> {
    let mut out = Vec::new();
    for (profile, requested) in profiles() {
        let name: &'static str = Box::leak(format!("verify-{profile}").into_boxed_str());
        let description: &'static str = Box::leak(
            format!("Personalise for {VERIFY_GROUPS} groups, then two taps by the '{profile}' reader (group {}) requesting {requested}: a first tap sending the certificate first (SELECT, PSO, GENERAL AUTHENTICATE, GET RESPONSE) and a second, cached tap (SELECT, GENERAL AUTHENTICATE, GET RESPONSE).", crate::keys::group_of(profile))
                .into_boxed_str(),
        );
        let mut b = Builder::new(name, description);
        b.personalise(city, VERIFY_GROUPS);
        b.verify(city, profile, requested, true, &format!("tap 1 {profile}"));
        b.verify(city, profile, requested, false, &format!("tap 2 {profile}"));
        out.push(b.finish());
    }
    out
}

/// `verify-cache-first`: a first tap trying the cache first.
fn verify_cache_first(city: &TestCity) -> Vector {
    let (_, library) = profiles().into_iter().next().unwrap();
    let mut b = Builder::new("verify-cache-first", "First tap of the library reader trying the cache first: SELECT, GENERAL AUTHENTICATE answered with a decoy (61xx, the same length as an answer; the reader's tag check fails), PSO with the reader certificate, GENERAL AUTHENTICATE with a new ephemeral key: the real answer.");
    b.personalise(city, VERIFY_GROUPS);
    let lib = reader(city, "library");
    b.key("reader_library", &lib.key);
    let e1 = test_key("cache first 1");
    let e2 = test_key("cache first 2");
    b.key("reader_ephemeral_cache first 1", &e1);
    b.key("reader_ephemeral_cache first 2", &e2);
    b.with(|s| {
        s.note("SELECT");
        s.send(&select_command()).unwrap();
        let first = script::general_authenticate(s, &lib, library, date(TODAY), e1);
        assert!(matches!(
            first,
            Err(script::ScriptError::Protocol(
                citycard_proto::error::Error::Decoy
            ))
        ));
        s.note("PSO: VERIFY CERTIFICATE (reader)");
        s.expect_ok("PSO reader", &script::pso_command(&lib.certificate))
            .unwrap();
        script::general_authenticate(s, &lib, library, date(TODAY), e2).unwrap();
    });
    b.finish()
}

/// `error-verify-uniform`: uniform refusals on an issued card.
fn error_verify_uniform(city: &TestCity) -> Vector {
    let (_, library) = profiles().into_iter().next().unwrap();
    let lib = reader(city, "library");
    let mut b = Builder::new("error-verify-uniform", "What a party without a partner key sees on an issued card does not depend on why the card refuses: PSO answers 9000 for another city's certificate and for a good one (the first PSO of the power-up writes once either way), and GENERAL AUTHENTICATE answers a decoy of the same length (61xx, then GET RESPONSE) for a certificate the card has not verified, a request beyond the grant, a date outside the certificate's validity or before the card date, and an invalid ephemeral point. Only a malformed command (its bytes alone) gets 6A80.");
    b.personalise(city, VERIFY_GROUPS);
    let eph = test_key("uniform");
    b.key("reader_library", &lib.key);
    b.key("reader_ephemeral_uniform", &eph);
    let req = |reader_fp: [u8; 8], requested: AttributeSet, on: citycard_proto::date::Date| {
        citycard_proto::auth::AuthRequest {
            certificate: reader_fp,
            reader_ephemeral: crypto::encode_point(&eph.public_key()),
            requested,
            date: on,
        }
        .encode()
    };
    let decoy = |s: &mut Script<'_>, note: &str, data: Vec<u8>| {
        let sent = data.clone();
        s.note(note);
        let r = s
            .send(
                &Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
                    .with_data(data)
                    .with_le(256),
            )
            .unwrap();
        assert_eq!(r.sw, StatusWord::Success);
        let requested = citycard_proto::auth::AuthRequest::decode(&sent)
            .unwrap()
            .requested;
        assert_eq!(r.data.len(), citycard_proto::auth::answer_len(requested));
    };
    let other = city_named("LIEGE", "forged root");
    let forged = reader(&other, "library");
    b.with(|s| {
        s.note("SELECT");
        s.send(&select_command()).unwrap();
        decoy(
            s,
            "GENERAL AUTHENTICATE with a certificate the card has not verified: decoy",
            req(lib.certificate.fingerprint(), library, date(TODAY)),
        );
        s.note("PSO with a reader certificate from another root: 9000 (first PSO: one write, state unchanged)");
        s.expect_ok("PSO forged", &script::pso_command(&forged.certificate))
            .unwrap();
        s.note("PSO: VERIFY CERTIFICATE (library reader): 9000 (session slot, no write)");
        s.expect_ok("PSO library", &script::pso_command(&lib.certificate))
            .unwrap();
        decoy(
            s,
            "request beyond the grant (name): decoy",
            req(
                lib.certificate.fingerprint(),
                library.with(AttributeId::NAME),
                date(TODAY),
            ),
        );
        decoy(
            s,
            "date after the certificate's expiry: decoy",
            req(lib.certificate.fingerprint(), library, date((2028, 1, 1))),
        );
        decoy(
            s,
            "date before the card date (the preparation date): decoy",
            req(lib.certificate.fingerprint(), library, date((2026, 10, 31))),
        );
        decoy(s, "invalid ephemeral point: decoy", {
            let mut d = req(lib.certificate.fingerprint(), library, date(TODAY));
            for b in d.iter_mut().skip(15).take(32) {
                *b = 0xFF;
            }
            d
        });
        s.note("malformed template: 6A80");
        let r = s
            .send(
                &Command::new(cla::ISO, ins::GENERAL_AUTHENTICATE, 0, 0)
                    .with_data(vec![0x7C, 0x03, 0x80, 0x01, 0x00])
                    .with_le(256),
            )
            .unwrap();
        assert_eq!(r.sw, StatusWord::IncorrectData);
    });
    b.finish()
}

/// `terminate`: a station terminates an issued card.
fn terminate_vector(city: &TestCity) -> Vector {
    let mut b = Builder::new("terminate", "A station terminates an issued card: the station certificate (first PSO of the power-up: one write), a challenge, EXTERNAL AUTHENTICATE (the card answers its stored group keys, sealed), TERMINATE: keys and personal data are wiped; SELECT then answers 6283 and every other command 6985.");
    b.personalise(city, 1);
    b.with(|s| {
        s.note("SELECT");
        s.send(&select_command()).unwrap();
        let (_, mut channel) =
            script::authenticate_station(s, city, &test_key("station ephemeral"), 1).unwrap();
        s.note("TERMINATE");
        let header = [cla::PROPRIETARY, ins::TERMINATE, 0, 0];
        s.expect_ok(
            "TERMINATE",
            &Command::new(cla::PROPRIETARY, ins::TERMINATE, 0, 0)
                .with_data(channel.seal(header, &[]).unwrap()),
        )
        .unwrap();
    });
    b.raw(
        "SELECT of a terminated card: 6283",
        &select_command().to_short_bytes().unwrap(),
    );
    b.raw("GENERAL AUTHENTICATE: 6985", &gen_auth(&[0x7C, 0x00]));
    b.finish()
}

impl Builder {
    fn finish_without_seed(self) -> Vector {
        let mut v = self.finish();
        v.card_seed = None;
        v
    }
}

/// The folder holding the committed vectors.
pub fn vectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.parent())
        .map(|root| root.join("applet-spec/vectors"))
        .unwrap_or_default()
}

/// Loads every committed vector, sorted by name.
pub fn load_all(dir: &std::path::Path) -> Result<Vec<Vector>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Vector =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(v);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The card a vector expects: fresh from the factory, deterministic with the vector's seed.
pub fn card_for(vector: &Vector) -> Result<Applet<MemoryStorage, ChaCha20Rng>, String> {
    Ok(deterministic_card(seed_of(vector)?))
}

/// The vector's seed (all zero when the vector has none).
pub fn seed_of(vector: &Vector) -> Result<[u8; 32], String> {
    match &vector.card_seed {
        None => Ok([0; 32]),
        Some(h) => hex::decode(h)
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "card_seed must be 32 bytes".to_string()),
    }
}

/// Serialises a vector as committed (pretty JSON, trailing newline).
pub fn to_json(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
