-- Activation links: an account an administrator makes (or resets) gets a
-- key pair locked with a one-time secret that only the link carries; the
-- person who opens it sets a password on their device. The server keeps the
-- SHA-256 of the token derived from that secret, never the secret.
CREATE TABLE activations (
    account_id UUID PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
-- The key an administrator's reset replaced, as it was locked (by the old
-- password's export key, or the old password): its owner may still fetch
-- it to read mail sealed before.
ALTER TABLE accounts ADD COLUMN previous_secret_key TEXT;
