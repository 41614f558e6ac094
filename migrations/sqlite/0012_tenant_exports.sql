-- Tenant exports asked for through the API: a job writes the archive into
-- the data directory; a link valid once hands it over (SQLite dialect).
CREATE TABLE tenant_exports (
    id            BLOB PRIMARY KEY,
    tenant_id     BLOB NOT NULL REFERENCES tenants (id),
    requested_by  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'ready', 'downloaded', 'failed', 'expired')),
    -- `passphrase` (sealed under the master key until the job has used it) or `openpgp` (the armored public key).
    recipient     TEXT NOT NULL CHECK (recipient IN ('passphrase', 'openpgp')),
    secret        TEXT,
    -- SHA-256 of the download token, which is shown once.
    token_hash    TEXT NOT NULL UNIQUE,
    bytes         INTEGER,
    messages      INTEGER,
    error         TEXT,
    created_at    TEXT NOT NULL,
    finished_at   TEXT,
    expires_at    TEXT NOT NULL,
    downloaded_at TEXT
);
CREATE INDEX tenant_exports_tenant ON tenant_exports (tenant_id, id);
