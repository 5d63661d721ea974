-- Keys suspended after suspicious use: refused (401, saying so) until an owner lifts the
-- suspension, which deletes the row. A row per suspended key.
CREATE TABLE key_suspensions (
    key_id       TEXT    PRIMARY KEY NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    org_id       TEXT    NOT NULL REFERENCES organizations (id),
    kind         TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    suspended_at INTEGER NOT NULL
) WITHOUT ROWID;
