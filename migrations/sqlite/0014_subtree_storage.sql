-- A tenant's storage_used_bytes now counts its whole subtree (its own
-- accounts' mail and every descendant tenant's), so that a reseller's
-- package bounds its children together. Recount it once from the messages.
WITH RECURSIVE closure(ancestor, descendant) AS (
    SELECT id, id FROM tenants
    UNION ALL
    SELECT c.ancestor, t.id FROM tenants t JOIN closure c ON t.parent_id = c.descendant
)
UPDATE tenants SET storage_used_bytes = (
    SELECT COALESCE(SUM(m.size), 0) FROM messages m
    JOIN closure c ON m.tenant_id = c.descendant
    WHERE c.ancestor = tenants.id
);
