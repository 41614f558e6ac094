-- White label: each tenant's brand (unset fields inherit from the parent
-- reseller, then the operator), its logo and favicon, and the hostnames it
-- proved it controls, on which public pages show its brand.

CREATE TABLE branding (
    tenant_id        UUID PRIMARY KEY REFERENCES tenants (id),
    product_name     TEXT,
    primary_color    TEXT,
    accent_color     TEXT,
    support_address  TEXT,
    legal_url        TEXT,
    privacy_url      TEXT,
    default_language TEXT CHECK (default_language IN ('fr', 'en')),
    updated_at       TIMESTAMPTZ NOT NULL
);

CREATE TABLE brand_assets (
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    kind         TEXT NOT NULL CHECK (kind IN ('logo', 'favicon')),
    content_type TEXT NOT NULL,
    bytes        BYTEA NOT NULL,
    sha256       TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);

CREATE TABLE hostnames (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    hostname    TEXT NOT NULL UNIQUE,
    token       TEXT NOT NULL,
    verified_at TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX hostnames_tenant ON hostnames (tenant_id);
