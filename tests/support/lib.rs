//! Support for the end-to-end tests: pcscd availability, a process-wide lock
//! on the vpcd reader, the reference card served in-process or as a
//! `citycard card emulate` process, and a raw PC/SC link.
//!
//! These tests need pcscd running with the vsmartcard vpcd driver
//! (`tools/testbench start`, done by `tools/test` and `.ci/run`). Without it
//! they FAIL with a message saying so; set `CITYCARD_NO_PCSCD=1` to make them
//! print a notice and pass without testing (for machines without the bench).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use citycard_card::{Applet, Storage};
use citycard_emulator::{serve, FileStore, ServeOptions};
use citycard_transport::{CardTransport, PcscContext, PcscTransport};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The first vpcd reader.
pub const READER: &str = "Virtual PCD 00 00";
/// Its vpcd port.
pub const PORT: u16 = 35963;

/// OpenSC's PKCS#11 module (Debian package `opensc`).
pub const PKCS11_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

/// Serialises tests that use the vpcd reader, across test processes too.
pub use citycard_testkit::bench_lock::vpcd_lock;

/// `true` when the bench is available; panics with instructions when it is not
/// (unless `CITYCARD_NO_PCSCD=1`, then `false`).
pub fn bench_available(test: &str) -> bool {
    let problem = match PcscContext::establish() {
        Err(e) => format!("cannot reach pcscd ({e})"),
        Ok(ctx) => match ctx.list_readers() {
            Ok(r) if r.iter().any(|n| n == READER) => return true,
            Ok(r) => format!(
                "pcscd has no reader {READER:?} (readers: {r:?}); is vsmartcard-vpcd installed?"
            ),
            Err(e) => format!("listing readers failed ({e})"),
        },
    };
    if std::env::var_os("CITYCARD_NO_PCSCD").is_some_and(|v| v == "1") {
        eprintln!("NOTICE: {test}: NOT RUN — {problem} (CITYCARD_NO_PCSCD=1)");
        return false;
    }
    panic!("{test}: {problem}. Start the bench with `tools/testbench start` (as root), or set CITYCARD_NO_PCSCD=1 to skip.");
}

/// The reference card served to vpcd by a thread of this process.
pub struct ServedCard {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl ServedCard {
    /// Serves a card over the state file `state` with RNG seed `seed`.
    pub fn start(state: &Path, seed: [u8; 32]) -> Self {
        let store = FileStore::new(state).expect("state file");
        Self::start_with(Box::new(store), seed)
    }

    /// Serves a card over any storage.
    pub fn start_with(storage: Box<dyn Storage + Send>, seed: [u8; 32]) -> Self {
        Self::serve_card(move || Applet::new(storage, ChaCha20Rng::from_seed(seed)))
    }

    /// Serves any card implementation (built in the serving thread).
    pub fn serve_card<C: citycard_proto::apdu::ContactlessCard>(
        make: impl FnOnce() -> C + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut opts = ServeOptions::new(([127, 0, 0, 1], PORT).into());
        opts.stop = Some(stop.clone());
        opts.poll_interval = Duration::from_millis(20);
        let handle = std::thread::spawn(move || {
            let mut card = make();
            let _ = serve(&mut card, &opts);
        });
        wait_for_card(Duration::from_secs(10));
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for ServedCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        wait_for_removal(Duration::from_secs(10));
    }
}

/// Waits until the reader reports a card.
pub fn wait_for_card(timeout: Duration) {
    let ctx = PcscContext::establish().expect("pcscd");
    ctx.wait_for_card(READER, Some(timeout))
        .expect("card did not appear in the vpcd reader");
}

/// Waits until the reader reports no card.
pub fn wait_for_removal(timeout: Duration) {
    if let Ok(ctx) = PcscContext::establish() {
        let _ = ctx.wait_for_removal(READER, Some(timeout));
    }
}

/// Connects to the card in the vpcd reader.
pub fn connect() -> PcscTransport {
    let ctx = PcscContext::establish().expect("pcscd");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ctx.connect(READER) {
            Ok(t) => return t,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect: {e}; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect to {READER}: {e}"),
        }
    }
}

/// A raw link for scripts and vector runs: one APDU in, raw response out.
pub fn raw_link(t: &mut PcscTransport) -> impl FnMut(&[u8]) -> Result<Vec<u8>, String> + '_ {
    move |apdu: &[u8]| t.transmit_raw(apdu).map_err(|e| e.to_string())
}

