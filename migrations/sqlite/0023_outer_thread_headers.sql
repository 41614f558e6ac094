-- Whether a tenant's sealed mail keeps its Message-ID, In-Reply-To and
-- References outside the seal (clients thread it unopened); on by default.
ALTER TABLE tenants ADD COLUMN outer_thread_headers BOOLEAN NOT NULL DEFAULT TRUE;
