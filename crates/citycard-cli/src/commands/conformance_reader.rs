//! `citycard conformance reader`: presents the reader kit's cards in a vpcd
//! reader and checks the verdicts the reader under test reports.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use citycard_conformance::reader::{ReaderKit, CREDENTIAL_FILE, TRUST_FILE};

use super::conformance::OutputArgs;

/// Arguments of `conformance reader`.
#[derive(clap::Args, Debug)]
pub struct ReaderArgs {
    /// Directory for the throwaway city's files the reader under test loads
    /// (`conformance.bundle`, `library.cred`); created if missing.
    #[arg(long)]
    dir: PathBuf,
    /// The reader under test, run with `sh -c`: `{trust}` and `{credential}` are
    /// replaced by the files' paths. Its stdout must carry one JSON line per tap
    /// with a `verdict` (as `citycard watch` prints). Without it, the verdicts are
    /// read from stdin.
    #[arg(long)]
    reader_command: Option<String>,
    /// vpcd address of the reader the cards are presented in ("Virtual PCD 00 00").
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: SocketAddr,
    /// Seconds each card waits for a verdict.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// Milliseconds between removing a card and presenting the next.
    #[arg(long, default_value_t = 1500)]
    settle_ms: u64,
    /// Seconds to let the reader under test start before the first card.
    #[arg(long, default_value_t = 3)]
    startup_secs: u64,
    #[command(flatten)]
    output: OutputArgs,
}

/// Kills the reader under test (started by us) when the run ends.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `conformance reader`.
pub fn run(args: &ReaderArgs) -> anyhow::Result<ExitCode> {
    let kit = ReaderKit::prepare(&args.dir)?;
    let trust = args.dir.join(TRUST_FILE);
    let credential = args.dir.join(CREDENTIAL_FILE);
    eprintln!(
        "citycard conformance reader: {} cards; trust {}, credential {}",
        kit.cards.len(),
        trust.display(),
        credential.display()
    );
    let (tx, rx) = mpsc::channel::<String>();
    let (target, _child) = match &args.reader_command {
        Some(cmd) => {
            let cmd = cmd
                .replace("{trust}", &trust.to_string_lossy())
                .replace("{credential}", &credential.to_string_lossy());
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting {cmd}"))?;
            let stdout = child
                .stdout
                .take()
                .context("no stdout of the reader command")?;
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            (cmd, Some(Started(child)))
        }
        None => {
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            ("verdicts on stdin".to_string(), None)
        }
    };
    std::thread::sleep(Duration::from_secs(args.startup_secs));
    let mut next_line = |timeout: Duration| rx.recv_timeout(timeout).ok();
    let mut drain_rx = || while rx.try_recv().is_ok() {};
    let report = kit.run(
        args.vpcd,
        &target,
        Duration::from_secs(args.timeout),
        Duration::from_millis(args.settle_ms),
        &mut next_line,
        &mut drain_rx,
    );
    args.output.emit(&report)
}
