-- hookgate PostgreSQL store, migration 8: alert channels created through the
-- API (docs/alerts.md); the same columns as api_destinations. spec holds the
-- channel's JSON, secrets included.
CREATE TABLE api_alert_channels (
    name       text PRIMARY KEY,
    spec       text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
