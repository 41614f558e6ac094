-- Dispersed storage: messages at `dispersed` and `end-to-end` keep their
-- bytes as k-of-n shards on storage sites; the database keeps the manifest
-- (which shard is where, and its BLAKE3 hash), never the bytes.

-- Where a message's bytes are: in `messages.content`, or in shards.
ALTER TABLE messages ADD COLUMN storage TEXT NOT NULL DEFAULT 'database'
    CHECK (storage IN ('database', 'dispersed'));

-- A tenant's own redundancy (k-of-n), within the operator's bounds; NULL
-- means the operator's default.
ALTER TABLE tenants ADD COLUMN dispersal_k INTEGER;
ALTER TABLE tenants ADD COLUMN dispersal_n INTEGER;

-- One dispersed object (its id is the message's id).
CREATE TABLE stored_objects (
    id         UUID PRIMARY KEY,
    tenant_id  UUID NOT NULL REFERENCES tenants (id),
    size       BIGINT NOT NULL CHECK (size >= 0),
    k          INTEGER NOT NULL CHECK (k >= 2),
    n          INTEGER NOT NULL CHECK (n > k),
    created_at TIMESTAMPTZ NOT NULL,
    -- Set when the message is deleted; its shards are then purged.
    deleted_at TIMESTAMPTZ
);
CREATE INDEX stored_objects_deleted ON stored_objects (deleted_at) WHERE deleted_at IS NOT NULL;

-- One shard of an object: on `site` (NULL while no site holds it), with
-- the BLAKE3 hash of its bytes and what the last look at it found.
CREATE TABLE shards (
    object_id  UUID NOT NULL REFERENCES stored_objects (id),
    idx        INTEGER NOT NULL CHECK (idx >= 0),
    site       TEXT,
    hash       BYTEA NOT NULL,
    size       BIGINT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('ok', 'missing', 'corrupt')),
    checked_at TIMESTAMPTZ,
    PRIMARY KEY (object_id, idx)
);
CREATE INDEX shards_site ON shards (site, object_id);
CREATE INDEX shards_unhealthy ON shards (object_id) WHERE state <> 'ok';

-- Where a resumable maintenance pass (scrub) got to.
CREATE TABLE maintenance (
    name       TEXT PRIMARY KEY,
    cursor_id  UUID,
    updated_at TIMESTAMPTZ NOT NULL
);
