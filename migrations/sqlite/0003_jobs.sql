-- The durable job queue shared by every background job.

CREATE TABLE jobs (
    id           BLOB PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    dedup_key    TEXT,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at       TEXT NOT NULL,
    lease_until  TEXT,
    leased_by    TEXT,
    last_error   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
-- One live job per deduplication key and kind.
CREATE UNIQUE INDEX jobs_dedup ON jobs (kind, dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX jobs_ready ON jobs (state, run_at);
