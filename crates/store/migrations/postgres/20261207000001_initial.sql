-- Tollgate's schema on PostgreSQL: the same tables, columns and constraints as the SQLite
-- migrations up to 20261207000001_provider_objects, in PostgreSQL's types (BIGINT for
-- SQLite's INTEGER, BYTEA for BLOB, BOOLEAN where Rust reads a bool). Tables that SQLite lists
-- in insertion order (`ORDER BY ..., rowid`) carry an explicit `rowid` identity column, so the
-- store's statements read the same on both.

CREATE TABLE tollgate_meta (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE organizations (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    rowid         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE projects (
    id             TEXT PRIMARY KEY NOT NULL,
    org_id         TEXT NOT NULL REFERENCES organizations (id),
    name           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'archived')),
    is_default     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL,
    archived_at    BIGINT,
    allowed_ips    TEXT NOT NULL DEFAULT '[]',
    allowed_models TEXT NOT NULL DEFAULT '[]',
    rowid          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    UNIQUE (org_id, name)
);

CREATE TABLE service_accounts (
    id         TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    UNIQUE (project_id, name)
);

CREATE TABLE api_keys (
    id                       TEXT PRIMARY KEY NOT NULL,
    org_id                   TEXT NOT NULL REFERENCES organizations (id),
    project_id               TEXT REFERENCES projects (id),
    kind                     TEXT NOT NULL CHECK (kind IN ('project', 'service_account', 'admin')),
    name                     TEXT NOT NULL,
    hash                     BYTEA NOT NULL UNIQUE,
    hash_version             BIGINT NOT NULL,
    redacted                 TEXT NOT NULL,
    owner_user_id            TEXT REFERENCES users (id),
    owner_service_account_id TEXT REFERENCES service_accounts (id),
    permissions              TEXT NOT NULL,
    created_by               TEXT NOT NULL,
    created_at               BIGINT NOT NULL,
    last_used_at             BIGINT,
    expires_at               BIGINT,
    revoked_at               BIGINT,
    rotated_from             TEXT REFERENCES api_keys (id),
    rotated_to               TEXT REFERENCES api_keys (id),
    allowed_ips              TEXT NOT NULL DEFAULT '[]',
    allowed_models           TEXT NOT NULL DEFAULT '[]',
    rowid                    BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    CHECK ((owner_user_id IS NULL) <> (owner_service_account_id IS NULL)),
    CHECK ((kind = 'admin') = (project_id IS NULL))
);
CREATE INDEX api_keys_project ON api_keys (project_id);

-- Numbers come from `change_sequence`, taken under the write lock: commit order, no gaps.
CREATE TABLE change_log (
    seq        BIGINT PRIMARY KEY,
    entity     TEXT NOT NULL CHECK (entity IN ('key', 'project', 'limits')),
    entity_id  TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE change_sequence (
    id  BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL CHECK (seq >= 0)
);
INSERT INTO change_sequence (id, seq) VALUES (1, 0);

CREATE TABLE audit_log (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    event_type  TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    project_id  TEXT,
    resource_id TEXT,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX audit_log_resource ON audit_log (resource_id);
CREATE INDEX audit_log_org_seq ON audit_log (org_id, seq);

CREATE TABLE usage_events (
    request_id          TEXT PRIMARY KEY NOT NULL,
    org_id              TEXT NOT NULL,
    project_id          TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    model_requested     TEXT NOT NULL,
    model_served        TEXT NOT NULL,
    endpoint            TEXT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_micro_usd      BIGINT NOT NULL,
    status              BIGINT NOT NULL,
    latency_ms          BIGINT NOT NULL,
    client_ip           TEXT,
    created_at          BIGINT NOT NULL,
    rowid               BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);
CREATE INDEX usage_events_created ON usage_events (created_at);
CREATE INDEX usage_events_org_created ON usage_events (org_id, created_at);

CREATE TABLE usage_daily (
    day                 TEXT NOT NULL,
    org_id              TEXT NOT NULL,
    project_id          TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    model               TEXT NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_micro_usd      BIGINT NOT NULL,
    PRIMARY KEY (day, project_id, key_id, model)
);

CREATE TABLE rate_limits (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES organizations (id),
    level          TEXT NOT NULL CHECK (level IN ('organization', 'project', 'key')),
    holder_id      TEXT NOT NULL,
    model          TEXT NOT NULL DEFAULT '*',
    rpm            BIGINT CHECK (rpm IS NULL OR rpm >= 0),
    rpd            BIGINT CHECK (rpd IS NULL OR rpd >= 0),
    tpm            BIGINT CHECK (tpm IS NULL OR tpm >= 0),
    tpd            BIGINT CHECK (tpd IS NULL OR tpd >= 0),
    max_concurrent BIGINT CHECK (max_concurrent IS NULL OR max_concurrent >= 0),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (level, holder_id, model)
);

CREATE TABLE budgets (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations (id),
    level           TEXT NOT NULL CHECK (level IN ('organization', 'project', 'key')),
    holder_id       TEXT NOT NULL,
    limit_micro_usd BIGINT NOT NULL CHECK (limit_micro_usd >= 0),
    period          TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
    utc_offset_secs BIGINT NOT NULL DEFAULT 0,
    alerts          TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (level, holder_id)
);

CREATE TABLE budget_alerts (
    budget_id       BIGINT NOT NULL,
    period_start    BIGINT NOT NULL,
    threshold       BIGINT NOT NULL,
    spent_micro_usd BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (budget_id, period_start, threshold)
);

CREATE TABLE invites (
    id          TEXT PRIMARY KEY NOT NULL,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
    projects    TEXT NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    user_id     TEXT REFERENCES users (id),
    rowid       BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
);
CREATE INDEX invites_org ON invites (org_id, created_at);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    added_at   BIGINT NOT NULL,
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    client_ip  TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE provider_objects (
    provider   TEXT   NOT NULL,
    object_id  TEXT   NOT NULL,
    kind       TEXT   NOT NULL,
    org_id     TEXT   NOT NULL REFERENCES organizations (id),
    project_id TEXT   NOT NULL REFERENCES projects (id),
    key_id     TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider, object_id)
);
CREATE INDEX provider_objects_by_project ON provider_objects (project_id, created_at DESC, object_id DESC);
