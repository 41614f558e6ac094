-- Addresses that are not an account's own: an alias of one account (it
-- receives there and may send as it), or a group that delivers to several
-- accounts of the tenant, each copy at its recipient's own level. An
-- address is exactly one thing across the instance: the store refuses an
-- alias or group whose address is an account's, and the reverse.
CREATE TABLE addresses (
    id         BLOB PRIMARY KEY,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    domain_id  BLOB NOT NULL REFERENCES domains (id),
    address    TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL CHECK (kind IN ('alias', 'group')),
    -- The account an alias belongs to; NULL for a group.
    account_id BLOB REFERENCES accounts (id) ON DELETE CASCADE,
    -- Who may post to a group: anyone, the tenant's own accounts, or its members.
    posting    TEXT NOT NULL CHECK (posting IN ('anyone', 'tenant', 'members')),
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX addresses_tenant ON addresses (tenant_id, id);
CREATE INDEX addresses_account ON addresses (account_id);

CREATE TABLE group_members (
    address_id BLOB NOT NULL REFERENCES addresses (id) ON DELETE CASCADE,
    account_id BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (address_id, account_id)
);
CREATE INDEX group_members_account ON group_members (account_id);

-- A domain alias delivers as the domain it points to (both verified, both
-- the tenant's). A catch-all names an account or group address that gets
-- mail for unknown local parts of the domain.
ALTER TABLE domains ADD COLUMN alias_of BLOB;
ALTER TABLE domains ADD COLUMN catch_all TEXT;

-- External forwarding of an account's mail, where its tenant allows it.
ALTER TABLE accounts ADD COLUMN forward_to TEXT;
ALTER TABLE accounts ADD COLUMN forward_keep BOOLEAN NOT NULL DEFAULT TRUE;
-- When the account was told a sealed message could not be forwarded
-- (no key for the destination): told once per destination.
ALTER TABLE accounts ADD COLUMN forward_refused_notice TEXT;
ALTER TABLE tenants ADD COLUMN external_forwarding BOOLEAN NOT NULL DEFAULT FALSE;

-- Sieve scripts (RFC 5228): an account's own (owner = the account) or the
-- tenant-wide one that runs first (owner = the tenant). One active per owner.
CREATE TABLE sieve_scripts (
    owner      BLOB NOT NULL,
    tenant_id  BLOB NOT NULL REFERENCES tenants (id),
    scope      TEXT NOT NULL CHECK (scope IN ('account', 'tenant')),
    name       TEXT NOT NULL,
    content    TEXT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (owner, name)
);
CREATE INDEX sieve_scripts_tenant ON sieve_scripts (tenant_id);

-- What a script remembers between messages: vacation replies already sent
-- (per correspondent, for `:days`) and `duplicate` ids, until they expire.
CREATE TABLE sieve_memory (
    account_id BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (account_id, key)
);
