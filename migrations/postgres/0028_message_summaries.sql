-- What IMAP FETCH answers of a message without reading it: its header and
-- the wire forms of ENVELOPE, BODY and BODYSTRUCTURE, encrypted under the
-- tenant's data key. None from `dispersed` up.
CREATE TABLE message_summaries (
    message_id UUID PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    summary    BYTEA NOT NULL
);
