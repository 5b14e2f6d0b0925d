//! Every size limit of the protocol (spec §5.3, §5.6, §5.9), one named
//! constant each, shared by the writers and the readers of each object.

/// Largest encoded certificate (`7F21`).
pub const MAX_CERTIFICATE_LEN: usize = 512;
/// Exact length of an encoded group record (`E1`).
pub const RECORD_LEN: usize = 300;
/// Largest command data a chain may accumulate.
pub const MAX_CHAINED_DATA: usize = 1024;
/// Largest PUT DATA plaintext over one personalisation session.
pub const MAX_PERSONALISATION_DATA: usize = 4096;
/// Largest encoded revocation list (`E3`).
pub const MAX_REVOCATION_LIST_LEN: usize = crate::revocation::MAX_REVOCATION_LIST_LEN;
/// Most revocation ids one list may hold.
pub const MAX_REVOKED_IDS: usize = crate::revocation::MAX_REVOKED;
/// Largest encoded trust bundle (`E5`).
pub const MAX_TRUST_BUNDLE_LEN: usize = crate::revocation::MAX_BUNDLE_LEN;
/// Largest partner credential file (the reader certificate and its key, as
/// the reader crate's `PartnerCredential` writes and loads it; a real one is
/// under 1.5 KiB).
pub const MAX_CREDENTIAL_LEN: usize = 4096;
/// Most linkability groups a card is issued for (groups `0..MAX_GROUPS`).
pub const MAX_GROUPS: usize = 8;
/// Digest slots in every record (real digests and decoys).
pub const DIGEST_SLOTS: usize = 10;
/// Most stored attributes a card holds.
pub const MAX_STORED_ATTRIBUTES: usize = DIGEST_SLOTS;
/// Reader certificates the card remembers.
pub const CACHE_ENTRIES: usize = 8;
/// Most days one reader certificate moves a card date forward.
pub const MAX_CARD_DATE_STEP: u32 = 31;
/// Longest card validity (valid-to − valid-from), in days.
pub const MAX_CARD_LIFETIME_DAYS: u32 = 3660;
/// Days after a card's validity ends that it stays on revocation lists.
pub const REVOCATION_GRACE_DAYS: u32 = crate::revocation::REVOCATION_GRACE_DAYS;
