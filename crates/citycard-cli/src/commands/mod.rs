//! One module per subcommand.

pub mod apdu;
pub mod card;
pub mod demo;
pub mod issuer;
pub mod verify;

/// Today's date from the system clock (UTC).
pub fn today() -> anyhow::Result<citycard_proto::Date> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let days = i64::try_from(secs / 86_400)?;
    Ok(citycard_proto::Date::from_days_since_epoch(days)?)
}

/// Prints one exchange for `--trace`.
pub fn trace_line(command: &[u8], response: &[u8]) {
    eprintln!(">> {}", hex::encode_upper(command));
    eprintln!("<< {}", hex::encode_upper(response));
}
