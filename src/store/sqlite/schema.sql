-- hookgate embedded store, schema version 3 (2 added `deliveries.replayed_by`,
-- 3 `attempts.response_headers`).
-- Times are milliseconds since the Unix epoch.

CREATE TABLE IF NOT EXISTS messages (
    seq          INTEGER PRIMARY KEY,      -- ingest (commit) order
    id           TEXT NOT NULL UNIQUE,     -- msg_<ULID>
    source       TEXT NOT NULL,
    event_type   TEXT,
    received_at  INTEGER NOT NULL,
    content_type TEXT,
    headers      BLOB NOT NULL,
    body         BLOB NOT NULL
);

-- A delivery row is the queue entry. status: 0 pending, 1 queued behind an
-- earlier delivery of the same ordering key, 2 delivered, 3 dead, 4 replayed
-- (was dead; `replayed_by` is the delivery a replay made in its place).
CREATE TABLE IF NOT EXISTS deliveries (
    id           INTEGER PRIMARY KEY,
    message_seq  INTEGER NOT NULL,
    destination  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    priority     INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    ordering_key TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    retry_base   INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    replayed_by  INTEGER
);
-- What the dispatcher scans: due, pending work of one destination by priority.
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries (destination, priority, due_at, id) WHERE status = 0;
-- The live deliveries of one ordering key.
CREATE INDEX IF NOT EXISTS deliveries_key
    ON deliveries (destination, ordering_key, id)
    WHERE status IN (0, 1) AND ordering_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries (message_seq);
-- Live (pending or queued) deliveries by age, for the oldest pending age.
-- Queries name the predicate exactly (`status IN (0, 1)`): SQLite uses a
-- partial index only for a WHERE clause that contains the index's own terms.
CREATE INDEX IF NOT EXISTS deliveries_live
    ON deliveries (destination, id) WHERE status IN (0, 1);
-- The dead-letter queue.
CREATE INDEX IF NOT EXISTS deliveries_dead
    ON deliveries (destination, id) WHERE status = 3;

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id   INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_us   INTEGER NOT NULL,
    status        INTEGER,
    response_body BLOB,
    error         TEXT,
    response_headers BLOB,               -- encoded like messages.headers
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dedup (
    source     TEXT NOT NULL,
    key        TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at);

CREATE TABLE IF NOT EXISTS destination_state (
    name          TEXT PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    disabled_at   INTEGER,
    failing_since INTEGER
);

CREATE TABLE IF NOT EXISTS api_destinations (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Transformations created through the API (docs/transformations.md).
CREATE TABLE IF NOT EXISTS api_transforms (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Alert channels created through the API (docs/alerts.md); spec holds the
-- channel's JSON, secrets included.
CREATE TABLE IF NOT EXISTS api_alert_channels (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Alerts raised, one row per channel (docs/alerts.md); the newest 10000 kept.
CREATE TABLE IF NOT EXISTS alerts (
    id      TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    channel TEXT NOT NULL,
    outcome TEXT NOT NULL,
    record  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts (at);

-- Records of the tenants' API (applications, event types, endpoints' own
-- fields, app-portal tokens); see store::tenants.
CREATE TABLE IF NOT EXISTS tenant_records (
    kind       TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    uid        TEXT,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, tenant, id),
    UNIQUE (kind, tenant, uid)
);
