//! `citycard watch`: the tap service for gates and desks. One JSON line per
//! tap on stdout; every other event (started, heartbeat, reader and trust
//! changes, warnings, fatal errors) as JSON lines on stderr, or on stdout
//! too with `--stdout all`. SIGHUP (or a changed bundle/credential file)
//! reloads the trust without dropping taps; SIGINT/SIGTERM stop it.
//!
//! Exit codes: 0 stopped by a signal; 1 PC/SC unavailable or another
//! runtime failure; 2 usage; 3 unusable trust bundle or credential; 5 a
//! reader named in `--readers` matched no reader for `--reader-wait` seconds.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use citycard_reader::watch::{
    watch_with, PcscReaders, ReaderSelection, ReaderSystem, Shutdown, TapEvent, TrustSource,
    WatchConfig,
};
use citycard_reader::ReaderError;
use citycard_service::{EmulatedReaders, ReaderName};

use super::verify::PolicyArgs;

/// Exit code: a named reader matched nothing for `--reader-wait`.
pub const EXIT_NO_MATCHING_READER: u8 = 5;

/// Which events go to stdout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdoutArg {
    /// Taps only (every other event on stderr).
    Taps,
    /// Every event.
    All,
}

/// What `watch` and `serve` share: trust, readers, policy, liveness.
#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// The city's trust bundle (reloaded on SIGHUP or when the file changes).
    #[arg(long)]
    trust: PathBuf,
    /// This partner's credential.
    #[arg(long)]
    credential: PathBuf,
    /// `all`, or a comma-separated list of reader names (or unique parts of
    /// names), or of `emulated:FILE` readers (the built-in card is on the
    /// reader while FILE exists).
    #[arg(long, alias = "reader", default_value = "all")]
    readers: String,
    /// Seconds a name in --readers may match no reader before the service
    /// exits with status 5 (0: wait forever, warning once).
    #[arg(long, default_value_t = 10)]
    reader_wait: u64,
    /// Seconds between heartbeat events (0: none).
    #[arg(long, default_value_t = 30)]
    heartbeat: u64,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// Arguments of `watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    service: ServiceArgs,
    /// Which events go to stdout (the others go to stderr).
    #[arg(long, value_enum, default_value_t = StdoutArg::Taps)]
    stdout: StdoutArg,
}

