-- Composite releases of an app (a model, a prompt and datasets pinned by digest) with their
-- risk tier and evidence; and each approver role's decision on a release.
CREATE TABLE releases (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    app          TEXT NOT NULL,
    state        TEXT NOT NULL,
    tier         TEXT NOT NULL,
    derived_tier TEXT NOT NULL,
    reasons      TEXT NOT NULL,
    composite    TEXT NOT NULL,
    evidence     TEXT NOT NULL,
    author       TEXT NOT NULL,
    why          TEXT,
    ticket       TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX releases_by_app ON releases (tenant, app, created_at);

CREATE TABLE release_decisions (
    release_id   TEXT NOT NULL,
    role         TEXT NOT NULL,
    decision     TEXT NOT NULL,
    by_whom      TEXT NOT NULL,
    why          TEXT,
    at           BIGINT NOT NULL,
    ledger_index BIGINT NOT NULL,
    PRIMARY KEY (release_id, role)
);
