//! Personalisation: counts of the real exchange, host time per card, batch
//! throughput through pcscd, registry commits per second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use citycard_card::{Applet, Storage};
use citycard_emulator::{serve, FileStore, ServeOptions};
use citycard_proto::consts::ins;
use citycard_proto::{apdu::ContactlessCard, consts::LifeCycle, crypto};
use citycard_registry::NewIssuance;
use citycard_transport::{CardChannel, CardTransport, PcscContext, TraceEntry, Traced};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::city::{counted, record_storage, state_len, stored_values, City};
use crate::e2e::{port, reader};
use crate::model::{ctr_calls, estimate, ops_since, CardOps, Estimate, Writes};

/// Counts of one part of the issuance exchange.
#[derive(Clone, Debug, Serialize)]
pub struct Part {
    /// Command APDUs.
    pub apdus: u64,
    /// Bytes of command APDUs.
    pub bytes_command: u64,
    /// Bytes of responses.
    pub bytes_response: u64,
    /// On-card operations.
    pub card_ops: CardOps,
    /// Estimated card + air time.
    pub estimate: Estimate,
}

fn part(entries: &[TraceEntry], card: &citycard_card::OpCount, writes: Writes) -> Part {
    let apdus = entries.len() as u64;
    let bytes_command = entries.iter().map(|e| e.command.len() as u64).sum();
    let bytes_response = entries.iter().map(|e| e.response.len() as u64).sum();
    let ops = CardOps::from_card(card, ctr_calls(entries), writes);
    Part {
        apdus,
        bytes_command,
        bytes_response,
        card_ops: ops,
        estimate: estimate(&ops, apdus, bytes_command + bytes_response),
    }
}

/// Counts of one issuance (`issue_one`): personalisation proper (SPEC §12's
/// scope) and the read-back the issuer does before committing.
#[derive(Clone, Debug, Serialize)]
pub struct IssuanceCounts {
    /// SELECT … ACTIVATE.
    pub personalise: Part,
    /// Read-back: SELECT, GENERAL AUTHENTICATE (+PSO of the check credential), GET RESPONSE.
    pub read_back: Part,
    /// Both.
    pub total: Part,
    /// Linkability groups issued on the card.
    pub groups: u32,
    /// Attributes stored on the card.
    pub stored_values: u32,
    /// Card storage the group records take: per group the record, the
    /// group's private key and its salt seed (bytes).
    pub record_storage_bytes: u64,
    /// The card's whole persistent state after issuance (bytes).
    pub state_bytes: u64,
    /// The whole traced exchange.
    #[serde(skip)]
    pub total_entries: Vec<TraceEntry>,
}

/// Issues one card in process and splits its trace at the second SELECT.
pub fn counts(city: &mut City) -> anyhow::Result<IssuanceCounts> {
    let mut ch = city.blank_card()?;
    let (ops0, w0) = counted(&ch);
    city.issue(&mut ch)?;
    let (ops1, w1) = counted(&ch);
    let w = w1.since(&w0);
    let card = ops_since(&ops1.unwrap_or_default(), &ops0.unwrap_or_default());
    let values = stored_values(&ch);
    let entries = ch.transport_mut().take_entries();
    let split = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.command.get(1) == Some(&ins::SELECT))
        .nth(1)
        .map_or(entries.len(), |(i, _)| i);
    let (pers, back) = entries.split_at(split);
    // Writes: ACTIVATE (the card was prepared before it reached the
    // station). There is no read-back any more: the card's sealed check
    // value at ACTIVATE replaces it, so `read_back` stays empty and the
    // writes are those of personalisation proper.
    let personalise = part(pers, &card, w);
    Ok(IssuanceCounts {
        groups: u32::from(personalise_groups(pers)),
        stored_values: values,
        record_storage_bytes: record_storage(&ch),
        state_bytes: state_len(&ch),
        personalise,
        read_back: part(back, &citycard_card::OpCount::default(), Writes::default()),
        total: part(&entries, &card, w),
        total_entries: entries.clone(),
    })
}

/// G from the EXTERNAL AUTHENTICATE of a personalisation (`83 01 G`).
fn personalise_groups(entries: &[TraceEntry]) -> u8 {
    entries
        .iter()
        .filter(|e| e.command.get(1) == Some(&ins::EXTERNAL_AUTHENTICATE))
        .find_map(|e| match e.command.as_slice() {
            [.., 0x83, 0x01, g, _le] => Some(*g),
            _ => None,
        })
        .unwrap_or(0)
}

/// Host time of issuance in process.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostIssuance {
    /// Cards issued.
    pub cards: usize,
    /// `issue_one` wall time per card, the in-process card's own compute included (ms, median).
    pub total_ms_median: f64,
    /// Time inside the card (`transmit_raw` of the in-process card) per card (ms, median).
    pub card_ms_median: f64,
    /// Host side alone (station signing, registry intent and commit, protocol, read-back checks): total − card, median (ms).
    pub host_ms_median: f64,
}

/// Issues `cards` cards in process, timing each.
pub fn host_issuance(city: &mut City, warmup: usize, cards: usize) -> anyhow::Result<HostIssuance> {
    let mut total = Vec::new();
    let mut card = Vec::new();
    let mut host = Vec::new();
    for i in 0..warmup + cards {
        let mut ch = city.blank_card()?;
        let start = Instant::now();
        city.issue(&mut ch)?;
        let t = start.elapsed();
        let inside = ch.transport().stats().elapsed;
        if i >= warmup {
            total.push(t);
            card.push(inside);
            host.push(t.saturating_sub(inside));
        }
    }
    Ok(HostIssuance {
        cards,
        total_ms_median: crate::stats::median_us(&mut total) / 1000.0,
        card_ms_median: crate::stats::median_us(&mut card) / 1000.0,
        host_ms_median: crate::stats::median_us(&mut host) / 1000.0,
    })
}

