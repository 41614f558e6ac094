-- Billing and the funding pool: plans, each tenant's subscription state,
-- Stripe's events (applied once), invoices, the pool's append-only ledger,
-- public signups waiting for funded places, and monthly usage.

CREATE TABLE plans (
    id                         BLOB PRIMARY KEY,
    name                       TEXT NOT NULL UNIQUE,
    currency                   TEXT NOT NULL CHECK (length(currency) = 3 AND currency = lower(currency)),
    seat_price_cents           INTEGER NOT NULL CHECK (seat_price_cents >= 0),
    storage_per_seat_bytes     INTEGER NOT NULL CHECK (storage_per_seat_bytes > 0),
    max_domains                INTEGER NOT NULL CHECK (max_domains >= 0),
    max_accounts               INTEGER NOT NULL CHECK (max_accounts >= 0),
    account_messages_per_hour  INTEGER NOT NULL CHECK (account_messages_per_hour >= 0),
    account_recipients_per_day INTEGER NOT NULL CHECK (account_recipients_per_day >= 0),
    solidarity_percent         INTEGER NOT NULL CHECK (solidarity_percent BETWEEN 0 AND 100),
    stripe_price_id            TEXT,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
);

-- One row per tenant on a plan. `paid_by` is `self` (retail: its own
-- subscription) or `parent` (wholesale: its seats are on its reseller's).
CREATE TABLE tenant_billing (
    tenant_id              BLOB PRIMARY KEY REFERENCES tenants (id),
    plan_id                BLOB NOT NULL REFERENCES plans (id),
    committed_seats        INTEGER NOT NULL DEFAULT 0 CHECK (committed_seats >= 0),
    paid_by                TEXT NOT NULL DEFAULT 'self' CHECK (paid_by IN ('self', 'parent')),
    stripe_customer_id     TEXT UNIQUE,
    stripe_subscription_id TEXT UNIQUE,
    stripe_item_id         TEXT,
    -- Stripe's status of the subscription, as of `subscription_at` (the
    -- `created` time of the event that carried it): older news is ignored.
    subscription_status    TEXT,
    subscription_at        INTEGER NOT NULL DEFAULT 0,
    subscription_rank      INTEGER NOT NULL DEFAULT 0,
    current_period_end     TEXT,
    seats_billed           INTEGER,
    -- Shown by name among the pool's funders (opt-in).
    public_funder          INTEGER NOT NULL DEFAULT 0,
    updated_at             TEXT NOT NULL
);

-- Every Stripe event applied, by id: a replay finds its row and changes nothing.
CREATE TABLE stripe_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    created     INTEGER NOT NULL,
    tenant_id   BLOB,
    received_at TEXT NOT NULL
);

CREATE TABLE invoices (
    id                 TEXT PRIMARY KEY,
    tenant_id          BLOB NOT NULL REFERENCES tenants (id),
    number             TEXT,
    status             TEXT NOT NULL CHECK (status IN ('open', 'paid', 'void', 'uncollectible')),
    currency           TEXT NOT NULL,
    amount_due         INTEGER NOT NULL,
    amount_paid        INTEGER NOT NULL DEFAULT 0,
    amount_refunded    INTEGER NOT NULL DEFAULT 0,
    period_start       TEXT,
    period_end         TEXT,
    hosted_url         TEXT,
    failed_at          TEXT,
    paid_at            TEXT,
    created            INTEGER NOT NULL
);
CREATE INDEX invoices_tenant ON invoices (tenant_id, created);

-- The funding pool, in thousandths of a free-account-month: credits from
-- paid invoices, a debit per active free account per month, reversals on
-- refund. Append-only; each entry is unique by (kind, reference).
CREATE TABLE pool_ledger (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('credit', 'debit', 'reversal')),
    reference    TEXT NOT NULL,
    tenant_id    BLOB,
    milli_months INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL DEFAULT 0,
    currency     TEXT,
    UNIQUE (kind, reference)
);
CREATE TRIGGER pool_ledger_no_update BEFORE UPDATE ON pool_ledger
BEGIN
    SELECT RAISE(ABORT, 'pool_ledger is append-only');
END;
CREATE TRIGGER pool_ledger_no_delete BEFORE DELETE ON pool_ledger
BEGIN
    SELECT RAISE(ABORT, 'pool_ledger is append-only');
END;

-- People who signed up while the pool had no funded place: the account is
-- prepared (password hash, key pair locked with the password) and created
-- in line order when places open.
CREATE TABLE waiting_line (
    id            BLOB PRIMARY KEY,
    token_hash    TEXT NOT NULL UNIQUE,
    address       TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    admitted_at   TEXT,
    account_id    BLOB
);
CREATE INDEX waiting_line_order ON waiting_line (created_at, id) WHERE admitted_at IS NULL;

-- Proof-of-work challenges already spent.
CREATE TABLE spent_challenges (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

-- Usage per tenant per month (YYYY-MM), kept current by every store, send and delete.
CREATE TABLE usage_monthly (
    tenant_id          BLOB NOT NULL REFERENCES tenants (id),
    month              TEXT NOT NULL,
    storage_bytes      INTEGER NOT NULL DEFAULT 0,
    storage_peak_bytes INTEGER NOT NULL DEFAULT 0,
    messages_received  INTEGER NOT NULL DEFAULT 0,
    messages_sent      INTEGER NOT NULL DEFAULT 0,
    active_accounts    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, month)
);

-- A per-account storage cap inside the tenant's shared quota (NULL: none),
-- and what each account stores.
ALTER TABLE accounts ADD COLUMN storage_quota_bytes INTEGER;
ALTER TABLE accounts ADD COLUMN storage_used_bytes INTEGER NOT NULL DEFAULT 0;
-- Free accounts of the public instance.
ALTER TABLE accounts ADD COLUMN free INTEGER NOT NULL DEFAULT 0;
