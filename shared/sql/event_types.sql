-- event_types: the catalogue of types and their JSON Schemas.

-- fragment: columns
name, description, schema, created_at, updated_at

-- name: delete
DELETE FROM event_types WHERE name = $1

-- name: insert
INSERT INTO event_types (name, description, schema) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING RETURNING {{columns}}

-- name: get
SELECT {{columns}} FROM event_types WHERE name = $1

-- name: list
SELECT {{columns}} FROM event_types WHERE ($1::text IS NULL OR name > $1) ORDER BY name LIMIT $2

-- $2 names the columns a request changes; $3 and $4 hold their values.
-- name: update
UPDATE event_types SET
    description = CASE WHEN 'description' = ANY($2::text[]) THEN $3::text ELSE description END,
    schema = CASE WHEN 'schema' = ANY($2::text[]) THEN $4::jsonb ELSE schema END,
    updated_at = now()
WHERE name = $1 RETURNING {{columns}}

-- The catalogue as the validating cache (shared/event_types.py) holds it, read on its
-- follower's connection: the schema as text, compiled there.
-- name: catalogue
SELECT name, description, schema::text AS schema FROM event_types

-- name: catalogue_of
SELECT name, description, schema::text AS schema FROM event_types WHERE name = ANY($1::text[])