/// Writes one event line: taps (or, with `all`, everything) on stdout, the rest on stderr.
pub fn emit(event: &TapEvent, stdout: StdoutArg) {
    let line = event.to_json_line();
    if event.tap().is_some() || stdout == StdoutArg::All {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    } else {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// A service ready to run: trust, reader system, configuration.
pub struct Prepared {
    /// The trust.
    pub trust: TrustSource,
    /// Where taps come from.
    pub system: Arc<dyn ReaderSystem>,
    /// The watcher's configuration.
    pub config: WatchConfig,
}

impl ServiceArgs {
    /// Loads the trust and builds the configuration; on failure, the fatal event.
    #[allow(clippy::result_large_err)] // once per process start
    pub fn prepare(&self) -> Result<Prepared, TapEvent> {
        let usage = |m: String| TapEvent::fatal("usage", m, 2);
        let mut trust = TrustSource::from_files(&self.trust, &self.credential)
            .map_err(|e| TapEvent::fatal("trust_unusable", e.to_string(), 3))?
            .with_stale_warning(self.policy.warn_before_secs());
        if let Some(bytes) = self
            .policy
            .root_fingerprint()
            .map_err(|e| usage(e.to_string()))?
        {
            trust = trust
                .with_expected_root(&bytes)
                .map_err(|e| TapEvent::fatal("trust_unusable", e.to_string(), 3))?;
        }
        let policy = self.policy.policy().map_err(|e| usage(e.to_string()))?;
        let names: Vec<String> = self
            .readers
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let emulated: Vec<PathBuf> = names
            .iter()
            .filter_map(|n| match ReaderName::parse(n) {
                ReaderName::Emulated(p) => Some(p),
                ReaderName::Pcsc(_) => None,
            })
            .collect();
        let (system, readers): (Arc<dyn ReaderSystem>, ReaderSelection) =
            if self.readers.trim() == "all" {
                (Arc::new(PcscReaders), ReaderSelection::All)
            } else if emulated.is_empty() {
                (Arc::new(PcscReaders), ReaderSelection::Names(names))
            } else if emulated.len() == names.len() {
                let system = EmulatedReaders::new(emulated);
                let names = system.names();
                (Arc::new(system), ReaderSelection::Names(names))
            } else {
                return Err(usage(
                    "--readers: emulated and PC/SC readers cannot be mixed".into(),
                ));
            };
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        let config = WatchConfig::new(policy)
            .with_readers(readers)
            .with_reader_wait(secs(self.reader_wait))
            .with_heartbeat(secs(self.heartbeat));
        Ok(Prepared {
            trust,
            system,
            config,
        })
    }
}

/// The fatal event for the watcher's error.
pub fn fatal_for(e: &ReaderError) -> TapEvent {
    match e {
        ReaderError::Pcsc(_) => TapEvent::fatal(
            "pcsc_unavailable",
            format!("{e} (is pcscd running, and may this user use it?)"),
            1,
        ),
        ReaderError::NoMatchingReader { .. } => {
            TapEvent::fatal("no_matching_reader", e.to_string(), EXIT_NO_MATCHING_READER)
        }
        other => TapEvent::fatal("internal", other.to_string(), 1),
    }
}

/// Runs the watcher of `prepared` until a signal or a fatal error, handing
/// every event to `on_event` (after the `started` event `started`). Returns
/// the exit code; the last event is `stopped` or `fatal`.
pub async fn run_service(
    prepared: Prepared,
    started: TapEvent,
    on_event: impl Fn(&TapEvent),
) -> anyhow::Result<ExitCode> {
    let Prepared {
        trust,
        system,
        config,
    } = prepared;
    on_event(&started);
    let shutdown = Shutdown::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<TapEvent>(256);
    // Reload when the files change.
    let watcher_tx = tx.clone();
    let _file_watcher = trust
        .spawn_file_watcher(
            Duration::from_secs(1),
            move |e| watcher_tx.blocking_send(e).is_ok(),
            shutdown.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Signals: SIGHUP reloads, SIGINT/SIGTERM stop.
    {
        let (trust, tx, shutdown) = (trust.clone(), tx.clone(), shutdown.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut hup), Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::hangup()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = tx.send(trust.reload_event()).await; }
                    _ = int.recv() => { shutdown.trigger(); return; }
                    _ = term.recv() => { shutdown.trigger(); return; }
                }
            }
        });
    }
    let mut service = tokio::spawn(watch_with(system, config, trust, tx, shutdown.clone()));
    // The sender clones held by the file watcher and the signal task keep the
    // channel open: wait for the watcher itself, not for the channel to close.
    let result = loop {
        tokio::select! {
            Some(event) = rx.recv() => on_event(&event),
            done = &mut service => break done,
        }
    };
    while let Ok(event) = rx.try_recv() {
        on_event(&event);
    }
    shutdown.trigger();
    let last = match result {
        Ok(Ok(())) => TapEvent::Stopped {
            timestamp: std::time::SystemTime::now(),
            reason: "signal".into(),
        },
        Ok(Err(e)) => fatal_for(&e),
        Err(e) => TapEvent::fatal("internal", format!("watch task: {e}"), 1),
    };
    on_event(&last);
    Ok(match last {
        TapEvent::Fatal { exit_code, .. } => ExitCode::from(exit_code),
        _ => ExitCode::SUCCESS,
    })
}

/// A multi-threaded runtime for the service.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")
}

/// Runs the tap service until interrupted or a fatal error.
pub fn run(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let stdout = args.stdout;
    let prepared = match args.service.prepare() {
        Ok(p) => p,
        Err(fatal) => {
            emit(&fatal, stdout);
            return Ok(match fatal {
                TapEvent::Fatal { exit_code, .. } => ExitCode::from(exit_code),
                _ => ExitCode::from(1),
            });
        }
    };
    let started = TapEvent::started(
        "watch",
        &prepared.trust,
        &prepared.config.readers,
        prepared.config.heartbeat,
        None,
    );
    runtime()?.block_on(run_service(prepared, started, move |e| emit(e, stdout)))
}
