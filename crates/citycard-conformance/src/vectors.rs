//! Byte-exact replay of the spec's test vectors (`applet-spec/vectors`).
//!
//! Every vector starts from a BLANK card in deterministic mode (§7.8) with the
//! vector's `card_seed`. A test build enables that mode only when the card is
//! loaded (the reference emulator: `citycard card emulate --seed HEX`; a Java
//! Card test build: an install parameter carrying the seed). A production build
//! has no such mode: replaying a seeded vector against it fails at the first
//! answer that carries card randomness, and the report says so.

use std::time::Instant;

use citycard_transport::CardTransport;
use serde::Deserialize;

use crate::link::Link;
use crate::report::{Outcome, Report};
use crate::ConformanceError;

/// One step of a vector file.
#[derive(Debug, Deserialize)]
pub struct VectorStep {
    /// Command APDU, hex.
    pub command: String,
    /// Expected response (data ‖ SW), hex.
    #[serde(default)]
    pub response: Option<String>,
    /// Expected SW only, hex.
    #[serde(default)]
    pub response_sw: Option<String>,
    /// What the step is.
    #[serde(default)]
    pub note: Option<String>,
}

/// A vector file.
#[derive(Debug, Deserialize)]
pub struct Vector {
    /// Scenario name.
    pub name: String,
    /// The card's deterministic-mode seed (hex), or null.
    #[serde(default)]
    pub card_seed: Option<String>,
    /// The steps.
    pub steps: Vec<VectorStep>,
}

/// Parses a vector file.
///
/// # Errors
///
/// [`ConformanceError::Vector`] when it is not a vector.
pub fn parse(text: &str) -> Result<Vector, ConformanceError> {
    serde_json::from_str(text).map_err(|e| ConformanceError::Vector(e.to_string()))
}

/// Replays `vector` against the card behind `transport` (which must be BLANK
/// and, for a seeded vector, in deterministic mode with its seed).
///
/// # Errors
///
/// [`ConformanceError::Vector`] for a step that is not hex.
pub fn replay(
    vector: &Vector,
    transport: &mut dyn CardTransport,
    target: &str,
    spec_version: u8,
) -> Result<Report, ConformanceError> {
    let mut report = Report::new("vector", spec_version, target);
    let mut link = Link::new(transport, 0);
    let mut broken = false;
    let mut mismatched = false;
    for (i, step) in vector.steps.iter().enumerate() {
        let id = format!(
            "vector.{}.{:02} {}",
            vector.name,
            i + 1,
            step.note.as_deref().unwrap_or("")
        );
        let id = id.trim_end().to_owned();
        let command =
            hex::decode(&step.command).map_err(|e| ConformanceError::Vector(e.to_string()))?;
        let expected = match (&step.response, &step.response_sw) {
            (Some(r), _) => r.to_uppercase(),
            (None, Some(sw)) => format!("…{}", sw.to_uppercase()),
            (None, None) => return Err(ConformanceError::Vector("a step without response".into())),
        };
        if broken {
            report.push(
                &id,
                "§13",
                Outcome::Skipped,
                expected,
                "not run: the link broke".into(),
                Default::default(),
            );
            continue;
        }
        let start = Instant::now();
        let observed = match link.raw(&command) {
            Ok((mut data, sw)) => {
                data.extend_from_slice(&sw.to_be_bytes());
                hex::encode_upper(data)
            }
            Err(e) => {
                broken = true;
                report.push(
                    &id,
                    "§13",
                    Outcome::Fail,
                    expected,
                    e.to_string(),
                    start.elapsed(),
                );
                continue;
            }
        };
        let ok = match (&step.response, &step.response_sw) {
            (Some(r), _) => observed.eq_ignore_ascii_case(r),
            (None, Some(sw)) => observed.to_uppercase().ends_with(&sw.to_uppercase()),
            (None, None) => false,
        };
        let mut observed_text = observed;
        if !ok && !mismatched && vector.card_seed.is_some() {
            observed_text.push_str(
                " — if the card is a production build (no deterministic mode) or was not loaded with this vector's card_seed, this is expected",
            );
        }
        mismatched |= !ok;
        let outcome = if ok { Outcome::Pass } else { Outcome::Fail };
        report.push(
            &id,
            "§13",
            outcome,
            expected,
            observed_text,
            start.elapsed(),
        );
    }
    Ok(report)
}
