//! The revocation row: a city registry with 1,000,000 issued cards and
//! 100,000 revoked (plus revoked cards long expired, which pruning drops),
//! `revocation publish` as the office runs it, the partner bundle's size
//! against the plain 8-byte-per-id list, a reader's load time and the cost of
//! one lookup.
//!
//! The registry is filled with SQL inserts in one transaction (random card
//! keys: nothing here needs a valid point, and generating a million P-256
//! keys would measure the key generator); everything measured goes through
//! the product's own code.

use std::time::Instant;

use anyhow::Context;
use citycard_issuer::home::IssuerHome;
use citycard_keys::FixedSecrets;
use citycard_proto::revocation::{RevocationId, TrustBundle};
use citycard_proto::tlv;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Serialize;
use sha2::Digest;

/// The revocation row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct RevocationRow {
    /// Cards in the registry (issued and revoked).
    pub cards_in_registry: usize,
    /// Revoked cards still valid: the ids on the list.
    pub ids: usize,
    /// Revoked cards expired longer than the grace: pruned, not on the list.
    pub pruned: usize,
    /// `IssuerHome::publish` (`citycard revocation publish`): registry query,
    /// coding, root key opened, two signatures, files written (ms).
    pub publish_ms: f64,
    /// The partner's trust bundle, Rice-coded ids (bytes).
    pub bundle_bytes: usize,
    /// The same bundle with the ids as a plain list of 8-byte ids (bytes).
    pub bundle_bytes_plain_list: usize,
    /// A reader loading the bundle file: read, decode, verify every
    /// signature (median ms).
    pub reader_load_ms: f64,
    /// One `is_revoked` lookup, half of them hits (mean µs).
    pub lookup_us: f64,
}

/// A fresh issuer home with one station, in a temporary directory.
fn bench_home() -> anyhow::Result<(tempfile::TempDir, IssuerHome, FixedSecrets, u64)> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let secrets = FixedSecrets::new("bench revocation passphrase", "");
    let home = IssuerHome::init(
        &dir.path().join("city"),
        "Bench City",
        "LIEGE",
        "LG",
        None,
        None,
        &secrets,
    )?;
    let (today, now_unix) = citycard_issuer::home::now()?;
    home.add_station("desk-1", 180, None, &secrets, today)?;
    Ok((dir, home, secrets, now_unix))
}

