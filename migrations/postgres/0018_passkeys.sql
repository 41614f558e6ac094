-- WebAuthn passkeys: a second factor for the web sign-in, beside TOTP.
-- What the server keeps is public: the credential's id, its public key and
-- its signature counter and flags (webauthn_rp's binary encodings of the
-- static and dynamic states), for the relying party (host) it was made on.
CREATE TABLE passkeys (
    id            UUID PRIMARY KEY,
    account_id    UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    rp_id         TEXT NOT NULL,
    credential_id BYTEA NOT NULL UNIQUE,
    public_key    BYTEA NOT NULL,
    state         BYTEA NOT NULL,
    transports    INTEGER NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX passkeys_account ON passkeys (account_id);
