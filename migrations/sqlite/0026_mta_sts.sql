-- The MTA-STS mode a tenant chose for one of its domains (RFC 8461):
-- without a row, `testing`.
CREATE TABLE domain_mta_sts (
    domain_id  BLOB PRIMARY KEY REFERENCES domains (id) ON DELETE CASCADE,
    mode       TEXT NOT NULL CHECK (mode IN ('testing', 'enforce', 'none')),
    updated_at TEXT NOT NULL
);
