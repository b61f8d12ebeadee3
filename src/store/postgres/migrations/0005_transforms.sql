-- hookgate PostgreSQL store, migration 5: transformations created through
-- the API (docs/transformations.md); the same columns as api_destinations.
CREATE TABLE api_transforms (
    name       text PRIMARY KEY,
    spec       text NOT NULL,  -- JSON: code, timeout_ms, memory_limit
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
