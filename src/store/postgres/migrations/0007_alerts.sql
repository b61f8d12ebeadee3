-- hookgate PostgreSQL store, migration 7: alerts raised, one row per channel
-- (docs/alerts.md); the newest 10000 are kept.
CREATE TABLE alerts (
    id      text PRIMARY KEY,
    at      bigint NOT NULL,
    channel text NOT NULL,
    outcome text NOT NULL,
    record  text NOT NULL
);
CREATE INDEX alerts_at ON alerts (at);
