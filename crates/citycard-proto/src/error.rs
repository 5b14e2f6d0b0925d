//! The protocol core's error type.

/// Why a data object, certificate, record or protocol message was rejected.
///
/// Every decoder in this crate returns this type; none panics on input.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bytes are not well-formed BER-TLV, or trailing bytes follow the object.
    #[error("malformed TLV encoding")]
    MalformedTlv,
    /// A TLV has a tag other than the one the format requires at that position.
    #[error("unexpected tag {found:#06X} (expected {expected:#06X})")]
    UnexpectedTag {
        /// Tag the format requires.
        expected: u32,
        /// Tag found in the input.
        found: u32,
    },
    /// A required data object is missing.
    #[error("missing data object {0:#06X}")]
    Missing(u32),
    /// A data object has the wrong length for its type.
    #[error("data object {0:#06X} has the wrong length")]
    BadLength(u32),
    /// A value is outside its allowed range or character set.
    #[error("data object {0:#06X} has an invalid value")]
    BadValue(u32),
    /// A date is not a valid calendar date.
    #[error("invalid date")]
    BadDate,
    /// A public key is not a valid compressed P-256 point.
    #[error("invalid public key")]
    BadPublicKey,
    /// A signature is malformed or does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Authenticated decryption failed (wrong key or modified ciphertext).
    #[error("decryption failed")]
    DecryptionFailed,
    /// The answer's tag does not verify with this reader's key: the card
    /// answered a decoy (it refuses this reader) or the answer was modified.
    #[error("answer tag does not verify (decoy or modified answer)")]
    Decoy,
    /// The card's MAC over the transcript does not verify.
    #[error("card authentication MAC does not verify")]
    BadMac,
    /// The response answers a different command than the one sent (replayed or spliced).
    #[error("response does not answer this command")]
    TranscriptMismatch,
    /// Unsupported format version.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// An attribute identifier that the dictionary does not define.
    #[error("unknown attribute id {0}")]
    UnknownAttribute(u8),
    /// Input exceeds a size limit.
    #[error("input too long")]
    TooLong,
    /// A disclosed attribute does not match the digest the issuer signed.
    #[error("attribute {0} does not match its signed digest")]
    DigestMismatch(u8),
    /// Something is present twice, or out of order.
    #[error("duplicate or out-of-order entry")]
    Duplicate,
}

/// Result alias for this crate.
pub type Result<T> = core::result::Result<T, Error>;
