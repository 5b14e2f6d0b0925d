//! The exit codes of every `citycard` command: one table, one meaning per
//! code. `verify` and `watch` use the verdict codes of citycard-reader
//! (10–41), which agree with this table where they overlap.

/// Success (for `verify`: a genuine, valid, unrevoked card).
pub const OK: u8 = 0;
/// Runtime error (I/O, PC/SC, a check of `demo` failed).
pub const ERROR: u8 = 1;
/// Usage error: bad arguments, an invalid name or validity.
pub const USAGE: u8 = 2;
/// Invalid input file (resident JSON/CSV, state file, trust bundle, credential).
pub const INPUT: u8 = 3;
/// Something already exists (issuer home, station, partner, output file without `--force`).
pub const EXISTS: u8 = 4;
/// Not an issuer home, unknown or retired station, unknown partner, bad
/// configuration, a reader already used by another issuing process.
pub const CONFIG: u8 = 5;
/// Key access failed (wrong passphrase, passphrase too short for a new key, token, PIN).
pub const KEY: u8 = 6;
/// The station is outside its validity window: it may not sign.
pub const STATION_NOT_VALID: u8 = 7;
/// The resident already has a live card (use `--replace`; `resident forget` needs `--force`).
pub const LIVE_CARD: u8 = 8;
/// Registry refusal (unknown card or resident, already revoked, open intents without `--resume`).
pub const REGISTRY: u8 = 9;
/// Wrong card in the reader: not blank, another city's, not a citycard.
pub const WRONG_CARD: u8 = 10;
/// The card refused a step or failed the read-back check.
pub const CARD_FAILED: u8 = 13;
/// The card was removed or torn mid-way (the intent stays open and is reconciled next time).
pub const CARD_REMOVED: u8 = 40;
/// A batch ended with rows not issued (each reported with its line and resident id).
pub const BATCH_PARTIAL: u8 = 50;
/// `conformance`: the card or reader under test does not conform.
pub const NOT_CONFORMING: u8 = 51;
/// `card emulate`: the emulated card lost power (tear fault); the emulator's
/// own constant, checked to agree at compile time.
pub const POWER_LOST: u8 = 75;
const _: () = assert!(POWER_LOST as i32 == citycard_emulator::POWER_LOST_EXIT_STATUS);
/// Interrupted by Ctrl-C (`batch`: after finishing the card in progress and printing the summary).
pub const INTERRUPTED: u8 = 130;

/// The table, for `citycard --help`: the README's "`citycard` exit codes"
/// table says the same (tests/office.rs compares them).
pub const TABLE: &str = "\
Exit codes (the same in every command):
  0    success (for verify: a genuine, valid, unrevoked card)
  1    runtime error (I/O, PC/SC; watch/serve: pcscd unreachable at start)
  2    usage error (bad arguments, invalid name or validity; --trace on a command that sends
       no APDU)
  3    invalid input file (resident JSON/CSV, state file; for verify, watch, serve: unusable
       trust bundle or credential)
  4    already exists (issuer home, station, partner, output file without --force)
  5    not an issuer home, unknown or retired station, unknown partner, bad configuration, a
       reader in use by another issuing process; watch/serve: a reader named in --readers
       matched no reader for --reader-wait seconds
  6    key access failed (wrong passphrase, a new key's passphrase under 12 characters,
       missing token, wrong PIN)
  7    the station is outside its validity window: it may not sign
  8    the resident has a live card (personalise: use --replace; resident forget: --force)
  9    registry refusal (unknown card or resident, already revoked, open intents without
       --resume)
  10   wrong card in the reader: not blank, another city's, not a citycard
  11, 12, 14-33, 41   verify: one code per verdict, see the citycard-reader README (e.g. 14
       unauthorised, 21 replay, 22 clone, 32 revoked)
  13   the card refused a step or its check value did not match
  40   the card was removed or torn mid-way (the intent stays open and is reconciled next time)
  50   a batch ended with rows not issued (each reported with its line and resident id)
  51   conformance: the card or reader under test does not conform
  75   card emulate: the card lost power (tear fault)
  130  interrupted (Ctrl-C): batch finishes the card in progress and prints its summary first";
