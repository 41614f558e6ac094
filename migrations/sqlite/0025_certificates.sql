-- TLS certificates obtained by ACME, shared by every caliop process: one
-- row per certificate, named by its first name. The private key is sealed
-- under the instance master key.
CREATE TABLE certificates (
    name            TEXT PRIMARY KEY,
    -- Every name it covers, separated by spaces (the first is `name`).
    names           TEXT NOT NULL,
    chain_pem       TEXT,
    key_sealed      TEXT,
    issuer          TEXT,
    serial          TEXT,
    not_after       TEXT,
    last_error      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When it is next ordered (renewal, or a retry after a failure).
    next_attempt_at TEXT NOT NULL,
    -- Set to now to order again at once, whatever the expiry.
    force_renewal   BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      TEXT NOT NULL,
    created_at      TEXT NOT NULL
);

-- The ACME account of each directory (its key sealed under the master key).
CREATE TABLE acme_accounts (
    directory_url TEXT PRIMARY KEY,
    credentials   TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

-- HTTP-01 answers any API node gives while an order is pending.
CREATE TABLE acme_challenges (
    token             TEXT PRIMARY KEY,
    key_authorization TEXT NOT NULL,
    expires_at        TEXT NOT NULL
);
