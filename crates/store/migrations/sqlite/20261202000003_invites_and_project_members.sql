-- Invitations to an organization, accepted through a one-time link whose token is kept only as
-- its SHA-256 hash; `projects` is the JSON list of {id, role} memberships the invitee gets on
-- acceptance. A withdrawn (deleted) invite is removed; an accepted one stays for the record.
CREATE TABLE invites (
    id          TEXT PRIMARY KEY NOT NULL,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    email       TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('owner', 'reader')),
    projects    TEXT NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    accepted_at INTEGER,
    user_id     TEXT REFERENCES users (id)
);
CREATE INDEX invites_org ON invites (org_id, created_at);

-- A user's membership of a project, with the project role OpenAI names (owner or member).
CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);
