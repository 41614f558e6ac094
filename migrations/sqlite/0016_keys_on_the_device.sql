-- Sign-in without the password reaching the server (OPAQUE, RFC 9807) and
-- app passwords for mail clients.

-- The account's OPAQUE registration record (unpadded base64url) and the
-- Argon2id parameters its client stretches with (JSON). An account with a
-- record has no password hash: its secret key is then stored locked with a
-- key only its device derives (`caliop-key-v1:`), see vault/src/opaque.rs.
ALTER TABLE accounts ADD COLUMN opaque_record TEXT;
ALTER TABLE accounts ADD COLUMN ksf_params TEXT;

-- Each tenant's OPAQUE server secrets, sealed under the master key; they
-- move with the tenant, so that its users sign in unchanged elsewhere.
ALTER TABLE tenants ADD COLUMN opaque_setup TEXT;

-- Mail clients (IMAP, submission) sign in with these, never with the
-- account's password: random, shown once, stored hashed, one per device.
CREATE TABLE app_passwords (
    id           BLOB PRIMARY KEY,
    account_id   BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX app_passwords_account ON app_passwords (account_id, id);
