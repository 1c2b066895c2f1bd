-- Which tenant owns a delivery (shared/stores/tenancy.py says why the rule reads so).

-- Deleted subscriptions too: their deliveries stay readable by the tenant that owned them.
-- NULL for a delivery whose subscription and event are of different tenants (see above).
-- name: delivery_tenant
SELECT CASE WHEN s.tenant_id IS NOT DISTINCT FROM e.tenant_id THEN s.tenant_id END AS tenant_id
FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id
JOIN events e ON e.id = d.event_id
WHERE d.id = $1

-- A delivery is the scope's when both its subscription and its event are that tenant's;
-- no scope ({scope} NULL: an operator) sees every delivery. Over `s` and `e`.
-- fragment: delivery_in_scope
({scope}::text IS NULL OR (s.tenant_id = {scope} AND e.tenant_id = {scope}))
