-- A tenant's own wording of the mail the system writes (inherited by its
-- children), and the address where an account's owner gets the welcome
-- and password-reset mail.

CREATE TABLE template_overrides (
    tenant_id  UUID NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL,
    language   TEXT NOT NULL CHECK (language IN ('fr', 'en')),
    subject    TEXT NOT NULL,
    text_body  TEXT NOT NULL,
    html_body  TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, name, language)
);

ALTER TABLE accounts ADD COLUMN recovery_address TEXT;
