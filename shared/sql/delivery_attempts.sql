-- delivery_attempts: one row per HTTP attempt, partitioned by attempt time (0006).
-- The sender writes rows with COPY (shared/stores/delivery_attempts.py names the columns).

-- name: of_delivery
SELECT attempt, attempted_at, status_code, duration_ms, outcome, error_kind, error, response_body FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id
