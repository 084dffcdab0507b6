CREATE TABLE ledger_entries (
    idx          BIGINT PRIMARY KEY,
    recorded_at  BIGINT NOT NULL,
    event        TEXT NOT NULL,
    leaf_hash    TEXT NOT NULL
);
CREATE TABLE ledger_nodes (
    level  BIGINT NOT NULL,
    idx    BIGINT NOT NULL,
    hash   TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE ledger_checkpoints (
    size        BIGINT PRIMARY KEY,
    note        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
