//! `citycard readers` and `citycard apdu`.

use std::process::ExitCode;

use anyhow::Context;
use citycard_transport::{CardTransport, PcscContext, Traced};

/// Arguments of `citycard apdu`.
#[derive(clap::Args, Debug)]
pub struct ApduArgs {
    /// Reader name, or a unique case-insensitive part of it.
    #[arg(long, short)]
    reader: String,
    /// Command APDUs in hex (spaces allowed inside quotes); sent in order, raw
    /// (no automatic GET RESPONSE or chaining).
    #[arg(required = true)]
    apdus: Vec<String>,
}

/// Lists readers.
pub fn readers() -> anyhow::Result<ExitCode> {
    let ctx = PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
    let readers = ctx.list_readers()?;
    if readers.is_empty() {
        println!("no readers");
    }
    for r in readers {
        println!("{r}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends raw APDUs.
pub fn run(args: &ApduArgs, trace: bool) -> anyhow::Result<ExitCode> {
    let mut commands = Vec::new();
    for a in &args.apdus {
        let clean: String = a.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(&clean).with_context(|| format!("not hex: {a:?}"))?;
        anyhow::ensure!(
            bytes.len() >= 4,
            "APDU {a:?} is shorter than its 4-byte header"
        );
        commands.push(bytes);
    }
    let ctx = PcscContext::establish().context("cannot reach pcscd (is it running?)")?;
    let transport = ctx.connect(&args.reader)?;
    let mut traced = Traced::new(transport);
    if trace {
        traced = traced.echo_to_stderr();
    }
    println!("ATR {}", hex::encode_upper(traced.atr()?));
    for c in commands {
        let r = traced.transmit_raw(&c)?;
        println!("{}", hex::encode_upper(&r));
    }
    let stats = traced.stats();
    eprintln!(
        "{} APDUs, {} bytes sent, {} bytes received",
        stats.apdus, stats.bytes_sent, stats.bytes_received
    );
    Ok(ExitCode::SUCCESS)
}
