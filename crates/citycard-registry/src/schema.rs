//! The registry's SQL schema (version 2).
//!
//! Every table is `STRICT`. The database itself refuses what must never
//! happen: two live cards (intent or issued) for one resident reference, a
//! reused card number or card key, an attribute outside the retained set, an
//! illegal state change, a card key attached to anything but an open intent
//! or changed once set, an issued or revoked card without a key, deleting a
//! card record, and changing or deleting an audit entry.
//!
//! Version 2 (from 1): an intent may carry the card's key and revocation id
//! (recorded before the first APDU that could put a signed record on the
//! card), and a spoiled row keeps them; the two are set together. A version-1
//! file is upgraded by `Registry::open` ([`UPGRADE_1_TO_2`]).
//!
//! Version 3 (from 2, [`MIGRATIONS`]): desks hold **leases** (one per
//! issuing process, renewed while it works) and each open intent names the
//! lease that owns it, so reconciliation touches only intents whose owner is
//! gone; stored resident attributes carry a retention deadline
//! (`retain_until`, unix seconds; `NULL` for rows kept before retention
//! periods existed, until the resident is forgotten).
//!
//! Version 4 (from 3): `card_group_keys` keeps a card's key and revocation
//! id of each linkability group but 0 (whose stay in `cards`).
//!
//! A new registry is created with [`SCHEMA`] (version 2) and then every
//! migration, so the upgrade path of existing files is the one every new
//! file takes.

/// The schema version written to `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 4;

/// The version [`SCHEMA`] creates; [`MIGRATIONS`] upgrade from there.
pub const OLDEST_UPGRADABLE: i64 = 2;

/// The oldest version `Registry::open` accepts: a version-1 file is first
/// rebuilt to version 2 ([`UPGRADE_1_TO_2`]), then migrated as usual.
pub const OLDEST_OPENABLE: i64 = 1;

/// Version 1 to 2, before the version-2 `cards` table, its indexes and
/// triggers (the part of [`SCHEMA`] before `residents`) are created and the
/// rows copied back ([`UPGRADE_1_TO_2_COPY`]): version 1 could not keep a card
/// key on an intent or a spoiled card (a table check refused it), and SQLite
/// cannot change a table check in place. The columns are the same.
pub const UPGRADE_1_TO_2: &str = r"
DROP TRIGGER cards_never_deleted;
DROP TRIGGER cards_allowed_transitions;
DROP INDEX cards_one_live_card_per_resident;
DROP INDEX cards_by_batch_row;
ALTER TABLE cards RENAME TO cards_version_1;
";

/// Copies the version-1 rows into the version-2 table and drops the old one.
pub const UPGRADE_1_TO_2_COPY: &str = r"
INSERT INTO cards SELECT * FROM cards_version_1;
DROP TABLE cards_version_1;
";

/// The `cards` table of [`SCHEMA`] with its indexes and triggers.
pub fn cards_schema_v2() -> &'static str {
    SCHEMA
        .find("CREATE TABLE residents")
        .and_then(|end| SCHEMA.get(..end))
        .unwrap_or(SCHEMA)
}

/// Upgrade steps: `(from, sql)` takes a version-`from` file to `from + 1`.
/// Each runs in one exclusive transaction with the `user_version` bump.
pub const MIGRATIONS: &[(i64, &str)] = &[(2, MIGRATE_2_TO_3), (3, MIGRATE_3_TO_4)];

/// Version 3 to 4: a card's records of linkability groups 1 to 7 (SPEC §5.3),
/// each with its own card key and revocation id (group 0's stay in `cards`);
/// written with the card's keys, never changed or deleted.
const MIGRATE_3_TO_4: &str = r"
CREATE TABLE card_group_keys (
    intent_id     INTEGER NOT NULL REFERENCES cards (intent_id),
    group_id      INTEGER NOT NULL CHECK (group_id BETWEEN 1 AND 7),
    card_key      BLOB    NOT NULL UNIQUE CHECK (length(card_key) = 33),
    revocation_id BLOB    NOT NULL UNIQUE CHECK (length(revocation_id) = 8),
    PRIMARY KEY (intent_id, group_id)
) STRICT;

CREATE INDEX card_group_keys_by_group ON card_group_keys (group_id, revocation_id);

CREATE TRIGGER card_group_keys_never_updated BEFORE UPDATE ON card_group_keys
BEGIN
    SELECT RAISE(ABORT, 'card group keys are never changed');
END;

CREATE TRIGGER card_group_keys_never_deleted BEFORE DELETE ON card_group_keys
BEGIN
    SELECT RAISE(ABORT, 'card group keys are never deleted');
END;
";

const MIGRATE_2_TO_3: &str = r"
CREATE TABLE leases (
    lease_id    TEXT    PRIMARY KEY CHECK (length(lease_id) = 32),
    desk        TEXT    NOT NULL CHECK (length(desk) BETWEEN 1 AND 256),
    holder      TEXT    NOT NULL CHECK (length(holder) BETWEEN 1 AND 128),
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    released    INTEGER NOT NULL DEFAULT 0 CHECK (released IN (0, 1))
) STRICT;

ALTER TABLE cards ADD COLUMN lease_id TEXT REFERENCES leases (lease_id);

