-- A counter raised whenever what lets an account act changes (role, status,
-- password, reset, deletion): tokens and sessions carry the value they were
-- issued under and end when it moves.
ALTER TABLE accounts ADD COLUMN credentials_epoch INTEGER NOT NULL DEFAULT 0;
