CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    rpm         BIGINT,
    tpm         BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (team_id, name)
);
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    digest       TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    name         TEXT,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    team_id      TEXT NOT NULL REFERENCES teams(id),
    app_id       TEXT NOT NULL REFERENCES apps(id),
    env          TEXT NOT NULL,
    models       TEXT NOT NULL,
    rpm          BIGINT,
    tpm          BIGINT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    rotated_from TEXT,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX api_keys_updated_at ON api_keys (updated_at);
CREATE INDEX api_keys_team ON api_keys (team_id);
