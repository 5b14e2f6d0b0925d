//! Serves a trivial card (SELECT → 9000, anything else → its data field + 9000)
//! to vpcd, for trying the test bench by hand:
//!
//! ```text
//! tools/testbench start
//! cargo run -p citycard-emulator --example echo_card [PORT] [latency-ms=N]
//! opensc-tool -r 'Virtual PCD 00 00' -s 00A4040000
//! ```
//!
//! Reconnects when pcscd restarts; Ctrl-C to quit.

use std::net::SocketAddr;

use citycard_emulator::{
    serve, Fault, ServeOptions, ServeOutcome, POWER_LOST_EXIT_STATUS, VPCD_PORT,
};
use citycard_proto::apdu::{CardLost, ContactlessCard};

struct EchoCard;

impl ContactlessCard for EchoCard {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x80, 0x80, 0x01, 0x01]
    }
    fn reset(&mut self) {
        eprintln!("echo_card: reset");
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, CardLost> {
        eprintln!("echo_card: <- {command:02X?}");
        let mut response = match command {
            [_, 0xA4, ..] => Vec::new(),
            [_, _, _, _, lc, rest @ ..] => {
                rest.get(..usize::from(*lc)).unwrap_or_default().to_vec()
            }
            _ => Vec::new(),
        };
        response.extend_from_slice(&[0x90, 0x00]);
        Ok(response)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = ServeOptions::default();
    for arg in std::env::args().skip(1) {
        if let Ok(port) = arg.parse::<u16>() {
            opts.addr = SocketAddr::from(([127, 0, 0, 1], port));
        } else if let Fault::Latency(latency) = arg.parse::<Fault>()? {
            opts.latency = Some(latency);
        }
    }
    eprintln!(
        "echo_card: serving on {} (default port {VPCD_PORT})",
        opts.addr
    );
    if serve(&mut EchoCard, &opts)? == ServeOutcome::PowerLost {
        std::process::exit(POWER_LOST_EXIT_STATUS);
    }
    Ok(())
}
