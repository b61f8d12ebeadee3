-- hookgate PostgreSQL store, migration 3: each attempt keeps the response's
-- headers (encoded like messages.headers). Attempts recorded before it have none.
ALTER TABLE attempts ADD COLUMN response_headers bytea;
