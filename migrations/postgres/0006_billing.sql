-- Billing and the funding pool: plans, each tenant's subscription state,
-- Stripe's events (applied once), invoices, the pool's append-only ledger,
-- public signups waiting for funded places, and monthly usage.

CREATE TABLE plans (
    id                         UUID PRIMARY KEY,
    name                       TEXT NOT NULL UNIQUE,
    currency                   TEXT NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    seat_price_cents           BIGINT NOT NULL CHECK (seat_price_cents >= 0),
    storage_per_seat_bytes     BIGINT NOT NULL CHECK (storage_per_seat_bytes > 0),
    max_domains                BIGINT NOT NULL CHECK (max_domains >= 0),
    max_accounts               BIGINT NOT NULL CHECK (max_accounts >= 0),
    account_messages_per_hour  BIGINT NOT NULL CHECK (account_messages_per_hour >= 0),
    account_recipients_per_day BIGINT NOT NULL CHECK (account_recipients_per_day >= 0),
    solidarity_percent         INTEGER NOT NULL CHECK (solidarity_percent BETWEEN 0 AND 100),
    stripe_price_id            TEXT,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

-- One row per tenant on a plan. `paid_by` is `self` (retail: its own
-- subscription) or `parent` (wholesale: its seats are on its reseller's).
CREATE TABLE tenant_billing (
    tenant_id              UUID PRIMARY KEY REFERENCES tenants (id),
    plan_id                UUID NOT NULL REFERENCES plans (id),
    committed_seats        BIGINT NOT NULL DEFAULT 0 CHECK (committed_seats >= 0),
    paid_by                TEXT NOT NULL DEFAULT 'self' CHECK (paid_by IN ('self', 'parent')),
    stripe_customer_id     TEXT UNIQUE,
    stripe_subscription_id TEXT UNIQUE,
    stripe_item_id         TEXT,
    -- Stripe's status of the subscription, as of `subscription_at` (the
    -- `created` time of the event that carried it): older news is ignored.
    subscription_status    TEXT,
    subscription_at        BIGINT NOT NULL DEFAULT 0,
    subscription_rank      INTEGER NOT NULL DEFAULT 0,
    current_period_end     TIMESTAMPTZ,
    seats_billed           BIGINT,
    -- Shown by name among the pool's funders (opt-in).
    public_funder          BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at             TIMESTAMPTZ NOT NULL
);

-- Every Stripe event applied, by id: a replay finds its row and changes nothing.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    created     BIGINT NOT NULL,
    tenant_id   UUID,
    received_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE invoices (
    id                 TEXT PRIMARY KEY,
    tenant_id          UUID NOT NULL REFERENCES tenants (id),
    number             TEXT,
    status             TEXT NOT NULL CHECK (status IN ('open', 'paid', 'void', 'uncollectible')),
    currency           TEXT NOT NULL,
    amount_due         BIGINT NOT NULL,
    amount_paid        BIGINT NOT NULL DEFAULT 0,
    amount_refunded    BIGINT NOT NULL DEFAULT 0,
    period_start       TIMESTAMPTZ,
    period_end         TIMESTAMPTZ,
    hosted_url         TEXT,
    failed_at          TIMESTAMPTZ,
    paid_at            TIMESTAMPTZ,
    created            BIGINT NOT NULL
);
CREATE INDEX invoices_tenant ON invoices (tenant_id, created);

-- The funding pool, in thousandths of a free-account-month: credits from
-- paid invoices, a debit per active free account per month, reversals on
-- refund. Append-only; each entry is unique by (kind, reference).
CREATE TABLE pool_ledger (
    id           BIGSERIAL PRIMARY KEY,
    at           TIMESTAMPTZ NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('credit', 'debit', 'reversal')),
    reference    TEXT NOT NULL,
    tenant_id    UUID,
    milli_months BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL DEFAULT 0,
    currency     TEXT,
    UNIQUE (kind, reference)
);
CREATE FUNCTION pool_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_ledger is append-only';
END;
$$;
CREATE TRIGGER pool_ledger_no_update BEFORE UPDATE OR DELETE ON pool_ledger
    FOR EACH ROW EXECUTE FUNCTION pool_ledger_append_only();

-- People who signed up while the pool had no funded place: the account is
-- prepared (password hash, key pair locked with the password) and created
-- in line order when places open.
CREATE TABLE waiting_line (
    id            UUID PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    address       TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    admitted_at   TIMESTAMPTZ,
    account_id    UUID
);
CREATE INDEX waiting_line_order ON waiting_line (created_at, id) WHERE admitted_at IS NULL;

-- Proof-of-work challenges already spent.
CREATE TABLE spent_challenges (
    nonce      TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Usage per tenant per month (YYYY-MM), kept current by every store, send and delete.
CREATE TABLE usage_monthly (
    tenant_id          UUID NOT NULL REFERENCES tenants (id),
    month              TEXT NOT NULL,
    storage_bytes      BIGINT NOT NULL DEFAULT 0,
    storage_peak_bytes BIGINT NOT NULL DEFAULT 0,
    messages_received  BIGINT NOT NULL DEFAULT 0,
    messages_sent      BIGINT NOT NULL DEFAULT 0,
    active_accounts    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
);

-- A per-account storage cap inside the tenant's shared quota (NULL: none),
-- and what each account stores.
ALTER TABLE accounts ADD COLUMN storage_quota_bytes BIGINT;
ALTER TABLE accounts ADD COLUMN storage_used_bytes BIGINT NOT NULL DEFAULT 0;
-- Free accounts of the public instance.
ALTER TABLE accounts ADD COLUMN free BOOLEAN NOT NULL DEFAULT FALSE;