/// Fills `home`'s registry with `issued` cards in one SQL transaction: the
/// first `revoked` revoked and valid, the next `expired` revoked and expired
/// long ago. Returns the ids that must be listed.
fn fill_registry(
    home: &IssuerHome,
    (issued, revoked, expired): (usize, usize, usize),
    now_unix: u64,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> anyhow::Result<Vec<RevocationId>> {
    let (today, _) = citycard_issuer::home::now()?;
    let mut listed: Vec<RevocationId> = Vec::with_capacity(revoked);
    let mut conn = rusqlite::Connection::open(home.dir().join("registry.sqlite"))?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO cards (card_number, resident_ref, station, issued_on, expires_on, \
             state, card_key, revocation_id, revoke_reason, revoked_at, created_at) \
             VALUES (?1, ?2, 'desk-1', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let valid_to = today.add_days(5 * 365).to_string();
        let issued_on = today.to_string();
        for i in 0..issued {
            let mut key = [0u8; 33];
            key[0] = 2;
            rng.fill_bytes(&mut key[1..]);
            let digest = sha2::Sha256::digest(key);
            let mut id: RevocationId = [0; 8];
            for (byte, d) in id.iter_mut().zip(digest.iter()) {
                *byte = *d;
            }
            let (state, reason, at, expires) = if i < revoked {
                listed.push(id);
                (
                    "revoked",
                    Some("lost"),
                    Some(now_unix as i64),
                    valid_to.as_str(),
                )
            } else if i < revoked + expired {
                ("revoked", Some("lost"), Some(now_unix as i64), "2019-12-31")
            } else {
                ("issued", None, None, valid_to.as_str())
            };
            insert.execute(rusqlite::params![
                format!("LG-{i:07}"),
                format!("R-{i}"),
                issued_on,
                expires,
                state,
                key.as_slice(),
                id.as_slice(),
                reason,
                at,
                now_unix as i64,
            ])?;
        }
    }
    tx.commit()?;
    Ok(listed)
}

/// A reader loading the bundle file `path` (read, decode, verify every
/// signature) seven times: the median (ms) and the loaded bundle.
fn reader_load(path: &std::path::Path) -> anyhow::Result<(f64, TrustBundle)> {
    let mut loads = Vec::new();
    let mut loaded = None;
    for _ in 0..7 {
        let started = Instant::now();
        let b = citycard_reader::load_bundle(path)?;
        b.verify()?;
        loads.push(started.elapsed().as_secs_f64() * 1000.0);
        loaded = Some(b);
    }
    loads.sort_by(f64::total_cmp);
    let median = loads.get(loads.len() / 2).copied().unwrap_or(0.0);
    Ok((median, loaded.context("no load")?))
}

/// The mean time of one `is_revoked` lookup in `bundle` (µs) over 200,000
/// queries, half of them ids of `listed`; fails if a listed id is missed.
fn lookups(
    bundle: &TrustBundle,
    listed: &[RevocationId],
    rng: &mut rand_chacha::ChaCha20Rng,
) -> anyhow::Result<f64> {
    let queries: Vec<RevocationId> = (0..200_000)
        .map(|i| {
            if i % 2 == 0 {
                let pick = (rng.next_u32() as usize) % listed.len().max(1);
                listed.get(pick).copied().unwrap_or_default()
            } else {
                rng.next_u64().to_be_bytes()
            }
        })
        .collect();
    let started = Instant::now();
    let mut hits = 0usize;
    for q in &queries {
        hits += usize::from(
            std::hint::black_box(bundle)
                .body()
                .revocations
                .is_revoked(q),
        );
    }
    let lookup_us = started.elapsed().as_secs_f64() * 1e6 / queries.len() as f64;
    anyhow::ensure!(hits >= queries.len() / 2, "lookups missed listed ids");
    Ok(lookup_us)
}

/// Fills a fresh issuer home's registry with `issued` cards, of which
/// `revoked` revoked and valid and `expired` revoked and expired long ago,
/// then measures.
pub fn measure(
    issued: usize,
    revoked: usize,
    expired: usize,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<RevocationRow> {
    let (dir, home, secrets, now_unix) = bench_home()?;
    progress(&format!(
        "revocation: filling the registry with {issued} cards, {revoked} revoked, {expired} revoked and expired"
    ));
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2026);
    let listed = fill_registry(&home, (issued, revoked, expired), now_unix, &mut rng)?;

    progress("revocation: publishing (list + bundle)");
    let started = Instant::now();
    let bundle = home.publish(7, &secrets, now_unix)?;
    let publish_ms = started.elapsed().as_secs_f64() * 1000.0;
    let list = bundle.body().revocations.body();
    anyhow::ensure!(
        list.revoked.len() == revoked,
        "the list holds {} ids, expected {revoked}",
        list.revoked.len()
    );

    progress("revocation: reader load and lookups");
    let path = dir.path().join("partner.bundle");
    std::fs::write(&path, bundle.as_bytes())?;
    let (reader_load_ms, loaded) = reader_load(&path)?;
    let lookup_us = lookups(&loaded, &listed, &mut rng)?;
    Ok(RevocationRow {
        cards_in_registry: issued,
        ids: list.revoked.len(),
        pruned: expired,
        publish_ms,
        bundle_bytes: bundle.as_bytes().len(),
        bundle_bytes_plain_list: plain_bundle_len(&bundle),
        reader_load_ms,
        lookup_us,
    })
}

/// The size of `bundle` if its list carried the ids as a plain list
/// (`84 8·n`, ids concatenated) instead of the count, parameter and Rice
/// coding.
fn plain_bundle_len(bundle: &TrustBundle) -> usize {
    let list = bundle.body().revocations.body();
    let ids = list.revoked.concat();
    let mut body = Vec::new();
    tlv::push(&mut body, 0x80, &[1]);
    tlv::push(&mut body, 0x42, list.issuer.as_bytes());
    tlv::push(&mut body, 0x85, &[list.group]);
    tlv::push(&mut body, 0x81, &list.sequence.to_be_bytes());
    tlv::push(&mut body, 0x82, &list.issued_at.to_be_bytes());
    tlv::push(&mut body, 0x83, &list.next_update.to_be_bytes());
    tlv::push(&mut body, 0x84, &ids);
    let plain_list = tlv::join_signed(0xE3, &tlv::encode(0xE4, &body), &[0; 64]);
    let coded_list = bundle.body().revocations.as_bytes().len();
    let header_delta = header_len(bundle.as_bytes().len() - coded_list + plain_list.len())
        .saturating_sub(header_len(bundle.as_bytes().len()));
    bundle.as_bytes().len() - coded_list + plain_list.len() + 2 * header_delta
}

/// Bytes of a BER length field for `len`.
fn header_len(len: usize) -> usize {
    let mut v = Vec::new();
    tlv::push_len(&mut v, len);
    v.len()
}
