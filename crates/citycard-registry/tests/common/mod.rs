//! Helpers shared by the registry's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use citycard_proto::{crypto, revocation, AttributeId, Date};
use citycard_registry::{NewIssuance, Registry, RevocationReason};
use rand_chacha::rand_core::SeedableRng;

/// A real card key pair's public half and its revocation id, from a seed.
pub fn card_key(seed: u64) -> ([u8; 33], [u8; 8]) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let sk = crypto::generate(&mut rng);
    let pk = sk.public_key();
    (crypto::encode_point(&pk), revocation::revocation_id(&pk))
}

pub fn date(y: u16, m: u8, d: u8) -> Date {
    Date::new(y, m, d).unwrap()
}

pub const NAME: &str = "Zoé Quintessa-Marlowe";
pub const ADDRESS: &str = "Rue des Oubliés 17, 4000 Liège";

pub fn attributes(name: &str) -> Vec<(AttributeId, Vec<u8>)> {
    vec![
        (AttributeId::NAME, name.as_bytes().to_vec()),
        (
            AttributeId::BIRTH_DATE,
            date(1990, 5, 17).to_bytes().to_vec(),
        ),
        (AttributeId::ADDRESS, ADDRESS.as_bytes().to_vec()),
        (AttributeId::LANGUAGE, b"fr".to_vec()),
        (AttributeId::RESIDENT, vec![1]),
    ]
}

pub fn issuance<'a>(
    card_number: &'a str,
    resident_ref: &'a str,
    attributes: &'a [(AttributeId, Vec<u8>)],
) -> NewIssuance<'a> {
    NewIssuance {
        card_number: card_number.into(),
        resident_ref,
        station: "desk-1",
        issued_on: date(2026, 3, 1),
        expires_on: date(2031, 2, 28),
        attributes,
        batch: None,
        replaces: None,
        actor: "op-1",
        lease: None,
        retain_until: Some(i64::MAX),
    }
}

pub fn with_replaces(n: NewIssuance<'_>, reason: RevocationReason) -> NewIssuance<'_> {
    NewIssuance {
        replaces: Some(reason),
        ..n
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub reg: Registry,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let reg = Registry::create(&path).unwrap();
    Fixture { dir, path, reg }
}

/// Begins and commits an issuance; returns the card number.
pub fn issue(reg: &mut Registry, resident_ref: &str, seed: u64) -> String {
    issue_named(reg, resident_ref, NAME, seed)
}

/// Begins and commits an issuance for a person of that name; returns the card number.
pub fn issue_named(reg: &mut Registry, resident_ref: &str, name: &str, seed: u64) -> String {
    let number = reg.next_card_number("LG").unwrap();
    let mut attrs = attributes(name);
    if name != NAME {
        attrs[2] = (AttributeId::ADDRESS, b"Other Street 1".to_vec());
    }
    let intent = reg
        .begin_intent(&issuance(&number, resident_ref, &attrs))
        .unwrap();
    let (key, rid) = card_key(seed);
    reg.commit_issued(intent.id, &key, &rid, "op-1").unwrap();
    number
}

/// A raw connection to the same file, bypassing the registry.
pub fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn
}

/// Every byte of the registry's files (database, WAL, journal).
pub fn all_bytes(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-journal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(p)) {
            out.extend(bytes);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
