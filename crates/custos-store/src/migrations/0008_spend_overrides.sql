CREATE TABLE spend_overrides (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    why         TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX spend_overrides_expires ON spend_overrides (expires_at);
