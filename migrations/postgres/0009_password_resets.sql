-- Password resets without support staff: a single-use, short-lived link
-- sent to the account's recovery address; only its hash is kept.

CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    account_id UUID NOT NULL REFERENCES accounts (id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX password_resets_account ON password_resets (account_id);

-- Self-signup on a tenant's own hostnames: the domain new accounts get (NULL: no self-signup).
ALTER TABLE tenants ADD COLUMN self_signup_domain TEXT;
