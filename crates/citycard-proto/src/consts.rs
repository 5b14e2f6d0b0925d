//! Identifiers and codes fixed by the spec (§2, §4).

/// The application identifier: proprietary RID `F0`, "CITYCARD", version `02`.
pub const AID: [u8; 10] = [0xF0, 0x43, 0x49, 0x54, 0x59, 0x43, 0x41, 0x52, 0x44, 0x02];

/// Protocol version announced in the SELECT answer and carried in records
/// and certificates.
pub const PROTOCOL_VERSION: u8 = 2;

/// Historical bytes the reference card puts in its ATR ("CITYCARD").
pub const HISTORICAL_BYTES: [u8; 8] = *b"CITYCARD";

/// Instruction bytes (spec §4.2).
pub mod ins {
    /// SELECT (CLA 00, P1 04, P2 00).
    pub const SELECT: u8 = 0xA4;
    /// GET RESPONSE (CLA 00), served by the dispatcher.
    pub const GET_RESPONSE: u8 = crate::apdu::INS_GET_RESPONSE;
    /// PREPARE (CLA 80): a blank card takes the issuer anchor and generates its
    /// attestation key (answered, nothing written).
    pub const PREPARE: u8 = 0x10;
    /// STORE PREPARATION CERTIFICATE (CLA 80): commits the preparation (BLANK → PREPARED).
    pub const STORE_PREPARATION_CERTIFICATE: u8 = 0x12;
    /// PERFORM SECURITY OPERATION: VERIFY CERTIFICATE (CLA 00, P1 00, P2 BE).
    pub const PSO: u8 = 0x2A;
    /// GET CHALLENGE (CLA 00).
    pub const GET_CHALLENGE: u8 = 0x84;
    /// EXTERNAL AUTHENTICATE (CLA 00): issuing-station authentication.
    pub const EXTERNAL_AUTHENTICATE: u8 = 0x82;
    /// PUT DATA (CLA 80, secured): personalisation data.
    pub const PUT_DATA: u8 = 0xDA;
    /// ACTIVATE (CLA 80, secured): verify and commit personalisation, lock the card.
    pub const ACTIVATE: u8 = 0x44;
    /// TERMINATE (CLA 80, secured): disable the card for good.
    pub const TERMINATE: u8 = 0xE6;
    /// GENERAL AUTHENTICATE (CLA 00): the reader's one-shot verification.
    pub const GENERAL_AUTHENTICATE: u8 = 0x86;
}

/// Class bytes.
pub mod cla {
    /// Interindustry class.
    pub const ISO: u8 = 0x00;
    /// Proprietary class.
    pub const PROPRIETARY: u8 = 0x80;
    /// Chaining bit (b5).
    pub const CHAIN: u8 = crate::apdu::CLA_CHAINING;
}

/// Persistent life-cycle states (spec §3.1), as reported in the SELECT answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LifeCycle {
    /// Applet installed, not prepared.
    Blank,
    /// Prepared by the city: issuer anchor, attestation key and preparation
    /// certificate installed; only that issuer's stations can personalise.
    Prepared,
    /// Personalised and locked: only SELECT, PSO, GENERAL AUTHENTICATE, GET RESPONSE
    /// and the station-authenticated TERMINATE are accepted.
    Issued,
    /// Terminated: SELECT answers `6283`, nothing else is accepted.
    Terminated,
}

impl LifeCycle {
    /// The byte in the SELECT answer (tag `81`) and the state file.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Blank => 0x01,
            Self::Prepared => 0x03,
            Self::Issued => 0x07,
            Self::Terminated => 0x0F,
        }
    }

    /// Decodes the byte.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Blank),
            0x03 => Some(Self::Prepared),
            0x07 => Some(Self::Issued),
            0x0F => Some(Self::Terminated),
            _ => None,
        }
    }

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Blank => "blank",
            Self::Prepared => "prepared",
            Self::Issued => "issued",
            Self::Terminated => "terminated",
        }
    }
}

/// Domain-separation labels (spec §7.3). Every KDF, MAC and signature input
/// starts with (or uses as `info`) one of these.
pub mod label {
    /// Station authentication signature prefix.
    pub const STATION_AUTH: &[u8] = b"citycard-v2 station-auth";
    /// Personalisation secure-messaging keys.
    pub const PERSONALISATION: &[u8] = b"citycard-v2 personalisation";
    /// Disclosure encryption key.
    pub const DISCLOSURE: &[u8] = b"citycard-v2 disclosure";
    /// Card authentication MAC key.
    pub const CARD_AUTH: &[u8] = b"citycard-v2 card-auth";
    /// Card authentication MAC input prefix.
    pub const MAC: &[u8] = b"citycard-v2 mac";
    /// Pseudonym derivation prefix.
    pub const PSEUDONYM: &[u8] = b"citycard-v2 pseudonym";
    /// Salt derivation prefix.
    pub const SALT: &[u8] = b"citycard-v2 salt";
    /// Station reference prefix.
    pub const STATION_REF: &[u8] = b"citycard-v2 station-ref";
    /// Issuance check value prefix.
    pub const ISSUED: &[u8] = b"citycard-v2 issued";
    /// Disclosure tag key.
    pub const TAG: &[u8] = b"citycard-v2 tag";
}

/// The contactless ATR of the reference card (PC/SC part 3 form for ISO 14443-4:
/// `3B 8n 80 01` + historical bytes + TCK).
pub fn atr() -> [u8; 13] {
    let mut atr = [0u8; 13];
    let head = [0x3B, 0x88, 0x80, 0x01];
    for (slot, b) in atr
        .iter_mut()
        .zip(head.iter().chain(HISTORICAL_BYTES.iter()))
    {
        *slot = *b;
    }
    let tck = atr.iter().skip(1).take(11).fold(0u8, |acc, b| acc ^ b);
    if let Some(last) = atr.last_mut() {
        *last = tck;
    }
    atr
}
