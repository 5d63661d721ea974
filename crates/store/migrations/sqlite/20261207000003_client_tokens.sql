-- Short-lived client tokens (`ek_...`) minted by a project key for browsers and mobile apps.
-- Found by the token's keyed hash; each acts for its key (deleted with it) within its grant.
-- Rows outlive their expiry by a day at most (pruned as new tokens are minted).
CREATE TABLE client_tokens (
    id              TEXT    PRIMARY KEY NOT NULL,
    token_hash      BLOB    NOT NULL UNIQUE,
    key_id          TEXT    NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    org_id          TEXT    NOT NULL REFERENCES organizations (id),
    scopes          TEXT    NOT NULL,
    models          TEXT    NOT NULL,
    end_user        TEXT,
    allowed_origins TEXT    NOT NULL,
    max_requests    INTEGER,
    max_tokens      INTEGER,
    requests_used   INTEGER NOT NULL DEFAULT 0,
    tokens_used     INTEGER NOT NULL DEFAULT 0,
    session         TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX client_tokens_expiry ON client_tokens (expires_at);
-- The origins of live tokens, for answering CORS preflights (which carry no token).
CREATE TABLE client_token_origins (
    origin     TEXT    NOT NULL,
    token_id   TEXT    NOT NULL REFERENCES client_tokens (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (origin, token_id)
) WITHOUT ROWID;
