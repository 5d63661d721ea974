-- The ownership ledger: objects a provider keeps (files, batches, vector stores, stored
-- responses, ...) created through a provider credential that several projects share, and the
-- project each belongs to. Keyed by provider, since ids are unique per provider account.
CREATE TABLE provider_objects (
    provider   TEXT    NOT NULL,
    object_id  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    org_id     TEXT    NOT NULL REFERENCES organizations (id),
    project_id TEXT    NOT NULL REFERENCES projects (id),
    -- The key whose request created it; NULL when an operator adopted it.
    key_id     TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (provider, object_id)
) WITHOUT ROWID;

-- A project's objects, newest first (the admin API and the CLI list them).
CREATE INDEX provider_objects_by_project ON provider_objects (project_id, created_at DESC, object_id DESC);
