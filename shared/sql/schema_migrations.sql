-- schema_migrations: which files of shared/migrations/ this database has applied (shared/db.py).

-- One migrator at a time: two services starting together must not race.
-- name: lock
SELECT pg_advisory_lock(7214001)

-- name: create_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())

-- name: applied
SELECT version FROM schema_migrations

-- name: record
INSERT INTO schema_migrations (version, name) VALUES ($1, $2)

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = $1

-- A database is named by an identifier, which a parameter cannot be: `{database}` is filled in
-- by shared/db.py, quoted.
-- name: create_database
CREATE DATABASE {database}

-- Tests clean up with it.
-- name: drop_database
DROP DATABASE IF EXISTS {database} WITH (FORCE)
