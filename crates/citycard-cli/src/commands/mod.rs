//! One module per subcommand.

pub mod apdu;
pub mod bench;
pub mod card;
pub mod conformance;
pub mod conformance_reader;
pub mod demo;
pub mod office;
pub mod serve;
pub mod verify;
pub mod watch;

/// Prints one exchange for `--trace`.
pub fn trace_line(command: &[u8], response: &[u8]) {
    eprintln!(">> {}", hex::encode_upper(command));
    eprintln!("<< {}", hex::encode_upper(response));
}
