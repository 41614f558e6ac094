-- What IMAP FETCH answers of a message without reading it: its header and
-- the wire forms of ENVELOPE, BODY and BODYSTRUCTURE, encrypted under the
-- tenant's data key. None from `dispersed` up. Apart from `messages`, so
-- that reading one does not walk the overflow pages of the message's bytes.
CREATE TABLE message_summaries (
    message_id BLOB PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    summary    BLOB NOT NULL
);
