-- Spam and virus verdicts, taken on arrival before a message is sealed and
-- kept as metadata: the action, score and symbols (JSON), and whether the
-- message was filed as spam (counted per day next to mail in and out).
ALTER TABLE messages ADD COLUMN verdict TEXT;
ALTER TABLE messages ADD COLUMN spam BOOLEAN NOT NULL DEFAULT FALSE;

-- An account's own judgements of senders: an address (`someone@example.com`)
-- or a whole domain (`example.com`), blocked (to Junk) or allowed (Inbox).
-- Moving a message into or out of Junk writes here; so does the API.
CREATE TABLE sender_rules (
    account_id BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    sender     TEXT NOT NULL,
    rule       TEXT NOT NULL CHECK (rule IN ('block', 'allow')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (account_id, sender)
);

-- Outbound abuse: each submission the filter refused, with its reason.
CREATE TABLE abuse_strikes (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    account_id BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    reason     TEXT NOT NULL,
    score      REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX abuse_strikes_account ON abuse_strikes (account_id, created_at);
-- Set when an account reached `filter.outbound_strikes` in a day: it sends
-- nothing until an operator clears it.
ALTER TABLE accounts ADD COLUMN sending_blocked_at TEXT;
-- Enterprise and reseller tenants may have their accounts' submissions
-- scanned like the public tenant's.
ALTER TABLE tenants ADD COLUMN scan_outbound BOOLEAN NOT NULL DEFAULT FALSE;