/// Path of the `citycard` binary, built (once per test process) as a test
/// build: with the `deterministic-card` feature, so that `card emulate
/// --seed` exists (SPEC §7.8; a production build refuses it). A no-op when
/// the binary is up to date; it replaces a production build left in the
/// target directory.
pub fn citycard_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("current exe");
            let target = exe
                .parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args([
                "build",
                "-p",
                "citycard-cli",
                "--bin",
                "citycard",
                "--features",
                "deterministic-card",
            ]);
            if target.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "building citycard (test build) failed");
            let bin = target.join("citycard");
            assert!(bin.exists(), "{} not found", bin.display());
            bin
        })
        .clone()
}

/// A `citycard card emulate` process.
pub struct EmulatorProcess {
    child: Option<Child>,
}

impl EmulatorProcess {
    /// Starts the emulator on `state` with extra arguments (faults, seed) and
    /// waits for the card to appear in the reader.
    pub fn start(state: &Path, extra: &[&str]) -> Self {
        let child = Command::new(citycard_bin())
            .args([
                "card",
                "emulate",
                "--vpcd",
                &format!("127.0.0.1:{PORT}"),
                "--state",
            ])
            .arg(state)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn citycard card emulate");
        // Owned before waiting: if the card never appears, the panic drops
        // `this`, which kills the child (else it would hold the test's pipes).
        let this = Self { child: Some(child) };
        wait_for_card(Duration::from_secs(10));
        this
    }

    /// Waits for the process to exit by itself; its exit code.
    pub fn wait_exit(mut self, timeout: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                wait_for_removal(Duration::from_secs(10));
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                wait_for_removal(Duration::from_secs(10));
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (a card pulled from the field).
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_for_removal(Duration::from_secs(10));
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            wait_for_removal(Duration::from_secs(10));
        }
    }
}

/// A stack of blank cards served one after another in the vpcd reader, as an
/// operator would swap them: when the card in the reader is reset (powered
/// down) after it was issued, it is "removed" and a fresh blank card is
/// "inserted". Each card's state is `DIR/card-NNN.state`.
pub struct CardStack {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u32>>,
}

struct SwapOnIssuedReset<C> {
    inner: C,
    swap: Arc<AtomicBool>,
}

