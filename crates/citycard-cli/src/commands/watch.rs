//! `citycard watch`: the tap service for gates and desks. One JSON line per
//! tap on stdout; reader and trust events and logs on stderr. SIGHUP (or a
//! changed bundle/credential file) reloads the trust without dropping taps;
//! SIGINT/SIGTERM stop it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use citycard_reader::watch::{
    watch, ReaderSelection, Shutdown, TapEvent, TrustSource, WatchConfig,
};

use super::verify::PolicyArgs;

/// Arguments of `watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The city's trust bundle (reloaded on SIGHUP or when the file changes).
    #[arg(long)]
    trust: PathBuf,
    /// This partner's credential.
    #[arg(long)]
    credential: PathBuf,
    /// `all`, or a comma-separated list of reader names (or unique parts of names).
    #[arg(long, default_value = "all")]
    readers: String,
    #[command(flatten)]
    policy: PolicyArgs,
}

fn emit(event: &TapEvent) {
    let line = event.to_json_line();
    if event.tap().is_some() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    } else {
        eprintln!("{line}");
    }
}

/// Runs the tap service until interrupted.
pub fn run(args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let mut trust = match TrustSource::from_files(&args.trust, &args.credential) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("citycard: error: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    if let Some(bytes) = args.policy.root_fingerprint()? {
        trust = trust
            .with_expected_root(&bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let policy = args.policy.policy()?;
    trust = trust.with_stale_warning(args.policy.warn_before_secs());
    let readers = if args.readers.trim() == "all" {
        ReaderSelection::All
    } else {
        ReaderSelection::Names(
            args.readers
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    let config = WatchConfig::new(policy).with_readers(readers);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(async move {
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
        eprintln!(
            "citycard watch: issuer {}, partner {}; one JSON line per tap on stdout",
            trust.current().issuer_id(),
            trust.current().credential().partner()
        );
        let service = tokio::spawn(watch(config, trust, tx, shutdown.clone()));
        while let Some(event) = rx.recv().await {
            emit(&event);
            if shutdown.is_triggered() && rx.is_empty() {
                break;
            }
        }
        match service.await {
            Ok(Ok(())) => Ok(ExitCode::SUCCESS),
            Ok(Err(e)) => {
                eprintln!("citycard: error: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(anyhow::anyhow!("watch task: {e}")),
        }
    })
}
