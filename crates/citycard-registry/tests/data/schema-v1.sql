-- The registry schema version 1, as released (a fixture for the upgrade test).
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
    CHECK ((state IN ('issued', 'revoked')) = (card_key IS NOT NULL AND revocation_id IS NOT NULL)),
    CHECK ((state = 'revoked') = (revoke_reason IS NOT NULL AND revoked_at IS NOT NULL)),
    CHECK ((state = 'spoiled') = (spoil_reason IS NOT NULL)),
    CHECK ((batch_id IS NULL) = (batch_row IS NULL)),
    CHECK ((replaces_card IS NULL) = (replace_reason IS NULL))
) STRICT;

CREATE UNIQUE INDEX cards_one_live_card_per_resident
    ON cards (resident_ref) WHERE state IN ('intent', 'issued');

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
