-- Keys suspended after suspicious use (as the SQLite migration 20261207000002).
CREATE TABLE key_suspensions (
    key_id       TEXT   PRIMARY KEY NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    org_id       TEXT   NOT NULL REFERENCES organizations (id),
    kind         TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    suspended_at BIGINT NOT NULL
);
