-- Tenant exports asked for through the API: a job writes the archive into
-- the data directory; a link valid once hands it over (PostgreSQL dialect).
CREATE TABLE tenant_exports (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    requested_by  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'ready', 'downloaded', 'failed', 'expired')),
    -- `passphrase` (sealed under the master key until the job has used it) or `openpgp` (the armored public key).
    recipient     TEXT NOT NULL CHECK (recipient IN ('passphrase', 'openpgp')),
    secret        TEXT,
    -- SHA-256 of the download token, which is shown once.
    token_hash    TEXT NOT NULL UNIQUE,
    bytes         BIGINT,
    messages      BIGINT,
    error         TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ NOT NULL,
    downloaded_at TIMESTAMPTZ
);
CREATE INDEX tenant_exports_tenant ON tenant_exports (tenant_id, id);
