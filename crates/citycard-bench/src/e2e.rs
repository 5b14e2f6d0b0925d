//! End to end through pcscd + vpcd + the emulated card served by a thread of
//! this process (`citycard_emulator::serve`, as `tests/support` does).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use citycard_card::{Applet, Storage};
use citycard_emulator::{serve, ServeOptions};
use citycard_proto::apdu::ContactlessCard;
use citycard_reader::verify;
use citycard_transport::{
    CardChannel, CardTransport, PcscContext, PcscTransport, Traced, TransportError,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::city::Profile;

static SLOT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Chooses the vpcd slot: 0 is reader `Virtual PCD 00 00` on port 35963 (the
/// default), 1 is `Virtual PCD 00 01` on port 35964.
pub fn set_slot(slot: u8) {
    SLOT.store(slot.min(1), Ordering::SeqCst);
}

/// The bench's vpcd reader.
pub fn reader() -> String {
    format!("Virtual PCD 00 0{}", SLOT.load(Ordering::SeqCst))
}

/// The vpcd port of [`reader`].
pub fn port() -> u16 {
    35963 + u16::from(SLOT.load(Ordering::SeqCst))
}

/// `Ok(())` when pcscd runs and shows the vpcd reader; else why not.
pub fn bench_available() -> Result<(), String> {
    let ctx = PcscContext::establish().map_err(|e| format!("cannot reach pcscd ({e})"))?;
    let readers = ctx
        .list_readers()
        .map_err(|e| format!("listing readers failed ({e})"))?;
    let reader = reader();
    if readers.contains(&reader) {
        Ok(())
    } else {
        Err(format!("pcscd has no reader {reader:?}"))
    }
}

/// A card served to vpcd by a thread; stops and waits for removal on drop.
pub struct Served {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Served {
    /// Serves the card `make` builds (in the serving thread) and waits until
    /// pcscd sees it.
    pub fn start<C: ContactlessCard>(
        make: impl FnOnce() -> C + Send + 'static,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut opts = ServeOptions::new(SocketAddr::from(([127, 0, 0, 1], port())));
        opts.stop = Some(stop.clone());
        opts.poll_interval = Duration::from_millis(20);
        let handle = std::thread::spawn(move || {
            let mut card = make();
            let _ = serve(&mut card, &opts);
        });
        let served = Self {
            stop,
            handle: Some(handle),
        };
        PcscContext::establish()?
            .wait_for_card(&reader(), Some(Duration::from_secs(10)))
            .map_err(|e| anyhow!("the served card did not appear in {}: {e}", reader()))?;
        Ok(served)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        if let Ok(ctx) = PcscContext::establish() {
            let _ = ctx.wait_for_removal(&reader(), Some(Duration::from_secs(10)));
        }
    }
}

/// Connects to the card in [`reader`], retrying for a few seconds.
pub fn connect() -> anyhow::Result<PcscTransport> {
    let ctx = PcscContext::establish()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ctx.connect(&reader()) {
            Ok(t) => return Ok(t),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => bail!("cannot connect to {}: {e}", reader()),
        }
    }
}

/// The status word at the end of `response`.
fn status_word(response: &[u8]) -> Option<[u8; 2]> {
    match response {
        [.., a, b] => Some([*a, *b]),
        _ => None,
    }
}

/// End-to-end timings of one profile.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct E2eTiming {
    /// Taps timed.
    pub taps: usize,
    /// Tap to verdict (`verify` over `PcscTransport`, cached certificate): median (ms).
    pub verify_ms_median: f64,
    /// … p95 (ms).
    pub verify_ms_p95: f64,
    /// The same APDUs with `transmit_raw` alone: median (ms).
    pub raw_apdu_ms_median: f64,
    /// … p95 (ms).
    pub raw_apdu_ms_p95: f64,
}

/// Serves `card` (already issued, with every profile's reader certificate
/// cached or not: the warm-up taps cache it) and times `taps` taps per profile.
pub fn measure<S: Storage + Send + 'static>(
    card: Applet<S, ChaCha20Rng>,
    city: &crate::city::City,
    warmup: usize,
    taps: usize,
) -> anyhow::Result<Vec<E2eTiming>> {
    let partners: Vec<&Profile> = city.profiles.iter().collect();
    measure_card(card, city, &partners, warmup, taps)
}

/// Serves any emulated `card` (the reference card or the PIV card) to vpcd
/// and times `taps` taps (after `warmup`) for each of `partners`, in order.
pub fn measure_card<C: ContactlessCard + Send + 'static>(
    card: C,
    city: &crate::city::City,
    partners: &[&Profile],
    warmup: usize,
    taps: usize,
) -> anyhow::Result<Vec<E2eTiming>> {
    let _served = Served::start(move || card)?;
    let mut ch = CardChannel::new(Traced::new(connect()?));
    let mut rng = ChaCha20Rng::from_rng(rand_core::OsRng)?;
    let mut out = Vec::new();
    for profile in partners {
        let policy = city.policy(profile);
        let mut verify_t = Vec::with_capacity(taps);
        for i in 0..warmup + taps {
            ch.transport_mut().clear();
            let start = Instant::now();
            // One PC/SC transaction per tap: the card is ours for the tap,
            // as a gate's reader would hold it (other PC/SC clients wait).
            let verdict = ch.transaction(|tx| {
                Ok::<_, TransportError>(verify(tx, &profile.trust, &policy, &mut rng))
            })?;
            let t = start.elapsed();
            if !verdict.is_genuine() {
                bail!("{}: verdict {verdict:?} through pcscd", profile.name);
            }
            if i >= warmup {
                verify_t.push(t);
            }
        }
        // The last tap's APDUs, replayed raw; each must get the status word
        // it got in that tap.
        let script: Vec<(Vec<u8>, Option<[u8; 2]>)> = ch
            .transport()
            .entries()
            .iter()
            .map(|e| (e.command.clone(), status_word(&e.response)))
            .collect();
        let raw = ch.transport_mut().inner_mut();
        let mut raw_t = Vec::with_capacity(taps);
        for i in 0..warmup + taps {
            let start = Instant::now();
            let mut bad = None;
            raw.transaction(&mut |t: &mut dyn CardTransport| {
                for (apdu, sw) in &script {
                    let r = t.transmit_raw(apdu)?;
                    let same = match (status_word(&r), sw) {
                        // `61xx`: more data; the count may differ only if the card does.
                        (Some([0x61, _]), Some([0x61, _])) => true,
                        (got, want) => got == *want,
                    };
                    if !same {
                        bad = Some(r);
                    }
                }
                Ok(())
            })?;
            let t = start.elapsed();
            if let Some(r) = bad {
                bail!("raw replay: unexpected answer {}", hex::encode_upper(&r));
            }
            if i >= warmup {
                raw_t.push(t);
            }
        }
        let (vm, vp) = crate::stats::median_p95_us(&mut verify_t);
        let (rm, rp) = crate::stats::median_p95_us(&mut raw_t);
        out.push(E2eTiming {
            taps,
            verify_ms_median: vm / 1000.0,
            verify_ms_p95: vp / 1000.0,
            raw_apdu_ms_median: rm / 1000.0,
            raw_apdu_ms_p95: rp / 1000.0,
        });
    }
    drop(ch);
    Ok(out)
}
