//! Constants of the PIV card application (NIST SP 800-73-4 Part 1 and Part 2)
//! and of the few Yubico extensions this card implements.

use citycard_proto::sw::StatusWord;

/// The full PIV application identifier: RID `A0 00 00 03 08` (NIST) and PIX
/// `00 00 10 00 01 00` (SP 800-73-4 Part 1, §2.2).
pub const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// The shortest right-truncated AID a SELECT may use: the NIST RID
/// (SP 800-73-4 Part 2, §3.1.1 allows selection by a right-truncated AID).
pub const PIV_RID: [u8; 5] = [0xA0, 0x00, 0x00, 0x03, 0x08];

/// The ATR: the PC/SC part 3 contactless form `3B 8n 80 01` whose historical
/// bytes are a compact-TLV category `80` followed by the application
/// identifier `F B <PIV AID>` (ISO 7816-4 §8.1.1.2.2). OpenSC's PIV driver
/// recognises a PIV card by exactly this AID in the historical bytes.
pub const ATR: [u8; 18] = [
    0x3B, 0x8D, 0x80, 0x01, 0x80, 0xFB, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01,
    0x00, 0xCD,
];

/// Instruction bytes.
pub mod ins {
    /// SELECT (SP 800-73-4 Part 2, §3.1.1).
    pub const SELECT: u8 = 0xA4;
    /// GET DATA (§3.1.2).
    pub const GET_DATA: u8 = 0xCB;
    /// VERIFY (§3.2.1).
    pub const VERIFY: u8 = 0x20;
    /// CHANGE REFERENCE DATA (§3.2.2).
    pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
    /// RESET RETRY COUNTER (§3.2.3).
    pub const RESET_RETRY_COUNTER: u8 = 0x2C;
    /// GENERAL AUTHENTICATE (§3.2.4).
    pub const GENERAL_AUTHENTICATE: u8 = 0x87;
    /// PUT DATA (§3.3.1).
    pub const PUT_DATA: u8 = 0xDB;
    /// GENERATE ASYMMETRIC KEY PAIR (§3.3.2).
    pub const GENERATE_ASYMMETRIC_KEY_PAIR: u8 = 0x47;
    /// GET RESPONSE (ISO 7816-4 §7.6.1), served by the shared dispatcher.
    pub const GET_RESPONSE: u8 = citycard_proto::apdu::INS_GET_RESPONSE;
    /// Yubico extension: SET MANAGEMENT KEY (CLA 00, P1 FF, P2 FF).
    pub const YUBICO_SET_MANAGEMENT_KEY: u8 = 0xFF;
}

/// Key references (SP 800-73-4 Part 1, Table 4b).
pub mod key_ref {
    /// PIV Card Application PIN.
    pub const PIN: u8 = 0x80;
    /// PIN Unblocking Key.
    pub const PUK: u8 = 0x81;
    /// PIV Card Application Administration Key (the "management key").
    pub const MANAGEMENT: u8 = 0x9B;
    /// PIV Authentication key.
    pub const PIV_AUTHENTICATION: u8 = 0x9A;
    /// Digital Signature key.
    pub const DIGITAL_SIGNATURE: u8 = 0x9C;
    /// Key Management key.
    pub const KEY_MANAGEMENT: u8 = 0x9D;
    /// Card Authentication key.
    pub const CARD_AUTHENTICATION: u8 = 0x9E;
    /// First retired Key Management key.
    pub const RETIRED_FIRST: u8 = 0x82;
    /// Last retired Key Management key.
    pub const RETIRED_LAST: u8 = 0x95;
}

/// Cryptographic mechanism identifiers (SP 800-78-4, Table 6-2).
pub mod alg {
    /// 3-key Triple DES (ECB).
    pub const TDES: u8 = 0x03;
    /// AES-128 (ECB).
    pub const AES128: u8 = 0x08;
    /// AES-192 (ECB).
    pub const AES192: u8 = 0x0A;
    /// AES-256 (ECB).
    pub const AES256: u8 = 0x0C;
    /// ECC curve P-256.
    pub const ECC_P256: u8 = 0x11;
}

