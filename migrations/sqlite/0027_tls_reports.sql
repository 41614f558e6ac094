-- TLS reports (RFC 8460) about hosted domains, sent by other MTAs to the
-- rua address our _smtp._tls records name, one row per reported policy.
CREATE TABLE tls_reports (
    id            BLOB PRIMARY KEY,
    domain_id     BLOB NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    organization  TEXT NOT NULL,
    report_id     TEXT NOT NULL,
    starts_at     TEXT NOT NULL,
    ends_at       TEXT NOT NULL,
    policy_type   TEXT NOT NULL,
    successes     INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    -- The report's failure-details, as JSON.
    failure_details TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    UNIQUE (domain_id, organization, report_id, policy_type)
);
CREATE INDEX tls_reports_by_domain ON tls_reports (domain_id, received_at);
