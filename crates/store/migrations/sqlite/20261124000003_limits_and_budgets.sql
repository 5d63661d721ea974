-- Rate limits and budgets, at organization, project or key level. Running servers reload them
-- when the change log says 'limits' changed, so the log's entity check is widened.

CREATE TABLE change_log_new (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    entity     TEXT NOT NULL CHECK (entity IN ('key', 'project', 'limits')),
    entity_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO change_log_new (seq, entity, entity_id, created_at)
    SELECT seq, entity, entity_id, created_at FROM change_log;
DROP TABLE change_log;
ALTER TABLE change_log_new RENAME TO change_log;

CREATE TABLE rate_limits (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id         TEXT NOT NULL REFERENCES organizations (id),
    level          TEXT NOT NULL CHECK (level IN ('organization', 'project', 'key')),
    holder_id      TEXT NOT NULL,
    model          TEXT NOT NULL DEFAULT '*',
    rpm            INTEGER CHECK (rpm IS NULL OR rpm >= 0),
    rpd            INTEGER CHECK (rpd IS NULL OR rpd >= 0),
    tpm            INTEGER CHECK (tpm IS NULL OR tpm >= 0),
    tpd            INTEGER CHECK (tpd IS NULL OR tpd >= 0),
    max_concurrent INTEGER CHECK (max_concurrent IS NULL OR max_concurrent >= 0),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (level, holder_id, model)
);

CREATE TABLE budgets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           TEXT NOT NULL REFERENCES organizations (id),
    level            TEXT NOT NULL CHECK (level IN ('organization', 'project', 'key')),
    holder_id        TEXT NOT NULL,
    limit_micro_usd  INTEGER NOT NULL CHECK (limit_micro_usd >= 0),
    period           TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
    utc_offset_secs  INTEGER NOT NULL DEFAULT 0,
    -- Alert thresholds in per mille of the limit, as a JSON array: [500, 800, 1000].
    alerts           TEXT NOT NULL DEFAULT '[]',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (level, holder_id)
);

-- One row per alert sent: a threshold fires once per budget and period, whichever server
-- sees it first.
CREATE TABLE budget_alerts (
    budget_id    INTEGER NOT NULL,
    period_start INTEGER NOT NULL,
    threshold    INTEGER NOT NULL,
    spent_micro_usd INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (budget_id, period_start, threshold)
);

