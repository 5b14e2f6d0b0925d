//! Sends APDUs to a PC/SC reader through `CardChannel<Traced<PcscTransport>>`
//! and prints the trace.
//!
//! ```text
//! cargo run -p citycard-transport --example pcsc_probe -- "00 00" 00A4040002F001 80CA000000
//! ```
//!
//! An APDU longer than a short APDU is taken as header + data and chained.
//! The word `reset` instead of an APDU resets the card.
//! With no APDU, lists readers and waits up to 10 s for a card.

use std::process::ExitCode;
use std::time::Duration;

use citycard_proto::apdu::Command;
use citycard_transport::{CardChannel, PcscContext, Traced, TransportError};

fn parse(hex_apdu: &str) -> Result<Command, String> {
    let bytes = hex::decode(hex_apdu).map_err(|e| format!("{hex_apdu}: {e}"))?;
    if let (Err(_), Some((&[cla, ins, p1, p2], data))) = (
        citycard_proto::apdu::CommandView::parse(&bytes),
        bytes.split_first_chunk::<4>(),
    ) {
        if data.len() > 255 {
            // Longer than a short APDU: header then data, to be chained.
            return Ok(Command::new(cla, ins, p1, p2).with_data(data));
        }
    }
    let view =
        citycard_proto::apdu::CommandView::parse(&bytes).map_err(|e| format!("{hex_apdu}: {e}"))?;
    let mut cmd = Command::new(view.cla, view.ins, view.p1, view.p2).with_data(view.data);
    cmd.le = view.le;
    Ok(cmd)
}

fn run(args: &[String]) -> Result<(), String> {
    let ctx = PcscContext::establish().map_err(|e| e.to_string())?;
    eprintln!(
        "readers: {:?}",
        ctx.list_readers().map_err(|e| e.to_string())?
    );
    let Some((reader, apdus)) = args.split_first() else {
        return Err("usage: pcsc_probe READER [APDU-HEX...]".into());
    };
    // `None` stands for the word `reset`: a card reset between APDUs.
    let commands = apdus
        .iter()
        .map(|a| {
            if a == "reset" {
                Ok(None)
            } else {
                parse(a).map(Some)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let atr = ctx
        .wait_for_card(reader, Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    eprintln!("ATR: {}", hex::encode_upper(atr));
    let transport = ctx.connect(reader).map_err(|e| e.to_string())?;
    eprintln!("connected to {:?}", transport.reader());
    let mut channel = CardChannel::new(Traced::new(transport).echo_to_stderr());
    channel
        .transaction(|tx| -> Result<(), TransportError> {
            for cmd in &commands {
                let Some(cmd) = cmd else {
                    tx.reset()?;
                    continue;
                };
                let resp = tx.exchange(cmd)?;
                println!("{} {}", hex::encode_upper(&resp.data), resp.sw);
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    eprintln!("{}", channel.transport().stats());
    channel
        .into_inner()
        .into_inner()
        .disconnect()
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
