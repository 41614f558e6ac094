-- Tenants, domains, accounts, API keys and the audit log (PostgreSQL dialect).

CREATE TABLE tenants (
    id                    UUID PRIMARY KEY,
    name                  TEXT NOT NULL,
    kind                  TEXT NOT NULL CHECK (kind IN ('operator', 'reseller', 'enterprise', 'public')),
    parent_id             UUID REFERENCES tenants (id),
    status                TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    max_accounts          BIGINT NOT NULL CHECK (max_accounts >= 0),
    max_domains           BIGINT NOT NULL CHECK (max_domains >= 0),
    storage_quota_bytes   BIGINT NOT NULL CHECK (storage_quota_bytes >= 0),
    min_level             TEXT NOT NULL,
    allowed_jurisdictions TEXT NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX tenants_parent ON tenants (parent_id);
CREATE UNIQUE INDEX tenants_one_operator ON tenants (kind) WHERE kind = 'operator';

CREATE TABLE domains (
    id                  UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL REFERENCES tenants (id),
    name                TEXT NOT NULL UNIQUE,
    verification_token  TEXT NOT NULL,
    verified_at         TIMESTAMPTZ,
    verification_method TEXT CHECK (verification_method IN ('dns', 'forced')),
    dkim_selector       TEXT NOT NULL,
    dkim_public_key     TEXT NOT NULL,
    dkim_private_key    TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX domains_tenant ON domains (tenant_id, id);

CREATE TABLE accounts (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL REFERENCES tenants (id),
    domain_id     UUID NOT NULL REFERENCES domains (id),
    address       TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    level         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX accounts_tenant ON accounts (tenant_id, id);
CREATE INDEX accounts_domain ON accounts (domain_id);

CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    tenant_id   UUID,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id   TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);

-- The audit log is append-only: the database itself refuses to rewrite history.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
