-- The legal request register, the disclosure exports recorded for its
-- requests, the warrant canaries, and a tenant's choice to publish its own
-- transparency report on its hostnames (SQLite dialect).
--
-- All three tables are append-only: a correction of a request is a new
-- entry that names the one it corrects, and the database refuses to change
-- or remove what was recorded.

CREATE TABLE legal_requests (
    id              BLOB PRIMARY KEY,
    -- The first entry of this entry's chain of corrections (its own id for a first entry).
    chain_id        BLOB NOT NULL REFERENCES legal_requests (id),
    -- The entry this one corrects; an entry is corrected at most once, so a chain is a line.
    corrects_id     BLOB UNIQUE REFERENCES legal_requests (id),
    authority       TEXT NOT NULL,
    -- ISO 3166-1 alpha-2, upper case: where the authority acts.
    country         TEXT NOT NULL CHECK (length(country) = 2 AND country = upper(country)),
    -- The court order's reference; NULL when the request has none (it is then refused).
    legal_basis     TEXT,
    received_on     TEXT NOT NULL,
    -- The scope: the tenant concerned, its accounts (a JSON array; empty: the
    -- whole tenant), a time range (from inclusive, until exclusive; NULL: open)
    -- and the kinds of data asked for (a JSON array).
    tenant_id       BLOB NOT NULL REFERENCES tenants (id),
    account_ids     TEXT NOT NULL,
    scope_from      TEXT,
    scope_until     TEXT,
    data_kinds      TEXT NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('complied', 'partially', 'contested', 'refused')),
    disclosed       TEXT NOT NULL,
    tenant_notified BOOLEAN NOT NULL,
    -- A gag order forbids telling the tenant until this day (included).
    gag_until       TEXT,
    recorded_by     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    CHECK (legal_basis IS NOT NULL OR decision = 'refused')
);
CREATE INDEX legal_requests_chain ON legal_requests (chain_id);
CREATE INDEX legal_requests_tenant ON legal_requests (tenant_id);

-- What was handed over for a request: the archive's SHA-256 and its
-- signature by the instance key, and how much it held.
CREATE TABLE legal_exports (
    id                   BLOB PRIMARY KEY,
    request_id           BLOB NOT NULL REFERENCES legal_requests (id),
    created_at           TEXT NOT NULL,
    sha256               TEXT NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    signature            TEXT NOT NULL,
    accounts             INTEGER NOT NULL CHECK (accounts >= 0),
    messages_standard    INTEGER NOT NULL CHECK (messages_standard >= 0),
    messages_sealed      INTEGER NOT NULL CHECK (messages_sealed >= 0),
    messages_dispersed   INTEGER NOT NULL CHECK (messages_dispersed >= 0),
    messages_end_to_end  INTEGER NOT NULL CHECK (messages_end_to_end >= 0),
    bytes                INTEGER NOT NULL CHECK (bytes >= 0)
);
CREATE INDEX legal_exports_request ON legal_exports (request_id);

-- Signed statements that no order the operator may not disclose was received.
CREATE TABLE warrant_canaries (
    id        BLOB PRIMARY KEY,
    issued_at TEXT NOT NULL,
    next_due  TEXT NOT NULL,
    statement TEXT NOT NULL,
    -- Base64 Ed25519 signature of `statement` (its UTF-8 bytes) by the instance key.
    signature TEXT NOT NULL
);

CREATE TRIGGER legal_requests_no_update BEFORE UPDATE ON legal_requests
BEGIN SELECT RAISE(ABORT, 'legal_requests is append-only'); END;
CREATE TRIGGER legal_requests_no_delete BEFORE DELETE ON legal_requests
BEGIN SELECT RAISE(ABORT, 'legal_requests is append-only'); END;
CREATE TRIGGER legal_exports_no_update BEFORE UPDATE ON legal_exports
BEGIN SELECT RAISE(ABORT, 'legal_exports is append-only'); END;
CREATE TRIGGER legal_exports_no_delete BEFORE DELETE ON legal_exports
BEGIN SELECT RAISE(ABORT, 'legal_exports is append-only'); END;
CREATE TRIGGER warrant_canaries_no_update BEFORE UPDATE ON warrant_canaries
BEGIN SELECT RAISE(ABORT, 'warrant_canaries is append-only'); END;
CREATE TRIGGER warrant_canaries_no_delete BEFORE DELETE ON warrant_canaries
BEGIN SELECT RAISE(ABORT, 'warrant_canaries is append-only'); END;

-- The tenant shows its own transparency report on its verified hostnames.
ALTER TABLE tenants ADD COLUMN publish_transparency BOOLEAN NOT NULL DEFAULT FALSE;
