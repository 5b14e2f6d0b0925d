//! The card-time model of SPEC §12 and §14: on-card operations × the
//! per-operation JCOP4 costs of §14, plus air time. For the in-process
//! reference card the operations are the card's own counts (`Applet::ops`,
//! [`CardOps::from_card`]) and the writes its storage's (charged by the bytes
//! they change); for a card whose operations cannot be counted (the PIV
//! card, a card behind pcscd) [`card_ops`] reads them from the traced
//! commands.

use citycard_card::OpCount;
use citycard_proto::consts::ins;
use citycard_proto::piv::{ALG_ECC_P256, SLOT_CARD_AUTHENTICATION};
use citycard_transport::TraceEntry;
use serde::Serialize;

/// JCOP4 P-256 signature (ms).
pub const SIGN_MS: f64 = 32.0;
/// JCOP4 P-256 signature verification (ms).
pub const VERIFY_MS: f64 = 30.0;
/// JCOP4 P-256 ECDH (ms).
pub const ECDH_MS: f64 = 20.0;
/// JCOP4 P-256 key generation (ms).
pub const KEYGEN_MS: f64 = 27.0;
/// JCOP4 SHA-256, per 256 bytes hashed (ms).
pub const SHA256_MS_PER_256B: f64 = 8.0;
/// AES-CMAC or AES-CTR (`Signature.ALG_AES_CMAC_128`, `Cipher.ALG_AES_CTR`),
/// per call (ms, assumed: SPEC §14).
pub const AES_MS_PER_CALL: f64 = 0.5;
/// … plus per 16-byte block (ms, assumed: SPEC §14).
pub const AES_MS_PER_BLOCK: f64 = 0.05;
/// One persistent write of at most [`WRITE_UNIT_BYTES`] changed bytes (ms,
/// assumed: SPEC §14); a larger write costs one unit per started 100 bytes.
pub const WRITE_MS: f64 = 10.0;
/// Bytes per write unit.
pub const WRITE_UNIT_BYTES: u64 = 100;
/// JCOP3-class cards: compute (and writes) take this many times longer.
pub const JCOP3_FACTOR: f64 = 2.0;
/// Air time per byte at 106 kbit/s (µs).
pub const AIR_US_PER_BYTE_106K: f64 = 85.0;
/// Air time per byte at 424 kbit/s (µs).
pub const AIR_US_PER_BYTE_424K: f64 = 21.0;
/// Frame overhead per APDU (ms).
pub const FRAME_MS_PER_APDU: f64 = 1.0;
/// INS of PIV GENERAL AUTHENTICATE (SP 800-73-4 Part 2 §3.2.4); the applet's
/// is [`ins::GENERAL_AUTHENTICATE`] (86).
pub const PIV_GENERAL_AUTHENTICATE: u8 = 0x87;

/// Persistent writes of an exchange, as the card's storage counted them:
/// how many, the bytes they changed and the write units they cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Writes {
    /// Persistent writes.
    pub count: u64,
    /// Bytes changed, summed over the writes.
    pub bytes: u64,
    /// Write units: per write, one per started [`WRITE_UNIT_BYTES`] changed
    /// (at least one).
    pub units: u64,
}

impl Writes {
    /// One write that changed `bytes` bytes.
    pub fn one(bytes: u64) -> Self {
        Self {
            count: 1,
            bytes,
            units: bytes.div_ceil(WRITE_UNIT_BYTES).max(1),
        }
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &Writes) {
        self.count += other.count;
        self.bytes += other.bytes;
        self.units += other.units;
    }

    /// The writes made since `earlier` (a snapshot of the same counter).
    pub fn since(&self, earlier: &Writes) -> Writes {
        Writes {
            count: self.count.saturating_sub(earlier.count),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            units: self.units.saturating_sub(earlier.units),
        }
    }
}

/// The operations the card counted between `before` and `after` (two
/// snapshots of `Applet::ops`).
pub fn ops_since(after: &OpCount, before: &OpCount) -> OpCount {
    OpCount {
        keygen: after.keygen.saturating_sub(before.keygen),
        ecdh: after.ecdh.saturating_sub(before.ecdh),
        ecdsa_verify: after.ecdsa_verify.saturating_sub(before.ecdsa_verify),
        verify_bytes: after.verify_bytes.saturating_sub(before.verify_bytes),
        sha256: after.sha256.saturating_sub(before.sha256),
        sha256_bytes: after.sha256_bytes.saturating_sub(before.sha256_bytes),
        cmac: after.cmac.saturating_sub(before.cmac),
        cmac_bytes: after.cmac_bytes.saturating_sub(before.cmac_bytes),
        ctr_bytes: after.ctr_bytes.saturating_sub(before.ctr_bytes),
        random_bytes: after.random_bytes.saturating_sub(before.random_bytes),
        writes: after.writes.saturating_sub(before.writes),
    }
}

