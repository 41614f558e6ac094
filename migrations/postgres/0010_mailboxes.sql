-- Mailboxes for IMAP and the API alike: the five special-use ones (and
-- Drafts) and the account's own, with UIDs that outlive restarts
-- (uid_validity, uid_next), change sequence numbers (highest_modseq, each
-- message's modseq) so that sessions see each other's changes, keywords,
-- and tombstones of expunged UIDs. A message's mailbox replaces its folder.

CREATE TABLE mailboxes (
    id             UUID PRIMARY KEY,
    account_id     UUID NOT NULL REFERENCES accounts (id),
    -- IMAP name, `/` between levels; INBOX is always `INBOX`.
    name           TEXT NOT NULL,
    -- Names are unique per account whatever their case.
    name_key       TEXT NOT NULL,
    -- Special use (RFC 6154): inbox, sent, drafts, archive, junk, trash.
    role           TEXT,
    uid_validity   BIGINT NOT NULL CHECK (uid_validity > 0),
    uid_next       BIGINT NOT NULL DEFAULT 1,
    highest_modseq BIGINT NOT NULL DEFAULT 1,
    subscribed     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (account_id, name_key)
);
CREATE UNIQUE INDEX mailboxes_role ON mailboxes (account_id, role) WHERE role IS NOT NULL;

INSERT INTO mailboxes (id, account_id, name, name_key, role, uid_validity, created_at)
SELECT gen_random_uuid(), a.id, r.name, lower(r.name), r.role, CAST(extract(epoch FROM now()) AS BIGINT),
       now()
FROM accounts a CROSS JOIN (
    SELECT 'inbox' AS role, 'INBOX' AS name UNION ALL SELECT 'sent', 'Sent' UNION ALL SELECT 'drafts', 'Drafts'
    UNION ALL SELECT 'archive', 'Archive' UNION ALL SELECT 'junk', 'Junk' UNION ALL SELECT 'trash', 'Trash') r;

ALTER TABLE messages ADD COLUMN mailbox_id UUID REFERENCES mailboxes (id);
ALTER TABLE messages ADD COLUMN uid BIGINT;
ALTER TABLE messages ADD COLUMN modseq BIGINT NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
-- Bytes of the message as IMAP and the API serve it (RFC822.SIZE): the
-- plaintext at `standard`, the PGP/MIME form above.
ALTER TABLE messages ADD COLUMN rfc822_size BIGINT NOT NULL DEFAULT 0;

UPDATE messages SET mailbox_id = (SELECT b.id FROM mailboxes b WHERE b.account_id = messages.account_id AND b.role = messages.folder),
    -- AES-256-GCM at rest adds a 4-byte magic, a 12-byte nonce and a 16-byte tag.
    rfc822_size = CASE WHEN level = 'standard' THEN size - 32 ELSE size END;
UPDATE messages SET uid = numbered.n
FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY mailbox_id ORDER BY id) AS n FROM messages) AS numbered
WHERE messages.id = numbered.id;
UPDATE mailboxes SET uid_next = 1 + COALESCE((SELECT MAX(uid) FROM messages WHERE mailbox_id = mailboxes.id), 0);
ALTER TABLE messages DROP COLUMN folder;

CREATE UNIQUE INDEX messages_mailbox_uid ON messages (mailbox_id, uid);
-- What SELECT reads of every message, without touching the rows (whose
-- content comes before these columns).
CREATE INDEX messages_mailbox_view ON messages (mailbox_id, uid, modseq, flags, keywords, rfc822_size, received_at, level, id);
CREATE INDEX messages_mailbox_modseq ON messages (mailbox_id, modseq);

-- UIDs gone from a mailbox (expunged, moved away, deleted), so that another
-- session on it can say EXPUNGE.
CREATE TABLE expunged (
    mailbox_id UUID NOT NULL REFERENCES mailboxes (id),
    uid        BIGINT NOT NULL,
    modseq     BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
