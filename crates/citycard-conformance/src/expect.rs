//! What the card must answer at each step, per spec version: **the one table
//! to edit when the spec changes.**
//!
//! The kit's machinery ([`crate::card`]) sends the same commands whatever the
//! version and looks the expected answer of each step up here by its step id.
//! A version's table also says which whole-run properties hold (uniform
//! refusals, how answer lengths are fixed).
//!
//! Version 2 (this build): a refused GENERAL AUTHENTICATE is a
//! [`Expect::Decoy`], PSO on an issued card always answers `9000`, GENERAL
//! AUTHENTICATE before issuance answers `6985`, answer lengths are
//! `answer_len(request)` ([`LengthRule::FunctionOfRequest`]), and blank cards
//! are prepared (PREPARE, STORE PREPARATION CERTIFICATE) instead of anchored.

use citycard_proto::consts::LifeCycle;
use serde::Serialize;

/// A version of `applet-spec/SPEC.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SpecVersion {
    /// Version 2 (AID ending `02`).
    V2,
}

impl SpecVersion {
    /// The version this build implements (`citycard_proto::consts::PROTOCOL_VERSION`).
    pub fn current() -> Option<Self> {
        Self::from_byte(citycard_proto::consts::PROTOCOL_VERSION)
    }

    /// From the FCI's protocol version byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The version byte.
    pub const fn byte(self) -> u8 {
        match self {
            Self::V2 => 2,
        }
    }

    /// The expected answers of every step and the run's properties.
    pub fn table(self) -> &'static Table {
        match self {
            Self::V2 => &V2,
        }
    }
}

/// The expected answer of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// This status word and no data.
    Sw(u16),
    /// `9000` and no data.
    Ok,
    /// `9000` and exactly this many data bytes (GET CHALLENGE).
    Data(usize),
    /// `9000` and an FCI announcing this life cycle and the table's version.
    Fci(LifeCycle),
    /// `9000` and the station-session answer (§6.6): a preparation
    /// certificate chaining to the city's preparer and the sealed group keys.
    CardKey,
    /// `9000` and the attestation key `86 21 K_A` (PREPARE, §6.3).
    Attestation,
    /// `9000` and a sealed answer (ACTIVATE's issuance check value, §6.8),
    /// which the kit opens and compares.
    Sealed,
    /// A GENERAL AUTHENTICATE answer that opens with the reader's key and
    /// discloses exactly what was personalised and requested (§7.5, §8).
    Answer,
    /// A decoy: an answer with the status words and length of a real one for
    /// the same request, which does not open (a refusal in version 2).
    Decoy,
}

/// How the length of a GENERAL AUTHENTICATE answer is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LengthRule {
    /// The plaintext is padded to a multiple of this many bytes (version 1):
    /// the ciphertext length minus the 16-byte tag is a multiple of it.
    PaddedTo(usize),
    /// The length depends on the request only (version 2): every answer,
    /// real or decoy, is `answer_len(request)` bytes.
    FunctionOfRequest,
}

/// Whole-run properties of a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Properties {
    /// Every refusal by PSO, EXTERNAL AUTHENTICATE and GENERAL AUTHENTICATE
    /// looks the same (status word and length) whichever check failed.
    pub uniform_refusal: bool,
    /// How answer lengths are fixed.
    pub answer_length: LengthRule,
    /// The most GET RESPONSE rounds any answer needs (a card that asks for
    /// more fails: endless `61xx`).
    pub max_get_response: usize,
}

/// A version's table: step id → expected answer, and properties.
#[derive(Debug)]
pub struct Table {
    /// The spec version.
    pub version: SpecVersion,
    /// Every step the card kit runs, in order, with its spec section.
    pub steps: &'static [Entry],
    /// The reader kit's cards, in the order they are presented, with the
    /// verdict a correct reader gives for each.
    pub reader_cases: &'static [ReaderCase],
    /// Properties checked over the whole run.
    pub properties: Properties,
}

/// One row of a table.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Step id (`section.name`), as printed in reports.
    pub id: &'static str,
    /// Spec section(s) the step checks.
    pub spec: &'static str,
    /// What the card must answer.
    pub expect: Expect,
}

impl Table {
    /// The entry of step `id`.
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.steps.iter().find(|e| e.id == id)
    }
}

/// One card of the reader kit and the verdict a correct reader reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReaderCase {
    /// Case name (a card kind, or an emulator `--fault` value).
    pub name: &'static str,
    /// The verdict (`citycard verify --json` names: `genuine`, `clone`, …).
    pub verdict: &'static str,
    /// Spec section(s) that fix the verdict.
    pub spec: &'static str,
}