/// On-card operations of an exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CardOps {
    /// P-256 key generations.
    pub keygen: u32,
    /// P-256 ECDH.
    pub ecdh: u32,
    /// ECDSA P-256 verifications.
    pub ecdsa_verify: u32,
    /// ECDSA P-256 signatures.
    pub ecdsa_sign: u32,
    /// Bytes hashed with SHA-256 (fingerprints, KDF, digests).
    pub sha256_bytes: u64,
    /// AES-CMAC calls.
    pub cmac: u32,
    /// Bytes MACed by those.
    pub cmac_bytes: u64,
    /// AES-CTR calls.
    pub ctr: u32,
    /// Bytes through AES-CTR.
    pub ctr_bytes: u64,
    /// Persistent writes (counted exactly by the card's storage).
    pub writes: u64,
    /// Bytes those writes changed.
    pub write_bytes: u64,
    /// Write units those writes cost ([`WRITE_MS`] each).
    pub write_units: u64,
}

impl CardOps {
    /// The operations the reference card counted itself (`ops`, from
    /// `Applet::ops`), with `ctr` AES-CTR calls (the card counts their bytes
    /// only: [`ctr_calls`] reads them from the trace) and the storage's
    /// `writes`.
    pub fn from_card(ops: &OpCount, ctr: u32, writes: Writes) -> Self {
        Self {
            keygen: ops.keygen,
            ecdh: ops.ecdh,
            ecdsa_verify: ops.ecdsa_verify,
            ecdsa_sign: 0,
            sha256_bytes: ops.sha256_bytes,
            cmac: ops.cmac,
            cmac_bytes: ops.cmac_bytes,
            ctr,
            ctr_bytes: ops.ctr_bytes,
            ..Self::default()
        }
        .with_writes(writes)
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &CardOps) {
        self.keygen += other.keygen;
        self.ecdh += other.ecdh;
        self.ecdsa_verify += other.ecdsa_verify;
        self.ecdsa_sign += other.ecdsa_sign;
        self.sha256_bytes += other.sha256_bytes;
        self.cmac += other.cmac;
        self.cmac_bytes += other.cmac_bytes;
        self.ctr += other.ctr;
        self.ctr_bytes += other.ctr_bytes;
        self.writes += other.writes;
        self.write_bytes += other.write_bytes;
        self.write_units += other.write_units;
    }

    /// Sets the writes from the card's storage counter.
    pub fn with_writes(mut self, w: Writes) -> Self {
        self.writes = w.count;
        self.write_bytes = w.bytes;
        self.write_units = w.units;
        self
    }

    /// AES work (CMAC and CTR) on a JCOP4-class card (ms).
    pub fn aes_ms_jcop4(&self) -> f64 {
        f64::from(self.cmac + self.ctr) * AES_MS_PER_CALL
            + (self.cmac_bytes + self.ctr_bytes) as f64 / 16.0 * AES_MS_PER_BLOCK
    }

    /// Card compute time on a JCOP4-class card (ms), writes included.
    pub fn compute_ms_jcop4(&self) -> f64 {
        f64::from(self.keygen) * KEYGEN_MS
            + f64::from(self.ecdh) * ECDH_MS
            + f64::from(self.ecdsa_verify) * VERIFY_MS
            + f64::from(self.ecdsa_sign) * SIGN_MS
            + self.sha256_bytes as f64 / 256.0 * SHA256_MS_PER_256B
            + self.aes_ms_jcop4()
            + self.write_units as f64 * WRITE_MS
    }
}

/// Air time (ms) of `apdus` APDUs carrying `bytes` bytes (both directions).
pub fn air_ms(apdus: u64, bytes: u64, us_per_byte: f64) -> f64 {
    bytes as f64 * us_per_byte / 1000.0 + apdus as f64 * FRAME_MS_PER_APDU
}

/// Estimated card + air time of an exchange.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Estimate {
    /// Card compute, JCOP4 (ms).
    pub compute_ms_jcop4: f64,
    /// JCOP4 at 424 kbit/s (ms).
    pub jcop4_424k: f64,
    /// JCOP4 at 106 kbit/s (ms).
    pub jcop4_106k: f64,
    /// JCOP3 at 424 kbit/s (ms).
    pub jcop3_424k: f64,
    /// JCOP3 at 106 kbit/s (ms).
    pub jcop3_106k: f64,
}

/// Estimates an exchange of `apdus` APDUs and `bytes` bytes doing `ops`.
pub fn estimate(ops: &CardOps, apdus: u64, bytes: u64) -> Estimate {
    let c4 = ops.compute_ms_jcop4();
    let c3 = c4 * JCOP3_FACTOR;
    let a424 = air_ms(apdus, bytes, AIR_US_PER_BYTE_424K);
    let a106 = air_ms(apdus, bytes, AIR_US_PER_BYTE_106K);
    Estimate {
        compute_ms_jcop4: c4,
        jcop4_424k: c4 + a424,
        jcop4_106k: c4 + a106,
        jcop3_424k: c3 + a424,
        jcop3_106k: c3 + a106,
    }
}

