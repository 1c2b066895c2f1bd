-- event_types: the catalogue of types and their JSON Schemas.

-- name: delete
DELETE FROM event_types WHERE name = $1
