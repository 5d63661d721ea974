-- Short-lived client tokens (as the SQLite migration 20261207000003).
CREATE TABLE client_tokens (
    id              TEXT   PRIMARY KEY NOT NULL,
    token_hash      BYTEA  NOT NULL UNIQUE,
    key_id          TEXT   NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    org_id          TEXT   NOT NULL REFERENCES organizations (id),
    scopes          TEXT   NOT NULL,
    models          TEXT   NOT NULL,
    end_user        TEXT,
    allowed_origins TEXT   NOT NULL,
    max_requests    BIGINT,
    max_tokens      BIGINT,
    requests_used   BIGINT NOT NULL DEFAULT 0,
    tokens_used     BIGINT NOT NULL DEFAULT 0,
    session         TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX client_tokens_expiry ON client_tokens (expires_at);
CREATE TABLE client_token_origins (
    origin     TEXT   NOT NULL,
    token_id   TEXT   NOT NULL REFERENCES client_tokens (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (origin, token_id)
);