/// Status word of a raw response.
fn sw(response: &[u8]) -> (u8, u8) {
    match response {
        [.., a, b] => (*a, *b),
        _ => (0, 0),
    }
}

fn accepted(response: &[u8]) -> bool {
    matches!(sw(response), (0x90, 0x00) | (0x61, _))
}

/// PIV GENERAL AUTHENTICATE with the P-256 Card Authentication key:
/// `00 87 11 9E` (or `10 87 11 9E`, chained).
fn is_piv_card_authentication(command: &[u8]) -> bool {
    matches!(
        command,
        [cla, PIV_GENERAL_AUTHENTICATE, ALG_ECC_P256, SLOT_CARD_AUTHENTICATION, ..]
            if cla & !0x10 == 0x00
    )
}

/// AES-CTR calls of a traced applet exchange: one per GENERAL AUTHENTICATE
/// answered (answer or decoy: the disclosure) and one per secured command
/// accepted (EXTERNAL AUTHENTICATE's sealed group keys, each PUT DATA,
/// ACTIVATE).
pub fn ctr_calls(entries: &[TraceEntry]) -> u32 {
    let calls = entries
        .iter()
        .filter(|e| {
            let chained = e.command.first().is_some_and(|c| c & 0x10 != 0);
            !chained
                && accepted(&e.response)
                && matches!(
                    e.command.get(1).copied(),
                    Some(
                        ins::GENERAL_AUTHENTICATE
                            | ins::EXTERNAL_AUTHENTICATE
                            | ins::PUT_DATA
                            | ins::ACTIVATE
                    )
                )
        })
        .count();
    u32::try_from(calls).unwrap_or(u32::MAX)
}

/// On-card public-key operations of a traced exchange, for a card that does
/// not count its own (the PIV card, a card behind pcscd), per SPEC §6
/// (version 2) — what the commands show; hashing and AES need the card's own
/// counts ([`CardOps::from_card`]).
///
/// - PSO: VERIFY CERTIFICATE (last segment, accepted or not: an issued card
///   answers `9000` after the same work): one ECDSA verification.
/// - EXTERNAL AUTHENTICATE: one ECDSA verification (always), G key
///   generations on a prepared card (G from the command's `83 01 G`), one
///   ECDH.
/// - ACTIVATE: G ECDSA verifications (the records).
/// - GENERAL AUTHENTICATE (answer or decoy alike): key generation, 2 ECDH.
/// - PIV profile (`applet-spec/piv-profile.md` §5 step 4): GENERAL
///   AUTHENTICATE `00 87 11 9E` (INS 87, P-256, Card Authentication key),
///   accepted: one ECDSA P-256 signature over the reader's 32-byte challenge,
///   which the card signs as a prehash (nothing hashed on the card). The
///   applet's GENERAL AUTHENTICATE is INS 86; INS 87 means nothing to the
///   applet, and PIV management-key authentication (`87 … 9B`) is not
///   counted. The PIV SELECT, GET DATA and GET RESPONSE cost no operation.
pub fn card_ops(entries: &[TraceEntry], writes: Writes) -> CardOps {
    let mut ops = CardOps::default().with_writes(writes);
    let mut groups = 1u32;
    let mut prepared = false;
    for e in entries {
        let (Some(&cla), Some(&ins)) = (e.command.first(), e.command.get(1)) else {
            continue;
        };
        let chained = cla & 0x10 != 0;
        if is_piv_card_authentication(&e.command) {
            if !chained && accepted(&e.response) {
                ops.ecdsa_sign += 1;
            }
            continue;
        }
        match ins {
            ins::SELECT => {
                // The FCI's life cycle: 03 prepared (personalisation keys follow).
                prepared = e.response.windows(3).any(|w| w == [0x81, 0x01, 0x03]);
            }
            ins::PSO if !chained => ops.ecdsa_verify += 1,
            ins::EXTERNAL_AUTHENTICATE => {
                ops.ecdsa_verify += 1;
                if let [.., 0x83, 0x01, g, _le] = e.command.as_slice() {
                    groups = u32::from(*g).max(1);
                }
                if accepted(&e.response) {
                    if prepared {
                        ops.keygen += groups;
                    }
                    ops.ecdh += 1;
                }
            }
            ins::ACTIVATE if accepted(&e.response) => ops.ecdsa_verify += groups,
            ins::GENERAL_AUTHENTICATE if accepted(&e.response) => {
                ops.keygen += 1;
                ops.ecdh += 2;
            }
            _ => {}
        }
    }
    ops
}