impl<S: Storage, R: rand_core::CryptoRngCore> citycard_proto::apdu::ContactlessCard
    for SwapOnIssuedReset<Applet<S, R>>
{
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn reset(&mut self) {
        if self.inner.life_cycle() == Some(citycard_proto::consts::LifeCycle::Issued) {
            self.swap.store(true, Ordering::SeqCst);
        }
        self.inner.reset();
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, citycard_proto::apdu::CardLost> {
        self.inner.transmit(command)
    }
}

impl CardStack {
    /// Starts serving `cards` cards from `dir`, prepared first by the home's
    /// preparer `prep-1` (as cards arrive from the preparation facility);
    /// cards past `cards` are blank.
    pub fn start_prepared(dir: &Path, home: &str, cards: u32) -> Self {
        std::fs::create_dir_all(dir).expect("card stack directory");
        for served in 1..=cards {
            prepare_state(home, &dir.join(format!("card-{served:03}.state")));
        }
        Self::start(dir)
    }

    /// Starts serving blank cards from `dir`.
    pub fn start(dir: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir).expect("card stack directory");
        let outer_stop = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut served = 0u32;
            while !outer_stop.load(Ordering::SeqCst) {
                served += 1;
                let store =
                    FileStore::new(dir.join(format!("card-{served:03}.state"))).expect("state");
                let swap = Arc::new(AtomicBool::new(false));
                let seed = citycard_proto::crypto::sha256(&[
                    dir.to_string_lossy().as_bytes(),
                    &served.to_be_bytes(),
                ]);
                let card = Applet::new(store, ChaCha20Rng::from_seed(seed));
                let mut card = SwapOnIssuedReset {
                    inner: card,
                    swap: swap.clone(),
                };
                let mut opts = ServeOptions::new(([127, 0, 0, 1], PORT).into());
                // Stop when the outer stop is set or the card is swapped.
                let either = Arc::new(AtomicBool::new(false));
                opts.stop = Some(either.clone());
                opts.poll_interval = Duration::from_millis(20);
                let watcher = {
                    let (either, swap, outer) = (either.clone(), swap.clone(), outer_stop.clone());
                    std::thread::spawn(move || {
                        while !swap.load(Ordering::SeqCst) && !outer.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        either.store(true, Ordering::SeqCst);
                    })
                };
                let _ = serve(&mut card, &opts);
                let _ = watcher.join();
                wait_for_removal(Duration::from_secs(10));
            }
            served
        });
        wait_for_card(Duration::from_secs(10));
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops serving; the number of cards that were put in the reader.
    pub fn stop(mut self) -> u32 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .map(|h| h.join().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for CardStack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Runs `citycard` with `args` (passphrase and operator set), returning
/// (exit code, stdout, stderr).
pub fn citycard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(citycard_bin())
        .args(args)
        .env("CITYCARD_PASSPHRASE", "correct horse battery staple")
        .env("CITYCARD_OPERATOR", "e2e")
        .stdin(Stdio::null())
        .output()
        .expect("run citycard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `citycard` and requires exit 0; its stdout.
pub fn citycard_ok(args: &[&str]) -> String {
    let (code, out, err) = citycard(args);
    assert_eq!(code, 0, "citycard {args:?} failed ({code}):\n{out}\n{err}");
    out
}

/// Runs a tool with a 60 s timeout; (exit code, stdout, stderr).
pub fn run(tool: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e} (run tools/testbench install)"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ {tool} {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// [`run`], requiring exit 0; its stdout.
pub fn run_ok(tool: &str, args: &[&str]) -> String {
    let (code, out, err) = run(tool, args);
    assert_eq!(code, 0, "{tool} {args:?} failed ({code}):\n{out}\n{err}");
    out
}

/// `yubico-piv-tool -r 'Virtual PCD 00 00' ARGS…`
pub fn piv_tool(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["-r", READER];
    all.extend_from_slice(args);
    run("yubico-piv-tool", &all)
}

/// [`piv_tool`], requiring exit 0; its stdout.
pub fn piv_tool_ok(args: &[&str]) -> String {
    let (code, out, err) = piv_tool(args);
    assert_eq!(
        code, 0,
        "yubico-piv-tool {args:?} failed ({code}):\n{out}\n{err}"
    );
    out
}

/// A city's issuer home `DIR/home-ISSUER` (`issuer init` with card prefix
/// `prefix`, then `station add desk-1` with `station_args` and `preparer add
/// prep-1`); its path.
pub fn issuer_home(dir: &Path, issuer: &str, prefix: &str, station_args: &[&str]) -> String {
    let home = dir
        .join(format!("home-{issuer}"))
        .to_str()
        .expect("utf-8 temp path")
        .to_string();
    citycard_ok(&[
        "issuer",
        "init",
        "--dir",
        &home,
        "--city",
        issuer,
        "--issuer-id",
        issuer,
        "--card-prefix",
        prefix,
    ]);
    let mut station = vec!["station", "add", "desk-1", "--dir", &home];
    station.extend_from_slice(station_args);
    citycard_ok(&station);
    citycard_ok(&["preparer", "add", "prep-1", "--dir", &home]);
    home
}

/// `preparer prepare prep-1` on the card in the bench's reader: the city's
/// preparation facility prepares the blank card (SPEC §6.3) before a station
/// can issue it.
pub fn prepare_in_reader(home: &str) {
    citycard_ok(&[
        "preparer", "prepare", "prep-1", "--dir", home, "--reader", READER,
    ]);
}

/// `preparer prepare prep-1` on the emulated card whose state is `state`
/// (created blank and prepared; served later by the bench's emulator).
pub fn prepare_state(home: &str, state: &Path) {
    let reader = format!("emulated:{}", state.display());
    citycard_ok(&[
        "preparer", "prepare", "prep-1", "--dir", home, "--reader", &reader,
    ]);
}

/// `partner enrol NAME --attributes ATTRS`, credential in `DIR/NAME.cred`; its path.
pub fn enrol_partner(home: &str, dir: &Path, name: &str, attributes: &str) -> PathBuf {
    let path = dir.join(format!("{name}.cred"));
    citycard_ok(&[
        "partner",
        "enrol",
        name,
        "--dir",
        home,
        "--attributes",
        attributes,
        "--out",
        path.to_str().expect("utf-8 temp path"),
    ]);
    path
}

/// `trust export` of `home` to `out`.
pub fn export_trust(home: &str, out: &Path) {
    citycard_ok(&[
        "trust",
        "export",
        "--dir",
        home,
        "--out",
        out.to_str().expect("utf-8 temp path"),
    ]);
}

/// `citycard verify --json` on the vpcd reader with `bundle` and `cred`
/// (plus `extra` arguments): exit code, the verdict JSON (`null` if stdout is
/// not JSON), stderr.
pub fn verify_json(bundle: &Path, cred: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let mut args = vec![
        "verify",
        "--reader",
        READER,
        "--trust",
        bundle.to_str().expect("utf-8 path"),
        "--credential",
        cred.to_str().expect("utf-8 path"),
        "--json",
        "--wait",
        "10",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = citycard(&args);
    // Every document `verify --json` prints follows schemas/verify.v1.json.
    let v = citycard_testkit::schemas::assert_valid_text(
        citycard_testkit::schemas::Schema::Verify,
        out.trim(),
    );
    (code, v, err)
}

/// A path as `&str` (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A random seed for a randomised test, printed so that a failure can be replayed.
pub fn test_seed() -> (u64, ChaCha20Rng) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    println!("seed {seed}");
    (seed, ChaCha20Rng::seed_from_u64(seed))
}

/// The group-0 card key of every issued emulated card (state file) in `dir`
/// (the key the registry records the card under).
pub fn issued_card_keys(dir: &Path) -> Vec<[u8; 33]> {
    let mut keys = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return keys;
    };
    for entry in entries.flatten() {
        let mut store = FileStore::new(entry.path()).expect("card state file");
        let Some(bytes) = store.load().expect("card state") else {
            continue;
        };
        let state = citycard_card::PersistentState::decode(&bytes).expect("card state");
        if state.life_cycle.name() != "issued" {
            continue;
        }
        if let Some(p) = state.personalisation.as_ref() {
            keys.push(citycard_proto::crypto::encode_point(
                &p.groups[0].card_key.public_key(),
            ));
        }
    }
    keys
}

/// The arguments of `batch` of `file` at `station` on `reader`, the blank
/// emulated cards prepared by preparer `prep-1` first, then `extra`.
pub fn batch_args<'a>(
    home: &'a str,
    station: &'a str,
    reader: &'a str,
    file: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "batch",
        "--dir",
        home,
        "--station",
        station,
        "--reader",
        reader,
        "--prepare-with",
        "prep-1",
        path_str(file),
    ];
    v.extend_from_slice(extra);
    v
}

