-- What the control plane remembers between changes: the last loaded configuration's
-- structural digest (for `config.loaded` diffs). One row per name.
CREATE TABLE control_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
