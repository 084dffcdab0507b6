CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    principal     TEXT NOT NULL,
    role          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    why           TEXT NOT NULL,
    duration_ms   BIGINT NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  BIGINT NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT,
    expires_at    BIGINT,
    revoked_by    TEXT,
    revoked_at    BIGINT
);
CREATE INDEX grants_live ON grants (status, expires_at);
CREATE INDEX grants_tenant ON grants (tenant, requested_at)