CREATE INDEX cards_open_by_lease ON cards (lease_id) WHERE state = 'intent';

ALTER TABLE resident_attributes ADD COLUMN retain_until INTEGER;

CREATE INDEX resident_attributes_by_deadline
    ON resident_attributes (retain_until) WHERE retain_until IS NOT NULL;

-- Files created by a version-2 binary before this index existed.
CREATE INDEX IF NOT EXISTS cards_on_revocation_lists
    ON cards (revocation_id, expires_on)
    WHERE state IN ('revoked', 'spoiled') AND revocation_id IS NOT NULL;
";

/// The version-2 schema, applied once by `Registry::create` in one
/// transaction before [`MIGRATIONS`].
pub const SCHEMA: &str = r"
CREATE TABLE cards (
    intent_id      INTEGER PRIMARY KEY,
    card_number    TEXT    NOT NULL UNIQUE,
    resident_ref   TEXT    NOT NULL,
    station        TEXT    NOT NULL,
    issued_on      TEXT    NOT NULL,
    expires_on     TEXT    NOT NULL,
    state          TEXT    NOT NULL
                   CHECK (state IN ('intent', 'issued', 'spoiled', 'revoked')),
    card_key       BLOB    UNIQUE CHECK (card_key IS NULL OR length(card_key) = 33),
    revocation_id  BLOB    UNIQUE CHECK (revocation_id IS NULL OR length(revocation_id) = 8),
    spoil_reason   TEXT,
    revoke_reason  TEXT    CHECK (revoke_reason IS NULL
                                  OR revoke_reason IN ('lost', 'stolen', 'damaged', 'withdrawn')),
    revoked_at     INTEGER,
    batch_id       TEXT,
    batch_row      INTEGER CHECK (batch_row IS NULL OR batch_row >= 0),
    replaces_card  TEXT,
    replace_reason TEXT    CHECK (replace_reason IS NULL
                                  OR replace_reason IN ('lost', 'stolen', 'damaged', 'withdrawn')),
    created_at     INTEGER NOT NULL,
    CHECK ((card_key IS NULL) = (revocation_id IS NULL)),
    CHECK (state NOT IN ('issued', 'revoked') OR card_key IS NOT NULL),
    CHECK ((state = 'revoked') = (revoke_reason IS NOT NULL AND revoked_at IS NOT NULL)),
    CHECK ((state = 'spoiled') = (spoil_reason IS NOT NULL)),
    CHECK ((batch_id IS NULL) = (batch_row IS NULL)),
    CHECK ((replaces_card IS NULL) = (replace_reason IS NULL))
) STRICT;

CREATE UNIQUE INDEX cards_one_live_card_per_resident
    ON cards (resident_ref) WHERE state IN ('intent', 'issued');

-- What the signed revocation lists read (Registry::revocation_ids_for):
-- sorted ids with their last valid day, without scanning every card.
CREATE INDEX cards_on_revocation_lists
    ON cards (revocation_id, expires_on)
    WHERE state IN ('revoked', 'spoiled') AND revocation_id IS NOT NULL;
CREATE INDEX cards_by_batch_row
    ON cards (batch_id, batch_row) WHERE batch_id IS NOT NULL;

CREATE TRIGGER cards_never_deleted BEFORE DELETE ON cards
BEGIN
    SELECT RAISE(ABORT, 'card records are never deleted');
END;

CREATE TRIGGER cards_allowed_transitions BEFORE UPDATE ON cards
WHEN NEW.intent_id IS NOT OLD.intent_id
  OR NEW.card_number IS NOT OLD.card_number
  OR NEW.issued_on IS NOT OLD.issued_on
  OR NEW.expires_on IS NOT OLD.expires_on
  OR (OLD.card_key IS NOT NULL AND NEW.card_key IS NOT OLD.card_key)
  OR (OLD.revocation_id IS NOT NULL AND NEW.revocation_id IS NOT OLD.revocation_id)
  OR (OLD.state <> 'intent' AND NEW.card_key IS NOT OLD.card_key)
  OR (OLD.state <> 'intent' AND NEW.revocation_id IS NOT OLD.revocation_id)
  OR NOT (OLD.state = NEW.state
          OR (OLD.state = 'intent' AND NEW.state IN ('issued', 'spoiled'))
          OR (OLD.state = 'issued' AND NEW.state = 'revoked'))
BEGIN
    SELECT RAISE(ABORT, 'disallowed change to a card record');
END;

CREATE TABLE residents (
    resident_ref TEXT PRIMARY KEY
) STRICT;

CREATE TABLE resident_attributes (
    resident_ref TEXT    NOT NULL REFERENCES residents (resident_ref) ON DELETE CASCADE,
    attribute    INTEGER NOT NULL CHECK (attribute IN (2, 3, 4, 5, 6, 7, 8)),
    value        BLOB    NOT NULL CHECK (length(value) BETWEEN 1 AND 96),
    PRIMARY KEY (resident_ref, attribute)
) STRICT;

CREATE TABLE counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL CHECK (value >= 0)
) STRICT;

CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    station     TEXT,
    action      TEXT    NOT NULL
                CHECK (length(action) BETWEEN 1 AND 48
                       AND action NOT GLOB '*[^a-z0-9:-]*'),
    card_number TEXT
) STRICT;

CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
";
