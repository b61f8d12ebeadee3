-- hookgate PostgreSQL store, migration 4: records of the tenants' API
-- (applications, event types, endpoints' own fields, app-portal tokens).
CREATE TABLE tenant_records (
    kind       text NOT NULL,
    tenant     text NOT NULL,
    id         text NOT NULL,
    uid        text,
    body       text NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (kind, tenant, id),
    UNIQUE (kind, tenant, uid)
);
