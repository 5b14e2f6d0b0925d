//! The JSON documents the office commands print with `--json`
//! (`docs/office.md`, "JSON output"), as serde types: one per document, each
//! built from the issuer's or the registry's typed values, so that programs
//! and tests reach the exact document without running the `citycard` binary.
//!
//! Every document an office command prints has `schema_version`
//! ([`SCHEMA_VERSION`]); all but [`TrustShow`] and [`BatchFinished`] have
//! `ok`. A failure is a [`Failure`]. Dates are `YYYY-MM-DD`, instants unix
//! seconds, fingerprints lowercase hex.
//!
//! Fields are declared in alphabetical order, at every level: serialised,
//! each document is byte for byte what the commands printed before the
//! documents were typed (a `serde_json::Value` map, whose keys are sorted).
//! A test holds every document to it. An optional key that is absent, not
//! `null`, says so on its field.

use std::fmt::Display;

use serde::Serialize;

mod home;
mod issuing;
mod keys;
mod records;
#[cfg(test)]
mod tests;

pub use home::*;
pub use issuing::*;
pub use keys::*;
pub use records::*;

/// Version of every document of this module that carries `schema_version`.
pub const SCHEMA_VERSION: u64 = 1;

/// A command that failed: `{"ok": false, "error": …, "exit_code": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What went wrong, for people.
    pub error: String,
    /// The command's exit code.
    pub exit_code: u8,
    /// Always `false`.
    pub ok: bool,
    /// Always 1.
    pub schema_version: u64,
}

impl Failure {
    /// The failure document for `message` and the exit code `exit_code`.
    pub fn new(message: impl Display, exit_code: u8) -> Self {
        Self {
            error: message.to_string(),
            exit_code,
            ok: false,
            schema_version: SCHEMA_VERSION,
        }
    }
}
