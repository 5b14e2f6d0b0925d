//! The card-time model of SPEC §12: on-card operations × public JCOP figures,
//! plus air time. Operation counts come from the traced exchange (which
//! commands the card answered, how many persistent writes it made).

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
/// All AES work (GCM, CMAC) of one secured command or tap (ms, assumed).
pub const AES_MS_PER_UNIT: f64 = 5.0;
/// One EEPROM write of about 100 bytes (ms, assumed).
pub const WRITE_MS: f64 = 10.0;
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
/// Bytes hashed by the three KDFs of one GENERAL AUTHENTICATE (each < 128
/// bytes; SPEC §12 counts one 256-byte unit).
pub const GA_KDF_BYTES: u64 = 256;

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
    /// Bytes hashed with SHA-256 (outside ECDSA verification's own hash, counted here too).
    pub sha256_bytes: u64,
    /// Units of AES work (one per tap or secured command, [`AES_MS_PER_UNIT`] each).
    pub aes_units: u32,
    /// Persistent writes (counted exactly by the card's storage).
    pub writes: u64,
}

impl CardOps {
    /// Adds `other`.
    pub fn add(&mut self, other: &CardOps) {
        self.keygen += other.keygen;
        self.ecdh += other.ecdh;
        self.ecdsa_verify += other.ecdsa_verify;
        self.ecdsa_sign += other.ecdsa_sign;
        self.sha256_bytes += other.sha256_bytes;
        self.aes_units += other.aes_units;
        self.writes += other.writes;
    }

    /// Card compute time on a JCOP4-class card (ms), writes included.
    pub fn compute_ms_jcop4(&self) -> f64 {
        f64::from(self.keygen) * KEYGEN_MS
            + f64::from(self.ecdh) * ECDH_MS
            + f64::from(self.ecdsa_verify) * VERIFY_MS
            + f64::from(self.ecdsa_sign) * SIGN_MS
            + self.sha256_bytes as f64 / 256.0 * SHA256_MS_PER_256B
            + f64::from(self.aes_units) * AES_MS_PER_UNIT
            + self.writes as f64 * WRITE_MS
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

/// Data length of a short command APDU (0 for cases 1 and 2).
fn lc(command: &[u8]) -> u64 {
    match command.get(4) {
        Some(&n) if command.len() > 5 => u64::from(n),
        _ => 0,
    }
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

/// On-card operations of a traced exchange, per SPEC §6 (version 2): which
/// commands the card accepted, what each does on the card, and the exact
/// number of persistent writes `writes` (from the card's storage counter).
/// (The reference card also counts its operations itself, `Applet::ops`;
/// this model reads a trace, so it also works for a card behind pcscd.)
///
/// - PSO: VERIFY CERTIFICATE (last segment, accepted or not: an issued card
///   answers `9000` after the same work): SHA-256 over the certificate and
///   one ECDSA verification, every time.
/// - EXTERNAL AUTHENTICATE: one ECDSA verification (always), G key
///   generations on a prepared card (G from the command's `83 01 G`), one
///   ECDH, one KDF, AES.
/// - PUT DATA: AES; its plaintext is hashed at ACTIVATE (digests, records).
/// - ACTIVATE: G ECDSA verifications (the records), AES.
/// - GENERAL AUTHENTICATE (answer or decoy alike): key generation, 2 ECDH,
///   3 KDF, AES.
/// - PIV profile (`applet-spec/piv-profile.md` §5 step 4): GENERAL
///   AUTHENTICATE `00 87 11 9E` (INS 87, P-256, Card Authentication key),
///   accepted: one ECDSA P-256 signature over the reader's 32-byte challenge,
///   which the card signs as a prehash (nothing hashed on the card). The
///   applet's GENERAL AUTHENTICATE is INS 86; INS 87 means nothing to the
///   applet, and PIV management-key authentication (`87 … 9B`) is not
///   counted. The PIV SELECT, GET DATA and GET RESPONSE cost no operation.
pub fn card_ops(entries: &[TraceEntry], writes: u64) -> CardOps {
    let mut ops = CardOps {
        writes,
        ..CardOps::default()
    };
    let mut cert_bytes = 0u64;
    let mut put_bytes = 0u64;
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
            ins::PSO => {
                cert_bytes += lc(&e.command);
                if !chained {
                    ops.ecdsa_verify += 1;
                    ops.sha256_bytes += cert_bytes;
                    cert_bytes = 0;
                }
            }
            ins::EXTERNAL_AUTHENTICATE => {
                ops.ecdsa_verify += 1;
                ops.sha256_bytes += lc(&e.command);
                if let [.., 0x83, 0x01, g, _le] = e.command.as_slice() {
                    groups = u32::from(*g).max(1);
                }
                if accepted(&e.response) {
                    if prepared {
                        ops.keygen += groups;
                    }
                    ops.ecdh += 1;
                    ops.sha256_bytes += 128;
                    ops.aes_units += 1;
                }
            }
            ins::PUT_DATA => {
                put_bytes += lc(&e.command);
                if !chained && accepted(&e.response) {
                    ops.aes_units += 1;
                }
            }
            ins::ACTIVATE if accepted(&e.response) => {
                ops.ecdsa_verify += groups;
                ops.sha256_bytes += put_bytes;
                ops.aes_units += 1;
            }
            ins::GENERAL_AUTHENTICATE if accepted(&e.response) => {
                ops.keygen += 1;
                ops.ecdh += 2;
                ops.sha256_bytes += GA_KDF_BYTES;
                ops.aes_units += 1;
            }
            _ => {}
        }
    }
    ops
}
