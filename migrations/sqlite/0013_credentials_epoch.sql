-- A counter raised whenever what lets an account act changes (role, status,
-- password, reset, deletion): tokens and sessions carry the value they were
-- issued under and end when it moves.
ALTER TABLE accounts ADD COLUMN credentials_epoch INTEGER NOT NULL DEFAULT 0;

-- At most one export of a tenant is queued or running at a time.
CREATE UNIQUE INDEX tenant_exports_one_at_a_time ON tenant_exports (tenant_id)
    WHERE state IN ('queued', 'running');
