//! Verification: the real exchange per profile (APDUs, bytes, card
//! operations) and the host-side cost of `citycard_reader::verify`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use citycard_proto::auth::ReaderSession;
use citycard_proto::{crypto, tlv};
use citycard_reader::{verify, Policy, Trust, Verdict};
use citycard_transport::{
    CardChannel, CardTransport, TraceEntry, Traced, TransactionFn, TransportError,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use crate::city::{counted, City, MemChannel, Profile};
use crate::model::{card_ops, ctr_calls, estimate, ops_since, CardOps, Estimate, Writes};
use crate::stats::{median_p95_us, median_us};

/// APDUs, bytes and card operations of one traced tap.
#[derive(Clone, Debug, Serialize)]
pub struct TapCounts {
    /// Command APDUs, SELECT and GET RESPONSE included.
    pub apdus: u64,
    /// Bytes of command APDUs (header, Lc, data, Le).
    pub bytes_command: u64,
    /// Bytes of responses (data and SW).
    pub bytes_response: u64,
    /// On-card operations.
    pub card_ops: CardOps,
    /// Estimated card + air time.
    pub estimate: Estimate,
    /// The exchange (command and response bytes), for replay.
    #[serde(skip)]
    pub entries: Vec<TraceEntry>,
}

impl TapCounts {
    /// The counts of the traced `entries`: the card's own operation counts
    /// `card` when it has them (else those the trace shows) and its `writes`.
    pub(crate) fn from_entries(
        entries: Vec<TraceEntry>,
        card: Option<citycard_card::OpCount>,
        writes: Writes,
    ) -> Self {
        let apdus = entries.len() as u64;
        let bytes_command = entries.iter().map(|e| e.command.len() as u64).sum();
        let bytes_response = entries.iter().map(|e| e.response.len() as u64).sum();
        let ops = match card {
            Some(o) => CardOps::from_card(&o, ctr_calls(&entries), writes),
            None => card_ops(&entries, writes),
        };
        let estimate = estimate(&ops, apdus, bytes_command + bytes_response);
        Self {
            apdus,
            bytes_command,
            bytes_response,
            card_ops: ops,
            estimate,
            entries,
        }
    }
}

/// The exchanges of one profile.
pub struct ProfileExchange {
    /// Profile name.
    pub name: &'static str,
    /// First tap of this reader at this card, cache tried first (the
    /// reader's default): GA answered by a decoy, PSO, GA (SPEC §8 step 2).
    pub first: TapCounts,
    /// First tap of this reader at another card, certificate sent first
    /// (`Policy::always_send_certificate`): PSO, GA.
    pub first_certificate_first: TapCounts,
    /// A tap with the reader certificate cached on the card.
    pub cached: TapCounts,
    /// The seed of the reader's random generator in `cached` (fixed ephemeral key).
    pub cached_seed: [u8; 32],
}

/// One tap on `ch` under `policy`, traced; fails unless the card is genuine.
fn traced_tap(
    ch: &mut MemChannel,
    profile: &Profile,
    policy: &Policy,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<TapCounts> {
    // Every tap is a new power-up of the card (it enters the field).
    ch.transport_mut().inner_mut().reset()?;
    traced(ch, counted, profile, policy, rng, |verdict| {
        if !verdict.is_genuine() {
            bail!(
                "{}: verdict {} on a good card",
                profile.name,
                verdict.kind()
            );
        }
        Ok(())
    })
}

/// What a card counted so far: its operations (`None` for a card that does
/// not count them) and its persistent writes.
pub(crate) type Counter<T> =
    fn(&CardChannel<Traced<T>>) -> (Option<citycard_card::OpCount>, Writes);

/// One tap on `ch` by `profile` under `policy`, traced: its exchange and
/// counts (`counter`: what the card counted so far); fails unless `check`
/// accepts the verdict.
pub(crate) fn traced<T: CardTransport>(
    ch: &mut CardChannel<Traced<T>>,
    counter: Counter<T>,
    profile: &Profile,
    policy: &Policy,
    rng: &mut ChaCha20Rng,
    check: impl FnOnce(&Verdict) -> anyhow::Result<()>,
) -> anyhow::Result<TapCounts> {
    ch.transport_mut().clear();
    let (ops0, w0) = counter(ch);
    let verdict = verify(ch, &profile.trust, policy, rng);
    check(&verdict)?;
    let entries = ch.transport_mut().take_entries();
    let (ops1, w1) = counter(ch);
    let ops = ops0.zip(ops1).map(|(a, b)| ops_since(&b, &a));
    Ok(TapCounts::from_entries(entries, ops, w1.since(&w0)))
}

/// Issues two cards in process and taps them with each profile: on the
/// first card a first tap that tries the cache first, then a cached tap with
/// a fixed reader ephemeral key; on the second card a first tap that sends
/// the certificate first. Returns the first card.
pub fn exchanges(city: &mut City) -> anyhow::Result<(MemChannel, Vec<ProfileExchange>)> {
    let mut ch = city.blank_card()?;
    city.issue(&mut ch)?;
    let mut other = city.blank_card()?;
    city.issue(&mut other)?;
    let mut out = Vec::new();
    for i in 0..city.profiles.len() {
        let profile = city.profiles.get(i).context("profile")?;
        let policy = city.policy(profile);
        let mut rng = ChaCha20Rng::from_seed([0xF0 ^ i as u8; 32]);
        let first = traced_tap(&mut ch, profile, &policy, &mut rng)?;
        let cached_seed = [0x5A ^ i as u8; 32];
        let cached = traced_tap(
            &mut ch,
            profile,
            &policy,
            &mut ChaCha20Rng::from_seed(cached_seed),
        )?;
        let first_certificate_first = traced_tap(
            &mut other,
            profile,
            &policy.clone().with_always_send_certificate(true),
            &mut rng,
        )?;
        out.push(ProfileExchange {
            name: profile.name,
            first,
            first_certificate_first,
            cached,
            cached_seed,
        });
    }
    Ok((ch, out))
}

/// A card that replays a recorded exchange: the same commands get the same
/// responses, in order (the reader's ephemeral key is fixed by its seed).
pub struct Replay {
    script: Vec<(Vec<u8>, Vec<u8>)>,
    next: usize,
}

impl Replay {
    /// Replays `entries`.
    pub fn new(entries: &[TraceEntry]) -> Self {
        Self {
            script: entries
                .iter()
                .map(|e| (e.command.clone(), e.response.clone()))
                .collect(),
            next: 0,
        }
    }

    /// Back to the first command.
    pub fn rewind(&mut self) {
        self.next = 0;
    }
}

impl CardTransport for Replay {
    fn transmit_raw(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (cmd, resp) = self
            .script
            .get(self.next)
            .ok_or(TransportError::CardRemoved)?;
        if cmd.as_slice() != apdu {
            return Err(TransportError::CardRemoved);
        }
        self.next += 1;
        Ok(resp.clone())
    }

    fn atr(&self) -> Result<Vec<u8>, TransportError> {
        Ok(Vec::new())
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.next = 0;
        Ok(())
    }

    fn transaction(&mut self, body: &mut TransactionFn<'_>) -> Result<(), TransportError> {
        body(self)
    }
}

/// Host timings of one profile.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostTiming {
    /// Runs timed.
    pub runs: usize,
    /// `verify` against the replayed card: median (µs).
    pub verify_us_median: f64,
    /// … p95 (µs).
    pub verify_us_p95: f64,
    /// The EC operations alone: median (µs). Applet: keygen + 2 ECDH + ECDSA
    /// verify of the record; PIV: ECDSA verify of the certificate + ECDSA
    /// verify of the card's signature over the challenge.
    pub crypto_us_median: f64,
    /// … p95 (µs).
    pub crypto_us_p95: f64,
    /// Ephemeral key generation alone, median (µs); 0 for PIV (none).
    pub keygen_us_median: f64,
    /// One ECDH alone, median (µs); 0 for PIV (none).
    pub ecdh_us_median: f64,
    /// The record's (PIV: the certificate's) ECDSA verification alone, SHA-256
    /// of the signed bytes included, median (µs).
    pub ecdsa_verify_us_median: f64,
}

impl HostTiming {
    /// The medians (and p95) of the samples of `runs` timed runs: `verify`,
    /// `crypto` (the EC operations together), `ecdsa` alone, and `keygen`
    /// and `ecdh` alone where the tap has them (0 otherwise: PIV).
    pub(crate) fn of_samples(
        runs: usize,
        verify: &mut [Duration],
        crypto: &mut [Duration],
        ecdsa: &mut [Duration],
        keygen_ecdh: Option<(&mut [Duration], &mut [Duration])>,
    ) -> Self {
        let (verify_us_median, verify_us_p95) = median_p95_us(verify);
        let (crypto_us_median, crypto_us_p95) = median_p95_us(crypto);
        let (keygen_us_median, ecdh_us_median) = match keygen_ecdh {
            Some((keygen, ecdh)) => (median_us(keygen), median_us(ecdh)),
            None => (0.0, 0.0),
        };
        Self {
            runs,
            verify_us_median,
            verify_us_p95,
            crypto_us_median,
            crypto_us_p95,
            keygen_us_median,
            ecdh_us_median,
            ecdsa_verify_us_median: median_us(ecdsa),
        }
    }
}

/// What the crypto baseline works on: the same keys and record as the tap.
struct CryptoInputs {
    reader_key: p256::SecretKey,
    card_ephemeral: p256::PublicKey,
    card_key: p256::PublicKey,
    station_key: p256::PublicKey,
    record: citycard_proto::record::GroupRecord,
}

fn crypto_inputs(
    trust: &Trust,
    ex: &ProfileExchange,
    city: &City,
    profile: &Profile,
) -> anyhow::Result<CryptoInputs> {
    let policy = city.policy(profile);
    let mut rng = ChaCha20Rng::from_seed(ex.cached_seed);
    let session = ReaderSession::new(
        &mut rng,
        trust.credential().certificate().fingerprint(),
        profile.requested,
        policy.today,
    );
    let mut ch = CardChannel::new(Replay::new(&ex.cached.entries));
    ch.exchange(&citycard_proto::fci::select_command())?;
    let response = ch.exchange(&session.command())?;
    let outer = tlv::read_exact(&response.data, 0x7C)?;
    let fields = tlv::read_all(outer.value)?;
    let e_c = fields
        .iter()
        .find(|f| f.tag == 0x86)
        .ok_or_else(|| anyhow!("no card ephemeral key"))?;
    let card_ephemeral = crypto::decode_point(e_c.value)?;
    let group = trust.credential().group();
    let disclosure = session.open(&response.data, trust.credential().key(), group)?;
    let record = disclosure.record;
    let station = trust
        .bundle()
        .station_by_reference(group, &record.body().station_ref)
        .ok_or_else(|| anyhow!("station not in bundle"))?;
    Ok(CryptoInputs {
        reader_key: trust.credential().key().clone(),
        card_ephemeral,
        card_key: record.body().card_key,
        station_key: station.body().public_key,
        record,
    })
}

/// One timed `citycard_reader::verify` of the tap `ch` replays (rewound
/// first), with the reader's random generator seeded as when it was
/// recorded; fails unless the verdict is genuine.
pub(crate) fn timed_verify(
    ch: &mut CardChannel<Replay>,
    trust: &Trust,
    policy: &Policy,
    seed: [u8; 32],
    name: &str,
) -> anyhow::Result<Duration> {
    ch.transport_mut().rewind();
    let start = Instant::now();
    let mut rng = ChaCha20Rng::from_seed(seed);
    let verdict = verify(ch, trust, policy, &mut rng);
    let t_verify = start.elapsed();
    if !matches!(verdict, Verdict::Genuine(_)) {
        bail!("{name}: replayed tap gave {}", verdict.kind());
    }
    Ok(t_verify)
}

/// Times `citycard_reader::verify` against a card that replays the cached tap
/// of `ex` (so only the host's work is measured: SELECT parsing, ephemeral key,
/// request, GET RESPONSE handling, decryption, ECDH ×2, MAC, digests, trust
/// checks, record signature, verdict), interleaved with the EC operations it
/// must do, timed alone on the same inputs.
pub fn host_timing(
    city: &City,
    ex: &ProfileExchange,
    warmup: usize,
    runs: usize,
) -> anyhow::Result<HostTiming> {
    let profile = city
        .profiles
        .iter()
        .find(|p| p.name == ex.name)
        .context("profile")?;
    let trust = &profile.trust;
    let policy = city.policy(profile);
    let inputs = crypto_inputs(trust, ex, city, profile)?;
    let mut ch = CardChannel::new(Replay::new(&ex.cached.entries));
    let mut verify_t = Vec::with_capacity(runs);
    let mut crypto_t = Vec::with_capacity(runs);
    let mut keygen_t = Vec::with_capacity(runs);
    let mut ecdh_t = Vec::with_capacity(runs);
    let mut ecdsa_t = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let t_verify = timed_verify(&mut ch, trust, &policy, ex.cached_seed, ex.name)?;

        let start = Instant::now();
        let mut rng = ChaCha20Rng::from_seed(ex.cached_seed);
        let eph = crypto::generate(&mut rng);
        let e_r = eph.public_key();
        let z1 = crypto::ecdh(&inputs.reader_key, &inputs.card_ephemeral);
        let z2 = crypto::ecdh(&eph, &inputs.card_key);
        let ok = inputs.record.verify(&inputs.station_key).is_ok();
        let t_crypto = start.elapsed();
        std::hint::black_box((e_r, z1, z2));
        if !ok {
            bail!("record signature did not verify");
        }

        // The parts alone, for the breakdown.
        let s = Instant::now();
        let k = crypto::generate(&mut rng);
        std::hint::black_box(k.public_key());
        let t_keygen = s.elapsed();
        let s = Instant::now();
        std::hint::black_box(crypto::ecdh(&inputs.reader_key, &inputs.card_ephemeral));
        let t_ecdh = s.elapsed();
        let s = Instant::now();
        std::hint::black_box(inputs.record.verify(&inputs.station_key).is_ok());
        let t_ecdsa = s.elapsed();

        if i >= warmup {
            verify_t.push(t_verify);
            crypto_t.push(t_crypto);
            keygen_t.push(t_keygen);
            ecdh_t.push(t_ecdh);
            ecdsa_t.push(t_ecdsa);
        }
    }
    Ok(HostTiming::of_samples(
        runs,
        &mut verify_t,
        &mut crypto_t,
        &mut ecdsa_t,
        Some((&mut keygen_t, &mut ecdh_t)),
    ))
}

/// Time budget helper: `Duration` in ms.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
