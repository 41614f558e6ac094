-- Outbound mail: DKIM keys per domain (several, for rotation and for RSA
-- beside Ed25519), the outbound spool and per-recipient delivery status.

CREATE TABLE dkim_keys (
    id           UUID PRIMARY KEY,
    domain_id    UUID NOT NULL REFERENCES domains (id),
    selector     TEXT NOT NULL,
    algorithm    TEXT NOT NULL CHECK (algorithm IN ('rsa', 'ed25519')),
    public_key   TEXT NOT NULL,
    -- Sealed under the instance master key, bound to the domain name.
    private_key  TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    created_at   TIMESTAMPTZ NOT NULL,
    activated_at TIMESTAMPTZ,
    retired_at   TIMESTAMPTZ,
    UNIQUE (domain_id, selector)
);

-- The one RSA key each domain had so far becomes its first active key.
INSERT INTO dkim_keys (id, domain_id, selector, algorithm, public_key, private_key, state, created_at, activated_at)
    SELECT id, id, dkim_selector, 'rsa', dkim_public_key, dkim_private_key, 'active', created_at, created_at FROM domains;
ALTER TABLE domains DROP COLUMN dkim_selector;
ALTER TABLE domains DROP COLUMN dkim_public_key;
ALTER TABLE domains DROP COLUMN dkim_private_key;

-- One row per version of a submitted message waiting to leave: the bytes
-- to send (AEAD under the tenant's data key), kept until every recipient
-- has a final status.
CREATE TABLE outbound (
    id            UUID PRIMARY KEY,
    -- The sender's Sent copy, by which the delivery status is asked for.
    message_id    UUID NOT NULL,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    account_id    UUID NOT NULL REFERENCES accounts (id),
    envelope_from TEXT NOT NULL,
    header_message_id TEXT NOT NULL,
    content       BYTEA,
    recipients    INTEGER NOT NULL CHECK (recipients >= 1),
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ
);
CREATE INDEX outbound_message ON outbound (message_id);
-- Covering the sending-rate counts, so they never read the rows (and their content).
CREATE INDEX outbound_account ON outbound (account_id, created_at, message_id, recipients);
CREATE INDEX outbound_tenant ON outbound (tenant_id, created_at, message_id, recipients);

CREATE TABLE deliveries (
    outbound_id  UUID NOT NULL REFERENCES outbound (id),
    recipient    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'deferred', 'delivered', 'bounced')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    remote_host  TEXT,
    remote_reply TEXT,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (outbound_id, recipient)
);
