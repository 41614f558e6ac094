-- A second factor for the web sign-in: TOTP (RFC 6238) with single-use
-- recovery codes. Required of operator and reseller administrators once
-- their grace has passed (second_factor_due_at, set at their first sign-in).

-- The TOTP secret, sealed under the master key (context `totp:{account}`);
-- enabled once a first code confirmed it. The last time step accepted: a
-- code is taken once.
ALTER TABLE accounts ADD COLUMN totp_secret TEXT;
ALTER TABLE accounts ADD COLUMN totp_enabled_at TIMESTAMPTZ;
ALTER TABLE accounts ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN second_factor_due_at TIMESTAMPTZ;

CREATE TABLE recovery_codes (
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    used_at    TIMESTAMPTZ,
    PRIMARY KEY (account_id, code_hash)
);