const fn r(name: &'static str, verdict: &'static str, spec: &'static str) -> ReaderCase {
    ReaderCase {
        name,
        verdict,
        spec,
    }
}

const fn e(id: &'static str, spec: &'static str, expect: Expect) -> Entry {
    Entry { id, spec, expect }
}

use Expect::{Answer, Attestation, CardKey, Data, Decoy, Fci, Ok as Done, Sealed, Sw};

/// Version 2 (SPEC.md on this branch).
pub static V2: Table = Table {
    version: SpecVersion::V2,
    properties: Properties {
        uniform_refusal: true,
        answer_length: LengthRule::FunctionOfRequest,
        max_get_response: 8,
    },
    reader_cases: &[
        r("genuine", "genuine", "§8"),
        r("clone", "clone", "§8 3c §10.1"),
        r("revoked", "revoked", "§8 3f"),
        r("expired", "expired", "§8 3f"),
        // Another city's card answers decoys: refused (§8 step 2).
        r("other-city", "card_refused", "§8 step 2"),
        r("piv", "genuine", "§8 step 1, piv-profile.md §5"),
        r("wrong-sw", "tampered", "§6.10 §9"),
        r("truncated", "tampered", "§8 3a"),
        r("over-long", "tampered", "§8 3a"),
        // One flipped ciphertext bit: the tag fails, which is a decoy; the
        // retry fails the same way: a modified answer is indistinguishable
        // from a refusal (§8 3a).
        r("flip-ciphertext", "card_refused", "§8 2 3a"),
        r("replay", "replay", "§8 3b §10.2"),
        // A decoy is the card's refusal.
        r("decoy", "card_refused", "§8 2 3a"),
        // This tap's E_C with an earlier tap's ciphertext: the tag (keyed
        // by E_C) fails, as for a decoy.
        r("stale-record", "card_refused", "§8 2 3a"),
        r("endless-61xx", "tampered", "§4"),
        r("removed-mid-answer", "card_removed", "§4"),
    ],
    steps: &[
        // A blank card: selection, APDU form, every command in BLANK.
        e("blank.not-selected", "§3.2", Sw(0x6985)),
        e("blank.select-unknown-aid", "§6.1", Sw(0x6A82)),
        e("blank.select", "§5.5 §6.1", Fci(LifeCycle::Blank)),
        e("blank.select-no-fci", "§6.1", Done),
        e("blank.wrong-class", "§4", Sw(0x6E00)),
        e("blank.unknown-instruction", "§3.2 §9", Sw(0x6D00)),
        e("blank.extended-length", "§4", Sw(0x6700)),
        e("blank.chaining-not-supported", "§4", Sw(0x6884)),
        e("blank.get-response-nothing-pending", "§6.2", Sw(0x6985)),
        e("blank.get-challenge", "§3.2", Sw(0x6985)),
        e("blank.pso", "§3.2", Sw(0x6985)),
        e("blank.external-authenticate", "§3.2", Sw(0x6985)),
        e("blank.put-data", "§3.2", Sw(0x6985)),
        e("blank.activate", "§3.2", Sw(0x6985)),
        e("blank.terminate", "§3.2", Sw(0x6985)),
        e("blank.general-authenticate", "§3.2", Sw(0x6985)),
        // Preparation.
        e("prepare.store-without-prepare", "§6.3", Sw(0x6A80)),
        e("prepare.malformed", "§6.3", Sw(0x6A80)),
        e("prepare.prepare", "§6.3", Attestation),
        e("prepare.store-certificate", "§6.3", Done),
        e("prepare.select", "§3.1 §5.5", Fci(LifeCycle::Prepared)),
        e("prepare.again", "§3.2", Sw(0x6985)),
        e("prepare.put-data", "§3.2", Sw(0x6982)),
        e("prepare.activate", "§3.2", Sw(0x6982)),
        e("prepare.terminate", "§3.2", Sw(0x6985)),
        e("prepare.general-authenticate", "§3.2", Sw(0x6985)),
        e("prepare.get-challenge", "§6.5", Data(16)),
        e("prepare.get-challenge-wrong-le", "§6.5", Sw(0x6700)),
        e("prepare.wrong-p1p2", "§3.2 §9", Sw(0x6A86)),
        e("prepare.chain-first-segment", "§4", Done),
        e("prepare.chain-interrupted", "§4 §9", Sw(0x6883)),
        e("prepare.chain-too-long", "§4 §9", Sw(0x6700)),
        e("prepare.challenges-differ", "§6.5 §7.8", Data(16)),
        e(
            "prepare.external-authenticate-no-station",
            "§6.6 §9",
            Sw(0x6982),
        ),
        // Personalisation by a throwaway test city.
        e("personalise.pso-forged-station", "§6.4 §9", Sw(0x6982)),
        e("personalise.pso-station", "§6.4", Done),
        e("personalise.get-challenge", "§6.5", Data(16)),
        e(
            "personalise.external-authenticate-bad-signature",
            "§6.6 §9",
            Sw(0x6982),
        ),
        e("personalise.pso-station-again", "§6.4", Done),
        e("personalise.get-challenge-again", "§6.5", Data(16)),
        e("personalise.external-authenticate", "§6.6", CardKey),
        e("personalise.put-data-bad-mac", "§6.7 §7.4", Sw(0x6982)),
        e(
            "personalise.put-data-after-failure",
            "§6.7 §7.4",
            Sw(0x6982),
        ),
        e("personalise.restart-pso", "§6.4", Done),
        e("personalise.restart-get-challenge", "§6.5", Data(16)),
        e("personalise.restart-external-authenticate", "§6.6", CardKey),
        e("personalise.put-data-bad-plaintext", "§6.7 §9", Sw(0x6A80)),
        e("personalise.put-data", "§6.7", Done),
        e("personalise.activate", "§6.8", Sealed),
        e("personalise.select", "§3.1 §5.5", Fci(LifeCycle::Issued)),
        e("issued.prepare", "§3.2", Sw(0x6985)),
        e("issued.put-data", "§3.2", Sw(0x6985)),
        e("issued.activate", "§3.2", Sw(0x6985)),
        // Every reader profile: a decoy before its certificate is cached,
        // then a first and a cached tap.
        e("verify.library.uncached", "§6.10 §8", Decoy),
        e("verify.library.pso", "§6.4", Done),
        e("verify.library.first-tap", "§6.10 §7.5", Answer),
        e("verify.library.cached-tap", "§6.10 §7.5", Answer),
        e("verify.transit.uncached", "§6.10 §8", Decoy),
        e("verify.transit.pso", "§6.4", Done),
        e("verify.transit.first-tap", "§6.10 §7.5 §7.7", Answer),
        e("verify.transit.cached-tap", "§6.10 §7.5 §7.7", Answer),
        e("verify.full.uncached", "§6.10 §8", Decoy),
        e("verify.full.pso", "§6.4", Done),
        e("verify.full.first-tap", "§6.10 §7.5", Answer),
        e("verify.full.cached-tap", "§6.10 §7.5", Answer),
        e("verify.pseudonyms-per-partner", "§7.6 §10.8", Answer),
        // Every refusal path of an issued card: PSO answers 9000, GENERAL
        // AUTHENTICATE a decoy; malformed data 6A80 (command bytes only).
        e("refuse.pso-other-city", "§6.4 §10.9", Done),
        e("refuse.pso-forged-reader", "§6.4 §10.9", Done),
        e("refuse.pso-expired-reader", "§6.4 §10.9", Done),
        e("refuse.pso-malformed", "§6.4 §10.9", Sw(0x6A80)),
        e("refuse.ga-unknown-certificate", "§6.10 §10.9", Decoy),
        e("refuse.ga-beyond-grants", "§6.10 §10.9", Decoy),
        e("refuse.ga-date-before-card-date", "§6.10 §10.9", Decoy),
        e("refuse.ga-date-after-certificate", "§6.10 §10.9", Decoy),
        e("refuse.ga-invalid-point", "§6.10 §10.9", Decoy),
        e("refuse.ga-malformed", "§6.10 §9", Sw(0x6A80)),
        e(
            "refuse.external-authenticate-reader",
            "§6.6 §10.9",
            Sw(0x6982),
        ),
        // Properties over the whole run.
        e("property.uniform-refusal", "§9 §10.9", Decoy),
        e("property.answer-length", "§7.5 §10.6", Answer),
        // Termination by the station.
        e("terminate.without-session", "§3.2 §6.9 §9", Sw(0x6982)),
        e("terminate.pso-station", "§6.4", Done),
        e("terminate.get-challenge", "§6.5", Data(16)),
        e("terminate.external-authenticate", "§6.6", CardKey),
        e("terminate.terminate", "§6.9", Done),
        e("terminate.select", "§3.2 §6.1", Sw(0x6283)),
        e("terminate.get-challenge-after", "§3.2", Sw(0x6985)),
        e("terminate.general-authenticate-after", "§3.2", Sw(0x6985)),
        e("terminate.pso-after", "§3.2", Sw(0x6985)),
    ],
};

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_current_version_has_a_table_with_unique_step_ids() {
        let table = SpecVersion::current()
            .map(SpecVersion::table)
            .expect("a table for the spec version this build implements");
        let mut ids: Vec<_> = table.steps.iter().map(|e| e.id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate step ids");
    }
}