/// Data object tags (SP 800-73-4 Part 1, Table 3).
pub mod tag {
    /// Card Capability Container.
    pub const CCC: u32 = 0x5F_C1_07;
    /// Card Holder Unique Identifier.
    pub const CHUID: u32 = 0x5F_C1_02;
    /// X.509 certificate for PIV Authentication (9A).
    pub const CERT_9A: u32 = 0x5F_C1_05;
    /// Cardholder fingerprints (PIN-protected).
    pub const FINGERPRINTS: u32 = 0x5F_C1_03;
    /// Security object.
    pub const SECURITY_OBJECT: u32 = 0x5F_C1_06;
    /// Cardholder facial image (PIN-protected).
    pub const FACIAL_IMAGE: u32 = 0x5F_C1_08;
    /// Printed information (PIN-protected).
    pub const PRINTED_INFORMATION: u32 = 0x5F_C1_09;
    /// X.509 certificate for Digital Signature (9C).
    pub const CERT_9C: u32 = 0x5F_C1_0A;
    /// X.509 certificate for Key Management (9D).
    pub const CERT_9D: u32 = 0x5F_C1_0B;
    /// X.509 certificate for Card Authentication (9E).
    pub const CERT_9E: u32 = 0x5F_C1_01;
    /// Key history object.
    pub const KEY_HISTORY: u32 = 0x5F_C1_0C;
    /// Cardholder iris images (PIN-protected).
    pub const IRIS: u32 = 0x5F_C1_21;
    /// Lowest tag of the `5FC1xx` data objects this card stores.
    pub const FIRST_CONTAINER: u32 = 0x5F_C1_01;
    /// Highest tag of the `5FC1xx` data objects this card stores (pairing code reference data).
    pub const LAST_CONTAINER: u32 = 0x5F_C1_23;
    /// Discovery object (built in, read-only).
    pub const DISCOVERY: u32 = 0x7E;
    /// Biometric Information Templates group template (not stored by this card).
    pub const BIT_GROUP: u32 = 0x7F61;
    /// GET DATA / PUT DATA tag list.
    pub const TAG_LIST: u32 = 0x5C;
    /// Data object content.
    pub const DATA: u32 = 0x53;
    /// Dynamic authentication template.
    pub const DYNAMIC_AUTH: u32 = 0x7C;
    /// Control reference template of GENERATE ASYMMETRIC KEY PAIR.
    pub const KEY_TEMPLATE: u32 = 0xAC;
    /// Public key data object.
    pub const PUBLIC_KEY: u32 = 0x7F49;
}

/// Status words this card uses besides the common ones of [`StatusWord`].
pub mod sw {
    use super::StatusWord;

    /// `6983`: authentication method blocked (no PIN or PUK tries left).
    pub const AUTH_BLOCKED: StatusWord = StatusWord::Other(0x6983);
    /// `6A81`: function not supported (e.g. writing a read-only object).
    pub const FUNCTION_NOT_SUPPORTED: StatusWord = StatusWord::Other(0x6A81);

    /// `63Cx`: verification failed (or, for an empty VERIFY, not verified),
    /// `x` tries left.
    pub const fn tries_left(n: u8) -> StatusWord {
        StatusWord::Other(0x63C0 | (n & 0x0F) as u16)
    }
}

/// Default PIN: `123456` padded with `FF` to 8 bytes.
pub const DEFAULT_PIN: [u8; 8] = *b"123456\xFF\xFF";
/// Default PUK: `12345678`.
pub const DEFAULT_PUK: [u8; 8] = *b"12345678";
/// Default management key (3DES): `01 02 03 04 05 06 07 08` three times.
pub const DEFAULT_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];
/// PIN and PUK retry limit.
pub const DEFAULT_TRIES: u8 = 3;
/// Largest data object content (the value of tag `53`), as a YubiKey.
pub const MAX_OBJECT_LEN: usize = 3063;
/// Largest total of all stored data object contents.
pub const MAX_TOTAL_OBJECTS: usize = 64 * 1024;
/// Largest command data a chain may accumulate.
pub const MAX_CHAINED_DATA: usize = 4096;
/// Largest response data sent in one response, whatever an extended Le asks
/// for; the rest is fetched with GET RESPONSE.
pub const MAX_RESPONSE_DATA: usize = 0xFFF0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_check_byte_is_the_xor_of_t0_to_the_last_historical_byte() {
        let (tck, body) = ATR.split_last().unwrap();
        assert_eq!(body.iter().skip(1).fold(0u8, |a, b| a ^ b), *tck);
        assert_eq!(ATR[1] & 0x0F, 13, "13 historical bytes");
        assert_eq!(&ATR[6..17], &PIV_AID);
    }
}
