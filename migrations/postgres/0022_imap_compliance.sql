-- IMAP as a compliance suite expects it (issue 21).

-- The last UIDVALIDITY handed to a mailbox of the account: a mailbox made
-- again under the name of a deleted one never gets the same value, even
-- within the same second (RFC 3501 §2.3.1.1, RFC 9051 §2.3.1.1).
ALTER TABLE accounts ADD COLUMN last_uid_validity BIGINT NOT NULL DEFAULT 0;
UPDATE accounts SET last_uid_validity =
    COALESCE((SELECT MAX(uid_validity) FROM mailboxes WHERE mailboxes.account_id = accounts.id), 0);

-- Messages with a UID above this one are \Recent: the next session that
-- selects the mailbox (or sees them arrive) takes them (RFC 3501 §2.3.2).
ALTER TABLE mailboxes ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = uid_next - 1;

-- Tombstones of expunged UIDs with a modseq at or below this one were
-- pruned: a QRESYNC client that last saw an older modseq is told every UID
-- it knows that is gone (RFC 7162 §3.2.5.1 allows it).
ALTER TABLE mailboxes ADD COLUMN pruned_modseq BIGINT NOT NULL DEFAULT 0;

-- When each tombstone was left, so that they are pruned after
-- `imap.tombstone_days` (those from before this migration count from now).
ALTER TABLE expunged ADD COLUMN expunged_at TIMESTAMPTZ;
UPDATE expunged SET expunged_at = now();
CREATE INDEX expunged_at ON expunged (expunged_at);

-- Subscriptions are names (RFC 3501 §6.3.6): a subscribed mailbox that is
-- deleted stays subscribed, listed as \NonExistent by LIST (SUBSCRIBED),
-- and a mailbox made again under that name is subscribed again.
CREATE TABLE lost_subscriptions (
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name_key   TEXT NOT NULL,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name_key)
);
