-- Inbound mail: stored messages, tenant data keys, what an account knows of
-- its correspondents (for the privacy index), and storage used per tenant.

ALTER TABLE tenants ADD COLUMN storage_used_bytes BIGINT NOT NULL DEFAULT 0;

CREATE TABLE tenant_keys (
    tenant_id   UUID PRIMARY KEY REFERENCES tenants (id),
    wrapped_key BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE messages (
    id             UUID PRIMARY KEY,
    tenant_id      UUID NOT NULL REFERENCES tenants (id),
    account_id     UUID NOT NULL REFERENCES accounts (id),
    received_at    TIMESTAMPTZ NOT NULL,
    size           BIGINT NOT NULL CHECK (size >= 0),
    level          TEXT NOT NULL,
    folder         TEXT NOT NULL,
    flags          TEXT NOT NULL,
    envelope_from  TEXT NOT NULL,
    envelope_to    TEXT NOT NULL,
    subject        TEXT,
    sender         TEXT,
    privacy        TEXT NOT NULL,
    authentication TEXT NOT NULL,
    content        BYTEA NOT NULL
);
CREATE INDEX messages_account ON messages (account_id, id);
CREATE INDEX messages_tenant ON messages (tenant_id);

CREATE TABLE correspondents (
    account_id         UUID NOT NULL REFERENCES accounts (id),
    address            TEXT NOT NULL,
    received           BIGINT NOT NULL DEFAULT 0,
    received_encrypted BIGINT NOT NULL DEFAULT 0,
    sent               BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, address)
);
