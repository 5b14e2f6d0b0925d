//! The registry's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the registry. Each refusal has its own
/// variant so that callers (the CLI, the batch tool) can map them to distinct
/// messages and exit codes. No variant carries personal attributes: at most a
/// card number, an intent id, a batch reference or an attribute *name*.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// `Registry::create` was pointed at a path that already exists.
    #[error("registry {} already exists; refusing to overwrite it", path.display())]
    AlreadyExists {
        /// The path given.
        path: PathBuf,
    },
    /// `Registry::open` was pointed at a path that does not exist.
    #[error("no registry at {}", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The file is not a registry of the schema version this code understands.
    #[error("registry schema version {found}, this program understands version {expected}")]
    SchemaVersion {
        /// `PRAGMA user_version` of the file (0: not a registry).
        found: i64,
        /// The version this code writes and reads.
        expected: i64,
    },
    /// The resident already holds a live (issued, unrevoked) card.
    #[error("the resident already has live card {card_number}; revoke it or issue a replacement")]
    ResidentHasLiveCard {
        /// The live card.
        card_number: String,
    },
    /// The resident has an issuance in progress (an open intent) that must be
    /// reconciled (committed or marked spoiled) first.
    #[error("the resident has an open issuance intent for card {card_number}; reconcile it first")]
    ResidentHasOpenIntent {
        /// The card number of the open intent.
        card_number: String,
    },
    /// The card number is already recorded (numbers are never reused).
    #[error("card number {card_number} is already taken")]
    CardNumberTaken {
        /// The card number.
        card_number: String,
    },
    /// The card key (or its revocation id) is already recorded for another card.
    #[error("this card key is already recorded for card {card_number}")]
    CardKeyTaken {
        /// The card that already has this key.
        card_number: String,
    },
    /// The intent already has another card key recorded (a key is attached
    /// once and never changed), or the card being committed is not the one
    /// whose key was recorded.
    #[error("issuance intent for card {card_number} has another card key recorded")]
    CardKeyMismatch {
        /// The intent's card number.
        card_number: String,
    },
    /// The batch row already produced a card (intent, issued or revoked).
    #[error("batch {batch_id} row {row} is already done (card {card_number})")]
    BatchRowDone {
        /// Batch identifier.
        batch_id: String,
        /// Row number.
        row: u64,
        /// The card the row produced.
        card_number: String,
    },
    /// No card with this number.
    #[error("unknown card {card_number}")]
    UnknownCard {
        /// The card number given.
        card_number: String,
    },
    /// No intent with this id.
    #[error("unknown issuance intent {intent_id}")]
    UnknownIntent {
        /// The id given.
        intent_id: i64,
    },
    /// The intent exists but is no longer open (already issued or spoiled).
    #[error("issuance intent {intent_id} is not open (state {state})")]
    IntentNotOpen {
        /// The id given.
        intent_id: i64,
        /// Its current state.
        state: String,
    },
    /// The desk lease was released or taken over: its holder must stop
    /// issuing (another process may be settling its intents).
    #[error("desk lease {lease_id} is gone (released, or its intents were taken over)")]
    LeaseGone {
        /// The lease.
        lease_id: String,
    },
    /// The card is already revoked.
    #[error("card {card_number} is already revoked")]
    AlreadyRevoked {
        /// The card.
        card_number: String,
    },
    /// Only issued cards can be revoked (an intent is reconciled, a spoiled card never left the desk).
    #[error("card {card_number} is not issued (state {state}); only issued cards can be revoked")]
    CardNotIssued {
        /// The card.
        card_number: String,
        /// Its current state.
        state: String,
    },
    /// No stored attributes and no card for this resident reference.
    #[error("unknown resident reference")]
    UnknownResident,
    /// An attribute the registry refuses to store, or an invalid value.
    #[error("attribute {name} refused: {reason}")]
    InvalidAttribute {
        /// The attribute's machine name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// Another input field (card number, station, actor, dates, key...) is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A counter ran out (card numbers no longer fit 20 characters, or the
    /// revocation sequence reached `u32::MAX`).
    #[error("counter {counter} is exhausted")]
    CounterExhausted {
        /// Which counter.
        counter: String,
    },
    /// A stored row could not be decoded (the file was changed outside the registry).
    #[error("corrupt registry row: {0}")]
    Corrupt(String),
    /// The SQLite layer failed (I/O, locking, constraint).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file-system operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The system's random source failed.
    #[error("random source failed")]
    Random,
}