/// The arguments of `issuer init` of a Liège home (prefix LG) in `dir`, then `extra`.
pub fn init_args<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "issuer",
        "init",
        "--dir",
        dir,
        "--city",
        "Liège",
        "--issuer-id",
        "LIEGE",
        "--card-prefix",
        "LG",
    ];
    v.extend_from_slice(extra);
    v
}

/// Runs `jobs` processes (`spawn(j)` starts job `j`) until each has exited
/// by itself with 0 or 50 (some rows refused), killing running ones with
/// SIGKILL at random moments (at most `max_kills`) and starting them again
/// (`--resume`). Returns how many were killed; panics past `deadline`.
pub fn run_with_random_kills(
    jobs: usize,
    spawn: &dyn Fn(usize) -> Child,
    max_kills: usize,
    rng: &mut ChaCha20Rng,
    deadline: Duration,
) -> usize {
    use rand_chacha::rand_core::RngCore;
    let mut procs: Vec<Option<Child>> = (0..jobs).map(|j| Some(spawn(j))).collect();
    let mut done = vec![false; jobs];
    let mut kills = 0;
    let deadline = Instant::now() + deadline;
    while !done.iter().all(|d| *d) {
        assert!(Instant::now() < deadline, "the jobs did not finish");
        std::thread::sleep(Duration::from_millis(100 + rng.next_u64() % 400));
        for j in 0..jobs {
            let Some(child) = procs.get_mut(j).and_then(Option::as_mut) else {
                continue;
            };
            if let Some(status) = child.try_wait().expect("wait") {
                let code = status.code().unwrap_or(-1);
                let out = procs
                    .get_mut(j)
                    .and_then(Option::take)
                    .map(|c| c.wait_with_output().expect("output"));
                let (stdout, stderr) = out.map_or_else(Default::default, |o| {
                    (
                        String::from_utf8_lossy(&o.stdout).into_owned(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    )
                });
                assert!(
                    code == 0 || code == 50,
                    "job {j} exit {code}:\n{stdout}\n{stderr}"
                );
                if let Some(d) = done.get_mut(j) {
                    *d = true;
                }
                continue;
            }
            if kills < max_kills && rng.next_u64().is_multiple_of(3) {
                child.kill().expect("SIGKILL");
                child.wait().expect("wait");
                kills += 1;
                if let Some(p) = procs.get_mut(j) {
                    *p = Some(spawn(j));
                }
            }
        }
    }
    kills
}
