-- Inbound mail: stored messages, tenant data keys, what an account knows of
-- its correspondents (for the privacy index), and storage used per tenant.

ALTER TABLE tenants ADD COLUMN storage_used_bytes INTEGER NOT NULL DEFAULT 0;

CREATE TABLE tenant_keys (
    tenant_id   BLOB PRIMARY KEY REFERENCES tenants (id),
    wrapped_key BLOB NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE messages (
    id             BLOB PRIMARY KEY,
    tenant_id      BLOB NOT NULL REFERENCES tenants (id),
    account_id     BLOB NOT NULL REFERENCES accounts (id),
    received_at    TEXT NOT NULL,
    size           INTEGER NOT NULL CHECK (size >= 0),
    level          TEXT NOT NULL,
    folder         TEXT NOT NULL,
    flags          TEXT NOT NULL,
    envelope_from  TEXT NOT NULL,
    envelope_to    TEXT NOT NULL,
    subject        TEXT,
    sender         TEXT,
    privacy        TEXT NOT NULL,
    authentication TEXT NOT NULL,
    content        BLOB NOT NULL
);
CREATE INDEX messages_account ON messages (account_id, id);
CREATE INDEX messages_tenant ON messages (tenant_id);

CREATE TABLE correspondents (
    account_id         BLOB NOT NULL REFERENCES accounts (id),
    address            TEXT NOT NULL,
    received           INTEGER NOT NULL DEFAULT 0,
    received_encrypted INTEGER NOT NULL DEFAULT 0,
    sent               INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, address)
);
