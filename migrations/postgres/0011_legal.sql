-- The legal request register, the disclosure exports recorded for its
-- requests, the warrant canaries, and a tenant's choice to publish its own
-- transparency report on its hostnames (PostgreSQL dialect).
--
-- All three tables are append-only: a correction of a request is a new
-- entry that names the one it corrects, and the database refuses to change
-- or remove what was recorded.

CREATE TABLE legal_requests (
    id              UUID PRIMARY KEY,
    -- The first entry of this entry's chain of corrections (its own id for a first entry).
    chain_id        UUID NOT NULL REFERENCES legal_requests (id),
    -- The entry this one corrects; an entry is corrected at most once, so a chain is a line.
    corrects_id     UUID UNIQUE REFERENCES legal_requests (id),
    authority       TEXT NOT NULL,
    -- ISO 3166-1 alpha-2, upper case: where the authority acts.
    country         TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    -- The court order's reference; NULL when the request has none (it is then refused).
    legal_basis     TEXT,
    received_on     DATE NOT NULL,
    -- The scope: the tenant concerned, its accounts (a JSON array; empty: the
    -- whole tenant), a time range (from inclusive, until exclusive; NULL: open)
    -- and the kinds of data asked for (a JSON array).
    tenant_id       UUID NOT NULL REFERENCES tenants (id),
    account_ids     TEXT NOT NULL,
    scope_from      TIMESTAMPTZ,
    scope_until     TIMESTAMPTZ,
    data_kinds      TEXT NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('complied', 'partially', 'contested', 'refused')),
    disclosed       TEXT NOT NULL,
    tenant_notified BOOLEAN NOT NULL,
    -- A gag order forbids telling the tenant until this day (included).
    gag_until       DATE,
    recorded_by     TEXT NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    CHECK (legal_basis IS NOT NULL OR decision = 'refused'),
    CHECK (scope_from IS NULL OR scope_until IS NULL OR scope_from < scope_until)
);
CREATE INDEX legal_requests_chain ON legal_requests (chain_id);
CREATE INDEX legal_requests_tenant ON legal_requests (tenant_id);

-- What was handed over for a request: the archive's SHA-256 and its
-- signature by the instance key, and how much it held.
CREATE TABLE legal_exports (
    id                   UUID PRIMARY KEY,
    request_id           UUID NOT NULL REFERENCES legal_requests (id),
    created_at           TIMESTAMPTZ NOT NULL,
    sha256               TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    signature            TEXT NOT NULL,
    accounts             BIGINT NOT NULL CHECK (accounts >= 0),
    messages_standard    BIGINT NOT NULL CHECK (messages_standard >= 0),
    messages_sealed      BIGINT NOT NULL CHECK (messages_sealed >= 0),
    messages_dispersed   BIGINT NOT NULL CHECK (messages_dispersed >= 0),
    messages_end_to_end  BIGINT NOT NULL CHECK (messages_end_to_end >= 0),
    bytes                BIGINT NOT NULL CHECK (bytes >= 0)
);
CREATE INDEX legal_exports_request ON legal_exports (request_id);

-- Signed statements that no order the operator may not disclose was received.
CREATE TABLE warrant_canaries (
    id        UUID PRIMARY KEY,
    issued_at TIMESTAMPTZ NOT NULL,
    next_due  TIMESTAMPTZ NOT NULL,
    statement TEXT NOT NULL,
    -- Base64 Ed25519 signature of `statement` (its UTF-8 bytes) by the instance key.
    signature TEXT NOT NULL
);

CREATE FUNCTION legal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER legal_requests_no_update BEFORE UPDATE OR DELETE ON legal_requests
    FOR EACH ROW EXECUTE FUNCTION legal_append_only();
CREATE TRIGGER legal_exports_no_update BEFORE UPDATE OR DELETE ON legal_exports
    FOR EACH ROW EXECUTE FUNCTION legal_append_only();
CREATE TRIGGER warrant_canaries_no_update BEFORE UPDATE OR DELETE ON warrant_canaries
    FOR EACH ROW EXECUTE FUNCTION legal_append_only();

-- The tenant shows its own transparency report on its verified hostnames.
ALTER TABLE tenants ADD COLUMN publish_transparency BOOLEAN NOT NULL DEFAULT FALSE;
