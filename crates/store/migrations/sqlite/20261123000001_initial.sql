-- Tollgate's schema. Times are Unix seconds (UTC); money is integer micro-dollars.

CREATE TABLE tollgate_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY NOT NULL,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'archived')),
    is_default  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    archived_at INTEGER,
    UNIQUE (org_id, name)
);

CREATE TABLE service_accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE api_keys (
    id                       TEXT PRIMARY KEY NOT NULL,
    org_id                   TEXT NOT NULL REFERENCES organizations (id),
    project_id               TEXT REFERENCES projects (id),
    kind                     TEXT NOT NULL CHECK (kind IN ('project', 'service_account', 'admin')),
    name                     TEXT NOT NULL,
    hash                     BLOB NOT NULL UNIQUE,
    hash_version             INTEGER NOT NULL,
    redacted                 TEXT NOT NULL,
    owner_user_id            TEXT REFERENCES users (id),
    owner_service_account_id TEXT REFERENCES service_accounts (id),
    permissions              TEXT NOT NULL,
    created_by               TEXT NOT NULL,
    created_at               INTEGER NOT NULL,
    last_used_at             INTEGER,
    expires_at               INTEGER,
    revoked_at               INTEGER,
    rotated_from             TEXT REFERENCES api_keys (id),
    rotated_to               TEXT REFERENCES api_keys (id),
    CHECK ((owner_user_id IS NULL) <> (owner_service_account_id IS NULL)),
    CHECK ((kind = 'admin') = (project_id IS NULL))
);
CREATE INDEX api_keys_project ON api_keys (project_id);

-- Every change that a running server must apply to its in-memory key table, in order.
CREATE TABLE change_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    entity     TEXT NOT NULL CHECK (entity IN ('key', 'project')),
    entity_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    event_type  TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    project_id  TEXT,
    resource_id TEXT,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_log_resource ON audit_log (resource_id);

CREATE TABLE usage_events (
    request_id          TEXT PRIMARY KEY NOT NULL,
    org_id              TEXT NOT NULL,
    project_id          TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    model_requested     TEXT NOT NULL,
    model_served        TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    cost_micro_usd      INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    latency_ms          INTEGER NOT NULL,
    client_ip           TEXT,
    created_at          INTEGER NOT NULL
);
CREATE INDEX usage_events_created ON usage_events (created_at);

-- Daily roll-up of usage_events, kept in the same transaction as the events.
CREATE TABLE usage_daily (
    day                 TEXT NOT NULL,
    org_id              TEXT NOT NULL,
    project_id          TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    model               TEXT NOT NULL,
    requests            INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    reasoning_tokens    INTEGER NOT NULL,
    cost_micro_usd      INTEGER NOT NULL,
    PRIMARY KEY (day, project_id, key_id, model)
);