/// Registry commits per second: `begin_intent` + `commit_issued` pairs.
pub fn registry_commits_per_second(city: &mut City, n: usize) -> anyhow::Result<f64> {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let keys: Vec<[u8; 33]> = (0..n)
        .map(|_| crypto::encode_point(&crypto::generate(&mut rng).public_key()))
        .collect();
    let prefix = city.home.config().card_number_prefix.clone();
    let expires = city.today.add_days(365);
    let start = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        let number = city.registry.next_card_number(&prefix)?;
        let resident_ref = format!("R-{i:07}");
        let intent = city.registry.begin_intent(&NewIssuance {
            card_number: number.as_str().into(),
            resident_ref: &resident_ref,
            station: "desk-1",
            issued_on: city.today,
            expires_on: expires,
            attributes: &[],
            batch: None,
            replaces: None,
            actor: "bench",
            lease: None,
            retain_until: None,
        })?;
        let rid = crypto::sha256(&[key]);
        let mut revocation_id = [0u8; 8];
        revocation_id.copy_from_slice(rid.get(..8).context("id")?);
        city.registry
            .commit_issued(intent.id, key, &revocation_id, "bench")?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A card that asks to be swapped when it is reset after being issued (the
/// operator takes it out and puts the next blank card in).
struct SwapOnIssuedReset<C> {
    inner: C,
    swap: Arc<AtomicBool>,
}

impl<S: Storage, R: rand_core::CryptoRngCore> ContactlessCard for SwapOnIssuedReset<Applet<S, R>> {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) {
        if self.inner.life_cycle() == Some(LifeCycle::Issued) {
            self.swap.store(true, Ordering::SeqCst);
        }
        self.inner.reset();
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, citycard_proto::apdu::CardLost> {
        self.inner.transmit(command)
    }
}

/// Batch issuance through pcscd: `cards` blank emulated cards (file-backed
/// EEPROM, as `citycard card emulate`) served one after the other in the vpcd
/// reader; each is issued with `issue_one` over PC/SC, reset, removed.
/// Returns cards per minute (card swaps included) and the median time of
/// `issue_one` over PC/SC alone (ms).
pub fn batch_through_pcscd(city: &mut City, cards: usize) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    // The stack of cards fresh from the preparation facility (SPEC §6.3),
    // one more than needed (the emulator waits with the next one).
    for served in 1..=u32::try_from(cards + 1)? {
        let store = FileStore::new(dir.path().join(format!("card-{served:03}.state")))?;
        // Another generator than the served card's (a deterministic card
        // restarted with the same seed would draw the same keys again).
        let seed = crypto::sha256(&[b"bench card preparation", &served.to_be_bytes()]);
        city.prepare(Applet::new(store, ChaCha20Rng::from_seed(seed)))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stack_dir = dir.path().to_path_buf();
    let outer = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut served = 0u32;
        while !outer.load(Ordering::SeqCst) {
            served += 1;
            let Ok(store) = FileStore::new(stack_dir.join(format!("card-{served:03}.state")))
            else {
                return;
            };
            let swap = Arc::new(AtomicBool::new(false));
            let seed = crypto::sha256(&[b"bench card", &served.to_be_bytes()]);
            let mut card = SwapOnIssuedReset {
                inner: Applet::new(store, ChaCha20Rng::from_seed(seed)),
                swap: swap.clone(),
            };
            let mut opts = ServeOptions::new(([127, 0, 0, 1], port()).into());
            let either = Arc::new(AtomicBool::new(false));
            opts.stop = Some(either.clone());
            opts.poll_interval = Duration::from_millis(5);
            let watcher = {
                let (either, swap, outer) = (either.clone(), swap.clone(), outer.clone());
                std::thread::spawn(move || {
                    while !swap.load(Ordering::SeqCst) && !outer.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    either.store(true, Ordering::SeqCst);
                })
            };
            let _ = serve(&mut card, &opts);
            let _ = watcher.join();
        }
    });
    let result = (|| {
        let ctx = PcscContext::establish()?;
        let reader = reader();
        let start = Instant::now();
        let mut issue_t = Vec::with_capacity(cards);
        for _ in 0..cards {
            ctx.wait_for_card(&reader, Some(Duration::from_secs(30)))
                .map_err(|e| anyhow::anyhow!("waiting for blank card: {e}"))?;
            let mut ch = CardChannel::new(Traced::counters_only(crate::e2e::connect()?));
            let s = Instant::now();
            city.issue(&mut ch)?;
            issue_t.push(s.elapsed());
            let mut t = ch.into_inner().into_inner();
            let _ = t.reset();
            drop(t);
            ctx.wait_for_removal(&reader, Some(Duration::from_secs(30)))
                .map_err(|e| anyhow::anyhow!("waiting for the issued card's removal: {e}"))?;
        }
        let elapsed = start.elapsed();
        if elapsed.is_zero() {
            bail!("no time elapsed");
        }
        Ok((
            cards as f64 * 60.0 / elapsed.as_secs_f64(),
            crate::stats::median_us(&mut issue_t) / 1000.0,
        ))
    })();
    stop.store(true, Ordering::SeqCst);
    let _ = handle.join();
    if let Ok(ctx) = PcscContext::establish() {
        let _ = ctx.wait_for_removal(&reader(), Some(Duration::from_secs(10)));
    }
    result
}
